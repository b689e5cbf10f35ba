import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import type { Principal } from '../../src/auth/credentials.ts';
import { testConfig, type HubConfig } from '../../src/config.ts';
import { rows, type Database, type Db } from '../../src/db/index.ts';
import { uuidv7 } from '../../src/ids.ts';
import type { SegmentJobs } from '../../src/jobs/index.ts';
import {
  queueDueSchedules,
  queueDueSyncs,
  refreshPause,
  refreshRfmScores,
  startWorker,
  type Worker,
} from '../../src/jobs/worker.ts';
import { silentLogger } from '../../src/log.ts';
import { computeSegment, listRuns, type RunTrigger } from '../../src/segments/compute.ts';
import { createSegment } from '../../src/segments/store.ts';
import { secretBox } from '../../src/destinations/secrets.ts';
import { createDestination } from '../../src/destinations/store.ts';
import type { SyncDeps } from '../../src/sync/engine.ts';
import { createRegistry } from '../../src/sync/registry.ts';
import { createSync, setAutoSync } from '../../src/sync/store.ts';
import { databaseUrlOf, driver, testDatabase } from '../support/db.ts';
import { until } from '../support/wait.ts';
import { memoryDestination } from '../support/destinations.ts';
import { profileOf, send } from '../support/ingest.ts';

let database: Database;
let db: Db;
let config: HubConfig;
let worker: Worker;
let syncDeps: SyncDeps;
const memory = memoryDestination();
const owner: Principal = { tokenId: uuidv7(), name: 'marketer', role: 'marketer' };

beforeAll(async () => {
  database = await testDatabase();
  db = database.db;
  config = testConfig({ foldIntervalMs: 50, databaseUrl: await databaseUrlOf(db) });
  const registry = createRegistry();
  registry.register(memory.plugin);
  syncDeps = { registry, box: secretBox(randomBytes(32)), log: silentLogger };
  worker = await startWorker(database, config, silentLogger, { sync: syncDeps });
});
afterAll(async () => {
  await worker.stop();
  await database.close();
});

const newSegment = (rules: unknown, schedule: string | null = null) =>
  createSegment(
    db,
    owner,
    {
      name: `s-${uuidv7()}`,
      description: '',
      type: 'dynamic',
      visibility: 'shared',
      rules,
      schedule,
    },
    { maxPerOwner: 50 },
  );

const isMember = async (segmentId: string, profileId: string | undefined) => {
  if (!profileId) return false;
  const [row] = await rows<{ n: number }>(
    db,
    sql`select count(*)::int as n from segment_members
        where segment_id = ${segmentId} and profile_id = ${profileId}`,
  );
  return row!.n === 1;
};

describe(`the worker (${driver})`, () => {
  it('brings membership up to date within 2 seconds of the data arriving', async () => {
    const s = await newSegment({
      all: [
        { computed: { name: 'purchase_count', op: 'gte', value: 2 } },
        { trait: { name: 'plan', op: 'eq', value: 'pro' } },
      ],
    });
    await computeSegment(db, s.id, 'create');

    const started = Date.now();
    await send(db, config, [
      { type: 'identify', userId: 'fast', traits: { plan: 'pro' } },
      { type: 'track', userId: 'fast', event: 'purchase', properties: { value: 3 } },
      { type: 'track', userId: 'fast', event: 'purchase', properties: { value: 4 } },
    ]);
    const id = await profileOf(db, 'user_id', 'fast');
    const joined = await until(
      () => isMember(s.id, id),
      (yes) => yes,
    );
    const elapsed = Date.now() - started;
    expect(joined).toBe(true);
    expect(elapsed).toBeLessThan(2000);
    const [run] = await listRuns(db, s.id);
    expect(run).toMatchObject({ kind: 'incremental', trigger: 'data', entered: 1 });

    // And out again when the data says so.
    await send(db, config, [{ type: 'identify', userId: 'fast', traits: { plan: 'free' } }]);
    expect(
      await until(
        () => isMember(s.id, id),
        (yes) => !yes,
      ),
    ).toBe(false);
  });

  it('runs requested computations from the job queue', async () => {
    await send(db, config, [{ type: 'identify', userId: 'queued', traits: { tier: 'gold' } }]);
    const s = await newSegment({ trait: { name: 'tier', op: 'eq', value: 'gold' } });
    expect(await worker.jobs.requestComputation(s.id, 'manual')).toBeNull();
    const runs = await until(
      () => listRuns(db, s.id),
      (found) => found.some((r) => r.trigger === 'manual' && r.status === 'succeeded'),
      20_000,
    );
    expect(runs.find((r) => r.trigger === 'manual')).toMatchObject({ kind: 'full', size: 1 });
    expect(await isMember(s.id, await profileOf(db, 'user_id', 'queued'))).toBe(true);
  });
});

