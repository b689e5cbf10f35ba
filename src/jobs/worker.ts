/**
 * The worker: everything the hub does in the background.
 * - The refresh loop folds new events into computed traits and then re-evaluates dynamic
 *   segments for the profiles they touched, a few times a second (both steps are
 *   cursor-driven, so several workers may run: one does each step at a time, and a crash
 *   only means the step is done again).
 * - A job queue (pg-boss, in the hub's own database, PGlite included) runs full segment
 *   computations: requested by the API, and due by each segment's cron schedule, checked
 *   every minute; and the RFM scores, on `AUDIENCEHUB_RFM_SCHEDULE` (daily by default),
 *   followed by the segments that use them.
 * - Import runs of source streams: requested by the API, and due by each source's cron
 *   schedule, checked every minute together with the overdue-source alerts.
 */
import PgBoss from 'pg-boss';
import { sql } from 'drizzle-orm';
import type { HubConfig } from '../config.ts';
import { json, rows, type Database, type Db } from '../db/index.ts';
import type { Logger } from '../log.ts';
import { foldNewEvents } from '../profiles/fold.ts';
import { computeIncrementally, computeSegment, type RunTrigger } from '../segments/compute.ts';
import { alertOverdueSources, type AlertDeps } from '../imports/alerts.ts';
import { importDepsOf, type ImportDeps } from '../imports/deps.ts';
import { runImport, type ImportTrigger } from '../imports/run.ts';
import { enabledStreams } from '../imports/store.ts';
import { computeRfm } from '../segments/rfm.ts';
import { nextScheduledRun } from '../segments/store.ts';
import { runSync, type SyncDeps, type SyncTrigger } from '../sync/engine.ts';
import type { SegmentJobs } from './index.ts';

const QUEUES = {
  compute: 'segment-compute',
  schedules: 'segment-schedules',
  rfm: 'rfm-scores',
  sync: 'sync-run',
  imports: 'import-run',
} as const;

/** Auto-sync waits this long after a membership change, so a burst of changes is one run. */
const AUTO_SYNC_DEBOUNCE_SECONDS = 5;

interface ComputeJob {
  segmentId: string;
  trigger: RunTrigger;
}

interface SyncJob {
  syncId: string;
  trigger: SyncTrigger;
}

interface ImportJob {
  sourceId: string;
  stream: string;
  trigger: ImportTrigger;
}

/** A running worker. */
export interface Worker {
  /** Queue segment computations on this worker's queue. */
  jobs: SegmentJobs;
  /** Finish what is in progress, then stop. */
  stop(): Promise<void>;
}

export interface WorkerOptions {
  /** Also run the queued jobs here; false only queues them (for processes serving the API only). */
  runJobs?: boolean;
  /** Also run the refresh loop here. */
  refresh?: boolean;
  /** Plugins and secrets for running syncs; without them, sync jobs wait for a worker that has them. */
  sync?: SyncDeps;
  /**
   * Connectors and secrets for running imports; when absent, built on the first import from
   * `sync` (its box and log) with the bundled and installed connectors. Without either, import
   * jobs wait for a worker that has them.
   */
  imports?: ImportDeps;
}

/**
 * Start the background work on an open database.
 *
 * @example
 * const worker = await startWorker(database, config, log);
 * const app = createApp({ db: database.db, config, log, jobs: worker.jobs });
 * await worker.stop();
 */
