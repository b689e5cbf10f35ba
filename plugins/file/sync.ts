/**
 * Writing a sync to its file. A batch is confirmed once it is in the journal (appended whole and
 * fsynced); the snapshot — the file people open — is re-rendered from the state and the journal
 * when that is cheap, and always at the start of the next run (`prepare`). README.md says why.
 */
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  ConfigError,
  TransientError,
  type DestinationPrepare,
  type DestinationSync,
  type PluginContext,
  type RowResult,
  type SyncInfo,
} from 'audiencehub/sdk';
import {
  appendBatch,
  claims,
  fsFailure,
  isCurrent,
  openState,
  readMeta,
  render,
  syncFolderName,
  syncPaths,
  writeMeta,
  STATE_ROOT,
  type FileConfig,
  type SnapshotFormat,
  type SyncMeta,
  type SyncPaths,
  type SyncState,
} from './client.ts';

/**
 * One CSV cell (RFC 4180): quoted when it holds a comma, a quote or a line break, quotes
 * doubled. A text a spreadsheet would read as a formula (starting with = + - @, or a tab or
 * carriage return that some strip first) gets a leading `'`, so opening the file never runs what
 * a profile's data says (https://owasp.org/www-community/attacks/CSV_Injection); E.164 phone
 * numbers therefore read `'+447700900123`. Numbers and booleans are written as they are, objects
 * and arrays as JSON, null and missing values as an empty cell.
 *
 * @example
 * csvCell('=HYPERLINK("x")'); // `"'=HYPERLINK(""x"")"`
 */
export function csvCell(value: unknown): string {
  if (value === null || value === undefined) return '';
  let text: string;
  if (typeof value === 'string') text = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  else if (typeof value === 'number' || typeof value === 'boolean') text = String(value);
  else text = JSON.stringify(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

const csvLine = (cells: unknown[]) => `${cells.map(csvCell).join(',')}\r\n`;

/** The snapshot's format for a sync: its columns are the sync's fields, in mapping order. */
export function snapshotFormat(format: FileConfig['format'], fields: string[]): SnapshotFormat {
  if (format === 'csv') {
    return { header: csvLine(fields), record: (row) => csvLine(fields.map((f) => row[f])) };
  }
  return {
    header: '',
    record: (row) =>
      `${JSON.stringify(Object.fromEntries(fields.map((f) => [f, row[f] ?? null])))}\n`,
  };
}

/** The segment's name as a file name: `Loyal customers (EU)` → `loyal-customers-eu`. */
export function slug(name: string): string {
  const s = name
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 80)
    .replace(/-+$/, '');
  return s || 'segment';
}

/** The snapshot's file name for a sync, e.g. `loyal-customers.csv`. */
export function fileNameFor(config: FileConfig, sync: SyncInfo): string {
  const base = config.fileName
    .replaceAll('{segment}', slug(sync.segmentName))
    .replaceAll('{sync}', syncFolderName(sync.id));
  return `${base}.${config.format}`;
}

/**
 * When to re-render after a batch: while the file is small (a few MB, rewritten in well under a
 * second), after every batch; past that, once the changes since the last render reach a quarter
 * of its rows, so a long run rewrites the file a bounded number of times (about five times its
 * size over a first full sync) and the journal never outgrows a quarter of the state.
 */
export const SMALL_SNAPSHOT_ROWS = 50_000;
export const shouldRender = (s: Pick<SyncState, 'stateRows' | 'pendingRows'>) =>
  s.stateRows + s.pendingRows <= SMALL_SNAPSHOT_ROWS || s.pendingRows * 4 >= s.stateRows;

// One writer per sync in this process: the engine runs one batch of a sync at a time
// (concurrency 1), and this keeps it so whatever calls the plugin. Across processes the
// engine's lease on the sync does.
const writers = new Map<string, Promise<unknown>>();
function exclusive<T>(key: string, work: () => Promise<T>): Promise<T> {
  const run = (writers.get(key) ?? Promise.resolve()).catch(() => {}).then(work);
  const settled = run.catch(() => {});
  writers.set(key, settled);
  void settled.then(() => {
    if (writers.get(key) === settled) writers.delete(key);
  });
  return run;
}

// The state of each sync as its last call left it, so a batch does not re-read the journal.
// Checked against the files before use: another worker may have run the sync since.
const states = new Map<string, SyncState>();

async function stateOf(paths: SyncPaths, ctx: PluginContext): Promise<SyncState> {
  const known = states.get(paths.stateDir);
  if (known && (await isCurrent(known))) return known;
  const state = await openState(paths, ctx.log);
  states.set(paths.stateDir, state);
  return state;
}

/**
 * Refuse to write a file another sync writes. The sync that rendered the file keeps it; when
 * neither has yet, both are refused until one is renamed.
 */
async function claim(paths: SyncPaths, sync: SyncInfo, file: string): Promise<SyncMeta> {
  const own = syncFolderName(sync.id);
  const found = await readMeta(paths.meta);
  const mine: SyncMeta = found ?? { sync: sync.id, claim: file };
  const meta: SyncMeta = { ...mine, sync: sync.id, claim: file };
  if (found?.claim !== file) await writeMeta(paths, meta);
  const same = (a: string | undefined) => a?.toLowerCase() === file.toLowerCase();
  for (const [folder, other] of await claims(paths.directory)) {
    if (folder === own || !same(other.claim)) continue;
    if (same(other.rendered?.file) || !same(mine.rendered?.file)) {
      throw new ConfigError(
        `${file} in ${paths.directory} is written by another sync (${other.sync}): give this sync another file name. If that sync was deleted, remove ${join(STATE_ROOT, folder)} from the folder.`,
      );
    }
  }
  return meta;
}

/** Render the snapshot and record it; a previous file of another name (a renamed segment) goes. */
async function renderSnapshot(
  paths: SyncPaths,
  state: SyncState,
  meta: SyncMeta,
  config: FileConfig,
  sync: SyncInfo,
  ctx: PluginContext,
): Promise<SyncMeta> {
  const file = fileNameFor(config, sync);
  await render(
    state,
    { path: join(paths.directory, file), format: snapshotFormat(config.format, sync.fields) },
    ctx.signal,
  );
  const previous = meta.rendered?.file;
  const next: SyncMeta = {
    sync: sync.id,
    claim: file,
    rendered: { file, format: config.format, fields: sync.fields, seq: state.seq },
  };
  await writeMeta(paths, next);
  if (previous && previous !== file) {
    const others = [...(await claims(paths.directory)).values()].filter((m) => m.sync !== sync.id);
    if (!others.some((m) => m.claim === previous)) {
      await rm(join(paths.directory, previous), { force: true });
    }
  }
  return next;
}

/**
 * Recover from whatever the last run left (a crash included), claim the file, and bring the
 * snapshot up to date with everything confirmed so far — the rows the last run's final batches
 * journaled, a new file name, format or mapping.
 */
export const prepare: DestinationPrepare<FileConfig> = async ({ config, sync }, ctx) => {
  const paths = syncPaths(config, sync.id);
  await exclusive(paths.stateDir, async () => {
    try {
      const state = await openState(paths, ctx.log);
      states.set(paths.stateDir, state);
      const file = fileNameFor(config, sync);
      const meta = await claim(paths, sync, file);
      const done = meta.rendered;
      const stale =
        state.seq !== state.stateSeq ||
        !done ||
        done.seq !== state.seq ||
        done.file !== file ||
        done.format !== config.format ||
        done.fields.join('\n') !== sync.fields.join('\n') ||
        !(await fileExists(join(paths.directory, file)));
      if (stale) await renderSnapshot(paths, state, meta, config, sync, ctx);
    } catch (error) {
      states.delete(paths.stateDir);
      throw fsFailure(error, paths.directory);
    }
  });
};

const fileExists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );

