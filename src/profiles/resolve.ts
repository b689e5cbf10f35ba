/**
 * Identity resolution: which profile each message belongs to, creating profiles for new
 * people and merging profiles that a message shows to be one person.
 *
 * Concurrency. Everything runs in the caller's transaction:
 * - identities that do not exist yet are created under transaction-scoped advisory locks on
 *   their (type, value), taken in one sorted statement, so two transactions can never both
 *   create the same identity or both create a profile for it. A batch that would take more
 *   than {@link IDENTITY_LOCKS_AT_MOST} of them (thousands of new people at once, as from a
 *   bulk import) takes none, since PostgreSQL's lock table would run out: the unique index
 *   on identities then decides, and a batch that loses a race for an identity is retried;
 * - profiles about to merge are locked `FOR UPDATE` in id order before anything moves;
 * - profiles whose row the batch changes (traits, kind), or that gain an identity, are locked
 *   by {@link lockLiveProfiles} and must be live; profiles that only receive events are not
 *   locked, so concurrent batches for the same people do not queue on each other: they are
 *   checked to be live ({@link checkLive}) unless the profile epoch shows that nothing merged or
 *   erased a profile since the identity cache they came from was last checked.
 * A profile found merged (or erased) once locked means what was read is stale: the transaction
 * is retried ({@link RetryTransaction}), discarding what it wrote, and reads the new state.
 * An event committed on a profile that a concurrent merge just turned into a tombstone is moved
 * to the survivor by the fold (src/profiles/fold.ts) before it is counted anywhere.
 * Each kind of lock is taken in sorted order in one statement; the rare deadlock between two
 * batches merging overlapping profiles is broken by PostgreSQL and the batch retried.
 */
import { sql } from 'drizzle-orm';
import type { HubConfig } from '../config.ts';
import {
  inOrder,
  json,
  preparedRows,
  rows,
  RetryTransaction,
  uuidArray,
  type Db,
} from '../db/index.ts';
import type { MergeCause } from '../db/schema.ts';
import { uuidv7 } from '../ids.ts';
import { combineComputedTraits } from './fold.ts';
import { IDENTITY, identityLockKey, identityString, type IdentityKey } from './identity.ts';
import type { IdentityCache } from './identity-cache.ts';

/** What resolution needs to know of a message. */
export interface ResolvableMessage {
  type: string;
  source: string;
  messageId: string;
  identities: IdentityKey[];
  /** Alias: an id that may already be known as an anonymous id or as a user id. */
  previousId?: string;
}

export interface Resolution {
  /** For each message, in order, the live profile it belongs to. */
  profileIds: string[];
  /** Profiles that absorbed others in this transaction: their computed traits need recomputing. */
  survivors: Set<string>;
  /** Every live profile the batch touched. */
  touched: Set<string>;
  /** Existing profiles that gained an identifying identity: they are customers now. */
  customers: Set<string>;
  /**
   * Existing profiles that gained an identity here. They must be locked live before commit (a
   * key-share lock is enough): a merge committing meanwhile would leave the new identity on a
   * tombstone.
   */
  gained: Set<string>;
  /** Profiles created in this transaction: live until it commits. */
  created: Set<string>;
  /** Identity → profile for an identity cache, once committed: what it did not hold before. */
  learned: Map<string, string>;
  /** Profiles merged away here: tombstones once committed. */
  losers: Set<string>;
  /** The profile epoch the merges here took, or null when nothing merged. */
  epoch: number | null;
  /**
   * What is still to be written: the new profiles and identities when nothing merged. The
   * caller runs it before any other statement, in its next round trip where the driver
   * pipelines; it fails the transaction for a retry if an identity was created concurrently.
   */
  write(): Promise<void>;
}

const nothingToWrite = async () => {};

interface ExistingProfile {
  id: string;
  created_at: string | Date;
  merged_into: string | null;
  kind: string;
}

