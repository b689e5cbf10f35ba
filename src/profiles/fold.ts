/**
 * Computed traits (first/last seen, event counts, purchases, total spent) are folded into
 * profiles from the events table by a background step, not by the ingest transaction: ingestion
 * then only appends events, and a profile touched by many events in a second is updated once.
 *
 * Reading the events table in id order needs one care: ids are taken when a row is inserted,
 * but transactions commit in any order, so an event with a smaller id may become visible after
 * one with a larger id. Every ingest transaction therefore holds a shared advisory lock (the
 * *ingest horizon*) from before it inserts until it commits; the fold takes the same lock
 * exclusively for an instant, which waits for the transactions in flight, and reads the largest
 * id then. Every event at or below that id is committed, so the fold never skips one.
 *
 * Merges combine the folded totals of the profiles they merge (sums add, firsts take the least,
 * lasts the greatest) and move the events; an event not yet folded is folded into whichever
 * profile holds it when the fold runs. An event stored on a profile that a concurrent merge
 * turned into a tombstone is moved to the survivor here, before it is counted.
 *
 * A fold first counts without locking the window's profiles: its update locks each profile as
 * it changes it, so a merge or an erasure can only slip in before that, and then leaves the
 * profile not updated (a tombstone, or gone). When any profile of the window was not updated,
 * the fold is rolled back and done again with every profile locked first, events on tombstones
 * moved to their survivors.
 */
import { sql, type SQL } from 'drizzle-orm';
import { json, preparedRows, RetryTransaction, rows, withRetry, type Db } from '../db/index.ts';

/** Advisory lock keys (the two-int form, apart from the one-bigint identity locks). */
const LOCKS = { class: 0x41480001, horizon: 1, fold: 2 } as const;

/** Message types that count as activity in event_count and in the per-event counts. */
export const ACTIVITY_TYPES = ['track', 'page', 'screen'] as const;
const ACTIVITY = sql`('track', 'page', 'screen')`;
/** What an event is counted as in the per-event counts: its name for track, else its type. */
const COUNTED_AS = sql`case when type = 'track' then name else type end`;

const CURSOR = 'computed-traits';

/**
 * Taken by every transaction that inserts events, before its first insert; released at commit.
 * Erasure takes it exclusively, so no message for an erased person is in flight while it runs.
 */
export async function holdIngestHorizon(tx: Db): Promise<void> {
  await preparedRows(
    tx,
    sql`select pg_advisory_xact_lock_shared(${LOCKS.class}, ${LOCKS.horizon})`,
  );
}

/** Wait for every ingest transaction in flight, and hold off new ones until `tx` ends. */
export async function exclusiveIngestHorizon(tx: Db): Promise<void> {
  await tx.execute(sql`select pg_advisory_xact_lock(${LOCKS.class}, ${LOCKS.horizon})`);
}

/** The largest event id below which every event is committed. */
export async function committedEventHorizon(db: Db): Promise<number> {
  return db.transaction(async (tx) => {
    await exclusiveIngestHorizon(tx);
    const [row] = await rows<{ id: string | number | null }>(
      tx,
      sql`select max(id) as id from events`,
    );
    return Number(row?.id ?? 0);
  });
}

export interface FoldResult {
  /** Events folded. */
  events: number;
  /** Live profiles whose computed traits changed. */
  profileIds: string[];
  /** The cursor after this fold. */
  position: number;
  /** True when more committed events wait beyond `maxEvents`. */
  more: boolean;
}

/**
 * Fold the events committed since the last fold into their profiles' computed traits, at most
 * `maxEvents` ids at a time. Returns nothing to do (`events: 0`) when another process is folding.
 *
 * @example
 * await ingestMessages(db, config, messages);
 * const { profileIds } = await foldNewEvents(db); // their computed traits are current now
 */
