/**
 * The `events` stream: GA4 BigQuery export files (NDJSON, one event a line, optionally gzipped)
 * read line by line, in name order, with checkpoints that resume in the middle of a file.
 *
 * The cursor: `{ files: { <path under the folder>: { lines, offset, size, tail, done } } }`.
 * `lines` lines of the file were read (`offset` bytes of a plain file); `size` and `tail` (a
 * digest of the 64 bytes before `size`) are the file as it was then. On the next read:
 * - same size and tail, `done`: nothing to read;
 * - grown past `size` with the same tail (appended to), or not `done`: it goes on from there —
 *   a plain file from `offset`, a gzipped one from its start, skipping `lines` lines (gzip
 *   cannot seek; appended gzip members decompress as one stream);
 * - otherwise (shrunk, rewritten): read again from its first line; records keep their ids, so
 *   nothing is stored twice.
 */
import { createHash } from 'node:crypto';
import { createReadStream, type ReadStream } from 'node:fs';
import { open, readdir, stat } from 'node:fs/promises';
import { basename, join, relative, sep } from 'node:path';
import { createGunzip, type Gunzip } from 'node:zlib';
import {
  ConfigError,
  TransientError,
  type Cursor,
  type PluginContext,
  type SourceMessage,
} from 'audiencehub/sdk';
import type { GaConfig } from './client.ts';
import { parseExportLine, toEventRecord } from './export-events.ts';

/** Names an export file has: `.ndjson`, `.jsonl` or `.json`, each maybe `.gz`. */
export const EXPORT_FILE = /\.(ndjson|jsonl|json)(\.gz)?$/i;
const TAIL_BYTES = 64;

export interface ExportFile {
  /** The path under the configured folder (the file's name when `files` is a file). */
  name: string;
  path: string;
  size: number;
  gzip: boolean;
}

interface FileMark {
  lines: number;
  offset: number;
  size: number;
  tail: string;
  done: boolean;
}

/** The export files `files` names, sorted by name: the file itself, or a folder's, recursively. */
export async function listExportFiles(files: string): Promise<ExportFile[]> {
  let info;
  try {
    info = await stat(files);
  } catch (error) {
    const code = (error as { code?: string }).code;
    throw new ConfigError(
      code === 'ENOENT'
        ? `files: ${files} does not exist`
        : `files: ${files} cannot be read (${code ?? 'error'})`,
    );
  }
  const found: ExportFile[] = [];
  const add = (path: string, name: string, size: number) =>
    found.push({ name, path, size, gzip: /\.gz$/i.test(name) });
  if (info.isFile()) {
    add(files, basename(files), info.size);
    return found;
  }
  const walk = async (dir: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (error) {
      throw new ConfigError(
        `files: ${dir} cannot be read (${(error as { code?: string }).code ?? 'error'})`,
      );
    }
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile() && EXPORT_FILE.test(entry.name)) {
        add(path, relative(files, path).split(sep).join('/'), (await stat(path)).size);
      }
    }
  };
  await walk(files);
  return found.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** A digest of the bytes just before `size`: tells an appended file from a rewritten one. */
async function tailOf(path: string, size: number): Promise<string> {
  const start = Math.max(0, size - TAIL_BYTES);
  const buffer = Buffer.alloc(size - start);
  const handle = await open(path, 'r');
  try {
    await handle.read(buffer, 0, buffer.length, start);
  } finally {
    await handle.close();
  }
  return createHash('sha256').update(buffer).digest('hex').slice(0, 16);
}

interface Line {
  text: string;
  /** Byte offset after the line and its newline (plain files only). */
  end: number;
  /** Ended by a newline; false for a last line without one. */
  terminated: boolean;
}

/**
 * The lines of a file from byte `start` (plain) or its beginning (gzip), up to `size` bytes of
 * the file as listed, so a file still growing is read to a known point.
 */
async function* linesOf(file: ExportFile, start: number): AsyncGenerator<Line> {
  if (file.size === 0 || (!file.gzip && start >= file.size)) return;
  const raw: ReadStream = createReadStream(file.path, {
    start: file.gzip ? 0 : start,
    end: file.size - 1,
  });
  let source: ReadStream | Gunzip = raw;
  if (file.gzip) {
    const gunzip = createGunzip();
    raw.on('error', (e) => gunzip.destroy(e));
    source = raw.pipe(gunzip);
  }
  let pending: Buffer = Buffer.alloc(0);
  let position = file.gzip ? 0 : start;
  try {
    for await (const chunk of source as AsyncIterable<Buffer>) {
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      let from = 0;
      for (;;) {
        const nl = pending.indexOf(0x0a, from);
        if (nl < 0) break;
        const end = nl > from && pending[nl - 1] === 0x0d ? nl - 1 : nl;
        position += nl + 1 - from;
        yield { text: pending.toString('utf8', from, end), end: position, terminated: true };
        from = nl + 1;
      }
      pending = pending.subarray(from);
    }
  } finally {
    raw.destroy();
    if (source !== raw) source.destroy();
  }
  if (pending.length > 0) {
    yield { text: pending.toString('utf8'), end: position + pending.length, terminated: false };
  }
}

