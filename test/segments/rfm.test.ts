import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { testConfig } from '../../src/config.ts';
import { json, rows, type Database, type Db } from '../../src/db/index.ts';
import { computeRfm } from '../../src/segments/rfm.ts';
import { driver, testDatabase } from '../support/db.ts';
import { profileOf, send } from '../support/ingest.ts';

let database: Database;
let db: Db;

beforeAll(async () => {
  database = await testDatabase();
  db = database.db;
});
afterAll(() => database.close());
beforeEach(async () => {
  await db.execute(
    sql`truncate profiles, identities, traits, events, profile_event_counts, merges restart identity`,
  );
});

const id = (letter: string) => `00000000-0000-4000-8000-00000000000${letter}`;
const A = id('a');
const B = id('b');
const C = id('c');
const D = id('d');
const E = id('e');
const G = id('f'); // a tombstone merged into A
const H = id('1'); // live, no purchase event at all
const I = id('2'); // live, purchases only after asOf
const J = id('3'); // live, events without revenue

const asOf = new Date('2024-06-30T00:00:00Z');

interface Ev {
  profile: string;
  at: string;
  name?: string;
  revenue: number | null;
  properties?: Record<string, unknown>;
}

let messageSeq = 0;
async function insertEvents(events: Ev[]) {
  const data = events.map((e) => ({
    profile_id: e.profile,
    message_id: `m-${++messageSeq}`,
    name: e.name ?? 'Order Completed',
    properties: e.properties ?? {},
    revenue: e.revenue,
    ts: e.at,
  }));
  await db.execute(
    sql`insert into events (profile_id, source, message_id, type, name, properties, revenue,
          "timestamp", received_at)
        select profile_id, 'test', message_id, 'track', name, properties, revenue, ts, now()
        from json_to_recordset(${json(data)})
          as r(profile_id uuid, message_id text, name text, properties jsonb, revenue numeric,
               ts timestamptz)`,
  );
}

/**
 * Purchasers and their raw values as of 2024-06-30T00:00Z (n = 5):
 *   A: last 06-29 12:00 (0 days), orders {o1 (two events), t2} = 2, 10 + 5 + 20 = 35
 *   B: last 06-29 00:00 (1 day), two events without order ids = 2 orders, 0 + 35 = 35
 *   C: last 06-28 23:00 (25 h: 1 day), 1 order, 100
 *   D: last 01-01 (181 days), 1 order, 1 (its 1,000 on 07-05 is after asOf)
 *   E: last 05-20 (41 days), 3 orders, 150
 * Scores ceil(5k/n), k = purchasers ranked at or below, ties included:
 *   R (days desc): D 181 → 1, E 41 → 2, B and C 1 → 4, A 0 → 5
 *   F (asc): C and D 1 → 2, A and B 2 → 4, E 3 → 5
 *   M (asc): D 1 → 1, A and B 35 → 3, C 100 → 4, E 150 → 5
 */
async function handBuilt() {
  await db.execute(
    sql`insert into profiles (id, kind, merged_into, merged_at)
        select id, 'customer', merged_into, case when merged_into is null then null else now() end
        from json_to_recordset(${json([A, B, C, D, E, G, H, I, J].map((p) => ({ id: p, merged_into: p === G ? A : null })))})
          as r(id uuid, merged_into uuid)`,
  );
  // Stale scores from an earlier run: must be cleared on the tombstone and the non-buyer.
  await db.execute(
    sql`update profiles set rfm_recency = 3, rfm_frequency = 3, rfm_monetary = 3,
          rfm_as_of = '2024-01-01T00:00:00Z' where id in (${G}, ${H})`,
  );
  await insertEvents([
    { profile: A, at: '2024-06-29T12:00:00Z', revenue: 10, properties: { order_id: 'o1' } },
    { profile: A, at: '2024-06-29T11:00:00Z', revenue: 5, properties: { order_id: 'o1' } },
    {
      profile: A,
      at: '2024-06-01T00:00:00Z',
      name: 'purchase',
      revenue: 20,
      properties: { transaction_id: 't2' },
    },
    { profile: A, at: '2024-06-29T20:00:00Z', name: 'Product Viewed', revenue: null },
    { profile: B, at: '2024-06-29T00:00:00Z', revenue: 0 },
    { profile: B, at: '2024-06-10T00:00:00Z', revenue: 35 },
    { profile: C, at: '2024-06-28T23:00:00Z', revenue: 100, properties: { order_id: 'x' } },
    { profile: D, at: '2024-01-01T00:00:00Z', revenue: 1 },
    { profile: D, at: '2024-07-05T00:00:00Z', revenue: 1000 },
    { profile: E, at: '2024-05-01T00:00:00Z', revenue: 50, properties: { order_id: 'e1' } },
    { profile: E, at: '2024-05-10T00:00:00Z', revenue: 50, properties: { order_id: 'e2' } },
    { profile: E, at: '2024-05-20T00:00:00Z', revenue: 50, properties: { order_id: 'e3' } },
    // An event left on a tombstone (a merge moves them; this one is planted): not counted.
    { profile: G, at: '2024-06-29T00:00:00Z', revenue: 9999, properties: { order_id: 'g1' } },
    { profile: H, at: '2024-06-01T00:00:00Z', name: 'Page Viewed', revenue: null },
    { profile: I, at: '2024-07-01T00:00:00Z', revenue: 10 },
    { profile: J, at: '2024-06-01T00:00:00Z', name: 'Product Viewed', revenue: null },
  ]);
}

