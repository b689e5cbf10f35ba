/**
 * The sync engine: sends a segment's members to a destination, only the difference against
 * what the destination last confirmed (the ledger in `sync_state`):
 * - a member with no ledger row is **added**; one whose mapped values changed is **updated**;
 *   one the destination rejected is tried again only when its values change (or on request);
 * - in mirror mode, a profile in the ledger (so added by this hub) that left the segment is
 *   **removed** — removal never touches anything this hub did not add.
 * A ledger row's status is `ok` (the destination holds it), `rejected` (refused, never there),
 * or one of two marks asking the next run to send a row again whatever its values:
 * `resend` (held: sent as an update, e.g. to a destination emptied by hand) and `retry`
 * (rejected: sent as an add, e.g. once the cause was fixed at the destination); see
 * {@link markForResend}. A confirmed row keeps the plugin's `state` for it, handed back with its
 * next update or removal.
 * Rows go in batches of the plugin's `batchSize`, at most `concurrency` calls in flight per
 * `limitKey` in this process (p-queue, which the run's `prepare` goes through too), each call
 * retried when the service is busy. The ledger advances per batch and only for rows the
 * destination confirmed, so a run cut off anywhere resumes without losing or repeating
 * anything. One run per sync at a time, across every worker, through a lease on the sync's row.
 */
import PQueue from 'p-queue';
import { sql, type SQL } from 'drizzle-orm';
import { json, rows, type Db } from '../db/index.ts';
import { keepLease, takeLease, type LeaseKind } from '../db/lease.ts';
import {
  openConfig,
  parseStoredConfig,
  redactSecrets,
  secretValues,
} from '../destinations/sealed-config.ts';
import type { SecretBox } from '../destinations/secrets.ts';
import { HubError, notFound } from '../errors.ts';
import type { Logger } from '../log.ts';
import type {
  DestinationPlugin,
  PluginContext,
  RowResult,
  SyncInfo,
  SyncRow,
} from '../sdk/destination.ts';
import { ConfigError, TransientError } from '../sdk/errors.ts';
import { createHttpClient } from '../sdk/http.ts';
import { mappedValues, type Mapping } from './mapping.ts';
import type { PluginRegistry } from './registry.ts';

export interface SyncDeps {
  registry: PluginRegistry;
  box: SecretBox;
  log: Logger;
  /** Shared concurrency per plugin limit key, across the syncs of this process. */
  queues?: Map<string, PQueue>;
}

export type SyncTrigger = 'manual' | 'schedule' | 'auto';

export interface SyncRunSummary {
  id: number;
  syncId: string;
  trigger: string;
  status: 'running' | 'succeeded' | 'partial' | 'failed';
  startedAt: Date;
  finishedAt: Date | null;
  added: number;
  updated: number;
  removed: number;
  rejected: number;
  retried: number;
  error: string | null;
}

interface LoadedSync {
  id: string;
  segmentId: string;
  segmentName: string;
  mode: 'mirror' | 'upsert';
  mapping: Mapping;
  plugin: DestinationPlugin;
  config: unknown;
  /** Secret values, to blank out of any message that might repeat them. */
  secretValues: string[];
}

/** One run per sync: a lease on the sync's row (src/db/lease.ts). */
const SYNC_LEASE: LeaseKind = {
  table: 'syncs',
  runs: 'sync_runs',
  interrupted: 'interrupted: the worker stopped before the run finished',
};
/** Rows read from the database at a time. */
const PAGE = 5000;
/** Ledger writes in flight at once per run. */
const LEDGER_WRITERS = 4;

/** Load a sync with its plugin and its decrypted, validated config. */
export async function loadSync(db: Db, deps: SyncDeps, syncId: string): Promise<LoadedSync> {
  const [row] = await rows<{
    id: string;
    segment_id: string;
    segment_name: string;
    mode: 'mirror' | 'upsert';
    mapping: Mapping;
    plugin: string;
    config: Record<string, unknown>;
    secrets: string;
  }>(
    db,
    sql`select y.id, y.segment_id, s.name as segment_name, y.mode, y.mapping, d.plugin, d.config,
          d.secrets
        from syncs y join destinations d on d.id = y.destination_id
        join segments s on s.id = y.segment_id
        where y.id = ${syncId}`,
  );
  if (!row) throw notFound('Sync', syncId);
  const plugin = deps.registry.get(row.plugin);
  if (!plugin) {
    throw new ConfigError(`The destination's plugin "${row.plugin}" is not installed.`);
  }
  const { config, secrets } = openConfig(deps.box, row.config, row.secrets);
  return {
    id: row.id,
    segmentId: row.segment_id,
    segmentName: row.segment_name,
    mode: row.mode,
    mapping: row.mapping,
    plugin,
    config: parseStoredConfig(
      plugin.config,
      config,
      `The destination's configuration no longer fits the ${plugin.title} plugin`,
    ),
    secretValues: secretValues(secrets),
  };
}