async function lookup(db: Db, keys: IdentityKey[]): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  if (keys.length === 0) return found;
  const result = await preparedRows<{ type: string; value: string; profile_id: string }>(
    db,
    sql`select i.type, i.value, i.profile_id from identities i
        join json_to_recordset(${json(keys)}) as k(type text, value text)
          on i.type = k.type and i.value = k.value`,
  );
  for (const r of result) found.set(`${r.type}:${r.value}`, r.profile_id);
  return found;
}

/**
 * The most identity locks one transaction takes. Every lock takes a slot of PostgreSQL's shared
 * lock table, which holds `max_locks_per_transaction` (64) per connection by default, shared by
 * all transactions: some 10,000 at most.
 */
export const IDENTITY_LOCKS_AT_MOST = 1000;

/**
 * {@link lookup}, holding the advisory lock of every identity not found (unless there may be
 * more than {@link IDENTITY_LOCKS_AT_MOST} of them), in one round trip where the driver
 * pipelines. The first statement locks, in lock order, the identities that do not exist as it
 * reads; the second reads them all again once the locks are held, so it sees any created
 * meanwhile by the transaction that held one. Each identity is thus probed twice, which costs
 * less than a round trip. An identity found by the first and gone by the second (erased
 * meanwhile) is not locked: creating it again relies on the unique index, and a conflict
 * retries the batch.
 */
async function lookupLocking(db: Db, keys: IdentityKey[]): Promise<Map<string, string>> {
  if (keys.length === 0) return new Map();
  if (keys.length > IDENTITY_LOCKS_AT_MOST) return lookup(db, keys);
  const locking = keys.map((k) => ({ type: k.type, value: k.value, lock: identityLockKey(k) }));
  const [, found] = await inOrder(db, [
    () =>
      preparedRows(
        db,
        sql`select pg_advisory_xact_lock(lock) from (
              select distinct k.lock::bigint as lock
              from json_to_recordset(${json(locking)}) as k(type text, value text, lock text)
              where not exists (
                select 1 from identities i where i.type = k.type and i.value = k.value
              )
              order by 1
            ) as keys`,
      ),
    () => lookup(db, keys),
  ]);
  return found;
}

const compareText = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** The previous id of an alias, as the identities it might be known by. */
const aliasCandidates = (previousId: string): IdentityKey[] => [
  { type: IDENTITY.anonymousId, value: previousId },
  { type: IDENTITY.userId, value: previousId },
];

/**
 * The profile of each message when every identity of every message has one (`profileOf`, by
 * message and identity index) and each message's are all on one profile, the common case once
 * people have been seen: else null, and the batch is resolved in full. An alias always is,
 * since it links its previous id.
 */
function settledPeople(
  messages: ResolvableMessage[],
  profileOf: (message: number, identity: number) => string | undefined,
): string[] | null {
  const profileIds = new Array<string>(messages.length);
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i]!;
    if (m.previousId) return null;
    let profile: string | undefined;
    for (let j = 0; j < m.identities.length; j++) {
      const found = profileOf(i, j);
      if (found === undefined || (profile !== undefined && found !== profile)) return null;
      profile = found;
    }
    if (profile === undefined) return null;
    profileIds[i] = profile;
  }
  return profileIds;
}

/** The profile the cache holds every identity of `m` on, if one does (never for an alias). */
function cachedProfile(m: ResolvableMessage, cache: IdentityCache): string | undefined {
  if (m.previousId || m.identities.length === 0) return undefined;
  const profile = cache.get(identityString(m.identities[0]!));
  for (let j = 1; j < m.identities.length && profile !== undefined; j++) {
    if (cache.get(identityString(m.identities[j]!)) !== profile) return undefined;
  }
  return profile;
}

/** The resolution of a settled batch: nothing to create, link or merge. */
const settledResolution = (profileIds: string[], learned: Map<string, string>): Resolution => ({
  profileIds,
  survivors: new Set(),
  touched: new Set(profileIds),
  customers: new Set(),
  gained: new Set(),
  created: new Set(),
  learned,
  losers: new Set(),
  epoch: null,
  write: nothingToWrite,
});

