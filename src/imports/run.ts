/**
 * Running an import of one stream: read it from its stored cursor, clean and map each record,
 * store the resulting messages in batches through the tracking API's ingestion (so identity
 * resolution is the same), and advance the cursor.
 *
 * - **Resumable.** A checkpoint's cursor is stored only once every record read before it is
 *   stored. A run cut off anywhere re-reads at most what followed the last stored checkpoint;
 *   message ids derived from (source, stream, record key) make the re-read store nothing twice.
 * - **Cleaning.** A record whose content exactly repeats an earlier record of the stream (under
 *   another key) is dropped as a duplicate; a record that fails the mapping is kept in
 *   `import_rejects` with the reason (idempotently: once per record key).
 * - **Reject share.** Before each batch is written, the share of rejected rows among everything
 *   the run has read so far, this batch included, is judged against the source's limit — from
 *   the first {@link MIN_SAMPLE} rows on (or at the end of a shorter stream). Over the limit the
 *   run fails before writing the batch — nothing of it is imported, only its rejects are kept so
 *   that the reasons can be read — and the error gives the share and the commonest reasons. A
 *   mapping that does not fit the data (a wrong column, a wrong date format) rejects nearly
 *   every row, so it fails on the first batch, with nothing written. The share is the run's,
 *   not each batch's: real files have stretches where rows lack an identity (a quarter of UCI
 *   Online Retail's rows have no CustomerID, and most of some 2,000-row stretches), and a limit
 *   judged per batch would fail them at random.
 * - **One run per stream** at a time across processes, through a lease on the stream's row.
 */
import { setMaxListeners } from 'node:events';
import { sql } from 'drizzle-orm';
import type { HubConfig } from '../config.ts';
import { json, rows, type Db } from '../db/index.ts';
import { keepLease, takeLease, type LeaseKind } from '../db/lease.ts';
import { ingestMessages } from '../events/ingest.ts';
import type { PreparedMessage } from '../events/message.ts';
import { HubError, notFound } from '../errors.ts';
import { IdentityCache } from '../profiles/identity-cache.ts';
import { ConfigError, TransientError } from '../sdk/errors.ts';
import type { Cursor, ReadMode, SourceStream } from '../sdk/source.ts';
import { alertRunFailed, markSucceeded } from './alerts.ts';
import type { ImportDeps } from './deps.ts';
import { compileMapping, recordKeyOf, rowDigest, StreamMapping } from './mapping.ts';
import { redactSecrets } from '../destinations/sealed-config.ts';
import { connectorContext, loadSource, type LoadedSource } from './store.ts';

export type ImportTrigger = 'manual' | 'schedule' | 'cli';

export interface ImportRun {
  id: number;
  sourceId: string;
  stream: string;
  trigger: string;
  status: 'running' | 'succeeded' | 'failed';
  startedAt: Date;
  finishedAt: Date | null;
  /** Milliseconds from start to finish (null while running). */
  durationMs: number | null;
  rowsRead: number;
  rowsImported: number;
  rowsDuplicate: number;
  rowsRejected: number;
  error: string | null;
}

/** Rows written per batch: large enough for one statement to carry many, small enough to resume cheaply. */
export const BATCH_SIZE = 2000;
/** Rows a reject share is judged on at least (see the module's comment). */
export const MIN_SAMPLE = 100;
/** One run per stream: a lease on the stream's row (src/db/lease.ts). */
const STREAM_LEASE: LeaseKind = {
  table: 'import_streams',
  runs: 'import_runs',
  interrupted: 'interrupted: the process stopped before the run finished',
};
/** A checkpoint is stored at the latest this long after it was read, even while a batch fills. */
const CHECKPOINT_EVERY_MS = 10_000;

export interface RunOptions {
  signal?: AbortSignal;
  /** Rows per batch (default {@link BATCH_SIZE}). */
  batchSize?: number;
  /**
   * Throw a TransientError that failed the run (after recording it), for a job queue to try
   * the run again later; by default a failed run is only returned.
   */
  throwTransient?: boolean;
}

interface Counts {
  read: number;
  imported: number;
  duplicate: number;
  rejected: number;
}

/** A record as read, with what the run derives from it. */
interface Row {
  data: Record<string, unknown>;
  key: string;
  digest: string;
}

class RejectShareExceeded extends Error {}

