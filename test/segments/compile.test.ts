import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sql, type SQL } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import { json, rows, type Database, type Db } from '../../src/db/index.ts';
import { HubError } from '../../src/errors.ts';
import {
  compileSegment,
  countSegment,
  minus,
  segmentProfileIds,
  type CompileOptions,
  type ResolvedSegment,
} from '../../src/segments/compile.ts';
import { parseSegmentRules } from '../../src/segments/rules.ts';
import { driver, testDatabase } from '../support/db.ts';
import { insertEvents, type EventSpec } from '../support/events.ts';

let database: Database;
let db: Db;

beforeAll(async () => {
  database = await testDatabase();
  db = database.db;
  // A stand-in for the stored memberships of static segments (see CompileOptions.storedMembers).
  await db.execute(
    sql`create table test_members (segment_id text not null, profile_id uuid not null)`,
  );
});
afterAll(() => database.close());
beforeEach(async () => {
  await db.execute(
    sql`truncate profiles, events, profile_event_counts, test_members, segment_members restart identity`,
  );
});

/** Profile ids that read as their number in assertions. */
const pid = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
const [A, B, C, D, E, F, G, H] = [1, 2, 3, 4, 5, 6, 7, 8].map(pid) as [
  string,
  string,
  string,
  string,
  string,
  string,
  string,
  string,
];
const ids = (...list: string[]) => [...list].sort();

interface ProfileRow {
  id: string;
  traits?: Record<string, unknown>;
  kind?: string;
  created_at?: string;
  merged_into?: string;
  event_count?: number;
  purchase_count?: number;
  total_spent?: number;
  first_seen_at?: string;
  last_seen_at?: string;
  last_purchase_at?: string;
  rfm_recency?: number;
  rfm_frequency?: number;
  rfm_monetary?: number;
}

async function addProfiles(...list: ProfileRow[]) {
  const data = list.map((p) => ({ traits: {}, kind: 'customer', ...p }));
  await db.execute(
    sql`insert into profiles (id, kind, created_at, merged_into, traits, event_count,
          purchase_count, total_spent, first_seen_at, last_seen_at, last_purchase_at,
          rfm_recency, rfm_frequency, rfm_monetary)
        select id, kind, coalesce(created_at, now()), merged_into, traits,
          coalesce(event_count, 0), coalesce(purchase_count, 0), coalesce(total_spent, 0),
          first_seen_at, last_seen_at, last_purchase_at, rfm_recency, rfm_frequency, rfm_monetary
        from json_to_recordset(${json(data)}) as x(id uuid, kind text, created_at timestamptz,
          merged_into uuid, traits jsonb, event_count int, purchase_count int, total_spent numeric,
          first_seen_at timestamptz, last_seen_at timestamptz, last_purchase_at timestamptz,
          rfm_recency smallint, rfm_frequency smallint, rfm_monetary smallint)`,
  );
}

/** Profiles with only traits. */
const withTraits = (list: Record<string, Record<string, unknown>>) =>
  addProfiles(...Object.entries(list).map(([id, traits]) => ({ id, traits })));

type EventRow = Omit<EventSpec, 'name'> & { name?: string | null };

const addEvents = (...list: EventRow[]) =>
  insertEvents(
    db,
    list.map((e) => ({ ...e, name: e.name === undefined ? 'Signed Up' : e.name })),
  );

/** What the fold keeps in profile_event_counts, computed from the events table. */
async function foldEventCounts() {
  await db.execute(
    sql`insert into profile_event_counts (profile_id, name, count, first_at, last_at)
        select profile_id, case when type = 'track' then name else type end, count(*),
          min("timestamp"), max("timestamp")
        from events where type in ('track', 'page', 'screen') group by 1, 2`,
  );
}

const noSegments = () => null;

async function members(rules: unknown, options: Partial<CompileOptions> = {}) {
  return segmentProfileIds(db, parseSegmentRules(rules), {
    resolveSegment: noSegments,
    ...options,
  });
}

const trait = (name: string | string[], op: string, value?: unknown, extra = {}) => ({
  trait: { name, op, ...(value === undefined ? {} : { value }), ...extra },
});
const computed = (name: string, op: string, value?: unknown, extra = {}) => ({
  computed: { name, op, ...(value === undefined ? {} : { value }), ...extra },
});

const AS_OF = new Date('2024-06-30T12:00:00Z');
const daysBefore = (n: number, from = AS_OF) => new Date(from.getTime() - n * 86_400_000);