export async function foldNewEvents(
  db: Db,
  options: { maxEvents?: number } = {},
): Promise<FoldResult> {
  const maxEvents = options.maxEvents ?? 50_000;
  await ensureEventCounts(db);
  const horizon = await committedEventHorizon(db);
  let attempt = 0;
  return withRetry(db, async (tx) => {
    // The first attempt counts without locking the window's profiles; a merge or an erasure
    // that touches one of them meanwhile shows as a profile not updated, and the fold is then
    // done again under locks.
    const careful = attempt++ > 0;
    const [mine] = await rows<{ locked: boolean }>(
      tx,
      sql`select pg_try_advisory_xact_lock(${LOCKS.class}, ${LOCKS.fold}) as locked`,
    );
    if (!mine!.locked) return { events: 0, profileIds: [], position: 0, more: false };
    await tx.execute(
      sql`insert into event_cursors (name) values (${CURSOR}) on conflict (name) do nothing`,
    );
    const [cursor] = await rows<{ position: string | number }>(
      tx,
      sql`select position from event_cursors where name = ${CURSOR} for update`,
    );
    const from = Number(cursor!.position);
    const to = Math.min(horizon, from + maxEvents);
    if (to <= from) return { events: 0, profileIds: [], position: from, more: false };
    const window = sql`e.id > ${from} and e.id <= ${to}`;

    if (careful) await lockWindow(tx, window);
    // The update takes each profile's row lock as it goes: in id order, as ingestion and merges
    // take theirs, so that they wait for one another instead of deadlocking. A nested loop over
    // the profiles sorted by id is the plan that keeps that order (and reads only the window's
    // profiles, by primary key); these settings last until the transaction ends.
    await tx.execute(sql`set local enable_hashjoin = off`);
    await tx.execute(sql`set local enable_mergejoin = off`);
    // The window is read once, into a materialized CTE that both aggregates scan: filtering
    // events on type directly would let the planner read the type index over the whole table.
    // Liveness is read from what the update returns, not filtered on: a condition on
    // merged_into would let the planner read every live profile through that index.
    const [result] = await rows<{
      events: number;
      owners: number;
      tombstones: number;
      ids: string[] | null;
    }>(
      tx,
      sql`with w as materialized (
            select profile_id, type, name, "timestamp", revenue from events e where ${window}
          ),
          counts as (
            ${addEventCounts(
              sql`select profile_id, ${COUNTED_AS}, count(*), min("timestamp"), max("timestamp")
                  from w where type in ${ACTIVITY}
                  group by 1, 2`,
            )}
          ),
          d as (
            select profile_id, count(*) filter (where type in ${ACTIVITY}) as activity,
              min("timestamp") as first, max("timestamp") as last,
              count(revenue) as purchases, coalesce(sum(revenue), 0) as spent,
              max("timestamp") filter (where revenue is not null) as last_purchase
            from w
            group by profile_id
            order by profile_id
          ),
          changed as (
            update profiles p set
              event_count = p.event_count + d.activity,
              first_seen_at = least(p.first_seen_at, d.first),
              last_seen_at = greatest(p.last_seen_at, d.last),
              purchase_count = p.purchase_count + d.purchases,
              total_spent = p.total_spent + d.spent,
              last_purchase_at = greatest(p.last_purchase_at, d.last_purchase),
              updated_at = now()
            from d
            where p.id = d.profile_id
            returning p.id, p.merged_into
          )
          select (select count(*)::int from w) as events,
            (select count(*)::int from d) as owners,
            (select count(*)::int from changed where merged_into is not null) as tombstones,
            (select array_agg(id::text) from changed where merged_into is null) as ids`,
    );
    const changed = result!.ids ?? [];
    // A tombstone is never counted into: the fold is rolled back and done again under locks,
    // which first moves the tombstone's events to its survivor.
    if (result!.tombstones > 0 || (!careful && changed.length !== result!.owners)) {
      throw new RetryTransaction('a profile of the window was merged or erased during the fold');
    }
    await tx.execute(
      sql`update event_cursors set position = ${to}, updated_at = now() where name = ${CURSOR}`,
    );
    return {
      events: result!.events,
      profileIds: changed,
      position: to,
      more: to < horizon,
    };
  });
}

/**
 * Lock every profile that holds an event of the window, and the survivors of those that were
 * merged meanwhile, so no merge moves these events while they are counted; move the events
 * stored on tombstones to their survivors.
 */
async function lockWindow(tx: Db, window: SQL): Promise<void> {
  const owners = await rows<{ id: string }>(
    tx,
    sql`select distinct profile_id as id from events e where ${window}`,
  );
  const locked = await lockProfiles(
    tx,
    owners.map((o) => o.id),
  );
  const survivors = [...new Set(locked.flatMap((p) => (p.merged_into ? [p.merged_into] : [])))];
  if (survivors.length > 0) {
    const again = await lockProfiles(tx, survivors);
    if (again.length !== survivors.length || again.some((p) => p.merged_into)) {
      throw new RetryTransaction('a survivor was merged during the fold');
    }
    await tx.execute(
      sql`update events e set profile_id = p.merged_into from profiles p
            where ${window} and p.id = e.profile_id and p.merged_into is not null`,
    );
  }
}