/** The plugin call context for one run. */
export function pluginContext(log: Logger, signal: AbortSignal): PluginContext {
  return {
    log,
    signal,
    http: (options) => createHttpClient({ ...options, signal }),
  };
}

/** What the next run would send: counts, and a few rows of each kind. */
export interface SyncPlan {
  add: number;
  update: number;
  remove: number;
  /** Rejected rows marked to be sent again (as adds) whatever their values. */
  retry: number;
  /** Rejected rows whose values have not changed: not sent again. */
  heldBack: number;
  samples: {
    action: SyncRow['action'];
    profileId: string;
    fields: Record<string, unknown>;
    /** What the plugin kept for the row, handed back with an update. */
    state?: Record<string, unknown>;
  }[];
}

/** Ledger statuses of rows the destination holds (added by this hub): updated and removed. */
const HELD = sql`('ok', 'resend')`;
/** Ledger statuses of rows marked to be sent again whatever their values. */
const MARKED = sql`('resend', 'retry')`;

/** The diff between the segment and the ledger, as a query of (profile_id, action, fields). */
function diffQuery(
  sync: Pick<LoadedSync, 'id' | 'segmentId' | 'mode' | 'mapping'>,
  after: string | null,
  limit = PAGE,
) {
  // The page's lower bound on every table: the planner does not carry it across the joins, and
  // without it each page would merge-join from the first profile (quadratic over a run).
  const from = (column: SQL) => (after === null ? sql`true` : sql`${column} > ${after}::uuid`);
  return sql`
    select m.profile_id, v.fields, s.status, s.state
    from segment_members m
    join profiles p on p.id = m.profile_id and p.merged_into is null and ${from(sql`p.id`)}
    cross join lateral (select ${mappedValues(sync.mapping)} as fields) v
    left join sync_state s on s.sync_id = ${sync.id} and s.profile_id = m.profile_id
      and ${from(sql`s.profile_id`)}
    where m.segment_id = ${sync.segmentId} and ${from(sql`m.profile_id`)}
      and (s.profile_id is null or s.values is distinct from v.fields or s.status in ${MARKED})
    order by m.profile_id
    limit ${limit}`;
}

/** Ledger rows of profiles no longer in the segment (or merged away, or erased). */
function leftQuery(sync: Pick<LoadedSync, 'id' | 'segmentId'>, after: string | null) {
  const from = after === null ? sql`true` : sql`s.profile_id > ${after}::uuid`;
  return sql`
    select s.profile_id, s.values as fields, s.status, s.state
    from sync_state s
    where s.sync_id = ${sync.id} and ${from}
      and not exists (
        select 1 from segment_members m join profiles p on p.id = m.profile_id
        where m.segment_id = ${sync.segmentId} and m.profile_id = s.profile_id
          and p.merged_into is null)
    order by s.profile_id
    limit ${PAGE}`;
}

type LedgerStatus = 'ok' | 'rejected' | 'resend' | 'retry';

interface DiffRow {
  profile_id: string;
  fields: Record<string, unknown>;
  status: LedgerStatus | null;
  state: Record<string, unknown> | null;
}

const held = (status: LedgerStatus | null) => status === 'ok' || status === 'resend';

/** A row of the diff as the plugin gets it: only a row the destination holds is updated. */
function toRow(r: DiffRow, action?: 'remove'): SyncRow {
  const row: SyncRow = {
    id: r.profile_id,
    action: action ?? (held(r.status) ? 'update' : 'add'),
    fields: r.fields,
  };
  // An add starts afresh: a rejected row never reached the destination.
  if (row.action !== 'add' && r.state !== null) row.state = r.state;
  return row;
}