/**
 * Import one stream of a source now. Refused (409) while another run holds the stream; a
 * failed run is returned with `status: 'failed'` and its `error`.
 *
 * @example
 * const run = await runImport(db, deps, config, sourceId, 'orders', 'manual');
 * console.log(run.rowsImported, run.rowsRejected);
 */
export async function runImport(
  db: Db,
  deps: ImportDeps,
  config: HubConfig,
  sourceId: string,
  streamName: string,
  trigger: ImportTrigger,
  options: RunOptions = {},
): Promise<ImportRun> {
  const [settings] = await rows<{
    id: string | number;
    mapping: Record<string, unknown>;
    cursor: Cursor | null;
  }>(
    db,
    sql`select id, mapping, cursor from import_streams
        where source_id = ${sourceId} and stream = ${streamName}`,
  );
  if (!settings) {
    const [source] = await rows(db, sql`select id from sources where id = ${sourceId}`);
    if (!source) throw notFound('Source', sourceId);
    throw new HubError(
      409,
      'stream-not-mapped',
      'Stream not mapped',
      `The stream "${streamName}" has no mapping yet: set one with PUT /api/sources/${sourceId}/streams/${encodeURIComponent(streamName)}.`,
    );
  }
  const streamId = Number(settings.id);
  const [started] = await rows<{ id: string | number }>(
    db,
    sql`insert into import_runs (source_id, stream, trigger, status, start_cursor)
        values (${sourceId}, ${streamName}, ${trigger}, 'running',
          ${settings.cursor === null ? null : JSON.stringify(settings.cursor)}::jsonb)
        returning id`,
  );
  const runId = Number(started!.id);
  const holder = await takeLease(db, STREAM_LEASE, streamId, runId);
  if (holder !== runId) {
    await db.execute(sql`delete from import_runs where id = ${runId}`);
    throw new HubError(
      409,
      'import-running',
      'Import running',
      `Run ${holder} of this stream is in progress; wait for it to finish.`,
      undefined,
      { runId: holder },
    );
  }
  const controller = new AbortController();
  // Every request a connector has waiting on its source's limits listens for the stop until it
  // starts: a connector paging in parallel may have many waiting at once.
  setMaxListeners(0, controller.signal);
  const stop = () => controller.abort();
  options.signal?.addEventListener('abort', stop, { once: true });
  const releaseLease = keepLease(db, STREAM_LEASE, streamId, runId);
  const counts: Counts = { read: 0, imported: 0, duplicate: 0, rejected: 0 };
  let secrets: string[] = [];
  const log = deps.log.child({ sourceId, stream: streamName, runId });
  let retry: TransientError | undefined;
  try {
    const source = await loadSource(db, deps, sourceId);
    secrets = source.secretValues;
    const stream = await describe(deps, source, streamName, controller.signal);
    const mapping = StreamMapping.parse(settings.mapping);
    const mode: ReadMode = stream.modes.includes('incremental') ? 'incremental' : 'full_refresh';
    await readStream(db, deps, config, {
      source,
      stream,
      streamId,
      runId,
      mapping,
      mode,
      cursor: settings.cursor,
      counts,
      signal: controller.signal,
      batchSize: options.batchSize ?? BATCH_SIZE,
      log,
    });
    await finishRun(db, runId, 'succeeded', counts, null);
    await markSucceeded(db, sourceId, streamName);
    log.info('import run finished', { ...counts });
  } catch (error) {
    const reason = controller.signal.aborted
      ? 'stopped before the end of the stream'
      : error instanceof Error
        ? error.message
        : String(error);
    const message = redactSecrets(reason, secrets);
    await finishRun(db, runId, 'failed', counts, message);
    log.warn('import run failed', { error: message, ...counts });
    await alertRunFailed(db, deps, { sourceId, stream: streamName, runId, error: message });
    if (options.throwTransient && error instanceof TransientError && !controller.signal.aborted) {
      retry = new TransientError(message, { retryAfterMs: error.retryAfterMs });
    }
  } finally {
    options.signal?.removeEventListener('abort', stop);
    await releaseLease();
  }
  if (retry) throw retry;
  return (await getImportRun(db, runId))!;
}

