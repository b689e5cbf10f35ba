import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import {
  inOrder,
  json,
  preparedRows,
  rows,
  textArray,
  withRetry,
  type Database,
} from '../src/db/index.ts';
import { pipelines } from '../src/db/drivers/capabilities.ts';
import { testDatabase, driver } from './support/db.ts';

describe(`database (${driver})`, () => {
  let database: Database;
  beforeAll(async () => {
    database = await testDatabase();
  });
  afterAll(() => database.close());

  it('applies the migrations', async () => {
    const tables = await rows<{ table_name: string }>(
      database.db,
      sql`select table_name from information_schema.tables where table_schema = 'public' order by 1`,
    );
    expect(tables.map((t) => t.table_name)).toContain('profiles');
    expect(tables.map((t) => t.table_name)).toContain('events');
  });

  it('passes arrays and json as single parameters', async () => {
    const r = await rows<{ n: number; j: string }>(
      database.db,
      sql`select cardinality(${textArray(['a', 'b', 'c'])}) as n, (${json([{ x: 1 }])} -> 0 ->> 'x') as j`,
    );
    expect(r[0]).toEqual({ n: 3, j: '1' });
  });

  it('runs statements of a transaction in the order given, pipelined on PostgreSQL', async () => {
    const seen = await withRetry(database.db, async (tx) => {
      expect(pipelines(tx)).toBe(driver === 'postgres');
      await tx.execute(sql`create temporary table steps (n int) on commit drop`);
      const step = (n: number) => () =>
        preparedRows<{ before: number }>(
          tx,
          sql`with i as (insert into steps values (${n}::int) returning n)
              select (select count(*)::int from steps) as before from i`,
        );
      const results = await inOrder(tx, [step(1), step(2), step(3), step(4)]);
      return results.map(([r]) => r!.before);
    });
    // Each statement saw every one sent before it, and none sent after.
    expect(seen).toEqual([0, 1, 2, 3]);
  });

  it('fails the transaction, and the statements after, when one pipelined statement fails', async () => {
    await database.db.execute(sql`create table if not exists pipelined (n int primary key)`);
    await expect(
      withRetry(database.db, (tx) =>
        inOrder(tx, [
          () => tx.execute(sql`insert into pipelined values (1)`),
          () => tx.execute(sql`select 1 / 0`),
          () => tx.execute(sql`insert into pipelined values (2)`),
        ]),
      ),
    ).rejects.toThrow();
    const [row] = await rows<{ n: number }>(
      database.db,
      sql`select count(*)::int as n from pipelined`,
    );
    expect(row!.n).toBe(0);
  });

  it('runs each withRetry as one transaction, committed whole or rolled back whole', async () => {
    await database.db.execute(sql`create table if not exists whole (n int primary key)`);
    // More transactions than the pool has connections: each gives its connection back.
    for (let n = 0; n < 20; n++) {
      const ids = await withRetry(database.db, async (tx) => {
        const [a] = await rows<{ id: string }>(tx, sql`select txid_current()::text as id`);
        await tx.execute(sql`insert into whole values (${n}::int)`);
        const [b] = await rows<{ id: string }>(tx, sql`select txid_current()::text as id`);
        return [a!.id, b!.id];
      });
      expect(ids[0]).toBe(ids[1]);
    }
    await expect(
      withRetry(database.db, async (tx) => {
        await tx.execute(sql`insert into whole values (100)`);
        throw new Error('changed my mind');
      }),
    ).rejects.toThrow('changed my mind');
    // A statement that fails aborts the rest, and the connection is usable afterwards.
    await expect(
      withRetry(database.db, async (tx) => {
        await tx.execute(sql`insert into whole values (101)`);
        await tx.execute(sql`insert into whole values (0)`);
      }),
    ).rejects.toThrow();
    const [row] = await rows<{ n: number; top: number }>(
      database.db,
      sql`select count(*)::int as n, max(n)::int as top from whole`,
    );
    expect(row).toEqual({ n: 20, top: 19 });
  });

  it('plans kept-prepared statements for each execution on PostgreSQL', async () => {
    const mode = async () => {
      const [row] = await preparedRows<{ mode: string }>(
        database.db,
        sql`select current_setting('plan_cache_mode') as mode, ${1}::int as one`,
      );
      return row!.mode;
    };
    // A plan made once would be kept while the tables grow; see openPostgres.
    expect(await mode()).toBe(driver === 'postgres' ? 'force_custom_plan' : 'auto');
  });
});
