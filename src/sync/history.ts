/**
 * Run history of a sync: its runs, newest first, and the rows a destination rejected or that
 * are to be retried, per run or per profile. Every list pages by id (a bigserial, so newer rows
 * have larger ids): a cursor is the last id of the previous page, and a page never shifts when
 * new rows arrive.
 */
import { sql } from 'drizzle-orm';
import { rows, type Db } from '../db/index.ts';
import { notFound } from '../errors.ts';
import { toSyncRun, type SyncRunRow, type SyncRunSummary } from './engine.ts';

/** A page of a list: `next` is the cursor of the following page, null on the last. */
export interface HistoryPage<T> {
  data: T[];
  next: number | null;
}

/** One row the destination did not confirm during a run. */
export interface SyncRowError {
  id: number;
  runId: number;
  profileId: string;
  action: 'add' | 'update' | 'remove';
  /** `rejected`: refused by the destination; `retry`: not done this time, tried again. */
  status: 'rejected' | 'retry';
  reason: string;
  at: Date;
}

interface ErrorRow {
  id: string | number;
  run_id: string | number;
  profile_id: string;
  action: SyncRowError['action'];
  status: SyncRowError['status'];
  reason: string;
  at: string | Date;
}

const toError = (r: ErrorRow): SyncRowError => ({
  id: Number(r.id),
  runId: Number(r.run_id),
  profileId: r.profile_id,
  action: r.action,
  status: r.status,
  reason: r.reason,
  at: new Date(r.at),
});

/** One more row than asked tells whether another page follows. */
function pageOf<R, T extends { id: number }>(
  found: R[],
  limit: number,
  map: (r: R) => T,
): HistoryPage<T> {
  const data = found.slice(0, limit).map(map);
  return { data, next: found.length > limit ? data[data.length - 1]!.id : null };
}

async function assertSync(db: Db, syncId: string) {
  const [sync] = await rows<{ id: string }>(db, sql`select id from syncs where id = ${syncId}`);
  if (!sync) throw notFound('Sync', syncId);
}

/**
 * A sync's runs, newest first, with their counts, status and error. 404 when there is no
 * such sync.
 *
 * @example
 * const { data, next } = await listSyncRuns(db, syncId, { limit: 20 });
 * const older = await listSyncRuns(db, syncId, { limit: 20, before: next ?? undefined });
 */
export async function listSyncRuns(
  db: Db,
  syncId: string,
  options: { limit: number; before?: number },
): Promise<HistoryPage<SyncRunSummary>> {
  await assertSync(db, syncId);
  const found = await rows<SyncRunRow>(
    db,
    sql`select id, sync_id, trigger, status, started_at, finished_at, added, updated, removed,
          rejected, retried, error
        from sync_runs
        where sync_id = ${syncId}
          and (${options.before ?? null}::bigint is null or id < ${options.before ?? null}::bigint)
        order by id desc
        limit ${options.limit + 1}`,
  );
  return pageOf(found, options.limit, toSyncRun);
}

/**
 * The rows one run did not get confirmed (rejected, or left to retry), newest first. 404 when
 * the run is not one of this sync's.
 *
 * @example
 * const { data } = await listRunErrors(db, syncId, runId, { limit: 50 });
 * // [{ profileId, action: 'add', status: 'rejected', reason: 'jane@example.com is unsubscribed' }]
 */
export async function listRunErrors(
  db: Db,
  syncId: string,
  runId: number,
  options: { limit: number; before?: number },
): Promise<HistoryPage<SyncRowError>> {
  const [run] = await rows<{ id: string | number }>(
    db,
    sql`select id from sync_runs where id = ${runId} and sync_id = ${syncId}`,
  );
  if (!run) {
    await assertSync(db, syncId);
    throw notFound('Sync run', String(runId));
  }
  const found = await rows<ErrorRow>(
    db,
    sql`select id, run_id, profile_id, action, status, reason, at
        from sync_row_errors
        where run_id = ${runId} and sync_id = ${syncId}
          and (${options.before ?? null}::bigint is null or id < ${options.before ?? null}::bigint)
        order by id desc
        limit ${options.limit + 1}`,
  );
  return pageOf(found, options.limit, toError);
}

/**
 * A sync's row errors across its runs, newest first; with `profileId`, only that profile's —
 * including those recorded under profiles since merged into it, so a person's history
 * survives identity resolution. 404 when there is no such sync.
 *
 * @example
 * const { data } = await listSyncErrors(db, syncId, { limit: 50, profileId });
 */
export async function listSyncErrors(
  db: Db,
  syncId: string,
  options: { limit: number; before?: number; profileId?: string },
): Promise<HistoryPage<SyncRowError>> {
  await assertSync(db, syncId);
  const profileId = options.profileId ?? null;
  const found = await rows<ErrorRow>(
    db,
    sql`select id, run_id, profile_id, action, status, reason, at
        from sync_row_errors
        where sync_id = ${syncId}
          and (${profileId}::uuid is null
               or profile_id = ${profileId}::uuid
               or profile_id in (select id from profiles where merged_into = ${profileId}::uuid))
          and (${options.before ?? null}::bigint is null or id < ${options.before ?? null}::bigint)
        order by id desc
        limit ${options.limit + 1}`,
  );
  return pageOf(found, options.limit, toError);
}