/** A page of rows to send, and which of them are rejected rows sent again on request. */
interface DiffPage {
  rows: SyncRow[];
  retrying: Set<string>;
}

/** Read the whole difference page by page, in profile id order. */
async function* differences(db: Db, sync: LoadedSync): AsyncGenerator<DiffPage, void, undefined> {
  let after: string | null = null;
  for (;;) {
    const page: DiffRow[] = await rows<DiffRow>(db, diffQuery(sync, after));
    if (page.length === 0) break;
    after = page.at(-1)!.profile_id;
    yield {
      rows: page.map((r) => toRow(r)),
      retrying: new Set(page.filter((r) => r.status === 'retry').map((r) => r.profile_id)),
    };
    if (page.length < PAGE) break;
  }
  after = null;
  for (;;) {
    const page: DiffRow[] = await rows<DiffRow>(db, leftQuery(sync, after));
    if (page.length === 0) break;
    after = page.at(-1)!.profile_id;
    // A rejected row never reached the destination: it is forgotten, not removed.
    const rejected = page.filter((r) => !held(r.status)).map((r) => r.profile_id);
    if (rejected.length > 0) await forget(db, sync.id, rejected);
    if (sync.mode === 'mirror') {
      yield {
        rows: page.filter((r) => held(r.status)).map((r) => toRow(r, 'remove')),
        retrying: new Set(),
      };
    }
    if (page.length < PAGE) break;
  }
}

async function forget(db: Db, syncId: string, profileIds: string[]) {
  await db.execute(
    sql`delete from sync_state where sync_id = ${syncId}
          and profile_id in (select x::uuid from json_array_elements_text(${json(profileIds)}) x)`,
  );
}

/**
 * Mark ledger rows to be sent again on the next run, whatever their values; answers how many
 * are marked (those marked before and not sent yet included). `rejected`: every row the destination rejected (sent again as an add, counted in
 * the run's `retried`). `all`: every row, for a destination emptied by hand — rows it held are
 * sent again as updates (which plugins treat as upserts), with their state, and stay the hub's
 * to remove; rejected rows as adds. Nothing the ledger does not hold is removed, and members
 * not in the ledger are added by the run as always. Call inside the caller's transaction.
 *
 * @example
 * const marked = await markForResend(tx, syncId, 'rejected'); // then request a run
 */
export async function markForResend(
  tx: Db,
  syncId: string,
  which: 'rejected' | 'all',
): Promise<number> {
  const [marked] = await rows<{ n: number }>(
    tx,
    sql`with marked as (
          update sync_state
          set status = case when status in ${HELD} then 'resend' else 'retry' end,
            updated_at = now()
          where sync_id = ${syncId}
            and status in ${which === 'all' ? sql`('ok', 'rejected', 'resend', 'retry')` : sql`('rejected', 'retry')`}
          returning 1)
        select count(*)::int as n from marked`,
  );
  return marked!.n;
}

/**
 * What the next run of a sync would send, without sending anything (plan before apply).
 *
 * @example
 * const plan = await planSync(db, deps, syncId); // { add: 120, update: 4, remove: 9, … }
 */
export async function planSync(
  db: Db,
  deps: SyncDeps,
  syncId: string,
  options: { samples?: number } = {},
): Promise<SyncPlan> {
  const sync = await loadSync(db, deps, syncId);
  const [counts] = await rows<{
    add: number;
    update: number;
    retry: number;
    held: number;
    remove: number;
  }>(
    db,
    sql`with d as (
          select s.status, (s.values is distinct from ${mappedValues(sync.mapping)}) as changed
          from segment_members m
          join profiles p on p.id = m.profile_id and p.merged_into is null
          left join sync_state s on s.sync_id = ${sync.id} and s.profile_id = m.profile_id
          where m.segment_id = ${sync.segmentId}
        )
        select count(*) filter (where status is null or (status = 'rejected' and changed))::int as add,
          count(*) filter (where (status = 'ok' and changed) or status = 'resend')::int as update,
          count(*) filter (where status = 'retry')::int as retry,
          count(*) filter (where status = 'rejected' and not changed)::int as held,
          ${
            sync.mode === 'mirror'
              ? sql`(select count(*)::int from (${leftQuery(sync, null)}) l where l.status in ${HELD})`
              : sql`0`
          } as remove
        from d`,
  );
  const samples: SyncPlan['samples'] = [];
  const wanted = options.samples ?? 10;
  if (wanted > 0) {
    const page = await rows<DiffRow>(db, diffQuery(sync, null, wanted));
    for (const r of page) {
      const row = toRow(r);
      samples.push({
        action: row.action,
        profileId: row.id,
        fields: row.fields,
        ...(row.state ? { state: row.state } : {}),
      });
    }
  }
  return {
    add: counts!.add,
    update: counts!.update,
    remove: counts!.remove,
    retry: counts!.retry,
    heldBack: counts!.held,
    samples,
  };
}