function parseCursor(cursor: Cursor | null, ctx: PluginContext): Record<string, FileMark> {
  if (cursor === null) return {};
  const files = (cursor as { files?: unknown }).files;
  const ok =
    files &&
    typeof files === 'object' &&
    Object.values(files).every(
      (m: FileMark) =>
        Number.isInteger(m?.lines) &&
        Number.isInteger(m.offset) &&
        Number.isInteger(m.size) &&
        typeof m.tail === 'string' &&
        typeof m.done === 'boolean',
    );
  if (!ok) {
    ctx.log.warn('Google Analytics export: unreadable checkpoint, reading every file again');
    return {};
  }
  return { ...(files as Record<string, FileMark>) };
}

const stopped = () => new TransientError('the run was stopped', { retryAfterMs: 0 });

/** Reads the `events` stream from a cursor (null: every file from its first line). */
export async function* readExportEvents(
  config: GaConfig,
  cursor: Cursor | null,
  ctx: PluginContext,
): AsyncGenerator<SourceMessage> {
  if (!config.files) throw new ConfigError('files: the events stream reads BigQuery export files');
  const before = parseCursor(cursor, ctx);
  const list = await listExportFiles(config.files);
  // Marks of files no longer there are dropped: the cursor stays as small as the folder.
  const marks: Record<string, FileMark> = {};
  for (const f of list) if (before[f.name]) marks[f.name] = before[f.name]!;
  const checkpoint = (): SourceMessage => ({
    type: 'checkpoint',
    cursor: { files: structuredClone(marks) } as unknown as Cursor,
  });
  let skipped = 0;
  let unsaved = true;

  for (const file of list) {
    const mark = marks[file.name];
    const tail = await tailOf(file.path, file.size);
    let lines = 0;
    let offset = 0;
    if (mark) {
      const same = file.size >= mark.size && (await tailOf(file.path, mark.size)) === mark.tail;
      if (same && mark.done && file.size === mark.size) continue;
      if (same) {
        lines = mark.lines;
        offset = mark.offset;
      } else {
        ctx.log.warn(
          'Google Analytics export: a file changed since it was read; reading it again',
          {
            file: file.name,
          },
        );
      }
    }
    const skipLines = file.gzip ? lines : 0;
    let seen = 0;
    let sinceCheckpoint = 0;
    try {
      for await (const line of linesOf(file, file.gzip ? 0 : offset)) {
        if (ctx.signal.aborted) throw stopped();
        if (file.gzip && seen < skipLines) {
          seen++;
          continue;
        }
        let parsed: unknown;
        let bad: string | undefined;
        if (line.text.trim() === '') {
          parsed = undefined;
        } else {
          try {
            parsed = parseExportLine(line.text);
          } catch {
            bad = 'not JSON';
          }
        }
        // A last line without its newline that does not parse is still being written.
        if (!line.terminated && bad) break;
        lines++;
        offset = file.gzip ? 0 : line.end;
        if (parsed !== undefined || bad) {
          const result = bad ? { error: bad } : toEventRecord(parsed);
          if ('error' in result) {
            skipped++;
            ctx.log.warn('Google Analytics export: a line is not an event; skipped', {
              file: file.name,
              line: lines,
              reason: result.error,
            });
          } else {
            yield { type: 'record', data: result.data };
          }
        }
        unsaved = true;
        if (++sinceCheckpoint >= config.checkpointEvery) {
          marks[file.name] = { lines, offset, size: file.size, tail, done: false };
          yield checkpoint();
          sinceCheckpoint = 0;
        }
      }
    } catch (error) {
      throw readFailure(file, lines, error);
    }
    marks[file.name] = { lines, offset, size: file.size, tail, done: true };
    yield checkpoint();
    unsaved = false;
  }
  if (skipped > 0) ctx.log.info('Google Analytics export: lines skipped', { skipped });
  // Every read ends with a checkpoint; after a file's own, another would say nothing new.
  if (unsaved) yield checkpoint();
}

/** What a failure while reading a file means: gone or cut short passes, a broken file does not. */
function readFailure(file: ExportFile, lines: number, error: unknown): Error {
  if (error instanceof TransientError || error instanceof ConfigError) return error;
  const code = (error as { code?: string }).code ?? '';
  const why = code || (error instanceof Error ? error.message : String(error));
  if (code === 'Z_DATA_ERROR' || code === 'EACCES' || code === 'EISDIR') {
    return new ConfigError(`files: ${file.name} cannot be read past line ${lines} (${why}).`);
  }
  if (code === 'Z_BUF_ERROR' || code === 'ENOENT' || code === 'EIO' || code === 'EBUSY') {
    // Cut short (still being copied in) or moved away meanwhile: the next read sees it whole.
    return new TransientError(
      `Google Analytics export: ${file.name} could not be read past line ${lines} (${why}); trying again later.`,
    );
  }
  return error instanceof Error ? error : new Error(why);
}