describe(`stored trait conditions (${driver})`, () => {
  beforeEach(() =>
    withTraits({
      [A]: { city: 'Paris', age: 30, vip: true, tags: ['VIP', 'beta'], address: { city: 'Lyon' } },
      [B]: { city: 'paris', age: '42', vip: 'true', tags: 'vip customer' },
      [C]: { city: 'Paris-Nord', age: 'forty', vip: false, nickname: null },
      [D]: { city: 17, age: 17.5, tags: [] },
      [E]: {},
    }),
  );

  it('eq on strings is exact and case-sensitive, and matches stored strings only', async () => {
    expect(await members(trait('city', 'eq', 'Paris'))).toEqual(ids(A));
    expect(await members(trait('city', 'eq', '17'))).toEqual([]);
    expect(await members(trait(['address', 'city'], 'eq', 'Lyon'))).toEqual(ids(A));
  });

  it('eq on numbers compares numerically, numeric strings included', async () => {
    expect(await members(trait('age', 'eq', 42))).toEqual(ids(B));
    expect(await members(trait('age', 'eq', 30.0))).toEqual(ids(A));
    expect(await members(trait('city', 'eq', 17))).toEqual(ids(D));
  });

  it('eq on booleans matches JSON booleans and the strings "true"/"false"', async () => {
    expect(await members(trait('vip', 'eq', true))).toEqual(ids(A, B));
    expect(await members(trait('vip', 'eq', false))).toEqual(ids(C));
  });

  it('neq matches profiles that have the trait with another value', async () => {
    expect(await members(trait('city', 'neq', 'Paris'))).toEqual(ids(B, C, D));
    expect(await members(trait('age', 'neq', 30))).toEqual(ids(B, C, D));
    // not(eq) also takes those without the trait.
    expect(await members({ not: trait('city', 'eq', 'Paris') })).toEqual(ids(B, C, D, E));
  });

  it('gt, gte, lt, lte compare numbers and numeric strings; other values never match', async () => {
    expect(await members(trait('age', 'gt', 30))).toEqual(ids(B));
    expect(await members(trait('age', 'gte', 30))).toEqual(ids(A, B));
    expect(await members(trait('age', 'lt', 30))).toEqual(ids(D));
    expect(await members(trait('age', 'lte', 30))).toEqual(ids(A, D));
    expect(await members(trait('city', 'gt', 0))).toEqual(ids(D));
  });

  it('between is inclusive at both ends', async () => {
    expect(await members(trait('age', 'between', [17.5, 30]))).toEqual(ids(A, D));
    expect(await members(trait('age', 'between', [18, 35]))).toEqual(ids(A));
  });

  it('in matches strings exactly and numbers numerically', async () => {
    expect(await members(trait('city', 'in', ['Paris', 'paris']))).toEqual(ids(A, B));
    expect(await members(trait('age', 'in', [42, 17.5]))).toEqual(ids(B, D));
    expect(await members(trait('city', 'in', ['Paris', 17]))).toEqual(ids(A, D));
  });

  it('contains ignores case, and looks inside lists for an equal string', async () => {
    expect(await members(trait('city', 'contains', 'PARIS'))).toEqual(ids(A, B, C));
    expect(await members(trait('city', 'contains', 'nord'))).toEqual(ids(C));
    expect(await members(trait('tags', 'contains', 'vip'))).toEqual(ids(A, B));
    expect(await members(trait('tags', 'contains', 'bet'))).toEqual([]);
  });

  it('starts_with ignores case and applies to strings only', async () => {
    expect(await members(trait('city', 'starts_with', 'paris'))).toEqual(ids(A, B, C));
    expect(await members(trait('city', 'starts_with', 'Paris-'))).toEqual(ids(C));
    expect(await members(trait('city', 'starts_with', '1'))).toEqual([]);
  });

  it('exists and not_exists treat a JSON null as missing', async () => {
    expect(await members(trait('age', 'exists'))).toEqual(ids(A, B, C, D));
    expect(await members(trait('nickname', 'exists'))).toEqual([]);
    expect(await members(trait('nickname', 'not_exists'))).toEqual(ids(A, B, C, D, E));
    expect(await members(trait(['address', 'city'], 'not_exists'))).toEqual(ids(B, C, D, E));
  });
});

describe(`stored trait dates (${driver})`, () => {
  beforeEach(() =>
    withTraits({
      [A]: { signup: '2024-06-01' },
      [B]: { signup: '2024-06-29T23:30:00Z' },
      [C]: { signup: '2024-06-30T01:00:00+02:00' }, // 2024-06-29T23:00Z
      [D]: { signup: '2023-02-29' }, // no such day
      [E]: { signup: 'yesterday' },
      [F]: { signup: 20240601 },
      [G]: { signup: '2024-02-29T10:00:00' }, // no offset: UTC
      [H]: { signup: '2024-13-01' },
    }),
  );

  it('before and after a date compare whole UTC days; invalid dates never match nor fail', async () => {
    expect(await members(trait('signup', 'before', '2024-06-01'))).toEqual(ids(G));
    expect(await members(trait('signup', 'after', '2024-06-01'))).toEqual(ids(B, C));
    expect(await members(trait('signup', 'before', '2024-06-29T23:15:00Z'))).toEqual(ids(A, C, G));
    expect(await members(trait('signup', 'lte', '2024-06-01'))).toEqual(ids(A, G));
    expect(await members(trait('signup', 'gte', '2024-06-01'))).toEqual(ids(A, B, C));
    expect(await members(trait('signup', 'lt', '2024-02-29T10:00:01Z'))).toEqual(ids(G));
    expect(await members(trait('signup', 'gt', '2024-06-29T23:00:00Z'))).toEqual(ids(B));
  });

  it('between two dates includes both days', async () => {
    expect(await members(trait('signup', 'between', ['2024-02-29', '2024-06-01']))).toEqual(
      ids(A, G),
    );
    expect(await members(trait('signup', 'between', ['2024-06-02', '2024-06-29']))).toEqual(
      ids(B, C),
    );
  });

  it('within_last and relative dates count back from asOf', async () => {
    const asOf = new Date('2024-06-30T12:00:00Z');
    expect(await members(trait('signup', 'within_last', 1, { unit: 'days' }), { asOf })).toEqual(
      ids(B, C),
    );
    expect(await members(trait('signup', 'within_last', 1, { unit: 'months' }), { asOf })).toEqual(
      ids(A, B, C),
    );
    expect(
      await members(trait('signup', 'within_last', 2, { unit: 'weeks' }), {
        asOf: new Date('2024-06-10T00:00:00Z'),
      }),
    ).toEqual(ids(A));
    expect(await members(trait('signup', 'before', { ago: 4, unit: 'months' }), { asOf })).toEqual(
      ids(G),
    );
  });
});