export async function startWorker(
  database: Database,
  config: HubConfig,
  log: Logger,
  options: WorkerOptions = {},
): Promise<Worker> {
  const { db } = database;
  const runJobs = options.runJobs ?? true;
  const boss = new PgBoss({
    ...(database.driver === 'postgres' && config.databaseUrl
      ? { connectionString: config.databaseUrl, max: 4 }
      : {
          db: {
            executeSql: (text: string, values: unknown[]) => database.executeSql(text, values),
          },
        }),
    schema: 'pgboss',
    // Only a process running jobs maintains the queue and keeps the cron.
    supervise: runJobs,
    schedule: runJobs,
  });
  boss.on('error', (error: Error) => log.error('job queue error', { error: error.message }));
  await boss.start();
  await boss.createQueue(QUEUES.compute, {
    name: QUEUES.compute,
    // At most one computation of a segment queued and one running.
    policy: 'stately',
    retryLimit: 2,
    retryDelay: 30,
    expireInMinutes: 30,
  });
  await boss.createQueue(QUEUES.schedules, { name: QUEUES.schedules, policy: 'singleton' });
  await boss.createQueue(QUEUES.sync, {
    name: QUEUES.sync,
    // One run of a sync queued and one running; a change arriving meanwhile joins the queued one.
    policy: 'stately',
    retryLimit: 5,
    retryDelay: 15,
    retryBackoff: true,
    expireInMinutes: 120,
  });

  await boss.createQueue(QUEUES.imports, {
    name: QUEUES.imports,
    // One run of a stream queued and one running; a request meanwhile joins the queued one.
    policy: 'stately',
    // A run that fails is recorded as failed; the job is retried for a stream held by another
    // worker's run, and for a service that was down (a TransientError).
    retryLimit: 3,
    retryDelay: 60,
    expireInMinutes: 240,
  });

  const jobs: SegmentJobs = {
    async requestComputation(segmentId, trigger) {
      await boss.send(QUEUES.compute, { segmentId, trigger } satisfies ComputeJob, {
        singletonKey: segmentId,
      });
      return null;
    },
    async requestSyncRun(syncId, trigger) {
      await boss.send(QUEUES.sync, { syncId, trigger } satisfies SyncJob, {
        singletonKey: syncId,
        ...(trigger === 'auto' ? { startAfter: AUTO_SYNC_DEBOUNCE_SECONDS } : {}),
      });
    },
    async requestImportRun(sourceId, stream, trigger) {
      await boss.send(QUEUES.imports, { sourceId, stream, trigger } satisfies ImportJob, {
        singletonKey: `${sourceId}:${stream}`,
      });
    },
  };
  const importContext = { imports: options.imports, sync: options.sync, config };
  const alertDeps: AlertDeps | undefined = options.imports ?? options.sync;
  const afterMembershipChange = (segmentIds: string[]) => queueAutoSyncs(db, jobs, segmentIds);

  if (runJobs) {
    await boss.work<ComputeJob>(
      QUEUES.compute,
      { pollingIntervalSeconds: 0.5, batchSize: 1 },
      async ([job]) => {
        const { segmentId, trigger } = job!.data;
        try {
          const run = await computeSegment(db, segmentId, trigger);
          log.info('segment computed', { segmentId, runId: run.id, size: run.size, trigger });
          if ((run.entered ?? 0) + (run.exited ?? 0) > 0) await afterMembershipChange([segmentId]);
        } catch (error) {
          // A segment deleted since the job was queued has nothing left to compute.
          if ((error as { status?: number }).status === 404) return;
          throw error;
        }
      },
    );
    await boss.work(QUEUES.schedules, { pollingIntervalSeconds: 5 }, async () => {
      const queued = await queueDueSchedules(db, jobs);
      const syncs = await queueDueSyncs(db, jobs);
      const imports = await queueDueImports(db, jobs);
      if (queued + syncs + imports > 0) {
        log.info('scheduled work queued', { segments: queued, syncs, imports });
      }
      if (alertDeps) await alertOverdueSources(db, alertDeps);
    });
    if (options.imports || options.sync) {
      await boss.work<ImportJob>(
        QUEUES.imports,
        { pollingIntervalSeconds: 1, batchSize: 1 },
        async ([job]) => {
          const { sourceId, stream, trigger } = job!.data;
          try {
            const deps = await importDepsOf(importContext);
            // A service that is down fails the run; the queue tries again a minute later.
            const run = await runImport(db, deps, config, sourceId, stream, trigger, {
              throwTransient: true,
            });
            log.info('import run finished', {
              sourceId,
              stream,
              runId: run.id,
              status: run.status,
            });
            // New purchases move RFM scores: recompute them (once for runs ending together)
            // when a segment uses them, rather than wait for the daily schedule.
            if (run.rowsImported > 0 && (await usesRfm(db))) {
              await boss.send(QUEUES.rfm, {}, { startAfter: RFM_AFTER_IMPORT_SECONDS });
            }
          } catch (error) {
            // Deleted or unmapped since it was queued: nothing to do. Running elsewhere: retried.
            const status = (error as { status?: number; code?: string }).status;
            const code = (error as { code?: string }).code;
            if (status === 404 || code === 'stream-not-mapped') return;
            throw error;
          }
        },
      );
    }
    if (options.sync) {
      const deps = options.sync;
      await boss.work<SyncJob>(
        QUEUES.sync,
        { pollingIntervalSeconds: 1, batchSize: 1 },
        async ([job]) => {
          const { syncId, trigger } = job!.data;
          try {
            const run = await runSync(db, deps, syncId, trigger);
            log.info('sync run finished', { syncId, runId: run.id, status: run.status });
          } catch (error) {
            // Deleted since it was queued: nothing to do. Running elsewhere: retried later.
            if ((error as { status?: number }).status === 404) return;
            throw error;
          }
        },
      );
    }
    await boss.schedule(QUEUES.schedules, '* * * * *', {}, { tz: 'UTC' });
    await boss.createQueue(QUEUES.rfm, { name: QUEUES.rfm, policy: 'singleton' });
    await boss.work(QUEUES.rfm, { pollingIntervalSeconds: 5 }, async () => {
      const result = await refreshRfmScores(db, jobs);
      log.info('RFM scores computed', { ...result });
    });
    await boss.schedule(QUEUES.rfm, config.rfmSchedule, {}, { tz: 'UTC' });
  }

  const refresh =
    (options.refresh ?? true)
      ? startRefresh(
          db,
          log,
          { intervalMs: config.foldIntervalMs, maxIntervalMs: config.foldMaxIntervalMs },
          afterMembershipChange,
        )
      : null;
  return {
    jobs,
    async stop() {
      await refresh?.stop();
      await boss.stop({ graceful: true, wait: true, timeout: 10_000 });
    },
  };
}