async function scores() {
  const result = await rows<{
    id: string;
    r: number | null;
    f: number | null;
    m: number | null;
    as_of: Date | string | null;
  }>(
    db,
    sql`select id, rfm_recency as r, rfm_frequency as f, rfm_monetary as m, rfm_as_of as as_of
        from profiles order by id`,
  );
  return Object.fromEntries(
    result.map((p) => [
      p.id,
      {
        rfm: p.r === null ? null : [p.r, p.f, p.m],
        asOf: p.as_of === null ? null : new Date(p.as_of).toISOString(),
      },
    ]),
  );
}

describe(`computeRfm (${driver})`, () => {
  it('scores live purchasers with ties, floored days and distinct orders; nulls for the rest', async () => {
    await handBuilt();
    expect(await computeRfm(db, { asOf })).toBe(5);
    const s = await scores();
    const at = asOf.toISOString();
    expect(s).toEqual({
      [A]: { rfm: [5, 4, 3], asOf: at },
      [B]: { rfm: [4, 4, 3], asOf: at },
      [C]: { rfm: [4, 2, 4], asOf: at },
      [D]: { rfm: [1, 2, 1], asOf: at },
      [E]: { rfm: [2, 5, 5], asOf: at },
      [G]: { rfm: null, asOf: null },
      [H]: { rfm: null, asOf: null },
      [I]: { rfm: null, asOf: null },
      [J]: { rfm: null, asOf: null },
    });
  });

  it('ignores purchases after asOf, and clears profiles that have none by then', async () => {
    await handBuilt();
    await computeRfm(db, { asOf });
    // As of 2024-06-05: A has only t2 (06-01), B and C nothing yet; D 1 (156 days), E 150.
    const earlier = new Date('2024-06-05T00:00:00Z');
    expect(await computeRfm(db, { asOf: earlier })).toBe(3);
    const s = await scores();
    const at = earlier.toISOString();
    // R: D 156 → 2 (k=1 → ceil(5/3)), E 16 → 4, A 4 → 5. F: A, D 1 → 4, E 3 → 5.
    // M: D 1 → 2, A 20 → 4, E 150 → 5.
    expect(s[A]).toEqual({ rfm: [5, 4, 4], asOf: at });
    expect(s[D]).toEqual({ rfm: [2, 4, 2], asOf: at });
    expect(s[E]).toEqual({ rfm: [4, 5, 5], asOf: at });
    expect(s[B]).toEqual({ rfm: null, asOf: null });
    expect(s[C]).toEqual({ rfm: null, asOf: null });
    // The purchase exactly at asOf counts.
    expect(await computeRfm(db, { asOf: new Date('2024-06-01T00:00:00Z') })).toBe(3);
    expect((await scores())[A]!.rfm).not.toBeNull();
  });

  it('counts only the named events when purchaseEvents is given', async () => {
    await handBuilt();
    expect(await computeRfm(db, { asOf, purchaseEvents: ['purchase'] })).toBe(1);
    expect((await scores())[A]).toEqual({ rfm: [5, 5, 5], asOf: asOf.toISOString() });
    expect(await computeRfm(db, { asOf, purchaseEvents: [] })).toBe(0);
    expect(Object.values(await scores()).every((p) => p.rfm === null)).toBe(true);
  });

  it('does not rewrite rows whose scores are already right', async () => {
    await handBuilt();
    await computeRfm(db, { asOf });
    const versions = () =>
      rows<{ id: string; v: string }>(
        db,
        sql`select id, xmin::text as v from profiles order by id`,
      );
    const before = await versions();
    expect(await computeRfm(db, { asOf })).toBe(5);
    expect(await versions()).toEqual(before);
  });

  it('scores the survivor of a merge with both profiles’ purchases, and clears the tombstone', async () => {
    const config = testConfig();
    const order = (anon: string | null, user: string | null, orderId: string, at: string) => ({
      type: 'track',
      event: 'Order Completed',
      ...(anon ? { anonymousId: anon } : {}),
      ...(user ? { userId: user } : {}),
      timestamp: at,
      properties: { order_id: orderId, revenue: 10 },
    });
    await send(db, config, [
      order(null, 'u-1', 'a', '2024-06-01T00:00:00Z'),
      order('anon-2', null, 'b', '2024-06-20T00:00:00Z'),
      order(null, 'u-3', 'c', '2024-06-25T00:00:00Z'),
      order(null, 'u-3', 'd', '2024-06-26T00:00:00Z'),
      { type: 'identify', userId: 'u-4', traits: { email: 'four@example.com' } },
    ]);
    const anon = (await profileOf(db, 'anonymous_id', 'anon-2'))!;
    const user = (await profileOf(db, 'user_id', 'u-1'))!;
    expect(await computeRfm(db, { asOf })).toBe(3);
    expect((await scores())[anon]!.rfm).not.toBeNull();

    await send(db, config, [{ type: 'identify', anonymousId: 'anon-2', userId: 'u-1' }]);
    const survivor = (await profileOf(db, 'user_id', 'u-1'))!;
    const tombstone = survivor === user ? anon : user;
    expect(await computeRfm(db, { asOf })).toBe(2);
    const s = await scores();
    // The survivor (u-1 + anon-2): last 06-20, 10 days; 2 orders; 20. u-3: 4 days; 2; 20.
    // R: 10 days → ceil(5 × 1/2) = 3, 4 days → 5; F and M tie → 5.
    expect(s[survivor]!.rfm).toEqual([3, 5, 5]);
    expect(s[(await profileOf(db, 'user_id', 'u-3'))!]!.rfm).toEqual([5, 5, 5]);
    expect(s[tombstone]).toEqual({ rfm: null, asOf: null });
    expect(s[(await profileOf(db, 'user_id', 'u-4'))!]).toEqual({ rfm: null, asOf: null });
  });
});
