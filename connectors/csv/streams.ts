/**
 * The CSV connector's streams: one per file. `read` yields each row as a record keyed by its
 * content and checkpoints a position in the file, so that a read resumes after its last
 * checkpoint and a later read finds only what was appended (README.md, "Reading again").
 */
import {
  ConfigError,
  TransientError,
  type Cursor,
  type PluginContext,
  type SourceCheck,
  type SourceDiscover,
  type SourceMessage,
  type SourceRead,
  type SourceStream,
} from 'audiencehub/sdk';
import {
  csvFiles,
  fingerprint,
  rowsOf,
  snapshotOf,
  START,
  type CsvConfig,
  type CsvFile,
  type Position,
  type Snapshot,
} from './client.ts';
import { columnsOf, inferType, keyOf, recordOf, SAMPLE_ROWS, type Columns } from './fields.ts';

/** Rows between checkpoints: a few MB of records the hub stores in one transaction. */
export const CHECKPOINT_ROWS = 10_000;

/** Where a read of a file stopped, as its checkpoints carry it. */
export interface FileCursor {
  /** The file's own name: a stream whose file was replaced by another is read afresh. */
  file: string;
  /** The file when the read began. */
  size: number;
  mtimeMs: number;
  gzip: boolean;
  /** Just after the last row read (bytes of the decompressed content, for gzip). */
  bytes: number;
  line: number;
  /** Records read so far, for the logs. */
  rows: number;
  /** The read reached the end of the file. */
  end: boolean;
  /** Plain files: a fingerprint of the bytes read, to tell an append from a rewrite. */
  digest?: string;
}

export const check: SourceCheck<CsvConfig> = async ({ config }) => {
  try {
    for (const file of await csvFiles(config)) await headerOf(file, await snapshotOf(file), config);
    return { ok: true };
  } catch (error) {
    if (error instanceof ConfigError || error instanceof TransientError) {
      return { ok: false, reason: error.message };
    }
    return { ok: false, reason: `Cannot read ${config.path}: ${(error as Error).message}` };
  }
};

export const discover: SourceDiscover<CsvConfig> = async ({ config }) => {
  const streams: SourceStream[] = [];
  for (const file of await csvFiles(config)) {
    const snapshot = await snapshotOf(file);
    const { delimiter, encoding, quote } = config;
    const key = JSON.stringify([file.path, snapshot, delimiter, encoding, quote]);
    let stream = described.get(key);
    if (!stream) {
      stream = await describeFile(file, snapshot, config);
      described.set(key, stream);
      if (described.size > DESCRIBED_MAX) described.delete(described.keys().next().value!);
    }
    streams.push({ ...stream, fields: stream.fields.map((f) => ({ ...f })) });
  }
  return streams;
};

/**
 * Files described lately, by path, size, modification time and parsing options: the hub
 * discovers a source's streams before each read, and a folder of many files would otherwise
 * have its samples parsed again every time.
 */
const described = new Map<string, SourceStream>();
const DESCRIBED_MAX = 1_000;

/** A file's stream: its columns, with types guessed from a sample of its rows. */
async function describeFile(
  file: CsvFile,
  snapshot: Snapshot,
  config: CsvConfig,
): Promise<SourceStream> {
  let columns: Columns | undefined;
  let values: string[][] = [];
  let sampled = 0;
  for await (const row of rowsOf(file, snapshot, config)) {
    if (!columns) {
      columns = columnsOf(row.cells, file.name);
      values = columns.names.map(() => []);
      continue;
    }
    if (!recordOf(columns, row.cells, { file: file.name, line: row.line })) continue;
    columns.names.forEach((_, i) => values[i]!.push(row.cells[i]!));
    if (++sampled >= SAMPLE_ROWS) break;
  }
  if (!columns) throw noHeader(file);
  return {
    name: file.stream,
    description: `${file.name}${snapshot.gzip ? ' (gzip)' : ''}`,
    fields: columns.names.map((name, i) => ({ name, type: inferType(values[i]!) })),
    // Rows have no identity of their own: each record's `key` is a digest of its content.
    primaryKey: [],
    // Incremental by position in the file, not by a field: there is no cursor field.
    modes: ['full_refresh', 'incremental'],
  };
}

