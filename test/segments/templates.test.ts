import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { json, type Database, type Db } from '../../src/db/index.ts';
import { segmentProfileIds, type CompileOptions } from '../../src/segments/compile.ts';
import { parseSegmentRules, type SegmentRules } from '../../src/segments/rules.ts';
import {
  RFM_GROUPS,
  TEMPLATES,
  channel,
  cityCategoryBuyers,
  findTemplate,
  highValue,
  hotLeads,
  inactiveReactivation,
  loyalCustomers,
  newPaying,
  rfmGroup,
} from '../../src/segments/templates.ts';
import { foldAll } from '../../src/profiles/fold.ts';
import { driver, testDatabase } from '../support/db.ts';
import { insertEvents } from '../support/events.ts';

let database: Database;
let db: Db;

beforeAll(async () => {
  database = await testDatabase();
  db = database.db;
});
afterAll(() => database.close());
beforeEach(async () => {
  await db.execute(
    sql`truncate profiles, events, profile_event_counts, event_cursors restart identity`,
  );
});

const pid = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
const [A, B, C, D, E, F, G] = [1, 2, 3, 4, 5, 6, 7].map(pid) as [
  string,
  string,
  string,
  string,
  string,
  string,
  string,
];
const ids = (...list: string[]) => [...list].sort();

const AS_OF = new Date('2024-06-30T12:00:00Z');
const DAY = 86_400_000;

async function addProfiles(
  ...list: { id: string; traits?: Record<string, unknown>; merged_into?: string }[]
) {
  const data = list.map((p) => ({ traits: {}, ...p }));
  await db.execute(
    sql`insert into profiles (id, kind, traits, merged_into)
        select id, 'customer', traits, merged_into
        from json_to_recordset(${json(data)}) as x(id uuid, traits jsonb, merged_into uuid)`,
  );
}

interface EventRow {
  profile: string;
  /** Days before the base time. */
  daysAgo: number;
  name?: string | null;
  type?: string;
  properties?: Record<string, unknown>;
  revenue?: number | null;
}

const addEvents = (base: Date, ...list: EventRow[]) =>
  insertEvents(
    db,
    list.map(({ daysAgo, ...e }) => ({
      ...e,
      name: e.name ?? null,
      at: new Date(base.getTime() - daysAgo * DAY),
    })),
  );

async function members(rules: SegmentRules, options: Partial<CompileOptions> = {}) {
  return segmentProfileIds(db, parseSegmentRules(rules), {
    resolveSegment: () => null,
    ...options,
  });
}

const purchase = (profile: string, daysAgo: number, revenue = 50, properties = {}) => ({
  profile,
  daysAgo,
  name: 'Order Completed',
  revenue,
  properties: { revenue, ...properties },
});

/**
 * Each template is checked twice on the same people: with their events dated before `AS_OF`
 * and evaluated as of it, and with their events dated before now, folded into the computed
 * traits and evaluated without asOf (the fast path).
 */
function bothWays(
  name: string,
  load: (base: Date) => Promise<void>,
  check: (run: Run) => Promise<void>,
) {
  it(`${name}: as of a date`, async () => {
    await load(AS_OF);
    await check((rules) => members(rules, { asOf: AS_OF }));
  });
  it(`${name}: now, from the stored computed traits`, async () => {
    await load(new Date());
    // What the worker's fold does within a second of the data arriving.
    await foldAll(db);
    await check((rules) => members(rules));
  });
}
type Run = (rules: SegmentRules) => Promise<string[]>;

