/**
 * The file destination's transport: the folder. Everything here is about putting bytes on disk
 * so that no crash leaves a file half-written where anyone can see it (README.md, "How the
 * file stays whole"):
 * - each sync keeps its state in `<directory>/.audiencehub/<sync>/`: `state.jsonl` (every row the
 *   destination holds, sorted by id), `journal.jsonl` (the batches since, one line each, fsynced
 *   before a batch is confirmed) and `meta.json` (which file it writes, and what it last rendered);
 * - a file is only ever replaced whole: written beside it, fsynced, renamed over it, its folder
 *   fsynced. `*.tmp` files are such writes a crash interrupted; nothing refers to them.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import {
  ConfigError,
  TransientError,
  z,
  type DestinationCheck,
  type PluginContext,
  type SyncRow,
} from 'audiencehub/sdk';

const PLACEHOLDER = /\{([^}]*)\}/g;
const KNOWN_PLACEHOLDERS = new Set(['segment', 'sync']);

export const FileConfig = z.object({
  /** The folder the files go to, created if missing; relative to the hub's working directory. */
  directory: z.string().trim().min(1, 'the folder to write to'),
  format: z.enum(['csv', 'jsonl']).default('csv'),
  /** The file's name without its extension; `{segment}` (a slug) and `{sync}` are replaced. */
  fileName: z
    .string()
    .min(1)
    .max(120)
    .regex(/^[^/\\\0]+$/, 'a file name, not a path')
    .refine(
      (name) => [...name.matchAll(PLACEHOLDER)].every((m) => KNOWN_PLACEHOLDERS.has(m[1]!)),
      'the only placeholders are {segment} and {sync}',
    )
    .refine((name) => !name.startsWith('.'), 'a name starting with a dot would be hidden')
    .default('{segment}'),
});
export type FileConfig = z.infer<typeof FileConfig>;

/** Where a sync's files live. */
export interface SyncPaths {
  directory: string;
  /** `<directory>/.audiencehub/<sync>` */
  stateDir: string;
  state: string;
  journal: string;
  meta: string;
}

export const STATE_ROOT = '.audiencehub';

/** A sync id as a folder name: as it is when it is safe (a uuid), else a digest of it. */
export function syncFolderName(syncId: string): string {
  if (/^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$/.test(syncId)) return syncId;
  return `sync-${createHash('sha256').update(syncId).digest('hex').slice(0, 32)}`;
}

export function syncPaths(config: FileConfig, syncId: string): SyncPaths {
  const directory = resolve(config.directory);
  const stateDir = join(directory, STATE_ROOT, syncFolderName(syncId));
  return {
    directory,
    stateDir,
    state: join(stateDir, 'state.jsonl'),
    journal: join(stateDir, 'journal.jsonl'),
    meta: join(stateDir, 'meta.json'),
  };
}

// ---------------------------------------------------------------------------------------------
// Errors

const CONFIG_CODES = new Set([
  'EACCES',
  'EPERM',
  'EROFS',
  'ENOTDIR',
  'EEXIST',
  'EISDIR',
  'ENAMETOOLONG',
  'ELOOP',
  'ENOENT',
]);

const codeOf = (error: unknown) => {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
};

/** Why the folder cannot be written, in words an admin can act on. */
export function describeFsError(error: unknown, directory: string): string {
  const code = codeOf(error);
  switch (code) {
    case 'EACCES':
    case 'EPERM':
      return `Permission denied: the hub's process (user ${process.getuid?.() ?? '?'}) cannot write in ${directory}.`;
    case 'EROFS':
      return `${directory} is on a read-only file system.`;
    case 'ENOTDIR':
    case 'EEXIST':
      return `${directory}, or a folder above it, is a file, not a folder.`;
    case 'ENOSPC':
    case 'EDQUOT':
      return `No space left on the device holding ${directory}.`;
    default:
      return `Cannot write in ${directory}: ${code ?? (error instanceof Error ? error.message : String(error))}.`;
  }
}