describe(`schedules (${driver})`, () => {
  it('queues each due segment once and moves its next run past now', async () => {
    const due = await newSegment({ trait: { name: 'x', op: 'exists' } }, '*/15 * * * *');
    const later = await newSegment({ trait: { name: 'x', op: 'exists' } }, '0 3 * * *');
    const now = new Date('2030-01-01T10:07:00Z');
    await db.execute(
      sql`update segments set next_run_at = ${'2030-01-01T10:00:00Z'} where id = ${due.id}`,
    );
    await db.execute(
      sql`update segments set next_run_at = ${'2030-01-02T03:00:00Z'} where id = ${later.id}`,
    );
    const requested: [string, RunTrigger][] = [];
    const jobs: SegmentJobs = {
      requestComputation: async (id, trigger) => {
        requested.push([id, trigger]);
        return null;
      },
    };
    expect(await queueDueSchedules(db, jobs, now)).toBe(1);
    expect(requested).toEqual([[due.id, 'schedule']]);
    const [next] = await rows<{ next_run_at: Date }>(
      db,
      sql`select next_run_at from segments where id = ${due.id}`,
    );
    expect(new Date(next!.next_run_at).toISOString()).toBe('2030-01-01T10:15:00.000Z');
    expect(await queueDueSchedules(db, jobs, now)).toBe(0);
  });

  it('rejects a schedule that is not cron, naming the field', async () => {
    await expect(
      newSegment({ trait: { name: 'x', op: 'exists' } }, 'every day'),
    ).rejects.toMatchObject({ status: 400, errors: [{ field: 'schedule' }] });
  });
});

describe(`RFM scores (${driver})`, () => {
  it('scores the purchasers, then queues the segments that use the scores', async () => {
    await send(db, config, [
      { type: 'track', userId: 'rfm-1', event: 'purchase', properties: { value: 10 } },
      { type: 'track', userId: 'rfm-2', event: 'purchase', properties: { value: 99 } },
    ]);
    const [purchasers] = await rows<{ n: number }>(
      db,
      sql`select count(distinct profile_id)::int as n from events where revenue is not null`,
    );
    const usesScores = await newSegment({
      computed: { name: 'rfm_monetary', op: 'gte', value: 4 },
    });
    await newSegment({ trait: { name: 'x', op: 'exists' } });
    const requested: string[] = [];
    const jobs: SegmentJobs = {
      requestComputation: async (id) => {
        requested.push(id);
        return null;
      },
    };
    const result = await refreshRfmScores(db, jobs);
    expect(result).toEqual({ scored: purchasers!.n, segments: 1 });
    expect(requested).toEqual([usesScores.id]);
    const scores = await rows<{ m: number }>(
      db,
      sql`select p.rfm_monetary as m from profiles p
          join identities i on i.profile_id = p.id and i.type = 'user_id' and i.value = 'rfm-2'`,
    );
    expect(scores).toEqual([{ m: 5 }]);
  });
});

