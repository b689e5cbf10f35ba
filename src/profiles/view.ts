import { asc, desc, eq, or, sql } from 'drizzle-orm';
import { rows, uuidArray, type Db } from '../db/index.ts';
import {
  events,
  identities,
  merges,
  profileEventCounts,
  profiles,
  traits,
  type MergeCause,
} from '../db/schema.ts';
import { notFound } from '../errors.ts';
import type { ProfileKind } from './search.ts';

/** How many of the most recent events the 360 view shows. */
export const VIEW_EVENTS = 50;

/** Everything the hub knows about one person. */
export interface ProfileView {
  profile: {
    id: string;
    kind: ProfileKind;
    createdAt: Date;
    updatedAt: Date;
    computed: {
      firstSeenAt: Date | null;
      lastSeenAt: Date | null;
      eventCount: number;
      purchaseCount: number;
      totalSpent: number;
      lastPurchaseAt: Date | null;
      eventCounts: { name: string; count: number; firstAt: Date; lastAt: Date }[];
    };
  };
  identities: { type: string; value: string; source: string; createdAt: Date }[];
  traits: {
    /** The value each trait resolves to (source priority, then recency). */
    resolved: Record<string, unknown>;
    /** Every source's value. */
    bySource: { key: string; source: string; value: unknown; observedAt: Date }[];
  };
  events: {
    id: number;
    type: string;
    name: string | null;
    source: string;
    messageId: string;
    timestamp: Date;
    receivedAt: Date;
    properties: Record<string, unknown>;
    context: Record<string, unknown>;
    revenue: number | null;
    userId: string | null;
    anonymousId: string | null;
  }[];
  /** The person's merge history: merges into it and into the profiles merged into it. */
  merges: {
    id: number;
    survivorId: string;
    mergedId: string;
    cause: MergeCause;
    createdAt: Date;
  }[];
  /** The id asked for when it was a tombstone: the view is its survivor's. */
  redirectedFrom: string | null;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The live profile a profile id belongs to (itself, or the survivor a tombstone points at)
 * and every id the person has had. Throws not-found for an unknown id.
 */
export async function resolvePerson(
  db: Db,
  id: string,
): Promise<{ profileId: string; ids: string[] }> {
  if (!UUID.test(id)) throw notFound('Profile', id);
  let current = id;
  // Merges re-point older tombstones at the survivor, so one hop is the rule; the bound only
  // guards against a cycle in damaged data.
  for (let hop = 0; hop < 16; hop++) {
    const [row] = await db
      .select({ mergedInto: profiles.mergedInto })
      .from(profiles)
      .where(eq(profiles.id, current));
    if (!row) {
      if (current === id) throw notFound('Profile', id);
      break;
    }
    if (!row.mergedInto) break;
    current = row.mergedInto;
  }
  const found = await rows<{ id: string }>(
    db,
    sql`with recursive person(id) as (
          select ${current}::uuid
          union
          select p.id from profiles p join person on p.merged_into = person.id
        )
        select id from person`,
  );
  return { profileId: current, ids: found.map((r) => r.id) };
}

/**
 * The 360 view of a profile, read in one snapshot. A tombstone id answers with its survivor's
 * view and `redirectedFrom`.
 *
 * @example
 * const view = await profileView(db, '0190f5c2-8b1e-7a3c-9d4e-5f6a7b8c9d0e');
 */
export async function profileView(db: Db, requested: string): Promise<ProfileView> {
  const id = requested.toLowerCase();
  return db.transaction(
    async (txn) => {
      const tx = txn as unknown as Db;
      const { profileId, ids } = await resolvePerson(tx, id);
      const [p] = await tx.select().from(profiles).where(eq(profiles.id, profileId));
      if (!p) throw notFound('Profile', id);
      const allIds = uuidArray(ids);
      const counts = await tx
        .select()
        .from(profileEventCounts)
        .where(eq(profileEventCounts.profileId, profileId))
        .orderBy(desc(profileEventCounts.count), asc(profileEventCounts.name));
      const held = await tx
        .select()
        .from(identities)
        .where(eq(identities.profileId, profileId))
        .orderBy(asc(identities.type), asc(identities.value));
      const values = await tx
        .select()
        .from(traits)
        .where(eq(traits.profileId, profileId))
        .orderBy(asc(traits.key), asc(traits.source));
      // Events are read across the tombstones too, whether or not a merge moved them.
      const recent = await tx
        .select()
        .from(events)
        .where(sql`${events.profileId} = any(${allIds})`)
        .orderBy(desc(events.timestamp), desc(events.id))
        .limit(VIEW_EVENTS);
      const history = await tx
        .select()
        .from(merges)
        .where(
          or(sql`${merges.survivorId} = any(${allIds})`, sql`${merges.mergedId} = any(${allIds})`),
        )
        .orderBy(desc(merges.createdAt), desc(merges.id));

      return {
        profile: {
          id: p.id,
          kind: p.kind as ProfileKind,
          createdAt: p.createdAt,
          updatedAt: p.updatedAt,
          computed: {
            firstSeenAt: p.firstSeenAt,
            lastSeenAt: p.lastSeenAt,
            eventCount: p.eventCount,
            purchaseCount: p.purchaseCount,
            totalSpent: Number(p.totalSpent),
            lastPurchaseAt: p.lastPurchaseAt,
            eventCounts: counts.map((c) => ({
              name: c.name,
              count: c.count,
              firstAt: c.firstAt,
              lastAt: c.lastAt,
            })),
          },
        },
        identities: held.map((i) => ({
          type: i.type,
          value: i.value,
          source: i.source,
          createdAt: i.createdAt,
        })),
        traits: {
          resolved: p.traits,
          bySource: values.map((t) => ({
            key: t.key,
            source: t.source,
            value: t.value,
            observedAt: t.observedAt,
          })),
        },
        events: recent.map((e) => ({
          id: e.id,
          type: e.type,
          name: e.name,
          source: e.source,
          messageId: e.messageId,
          timestamp: e.timestamp,
          receivedAt: e.receivedAt,
          properties: e.properties,
          context: e.context,
          revenue: e.revenue === null ? null : Number(e.revenue),
          userId: e.userId,
          anonymousId: e.anonymousId,
        })),
        merges: history.map((m) => ({
          id: m.id,
          survivorId: m.survivorId,
          mergedId: m.mergedId,
          cause: m.cause,
          createdAt: m.createdAt,
        })),
        redirectedFrom: profileId === id ? null : id,
      };
    },
    { isolationLevel: 'repeatable read', accessMode: 'read only' },
  );
}
