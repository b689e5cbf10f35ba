/**
 * Storing messages: resolve each to its profile, store the event once per (source, messageId),
 * record traits, and keep the computed traits in step — all in one transaction per batch.
 */
import { sql } from 'drizzle-orm';
import type { HubConfig } from '../config.ts';
import { json, rows, textArray, uuidArray, withRetry, type Db } from '../db/index.ts';
import type { IdentityCache } from '../profiles/identity-cache.ts';
import { identityString } from '../profiles/identity.ts';
import { lockLiveProfiles, resolveProfiles } from '../profiles/resolve.ts';
import type { PreparedMessage } from './message.ts';

export interface IngestResult {
  /** Messages stored now. */
  accepted: number;
  /** Messages already stored before (a retry of the same messageId from the same source). */
  duplicates: number;
  /** The live profile of each message, in order. */
  profileIds: string[];
  /** For each message, in order: stored now (true) or a duplicate (false). */
  stored: boolean[];
}

/** Message types that count as activity in event_count and the per-event counts. */
const ACTIVITY = sql`('track', 'page', 'screen')`;

/**
 * Store a batch of prepared messages. Retried as a whole on deadlocks and on concurrent
 * merges, so a batch is either stored entirely or not at all.
 *
 * @example
 * const parsed = parseMessage(body, { type: 'track', source: 'web', receivedAt: new Date(), config });
 * if (parsed.ok) await ingestMessages(db, config, [parsed.message]);
 */
export async function ingestMessages(
  db: Db,
  config: HubConfig,
  messages: PreparedMessage[],
  identityCache?: IdentityCache,
): Promise<IngestResult> {
  if (messages.length === 0) return { accepted: 0, duplicates: 0, profileIds: [], stored: [] };
  // A messageId repeated within the batch is a duplicate like any other.
  const seen = new Set<string>();
  const unique = messages.filter((m) => !seen.has(messageKey(m)) && seen.add(messageKey(m)));
  let attempts = 0;
  const result = await withRetry(db, async (tx) => {
    // What made this attempt necessary may be a stale cached identity.
    if (attempts++ > 0) identityCache?.clear();
    const resolution = await resolveProfiles(tx, unique, config, identityCache);
    const { profileIds, survivors, touched } = resolution;
    const inserted = await insertEvents(tx, unique, profileIds);
    await lockLiveProfiles(tx, [...touched]);
    await addToComputedTraits(tx, unique, profileIds, inserted, resolution.customers);
    const withTraits = await recordTraits(tx, unique, profileIds);
    if (survivors.size > 0) await recomputeComputedTraits(tx, [...survivors]);
    const resolveFor = new Set([...withTraits, ...survivors].filter((id) => touched.has(id)));
    if (resolveFor.size > 0) await resolveTraits(tx, [...resolveFor], config.traitSourcePriority);
    const profileOf = new Map(unique.map((m, i) => [messageKey(m), profileIds[i]!]));
    const storedNow = new Set([...inserted].map((i) => unique[i]!));
    return {
      accepted: inserted.size,
      duplicates: messages.length - inserted.size,
      profileIds: messages.map((m) => profileOf.get(messageKey(m))!),
      // Only the first copy of a repeated messageId can be the stored one.
      stored: messages.map((m) => storedNow.has(m)),
    };
  });
  if (identityCache) {
    messages.forEach((m, i) => {
      for (const k of m.identities) identityCache.set(identityString(k), result.profileIds[i]!);
    });
  }
  return result;
}

/** Idempotency is per source: (source, messageId). */
const messageKey = (m: { source: string; messageId: string }) => `${m.source}\u0000${m.messageId}`;