describe(`auto-sync (${driver})`, () => {
  it('sends new members to the destination soon after they enter the segment', async () => {
    const admin = { ...owner, role: 'admin' as const };
    const segment = await newSegment({ trait: { name: 'newsletter', op: 'eq', value: true } });
    await computeSegment(db, segment.id, 'create');
    const destination = await createDestination(db, syncDeps, admin, {
      name: 'memory',
      plugin: 'memory',
      config: { apiKey: 'sk-test-0001' },
    });
    const sync = await createSync(db, syncDeps, admin, {
      segmentId: segment.id,
      destinationId: destination.id,
      mode: 'mirror',
      mapping: [{ from: 'trait:email', to: 'email' }],
    });
    await setAutoSync(db, admin, sync.id, true);

    await send(db, config, [
      {
        type: 'identify',
        userId: 'reader',
        traits: { email: 'reader@example.com', newsletter: true },
      },
    ]);
    // The refresh loop puts the reader in the segment, the change queues the sync (after its
    // debounce), and the worker runs it. The destination holds the row before the engine
    // records the run as finished: wait for the run.
    const run = await until(
      async () =>
        (
          await rows<{ trigger: string; status: string; added: number }>(
            db,
            sql`select trigger, status, added from sync_runs
                where sync_id = ${sync.id} and status <> 'running'`,
          )
        )[0],
      (found) => found !== undefined,
      30_000,
    );
    expect(memory.held.has('reader@example.com')).toBe(true);
    expect(run).toEqual({ trigger: 'auto', status: 'succeeded', added: 1 });
  }, 60_000);
});

describe(`sync schedules (${driver})`, () => {
  it('queues each due sync once and moves its next run past now', async () => {
    const admin = { ...owner, role: 'admin' as const };
    const segment = await newSegment({ trait: { name: 'x', op: 'exists' } });
    const destination = await createDestination(db, syncDeps, admin, {
      name: `scheduled-${uuidv7()}`,
      plugin: 'memory',
      config: { apiKey: 'sk-test-0002' },
    });
    const sync = await createSync(db, syncDeps, admin, {
      segmentId: segment.id,
      destinationId: destination.id,
      mode: 'mirror',
      mapping: [{ from: 'trait:email', to: 'email' }],
      schedule: '0 * * * *',
    });
    await db.execute(
      sql`update syncs set next_run_at = ${'2030-01-01T10:00:00Z'} where id = ${sync.id}`,
    );
    const requested: [string, string][] = [];
    const jobs: SegmentJobs = {
      requestComputation: async () => null,
      requestSyncRun: async (id, trigger) => void requested.push([id, trigger]),
    };
    const now = new Date('2030-01-01T10:20:00Z');
    expect(await queueDueSyncs(db, jobs, now)).toBe(1);
    expect(requested).toEqual([[sync.id, 'schedule']]);
    const [next] = await rows<{ next_run_at: Date }>(
      db,
      sql`select next_run_at from syncs where id = ${sync.id}`,
    );
    expect(new Date(next!.next_run_at).toISOString()).toBe('2030-01-01T11:00:00.000Z');
    expect(await queueDueSyncs(db, jobs, now)).toBe(0);
  });
});

describe('the refresh loop’s rest after a round', () => {
  it('rests the interval after a short round, so light traffic is folded as soon as before', () => {
    expect(refreshPause(0, 250, 1000)).toBe(250);
    expect(refreshPause(80, 250, 1000)).toBe(250);
  });

  it('rests three times a long round, so folding takes at most a quarter of the time', () => {
    expect(refreshPause(100, 250, 1000)).toBe(300);
    expect(refreshPause(300, 250, 1000)).toBe(900);
  });

  it('never rests longer than the most it may, nor less than the interval', () => {
    expect(refreshPause(5000, 250, 1000)).toBe(1000);
    // A longest rest set below the interval leaves the interval in charge.
    expect(refreshPause(5000, 2000, 1000)).toBe(2000);
  });
});