/**
 * Queue a computation for every dynamic segment whose schedule has fallen due, and set when it
 * falls due next. Returns how many were queued.
 */
export async function queueDueSchedules(
  db: Db,
  jobs: SegmentJobs,
  now = new Date(),
): Promise<number> {
  const due = await db.transaction(async (tx) => {
    const found = await rows<{ id: string; schedule: string }>(
      tx,
      sql`select id, schedule from segments
          where type = 'dynamic' and schedule is not null
            and next_run_at <= ${now.toISOString()}::timestamptz
          for update skip locked`,
    );
    for (const s of found) {
      await tx.execute(
        sql`update segments set next_run_at = ${nextScheduledRun(s.schedule, now).toISOString()}
            where id = ${s.id}`,
      );
    }
    return found;
  });
  for (const s of due) await jobs.requestComputation(s.id, 'schedule');
  return due.length;
}

/**
 * Score every purchaser's recency, frequency and monetary value as of now, then queue a full
 * computation of each dynamic segment whose rules use the scores (they changed for everyone).
 */
export async function refreshRfmScores(
  db: Db,
  jobs: SegmentJobs,
  now = new Date(),
): Promise<{ scored: number; segments: number }> {
  const scored = await computeRfm(db, { asOf: now });
  const dependent = await rows<{ id: string }>(db, RFM_SEGMENTS);
  for (const s of dependent) await jobs.requestComputation(s.id, 'schedule');
  return { scored, segments: dependent.length };
}

/** Dynamic segments whose rules use RFM scores. */
const RFM_SEGMENTS = sql`select id from segments
  where type = 'dynamic' and rules is not null
    and rules::text ~ '"rfm_(recency|frequency|monetary)"'`;

const usesRfm = async (db: Db) =>
  (await rows<{ id: string }>(db, sql`${RFM_SEGMENTS} limit 1`)).length > 0;

/** How long after an import the RFM scores are recomputed, so that imports ending together share it. */
const RFM_AFTER_IMPORT_SECONDS = 10;

/** Queue a run of every auto-sync sending one of `segmentIds` (debounced by the queue). */
export async function queueAutoSyncs(
  db: Db,
  jobs: SegmentJobs,
  segmentIds: string[],
): Promise<number> {
  if (segmentIds.length === 0 || !jobs.requestSyncRun) return 0;
  const due = await rows<{ id: string }>(
    db,
    sql`select id from syncs where auto_sync
          and segment_id in (select x::uuid from json_array_elements_text(${json(segmentIds)}) x)`,
  );
  for (const s of due) await jobs.requestSyncRun(s.id, 'auto');
  return due.length;
}

