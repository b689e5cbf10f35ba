/**
 * Correctness on real data: UCI Online Retail loaded through the real ingestion path, RFM
 * computed by the hub, checked against an oracle computed in TypeScript from the raw CSV rows
 * (test/support/online-retail.ts) and against figures computed once more, separately, in
 * Python with exact decimals over the same file (the literals below).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { rows, type Database, type Db } from '../../src/db/index.ts';
import { countSegment } from '../../src/segments/compile.ts';
import { computeRfm } from '../../src/segments/rfm.ts';
import { findTemplate, RFM_GROUPS, rfmGroup } from '../../src/segments/templates.ts';
import { driver, testDatabase } from '../support/db.ts';
import {
  customerPurchasesOracle,
  loadOnlineRetail,
  loyalCustomersOracle,
  onlineRetailFacts,
  rfmOracle,
  type RfmOracleRow,
} from '../support/online-retail.ts';

const asOf = new Date('2011-12-10T00:00:00Z');

/**
 * [CustomerID, days since last purchase, purchase invoices, revenue in cents, R, F, M] as of
 * 2011-12-10, from the Python computation; chosen across the score range.
 */
const NAMED: [string, number, number, number, number, number, number][] = [
  ['12346', 325, 1, 7718360, 1, 2, 5], // one huge order (74,215 units), then cancelled
  ['12347', 2, 7, 431000, 5, 5, 5],
  ['17850', 372, 34, 539121, 1, 5, 5], // the first customer in the file; gone since 2010-12-02
  ['14646', 1, 74, 28020602, 5, 5, 5], // the largest revenue
  ['18102', 0, 60, 25965730, 5, 5, 5],
  ['16446', 0, 2, 16847250, 5, 3, 5],
  ['13747', 373, 1, 7960, 1, 2, 1],
  ['12493', 165, 2, 43374, 2, 3, 2],
  ['12413', 66, 3, 75810, 3, 4, 3],
  ['12349', 18, 1, 175755, 4, 2, 4],
  ['12422', 95, 3, 80356, 2, 4, 3],
  ['12581', 39, 1, 19771, 3, 2, 1],
  ['12494', 15, 7, 124610, 4, 5, 4],
  ['12386', 337, 2, 40190, 1, 3, 2],
];

let database: Database;
let db: Db;
let scored: number;
let oracle: Map<string, RfmOracleRow>;
/** CustomerID → the hub's scores, or null. */
let hub: Map<string, [number, number, number] | null>;

beforeAll(async () => {
  database = await testDatabase();
  db = database.db;
  const load = await loadOnlineRetail(db);
  const t = performance.now();
  scored = await computeRfm(db, { asOf });
  const rfmMs = performance.now() - t;
  console.info(
    `online retail on ${driver}: CSV read ${Math.round(load.readMs)} ms, ` +
      `${load.messages} messages ingested in ${Math.round(load.ingestMs)} ms, ` +
      `computeRfm ${Math.round(rfmMs)} ms`,
  );
  oracle = await rfmOracle(asOf);
  const result = await rows<{ customer: string; r: number | null; f: number; m: number }>(
    db,
    sql`select i.value as customer, p.rfm_recency as r, p.rfm_frequency as f,
          p.rfm_monetary as m
        from identities i join profiles p on p.id = i.profile_id
        where i.type = 'user_id' and p.merged_into is null`,
  );
  hub = new Map(result.map((p) => [p.customer, p.r === null ? null : [p.r, p.f, p.m]]));
}, 600_000);
afterAll(() => database?.close());

const distribution = (scores: Iterable<number>) => {
  const counts = [0, 0, 0, 0, 0];
  for (const s of scores) counts[s - 1]!++;
  return counts;
};

