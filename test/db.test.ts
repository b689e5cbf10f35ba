import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { json, rows, textArray, type Database } from '../src/db/index.ts';
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
});