/**
 * Resolve every message of a batch to a live profile, creating and merging profiles as needed.
 * Must run inside a transaction (see {@link withRetry}).
 */
export async function resolveProfiles(
  tx: Db,
  messages: ResolvableMessage[],
  config: Pick<HubConfig, 'anonymousIdentityTypes'>,
  cache?: IdentityCache,
): Promise<Resolution> {
  if (!cache) return resolveInFull(tx, messages, config);
  // A message whose identities the cache holds, all on one profile, keeps that profile: only
  // the others (new people, new devices, aliases) go through the maps built below.
  const fromCache = new Array<string | undefined>(messages.length);
  const rest: ResolvableMessage[] = [];
  for (let i = 0; i < messages.length; i++) {
    const profile = cachedProfile(messages[i]!, cache);
    if (profile === undefined) rest.push(messages[i]!);
    fromCache[i] = profile;
  }
  if (rest.length === 0) return settledResolution(fromCache as string[], new Map());
  const resolved = await resolveInFull(tx, rest, config, cache);
  if (rest.length === messages.length) return resolved;
  // A profile the others merged away hands its messages on to the survivor.
  let k = 0;
  const profileIds = fromCache.map((p) =>
    p === undefined ? resolved.profileIds[k++]! : (resolved.survivorOf.get(p) ?? p),
  );
  return { ...resolved, profileIds, touched: new Set(profileIds) };
}