/** A run's counts; `left` (rows left to retry) is part of `retried` and makes a run partial. */
interface RunCounts {
  added: number;
  updated: number;
  removed: number;
  rejected: number;
  retried: number;
  left: number;
}

/**
 * Run a sync now. Refused (409) while another run of the same sync holds it.
 *
 * @example
 * const run = await runSync(db, deps, syncId, 'manual');
 * console.log(run.added, run.removed, run.rejected);
 */
export async function runSync(
  db: Db,
  deps: SyncDeps,
  syncId: string,
  trigger: SyncTrigger,
  options: { signal?: AbortSignal } = {},
): Promise<SyncRunSummary> {
  const [started] = await rows<{ id: string | number }>(
    db,
    sql`insert into sync_runs (sync_id, trigger, status)
        select id, ${trigger}, 'running' from syncs where id = ${syncId} returning id`,
  );
  if (!started) throw notFound('Sync', syncId);
  const runId = Number(started.id);
  const holder = await takeLease(db, SYNC_LEASE, syncId, runId);
  if (holder !== runId) {
    await db.execute(sql`delete from sync_runs where id = ${runId}`);
    throw new HubError(
      409,
      'sync-running',
      'Sync already running',
      `Run ${holder} of this sync is in progress; wait for it to finish.`,
      undefined,
      { runId: holder },
    );
  }
  const controller = new AbortController();
  const stop = () => controller.abort();
  options.signal?.addEventListener('abort', stop, { once: true });
  const releaseLease = keepLease(db, SYNC_LEASE, syncId, runId);
  const counts: RunCounts = { added: 0, updated: 0, removed: 0, rejected: 0, retried: 0, left: 0 };
  let secrets: string[] = [];
  try {
    const sync = await loadSync(db, deps, syncId);
    secrets = sync.secretValues;
    const log = deps.log.child({ syncId, runId });
    const ctx = pluginContext(log, controller.signal);
    const info: SyncInfo = {
      id: sync.id,
      segmentName: sync.segmentName,
      mode: sync.mode,
      fields: sync.mapping.map((m) => m.to),
    };
    const queue = queueFor(deps, sync);
    const prepare = sync.plugin.prepare;
    if (prepare) {
      // Through the queue: preparing calls the service too, and counts against its limits.
      await queue.add(() =>
        withRetries(ctx, () => prepare({ config: sync.config, sync: info }, ctx)),
      );
    }
    const pending: Promise<void>[] = [];
    let failure: unknown;
    // The service's slot is held for the call only: the ledger is written after the slot is
    // released, so the next batch goes out while this one's results are recorded. A few ledger
    // writes at a time, and reading stops while they lag behind.
    const ledger = new PQueue({ concurrency: LEDGER_WRITERS });
    const send = (batch: SyncRow[], retrying: Set<string>) =>
      queue
        .add(() => sendBatch(sync, info, batch, ctx))
        .then((results) =>
          ledger.add(() => applyResults(db, sync.id, runId, batch, retrying, results, counts)),
        );
    for await (const page of differences(db, sync)) {
      for (let i = 0; i < page.rows.length; i += sync.plugin.limits.batchSize) {
        if (failure !== undefined) break;
        const batch = page.rows.slice(i, i + sync.plugin.limits.batchSize);
        pending.push(
          send(batch, page.retrying).catch((error: unknown) => {
            failure ??= error;
            controller.abort();
          }),
        );
      }
      // Keep memory flat: do not read further ahead than the service and the ledger can take.
      await queue.onSizeLessThan(sync.plugin.limits.concurrency * 2);
      await ledger.onSizeLessThan(LEDGER_WRITERS * 2);
      if (failure !== undefined) break;
    }
    await Promise.all(pending);
    if (failure !== undefined) throw failure;
    await sync.plugin.finish?.({ config: sync.config, sync: info }, ctx);
    const status = counts.rejected + counts.left > 0 ? 'partial' : 'succeeded';
    await finishRun(db, runId, status, counts, null);
  } catch (error) {
    const message = redactSecrets(error instanceof Error ? error.message : String(error), secrets);
    await finishRun(db, runId, 'failed', counts, message);
    deps.log.warn('sync run failed', { syncId, runId, error: message });
  } finally {
    options.signal?.removeEventListener('abort', stop);
    await releaseLease();
  }
  return (await getSyncRun(db, runId))!;
}