/**
 * Rebuild the per-event counts from the events folded so far, when a crash emptied them; else
 * nothing. profile_event_counts is unlogged (migration 0012): the fold writes a row of it for
 * nearly every event, and unlogged that costs no WAL. Run on start and before every fold; until
 * it has run, a segment query that reads the counts fails (`event_counts_ready()`).
 *
 * @returns whether the counts were rebuilt.
 *
 * @example
 * if (await ensureEventCounts(db)) log.warn('per-event counts rebuilt after a crash');
 */
export async function ensureEventCounts(db: Db): Promise<boolean> {
  if (await eventCountsReady(db)) return false;
  return db.transaction(async (tx) => {
    // No fold meanwhile, and the merges and erasures that write counts wait until this commits.
    await tx.execute(sql`select pg_advisory_xact_lock(${LOCKS.class}, ${LOCKS.fold})`);
    await tx.execute(sql`lock table profile_event_counts in exclusive mode`);
    if (await eventCountsReady(tx)) return false;
    const [cursor] = await rows<{ position: string | number }>(
      tx,
      sql`select position from event_cursors where name = ${CURSOR}`,
    );
    // Every event up to the cursor is committed, and none of them is on a tombstone: a merge
    // moves the events it finds and the fold those it meets.
    const folded = Number(cursor?.position ?? 0);
    await tx.execute(sql`delete from profile_event_counts`);
    await tx.execute(
      sql`insert into profile_event_counts (profile_id, name, count, first_at, last_at)
          select profile_id, ${COUNTED_AS}, count(*), min("timestamp"), max("timestamp")
          from events e where e.id <= ${folded} and type in ${ACTIVITY}
          group by 1, 2`,
    );
    await tx.execute(sql`insert into profile_event_counts_ready default values`);
    return true;
  });
}

async function eventCountsReady(db: Db): Promise<boolean> {
  const [row] = await rows<{ ready: boolean }>(
    db,
    sql`select exists (select from profile_event_counts_ready) as ready`,
  );
  return row!.ready;
}

/** Fold until every committed event is folded. */
export async function foldAll(db: Db): Promise<number> {
  let total = 0;
  for (;;) {
    const result = await foldNewEvents(db);
    total += result.events;
    if (!result.more) return total;
  }
}

/** Add per-event counts (rows of profile_id, name, count, first_at, last_at) to those kept. */
const addEventCounts = (counts: SQL) =>
  sql`insert into profile_event_counts as c (profile_id, name, count, first_at, last_at)
      ${counts}
      on conflict (profile_id, name) do update set
        count = c.count + excluded.count,
        first_at = least(c.first_at, excluded.first_at),
        last_at = greatest(c.last_at, excluded.last_at)`;

async function lockProfiles(tx: Db, ids: string[]) {
  if (ids.length === 0) return [];
  return rows<{ id: string; merged_into: string | null }>(
    tx,
    sql`select id, merged_into from profiles
        where id in (select x::uuid from json_array_elements_text(${json([...ids].sort())}) as x)
        order by id for update`,
  );
}

/**
 * Combine the folded computed traits of merged profiles into their survivors, and clear the
 * losers'. Called by a merge holding both profiles' locks, before the losers become tombstones.
 */
export async function combineComputedTraits(
  tx: Db,
  pairs: { loser: string; survivor: string }[],
): Promise<void> {
  const m = sql`json_to_recordset(${json(pairs)}) as m(loser uuid, survivor uuid)`;
  await tx.execute(
    sql`update profiles s set
          event_count = s.event_count + l.activity,
          first_seen_at = least(s.first_seen_at, l.first),
          last_seen_at = greatest(s.last_seen_at, l.last),
          purchase_count = s.purchase_count + l.purchases,
          total_spent = s.total_spent + l.spent,
          last_purchase_at = greatest(s.last_purchase_at, l.last_purchase),
          updated_at = now()
        from (
          select m.survivor, sum(p.event_count) as activity, min(p.first_seen_at) as first,
            max(p.last_seen_at) as last, sum(p.purchase_count) as purchases,
            sum(p.total_spent) as spent, max(p.last_purchase_at) as last_purchase
          from ${m} join profiles p on p.id = m.loser
          group by m.survivor
        ) as l
        where s.id = l.survivor`,
  );
  await tx.execute(
    addEventCounts(
      sql`select m.survivor, l.name, sum(l.count), min(l.first_at), max(l.last_at)
          from ${m} join profile_event_counts l on l.profile_id = m.loser
          group by 1, 2`,
    ),
  );
  await tx.execute(sql`delete from profile_event_counts c using ${m} where c.profile_id = m.loser`);
  await tx.execute(
    sql`update profiles p set first_seen_at = null, last_seen_at = null, event_count = 0,
          purchase_count = 0, total_spent = 0, last_purchase_at = null
        from ${m} where p.id = m.loser`,
  );
}