/**
 * A file system failure as one of the SDK's kinds: what the admin must fix (permissions, a
 * read-only disk, a file where the folder should be) is a ConfigError; what may pass (a full
 * disk, too many open files, an I/O error) is transient. Anything without a code is a bug and
 * stays as it is.
 */
export function fsFailure(error: unknown, directory: string): unknown {
  const code = codeOf(error);
  if (!code || error instanceof ConfigError || error instanceof TransientError) return error;
  const message = describeFsError(error, directory);
  return CONFIG_CODES.has(code) ? new ConfigError(message) : new TransientError(message);
}

// ---------------------------------------------------------------------------------------------
// Durable writes

/** fsync a folder, so the renames and creations in it survive a power cut. */
async function syncFolder(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } catch (error) {
    // Some platforms (Windows) cannot fsync a folder; their renames are durable on their own.
    if (codeOf(error) !== 'EPERM' && codeOf(error) !== 'EISDIR') throw error;
  } finally {
    await handle.close();
  }
}

/** Create a folder and those above it, durably: each new entry's parent is fsynced. */
async function makeFolder(path: string): Promise<void> {
  const first = await mkdir(path, { recursive: true });
  if (first === undefined) return;
  for (let folder = path; ; folder = dirname(folder)) {
    await syncFolder(dirname(folder));
    if (folder === first) break;
  }
}

/** Replace `path` with `content` whole: temp file, fsync, rename, fsync the folder. */
export async function writeAtomically(path: string, content: string): Promise<void> {
  const temp = `${path}.tmp`;
  const handle = await open(temp, 'w');
  try {
    await handle.writeFile(content);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temp, path);
  await syncFolder(dirname(path));
}

/** Buffered writes to a new file, fsynced on close. */
class Output {
  private chunks: string[] = [];
  private size = 0;
  private constructor(
    readonly path: string,
    private handle: Awaited<ReturnType<typeof open>>,
  ) {}

  static async create(path: string): Promise<Output> {
    return new Output(path, await open(path, 'w'));
  }

  /** Buffer `text`; answers a promise only when the buffer was due to be written out. */
  write(text: string): Promise<void> | undefined {
    this.chunks.push(text);
    this.size += text.length;
    return this.size >= 1 << 20 ? this.flush() : undefined;
  }

  private async flush(): Promise<void> {
    if (this.chunks.length === 0) return;
    const text = this.chunks.join('');
    this.chunks = [];
    this.size = 0;
    await this.handle.writeFile(text);
  }

  /** Flush, optionally overwrite the start of the file, fsync and close. */
  async finish(head?: string): Promise<void> {
    try {
      await this.flush();
      if (head !== undefined) await this.handle.write(head, 0, 'utf8');
      await this.handle.sync();
    } finally {
      await this.handle.close();
    }
  }

  /** Give up: close and delete the file. */
  async discard(): Promise<void> {
    await this.handle.close().catch(() => {});
    await rm(this.path, { force: true });
  }
}

/**
 * The complete lines of a file (without their newline) and the offset just after each, a chunk
 * of lines at a time. Bytes after the last newline are never yielded.
 */
async function* lines(path: string): AsyncGenerator<{ text: string; end: number }[]> {
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(1 << 20);
    let carry = Buffer.alloc(0);
    let offset = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      const chunk = carry.length ? Buffer.concat([carry, buffer.subarray(0, bytesRead)]) : buffer;
      const size = carry.length + bytesRead;
      const found: { text: string; end: number }[] = [];
      let start = 0;
      for (let nl = chunk.indexOf(10); nl !== -1 && nl < size; nl = chunk.indexOf(10, start)) {
        offset += nl - start + 1;
        found.push({ text: chunk.toString('utf8', start, nl), end: offset });
        start = nl + 1;
      }
      carry = Buffer.from(chunk.subarray(start, size));
      if (found.length > 0) yield found;
    }
  } finally {
    await handle.close();
  }
}

