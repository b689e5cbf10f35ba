/**
 * Import alerts: when a run of a stream fails, and when a source with an expected interval has
 * not succeeded within it. Each is logged and, when the source has a webhook, POSTed to it as a
 * small JSON document — once per episode: a stream that keeps failing alerts on its first
 * failure, and again only after a success ended the episode; an overdue source alerts once,
 * until a run of it succeeds.
 */
import { sql } from 'drizzle-orm';
import { rows, type Db } from '../db/index.ts';
import type { ImportDeps } from './deps.ts';

/** What alerting needs: the box (webhook URLs are sealed), the log, and how to POST. */
export type AlertDeps = Pick<ImportDeps, 'box' | 'log' | 'fetch'>;

/** What a webhook receives. */
export interface ImportAlert {
  type: 'import.failed' | 'source.overdue';
  source: { id: string; name: string };
  /** For `import.failed`. */
  stream?: string;
  runId?: number;
  error?: string;
  /** For `source.overdue`. */
  lastSuccessAt?: string | null;
  expectedIntervalMinutes?: number;
  at: string;
}

/** A failed run: alert unless this stream's failure episode was already alerted. */
export async function alertRunFailed(
  db: Db,
  deps: AlertDeps,
  run: { sourceId: string; stream: string; runId: number; error: string },
): Promise<void> {
  try {
    const [first] = await rows<{ name: string; alert_webhook: string | null }>(
      db,
      sql`update import_streams t set failure_alerted_at = now()
          from sources s
          where s.id = t.source_id and t.source_id = ${run.sourceId} and t.stream = ${run.stream}
            and t.failure_alerted_at is null
          returning s.name, s.alert_webhook`,
    );
    if (!first) return;
    await send(deps, first.alert_webhook, {
      type: 'import.failed',
      source: { id: run.sourceId, name: first.name },
      stream: run.stream,
      runId: run.runId,
      error: run.error,
      at: new Date().toISOString(),
    });
  } catch (error) {
    deps.log.error('import alert failed', { sourceId: run.sourceId, error: messageOf(error) });
  }
}

/** A succeeded run ends the stream's failure episode and the source's overdue one. */
export async function markSucceeded(db: Db, sourceId: string, stream: string): Promise<void> {
  await db.execute(
    sql`update import_streams set failure_alerted_at = null
        where source_id = ${sourceId} and stream = ${stream} and failure_alerted_at is not null`,
  );
  await db.execute(
    sql`update sources set last_success_at = now(), overdue_alerted_at = null
        where id = ${sourceId}`,
  );
}

/**
 * Alert for every source whose expected interval has passed since its last success (or its
 * creation) and that has not been alerted in this episode. Returns how many alerted.
 *
 * @example
 * await alertOverdueSources(db, deps); // every minute, from the scheduler
 */
export async function alertOverdueSources(
  db: Db,
  deps: AlertDeps,
  now = new Date(),
): Promise<number> {
  const due = await rows<{
    id: string;
    name: string;
    alert_webhook: string | null;
    last_success_at: string | Date | null;
    expected_interval_minutes: number;
  }>(
    db,
    sql`update sources set overdue_alerted_at = ${now.toISOString()}::timestamptz
        where expected_interval_minutes is not null and overdue_alerted_at is null
          and coalesce(last_success_at, created_at)
            + make_interval(mins => expected_interval_minutes) < ${now.toISOString()}::timestamptz
        returning id, name, alert_webhook, last_success_at, expected_interval_minutes`,
  );
  for (const s of due) {
    await send(deps, s.alert_webhook, {
      type: 'source.overdue',
      source: { id: s.id, name: s.name },
      lastSuccessAt: s.last_success_at === null ? null : new Date(s.last_success_at).toISOString(),
      expectedIntervalMinutes: s.expected_interval_minutes,
      at: now.toISOString(),
    });
  }
  return due.length;
}

/** Log the alert, then POST it to the webhook (once, 10 s at most; a failure is logged). */
async function send(deps: AlertDeps, sealedUrl: string | null, alert: ImportAlert) {
  const summary =
    alert.type === 'import.failed'
      ? `import of ${alert.source.name}/${alert.stream} failed: ${alert.error}`
      : `source ${alert.source.name} has not imported successfully for ${alert.expectedIntervalMinutes} minutes`;
  deps.log.error(`alert: ${summary}`, { alert: alert.type, sourceId: alert.source.id });
  if (!sealedUrl) return;
  const url = deps.box.open<string>(sealedUrl);
  try {
    const res = await (deps.fetch ?? fetch)(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': 'audiencehub' },
      body: JSON.stringify(alert),
      redirect: 'manual',
      signal: AbortSignal.timeout(10_000),
    });
    await res.body?.cancel();
    if (!res.ok) {
      deps.log.warn('alert webhook refused the alert', {
        sourceId: alert.source.id,
        host: new URL(url).host,
        status: res.status,
      });
    }
  } catch (error) {
    // The URL may carry a token: only its host is logged.
    deps.log.warn('alert webhook could not be reached', {
      sourceId: alert.source.id,
      host: new URL(url).host,
      error: (error as { name?: string }).name ?? 'error',
    });
  }
}

const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));
