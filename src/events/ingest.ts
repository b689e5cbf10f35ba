/**
 * Storing messages: resolve each to its profile, store the event once per (source, messageId)
 * and record traits — all in one transaction per batch. Computed traits are folded from the
 * stored events right after, in the background (src/profiles/fold.ts).
 */
import { sql } from 'drizzle-orm';
import type { HubConfig } from '../config.ts';
import {
  inOrder,
  json,
  preparedRows,
  textArray,
  uuidArray,
  withRetry,
  type Db,
} from '../db/index.ts';
import type { IdentityCache } from '../profiles/identity-cache.ts';
import { holdIngestHorizon } from '../profiles/fold.ts';
import {
  checkLive,
  lockLiveProfiles,
  readProfileEpoch,
  resolveProfiles,
} from '../profiles/resolve.ts';
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
  const keys = messages.map(messageKey);
  const seen = new Set<string>();
  const unique = messages.filter((_, i) => !seen.has(keys[i]!) && seen.add(keys[i]!));
  let attempts = 0;
  const { result, resolution, epoch, checked } = await withRetry(db, async (tx) => {
    // What made this attempt necessary may be a stale cached identity.
    if (attempts++ > 0) identityCache?.clear();
    // What the cache gives is vouched for up to this epoch (it reads the cache before it awaits).
    const since = identityCache?.goodUpTo ?? -1;
    const resolution = await resolveProfiles(tx, unique, config, identityCache);
    if (resolution.epoch !== null) identityCache?.merging(resolution.epoch);
    const { profileIds, survivors, touched } = resolution;
    // Profiles whose row changes here, or that gain an identity, are locked, and must be live;
    // the others only receive events, which a merge committing meanwhile leaves for the fold
    // to move.
    const withTraits = new Set<string>();
    unique.forEach((m, i) => {
      if (m.traits && Object.keys(m.traits).length > 0) withTraits.add(profileIds[i]!);
    });
    const changing = new Set([...withTraits, ...resolution.customers]);
    const gaining = [...resolution.gained].filter((id) => !changing.has(id));
    // In this order, in one round trip where the driver pipelines: the new profiles and
    // identities; the locks; the horizon, so an erasure (which takes it exclusively) cannot
    // slip in before the insert; the profile epoch; the events.
    const [, , , , epoch, inserted] = await inOrder(tx, [
      () => resolution.write(),
      () => lockLiveProfiles(tx, [...changing]),
      () => lockLiveProfiles(tx, gaining, 'key share'),
      () => holdIngestHorizon(tx),
      () => (identityCache ? readProfileEpoch(tx) : Promise.resolve(0)),
      () => insertEvents(tx, unique, profileIds),
    ]);
    // Profiles that only receive events are checked live, unless the cache they came from
    // shows that nothing but this process's merges has merged or erased a profile since. Still
    // under the horizon: a stale one rolls the events back with the rest.
    const checked = !identityCache?.trusts(epoch, since);
    const receiving = checked
      ? [...touched].filter(
          (id) => !changing.has(id) && !resolution.gained.has(id) && !resolution.created.has(id),
        )
      : [];
    const resolveFor = new Set([...withTraits, ...survivors].filter((id) => touched.has(id)));
    await inOrder(tx, [
      () => checkLive(tx, receiving),
      () => markCustomers(tx, [...resolution.customers]),
      () => recordTraits(tx, unique, profileIds),
      () => resolveTraits(tx, [...resolveFor], config.traitSourcePriority),
    ]);
    const everyOne = inserted.size === messages.length;
    const storedNow = everyOne ? null : new Set([...inserted].map((i) => unique[i]!));
    const result: IngestResult = {
      accepted: inserted.size,
      duplicates: messages.length - inserted.size,
      profileIds: unique.length === messages.length ? profileIds : byKey(keys, unique, profileIds),
      // Only the first copy of a repeated messageId can be the stored one.
      stored: storedNow ? messages.map((m) => storedNow.has(m)) : messages.map(() => true),
    };
    return { result, resolution, epoch, checked };
  });
  identityCache?.committed({
    epoch,
    checked,
    learned: resolution.learned,
    losers: resolution.losers,
  });
  return result;
}

