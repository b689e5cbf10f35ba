/**
 * A lost database connection (PostgreSQL restarting, a backend terminated, the network failing)
 * fails what was in flight and nothing else: the process lives on, the pool reconnects, the API
 * answers 503 with Retry-After, and a client that sends its batches again has every message
 * stored once. PostgreSQL only: PGlite runs in this process and has no connection to lose.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MARKER } from '../scripts/patch-postgres.mjs';
import { testConfig } from '../src/config.ts';
import { postgresJsPatched } from '../src/db/drivers/postgres.ts';
import { isConnectionLoss, rows, type Database } from '../src/db/index.ts';
import { createLogger } from '../src/log.ts';
import { startHub, type HubHandle } from '../src/server.ts';
import { sql } from 'drizzle-orm';
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
    const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    expect(isConnectionLoss(wrapped({ cause: new AggregateError([refused]) }))).toBe(true);
    expect(isConnectionLoss(new Error('no code'))).toBe(false);
    expect(isConnectionLoss('CONNECTION_CLOSED')).toBe(false);
  });
});

describe('the postgres.js connection-loss guard', () => {
  it('is told missing, so that the hub can warn', () => {
    const folder = mkdtempSync(join(tmpdir(), 'ah-postgres-'));
    try {
      writeFileSync(join(folder, 'index.js'), `// ${MARKER}`);
      writeFileSync(join(folder, 'connection.js'), '// as published');
      expect(postgresJsPatched(folder)).toBe(false);
      writeFileSync(join(folder, 'connection.js'), `// ${MARKER}`);
      expect(postgresJsPatched(folder)).toBe(true);
      expect(postgresJsPatched(join(folder, 'nowhere'))).toBe(false);
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
    expect(postgresJsPatched()).toBe(true);
  });

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

  describe('while the hub stores events', () => {
    const writeKey = `ahw_${'k'.repeat(32)}`;
    let hub: HubHandle;
    const logged: string[] = [];

    beforeAll(async () => {
      const config = testConfig({
        port: 0,
        databaseUrl: url,
        initialWriteKey: writeKey,
        initialAdminToken: `aht_${'a'.repeat(32)}`,
      });
      hub = await startHub(
        config,
        createLogger('warn', {}, (line) => logged.push(line)),
        { print: () => {} },
      );
    });

    afterAll(async () => {
      await hub?.close();
    });

    it('answers 503 while the database is gone, and a client that retries has every message once', async () => {
      const auth = `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`;
      const batchOf = (b: number) => ({
        batch: Array.from({ length: 100 }, (_, i) => ({
          type: 'track',
          event: 'Product Viewed',
          userId: `user-${(b * 37 + i) % 400}`,
          anonymousId: `device-${(b * 11 + i) % 600}`,
          messageId: `loss-${b}-${i}`,
        })),
      });
      const send = (b: number) =>
        fetch(`${hub.url}/v1/batch`, {
          method: 'POST',
          headers: { authorization: auth, 'content-type': 'application/json' },
          body: JSON.stringify(batchOf(b)),
        });

      let next = 0;
      let stop = false;
      const failed: number[] = [];
      const statuses = new Map<number, number>();
      const unavailable: Response[] = [];
      const sender = async () => {
        while (!stop) {
          const b = next++;
          const response = await send(b);
          statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
          if (response.status !== 200) {
            failed.push(b);
            if (response.status === 503) unavailable.push(response);
            else throw new Error(`${response.status}: ${await response.text()}`);
          } else {
            await response.arrayBuffer();
          }
        }
      };
      const senders = Array.from({ length: 4 }, sender);
      for (let round = 0; round < 4; round++) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        await terminateAll(admin, name);
      }
      stop = true;
      await Promise.all(senders);

      // Only 200s and 503s; at least one batch met the loss, and was told to come back.
      expect([...statuses.keys()].every((s) => s === 200 || s === 503)).toBe(true);
      expect(unavailable.length).toBeGreaterThan(0);
      const problem = unavailable[0]!;
      expect(problem.headers.get('content-type')).toBe('application/problem+json');
      expect(problem.headers.get('retry-after')).toBe('1');
      expect(await problem.json()).toMatchObject({
        status: 503,
        type: 'urn:audiencehub:problem:database-unavailable',
      });
      expect(logged.some((line) => line.includes('"database unavailable"'))).toBe(true);

      // The client sends again what was not acknowledged, as told (a connection of the pool
      // that was ended while idle fails the first statement sent down it); each lands once.
      for (const b of failed) {
        let status = 0;
        for (let attempt = 0; attempt < 5 && status !== 200; attempt++) {
          if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 100));
          const response = await send(b);
          status = response.status;
          expect([200, 503]).toContain(status);
          await response.arrayBuffer();
        }
        expect(status).toBe(200);
      }
      const [stored] = await rows<{ events: number; ids: number }>(
        database.db,
        sql`select count(*)::int as events, count(distinct message_id)::int as ids
            from events where message_id like 'loss-%'`,
      );
      expect(stored).toEqual({ events: next * 100, ids: next * 100 });
    });
  });
});
