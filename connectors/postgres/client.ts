/**
 * The PostgreSQL transport: the configuration, the postgres.js client opened per call (a pool
 * of two connections at most, each a read-only session with a statement timeout), the one way
 * queries run (one statement each, cancelled when the run is stopped), and the one place
 * driver failures become the SDK's error kinds (`failure`). Identifiers are quoted here
 * (`ident`); values only ever travel as parameters.
 */
import postgres from 'postgres';
import { ConfigError, secret, TransientError, z, type PluginContext } from 'audiencehub/sdk';

export const StreamConfig = z
  .object({
    /** The stream's name: a table or view of the schema unless `table` or `query` is given. */
    name: z.string().min(1).max(200),
    /** A table or view of `schema` to read under this name. */
    table: z.string().min(1).optional(),
    /** A SELECT to read as a stream; it runs as a subquery, without parameters. */
    query: z
      .string()
      .trim()
      .min(1)
      .transform((q) => q.replace(/;\s*$/, ''))
      .optional(),
    /** The columns identifying a row: needed for views and queries, which have no constraint. */
    primaryKey: z.array(z.string().min(1)).min(1).optional(),
    /** The column incremental reads follow (a last-modified timestamp, an increasing id). */
    cursorColumn: z.string().min(1).optional(),
  })
  .refine((s) => !(s.table && s.query), {
    message: 'give a table or a query, not both',
    path: ['query'],
  });
export type StreamConfig = z.infer<typeof StreamConfig>;

export const PostgresConfig = z.object({
  host: z.string().trim().min(1),
  port: z.number().int().min(1).max(65_535).default(5432),
  database: z.string().min(1),
  user: z.string().min(1),
  /** Empty for servers that trust the host (or PGPASSWORD in the hub's environment). */
  password: secret(z.string()).optional(),
  /**
   * TLS: `prefer` uses it when the server offers it, `require` insists (without checking the
   * certificate, as libpq's sslmode=require), `verify-full` also checks the certificate and the
   * host name against the system's CAs.
   */
  ssl: z.enum(['disable', 'prefer', 'require', 'verify-full']).default('prefer'),
  /** The schema whose tables and views are the streams. */
  schema: z.string().min(1).default('public'),
  /** Settings for some tables, and extra streams (other names for tables, queries). */
  streams: z
    .array(StreamConfig)
    .default([])
    .refine((streams) => new Set(streams.map((s) => s.name)).size === streams.length, {
      message: 'two streams have the same name',
    }),
  /** Rows per page: each page is one query and one checkpoint. */
  pageSize: z.number().int().min(1).max(100_000).default(5000),
  /** Longest a single query may run before the server cancels it. */
  statementTimeoutMs: z.number().int().min(1000).max(3_600_000).default(60_000),
});
export type PostgresConfig = z.infer<typeof PostgresConfig>;

/** Where the connector connects, for messages: never the password. */
export const where = (config: PostgresConfig) =>
  `${config.user}@${config.host}:${config.port}/${config.database}`;

/** A quoted identifier: `order` → `"order"`, `a"b` → `"a""b"`. */
export const ident = (name: string) => `"${name.replace(/"/g, '""')}"`;

/**
 * Types postgres.js would parse itself (numbers, booleans, dates, JSON, bytea). They arrive as
 * the server's text instead, so ./values.ts decides how each becomes JSON without losing
 * digits or microseconds, and checkpoints keep the exact text to compare against.
 */
const AS_TEXT = [16, 17, 20, 21, 23, 26, 114, 700, 701, 1082, 1114, 1184, 1700, 3802];

/**
 * The session every connection starts: read-only (a query stream cannot change anything), a
 * statement timeout, UTC and ISO output for dates, ISO 8601 intervals, every float digit.
 * They are startup parameters rather than a transaction's settings: postgres.js writes to a
 * dead socket after a backend dies inside `sql.begin()`, an exception nothing can catch
 * (porsager/postgres#1208), so each query runs alone, outside any explicit transaction.
 */
const session = (config: PostgresConfig) => ({
  application_name: 'audiencehub',
  default_transaction_read_only: true,
  statement_timeout: config.statementTimeoutMs,
  TimeZone: 'UTC',
  DateStyle: 'ISO, YMD',
  IntervalStyle: 'iso_8601',
  extra_float_digits: 3,
});

export type Row = Record<string, unknown>;

export interface Db {
  /** Run one SELECT with its parameters. */
  select(text: string, params?: (string | null)[]): Promise<Row[]>;
  /** A query's columns (name and type oid) without running it. */
  describe(text: string): Promise<{ name: string; type: number }[]>;
  close(): Promise<void>;
}

