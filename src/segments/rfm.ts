/**
 * RFM scores: recency, frequency and monetary value of each customer's purchases, as
 * quintile-like scores 1–5 kept on the profile (`rfm_recency`, `rfm_frequency`,
 * `rfm_monetary`, `rfm_as_of`) so that segment rules and the RFM templates can use them as
 * traits.
 */
import { sql } from 'drizzle-orm';
import { rows, textArray, withRetry, type Db } from '../db/index.ts';

export interface ComputeRfmOptions {
  /** The moment the scores describe: purchases after it are ignored, recency is counted to it. */
  asOf: Date;
  /**
   * Event names that count as purchases. By default every event ingest gave a revenue
   * (`revenue is not null`: the configured purchase events, see `HubConfig.purchaseEvents`);
   * when given, only `track` events with one of these names among those. An empty list scores
   * no one.
   */
  purchaseEvents?: readonly string[];
}

/**
 * Compute the RFM scores of every live profile as of `asOf` and store them on the profile,
 * in one set-based statement: no profile is loaded into Node. Returns the number of
 * profiles scored.
 *
 * Definitions (docs/segments.md repeats them):
 * - A **purchase** is an event with `revenue is not null` — ingest sets revenue for the
 *   configured purchase events, 0 when the amount is missing — and `timestamp <= asOf`.
 *   Only purchases held by live profiles (`merged_into is null`) count; a merge moves the
 *   loser's events to the survivor.
 * - The **purchasers** are the live profiles with at least one purchase. Only they are
 *   scored; every other profile (live without purchases, or a tombstone) gets null in all
 *   four columns.
 * - **Recency** (raw) = whole days from the last purchase to `asOf`, floored:
 *   `floor((asOf − max(timestamp)) / 24 h)`, so a purchase 23 hours before `asOf` is 0 days
 *   old and one 25 hours before is 1. Elapsed time: no time zone or DST enters into it.
 * - **Frequency** (raw) = the number of distinct orders:
 *   `count(distinct coalesce(properties->>'order_id', properties->>'transaction_id', message_id))`
 *   — two events for the same order id count once; an event without an order id counts as
 *   its own order.
 * - **Monetary** (raw) = `sum(revenue)` of the purchases (refunds are not subtracted: they are
 *   not purchase events).
 * - Each **score** = `ceil(5 × cume_dist())` over the purchasers, where `cume_dist()` is the
 *   share of purchasers whose raw value ranks at or below this one's, ties included.
 *   Recency is ranked descending (the fewest days, the most recent buyers, get 5);
 *   frequency and monetary ascending (the most orders, the most revenue get 5). Equal raw
 *   values always get equal scores, so the result is deterministic. Score s means
 *   (s − 1)/5 < cume_dist ≤ s/5: 5 for the top fifth, 1 for the bottom fifth, and a large
 *   tie shares the score of its top: when 34% of the purchasers bought once (UCI Online
 *   Retail), all of them get F = 2 and no one gets F = 1.
 * - `rfm_as_of` = `asOf` for scored profiles, null for the others.
 *
 * Runs in one transaction (retried on deadlock with concurrent ingestion); rows whose four
 * values are already right are not rewritten. `updated_at` is not touched.
 *
 * @example
 * const scored = await computeRfm(db, { asOf: new Date() });
 * // champions: rfm_recency >= 4 and rfm_frequency >= 4 and rfm_monetary >= 4
 */
export async function computeRfm(db: Db, options: ComputeRfmOptions): Promise<number> {
  const asOf = options.asOf;
  if (Number.isNaN(asOf.getTime())) throw new TypeError('computeRfm: asOf is not a valid date');
  const at = sql`${asOf.toISOString()}::timestamptz`;
  const names = options.purchaseEvents
    ? sql`and e.type = 'track' and e.name = any(${textArray(options.purchaseEvents)})`
    : sql``;
  const statement = sql`
    with purchases as (
      select e.profile_id,
             max(e."timestamp") as last_at,
             count(distinct coalesce(e.properties->>'order_id', e.properties->>'transaction_id',
                                     e.message_id)) as frequency,
             sum(e.revenue) as monetary
      from events e
      where e.revenue is not null and e."timestamp" <= ${at} ${names}
      group by e.profile_id
    ),
    purchasers as (
      -- Aggregated first, filtered to live profiles after: cheaper than joining every event,
      -- and a merge moves a loser's events to the survivor, so tombstones rarely hold any.
      select u.profile_id,
             floor(extract(epoch from (${at} - u.last_at)) / 86400)::int as recency_days,
             u.frequency, u.monetary
      from purchases u join profiles p on p.id = u.profile_id and p.merged_into is null
    ),
    scored as (
      -- k = how many purchasers rank at or below this one, ties included, so that k / n is
      -- cume_dist(); taken from rank() in the opposite order (1 + how many rank above), which
      -- compares each row with the previous one only. cume_dist() itself rereads every tie
      -- group (100,000s of single-order buyers) from a spilled tuplestore: many times slower.
      -- Then, as cume_dist() does, k / n in double precision. Where 5k/n is a whole number j,
      -- k/n = j/5 and 5 × double(j/5) rounds back to exactly j (j = 1..5), so ceil() never
      -- lifts a whole score; elsewhere 5k/n is at least 1/n from a whole number.
      select profile_id,
             ceil(5 * ((n + 1 - rank() over (order by recency_days))::float8 / n))::smallint as r,
             ceil(5 * ((n + 1 - rank() over (order by frequency desc))::float8 / n))::smallint as f,
             ceil(5 * ((n + 1 - rank() over (order by monetary desc))::float8 / n))::smallint as m
      from (select *, count(*) over () as n from purchasers) u
    ),
    -- The purchasers, and every other profile still holding scores (to clear them). A full
    -- join, because PostgreSQL runs one only as a hash or merge join: a nested loop planned
    -- on a stale estimate of "profiles holding scores" would be quadratic.
    target as (
      select coalesce(s.profile_id, h.id) as id, s.r, s.f, s.m,
             case when s.profile_id is null then null else ${at} end as as_of
      from scored s
      full join (select id from profiles where rfm_as_of is not null or rfm_recency is not null) h
        on h.id = s.profile_id
    ),
    written as (
      update profiles p
      set rfm_recency = t.r, rfm_frequency = t.f, rfm_monetary = t.m, rfm_as_of = t.as_of
      from target t
      where p.id = t.id
        and (p.rfm_recency, p.rfm_frequency, p.rfm_monetary, p.rfm_as_of)
            is distinct from (t.r, t.f, t.m, t.as_of)
    )
    select (select count(*) from scored)::int as scored`;
  return withRetry(db, async (tx) => {
    const [row] = await rows<{ scored: number }>(tx, statement);
    return row!.scored;
  });
}
