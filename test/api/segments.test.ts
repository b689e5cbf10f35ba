import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/api/app.ts';
import { createApiToken } from '../../src/auth/credentials.ts';
import { testConfig } from '../../src/config.ts';
import { rows } from '../../src/db/index.ts';
import { createLogger } from '../../src/log.ts';
import { driver } from '../support/db.ts';
import { insertPerson } from './fixtures.ts';
import { allPages, harness, type Harness } from './support.ts';

const pro = { trait: { name: 'plan', op: 'eq', value: 'pro' } };
const big = { computed: { name: 'total_spent', op: 'gt', value: 100 } };

describe(`Segments API: definitions (${driver})`, () => {
  let h: Harness;
  /** A second marketer, to see what other owners may do. */
  let other: string;
  const p: Record<string, string> = {};

  beforeAll(async () => {
    h = await harness();
    other = (await createApiToken(h.db, { name: 'other marketer', role: 'marketer' })).token;
    p.jane = await insertPerson(h.db, {
      identities: [
        { type: 'email', value: 'jane@example.com' },
        { type: 'user_id', value: 'u-1' },
      ],
      traits: [{ key: 'plan', value: 'pro' }],
      events: [{ name: 'Order Completed', timestamp: new Date(), revenue: 250 }],
    });
    p.john = await insertPerson(h.db, {
      identities: [{ type: 'email', value: 'john@example.com' }],
      traits: [{ key: 'plan', value: 'pro' }],
      events: [{ name: 'Order Completed', timestamp: new Date(), revenue: 20 }],
    });
    p.ann = await insertPerson(h.db, {
      identities: [{ type: 'email', value: 'ann@example.com' }],
      traits: [{ key: 'plan', value: 'free' }],
    });
  });
  afterAll(() => h.close());

  const create = (body: Record<string, unknown>, token = h.tokens.marketer) =>
    h.call('POST', '/api/segments', { token, body });

  it('creates a dynamic segment and computes it before answering', async () => {
    const res = await create({ name: 'Pro plan', rules: pro, visibility: 'shared' });
    expect(res.status, res.text).toBe(201);
    expect(res.body).toMatchObject({
      name: 'Pro plan',
      description: '',
      type: 'dynamic',
      visibility: 'shared',
      owner: { name: 'marketer token' },
      rules: pro,
      size: 2,
      run: { trigger: 'create', kind: 'full', status: 'succeeded', size: 2, entered: 2, exited: 0 },
    });
    expect(res.body.lastComputedAt).not.toBeNull();

    const read = await h.call('GET', `/api/segments/${res.body.id}`, {
      token: h.tokens.integrator,
    });
    expect(read.status).toBe(200);
    expect(read.body).toMatchObject({ id: res.body.id, name: 'Pro plan', size: 2, rules: pro });
    expect(read.body.run).toBeUndefined();
  });

  it('computes a static segment from rules once, and never on an update of its rules', async () => {
    const res = await create({ name: 'Big spenders then', type: 'static', rules: big });
    expect(res.status, res.text).toBe(201);
    expect(res.body).toMatchObject({ type: 'static', size: 1, run: { trigger: 'create' } });
    const patched = await h.call('PATCH', `/api/segments/${res.body.id}`, {
      token: h.tokens.marketer,
      body: { rules: { computed: { name: 'total_spent', op: 'gt', value: 1 } } },
    });
    expect(patched.status, patched.text).toBe(200);
    expect(patched.body).toMatchObject({ size: 1, run: null });
  });

  it('creates a segment from a built-in template', async () => {
    const list = await h.call('GET', '/api/segments/templates', { token: h.tokens.integrator });
    expect(list.status).toBe(200);
    const keys = list.body.data.map((t: { key: string }) => t.key);
    expect(keys).toEqual(
      expect.arrayContaining(['loyal-customers', 'high-value', 'rfm-champions']),
    );
    const highValue = list.body.data.find((t: { key: string }) => t.key === 'high-value');
    const res = await create({ name: 'From a template', template: 'high-value' });
    expect(res.status, res.text).toBe(201);
    expect(res.body).toMatchObject({ template: 'high-value', rules: highValue.rules, size: 0 });
    const unknown = await create({ name: 'No such template', template: 'nope' });
    expect(unknown.status).toBe(400);
    expect(unknown.body.errors).toEqual([{ field: 'body.template', message: expect.any(String) }]);
  });

  it('creates an uploaded list without computing it', async () => {
    const res = await create({ name: 'Fair visitors', type: 'static' });
    expect(res.status, res.text).toBe(201);
    expect(res.body).toMatchObject({ rules: null, size: 0, run: null, lastComputedAt: null });
  });

  it('checks names: 1–100 characters, unique per owner in any case', async () => {
    const empty = await create({ name: '   ', rules: pro });
    expect(empty.status).toBe(400);
    expect(empty.body.errors.map((e: { field: string }) => e.field)).toEqual(['body.name']);
    const long = await create({ name: 'x'.repeat(101), rules: pro });
    expect(long.status).toBe(400);
    expect(long.body.errors[0].field).toBe('body.name');
    expect((await create({ name: 'y'.repeat(100), rules: pro })).status).toBe(201);

    const taken = await create({ name: 'PRO PLAN', rules: pro });
    expect(taken.status).toBe(409);
    expect(taken.headers.get('Content-Type')).toBe('application/problem+json');
    expect(taken.body).toMatchObject({
      type: 'urn:audiencehub:problem:segment-name-taken',
      errors: [{ field: 'body.name', message: expect.any(String) }],
    });
    // Another owner may use the same name.
    expect((await create({ name: 'Pro plan', rules: pro }, other)).status).toBe(201);
    // And renaming onto a taken name is refused too.
    const mine = await create({ name: 'Renamed later', rules: pro });
    const rename = await h.call('PATCH', `/api/segments/${mine.body.id}`, {
      token: h.tokens.marketer,
      body: { name: 'pro plan' },
    });
    expect(rename.status).toBe(409);
    expect(rename.body.errors[0].field).toBe('body.name');
  });

  it('names the failing field of invalid rules', async () => {
    const res = await create({
      name: 'Bad rules',
      rules: { all: [{ trait: { name: 'plan', op: 'like', value: 'pro' } }] },
    });
    expect(res.status).toBe(400);
    expect(res.body.errors.map((e: { field: string }) => e.field)).toContain(
      'body.rules.all[0].trait.op',
    );
    const computed = await create({
      name: 'Bad computed',
      rules: { computed: { name: 'total_spent', op: 'contains', value: 'x' } },
    });
    expect(computed.status).toBe(400);
    expect(computed.body.errors[0].field).toBe('body.rules.computed.op');
    const missing = await create({ name: 'No rules' });
    expect(missing.status).toBe(400);
    expect(missing.body.errors).toEqual([{ field: 'body.rules', message: expect.any(String) }]);
    const cron = await create({ name: 'Bad cron', rules: pro, schedule: 'every day' });
    expect(cron.status).toBe(400);
    expect(cron.body.errors[0].field).toBe('body.schedule');
  });

  it('rejects a reference to an unknown segment and a cycle, naming it', async () => {
    const unknown = await create({
      name: 'Refers to nothing',
      rules: { all: [pro, { segment: { id: '0190f5c2-8b1e-7a3c-9d4e-5f6a7b8c9d0e' } }] },
    });
    expect(unknown.status).toBe(400);
    expect(unknown.body.errors[0].field).toBe('body.rules.all[1].segment.id');

    const b = await create({ name: 'B', rules: pro });
    const a = await create({ name: 'A', rules: { all: [big, { segment: { id: b.body.id } }] } });
    expect(a.status, a.text).toBe(201);
    expect(a.body.size).toBe(1); // pro and big: jane
    const cycle = await h.call('PATCH', `/api/segments/${b.body.id}`, {
      token: h.tokens.marketer,
      body: { rules: { any: [pro, { segment: { id: a.body.id } }] } },
    });
    expect(cycle.status).toBe(400);
    expect(cycle.body).toMatchObject({
      type: 'urn:audiencehub:problem:segment-cycle',
      errors: [{ field: 'body.rules.any[1].segment.id' }],
      cycle: [b.body.id, a.body.id, b.body.id],
    });
    expect(cycle.body.detail).toContain('B → A → B');

    // B is referenced by A: it cannot be deleted until A is.
    const refused = await h.call('DELETE', `/api/segments/${b.body.id}`, {
      token: h.tokens.marketer,
    });
    expect(refused.status).toBe(409);
    expect(refused.body).toMatchObject({
      type: 'urn:audiencehub:problem:segment-referenced',
      referencedBy: [{ id: a.body.id, name: 'A' }],
    });
    const deleted = await h.call('DELETE', `/api/segments/${a.body.id}`, {
      token: h.tokens.marketer,
    });
    expect(deleted.status).toBe(204);
    expect(deleted.text).toBe('');
    expect((await h.call('GET', `/api/segments/${a.body.id}`)).status).toBe(404);
    expect(
      (await h.call('DELETE', `/api/segments/${b.body.id}`, { token: h.tokens.marketer })).status,
    ).toBe(204);
  });

  it('recomputes a dynamic segment whose rules change', async () => {
    const seg = await create({ name: 'Changing', rules: pro });
    expect(seg.body.size).toBe(2);
    const patched = await h.call('PATCH', `/api/segments/${seg.body.id}`, {
      token: h.tokens.marketer,
      body: { rules: big, description: 'Spent over 100' },
    });
    expect(patched.status, patched.text).toBe(200);
    expect(patched.body).toMatchObject({
      description: 'Spent over 100',
      rules: big,
      size: 1,
      run: { trigger: 'update', status: 'succeeded', entered: 0, exited: 1 },
    });
    // Nothing that selects members changed: nothing to recompute.
    const renamed = await h.call('PATCH', `/api/segments/${seg.body.id}`, {
      token: h.tokens.marketer,
      body: { name: 'Big spenders', schedule: '0 * * * *' },
    });
    expect(renamed.body).toMatchObject({ name: 'Big spenders', schedule: '0 * * * *', run: null });
    expect(Date.parse(renamed.body.nextRunAt)).toBeGreaterThan(Date.now());
  });

  it('hides a private segment from other marketers, not from admins', async () => {
    const seg = await create({ name: 'Mine only', rules: pro });
    expect(seg.body.visibility).toBe('private');
    const path = `/api/segments/${seg.body.id}`;
    expect((await h.call('GET', path, { token: other })).status).toBe(404);
    expect((await h.call('GET', path, { token: h.tokens.integrator })).status).toBe(404);
    expect((await h.call('GET', `${path}/members`, { token: other })).status).toBe(404);
    expect((await h.call('PATCH', path, { token: other, body: { name: 'x' } })).status).toBe(404);
    expect((await h.call('DELETE', path, { token: other })).status).toBe(404);
    expect((await h.call('GET', path, { token: h.tokens.admin })).status).toBe(200);

    const listed = await allPages(h, '/api/segments?limit=200', other);
    expect(listed.flat().map((s) => s.id)).not.toContain(seg.body.id);
    const forAdmin = await allPages(h, '/api/segments?limit=200', h.tokens.admin);
    expect(forAdmin.flat().map((s) => s.id)).toContain(seg.body.id);
  });

  it('lets only the owner or an admin change a shared segment', async () => {
    const seg = await create({ name: 'Shared', rules: pro, visibility: 'shared' });
    const path = `/api/segments/${seg.body.id}`;
    expect((await h.call('GET', path, { token: other })).status).toBe(200);
    const patch = await h.call('PATCH', path, { token: other, body: { name: 'Taken over' } });
    expect(patch.status).toBe(403);
    expect(patch.body.type).toBe('urn:audiencehub:problem:forbidden');
    expect((await h.call('DELETE', path, { token: other })).status).toBe(403);
    const byAdmin = await h.call('PATCH', path, {
      token: h.tokens.admin,
      body: { visibility: 'private' },
    });
    expect(byAdmin.status).toBe(200);
    expect(byAdmin.body).toMatchObject({
      visibility: 'private',
      owner: { name: 'marketer token' },
    });
    expect((await h.call('GET', path, { token: other })).status).toBe(404);
  });

  it('lets integrators read but not create, change, compute or preview', async () => {
    const token = h.tokens.integrator;
    const seg = await create({ name: 'For integrators', rules: pro, visibility: 'shared' });
    const path = `/api/segments/${seg.body.id}`;
    expect((await create({ name: 'Nope', rules: pro }, token)).status).toBe(403);
    expect((await h.call('PATCH', path, { token, body: { name: 'x' } })).status).toBe(403);
    expect((await h.call('DELETE', path, { token })).status).toBe(403);
    expect((await h.call('POST', `${path}/compute`, { token })).status).toBe(403);
    const previewed = await h.call('POST', '/api/segments/preview', {
      token,
      body: { rules: pro },
    });
    expect(previewed.status).toBe(403);
    expect(previewed.body.requiredRoles).toEqual(['admin', 'marketer']);
    for (const sub of ['', '/members', '/runs', '/history', '/stats']) {
      expect((await h.call('GET', `${path}${sub}`, { token })).status, sub).toBe(200);
    }
  });

  it('limits the segments per owner', async () => {
    const log = createLogger('error', {}, () => {});
    const app = createApp({ db: h.db, config: testConfig({ maxSegmentsPerOwner: 2 }), log });
    const { token } = await createApiToken(h.db, { name: 'limited', role: 'marketer' });
    const post = (name: string) =>
      app.request('/api/segments', {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ name, type: 'static' }),
      });
    expect((await post('one')).status).toBe(201);
    expect((await post('two')).status).toBe(201);
    const third = await post('three');
    expect(third.status).toBe(409);
    expect(await third.json()).toMatchObject({
      type: 'urn:audiencehub:problem:segment-limit',
      limit: 2,
    });
  });

  it('previews unsaved rules with a count, a sample and the time taken', async () => {
    const res = await h.call('POST', '/api/segments/preview', {
      token: h.tokens.marketer,
      body: { rules: pro, sample: 1 },
    });
    expect(res.status, res.text).toBe(200);
    expect(res.body.count).toBe(2);
    expect(res.body.sample).toEqual([
      {
        id: p.john,
        kind: 'customer',
        email: 'john@example.com',
        identities: [{ type: 'email', value: 'john@example.com' }],
      },
    ]);
    expect(res.body.tookMs).toBeGreaterThanOrEqual(0);
    expect(Date.now() - Date.parse(res.body.asOf)).toBeLessThan(60_000);

    const full = await h.call('POST', '/api/segments/preview', {
      token: h.tokens.marketer,
      body: { rules: pro },
    });
    expect(full.body.sample.map((s: { id: string }) => s.id)).toEqual([p.john, p.jane]);
    expect(full.body.sample[1].identities).toEqual([
      { type: 'email', value: 'jane@example.com' },
      { type: 'user_id', value: 'u-1' },
    ]);

    const invalid = await h.call('POST', '/api/segments/preview', {
      token: h.tokens.marketer,
      body: { rules: { any: [{ event: { count: { atLeast: -1 } } }] } },
    });
    expect(invalid.status).toBe(400);
    expect(invalid.body.errors[0].field).toMatch(/^body\.rules\.any\[0\]\.event\.count/);
    const none = await h.call('POST', '/api/segments/preview', {
      token: h.tokens.marketer,
      body: { sample: 5 },
    });
    expect(none.status).toBe(400);
    expect(none.body.errors[0].field).toBe('body.rules');
  });

  it('previews as of a past time', async () => {
    const person = await insertPerson(h.db, {
      identities: [{ type: 'email', value: 'early@example.com' }],
      events: [
        { name: 'Order Completed', timestamp: new Date('2024-01-10T00:00:00Z'), revenue: 10 },
        { name: 'Order Completed', timestamp: new Date('2024-03-10T00:00:00Z'), revenue: 10 },
      ],
    });
    const rules = {
      event: { purchase: true, count: { atLeast: 2 }, within: { last: 30, unit: 'days' } },
    };
    const at = (asOf: string) =>
      h.call('POST', '/api/segments/preview', {
        token: h.tokens.marketer,
        body: { rules, asOf, sample: 5 },
      });
    const before = await at('2024-02-01T00:00:00Z');
    expect(before.body).toMatchObject({ count: 0, sample: [], asOf: '2024-02-01T00:00:00.000Z' });
    const after = await at('2024-03-15T00:00:00Z');
    expect(after.body.count).toBe(0); // the two purchases are 60 days apart
    const wide = await h.call('POST', '/api/segments/preview', {
      token: h.tokens.marketer,
      body: {
        rules: {
          event: { purchase: true, count: { atLeast: 2 }, within: { last: 3, unit: 'months' } },
        },
        asOf: '2024-03-15T00:00:00Z',
      },
    });
    expect(wide.body.count).toBe(1);
    expect(wide.body.sample.map((s: { id: string }) => s.id)).toEqual([person]);
    const bad = await at('yesterday');
    expect(bad.status).toBe(400);
    expect(bad.body.errors[0].field).toBe('body.asOf');
  });

  it('does not let a preview reference a segment the token cannot see', async () => {
    const hidden = await create({ name: 'Hidden from others', rules: pro });
    const rules = { segment: { id: hidden.body.id } };
    const mine = await h.call('POST', '/api/segments/preview', {
      token: h.tokens.marketer,
      body: { rules },
    });
    expect(mine.body.count).toBe(2);
    const theirs = await h.call('POST', '/api/segments/preview', { token: other, body: { rules } });
    expect(theirs.status).toBe(400);
    expect(theirs.body.errors[0].field).toBe('body.rules.segment.id');
  });

  it('computes now, recording the run', async () => {
    const seg = await create({ name: 'Compute me', rules: pro, visibility: 'shared' });
    const later = await insertPerson(h.db, { traits: [{ key: 'plan', value: 'pro' }] });
    const res = await h.call('POST', `/api/segments/${seg.body.id}/compute`, {
      token: other, // any marketer who can see a dynamic segment
    });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toMatchObject({
      segmentId: seg.body.id,
      trigger: 'manual',
      kind: 'full',
      status: 'succeeded',
      size: 3,
      entered: 1,
      exited: 0,
    });
    const runs = await h.call('GET', `/api/segments/${seg.body.id}/runs?limit=1`);
    expect(runs.body.data).toEqual([res.body]);
    const rest = await h.call(
      'GET',
      `/api/segments/${seg.body.id}/runs?cursor=${runs.body.nextCursor}`,
    );
    expect(rest.body).toMatchObject({ data: [{ trigger: 'create' }], nextCursor: null });
    const members = await h.call('GET', `/api/segments/${seg.body.id}/members`);
    expect(members.body.data[0].profileId).toBe(later);

    const list = await create({ name: 'A list', type: 'static' });
    const refused = await h.call('POST', `/api/segments/${list.body.id}/compute`, {
      token: h.tokens.marketer,
    });
    expect(refused.status).toBe(409);
    expect(refused.body.type).toBe('urn:audiencehub:problem:segment-not-computable');
    const frozen = await create({
      name: 'Frozen',
      type: 'static',
      rules: pro,
      visibility: 'shared',
    });
    expect(
      (await h.call('POST', `/api/segments/${frozen.body.id}/compute`, { token: other })).status,
    ).toBe(403);
  });

  it('answers 202 when a worker takes the computation', async () => {
    const requested: string[] = [];
    const app = createApp({
      db: h.db,
      config: testConfig(),
      log: createLogger('error', {}, () => {}),
      jobs: {
        requestComputation: async (id, trigger) => {
          requested.push(`${trigger} ${id}`);
          return null;
        },
      },
    });
    const call = async (method: string, path: string, body?: unknown) => {
      const res = await app.request(path, {
        method,
        headers: { Authorization: `Bearer ${h.tokens.admin}`, 'Content-Type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: res.status, body: (await res.json()) as { id: string } };
    };
    const created = await call('POST', '/api/segments', { name: 'Queued', rules: pro });
    expect(created).toMatchObject({ status: 201, body: { size: 0, run: null } });
    const queued = await call('POST', `/api/segments/${created.body.id}/compute`);
    expect(queued).toEqual({
      status: 202,
      body: { segmentId: created.body.id, status: 'queued' },
    });
    expect(requested).toEqual([`create ${created.body.id}`, `manual ${created.body.id}`]);
  });

  it('keeps a created segment when its computation cannot even be requested', async () => {
    const lines: string[] = [];
    const app = createApp({
      db: h.db,
      config: testConfig(),
      log: createLogger('error', {}, (line) => lines.push(line)),
      jobs: {
        requestComputation: async () => {
          throw new Error('queue unavailable');
        },
      },
    });
    const res = await app.request('/api/segments', {
      method: 'POST',
      headers: { Authorization: `Bearer ${h.tokens.admin}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'Unqueued', rules: pro }),
    });
    expect(res.status).toBe(201);
    const body = (await res.json()) as { id: string };
    expect(body).toMatchObject({ name: 'Unqueued', size: 0, run: null });
    expect(lines.join('\n')).toContain('segment computation failed');
    expect((await h.call('GET', `/api/segments/${body.id}`)).status).toBe(200);
  });

  it('shows a failed computation as a failed run, the members left as they were', async () => {
    const seg = await create({ name: 'Will fail', rules: pro });
    const size = seg.body.size;
    expect(size).toBeGreaterThan(0);
    // Rules broken behind the API's back make the next run fail.
    await h.db.execute(
      sql`update segments set rules = '{"trait": {"name": "plan", "op": "nope"}}'::jsonb
          where id = ${seg.body.id}`,
    );
    const res = await h.call('POST', `/api/segments/${seg.body.id}/compute`, {
      token: h.tokens.marketer,
    });
    expect(res.status).toBe(400);
    const [run] = await rows<{ status: string; error: string }>(
      h.db,
      sql`select status, error from segment_runs where segment_id = ${seg.body.id}
          order by id desc limit 1`,
    );
    expect(run).toMatchObject({ status: 'failed', error: expect.stringContaining('rules') });
    expect((await h.call('GET', `/api/segments/${seg.body.id}`)).body.size).toBe(size);
    const members = await h.call('GET', `/api/segments/${seg.body.id}/members`);
    expect(members.body.data).toHaveLength(size);
    const runs = await h.call('GET', `/api/segments/${seg.body.id}/runs`);
    expect(runs.body.data.map((r: { status: string }) => r.status)).toEqual([
      'failed',
      'succeeded',
    ]);
  });

  it('documents every segment operation in the OpenAPI document', async () => {
    const doc = (await h.call('GET', '/api/openapi.json')).body;
    const ops = Object.entries(doc.paths as Record<string, Record<string, unknown>>)
      .filter(([path]) => path.startsWith('/api/segments'))
      .flatMap(([path, item]) => Object.keys(item).map((m) => `${m} ${path}`))
      .sort();
    expect(ops).toEqual(
      [
        'get /api/segments',
        'post /api/segments',
        'post /api/segments/preview',
        'get /api/segments/overlap',
        'get /api/segments/templates',
        'get /api/segments/{id}',
        'patch /api/segments/{id}',
        'delete /api/segments/{id}',
        'post /api/segments/{id}/compute',
        'get /api/segments/{id}/members',
        'put /api/segments/{id}/members',
        'get /api/segments/{id}/runs',
        'get /api/segments/{id}/history',
        'get /api/segments/{id}/stats',
      ].sort(),
    );
    const create = doc.paths['/api/segments'].post;
    expect(create.description).toMatch(/^Role: admin or marketer\./);
    expect(create.responses['201'].content['application/json'].schema.$ref).toBe(
      '#/components/schemas/SegmentWithRun',
    );
    expect(
      Object.keys(doc.paths['/api/segments/{id}/members'].get.responses['200'].content),
    ).toEqual(['application/json', 'text/csv']);
    expect(doc.components.schemas.SegmentListItem.properties).toHaveProperty('change30d');
  });
});
