import { join } from 'node:path';
import { sql, type SQL } from 'drizzle-orm';
import type { PgDialect, PgSession } from 'drizzle-orm/pg-core';
import { openPglite } from './drivers/pglite.ts';
import { openPostgres } from './drivers/postgres.ts';
import { markPipelining, pipelines } from './drivers/capabilities.ts';
import type { Database, Db } from './types.ts';

export type { Database, Db, Tx, DriverName } from './types.ts';
export * as schema from './schema.ts';

export interface OpenDatabaseOptions {
  /** When set, PostgreSQL at this URL; otherwise embedded PGlite. */
  databaseUrl?: string;
  /** Where PGlite keeps its files; ignored for PostgreSQL. */
  dataDir: string;
}

/** Open the hub's database: PostgreSQL when a URL is given, embedded PGlite otherwise. */
export async function openDatabase(options: OpenDatabaseOptions): Promise<Database> {
  if (options.databaseUrl) return openPostgres(options.databaseUrl);
  return openPglite(join(options.dataDir, 'pglite'));
}

/**
 * Run a raw statement and return its rows, whatever the driver's result shape.
 */
export async function rows<T>(db: Db, query: SQL): Promise<T[]> {
  return rowsOf<T>(await db.execute(query));
}

/** The rows of a driver's answer: postgres.js answers an array, PGlite an object with `rows`. */
function rowsOf<T>(result: unknown): T[] {
  const answer = result as T[] | { rows: T[] };
  return Array.isArray(answer) ? answer : answer.rows;
}

/**
 * {@link rows} for the few statements every ingested batch runs, kept prepared on each
 * connection of a driver that prepares (postgres.js). Unprepared, postgres.js asks the server
 * for the types of a statement's parameters before it sends them: a round trip of its own, which
 * also holds back the statements pipelined behind it (see {@link inOrder}). Only for statements
 * whose text is one of a few fixed ones: each text is kept prepared on every connection.
 */
export async function preparedRows<T>(db: Db, query: SQL): Promise<T[]> {
  const { dialect, session } = db as unknown as { dialect: PgDialect; session: PgSession };
  const prepared = session.prepareQuery(dialect.sqlToQuery(query), undefined, 'prepared', false);
  return rowsOf<T>(await prepared.execute());
}

/**
 * A value as one json parameter. Bulk statements pass their rows this way
 * (`json_to_recordset(${json(rows)})`): one parameter whatever the row count, the same on
 * both drivers (drizzle would spread a JS array into a list of parameters).
 */
export function json(value: unknown): SQL {
  // json, not jsonb: the document is only unpacked, so the cheaper parse is enough.
  return sql`${JSON.stringify(value)}::json`;
}

/** A `text[]` built from one json parameter. */
export function textArray(values: readonly string[]): SQL {
  return sql`array(select json_array_elements_text(${JSON.stringify(values)}::json))`;
}

/** A `uuid[]` built from one json parameter. */
export function uuidArray(values: readonly string[]): SQL {
  return sql`array(select json_array_elements_text(${JSON.stringify(values)}::json)::uuid)`;
}

/**
 * Run statements of a transaction in order. In a transaction begun by {@link withRetry} on a
 * driver that pipelines (postgres.js), each is sent without waiting for the one before to be
 * answered, so together they cost one round trip; otherwise they run one after another. A
 * failed statement aborts the transaction, and those after it fail too.
 *
 * @example
 * const [, epoch] = await inOrder(tx, [() => holdIngestHorizon(tx), () => readProfileEpoch(tx)]);
 */
export async function inOrder<T extends readonly unknown[]>(
  tx: Db,
  steps: { [K in keyof T]: () => Promise<T[K]> },
): Promise<T> {
  if (pipelines(tx))
    return Promise.all(steps.map((step) => step())) as Promise<unknown> as Promise<T>;
  const results: unknown[] = [];
  for (const step of steps) results.push(await step());
  return results as unknown as T;
}

/** PostgreSQL error codes worth retrying a whole transaction for. */
const RETRYABLE = new Set(['40001', '40P01']);

/**
 * The `code` of an error and of the errors it wraps, outermost first: drizzle wraps driver errors
 * in `cause`, and a connection that tried several addresses fails with an AggregateError.
 */
export function* errorCodes(error: unknown): Generator<string> {
  let e: unknown = error;
  for (let i = 0; i < 5 && e && typeof e === 'object'; i++) {
    if (e instanceof AggregateError && e.errors.length > 0) e = e.errors[0] as unknown;
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') yield code;
    e = (e as { cause?: unknown }).cause;
  }
}

/** The SQLSTATE of a driver error, if it has one. */
export function pgCode(error: unknown): string | undefined {
  for (const code of errorCodes(error)) if (/^[0-9A-Z]{5}$/.test(code)) return code;
  return undefined;
}

/** postgres.js's own codes, and the socket errors, for a connection that is gone. */
const CONNECTION_LOST = new Set([
  'CONNECTION_CLOSED',
  'CONNECTION_DESTROYED',
  'CONNECTION_ENDED',
  'CONNECT_TIMEOUT',
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
]);

/**
 * Whether `error` says the database could not be reached or dropped the connection (it is
 * restarting, shutting down, or the network failed), rather than that a statement was wrong.
 * What was sent may or may not have been committed; sending it again later is the remedy.
 *
 * @example
 * if (isConnectionLoss(error)) c.header('Retry-After', '1'); // and answer 503
 */
export function isConnectionLoss(error: unknown): boolean {
  for (const code of errorCodes(error)) {
    // SQLSTATE class 08 (connection exception), 57P01-57P03 (shutdown, crash, starting up).
    if (CONNECTION_LOST.has(code) || code.startsWith('08') || /^57P0[123]$/.test(code)) return true;
  }
  return false;
}

/**
 * Run `fn` in a transaction, retrying it when PostgreSQL aborts it for a deadlock or a
 * serialisation failure, or when `fn` throws a {@link RetryTransaction}.
 */
export async function withRetry<T>(db: Db, fn: (tx: Db) => Promise<T>, attempts = 8): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await db.transaction((tx) => {
        // Its statements may be pipelined as the database's may (see inOrder).
        if (pipelines(db)) markPipelining(tx);
        return fn(tx as unknown as Db);
      });
    } catch (error) {
      const retryable = error instanceof RetryTransaction || RETRYABLE.has(pgCode(error) ?? '');
      if (!retryable || attempt >= attempts) throw error;
      await new Promise((r) => setTimeout(r, Math.random() * 10 * attempt));
    }
  }
}

/** Thrown inside {@link withRetry} when what was read changed under the transaction. */
export class RetryTransaction extends Error {
  constructor(reason: string) {
    super(`transaction must be retried: ${reason}`);
  }
}