describe(`computed traits (${driver})`, () => {
  const now = new Date();
  beforeEach(() =>
    addProfiles(
      {
        id: A,
        kind: 'customer',
        event_count: 10,
        purchase_count: 4,
        total_spent: 250.5,
        last_seen_at: daysBefore(2, now).toISOString(),
        first_seen_at: '2023-01-01T00:00:00Z',
        last_purchase_at: daysBefore(3, now).toISOString(),
        rfm_recency: 5,
        rfm_frequency: 4,
        rfm_monetary: 5,
        created_at: '2023-01-01T00:00:00Z',
      },
      {
        id: B,
        kind: 'customer',
        event_count: 3,
        purchase_count: 1,
        total_spent: 20,
        last_seen_at: daysBefore(40, now).toISOString(),
        first_seen_at: '2024-01-15T00:00:00Z',
        last_purchase_at: daysBefore(40, now).toISOString(),
        rfm_recency: 1,
        rfm_frequency: 1,
        rfm_monetary: 2,
        created_at: '2024-01-15T00:00:00Z',
      },
      {
        id: C,
        kind: 'visitor',
        event_count: 1,
        last_seen_at: daysBefore(1, now).toISOString(),
        first_seen_at: daysBefore(1, now).toISOString(),
      },
      { id: D, kind: 'visitor' },
      { id: E, kind: 'customer', purchase_count: 9, total_spent: 900, merged_into: A },
    ),
  );

  it('numbers: every operator, on the stored columns', async () => {
    expect(await members(computed('total_spent', 'gt', 200))).toEqual(ids(A));
    expect(await members(computed('total_spent', 'gte', 20))).toEqual(ids(A, B));
    expect(await members(computed('total_spent', 'lt', 20))).toEqual(ids(C, D));
    expect(await members(computed('total_spent', 'lte', 20))).toEqual(ids(B, C, D));
    expect(await members(computed('purchase_count', 'eq', 1))).toEqual(ids(B));
    expect(await members(computed('purchase_count', 'neq', 0))).toEqual(ids(A, B));
    expect(await members(computed('event_count', 'between', [1, 3]))).toEqual(ids(B, C));
    expect(await members(computed('event_count', 'in', [10, 1]))).toEqual(ids(A, C));
    expect(await members(computed('rfm_recency', 'exists'))).toEqual(ids(A, B));
    expect(await members(computed('rfm_recency', 'not_exists'))).toEqual(ids(C, D));
    expect(await members(computed('rfm_monetary', 'gte', 2))).toEqual(ids(A, B));
    // Fractions and huge numbers against integer columns.
    expect(await members(computed('purchase_count', 'gt', 1.5))).toEqual(ids(A));
    expect(await members(computed('event_count', 'lte', 2.5))).toEqual(ids(C, D));
    expect(await members(computed('event_count', 'lt', 1e15))).toEqual(ids(A, B, C, D));
    expect(await members(computed('rfm_recency', 'lt', 1e300))).toEqual(ids(A, B));
    expect(await members({ not: computed('rfm_recency', 'gt', 1) })).toEqual(ids(B, C, D));
  });

  it('dates: before, after, between, within_last, exists', async () => {
    expect(await members(computed('last_seen_at', 'within_last', 7, { unit: 'days' }))).toEqual(
      ids(A, C),
    );
    expect(await members(computed('last_seen_at', 'before', { ago: 30, unit: 'days' }))).toEqual(
      ids(B),
    );
    expect(await members(computed('first_seen_at', 'after', '2023-12-31'))).toEqual(ids(B, C));
    expect(await members(computed('first_seen_at', 'lt', '2024-01-15'))).toEqual(ids(A));
    expect(await members(computed('first_seen_at', 'gte', '2024-01-15'))).toEqual(ids(B, C));
    expect(await members(computed('created_at', 'between', ['2023-01-01', '2024-01-14']))).toEqual(
      ids(A),
    );
    expect(await members(computed('last_purchase_at', 'exists'))).toEqual(ids(A, B));
    expect(await members(computed('last_purchase_at', 'not_exists'))).toEqual(ids(C, D));
  });

  it('text: kind', async () => {
    expect(await members(computed('kind', 'eq', 'visitor'))).toEqual(ids(C, D));
    expect(await members(computed('kind', 'neq', 'visitor'))).toEqual(ids(A, B));
    expect(await members(computed('kind', 'in', ['customer']))).toEqual(ids(A, B));
    expect(await members(computed('kind', 'contains', 'VIS'))).toEqual(ids(C, D));
    expect(await members(computed('kind', 'starts_with', 'cust'))).toEqual(ids(A, B));
  });

  it('a merged profile (tombstone) is never a member', async () => {
    expect(await members(computed('total_spent', 'gt', 0))).toEqual(ids(A, B));
    expect(await members({ all: [] })).toEqual(ids(A, B, C, D));
  });
});

describe(`computed traits as of a date (${driver})`, () => {
  beforeEach(async () => {
    // Stored columns that disagree with the events, to show which one is read.
    await addProfiles(
      { id: A, purchase_count: 99, total_spent: 9999, event_count: 99 },
      { id: B, purchase_count: 99, total_spent: 9999, event_count: 99 },
      { id: C },
    );
    await addEvents(
      { profile: A, at: '2024-01-10T00:00:00Z', name: 'Order Completed', revenue: 150 },
      { profile: A, at: '2024-03-10T00:00:00Z', name: 'Order Completed', revenue: 100 },
      { profile: A, at: '2024-05-10T00:00:00Z', type: 'page', name: 'Home' },
      { profile: B, at: '2024-04-01T00:00:00Z', name: 'purchase', revenue: 30 },
      { profile: B, at: '2024-04-02T00:00:00Z', type: 'identify', name: null },
      { profile: C, at: '2024-06-01T00:00:00Z', name: 'Viewed' },
    );
  });

  it('derives purchase_count, total_spent, event_count from the events up to asOf', async () => {
    const feb = new Date('2024-02-01T00:00:00Z');
    const jun = new Date('2024-06-30T00:00:00Z');
    expect(await members(computed('total_spent', 'gt', 200), { asOf: feb })).toEqual([]);
    expect(await members(computed('total_spent', 'gt', 200), { asOf: jun })).toEqual(ids(A));
    expect(await members(computed('total_spent', 'lt', 100), { asOf: feb })).toEqual(ids(B, C));
    expect(await members(computed('purchase_count', 'eq', 1), { asOf: feb })).toEqual(ids(A));
    expect(await members(computed('purchase_count', 'eq', 1), { asOf: jun })).toEqual(ids(B));
    expect(await members(computed('purchase_count', 'eq', 0), { asOf: feb })).toEqual(ids(B, C));
    expect(await members(computed('event_count', 'gte', 3), { asOf: jun })).toEqual(ids(A));
    // The identify event is not activity.
    expect(await members(computed('event_count', 'eq', 1), { asOf: jun })).toEqual(ids(B, C));
    // Without asOf the stored columns are read.
    expect(await members(computed('total_spent', 'gt', 200))).toEqual(ids(A, B));
  });

  it('derives first/last seen and last purchase from the events up to asOf', async () => {
    const asOf = new Date('2024-04-15T00:00:00Z');
    expect(
      await members(computed('last_seen_at', 'within_last', 30, { unit: 'days' }), { asOf }),
    ).toEqual(ids(B));
    expect(await members(computed('first_seen_at', 'not_exists'), { asOf })).toEqual(ids(C));
    expect(await members(computed('last_purchase_at', 'before', '2024-03-10'), { asOf })).toEqual(
      [],
    );
    expect(await members(computed('last_purchase_at', 'lte', '2024-03-10'), { asOf })).toEqual(
      ids(A),
    );
    expect(await members(computed('last_purchase_at', 'exists'), { asOf })).toEqual(ids(A, B));
  });

  it('uses the configured purchase event names when given', async () => {
    const jun = new Date('2024-06-30T00:00:00Z');
    const purchaseEvents = ['purchase'];
    expect(
      await members(computed('purchase_count', 'gte', 1), { asOf: jun, purchaseEvents }),
    ).toEqual(ids(B));
    expect(await members({ event: { purchase: true } }, { asOf: jun, purchaseEvents: [] })).toEqual(
      [],
    );
  });
});