/** The profile of each message by its key, repeated messageIds included. */
function byKey(keys: string[], unique: PreparedMessage[], profileIds: string[]): string[] {
  const profileOf = new Map(unique.map((m, i) => [messageKey(m), profileIds[i]!]));
  return keys.map((key) => profileOf.get(key)!);
}

/** Idempotency is per source: (source, messageId). */
const messageKey = (m: { source: string; messageId: string }) => `${m.source}\u0000${m.messageId}`;

/**
 * Insert the events, skipping messageIds already stored for their source; the indexes inserted.
 *
 * `insert_events` (migration 0011) inserts the batch plainly in a subtransaction of its own
 * and, only when a messageId turns out to be stored already, again skipping those. The rows
 * travel as one JSON array per column: no key repeated on every row, and times as epoch
 * milliseconds, since serialising a Date (its `toJSON`) takes V8 off its fast JSON path and
 * costs more than the rest of the row. The properties and context arrays go as jsonb, whose
 * elements are jsonb already: as json, each would be parsed a second time on its way into its
 * jsonb column.
 */
async function insertEvents(
  tx: Db,
  messages: PreparedMessage[],
  profileIds: string[],
): Promise<Set<number>> {
  const column = (value: (m: PreparedMessage, i: number) => unknown) => json(messages.map(value));
  const document = (value: (m: PreparedMessage) => unknown) =>
    sql`${JSON.stringify(messages.map(value))}::jsonb`;
  const [row] = await preparedRows<{ stored: (number | string | bigint)[] | null }>(
    tx,
    sql`select insert_events(
          ${column((_, i) => profileIds[i])}, ${column((m) => m.source)},
          ${column((m) => m.messageId)}, ${column((m) => m.type)}, ${column((m) => m.name)},
          ${document((m) => m.properties)}, ${document((m) => m.context)},
          ${column((m) => m.revenue)}, ${column((m) => m.timestamp)},
          ${column((m) => m.originalTimestamp)}, ${column((m) => m.sentAt)},
          ${column((m) => m.receivedAt)}, ${column((m) => m.userId)},
          ${column((m) => m.anonymousId)}
        ) as stored`,
  );
  // Nearly every batch is new, and then nothing is listed.
  if (row!.stored === null) return new Set(messages.keys());
  return new Set(row!.stored.map((n) => Number(n) - 1));
}

/** Existing profiles that gained an identifying identity are customers now. */
async function markCustomers(tx: Db, ids: string[]) {
  if (ids.length === 0) return;
  await tx.execute(
    sql`update profiles set kind = 'customer', updated_at = now()
        where id = any(${uuidArray(ids)}) and kind <> 'customer'`,
  );
}

/**
 * Record identify traits per source. A value older than the one stored for the same source
 * and key is ignored, so out-of-order delivery cannot roll a trait back.
 */
async function recordTraits(
  tx: Db,
  messages: PreparedMessage[],
  profileIds: string[],
): Promise<void> {
  const latest = new Map<
    string,
    { profile_id: string; source: string; key: string; value: string; observed_at: number }
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
  if (latest.size === 0) return;
  const rows = [...latest.values()].map((r) => ({ ...r, observed_at: new Date(r.observed_at) }));
  await tx.execute(
    sql`insert into traits as t (profile_id, source, key, value, observed_at)
        select profile_id, source, key, value::jsonb, observed_at
        from json_to_recordset(${json(rows)})
          as x(profile_id uuid, source text, key text, value text, observed_at timestamptz)
        on conflict (profile_id, source, key) do update
          set value = excluded.value, observed_at = excluded.observed_at
          where excluded.observed_at >= t.observed_at`,
  );
}

/**
 * Recompute profiles' resolved traits: for each key, the value from the highest-priority
 * source (`priority` lists sources best first; unlisted ones rank last), then the most recent.
 * A null value means "not set" and lets other sources' values show.
 */
export async function resolveTraits(tx: Db, profileIds: string[], priority: string[]) {
  if (profileIds.length === 0) return;
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
