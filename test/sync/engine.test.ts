import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { randomBytes } from 'node:crypto';
import type { Principal } from '../../src/auth/credentials.ts';
import { testConfig } from '../../src/config.ts';
import { rows, type Database, type Db } from '../../src/db/index.ts';
import { secretBox } from '../../src/destinations/secrets.ts';
import { createDestination } from '../../src/destinations/store.ts';
import { uuidv7 } from '../../src/ids.ts';
import { silentLogger } from '../../src/log.ts';
import { foldAll } from '../../src/profiles/fold.ts';
import { computeSegment } from '../../src/segments/compute.ts';
import { createSegment } from '../../src/segments/store.ts';
import { planSync, runSync, type SyncDeps } from '../../src/sync/engine.ts';
import { createRegistry } from '../../src/sync/registry.ts';
import { createSync, resync, retryRejected } from '../../src/sync/store.ts';
import { driver, testDatabase } from '../support/db.ts';
import { memoryDestination } from '../support/destinations.ts';
import { send } from '../support/ingest.ts';

let database: Database;
let db: Db;
const config = testConfig();
const admin: Principal = { tokenId: uuidv7(), name: 'admin', role: 'admin' };
const marketer: Principal = { tokenId: uuidv7(), name: 'marketer', role: 'marketer' };
let memory: ReturnType<typeof memoryDestination>;
let deps: SyncDeps;

beforeAll(async () => {
  database = await testDatabase();
  db = database.db;
});
afterAll(() => database.close());
beforeEach(async () => {
  await db.execute(
    sql`truncate profiles, identities, traits, events, profile_event_counts, merges, event_cursors,
      segments, segment_members, segment_membership_changes, segment_runs, segment_daily_sizes,
      destinations, syncs, sync_state, sync_runs, sync_row_errors, audit_log restart identity`,
  );
  memory = memoryDestination();
  const registry = createRegistry();
  registry.register(memory.plugin);
  deps = { registry, box: secretBox(randomBytes(32)), log: silentLogger };
});

const person = (n: number, plan = 'free') => ({
  type: 'identify',
  userId: `u${n}`,
  traits: { email: `p${n}@example.com`, plan },
});

/** A shared segment of plan = pro|free people, a destination and a sync of it. */
async function setUp(mode: 'mirror' | 'upsert' = 'mirror') {
  const segment = await createSegment(
    db,
    admin,
    {
      name: `paying-${uuidv7()}`,
      description: '',
      type: 'dynamic',
      visibility: 'shared',
      rules: { trait: { name: 'plan', op: 'in', value: ['pro', 'team'] } },
    },
    { maxPerOwner: 50 },
  );
  const destination = await createDestination(db, deps, admin, {
    name: `memory-${uuidv7()}`,
    plugin: 'memory',
    config: { apiKey: 'sk-live-9f8e7d' },
  });
  const sync = await createSync(db, deps, admin, {
    segmentId: segment.id,
    destinationId: destination.id,
    mode,
    mapping: [
      { from: 'identity:email', to: 'email' },
      { from: 'trait:plan', to: 'plan' },
      { from: 'computed:total_spent', to: 'spent' },
    ],
  });
  const refresh = async () => {
    await foldAll(db);
    await computeSegment(db, segment.id, 'manual');
  };
  return { segment, destination, sync, refresh };
}

