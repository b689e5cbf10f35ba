import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import type { Principal } from '../../src/auth/credentials.ts';
import type { Database, Db } from '../../src/db/index.ts';
import { uuidv7 } from '../../src/ids.ts';
import { runError } from '../../src/segments/compute.ts';
import { createSegment, updateSegment, type CreateSegment } from '../../src/segments/store.ts';
import { driver, testDatabase } from '../support/db.ts';

let database: Database;
let db: Db;
const alice: Principal = { tokenId: uuidv7(), name: 'alice', role: 'marketer' };
const bob: Principal = { tokenId: uuidv7(), name: 'bob', role: 'marketer' };
const admin: Principal = { tokenId: uuidv7(), name: 'admin', role: 'admin' };
const limits = { maxPerOwner: 50 };

beforeAll(async () => {
  database = await testDatabase();
  db = database.db;
});
afterAll(() => database.close());

const input = (name: string, rules: unknown, extra: Partial<CreateSegment> = {}) =>
  ({ name, description: '', type: 'dynamic', visibility: 'private', rules, ...extra }) as const;

describe(`segment definitions (${driver})`, () => {
  it("refuses a reference to someone else's private segment as if it did not exist", async () => {
    const secret = await createSegment(
      db,
      alice,
      input('secret', { trait: { name: 'vip', op: 'exists' } }),
      limits,
    );
    const probe = createSegment(db, bob, input('probe', { segment: { id: secret.id } }), limits);
    await expect(probe).rejects.toMatchObject({
      status: 400,
      errors: [{ field: 'rules.segment.id', message: `no segment with id ${secret.id}` }],
    });
    // Its owner and admins may reference it; a shared one anybody may.
    await expect(
      createSegment(db, alice, input('mine', { segment: { id: secret.id } }), limits),
    ).resolves.toMatchObject({ name: 'mine' });
    await expect(
      createSegment(db, admin, input('audit', { segment: { id: secret.id } }), limits),
    ).resolves.toMatchObject({ name: 'audit' });
    const open = await createSegment(
      db,
      alice,
      input('open', { trait: { name: 'vip', op: 'exists' } }, { visibility: 'shared' }),
      limits,
    );
    await expect(
      createSegment(db, bob, input('uses-open', { segment: { id: open.id } }), limits),
    ).resolves.toMatchObject({ name: 'uses-open' });
  });

  it('does not recompute when the same rules come back with their keys in another order', async () => {
    const rules = { trait: { name: 'plan', op: 'eq', value: 'pro' } };
    const s = await createSegment(db, alice, input('plans', rules), limits);
    const same = await updateSegment(db, alice, s.id, {
      rules: { trait: { value: 'pro', op: 'eq', name: 'plan' } },
    });
    expect(same.recompute).toBe(false);
    const other = await updateSegment(db, alice, s.id, {
      rules: { trait: { value: 'team', op: 'eq', name: 'plan' } },
    });
    expect(other.recompute).toBe(true);
  });
});

describe(`what a failed run records (${driver})`, () => {
  it("keeps the database's reason and never the statement's parameters", async () => {
    const secret = 'jane.doe@example.com';
    const error = await db
      .execute(sql`select ${secret}::int`)
      .then(() => null)
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Error);
    const recorded = runError(error);
    expect(recorded).toMatch(/invalid input syntax for type integer/);
    expect(recorded).not.toContain('params');
    // The database quotes the bad value in its message; nothing else of the query is kept.
    expect(recorded).not.toContain('select');
  });
});