describe(`event conditions (${driver})`, () => {
  beforeEach(async () => {
    await addProfiles({ id: A }, { id: B }, { id: C }, { id: D });
    const order = (profile: string, days: number, revenue: number, category: string) => ({
      profile,
      at: daysBefore(days),
      name: 'Order Completed',
      revenue,
      properties: { revenue, category, product: { sku: `${category}-1` }, price: String(revenue) },
    });
    await addEvents(
      order(A, 1, 120, 'shoes'),
      order(A, 10, 90, 'shoes'),
      order(A, 50, 40, 'hats'),
      order(A, 200, 500, 'shoes'),
      order(B, 5, 300, 'hats'),
      order(C, 100, 10, 'shoes'),
      order(C, 120, 10, 'shoes'),
      {
        profile: A,
        at: daysBefore(2),
        type: 'page',
        name: 'Pricing',
        properties: { path: '/pricing' },
      },
      {
        profile: B,
        at: daysBefore(1),
        type: 'page',
        name: 'Pricing',
        properties: { path: '/pricing' },
      },
      {
        profile: B,
        at: daysBefore(2),
        type: 'page',
        name: 'Pricing',
        properties: { path: '/pricing' },
      },
      {
        profile: B,
        at: daysBefore(3),
        type: 'page',
        name: 'Pricing',
        properties: { path: '/pricing' },
      },
      { profile: C, at: daysBefore(3), type: 'page', name: 'Home', properties: { path: '/' } },
      { profile: D, at: daysBefore(1), name: 'Pricing' },
      // After asOf: never counts.
      {
        profile: D,
        at: new Date(AS_OF.getTime() + 3_600_000),
        name: 'Order Completed',
        revenue: 1,
      },
    );
  });
  const at = { asOf: AS_OF };
  const ev = (event: Record<string, unknown>) => ({ event });

  it('performed at least / at most / exactly N times, all time', async () => {
    const orders = { name: 'Order Completed' };
    expect(await members(ev(orders), at)).toEqual(ids(A, B, C));
    expect(await members(ev({ ...orders, count: { atLeast: 2 } }), at)).toEqual(ids(A, C));
    expect(await members(ev({ ...orders, count: { atMost: 1 } }), at)).toEqual(ids(B, D));
    expect(await members(ev({ ...orders, count: { exactly: 2 } }), at)).toEqual(ids(C));
    expect(await members(ev({ ...orders, count: { exactly: 0 } }), at)).toEqual(ids(D));
    expect(await members(ev({ ...orders, count: { atLeast: 2, atMost: 3 } }), at)).toEqual(ids(C));
    expect(await members(ev({ ...orders, count: { atLeast: 0 } }), at)).toEqual(ids(A, B, C, D));
  });

  it('within the last N days / weeks / months, or between two dates', async () => {
    const orders = { name: 'Order Completed' };
    expect(await members(ev({ ...orders, within: { last: 7, unit: 'days' } }), at)).toEqual(
      ids(A, B),
    );
    expect(
      await members(
        ev({ ...orders, count: { atLeast: 2 }, within: { last: 2, unit: 'weeks' } }),
        at,
      ),
    ).toEqual(ids(A));
    expect(
      await members(
        ev({ ...orders, count: { atLeast: 2 }, within: { last: 3, unit: 'months' } }),
        at,
      ),
    ).toEqual(ids(A));
    expect(
      await members(
        ev({ ...orders, count: { atLeast: 3 }, within: { last: 1, unit: 'years' } }),
        at,
      ),
    ).toEqual(ids(A));
    const day = (n: number) => daysBefore(n).toISOString().slice(0, 10);
    expect(await members(ev({ ...orders, within: { from: day(120), to: day(100) } }), at)).toEqual(
      ids(C),
    );
    expect(await members(ev({ ...orders, within: { to: day(150) } }), at)).toEqual(ids(A));
    expect(
      await members(ev({ ...orders, within: { from: { ago: 6, unit: 'days' } } }), at),
    ).toEqual(ids(A, B));
  });

  it('has not performed X in the last 30 days (at most 0)', async () => {
    const rule = ev({
      name: 'Order Completed',
      count: { atMost: 0 },
      within: { last: 30, unit: 'days' },
    });
    expect(await members(rule, at)).toEqual(ids(C, D));
    expect(
      await members(
        { not: ev({ name: 'Order Completed', within: { last: 30, unit: 'days' } }) },
        at,
      ),
    ).toEqual(ids(C, D));
  });

  it('filters on event properties with the trait operators', async () => {
    const orders = (where: unknown[], count = 1) =>
      ev({ name: 'Order Completed', where, count: { atLeast: count } });
    expect(
      await members(orders([{ property: 'category', op: 'eq', value: 'shoes' }], 2), at),
    ).toEqual(ids(A, C));
    expect(await members(orders([{ property: 'price', op: 'gte', value: 300 }]), at)).toEqual(
      ids(A, B),
    );
    expect(
      await members(
        orders([
          { property: 'category', op: 'in', value: ['hats'] },
          { property: 'revenue', op: 'lt', value: 100 },
        ]),
        at,
      ),
    ).toEqual(ids(A));
    expect(
      await members(
        orders([{ property: ['product', 'sku'], op: 'starts_with', value: 'HAT' }]),
        at,
      ),
    ).toEqual(ids(A, B));
    expect(await members(orders([{ property: 'coupon', op: 'exists' }]), at)).toEqual([]);
    expect(
      await members(orders([{ property: 'category', op: 'contains', value: 'o' }], 3), at),
    ).toEqual(ids(A));
  });

  it('matches by event type: page views of the pricing page', async () => {
    const pricing = (count: number) =>
      ev({
        type: 'page',
        where: [{ property: 'path', op: 'eq', value: '/pricing' }],
        count: { atLeast: count },
        within: { last: 7, unit: 'days' },
      });
    expect(await members(pricing(3), at)).toEqual(ids(B));
    expect(await members(pricing(1), at)).toEqual(ids(A, B));
    // A page name needs the page type; a name alone means a track event.
    expect(await members(ev({ type: 'page', name: 'Pricing' }), at)).toEqual(ids(A, B));
    expect(await members(ev({ name: 'Pricing' }), at)).toEqual(ids(D));
    expect(await members(ev({ type: ['page', 'track'], name: 'Pricing' }), at)).toEqual(
      ids(A, B, D),
    );
    expect(await members(ev({ type: 'page', count: { atLeast: 2 } }), at)).toEqual(ids(B));
    expect(
      await members(ev({ name: ['Pricing', 'Order Completed'], count: { exactly: 1 } }), at),
    ).toEqual(ids(B, D));
  });

  it('purchases: events with revenue', async () => {
    expect(await members(ev({ purchase: true, count: { atLeast: 2 } }), at)).toEqual(ids(A, C));
    expect(await members(ev({ purchase: true, within: { last: 3, unit: 'days' } }), at)).toEqual(
      ids(A),
    );
  });

  it('sum / avg / min / max of a property or of the revenue', async () => {
    const spent = (op: string, value: unknown, within?: unknown) =>
      ev({ purchase: true, within, aggregate: { fn: 'sum', revenue: true, op, value } });
    const last90 = { last: 90, unit: 'days' };
    expect(await members(spent('gte', 200, last90), at)).toEqual(ids(A, B));
    expect(await members(spent('gte', 250, last90), at)).toEqual(ids(A, B));
    expect(await members(spent('gt', 250, last90), at)).toEqual(ids(B));
    // A profile without purchases spent 0: "less than 100" includes it.
    expect(await members(spent('lt', 100, last90), at)).toEqual(ids(C, D));
    expect(await members(spent('eq', 0, last90), at)).toEqual(ids(C, D));
    expect(await members(spent('between', [20, 20]), at)).toEqual(ids(C));
    const agg = (fn: string, op: string, value: unknown) =>
      ev({ name: 'Order Completed', aggregate: { fn, property: 'price', op, value } });
    expect(await members(agg('avg', 'gt', 150), at)).toEqual(ids(A, B));
    expect(await members(agg('avg', 'lt', 150), at)).toEqual(ids(C));
    expect(await members(agg('min', 'lte', 40), at)).toEqual(ids(A, C));
    expect(await members(agg('max', 'eq', 300), at)).toEqual(ids(B));
    expect(await members(agg('max', 'neq', 300), at)).toEqual(ids(A, C));
    // Aggregate and count together.
    expect(
      await members(
        ev({
          name: 'Order Completed',
          count: { atLeast: 3 },
          aggregate: { fn: 'sum', property: 'revenue', op: 'gt', value: 500 },
        }),
        at,
      ),
    ).toEqual(ids(A));
  });

  it('never selects a tombstone, even one still holding events or listed in a stored segment', async () => {
    await addProfiles({ id: E, merged_into: A });
    await addEvents(
      { profile: E, at: daysBefore(1), name: 'Order Completed', revenue: 5 },
      { profile: E, at: daysBefore(2), name: 'Order Completed', revenue: 5 },
    );
    await db.execute(sql`create table listed (profile_id uuid)`);
    await db.execute(sql`insert into listed values (${E}), (${B}), (${B})`);
    const stored = {
      resolveSegment: () => ({ stored: true as const }),
      storedMembers: () => sql`select profile_id from listed`,
    };
    const list = { segment: { id: '20000000-0000-4000-8000-000000000001' } };
    try {
      expect(await members(ev({ name: 'Order Completed', count: { atLeast: 2 } }), at)).toEqual(
        ids(A, C),
      );
      expect(
        await members(ev({ name: 'Order Completed', within: { last: 3, unit: 'days' } }), at),
      ).toEqual(ids(A));
      expect(await members(list, { ...at, ...stored })).toEqual(ids(B));
      expect(await members({ any: [list, ev({ name: 'Pricing' })] }, { ...at, ...stored })).toEqual(
        ids(B, D),
      );
      expect(await members({ not: list }, { ...at, ...stored })).toEqual(ids(A, C, D));
    } finally {
      await db.execute(sql`drop table listed`);
    }
  });

  it('conditions on the same events share one grouping', async () => {
    const orders = (extra: Record<string, unknown>) => ev({ name: 'Order Completed', ...extra });
    const rules = {
      all: [
        orders({ count: { atLeast: 2 } }),
        orders({ aggregate: { fn: 'max', revenue: true, op: 'gte', value: 120 } }),
        orders({}),
      ],
    };
    expect(await members(rules, at)).toEqual(ids(A));
    const query = await compileSegment(parseSegmentRules(rules), {
      resolveSegment: noSegments,
      ...at,
    });
    expect(text(query).match(/group by/g)).toHaveLength(1);
    const highValue = {
      all: [computed('total_spent', 'gt', 200), computed('purchase_count', 'gt', 3)],
    };
    expect(await members(highValue, at)).toEqual(ids(A));
    const asOf = await compileSegment(parseSegmentRules(highValue), {
      resolveSegment: noSegments,
      ...at,
    });
    expect(text(asOf).match(/group by/g)).toHaveLength(1);
  });

  it('a property that is not a number never breaks an aggregate', async () => {
    await addEvents({
      profile: C,
      at: daysBefore(1),
      name: 'Order Completed',
      properties: { price: 'n/a' },
    });
    const rule = ev({
      name: 'Order Completed',
      aggregate: { fn: 'sum', property: 'price', op: 'eq', value: 20 },
    });
    expect(await members(rule, at)).toEqual(ids(C));
  });

  it('all-time counts without asOf read the folded per-event counts', async () => {
    await foldEventCounts();
    const pricingViews = { type: 'page', count: { atLeast: 3 } };
    expect(await members(ev(pricingViews))).toEqual(ids(B));
    expect(await members(ev({ name: 'Order Completed', count: { atLeast: 2 } }))).toEqual(
      ids(A, C),
    );
    // D's order is after AS_OF but before the real now: it counts without asOf, not with it.
    expect(await members(ev({ name: 'Order Completed', count: { exactly: 1 } }))).toEqual(
      ids(B, D),
    );
    expect(await members(ev({ name: 'Order Completed', count: { exactly: 1 } }), at)).toEqual(
      ids(B),
    );
    expect(await members(ev({ name: 'Order Completed', count: { atMost: 0 } }))).toEqual([]);
    expect(await members(ev({ name: 'Order Completed', count: { atMost: 0 } }), at)).toEqual(
      ids(D),
    );
    const query = await compileSegment(parseSegmentRules(ev(pricingViews)), {
      resolveSegment: noSegments,
    });
    expect(text(query)).toContain('profile_event_counts');
  });
});

