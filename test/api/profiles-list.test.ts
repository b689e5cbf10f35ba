import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver } from '../support/db.ts';
import { insertPerson, merge } from './fixtures.ts';
import { allPages, harness, type Harness } from './support.ts';

describe(`GET /api/profiles (${driver})`, () => {
  let h: Harness;
  const p: Record<string, string> = {};
  let live: string[];

  beforeAll(async () => {
    h = await harness();
    p.jane = await insertPerson(h.db, {
      identities: [
        { type: 'email', value: 'jane.doe@example.com' },
        { type: 'user_id', value: 'u-1' },
      ],
      traits: [
        { key: 'plan', value: 'pro' },
        { key: 'age', value: 42 },
        { key: 'vip', value: true },
      ],
    });
    p.john = await insertPerson(h.db, {
      identities: [
        { type: 'email', value: 'john@example.com' },
        { type: 'user_id', value: 'u-2' },
        { type: 'phone', value: '+442071838750' },
      ],
      traits: [
        { key: 'plan', value: 'free' },
        { key: 'age', value: '42' },
      ],
    });
    p.visitor = await insertPerson(h.db, {
      kind: 'visitor',
      identities: [{ type: 'anonymous_id', value: 'anon-3' }],
    });
    p.janet = await insertPerson(h.db, {
      identities: [{ type: 'email', value: 'janet@example.org' }],
      traits: [{ key: 'plan', value: 'pro' }],
    });
    p.percent = await insertPerson(h.db, {
      kind: 'visitor',
      identities: [{ type: 'anonymous_id', value: 'an%on' }],
    });
    for (let i = 0; i < 4; i++) {
      p[`basic${i}`] = await insertPerson(h.db, { traits: [{ key: 'plan', value: 'basic' }] });
    }
    // A tombstone still carrying a matching trait must never be listed.
    p.tombstone = await insertPerson(h.db, { traits: [{ key: 'plan', value: 'pro' }] });
    await merge(h.db, p.jane, p.tombstone);
    live = Object.entries(p)
      .filter(([name]) => name !== 'tombstone')
      .map(([, id]) => id)
      .sort()
      .reverse();
  });
  afterAll(() => h.close());

  const ids = async (query: string, token?: string) => {
    const res = await h.call('GET', `/api/profiles?${query}`, { token });
    expect(res.status, res.text).toBe(200);
    return res.body.data.map((x: { id: string }) => x.id);
  };

  it('pages through every live profile, newest first, without duplicates or gaps', async () => {
    const pages = await allPages(h, '/api/profiles?limit=3');
    expect(pages.map((page) => page.length)).toEqual([3, 3, 3]);
    expect(pages.flat().map((x) => x.id)).toEqual(live);

    const first = await h.call('GET', '/api/profiles?limit=9');
    expect(first.body.data).toHaveLength(9);
    expect(first.body.nextCursor).toBeNull();
    expect((await h.call('GET', '/api/profiles')).body.data).toHaveLength(9);
  });

  it('shows each profile with its kind, resolved traits and identities', async () => {
    const res = await h.call('GET', '/api/profiles?identity=user_id:u-1');
    expect(res.body.data).toEqual([
      {
        id: p.jane,
        kind: 'customer',
        createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT.*Z$/),
        updatedAt: expect.any(String),
        lastSeenAt: null,
        eventCount: 0,
        traits: { plan: 'pro', age: 42, vip: true },
        identities: [
          { type: 'email', value: 'jane.doe@example.com' },
          { type: 'user_id', value: 'u-1' },
        ],
      },
    ]);
  });

  it('finds a profile by identity, normalising the value like stored ones', async () => {
    expect(await ids(`identity=${encodeURIComponent('email: Jane.Doe@Example.COM ')}`)).toEqual([
      p.jane,
    ]);
    expect(await ids('identity=user_id:u-2')).toEqual([p.john]);
    expect(await ids(`identity=${encodeURIComponent('phone:+44 20 7183 8750')}`)).toEqual([p.john]);
    expect(await ids('identity=email:nobody@example.com')).toEqual([]);
    expect(await ids('identity=email:not-an-address')).toEqual([]);
    const bad = await h.call('GET', '/api/profiles?identity=jane');
    expect(bad.status).toBe(400);
    expect(bad.body.errors[0].field).toBe('identity');
  });

  it('searches identity values by prefix, ignoring case, taking wildcards literally', async () => {
    expect(await ids('q=JAN')).toEqual([p.janet, p.jane]);
    expect(await ids('q=jane.d')).toEqual([p.jane]);
    expect(await ids('q=ane')).toEqual([]);
    expect(await ids(`q=${encodeURIComponent('an%')}`)).toEqual([p.percent]);
    expect(await ids('q=an_')).toEqual([]);
  });

  it('filters on resolved traits, matching JSON numbers and booleans too', async () => {
    expect(await ids('trait.plan=pro')).toEqual([p.janet, p.jane]);
    expect(await ids('trait.age=42')).toEqual([p.john, p.jane]);
    expect(await ids('trait.vip=true')).toEqual([p.jane]);
    expect(await ids('trait.plan=pro&trait.age=42')).toEqual([p.jane]);
    expect(await ids('trait.plan=gold')).toEqual([]);
    expect(await ids('trait.plan=pro&kind=visitor')).toEqual([]);
  });

  it('filters on kind', async () => {
    expect(await ids('kind=visitor')).toEqual([p.percent, p.visitor]);
    expect((await ids('kind=customer')).length).toBe(7);
  });

  it('pages through filtered results', async () => {
    const pages = await allPages(h, '/api/profiles?trait.plan=basic&limit=3');
    expect(pages.map((page) => page.length)).toEqual([3, 1]);
    expect(pages.flat().map((x) => x.id)).toEqual(
      [p.basic0, p.basic1, p.basic2, p.basic3].reverse(),
    );
  });

  it('refuses parameters it does not know', async () => {
    const res = await h.call('GET', '/api/profiles?plan=pro');
    expect(res.status).toBe(400);
    expect(res.body.errors).toEqual([
      { field: 'plan', message: expect.stringContaining('trait.') },
    ]);
    const twice = await h.call('GET', '/api/profiles?trait.plan=a&trait.plan=b');
    expect(twice.status).toBe(400);
    expect(twice.body.errors[0].field).toBe('trait.plan');
  });

  it('lets every role search', async () => {
    for (const token of Object.values(h.tokens)) {
      expect(await ids('trait.plan=pro', token)).toEqual([p.janet, p.jane]);
    }
  });
});
