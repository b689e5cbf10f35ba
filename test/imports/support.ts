/**
 * What the import suites share: a source connector over in-memory tables (defined with
 * `defineSource`, as a real one is), and a hub's import deps over a fresh database.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Principal } from '../../src/auth/credentials.ts';
import { secretBox } from '../../src/destinations/secrets.ts';
import type { ImportDeps } from '../../src/imports/deps.ts';
import { createLogger, type Logger } from '../../src/log.ts';
import { ConfigError, defineSource, secret, z, type Cursor } from '../../src/sdk/index.ts';
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
  connectors: ReturnType<typeof tableSource>['connector'][],
  logs: string[] = [],
): ImportDeps & { log: Logger } {
  const registry = createConnectorRegistry();
  for (const c of connectors) registry.register(c);
  return {
    connectors: registry,
    box: secretBox(randomBytes(32)),
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
