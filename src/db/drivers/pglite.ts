import { mkdirSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import { drizzle } from 'drizzle-orm/pglite';
import { migrate } from 'drizzle-orm/pglite/migrator';
import * as schema from '../schema.ts';
import { migrationsFolder } from '../migrations-folder.ts';
import type { Database, Db } from '../types.ts';
import { markOneAtATime } from './capabilities.ts';

/**
 * Embedded PostgreSQL (PGlite). `dataDir` undefined keeps everything in memory (tests).
 *
 * @example
 * const database = await openPglite('./data/pglite');
 * await database.migrate();
 */
export async function openPglite(dataDir?: string): Promise<Database> {
  if (dataDir) mkdirSync(dataDir, { recursive: true });
  const client = await PGlite.create(dataDir);
  const db = drizzle(client, { schema }) as unknown as Db;
  markOneAtATime(db);
  return {
    db,
    driver: 'pglite',
    async executeSql(text, values = []) {
      if (values.length > 0) return client.query<Record<string, unknown>>(text, values);
      const results = await client.exec(text);
      return { rows: (results.at(-1)?.rows ?? []) as Record<string, unknown>[] };
    },
    // PGlite is one connection in one process: nothing else can migrate concurrently.
    migrate: () => migrate(drizzle(client, { schema }), { migrationsFolder }),
    close: () => client.close(),
  };
}