describe(`the sync engine (${driver})`, () => {
  it('sends only the difference: adds, then nothing, then updates and removals', async () => {
    await send(
      db,
      config,
      [1, 2, 3, 4, 5, 6, 7].map((n) => person(n, 'pro')),
    );
    await send(db, config, [person(8, 'free')]);
    const { sync, refresh } = await setUp();
    await refresh();

    const first = await runSync(db, deps, sync.id, 'manual');
    expect(first).toMatchObject({ status: 'succeeded', added: 7, updated: 0, removed: 0 });
    expect(memory.batches.map((b) => b.length)).toEqual([3, 3, 1]);
    expect([...memory.held.keys()].sort()).toEqual(
      [1, 2, 3, 4, 5, 6, 7].map((n) => `p${n}@example.com`).sort(),
    );
    expect(memory.held.get('p1@example.com')).toEqual({
      email: 'p1@example.com',
      plan: 'pro',
      spent: 0,
    });

    // Nothing changed: nothing is sent.
    memory.batches.length = 0;
    expect(await runSync(db, deps, sync.id, 'manual')).toMatchObject({ added: 0, updated: 0 });
    expect(memory.batches).toEqual([]);

    // p1 moves to team (an update), p2 to free (leaves), p8 to pro (enters).
    await send(db, config, [person(1, 'team'), person(2, 'free'), person(8, 'pro')]);
    await refresh();
    const plan = await planSync(db, deps, sync.id);
    expect(plan).toMatchObject({ add: 1, update: 1, remove: 1, heldBack: 0 });
    const third = await runSync(db, deps, sync.id, 'manual');
    expect(third).toMatchObject({ status: 'succeeded', added: 1, updated: 1, removed: 1 });
    expect(memory.held.has('p2@example.com')).toBe(false);
    expect(memory.held.get('p1@example.com')!.plan).toBe('team');
    expect(
      memory.batches
        .flat()
        .map((r) => r.action)
        .sort(),
    ).toEqual(['add', 'remove', 'update']);
  });

  it('never removes in upsert mode', async () => {
    await send(db, config, [person(1, 'pro'), person(2, 'pro')]);
    const { sync, refresh } = await setUp('upsert');
    await refresh();
    await runSync(db, deps, sync.id, 'manual');
    await send(db, config, [person(2, 'free')]);
    await refresh();
    expect(await planSync(db, deps, sync.id)).toMatchObject({ remove: 0 });
    expect(await runSync(db, deps, sync.id, 'manual')).toMatchObject({ removed: 0 });
    expect(memory.held.has('p2@example.com')).toBe(true);
  });

  it('records rejected rows with their reason and sends them again only when they change', async () => {
    await send(db, config, [person(1, 'pro'), person(2, 'pro')]);
    const { sync, refresh } = await setUp();
    await refresh();
    memory.behaviour.reject.add('p2@example.com');
    const run = await runSync(db, deps, sync.id, 'manual');
    expect(run).toMatchObject({ status: 'partial', added: 1, rejected: 1 });
    const errors = await rows<{ action: string; status: string; reason: string }>(
      db,
      sql`select action, status, reason from sync_row_errors where run_id = ${run.id}`,
    );
    expect(errors).toEqual([
      { action: 'add', status: 'rejected', reason: 'p2@example.com is unsubscribed' },
    ]);
    memory.batches.length = 0;
    expect(await planSync(db, deps, sync.id)).toMatchObject({ add: 0, heldBack: 1 });
    expect(await runSync(db, deps, sync.id, 'manual')).toMatchObject({ added: 0, rejected: 0 });
    expect(memory.batches).toEqual([]);

    memory.behaviour.reject.clear();
    await send(db, config, [person(2, 'team')]);
    await refresh();
    expect(await runSync(db, deps, sync.id, 'manual')).toMatchObject({
      status: 'succeeded',
      added: 1,
    });
    expect(memory.held.get('p2@example.com')!.plan).toBe('team');
  });

  it('retries a batch the service refuses for a while', async () => {
    await send(db, config, [person(1, 'pro')]);
    const { sync, refresh } = await setUp();
    await refresh();
    memory.behaviour.transientFailures = 2;
    expect(await runSync(db, deps, sync.id, 'manual')).toMatchObject({
      status: 'succeeded',
      added: 1,
    });
  });

  it('fails the run on a configuration error without repeating the secret', async () => {
    await send(db, config, [person(1, 'pro')]);
    const { sync, refresh } = await setUp();
    await refresh();
    memory.behaviour.configError = true;
    const run = await runSync(db, deps, sync.id, 'manual');
    expect(run.status).toBe('failed');
    expect(run.error).toBe('key ******** was revoked');
    const [stored] = await rows<{ secrets: string; config: unknown }>(
      db,
      sql`select secrets, config from destinations`,
    );
    expect(JSON.stringify(stored)).not.toContain('sk-live-9f8e7d');
  });

  it('loses and repeats nothing when a run dies mid-way', async () => {
    await send(
      db,
      config,
      Array.from({ length: 10 }, (_, i) => person(i + 1, 'pro')),
    );
    const { sync, refresh } = await setUp();
    await refresh();
    memory.behaviour.failAfterBatches = 2;
    const broken = await runSync(db, deps, sync.id, 'manual');
    expect(broken.status).toBe('failed');
    const confirmed = memory.batches.flat().map((r) => r.fields.email);
    const [ledger] = await rows<{ n: number }>(
      db,
      sql`select count(*)::int as n from sync_state where sync_id = ${sync.id}`,
    );
    expect(ledger!.n).toBe(confirmed.length);

    memory.behaviour.failAfterBatches = Infinity;
    const resumed = await runSync(db, deps, sync.id, 'manual');
    expect(resumed).toMatchObject({ status: 'succeeded', added: 10 - confirmed.length });
    const sent = memory.batches.flat().map((r) => String(r.fields.email));
    expect(sent).toHaveLength(10);
    expect(new Set(sent).size).toBe(10);
    expect(memory.held.size).toBe(10);
  });

  it('runs one run of a sync at a time, and takes over a lease whose worker died', async () => {
    await send(db, config, [person(1, 'pro')]);
    const { sync, refresh } = await setUp();
    await refresh();
    // A run that holds the sync and is still alive.
    const [alive] = await rows<{ id: number }>(
      db,
      sql`insert into sync_runs (sync_id, trigger, status) values (${sync.id}, 'manual', 'running')
          returning id::int`,
    );
    await db.execute(
      sql`update syncs set lease_run_id = ${alive!.id}, lease_until = now() + interval '1 minute'
          where id = ${sync.id}`,
    );
    await expect(runSync(db, deps, sync.id, 'manual')).rejects.toMatchObject({
      status: 409,
      extra: { runId: alive!.id },
    });
    // Its worker dies: the lease runs out.
    await db.execute(
      sql`update syncs set lease_until = now() - interval '1 second' where id = ${sync.id}`,
    );
    expect(await runSync(db, deps, sync.id, 'manual')).toMatchObject({ status: 'succeeded' });
    const [old] = await rows<{ status: string; error: string }>(
      db,
      sql`select status, error from sync_runs where id = ${alive!.id}`,
    );
    expect(old).toMatchObject({ status: 'failed', error: expect.stringMatching(/interrupted/) });
  });
});

