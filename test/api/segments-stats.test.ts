import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiToken } from '../../src/auth/credentials.ts';
import { testConfig } from '../../src/config.ts';
import { foldAll } from '../../src/profiles/fold.ts';
import { driver } from '../support/db.ts';
import { profileOf, send } from '../support/ingest.ts';
import { allPages, harness, type Harness } from './support.ts';

const spent100to1000 = { computed: { name: 'total_spent', op: 'between', value: [100, 1000] } };

describe(`Segments API: history, stats, overlap and the list (${driver})`, () => {
  let h: Harness;
  const p: Record<string, string> = {};
  /** A marketer whose segments the list tests count on. */
  let lister: { token: string; id: string };
  let other: string;

  beforeAll(async () => {
    h = await harness();
    const created = await createApiToken(h.db, { name: 'lister', role: 'marketer' });
    lister = { token: created.token, id: created.summary.id };
    other = (await createApiToken(h.db, { name: 'other marketer', role: 'marketer' })).token;
    // Through ingestion and the fold, as the hub would build them (computed traits included).
    const config = testConfig();
    const buyers: [string, number | null][] = [
      ['jane', 300],
      ['john', 50],
      ['bob', 120],
      ['ann', null],
    ];
    await send(
      h.db,
      config,
      buyers.flatMap(([name, revenue]) => [
        { type: 'identify', userId: name, traits: { email: `${name}@example.com` } },
        ...(revenue === null
          ? []
          : [{ type: 'track', userId: name, event: 'Order Completed', properties: { revenue } }]),
      ]),
    );
    await foldAll(h.db);
    for (const [name] of buyers) p[name] = (await profileOf(h.db, 'user_id', name))!;
  });
  afterAll(() => h.close());

  const post = (body: Record<string, unknown>, token = lister.token) =>
    h.call('POST', '/api/segments', { token, body });
  const upload = async (id: string, identifiers: string[], token = lister.token) => {
    const res = await h.call('PUT', `/api/segments/${id}/members`, {
      token,
      body: { identifiers },
    });
    expect(res.status, res.text).toBe(200);
    return res.body;
  };
  /** Record a size `daysAgo` days before today (UTC), as past computations would have. */
  const pastSize = (id: string, daysAgo: number, size: number) =>
    h.db.execute(
      sql`insert into segment_daily_sizes (segment_id, day, size)
          values (${id}, (now() at time zone 'utc')::date - ${daysAgo}::int, ${size})`,
    );
  const today = (offset = 0) =>
    new Date(Date.now() - offset * 86_400_000).toISOString().slice(0, 10);

  it('records who entered and left as data changes and the segment is recomputed', async () => {
    const config = testConfig();
    await send(h.db, config, [
      { type: 'identify', userId: 'h1', traits: { tier: 'gold' } },
      { type: 'identify', userId: 'h2', traits: { tier: 'gold' } },
    ]);
    const h1 = (await profileOf(h.db, 'user_id', 'h1'))!;
    const h2 = (await profileOf(h.db, 'user_id', 'h2'))!;
    const gold = await post(
      {
        name: 'Gold',
        visibility: 'shared',
        rules: { trait: { name: 'tier', op: 'eq', value: 'gold' } },
      },
      h.tokens.marketer,
    );
    expect(gold.body.size).toBe(2);
    const created = gold.body.run.id;

    await send(h.db, config, [
      { type: 'identify', userId: 'h2', traits: { tier: 'silver' } },
      { type: 'identify', userId: 'h3', traits: { tier: 'gold' } },
    ]);
    const h3 = (await profileOf(h.db, 'user_id', 'h3'))!;
    const run = await h.call('POST', `/api/segments/${gold.body.id}/compute`, {
      token: h.tokens.marketer,
    });
    expect(run.body).toMatchObject({ size: 2, entered: 1, exited: 1 });

    const path = `/api/segments/${gold.body.id}/history`;
    const all = await h.call('GET', path, { token: h.tokens.integrator });
    expect(all.status).toBe(200);
    const seen = all.body.data.map(
      (c: { change: string; profileId: string; runId: number }) =>
        `${c.runId} ${c.change} ${c.profileId}`,
    );
    expect(seen.slice(0, 2).sort()).toEqual(
      [`${run.body.id} entered ${h3}`, `${run.body.id} exited ${h2}`].sort(),
    );
    expect(seen.slice(2).sort()).toEqual(
      [`${created} entered ${h1}`, `${created} entered ${h2}`].sort(),
    );
    for (const c of all.body.data) expect(Date.now() - Date.parse(c.at)).toBeLessThan(60_000);

    const forH2 = await h.call('GET', `${path}?profileId=${h2}`);
    expect(forH2.body.data.map((c: { change: string }) => c.change)).toEqual(['exited', 'entered']);
    const pages = await allPages<{ id: number }>(h, `${path}?limit=1`);
    expect(pages.map((page) => page.length)).toEqual([1, 1, 1, 1]);
    expect(pages.flat().map((c) => c.id)).toEqual(all.body.data.map((c: { id: number }) => c.id));

    // Computed traits: folded from the events, then the segment picks them up.
    const big = await post(
      {
        name: 'Big spenders (h)',
        rules: { computed: { name: 'total_spent', op: 'gt', value: 1000 } },
      },
      h.tokens.marketer,
    );
    await send(h.db, config, [
      {
        type: 'track',
        userId: 'h1',
        event: 'Order Completed',
        properties: { revenue: 1500 },
      },
    ]);
    await foldAll(h.db);
    const recomputed = await h.call('POST', `/api/segments/${big.body.id}/compute`, {
      token: h.tokens.marketer,
    });
    expect(recomputed.body.entered).toBe(1);
    const entered = await h.call('GET', `/api/segments/${big.body.id}/history?profileId=${h1}`);
    expect(entered.body.data).toEqual([
      {
        id: expect.any(Number),
        profileId: h1,
        change: 'entered',
        at: expect.any(String),
        runId: recomputed.body.id,
      },
    ]);
  });

  it('gives size, 30-day change, revenue and a daily series carried forward', async () => {
    const list = await post({ name: 'Stats list', type: 'static' });
    await upload(list.body.id, ['jane@example.com', 'john@example.com', 'ann@example.com']);
    await pastSize(list.body.id, 40, 5);
    await pastSize(list.body.id, 20, 8);
    const res = await h.call('GET', `/api/segments/${list.body.id}/stats?days=45`, {
      token: lister.token,
    });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toMatchObject({
      segmentId: list.body.id,
      size: 3,
      change30d: 3 - 5,
      revenue: 350,
      lastComputedAt: expect.any(String),
    });
    const series = res.body.series as { day: string; size: number | null }[];
    expect(series).toHaveLength(45);
    expect(series[0]!.day).toBe(today(44));
    expect(series[44]!.day).toBe(today());
    const expected = series.map((_, i) => {
      const ago = 44 - i;
      return ago > 40 ? null : ago > 20 ? 5 : ago > 0 ? 8 : 3;
    });
    expect(series.map((d) => d.size)).toEqual(expected);

    const short = await h.call('GET', `/api/segments/${list.body.id}/stats?days=1`);
    expect(short.body.series).toEqual([{ day: today(), size: 3 }]);
    const byDefault = await h.call('GET', `/api/segments/${list.body.id}/stats`);
    expect(byDefault.body.series).toHaveLength(30);

    for (const days of ['0', '367', 'many']) {
      const bad = await h.call('GET', `/api/segments/${list.body.id}/stats?days=${days}`);
      expect(bad.status, days).toBe(400);
      expect(bad.body.errors[0].field).toBe('days');
    }
  });

  it('leaves the 30-day change unknown without a size from 30 days ago', async () => {
    const list = await post({ name: 'New list', type: 'static' });
    await upload(list.body.id, ['bob@example.com']);
    await pastSize(list.body.id, 29, 7);
    const res = await h.call('GET', `/api/segments/${list.body.id}/stats?days=3`);
    expect(res.body).toMatchObject({ size: 1, change30d: null, revenue: 120 });
    expect(res.body.series.map((d: { size: number }) => d.size)).toEqual([7, 7, 1]);
    // Exactly 30 days ago counts.
    await pastSize(list.body.id, 30, 4);
    const later = await h.call('GET', `/api/segments/${list.body.id}/stats?days=3`);
    expect(later.body.change30d).toBe(1 - 4);
    const empty = await post({ name: 'Never uploaded', type: 'static' });
    const none = await h.call('GET', `/api/segments/${empty.body.id}/stats?days=2`);
    expect(none.body).toMatchObject({
      size: 0,
      change30d: null,
      revenue: 0,
      lastComputedAt: null,
      series: [
        { day: today(1), size: null },
        { day: today(), size: null },
      ],
    });
  });

  it('counts the overlap of two segments', async () => {
    const a = await post({ name: 'Overlap A', type: 'static', visibility: 'shared' });
    const b = await post({ name: 'Overlap B', type: 'static' });
    await upload(a.body.id, ['jane@example.com', 'john@example.com', 'bob@example.com']);
    await upload(b.body.id, ['john@example.com', 'bob@example.com', 'ann@example.com']);
    const res = await h.call('GET', `/api/segments/overlap?a=${a.body.id}&b=${b.body.id}`, {
      token: lister.token,
    });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toEqual({
      a: { id: a.body.id, name: 'Overlap A', size: 3 },
      b: { id: b.body.id, name: 'Overlap B', size: 3 },
      both: 2,
      onlyA: 1,
      onlyB: 1,
    });
    const self = await h.call('GET', `/api/segments/overlap?a=${a.body.id}&b=${a.body.id}`);
    expect(self.body).toMatchObject({ both: 3, onlyA: 0, onlyB: 0 });
    // B is private: another marketer may not learn about it.
    const hidden = await h.call('GET', `/api/segments/overlap?a=${a.body.id}&b=${b.body.id}`, {
      token: other,
    });
    expect(hidden.status).toBe(404);
    const bad = await h.call('GET', `/api/segments/overlap?a=${a.body.id}&b=nope`);
    expect(bad.status).toBe(400);
    expect(bad.body.errors.map((e: { field: string }) => e.field)).toEqual(['b']);
  });

  describe('the list', () => {
    const s: Record<string, string> = {};

    beforeAll(async () => {
      // Owned by `lister`, created in this order (ids and createdAt follow it).
      s.loyal = (
        await post({ name: 'Loyal buyers', type: 'static', visibility: 'shared' })
      ).body.id;
      await upload(s.loyal!, ['jane@example.com', 'john@example.com', 'bob@example.com']);
      await pastSize(s.loyal!, 35, 1);
      s.alpha = (
        await post({ name: 'alpha testers', type: 'static', description: 'Early and LOYAL users' })
      ).body.id;
      await upload(s.alpha!, ['ann@example.com']);
      s.big = (
        await post({ name: 'Big spenders', rules: spent100to1000, visibility: 'shared' })
      ).body.id;
      await pastSize(s.big!, 31, 4);
      s.zeta = (await post({ name: 'zeta empty', type: 'static' })).body.id;
    });

    const mine = async (query: string, limit = 2, token = lister.token) => {
      const pages = await allPages<{ id: string }>(
        h,
        `/api/segments?owner=me&limit=${limit}${query ? `&${query}` : ''}`,
        token,
      );
      return pages.flat().map((x) => x.id);
    };
    // Each test above created some of lister's segments too; these count only the list's own.
    const ours = (ids: string[]) => ids.filter((id) => Object.values(s).includes(id));

    it('shows each segment with owner, type, size, 30-day change, revenue, last computed', async () => {
      const res = await h.call('GET', `/api/segments?owner=me&q=loyal+buyers`, {
        token: lister.token,
      });
      expect(res.status, res.text).toBe(200);
      expect(res.body.data).toEqual([
        {
          id: s.loyal,
          name: 'Loyal buyers',
          description: '',
          type: 'static',
          visibility: 'shared',
          owner: { id: lister.id, name: 'lister' },
          schedule: null,
          nextRunAt: null,
          template: null,
          size: 3,
          change30d: 2,
          revenue: 470,
          createdAt: expect.any(String),
          updatedAt: expect.any(String),
          lastComputedAt: expect.any(String),
          managedBy: null,
        },
      ]);
      expect(res.body.nextCursor).toBeNull();
    });

    it('searches name and description in any case', async () => {
      expect(ours(await mine('q=LOYAL'))).toEqual([s.alpha, s.loyal]);
      expect(ours(await mine('q=spend'))).toEqual([s.big]);
      expect(await mine('q=%25')).toEqual([]);
      expect(await mine('q=_')).toEqual([]);
    });

    it('sorts by each key, both ways, a page at a time', async () => {
      expect(ours(await mine('sort=name'))).toEqual([s.alpha, s.big, s.loyal, s.zeta]);
      expect(ours(await mine('sort=name&order=desc'))).toEqual([s.zeta, s.loyal, s.big, s.alpha]);
      expect(ours(await mine('sort=size', 1))).toEqual([s.loyal, s.big, s.alpha, s.zeta]);
      expect(ours(await mine('sort=size&order=asc'))).toEqual([s.zeta, s.alpha, s.big, s.loyal]);
      // Ties (alpha and zeta have no revenue) are broken by id, in the same direction.
      expect(ours(await mine('sort=revenue', 1))).toEqual([s.loyal, s.big, s.zeta, s.alpha]);
      expect(ours(await mine('sort=revenue&order=asc'))).toEqual([s.alpha, s.zeta, s.big, s.loyal]);
      // Unknown changes come last either way.
      expect(ours(await mine('sort=change', 1))).toEqual([s.loyal, s.big, s.zeta, s.alpha]);
      expect(ours(await mine('sort=change&order=asc', 1))).toEqual([
        s.big,
        s.loyal,
        s.alpha,
        s.zeta,
      ]);
      expect(ours(await mine('sort=lastComputedAt', 1))).toEqual([s.big, s.alpha, s.loyal, s.zeta]);
      expect(ours(await mine('sort=lastComputedAt&order=asc'))).toEqual([
        s.loyal,
        s.alpha,
        s.big,
        s.zeta,
      ]);
      expect(ours(await mine('sort=createdAt&order=asc', 3))).toEqual([
        s.loyal,
        s.alpha,
        s.big,
        s.zeta,
      ]);
      expect(ours(await mine(''))).toEqual([s.zeta, s.big, s.alpha, s.loyal]);
    });

    it('filters by type, visibility and owner', async () => {
      expect(ours(await mine('type=dynamic'))).toEqual([s.big]);
      expect(ours(await mine('type=static&visibility=private'))).toEqual([s.zeta, s.alpha]);
      expect(ours(await mine('visibility=shared'))).toEqual([s.big, s.loyal]);
      // Another marketer sees only the shared ones of lister's segments.
      const pages = await allPages<{ id: string }>(
        h,
        `/api/segments?owner=${lister.id}&limit=200`,
        other,
      );
      expect(ours(pages.flat().map((x) => x.id))).toEqual([s.big, s.loyal]);
      const forAdmin = await allPages<{ id: string }>(h, `/api/segments?owner=${lister.id}`);
      expect(ours(forAdmin.flat().map((x) => x.id))).toEqual([s.zeta, s.big, s.alpha, s.loyal]);
      expect(await mine('', 50, other)).toEqual([]);
      const bad = await h.call('GET', '/api/segments?owner=someone&type=nope');
      expect(bad.status).toBe(400);
      expect(bad.body.errors.map((e: { field: string }) => e.field).sort()).toEqual([
        'owner',
        'type',
      ]);
    });

    it('refuses a cursor of a list in another order', async () => {
      const first = await h.call('GET', '/api/segments?owner=me&sort=size&limit=1', {
        token: lister.token,
      });
      const cursor = first.body.nextCursor;
      expect(cursor).toEqual(expect.any(String));
      const same = await h.call('GET', `/api/segments?owner=me&limit=1&cursor=${cursor}`, {
        token: lister.token,
      });
      expect(same.status).toBe(200);
      const other = await h.call('GET', `/api/segments?owner=me&sort=name&cursor=${cursor}`, {
        token: lister.token,
      });
      expect(other.status).toBe(400);
      expect(other.body.errors[0].field).toBe('cursor');
    });
  });
});