/** The stream as the connector describes it now (its primary key, its read modes). */
async function describe(
  deps: ImportDeps,
  source: LoadedSource,
  name: string,
  signal: AbortSignal,
): Promise<SourceStream> {
  const ctx = connectorContext(deps, source.row.id, source.connector, deps.log, signal);
  const streams = await source.connector.discover({ config: source.config }, ctx);
  const stream = streams.find((s) => s.name === name);
  if (!stream) {
    throw new ConfigError(
      `${source.connector.title} no longer has a stream "${name}" (it has: ${streams.map((s) => s.name).join(', ') || 'none'}).`,
    );
  }
  return stream;
}

interface ReadInput {
  source: LoadedSource;
  stream: SourceStream;
  streamId: number;
  runId: number;
  mapping: StreamMapping;
  mode: ReadMode;
  cursor: Cursor | null;
  counts: Counts;
  signal: AbortSignal;
  batchSize: number;
  log: ImportDeps['log'];
}

/**
 * The read loop. One batch is written while the next is read (the connector's I/O and the
 * database's overlap); a checkpoint is stored once the write of every record before it is done.
 */
async function readStream(db: Db, deps: ImportDeps, config: HubConfig, input: ReadInput) {
  const { source, stream, streamId, runId, counts } = input;
  const sourceId = source.row.id;
  const maxShare = Number(source.row.max_reject_share);
  const receivedAt = new Date();
  const mapping = compileMapping(input.mapping, {
    traitSource: input.mapping.traitSource ?? source.row.name,
    config,
    receivedAt,
  });
  const identities = new IdentityCache();
  // Rejects left from earlier runs are cleared as their records import; none: nothing to clear.
  const [earlier] = await rows<{ any: boolean }>(
    db,
    sql`select exists (select 1 from import_rejects
          where source_id = ${sourceId} and stream = ${stream.name}) as any`,
  );
  const clearRejects = earlier?.any === true;
  // Rows that went through the mapping (read, less exact duplicates): what shares are of.
  let considered = 0;

  const write = async (batch: Row[], final: boolean, cursor: { value: Cursor } | null) => {
    // Exact duplicates: first within the batch, then against what the stream stored before.
    let fresh = batch;
    let duplicates = 0;
    if (input.mapping.dropDuplicates) {
      const firstKey = new Map<string, string>();
      fresh = batch.filter((r) => {
        const key = firstKey.get(r.digest);
        if (key === undefined) firstKey.set(r.digest, r.key);
        return key === undefined || key === r.key;
      });
      const seen = await storedElsewhere(db, streamId, fresh);
      if (seen.size > 0) fresh = fresh.filter((r) => !seen.has(r.digest));
      duplicates = batch.length - fresh.length;
    }

    const messages: PreparedMessage[] = [];
    const owners: number[] = [];
    const rejects = new Map<string, { key: string; row: Row; reason: string; field?: string }>();
    const mappedKeys: string[] = [];
    fresh.forEach((r) => {
      const result = mapping.map(r.data, { sourceId, stream: stream.name, key: r.key });
      if (!result.ok) {
        rejects.set(r.key, { key: r.key, row: r, reason: result.reason, field: result.field });
        return;
      }
      const index = mappedKeys.push(r.key) - 1;
      for (const m of result.messages) {
        messages.push(m);
        owners.push(index);
      }
    });
    const rejected = fresh.length - mappedKeys.length;

    considered += fresh.length;
    const judged = { considered, rejected: counts.rejected + rejected };
    counts.read += batch.length;
    counts.duplicate += duplicates;
    counts.rejected += rejected;
    const over = (n: { considered: number; rejected: number }) =>
      n.considered > 0 && n.rejected / n.considered > maxShare;
    const runOver = (judged.considered >= MIN_SAMPLE || final) && over(judged);

    if (rejects.size > 0)
      await storeRejects(db, runId, sourceId, stream.name, [...rejects.values()]);
    if (runOver) {
      await updateCounts(db, runId, counts);
      throw new RejectShareExceeded(
        `${judged.rejected} of ${judged.considered} rows read (${percent(judged.rejected / judged.considered)}) were rejected, over this source's limit of ${percent(maxShare)}; nothing of the last batch was imported. Commonest reasons: ${commonest([...rejects.values()].map((r) => r.reason))}`,
      );
    }

    if (messages.length > 0) {
      const result = await ingestMessages(db, config, messages, identities);
      const imported = new Set<number>();
      result.stored.forEach((stored, i) => {
        if (stored) imported.add(owners[i]!);
      });
      counts.imported += imported.size;
      counts.duplicate += mappedKeys.length - imported.size;
      if (clearRejects) {
        await db.execute(
          sql`delete from import_rejects
              where source_id = ${sourceId} and stream = ${stream.name}
                and record_key in (select json_array_elements_text(${json(mappedKeys)}))`,
        );
      }
    }
    if (batch.length > 0) await updateCounts(db, runId, counts);
    if (cursor) await storeCursor(db, streamId, runId, cursor.value);
  };

  let batch: Row[] = [];
  // The latest checkpoint read; every record before it is in `batch` or already written.
  let pending: { value: Cursor } | null = null;
  let pendingSince = 0;
  let writing: Promise<void> = Promise.resolve();
  let failed: unknown;
  const flush = async (final: boolean) => {
    const taken = batch;
    const cursor = pending;
    batch = [];
    pending = null;
    await writing;
    if (failed !== undefined) throw failed;
    writing = write(taken, final, cursor).catch((error: unknown) => {
      failed ??= error;
    });
    if (final) {
      await writing;
      if (failed !== undefined) throw failed;
    }
  };

  const ctx = connectorContext(deps, sourceId, source.connector, input.log, input.signal);
  const messages = source.connector.read(
    { config: source.config, stream, cursor: input.cursor, mode: input.mode },
    ctx,
  );
  try {
    for await (const message of messages) {
      if (input.signal.aborted) throw new Error('stopped');
      if (failed !== undefined) throw failed;
      if (message.type === 'checkpoint') {
        if (pending === null) pendingSince = Date.now();
        pending = { value: message.cursor };
        if (batch.length === 0) {
          // Everything before it is with the writer: store it once that write is done, without
          // holding up the read.
          const cursor = pending;
          pending = null;
          writing = writing.then(async () => {
            if (failed === undefined) {
              await storeCursor(db, streamId, input.runId, cursor.value).catch((error: unknown) => {
                failed ??= error;
              });
            }
          });
        } else if (Date.now() - pendingSince >= CHECKPOINT_EVERY_MS) {
          // A slow source still moves its cursor forward while a batch fills.
          await flush(false);
        }
        continue;
      }
      const digest = rowDigest(JSON.stringify(message.data));
      batch.push({
        data: message.data,
        key: recordKeyOf(stream, message.data, message.key, () => digest),
        digest,
      });
      if (batch.length >= input.batchSize) await flush(false);
    }
    if (input.signal.aborted) throw new Error('stopped');
    await flush(true);
  } finally {
    // Never leave a write running behind the run's end (it cannot fail: its error is kept).
    await writing;
  }
  // A full refresh starts again from the beginning next time; its checkpoints only serve to
  // resume a run cut off midway.
  if (input.mode === 'full_refresh') await storeCursor(db, streamId, runId, null);
}

