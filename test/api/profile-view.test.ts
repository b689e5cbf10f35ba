import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver } from '../support/db.ts';
import { day, insertEvents, insertPerson, merge } from './fixtures.ts';
import { harness, type Harness } from './support.ts';

describe(`GET /api/profiles/{id}: the 360 view (${driver})`, () => {
  let h: Harness;
  let carol: string;
  let b: string;
  let a: string;

  beforeAll(async () => {
    h = await harness();
    carol = await insertPerson(h.db, {
      identities: [
        { type: 'email', value: 'carol@example.com', source: 'crm' },
        { type: 'user_id', value: 'u-carol' },
      ],
      traits: [
        { key: 'plan', value: 'pro', source: 'crm', observedAt: day(3) },
        { key: 'plan', value: 'free', source: 'tracking', observedAt: day(5) },
        { key: 'name', value: 'Carol', source: 'crm', observedAt: day(1) },
      ],
      events: [
        ...Array.from({ length: 55 }, (_, i) => ({
          name: 'Home',
          type: 'page',
          timestamp: day(i),
        })),
        { name: 'purchase', timestamp: day(20), revenue: 10.5, properties: { value: 10.5 } },
        { name: 'purchase', timestamp: day(40), revenue: 20, properties: { value: 20 } },
      ],
    });
    b = await insertPerson(h.db, { kind: 'visitor' });
    a = await insertPerson(h.db, { kind: 'visitor' });
    await merge(h.db, b, a, day(60));
    await merge(h.db, carol, b, day(61));
    // An event still on a tombstone is the person's all the same.
    await insertEvents(h.db, b, [{ name: 'Signed Up', timestamp: day(100) }]);
  });
  afterAll(() => h.close());

  it('shows the profile, its computed traits and per-event counts', async () => {
    const res = await h.call('GET', `/api/profiles/${carol}`, { token: h.tokens.marketer });
    expect(res.status).toBe(200);
    expect(res.body.redirectedFrom).toBeNull();
    expect(res.body.profile).toEqual({
      id: carol,
      kind: 'customer',
      createdAt: expect.any(String),
      updatedAt: expect.any(String),
      computed: {
        firstSeenAt: day(0).toISOString(),
        lastSeenAt: day(54).toISOString(),
        eventCount: 57,
        purchaseCount: 2,
        totalSpent: 30.5,
        lastPurchaseAt: day(40).toISOString(),
        eventCounts: [
          { name: 'Home', count: 55, firstAt: day(0).toISOString(), lastAt: day(54).toISOString() },
          {
            name: 'purchase',
            count: 2,
            firstAt: day(20).toISOString(),
            lastAt: day(40).toISOString(),
          },
        ],
      },
    });
  });

  it('lists identities and every source’s trait values beside the resolved ones', async () => {
    const { body } = await h.call('GET', `/api/profiles/${carol}`);
    expect(body.identities).toEqual([
      { type: 'email', value: 'carol@example.com', source: 'crm', createdAt: expect.any(String) },
      { type: 'user_id', value: 'u-carol', source: 'tracking', createdAt: expect.any(String) },
    ]);
    expect(body.traits).toEqual({
      resolved: { plan: 'free', name: 'Carol' },
      bySource: [
        { key: 'name', source: 'crm', value: 'Carol', observedAt: day(1).toISOString() },
        { key: 'plan', source: 'crm', value: 'pro', observedAt: day(3).toISOString() },
        { key: 'plan', source: 'tracking', value: 'free', observedAt: day(5).toISOString() },
      ],
    });
  });

  it('shows the 50 most recent events, newest first, the tombstones’ included', async () => {
    const { body } = await h.call('GET', `/api/profiles/${carol}`);
    expect(body.events).toHaveLength(50);
    expect(body.events[0]).toMatchObject({
      name: 'Signed Up',
      type: 'track',
      timestamp: day(100).toISOString(),
    });
    const times = body.events.map((e: { timestamp: string }) => e.timestamp);
    expect(times).toEqual([...times].sort().reverse());
    expect(times.at(-1)).toBe(day(8).toISOString()); // of 58 events, days 0–7 are left out
    const purchase = body.events.find((e: { name: string }) => e.name === 'purchase');
    expect(purchase).toMatchObject({ revenue: 20, properties: { value: 20 }, source: 'tracking' });
  });

  it('shows the whole merge history, newest first', async () => {
    const { body } = await h.call('GET', `/api/profiles/${carol}`);
    expect(body.merges).toEqual([
      {
        id: expect.any(Number),
        survivorId: carol,
        mergedId: b,
        cause: expect.objectContaining({ identityTypes: ['email'] }),
        createdAt: day(61).toISOString(),
      },
      {
        id: expect.any(Number),
        survivorId: b,
        mergedId: a,
        cause: expect.any(Object),
        createdAt: day(60).toISOString(),
      },
    ]);
  });

  it('answers a tombstone id with the survivor’s view and redirectedFrom', async () => {
    for (const tombstone of [a, b]) {
      const res = await h.call('GET', `/api/profiles/${tombstone}`);
      expect(res.status).toBe(200);
      expect(res.body.profile.id).toBe(carol);
      expect(res.body.redirectedFrom).toBe(tombstone);
      expect(res.body.events).toHaveLength(50);
    }
    const upper = await h.call('GET', `/api/profiles/${carol.toUpperCase()}`);
    expect(upper.body.profile.id).toBe(carol);
    expect(upper.body.redirectedFrom).toBeNull();
  });

  it('answers 404 for an unknown id or one that is not a uuid', async () => {
    for (const id of ['0190f5c2-8b1e-7a3c-9d4e-5f6a7b8c9d0e', 'carol@example.com', '42']) {
      const res = await h.call('GET', `/api/profiles/${encodeURIComponent(id)}`);
      expect(res.status).toBe(404);
      expect(res.headers.get('Content-Type')).toBe('application/problem+json');
    }
  });
});
