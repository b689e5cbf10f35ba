/**
 * What the import suites share: a source connector over in-memory tables (defined with
 * `defineSource`, as a real one is), and a hub's import deps over a fresh database.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { Principal } from '../../src/auth/credentials.ts';
import { secretBox } from '../../src/destinations/secrets.ts';
import type { ImportDeps } from '../../src/imports/deps.ts';
import { createLogger, type Logger } from '../../src/log.ts';
import {
  ConfigError,
  TransientError,
  defineSource,
  secret,
  z,
  type Cursor,
} from '../../src/sdk/index.ts';
import { createConnectorRegistry } from '../../src/sync/registry.ts';

export interface Table {
  rows: Record<string, unknown>[];
  primaryKey?: string[];
}

/**
 * A connector reading in-memory tables: each table is a stream, read incrementally from an
 * offset, a checkpoint every `checkpointEvery` records and one at the end. Records are keyed by
 * line (`line-1`, …) unless the table has a primary key. `token` is a secret: `good` passes the
 * check, anything else is refused with a reason that repeats it (the hub must blank it).
 */
export function tableSource(name = 'tables') {
  const tables = new Map<string, Table>();
  const behaviour = {
    /** Called before each record is yielded, with its offset (0-based): to stop a read mid-way. */
    beforeRecord: null as ((offset: number) => void | Promise<void>) | null,
    /** Every read's starting cursor, in order. */
    reads: [] as (Cursor | null)[],
    /** When set, reads fail with this message: a ConfigError, or a TransientError if `transient`. */
    failRead: null as string | null,
    transient: false,
  };
  const connector = defineSource({
    name,
    title: 'In-memory tables',
    config: z.object({
      database: z.string().min(1),
      token: secret(z.string().min(1)),
      checkpointEvery: z.number().int().min(1).default(3),
    }),
    limits: { requestsPerSecond: 100, concurrency: 2 }, // a test service: generous
    async check({ config }) {
      if (config.token !== 'good') return { ok: false, reason: `token ${config.token} refused` };
      return { ok: true };
    },
    async discover() {
      return [...tables.entries()].map(([stream, table]) => ({
        name: stream,
        fields: Object.keys(table.rows[0] ?? {}).map((field) => ({
          name: field,
          type: 'string' as const,
        })),
        primaryKey: table.primaryKey ?? [],
        modes: ['full_refresh' as const, 'incremental' as const],
      }));
    },
    async *read({ config, stream, cursor }, ctx) {
      behaviour.reads.push(cursor);
      if (behaviour.failRead) {
        throw behaviour.transient
          ? new TransientError(behaviour.failRead)
          : new ConfigError(behaviour.failRead);
      }
      const table = tables.get(stream.name);
      if (!table) throw new ConfigError(`no table ${stream.name}`);
      let offset = typeof cursor === 'number' ? cursor : 0;
      while (offset < table.rows.length) {
        if (ctx.signal.aborted) return;
        await behaviour.beforeRecord?.(offset);
        const data = table.rows[offset]!;
        offset++;
        yield { type: 'record' as const, data, key: `line-${offset}` };
        if (offset % config.checkpointEvery === 0)
          yield { type: 'checkpoint' as const, cursor: offset };
      }
      yield { type: 'checkpoint' as const, cursor: offset };
    },
  });
  return { connector, tables, behaviour };
}

/** Import deps over `connectors`, logging into `logs`. */
export function importDeps(
  connectors: object[],
  logs: string[] = [],
  key: Buffer = randomBytes(32),
): ImportDeps & { log: Logger; key: Buffer } {
  const registry = createConnectorRegistry();
  for (const c of connectors) registry.register(c);
  return {
    connectors: registry,
    box: secretBox(key),
    key,
    log: createLogger('debug', {}, (line) => logs.push(line)),
    uploadsDir: join(mkdtempSync(join(tmpdir(), 'ah-imports-')), 'uploads'),
    limiters: new Map(),
  };
}