export const read: SourceRead<CsvConfig> = async function* ({ config, stream, cursor }, ctx) {
  const files = await csvFiles(config);
  const file = files.find((f) => f.stream === stream.name);
  if (!file) {
    throw new ConfigError(
      `${config.path} no longer holds a file for the stream "${stream.name}": was it renamed or removed?`,
    );
  }
  const snapshot = await snapshotOf(file);
  const previous = asFileCursor(cursor);
  const start = await startOf(file, snapshot, previous, ctx);
  if (start === 'read') {
    // Read to its end and unchanged since: nothing new.
    yield { type: 'checkpoint', cursor: previous as unknown as Cursor };
    return;
  }

  let columns: Columns | undefined;
  let from: Position = START;
  let rows = 0;
  if (start !== 'afresh') {
    const header = await headerOf(file, snapshot, config);
    // A position inside the header is not one this connector wrote: start over.
    if (start.bytes >= header.end) {
      columns = header.columns;
      from = { bytes: start.bytes, line: start.line };
      rows = start.rows;
    }
  }
  if (columns) warnIfColumnsChanged(stream, columns, file, ctx);
  let last = from;
  let pending = 0;
  const checkpoint = async (end: boolean): Promise<SourceMessage> => {
    const at = end && !snapshot.gzip ? { ...last, bytes: snapshot.size } : last;
    const position: FileCursor = {
      file: file.name,
      size: snapshot.size,
      mtimeMs: snapshot.mtimeMs,
      gzip: snapshot.gzip,
      bytes: at.bytes,
      line: at.line,
      rows,
      end,
    };
    if (!snapshot.gzip) position.digest = await fingerprint(file, at.bytes);
    pending = 0;
    return { type: 'checkpoint', cursor: position as unknown as Cursor };
  };

  try {
    for await (const row of rowsOf(file, snapshot, config, from)) {
      if (ctx.signal.aborted) throw new TransientError('the run was stopped', { retryAfterMs: 0 });
      if (!columns) {
        columns = columnsOf(row.cells, file.name);
        warnIfColumnsChanged(stream, columns, file, ctx);
        last = { bytes: row.end, line: row.line };
        continue;
      }
      const data = recordOf(columns, row.cells, { file: file.name, line: row.line });
      last = { bytes: row.end, line: row.line };
      if (!data) continue;
      rows++;
      pending++;
      yield { type: 'record', data, key: keyOf(columns, row.cells) };
      if (pending >= CHECKPOINT_ROWS) yield await checkpoint(false);
    }
  } catch (error) {
    // A broken row stops the read; the rows before it are kept, so once the file is fixed (and
    // so changed) it is read again from the start.
    if (pending > 0 && error instanceof ConfigError) yield await checkpoint(false);
    throw error;
  }
  if (!columns) throw noHeader(file);
  ctx.log.info('read to the end of the file', { file: file.name, rows });
  yield await checkpoint(true);
};

const noHeader = (file: CsvFile) =>
  new ConfigError(`${file.name} is empty: a CSV file starts with a header row.`);

/** The columns a file's header names, and the offset just past it. */
async function headerOf(
  file: CsvFile,
  snapshot: Snapshot,
  config: CsvConfig,
): Promise<{ columns: Columns; end: number }> {
  for await (const row of rowsOf(file, snapshot, config)) {
    return { columns: columnsOf(row.cells, file.name), end: row.end };
  }
  throw noHeader(file);
}

/**
 * Where a read starts, given the last checkpoint: `read` when the file was read to its end and
 * has not changed since, the checkpoint itself when the file is unchanged or has only grown
 * (plain files), and `afresh` when it is new or was changed in any other way.
 */
async function startOf(
  file: CsvFile,
  now: Snapshot,
  previous: FileCursor | undefined,
  ctx: PluginContext,
): Promise<FileCursor | 'read' | 'afresh'> {
  if (!previous || previous.bytes === 0) return 'afresh';
  const log = { file: file.name, rows: previous.rows };
  if (previous.file !== file.name) {
    ctx.log.info('another file now stands for the stream: reading it from the start', log);
    return 'afresh';
  }
  if (
    now.size === previous.size &&
    now.mtimeMs === previous.mtimeMs &&
    now.gzip === previous.gzip
  ) {
    return previous.end ? 'read' : previous;
  }
  if (
    !now.gzip &&
    !previous.gzip &&
    now.size > previous.size &&
    previous.digest === (await fingerprint(file, previous.bytes))
  ) {
    ctx.log.info('the file grew: reading the rows appended to it', log);
    return previous;
  }
  ctx.log.info('the file changed since the last read: reading it again from the start', log);
  return 'afresh';
}

/** The cursor as this connector wrote it, or undefined (from the start) for anything else. */
function asFileCursor(cursor: Cursor | null): FileCursor | undefined {
  if (!cursor || typeof cursor !== 'object' || Array.isArray(cursor)) return undefined;
  const c = cursor as Record<string, Cursor>;
  const numbers = ['size', 'mtimeMs', 'bytes', 'line', 'rows'] as const;
  if (typeof c.file !== 'string' || typeof c.gzip !== 'boolean' || typeof c.end !== 'boolean') {
    return undefined;
  }
  if (!numbers.every((k) => typeof c[k] === 'number' && c[k] >= 0)) return undefined;
  if (c.digest !== undefined && typeof c.digest !== 'string') return undefined;
  return c as unknown as FileCursor;
}

function warnIfColumnsChanged(
  stream: SourceStream,
  columns: Columns,
  file: CsvFile,
  ctx: PluginContext,
) {
  const known = new Set(stream.fields.map((f) => f.name));
  const added = columns.names.filter((n) => !known.has(n));
  const gone = [...known].filter((n) => !columns.names.includes(n));
  if (added.length + gone.length > 0) {
    ctx.log.warn('the header differs from the discovered fields', { file: file.name, added, gone });
  }
}