/** Insert the events, skipping messageIds already stored for their source; the indexes inserted. */
async function insertEvents(
  tx: Db,
  messages: PreparedMessage[],
  profileIds: string[],
): Promise<Set<number>> {
  const input = messages.map((m, i) => ({
    profile_id: profileIds[i],
    source: m.source,
    message_id: m.messageId,
    type: m.type,
    name: m.name,
    properties: m.properties,
    context: m.context,
    revenue: m.revenue,
    timestamp: m.timestamp,
    original_timestamp: m.originalTimestamp,
    sent_at: m.sentAt,
    received_at: m.receivedAt,
    user_id: m.userId,
    anonymous_id: m.anonymousId,
  }));
  const stored = await rows<{ source: string; message_id: string }>(
    tx,
    sql`insert into events (profile_id, source, message_id, type, name, properties, context,
          revenue, "timestamp", original_timestamp, sent_at, received_at, user_id, anonymous_id)
        select profile_id, source, message_id, type, name, coalesce(properties, '{}'),
          coalesce(context, '{}'), revenue, "timestamp", original_timestamp, sent_at,
          received_at, user_id, anonymous_id
        from json_to_recordset(${json(input)}) as x(
          profile_id uuid, source text, message_id text, type text, name text,
          properties jsonb, context jsonb, revenue numeric, "timestamp" timestamptz,
          original_timestamp timestamptz, sent_at timestamptz, received_at timestamptz,
          user_id text, anonymous_id text)
        on conflict (source, message_id) do nothing
        returning source, message_id`,
  );
  const ids = new Set(stored.map((r) => messageKey({ source: r.source, messageId: r.message_id })));
  const inserted = new Set<number>();
  messages.forEach((m, i) => {
    if (ids.has(messageKey(m))) inserted.add(i);
  });
  return inserted;
}

const isActivity = (type: string) => type === 'track' || type === 'page' || type === 'screen';
const countName = (m: PreparedMessage) => (m.type === 'track' ? m.name! : m.type);
const earlier = (a: Date | null, b: Date) => (a && a <= b ? a : b);
const later = (a: Date | null, b: Date) => (a && a >= b ? a : b);

/**
 * Add the newly inserted events to their profiles' computed traits (and mark new customers),
 * in one statement. The profiles are locked by the caller.
 */
async function addToComputedTraits(
  tx: Db,
  messages: PreparedMessage[],
  profileIds: string[],
  inserted: Set<number>,
  customers: Set<string>,
) {
  interface Delta {
    profile_id: string;
    activity: number;
    first: Date | null;
    last: Date | null;
    purchases: number;
    spent: number;
    last_purchase: Date | null;
    customer: boolean;
  }
  const deltas = new Map<string, Delta>();
  const delta = (id: string) => {
    let d = deltas.get(id);
    if (!d) {
      d = {
        profile_id: id,
        activity: 0,
        first: null,
        last: null,
        purchases: 0,
        spent: 0,
        last_purchase: null,
        customer: customers.has(id),
      };
      deltas.set(id, d);
    }
    return d;
  };
  for (const id of customers) delta(id);
  const counts = new Map<
    string,
    { profile_id: string; name: string; count: number; first_at: Date; last_at: Date }
  >();
  for (const i of inserted) {
    const m = messages[i]!;
    const d = delta(profileIds[i]!);
    d.first = earlier(d.first, m.timestamp);
    d.last = later(d.last, m.timestamp);
    if (m.revenue !== null) {
      d.purchases++;
      d.spent += m.revenue;
      d.last_purchase = later(d.last_purchase, m.timestamp);
    }
    if (!isActivity(m.type)) continue;
    d.activity++;
    const key = `${d.profile_id}\u0000${countName(m)}`;
    const c = counts.get(key);
    if (c) {
      c.count++;
      c.first_at = earlier(c.first_at, m.timestamp);
      c.last_at = later(c.last_at, m.timestamp);
    } else {
      counts.set(key, {
        profile_id: d.profile_id,
        name: countName(m),
        count: 1,
        first_at: m.timestamp,
        last_at: m.timestamp,
      });
    }
  }
  if (deltas.size === 0) return;
  await tx.execute(
    sql`with counts as (
          insert into profile_event_counts as c (profile_id, name, count, first_at, last_at)
          select * from json_to_recordset(${json([...counts.values()])})
            as x(profile_id uuid, name text, count int, first_at timestamptz, last_at timestamptz)
          on conflict (profile_id, name) do update set
            count = c.count + excluded.count,
            first_at = least(c.first_at, excluded.first_at),
            last_at = greatest(c.last_at, excluded.last_at)
        )
        update profiles p set
          event_count = p.event_count + d.activity,
          first_seen_at = least(p.first_seen_at, d.first),
          last_seen_at = greatest(p.last_seen_at, d.last),
          purchase_count = p.purchase_count + d.purchases,
          total_spent = p.total_spent + d.spent,
          last_purchase_at = greatest(p.last_purchase_at, d.last_purchase),
          kind = case when d.customer then 'customer' else p.kind end,
          updated_at = now()
        from json_to_recordset(${json([...deltas.values()])}) as d(
          profile_id uuid, activity int, first timestamptz, last timestamptz, purchases int,
          spent numeric, last_purchase timestamptz, customer boolean)
        where p.id = d.profile_id`,
  );
}