describe(`groups (${driver})`, () => {
  beforeEach(async () => {
    await withTraits({
      [A]: { city: 'Paris', age: 25 },
      [B]: { city: 'Paris', age: 50 },
      [C]: { city: 'Lyon', age: 25 },
      [D]: { city: 'Lyon', age: 60 },
      [E]: {},
    });
    await addEvents(
      { profile: A, at: daysBefore(1), name: 'Signed Up' },
      { profile: D, at: daysBefore(1), name: 'Signed Up' },
      { profile: D, at: daysBefore(2), name: 'Churned' },
      { profile: E, at: daysBefore(2), name: 'Churned' },
    );
  });
  const paris = trait('city', 'eq', 'Paris');
  const young = trait('age', 'lt', 30);
  const signedUp = { event: { name: 'Signed Up' } };
  const churned = { event: { name: 'Churned' } };
  const at = { asOf: AS_OF };

  it('all, any and not, nested', async () => {
    expect(await members({ all: [paris, young] }, at)).toEqual(ids(A));
    expect(await members({ any: [paris, young] }, at)).toEqual(ids(A, B, C));
    expect(await members({ not: { any: [paris, young] } }, at)).toEqual(ids(D, E));
    expect(await members({ all: [{ not: paris }, { any: [young, signedUp] }] }, at)).toEqual(
      ids(C, D),
    );
    expect(
      await members(
        { any: [{ all: [paris, { not: young }] }, { all: [{ not: paris }, signedUp] }] },
        at,
      ),
    ).toEqual(ids(B, D));
    expect(await members({ not: { not: { not: paris } } }, at)).toEqual(ids(C, D, E));
  });

  it('mixes event sets and trait predicates in any, all and not', async () => {
    expect(await members({ any: [signedUp, churned] }, at)).toEqual(ids(A, D, E));
    expect(await members({ any: [signedUp, young] }, at)).toEqual(ids(A, C, D));
    expect(await members({ any: [{ not: signedUp }, paris] }, at)).toEqual(ids(A, B, C, E));
    expect(await members({ all: [signedUp, { not: churned }] }, at)).toEqual(ids(A));
    expect(await members({ not: { all: [signedUp, churned] } }, at)).toEqual(ids(A, B, C, E));
    expect(await members({ not: { any: [signedUp, churned] } }, at)).toEqual(ids(B, C));
  });

  it('an empty all is everyone, an empty any no one', async () => {
    expect(await members({ all: [] }, at)).toEqual(ids(A, B, C, D, E));
    expect(await members({ any: [] }, at)).toEqual([]);
    expect(await members({ not: { any: [] } }, at)).toEqual(ids(A, B, C, D, E));
    expect(await members({ any: [{ all: [] }, paris] }, at)).toEqual(ids(A, B, C, D, E));
  });
});

