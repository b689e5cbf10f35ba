/**
 * Run leases: one run at a time per row (a sync, an import stream) across every process. A run
 * takes the row's lease, renews it while it works, and lets it go at the end; a lease that ran
 * out belonged to a run whose process died, and the run that takes it over marks that one failed.
 */
import { sql } from 'drizzle-orm';
import { rows, type Db } from './index.ts';

/** What a lease is held on: the table of the leased rows and the table of their runs. */
export interface LeaseKind {
  table: 'syncs' | 'import_streams';
  runs: 'sync_runs' | 'import_runs';
  /** The error recorded on a run whose lease ran out. */
  interrupted: string;
}

/** How long a run holds its row before another process may take over, renewed while it runs. */
export const LEASE_SECONDS = 120;

/**
 * Take (or renew) a row's lease for `runId`; returns the run holding it afterwards. A lease that
 * ran out belonged to a run whose process died: that run is marked failed.
 *
 * @example
 * const holder = await takeLease(db, SYNC_LEASE, syncId, runId);
 * if (holder !== runId) // another run is in progress
 */
export async function takeLease(
  db: Db,
  kind: LeaseKind,
  rowId: string | number,
  runId: number,
): Promise<number> {
  // Table names come from the closed set in LeaseKind, never from input.
  const table = sql.raw(kind.table);
  return db.transaction(async (tx) => {
    const [current] = await rows<{ lease_run_id: string | number | null; expired: boolean }>(
      tx,
      sql`select lease_run_id, coalesce(lease_until < now(), true) as expired
          from ${table} where id = ${rowId} for update`,
    );
    const holder = current?.lease_run_id == null ? null : Number(current.lease_run_id);
    if (holder !== null && holder !== runId && !current!.expired) return holder;
    if (holder !== null && holder !== runId) {
      await tx.execute(
        sql`update ${sql.raw(kind.runs)} set status = 'failed', finished_at = now(),
              error = ${kind.interrupted}
            where id = ${holder} and status = 'running'`,
      );
    }
    await tx.execute(
      sql`update ${table} set lease_run_id = ${runId},
            lease_until = now() + make_interval(secs => ${LEASE_SECONDS})
          where id = ${rowId}`,
    );
    return runId;
  });
}

/**
 * Keep a taken lease alive while the run works (renewed every quarter of its length); the
 * returned function stops renewing and lets the lease go, if the run still holds it.
 *
 * @example
 * const release = keepLease(db, SYNC_LEASE, syncId, runId);
 * try { … } finally { await release(); }
 */
export function keepLease(
  db: Db,
  kind: LeaseKind,
  rowId: string | number,
  runId: number,
): () => Promise<void> {
  const heartbeat = setInterval(
    () => void takeLease(db, kind, rowId, runId).catch(() => {}),
    (LEASE_SECONDS * 1000) / 4,
  );
  heartbeat.unref();
  return async () => {
    clearInterval(heartbeat);
    await db.execute(
      sql`update ${sql.raw(kind.table)} set lease_run_id = null, lease_until = null
          where id = ${rowId} and lease_run_id = ${runId}`,
    );
  };
}