describe(`mappings (${driver})`, () => {
  it('name only fields the destination offers, unless it creates new ones', async () => {
    const segment = await createSegment(
      db,
      admin,
      {
        name: 'm',
        description: '',
        type: 'dynamic',
        visibility: 'shared',
        rules: { trait: { name: 'x', op: 'exists' } },
      },
      { maxPerOwner: 50 },
    );
    const destination = await createDestination(db, deps, admin, {
      name: 'closed',
      plugin: 'memory',
      config: { apiKey: 'sk-live-9f8e7d' },
    });
    const mapping = [
      { from: 'identity:email', to: 'email' },
      { from: 'trait:nickname', to: 'nickname' },
    ];
    await expect(
      createSync(db, deps, admin, {
        segmentId: segment.id,
        destinationId: destination.id,
        mode: 'mirror',
        mapping,
      }),
    ).rejects.toMatchObject({ status: 400, errors: [{ field: 'mapping[1].to' }] });

    deps.registry.register({ ...memory.plugin, name: 'memory-open', acceptsNewFields: true });
    const open = await createDestination(db, deps, admin, {
      name: 'open',
      plugin: 'memory-open',
      config: { apiKey: 'sk-live-9f8e7d' },
    });
    await expect(
      createSync(db, deps, admin, {
        segmentId: segment.id,
        destinationId: open.id,
        mode: 'mirror',
        mapping,
      }),
    ).resolves.toMatchObject({ mapping });
  });
});

/** The ledger's rows of a sync by email: status, confirmed plan, and the plugin's state. */
async function ledger(syncId: string) {
  const found = await rows<{
    email: string;
    status: string;
    plan: string;
    state: Record<string, unknown> | null;
  }>(
    db,
    sql`select values->>'email' as email, status, values->>'plan' as plan, state
        from sync_state where sync_id = ${syncId} order by 1`,
  );
  return Object.fromEntries(found.map(({ email, ...rest }) => [email, rest]));
}

const sentRows = () => memory.batches.flat();
const rowOf = (email: string) => sentRows().find((r) => r.fields.email === email);

