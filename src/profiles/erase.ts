import { sql, type SQL } from 'drizzle-orm';
import { RetryTransaction, rows, uuidArray, withRetry, type Db } from '../db/index.ts';
import { recordAudit, type Actor } from '../audit.ts';
import { exclusiveIngestHorizon } from './fold.ts';
import { advanceProfileEpoch } from './resolve.ts';
import { resolvePerson } from './view.ts';

/** How many rows an erasure deleted, per table. */
export interface ErasureCounts {
  profiles: number;
  identities: number;
  traits: number;
  events: number;
  eventCounts: number;
  merges: number;
  /** Segment memberships and membership history entries. */
  segmentMemberships: number;
}

/**
 * Erase a person (right to erasure): their events, traits, identities, event counts, merge
 * history, segment memberships and membership history, the live profile and every tombstone merged into it, in one transaction, and record
 * one `profile.erased` audit row holding only the counts. Erasing a tombstone id erases the
 * whole person it belongs to.
 *
 * @example
 * const { profileId, deleted } = await eraseProfile(db, id, { id: tokenId, name: 'admin' });
 */
export async function eraseProfile(
  db: Db,
  requested: string,
  actor: Actor,
): Promise<{ profileId: string; deleted: ErasureCounts }> {
  return withRetry(db, async (tx) => {
    const first = await resolvePerson(tx, requested.toLowerCase());
    // Lock the live profile so a merge or a trait change waits for the erasure, then
    // collect the tombstones again now that none can be added under us.
    await tx.execute(sql`select 1 from profiles where id = ${first.profileId} for update`);
    const { profileId, ids } = await resolvePerson(tx, first.profileId);
    if (profileId !== first.profileId) throw new RetryTransaction('merged during the erasure');
    const person = uuidArray(ids);
    await tx.execute(sql`select 1 from profiles where id = any(${person}) for update`);
    // Wait for the batches in flight (one may hold an event for this person) and hold off new
    // ones until the erasure commits. Taken after the row locks, as ingestion takes them.
    await exclusiveIngestHorizon(tx);
    // Under the horizon: a batch that starts after the erasure sees the epoch moved, and checks
    // the profiles its identity cache gave it.
    await advanceProfileEpoch(tx);

    const count = async (statement: SQL) =>
      (
        await rows<{ n: number }>(
          tx,
          sql`with d as (${statement} returning 1) select count(*)::int as n from d`,
        )
      )[0]!.n;
    const deleted: ErasureCounts = {
      events: await count(sql`delete from events where profile_id = any(${person})`),
      traits: await count(sql`delete from traits where profile_id = any(${person})`),
      identities: await count(sql`delete from identities where profile_id = any(${person})`),
      eventCounts: await count(
        sql`delete from profile_event_counts where profile_id = any(${person})`,
      ),
      merges: await count(
        sql`delete from merges where survivor_id = any(${person}) or merged_id = any(${person})`,
      ),
      segmentMemberships:
        (await count(sql`delete from segment_members where profile_id = any(${person})`)) +
        (await count(
          sql`delete from segment_membership_changes where profile_id = any(${person})`,
        )),
      profiles: await count(sql`delete from profiles where id = any(${person})`),
    };
    await recordAudit(tx, actor, 'profile.erased', 'profile', profileId, { ...deleted });
    return { profileId, deleted };
  });
}