describe(`templates (${driver})`, () => {
  bothWays(
    'loyal customers: purchased at least twice in the last 3 months',
    async (base) => {
      await addProfiles({ id: A }, { id: B }, { id: C }, { id: D }, { id: E }, { id: G });
      await addProfiles({ id: F, merged_into: A });
      await addEvents(
        base,
        purchase(A, 10),
        purchase(A, 80),
        purchase(B, 10),
        purchase(B, 100),
        purchase(C, 5),
        { profile: C, daysAgo: 4, name: 'Order Viewed' },
        { profile: C, daysAgo: 3, name: 'Order Viewed' },
        { profile: D, daysAgo: 5, name: 'purchase', revenue: 10 },
        { profile: D, daysAgo: 6, name: 'purchase', revenue: 10 },
        { profile: D, daysAgo: 7, name: 'purchase', revenue: 0 },
        purchase(E, -1),
        purchase(E, -2),
        purchase(F, 10),
        purchase(F, 20),
        // Not purchases: no revenue.
        { profile: G, daysAgo: 3, name: 'Order Completed' },
        { profile: G, daysAgo: 4, name: 'Order Completed' },
      );
    },
    async (run) => expect(await run(loyalCustomers())).toEqual(ids(A, D)),
  );

  bothWays(
    'hot leads: pricing page 3 times in 7 days, or a download or a form in 30 days',
    async (base) => {
      await addProfiles(
        { id: A },
        { id: B },
        { id: C },
        { id: D },
        { id: E },
        { id: F },
        { id: G },
      );
      const pricing = (profile: string, daysAgo: number, path = '/pricing') => ({
        profile,
        daysAgo,
        type: 'page',
        name: 'Pricing',
        properties: { path, url: `https://example.com${path}` },
      });
      await addEvents(
        base,
        pricing(A, 1),
        pricing(A, 2),
        pricing(A, 6),
        pricing(B, 1),
        pricing(B, 2),
        pricing(B, 8),
        { profile: B, daysAgo: 31, name: 'Form Submitted' },
        { profile: C, daysAgo: 29, name: 'Form Submitted' },
        { profile: D, daysAgo: 1, name: 'File Downloaded' },
        pricing(E, 1, '/pricing/enterprise'),
        pricing(E, 2, '/pricing/enterprise'),
        pricing(E, 3, '/pricing/enterprise'),
        { profile: E, daysAgo: 1, name: 'Pricing Viewed' },
        pricing(F, 1),
        pricing(F, 2),
        pricing(F, 3),
        { profile: F, daysAgo: 3, name: 'File Downloaded' },
        {
          profile: G,
          daysAgo: 1,
          type: 'page',
          name: 'File Downloaded',
          properties: { path: '/x' },
        },
      );
    },
    async (run) => expect(await run(hotLeads())).toEqual(ids(A, C, D, F)),
  );

  bothWays(
    'high value: total_spent > 200 and purchase_count > 3',
    async (base) => {
      await addProfiles({ id: A }, { id: B }, { id: C }, { id: D }, { id: E });
      await addEvents(
        base,
        ...[10, 11, 12, 13].map((d) => purchase(A, d, 60)),
        ...[10, 11, 12, 13].map((d) => purchase(B, d, 50)),
        ...[10, 11, 12].map((d) => purchase(C, d, 100)),
        ...[1, 2, 3, 4, 5].map((d) => purchase(D, d, 100)),
        { profile: E, daysAgo: 1, name: 'Signed Up' },
      );
    },
    async (run) => expect(await run(highValue())).toEqual(ids(A, D)),
  );

  it('high value as of an earlier date counts only the purchases made by then', async () => {
    await addProfiles({ id: A }, { id: D });
    await addEvents(
      AS_OF,
      ...[10, 11, 12, 13].map((d) => purchase(A, d, 60)),
      ...[1, 2, 3, 4, 5].map((d) => purchase(D, d, 100)),
    );
    const earlier = new Date(AS_OF.getTime() - 2.5 * DAY);
    expect(await members(highValue(), { asOf: earlier })).toEqual(ids(A));
  });

  bothWays(
    'inactive reactivation: spent something, no activity for 30 days',
    async (base) => {
      await addProfiles({ id: A }, { id: B }, { id: C }, { id: D }, { id: E }, { id: F });
      await addEvents(
        base,
        purchase(A, 40),
        purchase(B, 40),
        { profile: B, daysAgo: 10, type: 'page', name: 'Home' },
        { profile: C, daysAgo: 45, name: 'Signed Up' },
        purchase(D, 40),
        // identify is not activity
        { profile: D, daysAgo: 5, type: 'identify' },
        purchase(E, 40, 0),
        purchase(F, 5),
      );
    },
    async (run) => expect(await run(inactiveReactivation())).toEqual(ids(A, D)),
  );

  bothWays(
    'new paying: exactly one purchase',
    async (base) => {
      await addProfiles({ id: A }, { id: B }, { id: C }, { id: D });
      await addEvents(
        base,
        purchase(A, 3),
        purchase(B, 3),
        purchase(B, 4),
        { profile: C, daysAgo: 1, name: 'Signed Up' },
        purchase(D, 200),
        { profile: D, daysAgo: 1, type: 'page', name: 'Home' },
      );
    },
    async (run) => expect(await run(newPaying())).toEqual(ids(A, D)),
  );

  it('channel: trait source = referral', async () => {
    await addProfiles(
      { id: A, traits: { source: 'referral' } },
      { id: B, traits: { source: 'Referral' } },
      { id: C, traits: { source: 'ads' } },
      { id: D, traits: {} },
      { id: E, traits: { source: ['referral'] } },
    );
    expect(await members(channel())).toEqual(ids(A));
    expect(await members(channel({ source: 'ads' }))).toEqual(ids(C));
  });

  bothWays(
    'city and category: aged 18–35 in Paris, 3 Shoes purchases in a month',
    async (base) => {
      await addProfiles(
        { id: A, traits: { age: 25, city: 'Paris' } },
        { id: B, traits: { age: '30', city: 'Paris' } },
        { id: C, traits: { age: 36, city: 'Paris' } },
        { id: D, traits: { age: 18, city: 'Paris' } },
        { id: E, traits: { age: 35, city: 'Lyon' } },
        { id: F, traits: { age: 20, city: 'Paris' } },
        { id: G, traits: { age: 35, city: 'Paris' } },
      );
      const shoes = (p: string, d: number, category = 'Shoes') => purchase(p, d, 80, { category });
      await addEvents(
        base,
        ...[1, 5, 20].map((d) => shoes(A, d)),
        ...[1, 5, 20].map((d) => shoes(B, d)),
        ...[1, 5, 20].map((d) => shoes(C, d)),
        shoes(D, 1),
        shoes(D, 2),
        shoes(D, 3, 'Hats'),
        ...[1, 5, 20].map((d) => shoes(E, d)),
        shoes(F, 1),
        shoes(F, 2),
        shoes(F, 40),
        ...[1, 2, 3, 4].map((d) => shoes(G, d)),
      );
    },
    async (run) =>
      expect(await run(cityCategoryBuyers({ city: 'Paris', category: 'Shoes' }))).toEqual(
        ids(A, B, G),
      ),
  );

  it('city and category in a given calendar month', async () => {
    await addProfiles({ id: A, traits: { age: 25, city: 'Paris' } });
    await addEvents(
      new Date('2024-03-31T23:00:00Z'),
      ...[0, 10, 20].map((d) => purchase(A, d, 80, { category: 'Shoes' })),
    );
    const march = cityCategoryBuyers({
      city: 'Paris',
      category: 'Shoes',
      within: { from: '2024-03-01', to: '2024-03-31' },
    });
    expect(await members(march, { asOf: AS_OF })).toEqual(ids(A));
    const april = cityCategoryBuyers({
      city: 'Paris',
      category: 'Shoes',
      within: { from: '2024-04-01', to: '2024-04-30' },
    });
    expect(await members(april, { asOf: AS_OF })).toEqual([]);
  });
});