const exists = (path: string) =>
  stat(path).then(
    () => true,
    (error: unknown) => {
      if (codeOf(error) === 'ENOENT') return false;
      throw error;
    },
  );

// ---------------------------------------------------------------------------------------------
// The journal and the state

/** A sync's state as found on disk (and kept up to date by the calls of a run). */
export interface SyncState {
  paths: SyncPaths;
  /** The last batch journaled. */
  seq: number;
  /** The last batch folded into state.jsonl. */
  stateSeq: number;
  /** Rows in state.jsonl. */
  stateRows: number;
  /** Rows in the journal's batches after stateSeq. */
  pendingRows: number;
  /** The journal's length: a failed append is cut back to it. */
  journalBytes: number;
  /** What identifies the files this state was read from (another process may write them). */
  stamp: string;
}

// The state file opens with a fixed-width head, rewritten in place once the rows are counted.
const HEAD_WIDTH = 64;
const head = (seq: number, rows: number) =>
  `${JSON.stringify({ v: 1, seq, rows }).padEnd(HEAD_WIDTH - 1)}\n`;

async function readHead(path: string): Promise<{ seq: number; rows: number }> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    if (codeOf(error) === 'ENOENT') return { seq: 0, rows: 0 };
    throw error;
  }
  try {
    const buffer = Buffer.alloc(HEAD_WIDTH);
    await handle.read(buffer, 0, HEAD_WIDTH, 0);
    const parsed = JSON.parse(buffer.toString('utf8')) as { v: number; seq: number; rows: number };
    return { seq: parsed.seq, rows: parsed.rows };
  } finally {
    await handle.close();
  }
}

/** What identifies the on-disk files: the journal's size and the state file's identity. */
async function stampOf(paths: SyncPaths): Promise<string> {
  const [journal, state] = await Promise.all([
    stat(paths.journal).catch(() => undefined),
    stat(paths.state).catch(() => undefined),
  ]);
  return `${journal?.size ?? -1}:${state?.ino ?? -1}:${state?.mtimeMs ?? -1}`;
}

/** Is `state` still what is on disk (no other process wrote since)? */
export const isCurrent = async (state: SyncState) => (await stampOf(state.paths)) === state.stamp;

interface JournalEntry {
  seq: number;
  rows: [id: string, action: SyncRow['action'], fields: Record<string, unknown>][];
}