describe(`per-row destination state (${driver})`, () => {
  it('keeps what the plugin returns for a row and hands it back with its update and removal', async () => {
    await send(db, config, [person(1, 'pro'), person(2, 'pro')]);
    const { sync, refresh } = await setUp();
    await refresh();
    await runSync(db, deps, sync.id, 'manual');
    // An add carries no state; the destination's answer is kept.
    expect(sentRows().every((r) => r.action === 'add' && !('state' in r))).toBe(true);
    const first = await ledger(sync.id);
    const id1 = memory.records.get('p1@example.com')!;
    expect(first['p1@example.com']!.state).toEqual({ recordId: id1, updates: 0 });
    expect(first['p2@example.com']!.state).toEqual({
      recordId: memory.records.get('p2@example.com'),
      updates: 0,
    });

    // The plan shows the state an update will carry.
    await send(db, config, [person(1, 'team')]);
    await refresh();
    const plan = await planSync(db, deps, sync.id);
    expect(plan.samples).toEqual([
      {
        action: 'update',
        profileId: expect.any(String),
        fields: expect.objectContaining({ plan: 'team' }),
        state: { recordId: id1, updates: 0 },
      },
    ]);
    memory.batches.length = 0;
    expect(await runSync(db, deps, sync.id, 'manual')).toMatchObject({ updated: 1 });
    expect(rowOf('p1@example.com')).toMatchObject({
      action: 'update',
      state: { recordId: id1, updates: 0 },
    });
    expect((await ledger(sync.id))['p1@example.com']!.state).toEqual({
      recordId: id1,
      updates: 1,
    });

    // A result without state keeps the state the row had.
    memory.behaviour.omitState = true;
    await send(db, config, [person(1, 'pro')]);
    await refresh();
    memory.batches.length = 0;
    await runSync(db, deps, sync.id, 'manual');
    expect(rowOf('p1@example.com')!.state).toEqual({ recordId: id1, updates: 1 });
    expect((await ledger(sync.id))['p1@example.com']).toEqual({
      status: 'ok',
      plan: 'pro',
      state: { recordId: id1, updates: 1 },
    });
    memory.behaviour.omitState = false;

    // A refused update keeps the confirmed values and the state.
    memory.behaviour.reject.add('p1@example.com');
    await send(db, config, [person(1, 'team')]);
    await refresh();
    expect(await runSync(db, deps, sync.id, 'manual')).toMatchObject({ rejected: 1 });
    expect((await ledger(sync.id))['p1@example.com']).toEqual({
      status: 'ok',
      plan: 'pro',
      state: { recordId: id1, updates: 1 },
    });
    memory.behaviour.reject.clear();

    // The removal carries the state too; then the row is gone from the ledger.
    await send(db, config, [person(1, 'free')]);
    await refresh();
    memory.batches.length = 0;
    expect(await runSync(db, deps, sync.id, 'manual')).toMatchObject({ removed: 1 });
    expect(rowOf('p1@example.com')).toMatchObject({
      action: 'remove',
      state: { recordId: id1, updates: 1 },
    });
    expect(Object.keys(await ledger(sync.id))).toEqual(['p2@example.com']);
  });
});