function queueFor(deps: SyncDeps, sync: LoadedSync): PQueue {
  const queues = (deps.queues ??= new Map());
  const key = `${sync.plugin.name}:${sync.plugin.limitKey?.(sync.config as never) ?? sync.id}`;
  let queue = queues.get(key);
  if (!queue) {
    const { concurrency, callsPerSecond } = sync.plugin.limits;
    queue = new PQueue({
      concurrency,
      // Starts spaced evenly, so no second counted from any moment holds more than the limit.
      ...(callsPerSecond ? { intervalCap: 1, interval: Math.ceil(1000 / callsPerSecond) } : {}),
    });
    queues.set(key, queue);
  }
  return queue;
}

/** Attempts at a plugin call the service keeps failing transiently, within one run. */
const ATTEMPTS = 4;

/**
 * Call the plugin, again while it fails transiently: after `retryAfterMs` when the service said,
 * else 1 s, 2 s, 4 s… (at most 30 s). The last TransientError is thrown after ATTEMPTS calls.
 */
async function withRetries<T>(ctx: PluginContext, call: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      if (!(error instanceof TransientError) || ctx.signal.aborted || attempt >= ATTEMPTS) {
        throw error;
      }
      const waitMs = error.retryAfterMs ?? Math.min(30_000, 1000 * 2 ** (attempt - 1));
      // A stopped run does not sit out the wait.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, waitMs);
        ctx.signal.addEventListener(
          'abort',
          () => {
            clearTimeout(timer);
            resolve();
          },
          { once: true },
        );
      });
      if (ctx.signal.aborted) throw error;
    }
  }
}

/** One batch through the plugin; a batch the service keeps refusing is left to the next run. */
async function sendBatch(
  sync: LoadedSync,
  info: SyncInfo,
  batch: SyncRow[],
  ctx: PluginContext,
): Promise<RowResult[]> {
  try {
    return await withRetries(ctx, () =>
      sync.plugin.sync({ config: sync.config, sync: info, batch }, ctx),
    );
  } catch (error) {
    if (!(error instanceof TransientError) || ctx.signal.aborted) throw error;
    return batch.map((r) => ({ id: r.id, status: 'retry', reason: error.message }));
  }
}