/**
 * The rows of a scheduled table (`syncs`, `sources`) whose schedule has fallen due, each moved
 * on to when it falls due next in the same transaction: one worker claims each.
 */
async function claimDue(db: Db, table: 'syncs' | 'sources', now: Date) {
  return db.transaction(async (tx) => {
    const found = await rows<{ id: string; schedule: string }>(
      tx,
      sql`select id, schedule from ${sql.identifier(table)}
          where schedule is not null and next_run_at <= ${now.toISOString()}::timestamptz
          for update skip locked`,
    );
    for (const s of found) {
      await tx.execute(
        sql`update ${sql.identifier(table)}
            set next_run_at = ${nextScheduledRun(s.schedule, now).toISOString()}
            where id = ${s.id}`,
      );
    }
    return found;
  });
}

/** Queue every sync whose schedule has fallen due, and set when it falls due next. */
export async function queueDueSyncs(db: Db, jobs: SegmentJobs, now = new Date()): Promise<number> {
  if (!jobs.requestSyncRun) return 0;
  const due = await claimDue(db, 'syncs', now);
  for (const s of due) await jobs.requestSyncRun!(s.id, 'schedule');
  return due.length;
}

/**
 * Queue an import of every enabled stream of each source whose schedule has fallen due, and
 * set when it falls due next. Returns how many runs were queued.
 */
export async function queueDueImports(
  db: Db,
  jobs: SegmentJobs,
  now = new Date(),
): Promise<number> {
  if (!jobs.requestImportRun) return 0;
  const due = await claimDue(db, 'sources', now);
  let queued = 0;
  for (const s of due) {
    for (const stream of await enabledStreams(db, s.id)) {
      await jobs.requestImportRun(s.id, stream, 'schedule');
      queued++;
    }
  }
  return queued;
}

/**
 * How long the refresh loop rests after a round that caught up: at least `intervalMs`, and
 * three times the round's own length after a long round, so that folding takes at most a
 * quarter of the time; never more than `maxMs`.
 *
 * A round is long when ingestion is busy. Resting longer then gives the next fold a bigger
 * window, where a profile seen several times is updated once, and leaves the database to the
 * transactions that store events. With light traffic a round takes a few milliseconds and the
 * loop rests `intervalMs`, so computed traits and segments stay as fresh as before.
 *
 * @example
 * refreshPause(20, 250, 1000); // 250: a short round
 * refreshPause(300, 250, 1000); // 900: busy, so the next window is bigger
 */
export function refreshPause(roundMs: number, intervalMs: number, maxMs: number): number {
  return Math.max(intervalMs, Math.min(maxMs, 3 * roundMs));
}

/** The refresh loop: fold, then compute incrementally; again at once while work is waiting. */
export function startRefresh(
  db: Db,
  log: Logger,
  { intervalMs, maxIntervalMs }: { intervalMs: number; maxIntervalMs: number },
  afterMembershipChange: (segmentIds: string[]) => Promise<unknown> = async () => {},
) {
  let stopped = false;
  let wake: (() => void) | undefined;
  let timer: NodeJS.Timeout | undefined;
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      wake = resolve;
      timer = setTimeout(resolve, ms);
    });
  const run = async () => {
    while (!stopped) {
      const started = performance.now();
      try {
        const folded = await foldNewEvents(db);
        const computed = await computeIncrementally(db);
        if (computed.changedSegments.length > 0) {
          await afterMembershipChange(computed.changedSegments);
        }
        if (!folded.more && !computed.more) {
          const roundMs = performance.now() - started;
          const restMs = refreshPause(roundMs, intervalMs, maxIntervalMs);
          log.debug('refresh caught up', { events: folded.events, roundMs, restMs });
          await pause(restMs);
        }
      } catch (error) {
        log.error('refreshing computed traits and segments failed; retrying', {
          error: error instanceof Error ? error.message : String(error),
        });
        await pause(Math.max(intervalMs, 1000));
      }
    }
  };
  const running = run();
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      wake?.();
      await running;
    },
  };
}