function parseEntry(text: string): JournalEntry | undefined {
  try {
    const entry = JSON.parse(text) as JournalEntry;
    return Number.isInteger(entry?.seq) && Array.isArray(entry.rows) ? entry : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Open a sync's state, repairing what a crash left: `*.tmp` files are deleted and a journal
 * line without its newline (or unreadable, or out of sequence) is cut off with everything after
 * it. Such a line is a batch whose append never finished, so never confirmed: the engine sends
 * it again. Journal lines already folded into state.jsonl (a crash came between the two steps)
 * are skipped.
 */
export async function openState(paths: SyncPaths, log: PluginContext['log']): Promise<SyncState> {
  await makeFolder(paths.stateDir);
  for (const name of await readdir(paths.stateDir)) {
    if (name.endsWith('.tmp')) await rm(join(paths.stateDir, name), { force: true });
  }
  const { seq: stateSeq, rows: stateRows } = await readHead(paths.state);
  let seq = stateSeq;
  let last: number | undefined;
  let pendingRows = 0;
  let valid = 0;
  if (await exists(paths.journal)) {
    read: for await (const chunk of lines(paths.journal)) {
      for (const line of chunk) {
        const entry = parseEntry(line.text);
        if (!entry || (last !== undefined && entry.seq !== last + 1)) break read;
        if (entry.seq > stateSeq) {
          if (entry.seq !== seq + 1) break read;
          seq = entry.seq;
          pendingRows += entry.rows.length;
        }
        last = entry.seq;
        valid = line.end;
      }
    }
    const { size } = await stat(paths.journal);
    if (size > valid) {
      log.warn('file destination: cut an unfinished batch off the journal', {
        bytes: size - valid,
      });
      await cut(paths.journal, valid);
    }
  } else {
    await (await open(paths.journal, 'a')).close();
    await syncFolder(paths.stateDir);
  }
  const state = { paths, seq, stateSeq, stateRows, pendingRows, journalBytes: valid, stamp: '' };
  state.stamp = await stampOf(paths);
  return state;
}

/** Truncate a file to `length`, durably. */
async function cut(path: string, length: number): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    await handle.truncate(length);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Append a batch to the journal as one line and fsync it: once this returns, the batch survives
 * a crash. A failed append is cut back, so the journal never holds a piece of a line followed
 * by a whole one.
 */
export async function appendBatch(state: SyncState, batch: SyncRow[]): Promise<void> {
  const entry: JournalEntry = {
    seq: state.seq + 1,
    rows: batch.map((r) => [r.id, r.action, r.fields]),
  };
  const line = `${JSON.stringify(entry)}\n`;
  const handle = await open(state.paths.journal, 'a');
  try {
    await handle.writeFile(line);
    await handle.sync();
  } catch (error) {
    await cut(state.paths.journal, state.journalBytes).catch(() => {});
    throw error;
  } finally {
    await handle.close();
  }
  state.seq = entry.seq;
  state.pendingRows += batch.length;
  state.journalBytes += Buffer.byteLength(line);
  state.stamp = await stampOf(state.paths);
}

/** The journal's changes after the state, by row id (null: removed), the last one winning. */
async function pendingChanges(
  state: SyncState,
): Promise<Map<string, Record<string, unknown> | null>> {
  const changes = new Map<string, Record<string, unknown> | null>();
  if (state.seq === state.stateSeq) return changes;
  read: for await (const chunk of lines(state.paths.journal)) {
    for (const line of chunk) {
      if (line.end > state.journalBytes) break read;
      const entry = parseEntry(line.text);
      if (!entry || entry.seq <= state.stateSeq) continue;
      for (const [id, action, fields] of entry.rows) {
        changes.set(id, action === 'remove' ? null : fields);
      }
    }
  }
  return changes;
}

/** How a snapshot is written: its first bytes, then one record per row. */
export interface SnapshotFormat {
  header: string;
  record(fields: Record<string, unknown>): string;
}

/**
 * Fold the journal into the state and write the snapshot, in one pass: the sorted state file
 * and the sorted pending changes are merged, each row written to the new state file and as a
 * record of the snapshot. Then, in this order, so that a crash between any two steps leaves
 * files the next `openState` reads right: the snapshot is renamed into place (the journal still
 * holds what it shows), the new state is renamed into place (its head names the last batch it
 * holds, so the journal's lines are skipped), and the journal is emptied.
 */
export async function render(
  state: SyncState,
  snapshot: { path: string; format: SnapshotFormat },
  signal: AbortSignal,
): Promise<void> {
  const { paths } = state;
  const changes = await pendingChanges(state);
  const ids = [...changes.keys()].sort();
  const stateOut = await Output.create(`${paths.state}.tmp`);
  const snapshotOut = await Output.create(join(paths.stateDir, 'snapshot.tmp'));
  let rows = 0;
  // Called once per row; answers a promise only when a buffer is being written out, so the
  // loop below awaits once a megabyte, not once a row.
  const emit = (id: string, fields: Record<string, unknown>, line?: string) => {
    if (++rows % 10_000 === 0 && signal.aborted) {
      throw new TransientError('the run was stopped', { retryAfterMs: 0 });
    }
    const a = stateOut.write(`${line ?? JSON.stringify([id, fields])}\n`);
    const b = snapshotOut.write(snapshot.format.record(fields));
    return a || b ? Promise.all([a, b]) : undefined;
  };
  try {
    await stateOut.write(head(0, 0));
    await snapshotOut.write(snapshot.format.header);
    let next = 0;
    const emitChangesBefore = async (id: string | undefined) => {
      for (; next < ids.length && (id === undefined || ids[next]! < id); next++) {
        const fields = changes.get(ids[next]!);
        if (fields) await emit(ids[next]!, fields);
      }
    };
    if (await exists(paths.state)) {
      let first = true;
      for await (const chunk of lines(paths.state)) {
        for (const line of chunk) {
          if (first) {
            first = false;
            continue;
          }
          const [id, fields] = JSON.parse(line.text) as [string, Record<string, unknown>];
          if (next < ids.length && ids[next]! <= id) {
            await emitChangesBefore(id);
            if (ids[next] === id) {
              const changed = changes.get(id);
              next++;
              if (changed) await emit(id, changed);
              continue;
            }
          }
          const writing = emit(id, fields, line.text);
          if (writing) await writing;
        }
      }
    }
    await emitChangesBefore(undefined);
    await stateOut.finish(head(state.seq, rows));
    await snapshotOut.finish();
  } catch (error) {
    await Promise.all([stateOut.discard(), snapshotOut.discard()]);
    throw error;
  }
  await rename(snapshotOut.path, snapshot.path);
  await syncFolder(paths.directory);
  await rename(stateOut.path, paths.state);
  await syncFolder(paths.stateDir);
  await cut(paths.journal, 0);
  state.stateSeq = state.seq;
  state.stateRows = rows;
  state.pendingRows = 0;
  state.journalBytes = 0;
  state.stamp = await stampOf(paths);
}

// ---------------------------------------------------------------------------------------------
// Which sync writes which file

/** meta.json: the file a sync claims, and what it last rendered there. */
export interface SyncMeta {
  sync: string;
  /** The file name this sync writes now. */
  claim: string;
  rendered?: { file: string; format: string; fields: string[]; seq: number };
}

export async function readMeta(path: string): Promise<SyncMeta | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as SyncMeta;
  } catch (error) {
    // A meta.json is only ever replaced whole; an unreadable one is treated as absent, and
    // rewritten by the next render.
    if (codeOf(error) === 'ENOENT' || error instanceof SyntaxError) return undefined;
    throw error;
  }
}