/** A client for one call; `close` it when done. Nothing connects until the first query. */
export function open(config: PostgresConfig, ctx: Pick<PluginContext, 'signal'>): Db {
  const sql = postgres({
    host: config.host,
    port: config.port,
    database: config.database,
    user: config.user,
    password: config.password || undefined,
    ssl: config.ssl === 'disable' ? false : config.ssl,
    // A read is one query at a time; two leave room for check and discover without making an
    // ERP's production database serve many connections to one source.
    max: 2,
    idle_timeout: 20,
    connect_timeout: 10,
    // Unnamed statements only: prepared ones do not survive a transaction-pooling pgbouncer.
    prepare: false,
    onnotice: () => {},
    connection: session(config),
    types: {
      text: {
        to: 25,
        from: AS_TEXT,
        serialize: (x: unknown) => String(x),
        parse: (x: string) => x,
      },
    },
  });
  /** Run `query`, cancelling it when the run is stopped. */
  const run = async <T>(query: Promise<T> & { cancel(): void }): Promise<T> => {
    const cancel = () => query.cancel();
    ctx.signal.addEventListener('abort', cancel, { once: true });
    try {
      return await query;
    } catch (error) {
      throw failure(error, config, ctx.signal);
    } finally {
      ctx.signal.removeEventListener('abort', cancel);
    }
  };

  return {
    async select(text, params = []) {
      ctx.signal.throwIfAborted();
      return (await run(sql.unsafe(text, params))) as Row[];
    },
    async describe(text) {
      ctx.signal.throwIfAborted();
      const described = (await run(
        sql.unsafe(text).describe() as unknown as Promise<unknown> & { cancel(): void },
      )) as {
        columns: { name: string; type: number }[];
      };
      return described.columns.map((c) => ({ name: c.name, type: c.type }));
    },
    // Nothing is in flight when a call closes its client (every query is awaited), and a
    // connection the server killed would hold a graceful end until its timeout.
    close: () => sql.end({ timeout: 0 }),
  };
}

// SQLSTATE classes (https://www.postgresql.org/docs/current/errcodes-appendix.html) worth
// retrying: 08 connection exception, 40 transaction rollback (serialization failure,
// deadlock), 53 insufficient resources (too many connections, disk full), 57 operator
// intervention (shutdown, cancelled by statement_timeout), 58 system error.
const RETRY_CLASSES = new Set(['08', '40', '53', '57', '58']);
// ... and those that need the configuration (or the database's grants) to change: 28 invalid
// authorization, 3D invalid catalog (no such database), 3F invalid schema, 42 syntax error or
// access rule violation (no such table or column, permission denied), 0A not supported; and
// 25006, a query stream that tries to write in the read-only transaction.
const CONFIG_CLASSES = new Set(['28', '3D', '3F', '42', '0A']);

const NETWORK = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'CONNECT_TIMEOUT',
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
]);

const HINTS: Record<string, string> = {
  '28P01': 'check the user and password',
  '28000': 'check the user, and that the server lets it connect from here',
  '3D000': 'check the database name',
  '25006': 'a query stream may only read',
  '42501': 'grant the user SELECT on it',
  '42P01': 'check the schema and the table or view name',
  '42703': 'check the column names in the stream settings',
  '57014':
    'the query ran past statementTimeoutMs: index the cursor and key columns, or lower pageSize',
};

/**
 * A driver failure as the SDK's error kind, with a message naming the server (never the
 * password) and the server's own message: ConfigError for what only a change of settings or
 * grants fixes, TransientError for what may pass, else a plain Error. An aborted run keeps its
 * abort reason.
 *
 * @example
 * // a PostgresError { code: '42501', message: 'permission denied for table payment' } →
 * failure(error, config);
 * // ConfigError: PostgreSQL (reader@erp:5432/erp): permission denied for table payment
 * // (42501): grant the user SELECT on it.
 */
export function failure(error: unknown, config: PostgresConfig, signal?: AbortSignal): Error {
  if (signal?.aborted) return signal.reason instanceof Error ? signal.reason : new Error('aborted');
  if (error instanceof ConfigError || error instanceof TransientError) return error;
  const e = (error ?? {}) as { name?: string; code?: unknown; message?: unknown };
  const code = typeof e.code === 'string' ? e.code : '';
  const said = typeof e.message === 'string' ? e.message : String(error);
  if (e.name === 'PostgresError' && /^[0-9A-Z]{5}$/.test(code)) {
    const hint = HINTS[code];
    const message = `PostgreSQL (${where(config)}): ${said} (${code})${hint ? `: ${hint}` : ''}.`;
    const kind = code.slice(0, 2);
    if (RETRY_CLASSES.has(kind)) return new TransientError(message);
    if (CONFIG_CLASSES.has(kind) || code === '25006') return new ConfigError(message);
    return new Error(message);
  }
  const at = `${config.host}:${config.port}`;
  if (NETWORK.has(code)) {
    return new TransientError(
      `PostgreSQL at ${at} could not be reached or dropped the connection (${code}).`,
    );
  }
  if (code === 'ENOTFOUND')
    return new ConfigError(`PostgreSQL host ${config.host} not found (ENOTFOUND).`);
  if (/CERT|SSL|TLS|EPROTO/.test(code) || /ssl|tls|certificate/i.test(said)) {
    return new ConfigError(
      `PostgreSQL at ${at}: TLS failed: ${said}${code ? ` (${code})` : ''}: check the ssl setting.`,
    );
  }
  return new Error(`PostgreSQL at ${at}: ${said}${code ? ` (${code})` : ''}.`);
}