/**
 * Journal the batch (every row confirmed once it is on disk: a file refuses nothing), then
 * re-render the snapshot if that is cheap now. A render that fails or is stopped costs nothing:
 * the batch is safe in the journal and the next render shows it.
 */
export const sync: DestinationSync<FileConfig> = async ({ config, sync, batch }, ctx) => {
  const paths = syncPaths(config, sync.id);
  return exclusive(paths.stateDir, async () => {
    if (ctx.signal.aborted) throw new TransientError('the run was stopped', { retryAfterMs: 0 });
    let state: SyncState;
    try {
      state = await stateOf(paths, ctx);
      if (batch.length > 0) await appendBatch(state, batch);
    } catch (error) {
      states.delete(paths.stateDir);
      throw fsFailure(error, paths.directory);
    }
    const results = batch.map((r): RowResult => ({ id: r.id, status: 'ok' }));
    if (state.seq !== state.stateSeq && shouldRender(state)) {
      try {
        const meta = (await readMeta(paths.meta)) ?? {
          sync: sync.id,
          claim: fileNameFor(config, sync),
        };
        await renderSnapshot(paths, state, meta, config, sync, ctx);
      } catch (error) {
        const failure = fsFailure(error, paths.directory);
        if (!(failure instanceof ConfigError || failure instanceof TransientError)) throw error;
        states.delete(paths.stateDir);
        ctx.log.warn(
          'file destination: the snapshot was not re-rendered; the next render shows this batch',
          {
            reason: failure.message,
          },
        );
      }
    }
    return results;
  });
};