describe(`sending rows again on request (${driver})`, () => {
  it('sends every rejected row again, even unchanged, counted as retried', async () => {
    await send(db, config, [person(1, 'pro'), person(2, 'pro'), person(3, 'pro')]);
    const { sync, refresh } = await setUp();
    await refresh();
    memory.behaviour.reject.add('p2@example.com').add('p3@example.com');
    expect(await runSync(db, deps, sync.id, 'manual')).toMatchObject({ added: 1, rejected: 2 });
    expect(await planSync(db, deps, sync.id)).toMatchObject({ add: 0, retry: 0, heldBack: 2 });

    // p2 was fixed at the destination; p3 still is not.
    memory.behaviour.reject.delete('p2@example.com');
    expect(await retryRejected(db, admin, sync.id)).toBe(2);
    expect(await retryRejected(db, admin, sync.id)).toBe(2); // still marked: the same two
    const plan = await planSync(db, deps, sync.id);
    expect(plan).toMatchObject({ add: 0, update: 0, retry: 2, heldBack: 0 });
    expect(plan.samples.map((s) => s.action)).toEqual(['add', 'add']);
    const [audit] = await rows<{ action: string; details: unknown }>(
      db,
      sql`select action, details from audit_log where subject_id = ${sync.id}
          and action = 'sync.retry_rejected' order by id desc limit 1`,
    );
    expect(audit).toEqual({ action: 'sync.retry_rejected', details: { marked: 2 } });

    memory.batches.length = 0;
    const run = await runSync(db, deps, sync.id, 'manual');
    expect(run).toMatchObject({ status: 'partial', added: 0, retried: 1, rejected: 1 });
    expect(sentRows().map((r) => [r.fields.email, r.action])).toEqual([
      ['p2@example.com', 'add'],
      ['p3@example.com', 'add'],
    ]);
    expect(memory.held.has('p2@example.com')).toBe(true);
    expect(await ledger(sync.id)).toMatchObject({
      'p2@example.com': { status: 'ok' },
      'p3@example.com': { status: 'rejected' },
    });

    // Refused again, p3 waits for a change (or another request) once more.
    memory.batches.length = 0;
    expect(await runSync(db, deps, sync.id, 'manual')).toMatchObject({
      status: 'succeeded',
      retried: 0,
      rejected: 0,
    });
    expect(memory.batches).toEqual([]);
    memory.behaviour.reject.clear();
    expect(await retryRejected(db, admin, sync.id)).toBe(1);
    expect(await runSync(db, deps, sync.id, 'manual')).toMatchObject({
      status: 'succeeded',
      retried: 1,
    });
    expect(await retryRejected(db, admin, sync.id)).toBe(0);
  });

  it('resends everything to a destination emptied by hand, removing only what the hub added', async () => {
    await send(
      db,
      config,
      [1, 2, 3, 4, 5].map((n) => person(n, 'pro')),
    );
    const { sync, refresh } = await setUp('mirror');
    await refresh();
    memory.behaviour.reject.add('p5@example.com');
    expect(await runSync(db, deps, sync.id, 'manual')).toMatchObject({ added: 4, rejected: 1 });
    const before = await ledger(sync.id);

    // Someone empties the list, then puts a contact of their own in it.
    memory.empty();
    memory.held.set('own@example.com', { email: 'own@example.com' });
    memory.behaviour.reject.clear();
    await expect(resync(db, marketer, sync.id)).rejects.toMatchObject({ status: 403 });
    expect(await resync(db, admin, sync.id)).toBe(5);
    // Meanwhile p4 leaves and p6 enters.
    await send(db, config, [person(4, 'free'), person(6, 'team')]);
    await refresh();
    expect(await planSync(db, deps, sync.id)).toMatchObject({
      add: 1,
      update: 3,
      retry: 1,
      remove: 1,
      heldBack: 0,
    });

    memory.batches.length = 0;
    const run = await runSync(db, deps, sync.id, 'manual');
    expect(run).toMatchObject({
      status: 'succeeded',
      added: 1,
      updated: 3,
      retried: 1,
      removed: 1,
    });
    expect(
      sentRows()
        .map((r) => `${String(r.fields.email)} ${r.action}`)
        .sort(),
    ).toEqual([
      'p1@example.com update',
      'p2@example.com update',
      'p3@example.com update',
      'p4@example.com remove',
      'p5@example.com add',
      'p6@example.com add',
    ]);
    // Updates carry the state the ledger kept from before the list was emptied.
    expect(rowOf('p1@example.com')!.state).toEqual(before['p1@example.com']!.state);
    expect([...memory.held.keys()].sort()).toEqual(
      ['own', 'p1', 'p2', 'p3', 'p5', 'p6'].map((p) => `${p}@example.com`),
    );
    expect(Object.values(await ledger(sync.id)).map((r) => r.status)).toEqual(Array(5).fill('ok'));
    memory.batches.length = 0;
    await runSync(db, deps, sync.id, 'manual');
    expect(memory.batches).toEqual([]);
  });

  it('resends current members in upsert mode, never removing', async () => {
    await send(db, config, [person(1, 'pro'), person(2, 'pro')]);
    const { sync, refresh } = await setUp('upsert');
    await refresh();
    await runSync(db, deps, sync.id, 'manual');
    await send(db, config, [person(2, 'free')]);
    await refresh();
    await runSync(db, deps, sync.id, 'manual');
    memory.empty();
    expect(await resync(db, admin, sync.id)).toBe(2);
    expect(await planSync(db, deps, sync.id)).toMatchObject({ add: 0, update: 1, remove: 0 });
    memory.batches.length = 0;
    expect(await runSync(db, deps, sync.id, 'manual')).toMatchObject({
      status: 'succeeded',
      updated: 1,
      removed: 0,
    });
    expect(sentRows().map((r) => `${String(r.fields.email)} ${r.action}`)).toEqual([
      'p1@example.com update',
    ]);
    expect([...memory.held.keys()]).toEqual(['p1@example.com']);
  });
});