/** Advance the ledger for what the destination confirmed, and record what it did not. */
async function applyResults(
  db: Db,
  syncId: string,
  runId: number,
  batch: SyncRow[],
  retrying: Set<string>,
  results: RowResult[],
  counts: RunCounts,
) {
  const byId = new Map(results.map((r) => [r.id, r]));
  const confirmed: {
    profile_id: string;
    values: Record<string, unknown>;
    state?: Record<string, unknown>;
  }[] = [];
  const removed: string[] = [];
  const rejected: { profile_id: string; values: Record<string, unknown>; reason: string }[] = [];
  /** Rows the destination holds whose update or removal it refused. */
  const refused: string[] = [];
  const errors: { profile_id: string; action: string; status: string; reason: string }[] = [];
  for (const row of batch) {
    const result: RowResult = byId.get(row.id) ?? {
      id: row.id,
      status: 'retry',
      reason: 'the plugin returned no result for this row',
    };
    if (result.status === 'ok') {
      if (row.action === 'remove') {
        removed.push(row.id);
        counts.removed++;
      } else {
        confirmed.push({ profile_id: row.id, values: row.fields, state: result.state });
        if (retrying.has(row.id)) counts.retried++;
        else if (row.action === 'add') counts.added++;
        else counts.updated++;
      }
    } else if (result.status === 'rejected') {
      counts.rejected++;
      errors.push({
        profile_id: row.id,
        action: row.action,
        status: 'rejected',
        reason: result.reason,
      });
      // A refused update or removal leaves the row where it is: still ours, still confirmed.
      if (row.action === 'add') {
        rejected.push({ profile_id: row.id, values: row.fields, reason: result.reason });
      } else refused.push(row.id);
    } else {
      counts.retried++;
      counts.left++;
      errors.push({
        profile_id: row.id,
        action: row.action,
        status: 'retry',
        reason: result.reason,
      });
    }
  }
  await db.transaction(async (tx) => {
    if (confirmed.length > 0) {
      // A result without `state` keeps the state the row had.
      await tx.execute(
        sql`insert into sync_state (sync_id, profile_id, values, status, state)
            select ${syncId}::uuid, profile_id, values, 'ok', state
            from json_to_recordset(${json(confirmed)})
              as x(profile_id uuid, values jsonb, state jsonb)
            on conflict (sync_id, profile_id) do update
              set values = excluded.values, status = 'ok', reason = null,
                state = coalesce(excluded.state, sync_state.state), updated_at = now()`,
      );
    }
    if (rejected.length > 0) {
      // A row the destination holds keeps its confirmed values: only new rows become rejected.
      await tx.execute(
        sql`insert into sync_state (sync_id, profile_id, values, status, reason)
            select ${syncId}::uuid, profile_id, values, 'rejected', reason
            from json_to_recordset(${json(rejected)}) as x(profile_id uuid, values jsonb, reason text)
            on conflict (sync_id, profile_id) do update
              set values = excluded.values, status = 'rejected', reason = excluded.reason,
                updated_at = now()
              where sync_state.status in ('rejected', 'retry')`,
      );
    }
    if (refused.length > 0) {
      // Sent again as asked and refused: like any refused row, sent again once it changes.
      await tx.execute(
        sql`update sync_state set status = 'ok', updated_at = now()
            where sync_id = ${syncId} and status = 'resend'
              and profile_id in (select x::uuid from json_array_elements_text(${json(refused)}) x)`,
      );
    }
    if (removed.length > 0) await forget(tx, syncId, removed);
    if (errors.length > 0) {
      await tx.execute(
        sql`insert into sync_row_errors (run_id, sync_id, profile_id, action, status, reason)
            select ${runId}::bigint, ${syncId}::uuid, profile_id, action, status, reason
            from json_to_recordset(${json(errors)})
              as x(profile_id uuid, action text, status text, reason text)`,
      );
    }
  });
}

async function finishRun(
  db: Db,
  runId: number,
  status: SyncRunSummary['status'],
  counts: RunCounts,
  error: string | null,
) {
  await db.execute(
    sql`update sync_runs set status = ${status}, finished_at = now(), added = ${counts.added},
          updated = ${counts.updated}, removed = ${counts.removed}, rejected = ${counts.rejected},
          retried = ${counts.retried}, error = ${error}
        where id = ${runId}`,
  );
}

/** A `sync_runs` row as the database answers it. */
export interface SyncRunRow {
  id: string | number;
  sync_id: string;
  trigger: string;
  status: SyncRunSummary['status'];
  started_at: string | Date;
  finished_at: string | Date | null;
  added: number;
  updated: number;
  removed: number;
  rejected: number;
  retried: number;
  error: string | null;
}

export const toSyncRun = (r: SyncRunRow): SyncRunSummary => ({
  id: Number(r.id),
  syncId: r.sync_id,
  trigger: r.trigger,
  status: r.status,
  startedAt: new Date(r.started_at),
  finishedAt: r.finished_at === null ? null : new Date(r.finished_at),
  added: r.added,
  updated: r.updated,
  removed: r.removed,
  rejected: r.rejected,
  retried: r.retried,
  error: r.error,
});

export async function getSyncRun(db: Db, runId: number): Promise<SyncRunSummary | undefined> {
  const [r] = await rows<SyncRunRow>(db, sql`select * from sync_runs where id = ${runId}`);
  return r && toSyncRun(r);
}