/**
 * Record identify traits per source. A value older than the one stored for the same source
 * and key is ignored, so out-of-order delivery cannot roll a trait back. Returns the profiles
 * whose traits may have changed.
 */
async function recordTraits(
  tx: Db,
  messages: PreparedMessage[],
  profileIds: string[],
): Promise<Set<string>> {
  const latest = new Map<
    string,
    { profile_id: string; source: string; key: string; value: string; observed_at: Date }
  >();
  messages.forEach((m, i) => {
    if (!m.traits) return;
    const profileId = profileIds[i]!;
    for (const [key, value] of Object.entries(m.traits)) {
      if (value === undefined) continue;
      const id = `${profileId}\u0000${m.source}\u0000${key}`;
      const prev = latest.get(id);
      if (prev && prev.observed_at > m.timestamp) continue;
      latest.set(id, {
        profile_id: profileId,
        source: m.source,
        key,
        value: JSON.stringify(value),
        observed_at: m.timestamp,
      });
    }
  });
  if (latest.size === 0) return new Set();
  await tx.execute(
    sql`insert into traits as t (profile_id, source, key, value, observed_at)
        select profile_id, source, key, value::jsonb, observed_at
        from json_to_recordset(${json([...latest.values()])})
          as x(profile_id uuid, source text, key text, value text, observed_at timestamptz)
        on conflict (profile_id, source, key) do update
          set value = excluded.value, observed_at = excluded.observed_at
          where excluded.observed_at >= t.observed_at`,
  );
  return new Set([...latest.values()].map((t) => t.profile_id));
}

/**
 * Recompute profiles' resolved traits: for each key, the value from the highest-priority
 * source (`priority` lists sources best first; unlisted ones rank last), then the most recent.
 * A null value means "not set" and lets other sources' values show.
 */
export async function resolveTraits(tx: Db, profileIds: string[], priority: string[]) {
  await tx.execute(
    sql`update profiles p set traits = coalesce(r.traits, '{}'::jsonb), updated_at = now()
        from unnest(${uuidArray(profileIds)}) as ids(id)
        left join lateral (
          select jsonb_object_agg(key, value) as traits from (
            select distinct on (key) key, value from traits t
            where t.profile_id = ids.id and t.value <> 'null'::jsonb
            order by key, coalesce(array_position(${textArray(priority)}, t.source), 2147483647),
              t.observed_at desc
          ) as best
        ) as r on true
        where p.id = ids.id`,
  );
}

/** Recompute profiles' computed traits from all their events (after merges). */
export async function recomputeComputedTraits(tx: Db, profileIds: string[]) {
  const ids = uuidArray(profileIds);
  await tx.execute(
    sql`update profiles p set
          first_seen_at = a.first, last_seen_at = a.last, event_count = coalesce(a.activity, 0),
          purchase_count = coalesce(a.purchases, 0), total_spent = coalesce(a.spent, 0),
          last_purchase_at = a.last_purchase, updated_at = now()
        from unnest(${ids}) as ids(id)
        left join lateral (
          select min("timestamp") as first, max("timestamp") as last,
            count(*) filter (where type in ${ACTIVITY}) as activity,
            count(revenue) as purchases, sum(revenue) as spent,
            max("timestamp") filter (where revenue is not null) as last_purchase
          from events e where e.profile_id = ids.id
        ) as a on true
        where p.id = ids.id`,
  );
  await tx.execute(sql`delete from profile_event_counts where profile_id = any(${ids})`);
  await tx.execute(
    sql`insert into profile_event_counts (profile_id, name, count, first_at, last_at)
        select profile_id, case when type = 'track' then name else type end,
          count(*), min("timestamp"), max("timestamp")
        from events where profile_id = any(${ids}) and type in ${ACTIVITY}
        group by 1, 2`,
  );
}
