/**
 * A lost database connection (PostgreSQL restarting, a backend terminated, the network failing)
 * fails what was in flight and nothing else: the process lives on and the pool reconnects.
 * PostgreSQL only: PGlite runs in this process and has no connection to lose.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MARKER } from '../scripts/patch-postgres.mjs';
import { isConnectionLoss, type Database } from '../src/db/index.ts';
import { databaseUrlOf, driver, testDatabase } from './support/db.ts';

const onPostgres = driver === 'postgres' ? describe : () => {};

/** End every session of `database` but the caller's own; how many were ended. */
async function terminateAll(admin: postgres.Sql, database: string): Promise<number> {
  const [row] = await admin<{ n: number }[]>`
    select count(*) filter (where pg_terminate_backend(pid))::int as n
    from pg_stat_activity where datname = ${database} and pid <> pg_backend_pid()`;
  return row!.n;
}

const settled = <T>(p: Promise<T>) =>
  p.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );

describe('a connection loss', () => {
  const wrapped = (cause: object) =>
    Object.assign(new Error('Failed query: select 1'), {
      cause: Object.assign(new Error(), cause),
    });

  it('is told from a statement that failed', () => {
    for (const code of ['CONNECTION_CLOSED', 'ECONNRESET', '57P01', '08006', 'CONNECT_TIMEOUT']) {
      expect(isConnectionLoss(wrapped({ code })), code).toBe(true);
    }
    for (const code of ['23505', '40P01', '57014', '42P01', 'ERR_INVALID_ARG_TYPE']) {
      expect(isConnectionLoss(wrapped({ code })), code).toBe(false);
    }
    expect(isConnectionLoss(new Error('no code'))).toBe(false);
    expect(isConnectionLoss('CONNECTION_CLOSED')).toBe(false);
  });
});

describe('the postgres.js connection-loss guard', () => {
  it('is installed in both builds Node may load', () => {
    const src = fileURLToPath(new URL('.', import.meta.resolve('postgres')));
    for (const file of [
      'index.js',
      'connection.js',
      '../cjs/src/index.js',
      '../cjs/src/connection.js',
    ]) {
      expect(readFileSync(join(src, file), 'utf8'), file).toContain(MARKER);
    }
  });
});

onPostgres('a lost connection', () => {
  let database: Database;
  let url: string;
  let name: string;
  let admin: postgres.Sql;

  /** A pool of its own for each test: the sessions one test ends are not the next one's. */
  async function withClient(fn: (client: postgres.Sql) => Promise<void>) {
    const client = postgres(url, { max: 2, onnotice: () => {} });
    try {
      await fn(client);
    } finally {
      await client.end({ timeout: 1 });
    }
  }

  beforeAll(async () => {
    database = await testDatabase();
    url = (await databaseUrlOf(database.db))!;
    name = new URL(url).pathname.slice(1);
    admin = postgres(process.env.DATABASE_URL!, { max: 1, onnotice: () => {} });
  });

  afterAll(async () => {
    await admin?.end();
    await database?.close();
  });

  it('fails its transaction, statements sent after the loss included, and the pool goes on', async () => {
    await withClient(async (client) => {
      const outcome = await settled(
        client.begin(async (tx) => {
          await tx`select 1`;
          expect(await terminateAll(admin, name)).toBeGreaterThan(0);
          // Wait until the client has seen the connection close, then use it: unguarded, the
          // statement (or the rollback after it) is written to a socket that is gone.
          await new Promise((resolve) => setTimeout(resolve, 200));
          await tx`select 2`;
        }),
      );
      expect(outcome.ok).toBe(false);
      expect(isConnectionLoss(outcome.ok ? null : outcome.error)).toBe(true);
      const [row] = await client<{ n: number }[]>`select 41 + 1 as n`;
      expect(row!.n).toBe(42);
    });
  });

  it('fails the statements in flight in a transaction, and its rollback, without ending the process', async () => {
    await withClient(async (client) => {
      const outcome = await settled(
        client.begin(async (tx) => {
          await tx`select 1`;
          // Two statements in flight when the backend goes: one gets its error, the other is
          // failed by the close, and postgres.js then sends the rollback.
          const slow = [tx`select pg_sleep(5)`, tx`select 2`];
          await terminateAll(admin, name);
          await Promise.all(slow);
        }),
      );
      expect(outcome.ok).toBe(false);
      expect(isConnectionLoss(outcome.ok ? null : outcome.error)).toBe(true);
      expect((await client`select 1 as one`)[0]!.one).toBe(1);
    });
  });
});