/** Digests of `batch` that the stream stored before under another record key. */
async function storedElsewhere(db: Db, streamId: number, batch: Row[]): Promise<Set<string>> {
  if (batch.length === 0) return new Set();
  const input = batch.map((r) => ({ digest: r.digest, key_digest: rowDigest(r.key) }));
  // The select reads the snapshot from before the insert: only digests stored by earlier
  // batches, so a record re-read after a crash finds its own key, not a duplicate's.
  const found = await rows<{ digest: string }>(
    db,
    sql`with input as (
          select distinct on (digest) digest, key_digest
          from json_to_recordset(${json(input)}) as x(digest uuid, key_digest uuid)
        ), stored as (
          insert into import_row_digests (stream_id, digest, key_digest)
          select ${streamId}::bigint, digest, key_digest from input
          on conflict do nothing
        )
        select i.digest::text as digest from input i
        join import_row_digests d on d.stream_id = ${streamId}::bigint and d.digest = i.digest
        where d.key_digest <> i.key_digest`,
  );
  return new Set(found.map((r) => r.digest));
}

async function storeRejects(
  db: Db,
  runId: number,
  sourceId: string,
  stream: string,
  rejects: { key: string; row: Row; reason: string; field?: string }[],
) {
  const input = rejects.map((r) => ({
    record_key: r.key,
    row: r.row.data,
    reason: r.reason,
    field: r.field ?? null,
  }));
  await db.execute(
    sql`insert into import_rejects (run_id, source_id, stream, record_key, row, reason, field)
        select ${runId}::bigint, ${sourceId}::uuid, ${stream}, record_key, row, reason, field
        from json_to_recordset(${json(input)})
          as x(record_key text, row json, reason text, field text)
        on conflict (source_id, stream, record_key) do update
          set run_id = excluded.run_id, row = excluded.row, reason = excluded.reason,
            field = excluded.field, at = now()`,
  );
}

