import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/api/app.ts';
import { createApiToken } from '../../src/auth/credentials.ts';
import { testConfig } from '../../src/config.ts';
import type { HubContext } from '../../src/context.ts';
import { secretBox } from '../../src/destinations/secrets.ts';
import { inlineJobs } from '../../src/jobs/index.ts';
import { createLogger } from '../../src/log.ts';
import type { SyncDeps } from '../../src/sync/engine.ts';
import { createRegistry } from '../../src/sync/registry.ts';
import { driver } from '../support/db.ts';
import { memoryDestination } from '../support/destinations.ts';
import { profileOf, send } from '../support/ingest.ts';
import { caller, harness, type Answer, type Harness } from './support.ts';

const API_KEY = 'sk-live-3c9a7e51d2';

const person = (n: number, plan: string) => ({
  type: 'identify',
  userId: `u${n}`,
  traits: { email: `p${n}@example.com`, plan },
});

const MAPPING = [
  { from: 'identity:email', to: 'email' },
  { from: 'trait:plan', to: 'plan' },
];

describe(`Syncs API (${driver})`, () => {
  let h: Harness;
  let ctx: HubContext;
  let app: ReturnType<typeof createApp>;
  let memory: ReturnType<typeof memoryDestination>;
  /** A second marketer, who owns no segment. */
  let other: string;
  const config = testConfig();
  const logs: string[] = [];
  const seen: Answer[] = [];
  let paying: { id: string };
  let destinationId: string;
  let syncId: string;

  beforeAll(async () => {
    h = await harness();
    other = (await createApiToken(h.db, { name: 'other marketer', role: 'marketer' })).token;
    memory = memoryDestination();
    const registry = createRegistry();
    registry.register(memory.plugin);
    const log = createLogger('debug', {}, (line) => logs.push(line));
    const sync: SyncDeps = { registry, box: secretBox(randomBytes(32)), log };
    ctx = { db: h.db, config, log, sync };
    app = createApp(ctx);

    await send(
      h.db,
      config,
      [1, 2, 3, 4, 5].map((n) => person(n, 'pro')),
    );
    await send(h.db, config, [person(6, 'free')]);
    paying = await expectStatus(
      201,
      call('POST', '/api/segments', {
        token: h.tokens.marketer,
        body: {
          name: 'Paying',
          visibility: 'shared',
          rules: { trait: { name: 'plan', op: 'in', value: ['pro', 'team'] } },
        },
      }),
    );
    destinationId = (
      await expectStatus(
        201,
        call('POST', '/api/destinations', {
          body: { name: 'Memory', plugin: 'memory', config: { apiKey: API_KEY } },
        }),
      )
    ).id;
  });
  afterAll(() => h.close());

  const call = async (
    method: string,
    path: string,
    options: { token?: string; body?: unknown } = {},
  ): Promise<Answer> => {
    // Every answer is kept, to search them all for secrets.
    const answer = await caller(app, h.tokens.admin)(method, path, options);
    seen.push(answer);
    return answer;
  };
  async function expectStatus(status: number, answer: Promise<Answer>) {
    const res = await answer;
    expect(res.status, res.text).toBe(status);
    return res.body;
  }
  const fields = (answer: Answer) => answer.body.errors.map((e: { field: string }) => e.field);
  /** Recompute the segment after new data (what the worker does as data arrives). */
  const recompute = () =>
    expectStatus(
      200,
      call('POST', `/api/segments/${paying.id}/compute`, { token: h.tokens.marketer }),
    );

  it('lets admins and marketers create syncs of shared segments, any owner’s', async () => {
    const body = { segmentId: paying.id, destinationId, mapping: MAPPING };
    const integrator = await call('POST', '/api/syncs', { token: h.tokens.integrator, body });
    expect(integrator.status).toBe(403);

    // The other marketer does not own the segment: shared is enough.
    const created = await expectStatus(201, call('POST', '/api/syncs', { token: other, body }));
    expect(created).toEqual({
      id: expect.any(String),
      segmentId: paying.id,
      destinationId,
      mode: 'mirror',
      mapping: MAPPING,
      schedule: null,
      nextRunAt: null,
      autoSync: false,
      createdAt: expect.any(String),
      updatedAt: expect.any(String),
      managedBy: null,
    });
    syncId = created.id;
  });

  it('refuses private segments (409) and bad mappings (400), naming body fields', async () => {
    const mine = await expectStatus(
      201,
      call('POST', '/api/segments', {
        token: h.tokens.marketer,
        body: { name: 'Mine only', rules: { trait: { name: 'plan', op: 'eq', value: 'pro' } } },
      }),
    );
    const post = (body: Record<string, unknown>) =>
      call('POST', '/api/syncs', { token: h.tokens.marketer, body });
    const privateOne = await post({ segmentId: mine.id, destinationId, mapping: MAPPING });
    expect(privateOne.status).toBe(409);
    expect(privateOne.body).toMatchObject({
      type: 'urn:audiencehub:problem:segment-private',
      errors: [{ field: 'body.segmentId', message: expect.any(String) }],
    });

    const unknownField = await post({
      segmentId: paying.id,
      destinationId,
      mapping: [...MAPPING, { from: 'trait:city', to: 'city' }],
    });
    expect(unknownField.status).toBe(400);
    expect(unknownField.body.errors).toEqual([
      { field: 'body.mapping[2].to', message: expect.stringContaining('no field "city"') },
    ]);
    const noEmail = await post({ segmentId: paying.id, destinationId, mapping: [MAPPING[1]] });
    expect(noEmail.status).toBe(400);
    expect(noEmail.body.errors).toEqual([
      { field: 'body.mapping', message: 'the required field "email" is not mapped' },
    ]);
    const badSource = await post({
      segmentId: paying.id,
      destinationId,
      mapping: [{ from: 'email', to: 'email' }],
    });
    expect(badSource.status).toBe(400);
    expect(fields(badSource)).toEqual(['body.mapping[0].from']);
    const noDestination = await post({
      segmentId: paying.id,
      destinationId: '0190f5c2-8b1e-7a3c-9d4e-5f6a7b8c9d0e',
      mapping: MAPPING,
    });
    expect(noDestination.status).toBe(400);
    expect(fields(noDestination)).toEqual(['body.destinationId']);
    const shape = await post({ segmentId: 'x', mode: 'sometimes', mapping: [] });
    expect(fields(shape).sort()).toEqual([
      'body.destinationId',
      'body.mapping',
      'body.mode',
      'body.segmentId',
    ]);
  });

  it('lists (filtered by segment or destination) and reads syncs; integrators get 403', async () => {
    const all = await expectStatus(200, call('GET', '/api/syncs', { token: h.tokens.marketer }));
    expect(all.data.map((s: { id: string }) => s.id)).toEqual([syncId]);
    const bySegment = await expectStatus(200, call('GET', `/api/syncs?segmentId=${paying.id}`));
    expect(bySegment.data).toHaveLength(1);
    const other = '0190f5c2-8b1e-7a3c-9d4e-5f6a7b8c9d0e';
    expect(
      (await expectStatus(200, call('GET', `/api/syncs?destinationId=${other}`))).data,
    ).toEqual([]);
    expect(fields(await call('GET', '/api/syncs?segmentId=nope'))).toEqual(['segmentId']);
    const read = await expectStatus(200, call('GET', `/api/syncs/${syncId}`));
    expect(read.id).toBe(syncId);
    expect((await call('GET', `/api/syncs/${other}`)).status).toBe(404);
    for (const path of ['/api/syncs', `/api/syncs/${syncId}`, `/api/syncs/${syncId}/runs`]) {
      expect((await call('GET', path, { token: h.tokens.integrator })).status).toBe(403);
    }
  });

  it('plans a run without sending anything', async () => {
    const plan = await expectStatus(
      200,
      call('POST', `/api/syncs/${syncId}/plan?samples=2`, { token: h.tokens.marketer }),
    );
    expect(plan).toMatchObject({ add: 5, update: 0, remove: 0, heldBack: 0 });
    expect(plan.samples).toHaveLength(2);
    expect(plan.samples[0]).toEqual({
      action: 'add',
      profileId: expect.any(String),
      fields: { email: expect.stringMatching(/^p\d@example\.com$/), plan: 'pro' },
    });
    expect(memory.batches).toEqual([]);
    expect(fields(await call('POST', `/api/syncs/${syncId}/plan?samples=101`))).toEqual([
      'samples',
    ]);
  });

  it('runs now and answers the run with its counts; rejected rows are recorded', async () => {
    memory.behaviour.reject.add('p3@example.com');
    const run = await expectStatus(
      200,
      call('POST', `/api/syncs/${syncId}/run`, { token: h.tokens.marketer }),
    );
    expect(run).toMatchObject({
      syncId,
      trigger: 'manual',
      status: 'partial',
      added: 4,
      updated: 0,
      removed: 0,
      rejected: 1,
      retried: 0,
      error: null,
    });
    expect([...memory.held.keys()].sort()).toEqual(
      ['p1', 'p2', 'p4', 'p5'].map((p) => `${p}@example.com`),
    );
    // Nothing changed: nothing is sent, the rejected row is held back.
    const again = await expectStatus(200, call('POST', `/api/syncs/${syncId}/run`));
    expect(again).toMatchObject({ status: 'succeeded', added: 0, rejected: 0 });

    // p1 leaves the segment, p6 enters, p2 changes plan.
    await send(h.db, config, [person(1, 'free'), person(6, 'pro'), person(2, 'team')]);
    await recompute();
    const plan = await expectStatus(200, call('POST', `/api/syncs/${syncId}/plan`));
    expect(plan).toMatchObject({ add: 1, update: 1, remove: 1, heldBack: 1 });
    const third = await expectStatus(200, call('POST', `/api/syncs/${syncId}/run`));
    expect(third).toMatchObject({ status: 'succeeded', added: 1, updated: 1, removed: 1 });
    expect(memory.held.has('p1@example.com')).toBe(false);
    expect(memory.held.get('p2@example.com')).toEqual({ email: 'p2@example.com', plan: 'team' });
  });

  it('answers 409 naming the run while another run holds the sync', async () => {
    let open!: () => void;
    memory.behaviour.gate = new Promise<void>((resolve) => (open = resolve));
    await send(h.db, config, [person(7, 'pro')]);
    await recompute();
    const first = call('POST', `/api/syncs/${syncId}/run`);
    // Wait until the first run is sending: it holds the sync by then.
    for (let i = 0; i < 500 && !memory.behaviour.waiting; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(memory.behaviour.waiting).toBe(true);
    const busy = await call('POST', `/api/syncs/${syncId}/run`, { token: h.tokens.marketer });
    expect(busy.status).toBe(409);
    expect(busy.body).toMatchObject({
      type: 'urn:audiencehub:problem:sync-running',
      runId: expect.any(Number),
    });
    expect(busy.body.detail).toContain(`Run ${busy.body.runId}`);
    open();
    memory.behaviour.gate = null;
    const done = await first;
    expect(done.status, done.text).toBe(200);
    expect(done.body).toMatchObject({ id: busy.body.runId, status: 'succeeded', added: 1 });
  });

  it('lists runs newest first, a page at a time', async () => {
    const path = `/api/syncs/${syncId}/runs`;
    const all = await expectStatus(200, call('GET', path, { token: h.tokens.marketer }));
    expect(all.data).toHaveLength(4);
    expect(all.nextCursor).toBeNull();
    const ids = all.data.map((r: { id: number }) => r.id);
    expect(ids).toEqual([...ids].sort((a, b) => b - a));
    expect(all.data.at(-1)).toMatchObject({ added: 4, rejected: 1, status: 'partial' });

    const first = await expectStatus(200, call('GET', `${path}?limit=3`));
    expect(first.data.map((r: { id: number }) => r.id)).toEqual(ids.slice(0, 3));
    const second = await expectStatus(
      200,
      call('GET', `${path}?limit=3&cursor=${encodeURIComponent(first.nextCursor)}`),
    );
    expect(second.data.map((r: { id: number }) => r.id)).toEqual(ids.slice(3));
    expect(second.nextCursor).toBeNull();
    expect(fields(await call('GET', `${path}?cursor=garbage`))).toEqual(['cursor']);
    const none = '0190f5c2-8b1e-7a3c-9d4e-5f6a7b8c9d0e';
    expect((await call('GET', `/api/syncs/${none}/runs`)).status).toBe(404);
  });

  it("lists a run's row errors, and a profile's errors across runs", async () => {
    const runs = (await expectStatus(200, call('GET', `/api/syncs/${syncId}/runs`))).data;
    const rejecting = runs.at(-1);
    const p3 = (await profileOf(h.db, 'email', 'p3@example.com'))!;
    const errors = await expectStatus(
      200,
      call('GET', `/api/syncs/${syncId}/runs/${rejecting.id}/errors`, { token: h.tokens.marketer }),
    );
    expect(errors).toEqual({
      data: [
        {
          id: expect.any(Number),
          runId: rejecting.id,
          profileId: p3,
          action: 'add',
          status: 'rejected',
          reason: 'p3@example.com is unsubscribed',
          at: expect.any(String),
        },
      ],
      nextCursor: null,
    });
    expect(
      (await expectStatus(200, call('GET', `/api/syncs/${syncId}/runs/${runs[0].id}/errors`))).data,
    ).toEqual([]);

    // p3 changes (sent again, rejected again): two errors for p3 across runs.
    await send(h.db, config, [person(3, 'team')]);
    await recompute();
    await expectStatus(200, call('POST', `/api/syncs/${syncId}/run`));
    const p3Errors = await expectStatus(
      200,
      call('GET', `/api/syncs/${syncId}/errors?profileId=${p3}&limit=1`),
    );
    expect(p3Errors.data).toHaveLength(1);
    expect(p3Errors.data[0]).toMatchObject({
      profileId: p3,
      reason: 'p3@example.com is unsubscribed',
    });
    const older = await expectStatus(
      200,
      call(
        'GET',
        `/api/syncs/${syncId}/errors?profileId=${p3}&cursor=${encodeURIComponent(p3Errors.nextCursor)}`,
      ),
    );
    expect(older.data).toEqual([errors.data[0]]);
    expect(older.nextCursor).toBeNull();

    const p4 = (await profileOf(h.db, 'email', 'p4@example.com'))!;
    expect(
      (await expectStatus(200, call('GET', `/api/syncs/${syncId}/errors?profileId=${p4}`))).data,
    ).toEqual([]);
    expect(fields(await call('GET', `/api/syncs/${syncId}/errors?profileId=p3`))).toEqual([
      'profileId',
    ]);

    // p3 turns out to be p1: the errors follow the person to the surviving profile.
    await send(h.db, config, [{ type: 'alias', userId: 'u1', previousId: 'u3' }]);
    const survivor = (await profileOf(h.db, 'email', 'p3@example.com'))!;
    expect(survivor).not.toBe(p3);
    const merged = await expectStatus(
      200,
      call('GET', `/api/syncs/${syncId}/errors?profileId=${survivor}`),
    );
    expect(merged.data.map((e: { profileId: string }) => e.profileId)).toEqual([p3, p3]);

    // A run of no sync, or of another sync, is not found.
    expect((await call('GET', `/api/syncs/${syncId}/runs/999999/errors`)).status).toBe(404);
    expect((await call('GET', `/api/syncs/${syncId}/runs/x/errors`)).status).toBe(404);
  });

  it('sends rejected rows again on request (admins and marketers), counted as retried', async () => {
    memory.behaviour.reject.clear();
    memory.behaviour.reject.add('p8@example.com');
    await send(h.db, config, [person(8, 'pro')]);
    await recompute();
    const refused = await expectStatus(200, call('POST', `/api/syncs/${syncId}/run`));
    expect(refused).toMatchObject({ status: 'partial', rejected: 1 });
    // Fixed at the destination: unchanged here, so only a request sends it again.
    memory.behaviour.reject.clear();
    expect(await expectStatus(200, call('POST', `/api/syncs/${syncId}/plan`))).toMatchObject({
      heldBack: 1,
      retry: 0,
    });

    const path = `/api/syncs/${syncId}/retry-rejected`;
    expect((await call('POST', path, { token: h.tokens.integrator })).status).toBe(403);
    const none = '0190f5c2-8b1e-7a3c-9d4e-5f6a7b8c9d0e';
    expect((await call('POST', `/api/syncs/${none}/retry-rejected`)).status).toBe(404);
    const retried = await expectStatus(200, call('POST', path, { token: h.tokens.marketer }));
    expect(retried).toEqual({
      syncId,
      marked: 1,
      status: 'finished',
      run: expect.objectContaining({
        status: 'succeeded',
        added: 0,
        rejected: 0,
        retried: 1,
      }),
    });
    expect(memory.held.has('p8@example.com')).toBe(true);
    const again = await expectStatus(200, call('POST', path));
    expect(again).toMatchObject({ marked: 0, run: { retried: 0, rejected: 0 } });
  });

  it('resends everything to an emptied destination (admins only), queued with a worker', async () => {
    const path = `/api/syncs/${syncId}/resync`;
    const marketer = await call('POST', path, { token: h.tokens.marketer });
    expect(marketer.status).toBe(403);
    expect(marketer.body.requiredRoles).toEqual(['admin']);
    const before = [...memory.held.keys()].sort();
    expect(before.length).toBeGreaterThan(3);
    memory.empty();

    const requested: string[] = [];
    ctx.jobs = {
      ...inlineJobs(h.db),
      requestSyncRun: async (id) => {
        requested.push(id);
      },
    };
    try {
      const queued = await call('POST', path);
      expect(queued.status, queued.text).toBe(202);
      expect(queued.body).toEqual({ syncId, marked: before.length, status: 'queued', run: null });
      expect(requested).toEqual([syncId]);
    } finally {
      ctx.jobs = undefined;
    }
    const plan = await expectStatus(200, call('POST', `/api/syncs/${syncId}/plan?samples=1`));
    expect(plan).toMatchObject({ add: 0, update: before.length, remove: 0, retry: 0 });
    // The plan shows the state the destination gave each row, handed back with the update.
    expect(plan.samples[0]).toMatchObject({
      action: 'update',
      state: { recordId: expect.stringMatching(/^rec-\d+$/) },
    });
    const run = await expectStatus(200, call('POST', `/api/syncs/${syncId}/run`));
    expect(run).toMatchObject({ status: 'succeeded', added: 0, updated: before.length });
    expect([...memory.held.keys()].sort()).toEqual(before);

    const audit = await expectStatus(200, call('GET', `/api/audit?subjectId=${syncId}`));
    const actions = audit.data.map((e: { action: string; details: unknown }) => [
      e.action,
      e.details,
    ]);
    expect(actions).toContainEqual(['sync.resync', { marked: before.length }]);
    expect(actions).toContainEqual(['sync.retry_rejected', { marked: 1 }]);
  });

  it('changes a sync: mode, mapping checked against the destination', async () => {
    const path = `/api/syncs/${syncId}`;
    const bad = await call('PATCH', path, {
      token: h.tokens.marketer,
      body: { mapping: [{ from: 'identity:email', to: 'mail' }] },
    });
    expect(bad.status).toBe(400);
    expect(fields(bad).sort()).toEqual(['body.mapping', 'body.mapping[0].to']);
    const shape = await call('PATCH', path, { body: { mode: 'always' } });
    expect(fields(shape)).toEqual(['body.mode']);
    const upsert = await expectStatus(
      200,
      call('PATCH', path, { token: h.tokens.marketer, body: { mode: 'upsert' } }),
    );
    expect(upsert).toMatchObject({ mode: 'upsert', mapping: MAPPING });
    await expectStatus(200, call('PATCH', path, { body: { mode: 'mirror' } }));
    expect((await call('PATCH', path, { token: h.tokens.integrator, body: {} })).status).toBe(403);
  });

  it('lets only admins toggle auto-sync, which locks the segment until it is off', async () => {
    const path = `/api/syncs/${syncId}/auto-sync`;
    const marketer = await call('PUT', path, { token: h.tokens.marketer, body: { enabled: true } });
    expect(marketer.status).toBe(403);
    expect(marketer.body).toMatchObject({
      detail: 'This operation needs the admin role; this token has the marketer role.',
      requiredRoles: ['admin'],
    });
    expect(fields(await call('PUT', path, { body: { enabled: 'yes' } }))).toEqual(['body.enabled']);
    const on = await expectStatus(200, call('PUT', path, { body: { enabled: true } }));
    expect(on).toMatchObject({ id: syncId, autoSync: true });

    const edit = await call('PATCH', `/api/segments/${paying.id}`, {
      token: h.tokens.marketer,
      body: { rules: { trait: { name: 'plan', op: 'eq', value: 'pro' } } },
    });
    expect(edit.status).toBe(409);
    expect(edit.body).toMatchObject({
      type: 'urn:audiencehub:problem:segment-locked',
      syncs: [{ id: syncId, segmentId: paying.id, destination: 'Memory' }],
    });
    expect(edit.body.detail).toContain(`sync ${syncId} to "Memory"`);
    // Renaming is not a change of membership: allowed while locked.
    await expectStatus(
      200,
      call('PATCH', `/api/segments/${paying.id}`, {
        token: h.tokens.marketer,
        body: { name: 'Paying customers' },
      }),
    );
    const remove = await call('DELETE', `/api/syncs/${syncId}`, { token: h.tokens.marketer });
    expect(remove.status).toBe(409);
    expect(remove.body.type).toBe('urn:audiencehub:problem:sync-auto');

    const off = await expectStatus(200, call('PUT', path, { body: { enabled: false } }));
    expect(off.autoSync).toBe(false);
    await expectStatus(
      200,
      call('PATCH', `/api/segments/${paying.id}`, {
        token: h.tokens.marketer,
        body: { rules: { trait: { name: 'plan', op: 'in', value: ['pro', 'team', 'max'] } } },
      }),
    );
    const audit = await expectStatus(200, call('GET', `/api/audit?subjectId=${syncId}`));
    expect(audit.data.map((e: { action: string }) => e.action)).toEqual(
      expect.arrayContaining(['sync.created', 'sync.auto_sync_on', 'sync.auto_sync_off']),
    );
    const none = '0190f5c2-8b1e-7a3c-9d4e-5f6a7b8c9d0e';
    expect(
      (await call('PUT', `/api/syncs/${none}/auto-sync`, { body: { enabled: true } })).status,
    ).toBe(404);
  });

  it('queues the run when the hub has a worker for sync runs, checked at request time', async () => {
    const requested: string[] = [];
    ctx.jobs = {
      ...inlineJobs(h.db),
      requestSyncRun: async (id) => {
        requested.push(id);
      },
    };
    const none = '0190f5c2-8b1e-7a3c-9d4e-5f6a7b8c9d0e';
    try {
      const res = await call('POST', `/api/syncs/${syncId}/run`, { token: h.tokens.marketer });
      expect(res.status, res.text).toBe(202);
      expect(res.body).toEqual({ syncId, status: 'queued' });
      expect(requested).toEqual([syncId]);
      expect((await call('POST', `/api/syncs/${none}/run`)).status).toBe(404);
      expect(requested).toEqual([syncId]);
    } finally {
      ctx.jobs = undefined;
    }
  });

  it('deletes a sync with its history', async () => {
    expect(
      (await call('DELETE', `/api/syncs/${syncId}`, { token: h.tokens.integrator })).status,
    ).toBe(403);
    expect(
      (await call('DELETE', `/api/syncs/${syncId}`, { token: h.tokens.marketer })).status,
    ).toBe(204);
    expect((await call('GET', `/api/syncs/${syncId}`)).status).toBe(404);
    expect((await call('GET', `/api/syncs/${syncId}/runs`)).status).toBe(404);
    expect((await call('POST', `/api/syncs/${syncId}/run`)).status).toBe(404);
    expect((await call('POST', `/api/syncs/${syncId}/plan`)).status).toBe(404);
  });

  it('never shows the destination’s secret, in any answer or log line', () => {
    expect(seen.length).toBeGreaterThan(50);
    for (const answer of seen) expect(answer.text).not.toContain(API_KEY);
    for (const line of logs) expect(line).not.toContain(API_KEY);
  });
});
