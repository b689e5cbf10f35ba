/**
 * Test data written straight into the tables, so these suites do not depend on ingestion.
 * Computed columns are derived from the events given, as ingestion would keep them.
 */
import { eq } from 'drizzle-orm';
import type { Db } from '../../src/db/index.ts';
import {
  events,
  identities,
  merges,
  profileEventCounts,
  profiles,
  traits,
} from '../../src/db/schema.ts';
import { uuidv7 } from '../../src/ids.ts';

export interface PersonSpec {
  kind?: 'customer' | 'visitor';
  identities?: { type: string; value: string; source?: string }[];
  /** Per-source trait values; the resolved traits are the latest value of each key. */
  traits?: { key: string; value: unknown; source?: string; observedAt?: Date }[];
  events?: {
    name: string;
    type?: string;
    timestamp: Date;
    properties?: Record<string, unknown>;
    revenue?: number;
  }[];
}

let messages = 0;

/** Insert a live profile with its identities, traits, events and counts; returns its id. */
export async function insertPerson(db: Db, spec: PersonSpec = {}): Promise<string> {
  const id = uuidv7();
  const resolved: Record<string, unknown> = {};
  const latest = new Map<string, number>();
  for (const t of spec.traits ?? []) {
    const at = (t.observedAt ?? new Date(0)).getTime();
    if (at >= (latest.get(t.key) ?? -1)) {
      latest.set(t.key, at);
      resolved[t.key] = t.value;
    }
  }
  const evs = spec.events ?? [];
  const times = evs.map((e) => e.timestamp.getTime());
  const purchases = evs.filter((e) => e.revenue !== undefined);
  await db.insert(profiles).values({
    id,
    kind: spec.kind ?? 'customer',
    traits: resolved,
    firstSeenAt: times.length ? new Date(Math.min(...times)) : null,
    lastSeenAt: times.length ? new Date(Math.max(...times)) : null,
    eventCount: evs.length,
    purchaseCount: purchases.length,
    totalSpent: String(purchases.reduce((sum, e) => sum + e.revenue!, 0)),
    lastPurchaseAt: purchases.length
      ? new Date(Math.max(...purchases.map((e) => e.timestamp.getTime())))
      : null,
  });
  for (const i of spec.identities ?? []) {
    await db.insert(identities).values({ ...i, profileId: id, source: i.source ?? 'tracking' });
  }
  for (const t of spec.traits ?? []) {
    await db.insert(traits).values({
      profileId: id,
      source: t.source ?? 'tracking',
      key: t.key,
      value: t.value,
      observedAt: t.observedAt ?? new Date(0),
    });
  }
  await insertEvents(db, id, evs);
  const counts = new Map<string, { count: number; firstAt: Date; lastAt: Date }>();
  for (const e of evs) {
    const c = counts.get(e.name);
    if (!c) counts.set(e.name, { count: 1, firstAt: e.timestamp, lastAt: e.timestamp });
    else {
      c.count++;
      if (e.timestamp < c.firstAt) c.firstAt = e.timestamp;
      if (e.timestamp > c.lastAt) c.lastAt = e.timestamp;
    }
  }
  for (const [name, c] of counts) {
    await db.insert(profileEventCounts).values({ profileId: id, name, ...c });
  }
  return id;
}

export async function insertEvents(db: Db, profileId: string, evs: PersonSpec['events'] = []) {
  if (evs.length === 0) return;
  await db.insert(events).values(
    evs.map((e) => ({
      profileId,
      source: 'tracking',
      messageId: `m-${++messages}`,
      type: e.type ?? 'track',
      name: e.name,
      properties: e.properties ?? {},
      revenue: e.revenue === undefined ? null : String(e.revenue),
      timestamp: e.timestamp,
      receivedAt: e.timestamp,
      userId: null,
      anonymousId: null,
    })),
  );
}

/**
 * Record that `mergedId` merged into `survivorId`, as identity resolution does: the merged
 * profile and every tombstone pointing at it now point at the survivor.
 */
export async function merge(db: Db, survivorId: string, mergedId: string, at = new Date()) {
  await db.insert(merges).values({
    survivorId,
    mergedId,
    cause: {
      source: 'tracking',
      messageId: null,
      messageType: 'identify',
      identityTypes: ['email'],
    },
    createdAt: at,
  });
  await db
    .update(profiles)
    .set({ mergedInto: survivorId, mergedAt: at })
    .where(eq(profiles.mergedInto, mergedId));
  await db
    .update(profiles)
    .set({ mergedInto: survivorId, mergedAt: at })
    .where(eq(profiles.id, mergedId));
}

export const day = (n: number) => new Date(Date.UTC(2025, 0, 1) + n * 86_400_000);