async function storeCursor(db: Db, streamId: number, runId: number, cursor: Cursor | null) {
  const updated = await rows<{ id: string }>(
    db,
    sql`update import_streams
        set cursor = ${cursor === null ? null : JSON.stringify(cursor)}::jsonb, cursor_at = now()
        where id = ${streamId} and lease_run_id = ${runId} returning id`,
  );
  if (updated.length === 0) {
    throw new Error('the run lost its hold on the stream (its lease ran out); another run took it');
  }
}

async function updateCounts(db: Db, runId: number, c: Counts) {
  await db.execute(
    sql`update import_runs set rows_read = ${c.read}, rows_imported = ${c.imported},
          rows_duplicate = ${c.duplicate}, rows_rejected = ${c.rejected}
        where id = ${runId}`,
  );
}

async function finishRun(
  db: Db,
  runId: number,
  status: 'succeeded' | 'failed',
  c: Counts,
  error: string | null,
) {
  await db.execute(
    sql`update import_runs set status = ${status}, finished_at = now(), rows_read = ${c.read},
          rows_imported = ${c.imported}, rows_duplicate = ${c.duplicate},
          rows_rejected = ${c.rejected}, error = ${error}
        where id = ${runId}`,
  );
}

const percent = (share: number) => `${Math.round(share * 1000) / 10}%`;

/** The three commonest reasons, with how many rows each. */
function commonest(reasons: string[]): string {
  const byReason = new Map<string, number>();
  for (const r of reasons) {
    // Reasons quote values; the kind of problem is what repeats.
    const kind = r.replace(/"(?:[^"\\]|\\.)*"/g, '…');
    byReason.set(kind, (byReason.get(kind) ?? 0) + 1);
  }
  return [...byReason.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 3)
    .map(([reason, n]) => `${reason} (${n})`)
    .join('; ');
}

/** An `import_runs` row as the database answers it. */
interface RunRow {
  id: string | number;
  source_id: string;
  stream: string;
  trigger: string;
  status: ImportRun['status'];
  started_at: string | Date;
  finished_at: string | Date | null;
  rows_read: number;
  rows_imported: number;
  rows_duplicate: number;
  rows_rejected: number;
  error: string | null;
}

const toRun = (r: RunRow): ImportRun => {
  const startedAt = new Date(r.started_at);
  const finishedAt = r.finished_at === null ? null : new Date(r.finished_at);
  return {
    id: Number(r.id),
    sourceId: r.source_id,
    stream: r.stream,
    trigger: r.trigger,
    status: r.status,
    startedAt,
    finishedAt,
    durationMs: finishedAt ? finishedAt.getTime() - startedAt.getTime() : null,
    rowsRead: r.rows_read,
    rowsImported: r.rows_imported,
    rowsDuplicate: r.rows_duplicate,
    rowsRejected: r.rows_rejected,
    error: r.error,
  };
};

export async function getImportRun(db: Db, runId: number): Promise<ImportRun | undefined> {
  const [r] = await rows<RunRow>(db, sql`select * from import_runs where id = ${runId}`);
  return r && toRun(r);
}

/**
 * A source's runs, newest first, a page at a time (`before`: the last id of the previous page).
 *
 * @example
 * const { data, next } = await listImportRuns(db, sourceId, { limit: 20 });
 */
export async function listImportRuns(
  db: Db,
  sourceId: string,
  input: { limit: number; before?: number; stream?: string },
): Promise<{ data: ImportRun[]; next: number | null }> {
  const found = await rows<RunRow>(
    db,
    sql`select * from import_runs where source_id = ${sourceId}
          ${input.before === undefined ? sql`` : sql`and id < ${input.before}`}
          ${input.stream === undefined ? sql`` : sql`and stream = ${input.stream}`}
        order by id desc limit ${input.limit + 1}`,
  );
  const data = found.slice(0, input.limit).map(toRun);
  return { data, next: found.length > input.limit ? data.at(-1)!.id : null };
}