/** {@link resolveProfiles} for messages the cache does not settle; losers' survivors too. */
async function resolveInFull(
  tx: Db,
  messages: ResolvableMessage[],
  config: Pick<HubConfig, 'anonymousIdentityTypes'>,
  cache?: IdentityCache,
): Promise<Resolution & { survivorOf: Map<string, string> }> {
  // Each identity's string is built once: it keys every map below, and a string hashes once.
  const messageKeys = messages.map((m) => m.identities.map(identityString));
  const allKeys = new Map<string, IdentityKey>();
  messages.forEach((m, i) => {
    m.identities.forEach((k, j) => allKeys.set(messageKeys[i]![j]!, k));
    if (m.previousId)
      for (const k of aliasCandidates(m.previousId)) allKeys.set(identityString(k), k);
  });
  const known = new Map<string, string>();
  const cached = new Set<string>();
  const uncached: IdentityKey[] = [];
  for (const [key, k] of allKeys) {
    const profile = cache?.get(key);
    if (profile) {
      known.set(key, profile);
      cached.add(key);
    } else uncached.push(k);
  }
  for (const [key, profile] of await lookupLocking(tx, uncached)) known.set(key, profile);
  const settled = settledPeople(messages, (i, j) => known.get(messageKeys[i]![j]!));
  if (settled) {
    const learned = new Map<string, string>();
    for (const [key, profile] of known) if (!cached.has(key)) learned.set(key, profile);
    return { ...settledResolution(settled, learned), survivorOf: new Map() };
  }

  // Union-find over profiles: existing ones by id, new ones by a fresh id.
  const parent = new Map<string, string>();
  const find = (n: string): string => {
    let root = n;
    while (parent.get(root) !== root) root = parent.get(root)!;
    let cur = n;
    while (cur !== root) {
      const next = parent.get(cur)!;
      parent.set(cur, root);
      cur = next;
    }
    return root;
  };
  const node = (id: string) => {
    if (!parent.has(id)) parent.set(id, id);
    return id;
  };
  const existing = new Set(known.values());
  for (const id of existing) node(id);

  const rootsWithExisting = new Set(existing);
  const keyNode = new Map<string, string>(known);
  const newKeys: { key: IdentityKey; source: string }[] = [];
  const messageNode: string[] = [];
  /** The first message that joined two sets holding existing profiles, by final root. */
  const causes: { root: string; cause: MergeCause }[] = [];

  messages.forEach((m, i) => {
    let keys = m.identities;
    let strings = messageKeys[i]!;
    if (m.previousId) {
      // Link to the previous id as an anonymous id when it is known as one, else as a user id.
      const [asAnon, asUser] = aliasCandidates(m.previousId) as [IdentityKey, IdentityKey];
      const previous = keyNode.has(identityString(asAnon)) ? asAnon : asUser;
      keys = [...keys, previous];
      strings = [...strings, identityString(previous)];
    }
    // The distinct sets the message's known identities belong to, in the order first met.
    const distinct: string[] = [];
    for (const s of strings) {
      const n = keyNode.get(s);
      if (n === undefined) continue;
      const r = find(n);
      if (!distinct.includes(r)) distinct.push(r);
    }
    let root: string;
    if (distinct.length === 0) {
      root = node(uuidv7());
    } else {
      root = distinct[0]!;
      const holdsExisting = distinct.filter((r) => rootsWithExisting.has(r));
      for (const other of distinct.slice(1)) parent.set(other, root);
      if (holdsExisting.length > 0) rootsWithExisting.add(root);
      if (holdsExisting.length > 1) {
        causes.push({
          root,
          cause: {
            source: m.source,
            messageId: m.messageId,
            messageType: m.type,
            identityTypes: [...new Set(keys.map((k) => k.type))].sort(),
          },
        });
      }
    }
    strings.forEach((s, j) => {
      if (!keyNode.has(s)) {
        keyNode.set(s, root);
        newKeys.push({ key: keys[j]!, source: m.source });
      }
    });
    messageNode.push(root);
  });

  // Group nodes into components; each ends as one profile.
  const components = new Map<string, { existing: string[]; fresh: string[] }>();
  for (const n of parent.keys()) {
    const root = find(n);
    const c = components.get(root) ?? { existing: [], fresh: [] };
    (existing.has(n) ? c.existing : c.fresh).push(n);
    components.set(root, c);
  }

  // Profiles about to merge are locked now, in id order, and must still be live. Profiles that
  // only receive events are locked later, by the caller, just before their computed traits change.
  const merging = [...components.values()].filter((c) => c.existing.length > 1);
  const mergingIds = merging.flatMap((c) => c.existing).sort();
  const locked =
    mergingIds.length === 0
      ? []
      : await rows<ExistingProfile>(
          tx,
          sql`select id, created_at, merged_into, kind from profiles
              where id = any(${uuidArray(mergingIds)}) order by id for update`,
        );
  if (locked.length !== mergingIds.length || locked.some((p) => p.merged_into !== null)) {
    throw new RetryTransaction('a profile was merged or erased concurrently');
  }
  const info = new Map(locked.map((p) => [p.id, p]));

  const finalId = new Map<string, string>();
  const created: string[] = [];
  const mergePairs: { loser: string; survivor: string; cause: MergeCause }[] = [];
  const survivors = new Set<string>();
  const becameCustomer = new Set<string>();
  for (const [root, c] of components) {
    let id: string;
    if (c.existing.length === 1) {
      id = c.existing[0]!;
    } else if (c.existing.length > 1) {
      // The oldest profile survives.
      const byAge = c.existing
        .map((n) => info.get(n)!)
        .sort(
          (a, b) =>
            new Date(a.created_at).getTime() - new Date(b.created_at).getTime() ||
            a.id.localeCompare(b.id),
        );
      id = byAge[0]!.id;
      const cause = causes.find((x) => find(x.root) === root)?.cause;
      for (const loser of byAge.slice(1)) {
        mergePairs.push({
          loser: loser.id,
          survivor: id,
          cause: cause ?? {
            source: 'unknown',
            messageId: null,
            messageType: 'unknown',
            identityTypes: [],
          },
        });
        survivors.add(id);
        if (loser.kind === 'customer') becameCustomer.add(id);
      }
    } else {
      id = c.fresh.sort()[0]!;
      created.push(id);
    }
    finalId.set(root, id);
  }
  const finalOf = (n: string) => finalId.get(find(n))!;

  const anonymous = new Set(config.anonymousIdentityTypes);
  const newIdentityRows = newKeys.map(({ key, source }) => {
    const profileId = finalOf(keyNode.get(identityString(key))!);
    if (!anonymous.has(key.type)) becameCustomer.add(profileId);
    return { type: key.type, value: key.value, profile_id: profileId, source };
  });
  newIdentityRows.sort((a, b) => compareText(a.type, b.type) || compareText(a.value, b.value));

  const newProfiles = created.map((id) => ({
    id,
    kind: becameCustomer.has(id) ? 'customer' : 'visitor',
  }));
  const insertProfiles = async () => {
    if (newProfiles.length === 0) return;
    await preparedRows(
      tx,
      sql`insert into profiles (id, kind)
          select id, kind from json_to_recordset(${json(newProfiles)}) as x(id uuid, kind text)`,
    );
  };
  // An identity another transaction created meanwhile without the lock (a batch too large to
  // lock, or this one) is skipped here, and the batch retried. The rows are sorted, so that two
  // batches inserting the same identities wait for each other in one order.
  const insertIdentities = async () => {
    if (newIdentityRows.length === 0) return;
    const inserted = await preparedRows<{ type: string }>(
      tx,
      sql`insert into identities (type, value, profile_id, source)
          select type, value, profile_id, source
          from json_to_recordset(${json(newIdentityRows)})
            as x(type text, value text, profile_id uuid, source text)
          on conflict do nothing
          returning type`,
    );
    if (inserted.length !== newIdentityRows.length) {
      throw new RetryTransaction('an identity was created concurrently');
    }
  };
  // New profiles, merges, then the new identities (which may name a survivor). Without a merge
  // the two inserts are left to the caller, to go with its own statements.
  let epoch: number | null = null;
  let write = async () => {
    await inOrder(tx, [insertProfiles, insertIdentities]);
  };
  if (mergePairs.length > 0) {
    await insertProfiles();
    epoch = await mergeProfiles(tx, mergePairs);
    await insertIdentities();
    write = nothingToWrite;
  }
  const profileIds = messageNode.map(finalOf);
  const createdSet = new Set(created);
  const customers = new Set([...becameCustomer].filter((id) => !createdSet.has(id)));
  // What a cache does not know yet: identities looked up or created here, and cached ones
  // whose profile was merged away in this transaction.
  const losers = new Set(mergePairs.map((p) => p.loser));
  const learned = new Map<string, string>();
  for (const [key, n] of keyNode) {
    if (!cached.has(key) || losers.has(n)) learned.set(key, finalOf(n));
  }
  const gained = new Set(
    newIdentityRows.map((r) => r.profile_id).filter((id) => !createdSet.has(id)),
  );
  return {
    profileIds,
    survivors,
    touched: new Set(profileIds),
    customers,
    gained,
    created: createdSet,
    learned,
    losers,
    epoch,
    write,
    survivorOf: new Map(mergePairs.map((p) => [p.loser, p.survivor])),
  };
}