describe(`prepare (${driver})`, () => {
  it('is retried while the service is busy, waiting as long as it asks', async () => {
    await send(db, config, [person(1, 'pro')]);
    const { sync, refresh } = await setUp();
    await refresh();
    memory.behaviour.prepareTransientFailures = 2;
    memory.behaviour.retryAfterMs = 200;
    const started = Date.now();
    expect(await runSync(db, deps, sync.id, 'manual')).toMatchObject({
      status: 'succeeded',
      added: 1,
    });
    const took = Date.now() - started;
    // Two waits of 200 ms, not the 1 s and 2 s of the default backoff.
    expect(took).toBeGreaterThanOrEqual(400);
    expect(took).toBeLessThan(3000);
    expect(memory.prepared).toEqual([sync.id]);

    // A service that stays busy fails the run, saying so.
    memory.behaviour.prepareTransientFailures = 10;
    memory.behaviour.retryAfterMs = 5;
    const failed = await runSync(db, deps, sync.id, 'manual');
    expect(failed).toMatchObject({ status: 'failed', error: 'busy' });
  });

  it('fails the run on a configuration error, with its message, sending nothing', async () => {
    await send(db, config, [person(1, 'pro')]);
    const { sync, refresh } = await setUp();
    await refresh();
    memory.behaviour.prepareConfigError = true;
    const run = await runSync(db, deps, sync.id, 'manual');
    expect(run).toMatchObject({
      status: 'failed',
      error: 'key ******** may not write to this list',
    });
    expect(memory.batches).toEqual([]);
    expect(memory.prepared).toEqual([]);
  });

  it('starts no more calls in any one second than the plugin declares', async () => {
    const calls: number[] = [];
    const paced: typeof memory.plugin = {
      ...memory.plugin,
      name: 'memory-paced',
      limits: { batchSize: 1, concurrency: 10, callsPerSecond: 5 },
      // A slow set-up, so the batches come most of a second after the first call.
      prepare: async (input, ctx) => {
        calls.push(performance.now());
        await new Promise((resolve) => setTimeout(resolve, 900));
        return memory.plugin.prepare!(input, ctx);
      },
      sync: (input, ctx) => {
        calls.push(performance.now());
        return memory.plugin.sync(input, ctx);
      },
    };
    deps.registry.register(paced);
    await send(
      db,
      config,
      [1, 2, 3, 4, 5, 6, 7, 8].map((n) => person(n, 'pro')),
    );
    const { segment, refresh } = await setUp();
    await refresh();
    const destination = await createDestination(db, deps, admin, {
      name: 'paced',
      plugin: 'memory-paced',
      config: { apiKey: 'sk-live-9f8e7d' },
    });
    const sync = await createSync(db, deps, admin, {
      segmentId: segment.id,
      destinationId: destination.id,
      mode: 'mirror',
      mapping: [{ from: 'identity:email', to: 'email' }],
    });
    expect(await runSync(db, deps, sync.id, 'manual')).toMatchObject({
      status: 'succeeded',
      added: 8,
    });
    expect(calls).toHaveLength(9);
    // The sixth call after any call starts at least a second later (a millisecond for the clock).
    for (let i = 0; i + 5 < calls.length; i++) {
      expect(calls[i + 5]! - calls[i]!).toBeGreaterThanOrEqual(999);
    }
  });

  it("waits its turn in the limit key's queue, behind the batches of other syncs", async () => {
    deps.registry.register({
      ...memory.plugin,
      name: 'memory-one',
      limits: { batchSize: 3, concurrency: 1 },
      limitKey: (c: { apiKey: string }) => c.apiKey,
    });
    await send(db, config, [person(1, 'pro')]);
    const { segment, refresh } = await setUp();
    await refresh();
    const destination = await createDestination(db, deps, admin, {
      name: 'one connection',
      plugin: 'memory-one',
      config: { apiKey: 'sk-live-9f8e7d' },
    });
    const [a, b] = await Promise.all(
      [0, 1].map(() =>
        createSync(db, deps, admin, {
          segmentId: segment.id,
          destinationId: destination.id,
          mode: 'mirror',
          mapping: [{ from: 'identity:email', to: 'email' }],
        }),
      ),
    );
    let open!: () => void;
    memory.behaviour.gate = new Promise<void>((resolve) => (open = resolve));
    const first = runSync(db, deps, a!.id, 'manual');
    for (let i = 0; i < 500 && !memory.behaviour.waiting; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(memory.behaviour.waiting).toBe(true);
    const second = runSync(db, deps, b!.id, 'manual');
    await new Promise((r) => setTimeout(r, 300));
    // The one connection is taken by the first sync's batch: the second has not prepared.
    expect(memory.prepared).toEqual([a!.id]);
    memory.behaviour.gate = null;
    open();
    expect(await first).toMatchObject({ status: 'succeeded' });
    expect(await second).toMatchObject({ status: 'succeeded' });
    expect(memory.prepared).toEqual([a!.id, b!.id]);
  });
});
