import type { PgDatabase, PgQueryResultHKT, PgTransaction } from 'drizzle-orm/pg-core';
import type { ExtractTablesWithRelations } from 'drizzle-orm';
import type * as schema from './schema.ts';

/** The database every domain function receives, whichever driver is underneath. */
export type Db = PgDatabase<PgQueryResultHKT, typeof schema>;

/** A transaction; it can stand wherever a `Db` is expected. */
export type Tx = PgTransaction<
  PgQueryResultHKT,
  typeof schema,
  ExtractTablesWithRelations<typeof schema>
>;

export type DriverName = 'pglite' | 'postgres';

/** An open database: the drizzle handle plus what only the process that opened it may do. */
export interface Database {
  db: Db;
  driver: DriverName;
  /**
   * Run raw SQL text with positional parameters on the same client (for libraries that bring
   * their own SQL, such as the job queue). Text without parameters may hold several statements;
   * the rows are the last statement's.
   */
  executeSql(text: string, values?: unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
  /** Apply pending migrations (serialised across processes on PostgreSQL). */
  migrate(): Promise<void>;
  close(): Promise<void>;
}