/**
 * Merge each loser into its survivor: identities, events and traits move, older tombstones
 * are re-pointed, the loser becomes a tombstone, and each merge is recorded with its cause.
 * Computed traits already folded are combined into the survivor's; events not folded yet move
 * with the others and are folded into the survivor. Callers hold both profiles' locks. Moves the
 * profile epoch on, and answers its new value.
 */
export async function mergeProfiles(
  tx: Db,
  pairs: { loser: string; survivor: string; cause: MergeCause }[],
): Promise<number> {
  const m = sql`json_to_recordset(${json(pairs)}) as m(loser uuid, survivor uuid, cause jsonb)`;
  await tx.execute(
    sql`update identities i set profile_id = m.survivor from ${m} where i.profile_id = m.loser`,
  );
  await tx.execute(
    sql`update events e set profile_id = m.survivor from ${m} where e.profile_id = m.loser`,
  );
  await tx.execute(
    sql`insert into traits as t (profile_id, source, key, value, observed_at)
        select distinct on (m.survivor, l.source, l.key) m.survivor, l.source, l.key, l.value, l.observed_at
        from traits l join ${m} on l.profile_id = m.loser
        order by m.survivor, l.source, l.key, l.observed_at desc
        on conflict (profile_id, source, key) do update
          set value = excluded.value, observed_at = excluded.observed_at
          where excluded.observed_at > t.observed_at`,
  );
  await tx.execute(sql`delete from traits t using ${m} where t.profile_id = m.loser`);
  await combineComputedTraits(tx, pairs);
  await tx.execute(
    sql`update profiles p set merged_into = m.survivor, updated_at = now()
        from ${m} where p.merged_into = m.loser`,
  );
  await tx.execute(
    sql`update profiles p set merged_into = m.survivor, merged_at = now(), updated_at = now(),
          traits = '{}'::jsonb, first_seen_at = null, last_seen_at = null, event_count = 0,
          purchase_count = 0, total_spent = 0, last_purchase_at = null
        from ${m} where p.id = m.loser`,
  );
  await tx.execute(
    sql`insert into merges (survivor_id, merged_id, cause) select m.survivor, m.loser, m.cause from ${m}`,
  );
  return advanceProfileEpoch(tx);
}