describe(`segment membership (${driver})`, () => {
  const segmentId = (n: number) => `10000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
  const [parisId, vipId, staticId, aId, bId, unknownId] = [1, 2, 3, 4, 5, 6].map(segmentId) as [
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  let segments: Record<string, ResolvedSegment>;
  const resolveSegment = (id: string) => segments[id] ?? null;
  const storedMembers = (id: string): SQL =>
    sql`select profile_id from test_members where segment_id = ${id}`;
  const opts = { resolveSegment, storedMembers, asOf: AS_OF };

  beforeEach(async () => {
    segments = {
      [parisId]: { name: 'Paris', rules: parseSegmentRules(trait('city', 'eq', 'Paris')) },
      [vipId]: {
        name: 'VIP',
        rules: parseSegmentRules({
          all: [{ segment: { id: parisId } }, { event: { name: 'Order Completed' } }],
        }),
      },
      [staticId]: { stored: true, name: 'Uploaded list' },
    };
    await withTraits({
      [A]: { city: 'Paris' },
      [B]: { city: 'Paris' },
      [C]: { city: 'Lyon' },
      [D]: {},
    });
    await addEvents(
      { profile: A, at: daysBefore(1), name: 'Order Completed', revenue: 10 },
      { profile: C, at: daysBefore(1), name: 'Order Completed', revenue: 10 },
    );
    await db.execute(
      sql`insert into test_members values (${staticId}, ${B}), (${staticId}, ${C}), (${aId}, ${D})`,
    );
  });

  it('includes and excludes rules-based segments, inlined recursively', async () => {
    expect(await members({ segment: { id: parisId } }, opts)).toEqual(ids(A, B));
    expect(await members({ segment: { id: parisId, member: false } }, opts)).toEqual(ids(C, D));
    expect(await members({ segment: { id: vipId } }, opts)).toEqual(ids(A));
    expect(
      await members(
        { all: [{ segment: { id: parisId } }, { segment: { id: vipId, member: false } }] },
        opts,
      ),
    ).toEqual(ids(B));
    expect(await members({ not: { segment: { id: vipId, member: false } } }, opts)).toEqual(ids(A));
  });

  it('includes and excludes stored segments through the storedMembers query', async () => {
    expect(await members({ segment: { id: staticId } }, opts)).toEqual(ids(B, C));
    expect(await members({ segment: { id: staticId, member: false } }, opts)).toEqual(ids(A, D));
    expect(
      await members({ any: [{ segment: { id: staticId } }, { segment: { id: vipId } }] }, opts),
    ).toEqual(ids(A, B, C));
  });

  it('reads stored segments from segment_members by default', async () => {
    await db.execute(
      sql`insert into segment_members (segment_id, profile_id)
          values (${staticId}::uuid, ${A}::uuid), (${aId}::uuid, ${B}::uuid)`,
    );
    const byDefault = { resolveSegment, asOf: AS_OF };
    expect(await members({ segment: { id: staticId } }, byDefault)).toEqual(ids(A));
    expect(await members({ segment: { id: staticId, member: false } }, byDefault)).toEqual(
      ids(B, C, D),
    );
  });

  it('applies asOf inside referenced segments', async () => {
    const before = { ...opts, asOf: daysBefore(2) };
    expect(await members({ segment: { id: vipId } }, before)).toEqual([]);
  });

  it('rejects cycles with an error naming them', async () => {
    segments[aId] = { name: 'A', rules: parseSegmentRules({ all: [{ segment: { id: bId } }] }) };
    segments[bId] = {
      name: 'B',
      rules: parseSegmentRules({ any: [paris(), { segment: { id: aId } }] }),
    };
    const error = await members({ all: [paris(), { segment: { id: aId } }] }, opts).catch((e) => e);
    expect(error).toBeInstanceOf(HubError);
    expect(error.status).toBe(400);
    expect(error.detail).toBe('Segment references form a cycle: A → B → A.');
    expect(error.errors).toEqual([
      {
        field: 'rules.all[1].segment.id',
        message: 'references form a cycle: A → B → A',
      },
    ]);
    // Compiling a saved segment: a reference back to itself is a cycle.
    const self = await members(
      { any: [{ segment: { id: vipId } }] },
      { ...opts, segmentId: parisId, segmentName: 'Paris' },
    ).catch((e) => e);
    expect(self.detail).toBe('Segment references form a cycle: Paris → VIP → Paris.');
    expect(self.errors[0].field).toBe('rules.any[0].segment.id');
    expect(self.extra).toEqual({ cycle: [parisId, vipId, parisId] });
    const direct = await members(
      { segment: { id: parisId } },
      { ...opts, segmentId: parisId, segmentName: 'Paris' },
    ).catch((e) => e);
    expect(direct.detail).toBe('Segment references form a cycle: Paris → Paris.');
  });

  it('rejects a reference to an unknown segment', async () => {
    const error = await members({ any: [paris(), { segment: { id: unknownId } }] }, opts).catch(
      (e) => e,
    );
    expect(error).toBeInstanceOf(HubError);
    expect(error.errors).toEqual([
      { field: 'rules.any[1].segment.id', message: `no segment with id ${unknownId}` },
    ]);
  });

  function paris() {
    return trait('city', 'eq', 'Paris');
  }
});

describe(`asOf and profileIds (${driver})`, () => {
  beforeEach(async () => {
    await addProfiles({ id: A }, { id: B }, { id: C });
    await addEvents(
      { profile: A, at: '2024-01-05T00:00:00Z', name: 'purchase', revenue: 5 },
      { profile: A, at: '2024-01-20T00:00:00Z', name: 'purchase', revenue: 5 },
      { profile: B, at: '2024-03-05T00:00:00Z', name: 'purchase', revenue: 5 },
      { profile: B, at: '2024-03-06T00:00:00Z', name: 'purchase', revenue: 5 },
      { profile: C, at: '2024-03-06T00:00:00Z', name: 'purchase', revenue: 5 },
    );
  });
  const loyal = {
    event: { purchase: true, count: { atLeast: 2 }, within: { last: 1, unit: 'months' } },
  };

  it('the same rules give different members as of different dates', async () => {
    expect(await members(loyal, { asOf: new Date('2024-01-31T00:00:00Z') })).toEqual(ids(A));
    expect(await members(loyal, { asOf: new Date('2024-03-31T00:00:00Z') })).toEqual(ids(B));
    expect(await members(loyal, { asOf: new Date('2024-03-05T12:00:00Z') })).toEqual([]);
    expect(await members(loyal, { asOf: new Date('2024-06-01T00:00:00Z') })).toEqual([]);
  });

  it('profileIds restricts evaluation to those profiles', async () => {
    const asOf = new Date('2024-03-31T00:00:00Z');
    expect(await members(loyal, { asOf, profileIds: [A, B] })).toEqual(ids(B));
    expect(await members(loyal, { asOf, profileIds: [A, C] })).toEqual([]);
    expect(await members({ not: loyal }, { asOf, profileIds: [A, C] })).toEqual(ids(A, C));
    expect(await members({ all: [] }, { profileIds: [] })).toEqual([]);
    expect(
      await countSegment(db, parseSegmentRules({ not: loyal }), {
        asOf,
        profileIds: [A, B, C],
        resolveSegment: noSegments,
      }),
    ).toBe(2);
    await expect(members(loyal, { profileIds: ["x'; drop table profiles; --"] })).rejects.toThrow(
      TypeError,
    );
  });

  it('months are calendar months in UTC', () => {
    expect(minus(new Date('2024-03-31T10:00:00Z'), 1, 'months').toISOString()).toBe(
      '2024-02-29T10:00:00.000Z',
    );
    expect(minus(new Date('2024-01-15T00:00:00Z'), 3, 'months').toISOString()).toBe(
      '2023-10-15T00:00:00.000Z',
    );
    expect(minus(new Date('2024-02-29T00:00:00Z'), 1, 'years').toISOString()).toBe(
      '2023-02-28T00:00:00.000Z',
    );
  });
});

const dialect = new PgDialect();
const text = (query: SQL) => dialect.sqlToQuery(query).sql;

describe(`injection (${driver})`, () => {
  const evil = [
    `x'); drop table profiles; --`,
    `" or 1=1 --`,
    `k') or ('1'='1`,
    `\\'; select pg_sleep(10); --`,
    `{"a":1}`,
    `%_*`,
    `') or true or ('`,
  ];

  beforeEach(async () => {
    await withTraits({
      [A]: { [evil[0]!]: evil[1], city: evil[0] },
      [B]: { city: 'Paris' },
    });
    await addEvents({
      profile: A,
      at: daysBefore(1),
      name: evil[0],
      properties: { [evil[2]!]: evil[3] },
    });
  });

  it('treats hostile trait names and values as data', async () => {
    for (const s of evil) {
      for (const op of ['eq', 'neq', 'contains', 'starts_with']) {
        const rules = parseSegmentRules(trait(s, op, s));
        const query = await compileSegment(rules, { resolveSegment: noSegments });
        expect(text(query)).not.toContain(s);
        await rows(db, query);
      }
      expect(await members(trait('city', 'eq', s))).toEqual(s === evil[0] ? ids(A) : []);
      expect(await members(trait('city', 'in', [s, 'Paris']))).toEqual(
        s === evil[0] ? ids(A, B) : ids(B),
      );
    }
    expect(await members(trait(evil[0]!, 'eq', evil[1]))).toEqual(ids(A));
    expect(await members(trait(evil[0]!, 'contains', `OR 1=1`))).toEqual(ids(A));
  });

  it('treats hostile event names and property keys as data', async () => {
    for (const s of evil) {
      const rule = {
        event: {
          name: s,
          where: [{ property: s, op: 'eq', value: s }],
          aggregate: { fn: 'sum', property: [s, s], op: 'gte', value: 0 },
        },
      };
      const query = await compileSegment(parseSegmentRules(rule), { resolveSegment: noSegments });
      expect(text(query)).not.toContain(s);
      await rows(db, query);
    }
    expect(await members({ event: { name: evil[0] } }, { asOf: AS_OF })).toEqual(ids(A));
    expect(
      await members(
        { event: { name: evil[0], where: [{ property: evil[2], op: 'eq', value: evil[3] }] } },
        { asOf: AS_OF },
      ),
    ).toEqual(ids(A));
    expect(await members({ event: { name: `${evil[0]}' or '1'='1` } }, { asOf: AS_OF })).toEqual(
      [],
    );
  });

  it('refuses strings PostgreSQL cannot hold with a validation error', () => {
    for (const bad of ['a\u0000b', 'x\uD800']) {
      expect(() => parseSegmentRules(trait(bad, 'eq', 1))).toThrow(HubError);
      expect(() => parseSegmentRules(trait('a', 'eq', bad))).toThrow(HubError);
      expect(() => parseSegmentRules({ event: { name: bad } })).toThrow(HubError);
    }
  });

  it('leaves the data untouched', async () => {
    const [row] = await rows<{ n: number }>(db, sql`select count(*)::int as n from profiles`);
    expect(row!.n).toBe(2);
  });
});

