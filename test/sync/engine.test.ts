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
import { createSync } from '../../src/sync/store.ts';
import { driver, testDatabase } from '../support/db.ts';
import { memoryDestination } from '../support/destinations.ts';
import { send } from '../support/ingest.ts';

let database: Database;
let db: Db;
const config = testConfig();
const admin: Principal = { tokenId: uuidv7(), name: 'admin', role: 'admin' };
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
      destinations, syncs, sync_state, sync_runs, sync_row_errors restart identity`,
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
