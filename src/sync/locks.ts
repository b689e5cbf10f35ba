/**
 * Segment locks. While an auto-sync uses a segment — directly, or through a segment whose rules
 * reference it — changing the segment's rules, type or visibility, or deleting it, is refused
 * with a 409 naming the syncs that hold it. Both sides take the row locks of the segments
 * involved, in id order, inside their transaction: an edit and a toggle of auto-sync that race
 * are serialised, so they can never both succeed.
 */
import { sql } from 'drizzle-orm';
import { json, rows, type Db } from '../db/index.ts';
import { HubError } from '../errors.ts';
import { segmentReferences, type SegmentRules } from '../segments/rules.ts';

/** The segments whose membership depends on `segmentId`: itself and every segment referencing it, transitively. */
export async function dependentSegments(db: Db, segmentId: string): Promise<string[]> {
  const found = new Set([segmentId]);
  let frontier = [segmentId];
  while (frontier.length > 0) {
    const next: string[] = [];
    for (const id of frontier) {
      const candidates = await rows<{ id: string; rules: SegmentRules }>(
        db,
        sql`select id, rules from segments where rules is not null and rules::text like ${`%${id}%`}`,
      );
      for (const c of candidates) {
        if (found.has(c.id)) continue;
        if (segmentReferences(c.rules).some((r) => r.id === id)) {
          found.add(c.id);
          next.push(c.id);
        }
      }
    }
    frontier = next;
  }
  return [...found].sort();
}

/** The segments `segmentId`'s membership is made of: itself and every segment its rules reference, transitively. */
export async function referencedSegments(db: Db, segmentId: string): Promise<string[]> {
  const found = new Set<string>();
  let frontier = [segmentId];
  while (frontier.length > 0) {
    const fresh = frontier.filter((id) => !found.has(id));
    fresh.forEach((id) => found.add(id));
    if (fresh.length === 0) break;
    const defined = await rows<{ rules: SegmentRules | null }>(
      db,
      sql`select rules from segments
          where id in (select x::uuid from json_array_elements_text(${json(fresh)}) x)`,
    );
    frontier = defined.flatMap((s) => (s.rules ? segmentReferences(s.rules).map((r) => r.id) : []));
  }
  return [...found].sort();
}

/** Lock segment rows in id order (inside the caller's transaction). */
export async function lockSegments(tx: Db, ids: string[]): Promise<void> {
  if (ids.length === 0) return;
  await tx.execute(
    sql`select id from segments
        where id in (select x::uuid from json_array_elements_text(${json([...ids].sort())}) x)
        order by id for update`,
  );
}

/**
 * Refuse (409) a change to a segment's rules, type or visibility, or its deletion, while an
 * auto-sync holds it. Call inside the transaction that makes the change; it locks the segment
 * and those that depend on it.
 *
 * @example
 * await db.transaction(async (tx) => {
 *   await assertSegmentUnlocked(tx, segmentId);
 *   await tx.execute(sql`update segments set rules = … where id = ${segmentId}`);
 * });
 */
export async function assertSegmentUnlocked(tx: Db, segmentId: string): Promise<void> {
  const dependents = await dependentSegments(tx, segmentId);
  await lockSegments(tx, dependents);
  const holders = await rows<{
    id: string;
    segment_id: string;
    segment_name: string;
    destination: string;
  }>(
    tx,
    sql`select y.id, y.segment_id, s.name as segment_name, d.name as destination
        from syncs y join segments s on s.id = y.segment_id
        join destinations d on d.id = y.destination_id
        where y.auto_sync
          and y.segment_id in (select x::uuid from json_array_elements_text(${json(dependents)}) x)
        order by y.id`,
  );
  if (holders.length === 0) return;
  const names = holders
    .map((h) =>
      h.segment_id === segmentId
        ? `sync ${h.id} to "${h.destination}"`
        : `sync ${h.id} to "${h.destination}" (through segment "${h.segment_name}")`,
    )
    .join(', ');
  throw new HubError(
    409,
    'segment-locked',
    'Segment locked by auto-sync',
    `This segment is locked while auto-sync is on for ${names}. An admin must turn auto-sync off before it can be changed.`,
    undefined,
    {
      syncs: holders.map((h) => ({
        id: h.id,
        segmentId: h.segment_id,
        destination: h.destination,
      })),
    },
  );
}

/** Refuse (409) making a segment private while any sync sends it. */
export async function assertNotSynced(tx: Db, segmentId: string): Promise<void> {
  const used = await rows<{ id: string }>(
    tx,
    sql`select id from syncs where segment_id = ${segmentId} order by id`,
  );
  if (used.length === 0) return;
  throw new HubError(
    409,
    'segment-synced',
    'Segment is synced',
    `Syncs send this segment (${used.map((u) => u.id).join(', ')}): a synced segment cannot be made private.`,
    [{ field: 'visibility', message: 'a synced segment must stay shared' }],
    { syncs: used.map((u) => u.id) },
  );
}