describe(`RFM groups (${driver})`, () => {
  /** One profile per (R, F) pair, R and F from 1 to 5, and one without scores. */
  const scored = Array.from({ length: 25 }, (_, i) => ({
    id: pid(100 + i),
    r: Math.floor(i / 5) + 1,
    f: (i % 5) + 1,
  }));

  beforeEach(async () => {
    const data = [
      ...scored.map((s) => ({ id: s.id, r: s.r, f: s.f, m: ((s.r + s.f) % 5) + 1 })),
      { id: pid(200), r: null, f: null, m: null },
    ];
    await db.execute(
      sql`insert into profiles (id, rfm_recency, rfm_frequency, rfm_monetary, rfm_as_of)
          select id, r, f, m, case when r is null then null else now() end
          from json_to_recordset(${json(data)}) as x(id uuid, r smallint, f smallint, m smallint)`,
    );
  });

  it('each group selects exactly the customers within its score ranges', async () => {
    const inRange = (v: number, [lo, hi]: [number, number]) => lo <= v && v <= hi;
    for (const group of RFM_GROUPS) {
      const expected = scored
        .filter((s) => inRange(s.r, group.recency) && inRange(s.f, group.frequency))
        .map((s) => s.id);
      expect(expected.length, group.key).toBeGreaterThan(0);
      expect(await members(rfmGroup(group)), group.key).toEqual(ids(...expected));
    }
  });

  it('the groups partition the scored customers', async () => {
    const seen = new Map<string, string>();
    for (const group of RFM_GROUPS) {
      for (const id of await members(rfmGroup(group))) {
        expect(seen.get(id), `${id} in ${group.key}`).toBeUndefined();
        seen.set(id, group.key);
      }
    }
    expect([...seen.keys()].sort()).toEqual(ids(...scored.map((s) => s.id)));
  });

  it('champions are R 5 and F 4–5', async () => {
    const champions = findTemplate('rfm-champions')!;
    expect(champions.rules).toEqual({
      all: [
        { computed: { name: 'rfm_recency', op: 'eq', value: 5 } },
        { computed: { name: 'rfm_frequency', op: 'between', value: [4, 5] } },
      ],
    });
    expect(await members(champions.rules)).toEqual(ids(pid(123), pid(124)));
  });
});

describe('the template list', () => {
  it('holds valid rules under unique keys', () => {
    const keys = TEMPLATES.map((t) => t.key);
    expect(new Set(keys).size).toBe(keys.length);
    for (const t of TEMPLATES) expect(parseSegmentRules(t.rules, t.key)).toEqual(t.rules);
    expect(keys).toEqual(
      expect.arrayContaining([
        'loyal-customers',
        'hot-leads',
        'high-value',
        'inactive-reactivation',
        'new-paying',
        'channel-referral',
        'city-category-buyers',
        'rfm-champions',
        'rfm-loyal',
        'rfm-potential-loyalists',
        'rfm-new-customers',
        'rfm-at-risk',
        'rfm-hibernating',
        'rfm-lost',
      ]),
    );
    expect(findTemplate('nope')).toBeUndefined();
  });
});