export const admin: Principal = {
  tokenId: '0190f5c2-8b1e-7a3c-9d4e-5f6a7b8c9d0e',
  name: 'admin',
  role: 'admin',
};

/**
 * A file connector like the CSV one: `path` is a folder of `*.csv` / `*.csv.gz` files, one
 * stream per file (named by the file without its extensions), comma-separated with a header
 * line; records keyed by line number. It reads uploads (`uploads: true`).
 */
export function folderSource(name = 'folder') {
  const files = () => (dir: string) =>
    readdirSync(dir)
      .filter((f) => /\.csv(\.gz)?$/.test(f))
      .sort();
  const list = files();
  const text = (file: string) => {
    const raw = readFileSync(file);
    return (file.endsWith('.gz') ? gunzipSync(raw) : raw).toString('utf8');
  };
  const streamName = (file: string) => file.replace(/\.csv(\.gz)?$/, '');
  return defineSource({
    name,
    title: 'Folder of CSV files',
    config: z.object({ path: z.string().min(1) }),
    uploads: true,
    async check({ config }) {
      if (!existsSync(config.path)) return { ok: false, reason: `${config.path} does not exist` };
      for (const file of list(config.path)) {
        const header = text(join(config.path, file)).split('\n')[0] ?? '';
        if (!header.includes(',')) return { ok: false, reason: `${file} has no header line` };
      }
      return list(config.path).length > 0
        ? { ok: true }
        : { ok: false, reason: 'no CSV files in the folder' };
    },
    async discover({ config }) {
      return list(config.path).map((file) => ({
        name: streamName(file),
        fields: (text(join(config.path, file)).split('\n')[0] ?? '')
          .split(',')
          .map((f) => ({ name: f.trim(), type: 'string' as const })),
        primaryKey: [],
        modes: ['full_refresh' as const],
      }));
    },
    async *read({ config, stream, cursor }) {
      const file = list(config.path).find((f) => streamName(f) === stream.name)!;
      const [header, ...lines] = text(join(config.path, file)).split('\n');
      const fields = header!.split(',').map((f) => f.trim());
      const start = typeof cursor === 'number' ? cursor : 0;
      for (let i = start; i < lines.length; i++) {
        if (lines[i]!.trim() === '') continue;
        const cells = lines[i]!.split(',');
        yield {
          type: 'record' as const,
          data: Object.fromEntries(fields.map((f, j) => [f, cells[j] ?? ''])),
          key: `line-${i + 2}`,
        };
      }
      yield { type: 'checkpoint' as const, cursor: lines.length };
    },
  });
}

/**
 * A connector generating `rows` records (`row-0`, … keyed), read incrementally from an offset
 * with a checkpoint every `checkpointEvery` and a pause of `pauseMs` every 20 records: the same
 * records in any process, for tests that kill a run in one process and resume it in another.
 */
export const countingSource = defineSource({
  name: 'counting',
  title: 'Counting',
  config: z.object({
    rows: z.number().int().min(0),
    checkpointEvery: z.number().int().min(1),
    pauseMs: z.number().int().min(0).default(0),
  }),
  async check() {
    return { ok: true };
  },
  async discover() {
    return [
      {
        name: 'numbers',
        fields: ['email', 'n', 'at'].map((name) => ({ name, type: 'string' as const })),
        primaryKey: ['n'],
        modes: ['incremental' as const],
      },
    ];
  },
  async *read({ config, cursor }, ctx) {
    for (let n = typeof cursor === 'number' ? cursor : 0; n < config.rows;) {
      if (ctx.signal.aborted) return;
      if (config.pauseMs > 0 && n % 20 === 0) {
        await new Promise((resolve) => setTimeout(resolve, config.pauseMs));
      }
      yield {
        type: 'record' as const,
        data: {
          email: `person${n % 250}@example.com`,
          n,
          at: new Date(Date.UTC(2024, 0, 1) + n * 60_000).toISOString(),
        },
      };
      n++;
      if (n % config.checkpointEvery === 0 || n === config.rows) {
        yield { type: 'checkpoint' as const, cursor: n };
      }
    }
  },
});