describe(`RFM on UCI Online Retail as of 2011-12-10 (${driver})`, () => {
  it('reads the dataset as it is known', async () => {
    expect(await onlineRetailFacts()).toEqual({
      rows: 541_909,
      rowsWithoutCustomer: 135_080,
      customers: 4_372,
      invoices: 25_900,
      cancellationInvoices: 3_836,
      firstAt: new Date('2010-12-01T08:26:00Z'),
      lastAt: new Date('2011-12-09T12:50:00Z'),
    });
    const purchases = [...(await customerPurchasesOracle(asOf)).values()];
    // 33 customers only ever cancelled.
    expect(purchases).toHaveLength(4_339);
    expect(purchases.reduce((n, c) => n + c.invoices, 0)).toBe(18_536);
    expect(purchases.reduce((n, c) => n + c.revenueCents, 0)).toBe(891_140_790);
    expect(await loyalCustomersOracle(asOf)).toBe(1_387);
  });

  it('loads one live profile per customer and the purchases faithfully', async () => {
    expect(hub.size).toBe(4_372);
    const [live] = await rows<{ n: number }>(
      db,
      sql`select count(*)::int as n from profiles where merged_into is null`,
    );
    expect(live!.n).toBe(4_372);
    // What the hub holds per customer, against the oracle's reading of the rows.
    const held = await rows<{
      customer: string;
      last: Date | string;
      orders: number;
      cents: string;
    }>(
      db,
      sql`select e.user_id as customer, max(e."timestamp") as last,
            count(distinct e.properties->>'order_id')::int as orders,
            (sum(e.revenue) * 100)::bigint::text as cents
          from events e where e.revenue is not null group by e.user_id`,
    );
    const purchases = await customerPurchasesOracle(asOf);
    expect(held).toHaveLength(purchases.size);
    for (const h of held) {
      const o = purchases.get(h.customer);
      expect({
        customer: h.customer,
        last: new Date(h.last).getTime(),
        orders: h.orders,
        cents: Number(h.cents),
      }).toEqual({
        customer: h.customer,
        last: o?.lastPurchaseAt,
        orders: o?.invoices,
        cents: o?.revenueCents,
      });
    }
  });

  it('scores the named customers as computed independently', () => {
    for (const [id, days, invoices, cents, r, f, m] of NAMED) {
      const o = oracle.get(id)!;
      expect([
        id,
        o.recencyDays,
        o.invoices,
        o.revenueCents,
        o.recency,
        o.frequency,
        o.monetary,
      ]).toEqual([id, days, invoices, cents, r, f, m]);
      expect([id, hub.get(id)]).toEqual([id, [r, f, m]]);
    }
  });

  it('scores every customer as the oracle does', () => {
    expect(scored).toBe(oracle.size);
    const mismatches: string[] = [];
    for (const [id, scores] of hub) {
      const o = oracle.get(id);
      const expected = o ? [o.recency, o.frequency, o.monetary] : null;
      if (JSON.stringify(scores) !== JSON.stringify(expected)) {
        mismatches.push(`${id}: hub ${JSON.stringify(scores)}, oracle ${JSON.stringify(expected)}`);
      }
    }
    expect(mismatches.slice(0, 20)).toEqual([]);
  });

  it('spreads the scores as the definition implies', () => {
    const scores = [...hub.values()].filter((s) => s !== null);
    // Recency and monetary split into near-fifths; a third of the customers bought once, so
    // F = 1 is empty and they all share F = 2.
    expect(distribution(scores.map((s) => s[0]))).toEqual([861, 866, 863, 881, 868]);
    expect(distribution(scores.map((s) => s[1]))).toEqual([0, 1_494, 835, 1_138, 872]);
    expect(distribution(scores.map((s) => s[2]))).toEqual([867, 868, 868, 868, 868]);
  });

  it('leaves the customers without purchases unscored', async () => {
    const unscored = [...hub].filter(([, s]) => s === null).map(([id]) => id);
    expect(unscored).toHaveLength(4_372 - 4_339);
    for (const id of unscored) expect(oracle.has(id)).toBe(false);
    const [stamped] = await rows<{ n: number }>(
      db,
      sql`select count(*)::int as n from profiles
          where rfm_as_of = ${asOf.toISOString()}::timestamptz and rfm_recency is not null`,
    );
    expect(stamped!.n).toBe(4_339);
  });

  it('counts the loyal customers as the oracle does (the template, compiled)', async () => {
    const rules = findTemplate('loyal-customers')!.rules;
    const count = await countSegment(db, rules, { asOf, resolveSegment: () => null });
    expect(count).toBe(await loyalCustomersOracle(asOf));
    expect(count).toBe(1_387);
  });

  it('puts every scored customer in exactly one RFM group, as the oracle scores say', async () => {
    const sizes: Record<string, [number, number]> = {};
    for (const group of RFM_GROUPS) {
      const hubCount = await countSegment(db, rfmGroup(group), { resolveSegment: () => null });
      const inRange = (s: number, [lo, hi]: [number, number]) => s >= lo && s <= hi;
      const oracleCount = [...oracle.values()].filter(
        (o) => inRange(o.recency, group.recency) && inRange(o.frequency, group.frequency),
      ).length;
      sizes[group.key] = [hubCount, oracleCount];
    }
    for (const [key, [hubCount, oracleCount]] of Object.entries(sizes)) {
      expect([key, hubCount]).toEqual([key, oracleCount]);
    }
    expect(Object.values(sizes).reduce((n, [h]) => n + h, 0)).toBe(4_339);
  });
});