export const writeMeta = (paths: SyncPaths, meta: SyncMeta) =>
  writeAtomically(paths.meta, `${JSON.stringify(meta)}\n`);

/** Every sync's meta.json in a directory, by state folder. */
export async function claims(directory: string): Promise<Map<string, SyncMeta>> {
  const root = join(directory, STATE_ROOT);
  const found = new Map<string, SyncMeta>();
  let folders: string[];
  try {
    folders = await readdir(root);
  } catch (error) {
    if (codeOf(error) === 'ENOENT') return found;
    throw error;
  }
  for (const folder of folders) {
    const meta = await readMeta(join(root, folder, 'meta.json')).catch(() => undefined);
    if (meta) found.set(folder, meta);
  }
  return found;
}

// ---------------------------------------------------------------------------------------------
// Check

/**
 * Passes when the folder exists (or can be created) and a file can be written in it, fsynced,
 * renamed and deleted — what every batch does.
 */
export const check: DestinationCheck<FileConfig> = async ({ config }) => {
  const directory = resolve(config.directory);
  try {
    const info = await stat(directory).catch((error: unknown) => {
      if (codeOf(error) === 'ENOENT') return undefined;
      throw error;
    });
    if (info && !info.isDirectory())
      return { ok: false, reason: `${directory} is a file, not a folder.` };
    await mkdir(join(directory, STATE_ROOT), { recursive: true });
    const probe = join(directory, STATE_ROOT, `check-${process.pid}-${Date.now()}`);
    try {
      await writeAtomically(probe, 'audiencehub write check\n');
    } finally {
      await rm(probe, { force: true });
      await rm(`${probe}.tmp`, { force: true });
    }
    return { ok: true };
  } catch (error) {
    return { ok: false, reason: describeFsError(error, directory) };
  }
};