describe(`values stored traits may hold (${driver})`, () => {
  it('never make a comparison fail, whatever their type or size', async () => {
    const odd: unknown[] = [
      null,
      'NaN',
      'Infinity',
      '1e999999',
      '9'.repeat(5000),
      '0x1F',
      '1,5',
      ' 12 ',
      '+7',
      '.5',
      '5.',
      '2024-02-30',
      '2024-02-29T24:00:00Z',
      '0000-01-01',
      '2024-01-01T10:00:00+25:00',
      { nested: 1 },
      [1, 2],
      true,
      '',
    ];
    await addProfiles(...odd.map((v, i) => ({ id: pid(100 + i), traits: { v } })));
    const ops: unknown[] = [
      trait('v', 'gt', 0),
      trait('v', 'between', [0, 10]),
      trait('v', 'eq', 12),
      trait('v', 'in', [7, 'x']),
      trait('v', 'before', '2100-01-01'),
      trait('v', 'within_last', 100000, { unit: 'years' }),
      trait('v', 'contains', 'a'),
      trait('v', 'starts_with', '2'),
      trait('v', 'neq', true),
    ];
    for (const rule of ops) await members(rule);
    // ' 12 ', '+7', '.5' and '5.' are numbers; 5,000 digits are more than a numeric string may hold.
    expect(await members(trait('v', 'gte', 0))).toEqual(
      ids(pid(107), pid(108), pid(109), pid(110)),
    );
    expect(await members(trait('v', 'before', '2100-01-01'))).toEqual([]);
  });
});