/**
 * Move the profile epoch on: done by every transaction that merges profiles or erases one, so
 * that identity caches in every process learn that a profile they name may be gone. Its value
 * is taken at once, not at commit (a sequence), so a reader may see it early: it then checks
 * more than it needed to, never less.
 */
export async function advanceProfileEpoch(tx: Db): Promise<number> {
  const [row] = await rows<{ epoch: string | number }>(
    tx,
    sql`select nextval('profile_epoch') as epoch`,
  );
  return Number(row!.epoch);
}

/** The last profile epoch any transaction took, committed or not; 0 before the first. */
export async function readProfileEpoch(tx: Db): Promise<number> {
  const [row] = await rows<{ epoch: string | number }>(
    tx,
    sql`select case when is_called then last_value else 0 end as epoch from profile_epoch`,
  );
  return Number(row!.epoch);
}

/**
 * Lock live profiles in id order and check they are still live; a profile merged or erased
 * since it was resolved means the transaction must be retried. `key share` is for profiles
 * whose row does not change: it holds off merges and erasures (which lock `for update`) but
 * not the fold's update of computed traits.
 */
export async function lockLiveProfiles(
  tx: Db,
  ids: string[],
  strength: 'update' | 'key share' = 'update',
): Promise<void> {
  if (ids.length === 0) return;
  const sorted = [...ids].sort();
  // merged_into is checked here, not in SQL, for the reason given in checkLive.
  const locked = await preparedRows<{ merged_into: string | null }>(
    tx,
    sql`select merged_into from profiles where id = any(${uuidArray(sorted)})
        order by id for ${sql.raw(strength === 'update' ? 'update' : 'key share')}`,
  );
  if (locked.length !== sorted.length || locked.some((p) => p.merged_into !== null)) {
    throw new RetryTransaction('a profile was merged or erased concurrently');
  }
}

/**
 * Check, without locking, that profiles are still live: a cached identity may name a profile
 * merged or erased since. Run under the ingest horizon, so an erasure cannot commit between
 * this check and the insert; a merge can, and the fold then moves the events to the survivor.
 * Ingestion skips it when the profile epoch shows nothing to check (see IdentityCache).
 */
export async function checkLive(tx: Db, ids: string[]): Promise<void> {
  if (ids.length === 0) return;
  // Liveness is counted, not filtered on: a condition on merged_into lets the planner read
  // every live profile through its index, a cost that grows with the table, not the batch.
  const [row] = await preparedRows<{ n: number }>(
    tx,
    sql`select count(*) filter (where merged_into is null)::int as n from profiles
        where id = any(${uuidArray(ids)})`,
  );
  if (row!.n !== ids.length) throw new RetryTransaction('a profile was merged or erased');
}
