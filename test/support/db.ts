import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { openPglite } from '../../src/db/drivers/pglite.ts';
import { openPostgres } from '../../src/db/drivers/postgres.ts';
import { sql } from 'drizzle-orm';
import { rows, type Database, type Db } from '../../src/db/index.ts';

/** The driver this test run uses: PostgreSQL when DATABASE_URL is set, PGlite otherwise. */
export const driver = process.env.DATABASE_URL ? 'postgres' : 'pglite';

/**
 * A fresh, migrated database that belongs to one suite: an in-memory PGlite, or a new database
 * on the server named by DATABASE_URL, dropped again by `close()`.
 */
export async function testDatabase(): Promise<Database> {
  const url = process.env.DATABASE_URL;
  if (!url) {
    const database = await openPglite();
    await database.migrate();
    return database;
  }
  const name = `ah_test_${randomBytes(6).toString('hex')}`;
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  const target = new URL(url);
  target.pathname = `/${name}`;
  const database = openPostgres(target.toString(), { max: 8 });
  await database.migrate();
  return {
    ...database,
    async close() {
      await database.close();
      await admin.unsafe(`drop database if exists ${name} with (force)`);
      await admin.end();
    },
  };
}

/**
 * The URL of a suite's own database on PostgreSQL, for what opens its own connections there
 * (pg-boss, a second hub process); undefined on PGlite.
 */
export async function databaseUrlOf(db: Db): Promise<string | undefined> {
  if (!process.env.DATABASE_URL) return undefined;
  const [row] = await rows<{ db: string }>(db, sql`select current_database() as db`);
  const url = new URL(process.env.DATABASE_URL);
  url.pathname = `/${row!.db}`;
  return url.toString();
}
