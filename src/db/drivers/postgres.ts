import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { drizzle } from 'drizzle-orm/postgres-js';
import { migrate } from 'drizzle-orm/postgres-js/migrator';
import * as schema from '../schema.ts';
import { migrationsFolder } from '../migrations-folder.ts';
import type { Database, Db } from '../types.ts';
import { markPipelining } from './capabilities.ts';
import { MARKER } from '../../../scripts/patch-postgres.mjs';

/** An arbitrary constant: every hub process migrating the same database takes this lock first. */
const MIGRATION_LOCK = 7_146_513_220_114_081n;

export interface PostgresOptions {
  /** Pool size; defaults to 10. */
  max?: number;
}

/**
 * PostgreSQL through postgres.js.
 *
 * @example
 * const database = openPostgres('postgres://127.0.0.1:5432/audiencehub');
 * await database.migrate();
 */
export function openPostgres(url: string, options: PostgresOptions = {}): Database {
  const client = postgres(url, {
    max: options.max ?? 10,
    onnotice: () => {},
    // Statements kept prepared (preparedRows) are planned for each execution, as unprepared
    // ones are: a plan made once, while a table was small, would be kept as it grows (a lookup
    // of a few identities planned as a scan of all of them).
    connection: { plan_cache_mode: 'force_custom_plan' },
  });
  const db = drizzle(client, { schema }) as unknown as Db;
  markPipelining(db);
  return {
    db,
    driver: 'postgres',
    async executeSql(text, values = []) {
      // Without parameters the simple protocol runs every statement; the last one's rows count.
      const result = await client.unsafe(text, values as postgres.ParameterOrJSON<never>[]);
      const last = Array.isArray(result[0]) ? result.at(-1) : result;
      return { rows: [...(last as unknown as Record<string, unknown>[])] };
    },
    async migrate() {
      // A dedicated connection, so the session-level advisory lock and the migration share it.
      const one = postgres(url, { max: 1, onnotice: () => {} });
      try {
        await one`select pg_advisory_lock(${MIGRATION_LOCK.toString()}::bigint)`;
        await migrate(drizzle(one, { schema }), { migrationsFolder });
        await one`select pg_advisory_unlock(${MIGRATION_LOCK.toString()}::bigint)`;
      } finally {
        await one.end();
      }
    },
    close: () => client.end({ timeout: 5 }),
  };
}

/**
 * Whether postgres.js carries the fixes scripts/patch-postgres.mjs makes after every install.
 * An install run with `--ignore-scripts` leaves them out: then a lost database connection can
 * end the hub's process, and the hub says so when it starts.
 *
 * @param folder the folder of postgres.js's ESM build (the one this process loads) by default.
 */
export function postgresJsPatched(
  folder = fileURLToPath(new URL('.', import.meta.resolve('postgres'))),
): boolean {
  try {
    return ['index.js', 'connection.js'].every((file) =>
      readFileSync(join(folder, file), 'utf8').includes(MARKER),
    );
  } catch {
    return false;
  }
}
