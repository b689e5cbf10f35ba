/**
 * The CSV connector's transport: the file system. Which files a configuration names, what each
 * one is (plain or gzip, its size, when it last changed), and its rows as a stream that holds
 * one chunk of the file at a time, each row with the byte offset just past it, so a read can
 * resume exactly where a checkpoint left it. Every failure leaves here as one of the SDK's
 * error kinds, naming the file and, for a broken row, its line.
 */
import { isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readdir, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { pipeline, Readable, Transform, type TransformCallback } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { CsvError, Parser } from 'csv-parse';
import { ConfigError, TransientError, z } from 'audiencehub/sdk';

export const CsvConfig = z
  .object({
    /**
     * A CSV file, or a folder whose `*.csv` and `*.csv.gz` files are each a stream. Relative to
     * the hub's working directory.
     */
    path: z.string().trim().min(1, 'a file or a folder to read'),
    /** What separates cells: `,` by default; `;` and a tab are common too. */
    delimiter: z
      .string()
      .min(1, 'a delimiter of at least one character')
      .max(8)
      .refine((d) => !/[\r\n]/.test(d), 'a delimiter cannot hold a line break')
      .default(','),
    /** `latin1` reads ISO-8859-1 files as Windows-1252, its superset (README.md, "Encodings"). */
    encoding: z.enum(['utf8', 'latin1']).default('utf8'),
    /** What encloses a cell holding the delimiter, a quote or a line break; empty: no quoting. */
    quote: z
      .string()
      .max(1, 'one character, or empty for none')
      .refine((q) => !/[\r\n]/.test(q), 'a quote cannot be a line break')
      .default('"'),
  })
  .refine((c) => c.quote === '' || !c.delimiter.includes(c.quote), {
    message: 'the quote cannot be part of the delimiter',
    path: ['quote'],
  });
export type CsvConfig = z.infer<typeof CsvConfig>;

/** One file the configuration names: a stream. */
export interface CsvFile {
  /** The stream's name: the file's name without `.csv` / `.csv.gz`. */
  stream: string;
  /** The file's own name, e.g. `orders.csv.gz`. */
  name: string;
  path: string;
}

/** What a file was when a read began; a read never goes past `size`. */
export interface Snapshot {
  size: number;
  mtimeMs: number;
  /** Starts with gzip's magic bytes (1f 8b), whatever its name says. */
  gzip: boolean;
}

/** A place in a file: just after a row (or at the start). */
export interface Position {
  /** The byte offset (in the decompressed content, for gzip). */
  bytes: number;
  /** The line the row before it ended on (0 at the start). */
  line: number;
}

export const START: Position = { bytes: 0, line: 0 };

/** One row as parsed: its cells, the offset just past it and the line it ends on. */
export interface Row {
  cells: string[];
  end: number;
  line: number;
}

/** In a folder, the files that are streams: `*.csv` and `*.csv.gz`, not hidden. */
const IN_FOLDER = /^(?!\.)(.+)\.csv(?:\.gz)?$/i;

/**
 * The files a configuration names, one per stream, in name order.
 *
 * @example
 * await csvFiles({ path: 'imports/' }) // [{ stream: 'orders', name: 'orders.csv.gz', path }]
 */
export async function csvFiles(config: Pick<CsvConfig, 'path'>): Promise<CsvFile[]> {
  const path = resolve(config.path);
  const found = await stat(path).catch((error: unknown) => {
    throw fsFailure(error, config.path);
  });
  if (found.isFile()) return [{ stream: streamName(basename(path)), name: basename(path), path }];
  if (!found.isDirectory()) throw new ConfigError(`${config.path} is neither a file nor a folder.`);

  const entries = await readdir(path, { withFileTypes: true }).catch((error: unknown) => {
    throw fsFailure(error, config.path);
  });
  const files: CsvFile[] = [];
  for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const match = IN_FOLDER.exec(entry.name);
    if (!match) continue;
    const full = join(path, entry.name);
    // A link to a file counts; a folder named like a file does not.
    const isFile = entry.isFile() || (entry.isSymbolicLink() && (await isFilePath(full)));
    if (!isFile) continue;
    const twin = files.find((f) => f.stream === match[1]);
    if (twin) {
      throw new ConfigError(
        `${twin.name} and ${entry.name} in ${config.path} would both be the stream "${match[1]}": keep one of them.`,
      );
    }
    files.push({ stream: match[1]!, name: entry.name, path: full });
  }
  if (files.length === 0) {
    throw new ConfigError(`${config.path} holds no .csv or .csv.gz file.`);
  }
  return files;
}

/** `orders.csv.gz` → `orders`, `export.2024.tsv` → `export.2024`, `people` → `people`. */
export function streamName(fileName: string): string {
  const name = fileName.replace(/\.gz$/i, '').replace(/\.[^.]*$/, '');
  return name || fileName;
}

const isFilePath = (path: string) =>
  stat(path).then(
    (s) => s.isFile(),
    () => false,
  );

/** The file's size, modification time and whether it is gzip. */
export async function snapshotOf(file: CsvFile): Promise<Snapshot> {
  try {
    const handle = await open(file.path, 'r');
    try {
      const { size, mtimeMs } = await handle.stat();
      const magic = Buffer.alloc(2);
      const { bytesRead } = await handle.read(magic, 0, 2, 0);
      return { size, mtimeMs, gzip: bytesRead === 2 && magic[0] === 0x1f && magic[1] === 0x8b };
    } finally {
      await handle.close();
    }
  } catch (error) {
    throw fsFailure(error, file.name);
  }
}

/**
 * Identifies the first `bytes` bytes of a plain file without reading all of them: a digest of
 * their first and last 64 KiB and their length. A file that only grew past `bytes` keeps it.
 */
export async function fingerprint(file: CsvFile, bytes: number): Promise<string> {
  const span = Math.min(bytes, 1 << 16);
  const head = Buffer.alloc(span);
  const tail = Buffer.alloc(span);
  try {
    const handle = await open(file.path, 'r');
    try {
      await handle.read(head, 0, span, 0);
      await handle.read(tail, 0, span, bytes - span);
    } finally {
      await handle.close();
    }
  } catch (error) {
    throw fsFailure(error, file.name);
  }
  return createHash('sha256')
    .update(head)
    .update(tail)
    .update(String(bytes))
    .digest('hex')
    .slice(0, 32);
}

/** Longest row csv-parse holds before it gives up: a guard against a quote never closed. */
export const MAX_ROW_BYTES = 1 << 20;

/**
 * csv-parse's parser, with each row's end offset and line taken as it is parsed, and its errors
 * handed over after the rows parsed before them instead of discarding those.
 */
class RowParser extends Parser {
  /** The line the last row parsed ended on (local to this parser). */
  lastLine = 0;
  /** Why parsing stopped, once the rows before it are all read. */
  failure: unknown;

  override push(chunk: unknown, encoding?: BufferEncoding): boolean {
    if (chunk === null) return super.push(null, encoding);
    // `info` is up to date when a row is pushed: `bytes` is just past its line break. Asking
    // csv-parse for `info: true` instead copies the whole info object per row (3× slower).
    this.lastLine = this.info.lines;
    const row = { cells: chunk as string[], end: this.info.bytes, line: this.info.lines };
    return super.push(row, encoding);
  }

  override _transform(chunk: Buffer, encoding: BufferEncoding, callback: TransformCallback) {
    super._transform(chunk, encoding, (error) => this.settle(error, callback));
  }

  override _flush(callback: TransformCallback) {
    super._flush((error) => this.settle(error, callback));
  }

  /** An error ends the rows (a stream error would drop those not read yet). */
  private settle(error: Error | null | undefined, callback: TransformCallback) {
    if (error) {
      this.failure = error;
      this.push(null);
    }
    callback();
  }
}

/**
 * The rows of a file from a position (the header is the first row read from the start), a
 * chunk of the file in memory at a time. Breaking out of the loop closes the file.
 *
 * @example
 * for await (const row of rowsOf(file, snapshot, config)) console.log(row.line, row.cells);
 */
export async function* rowsOf(
  file: CsvFile,
  snapshot: Snapshot,
  config: Pick<CsvConfig, 'delimiter' | 'encoding' | 'quote'>,
  from: Position = START,
): AsyncGenerator<Row> {
  const streams: (Readable | Transform)[] = [];
  if (snapshot.gzip) {
    streams.push(createReadStream(file.path, { end: snapshot.size - 1 }), createGunzip());
    // gzip cannot seek: decompress the rows already read and drop them unparsed.
    if (from.bytes > 0) streams.push(skipBytes(from.bytes));
  } else if (from.bytes < snapshot.size) {
    streams.push(createReadStream(file.path, { start: from.bytes, end: snapshot.size - 1 }));
  } else {
    streams.push(Readable.from([]));
  }
  if (config.encoding === 'utf8') streams.push(utf8Check(file, from.line));
  const parser = new RowParser({
    delimiter: config.delimiter,
    quote: config.quote === '' ? null : config.quote,
    escape: config.quote === '' ? null : config.quote,
    encoding: config.encoding,
    bom: true,
    skip_empty_lines: true,
    // Column counts are checked against the header by the reader, with its own message.
    relax_column_count: true,
    // A quote inside a cell (`12" pipe`, `"quoted"tail`) is text, kept as it is, not an error.
    relax_quotes: true,
    max_record_size: MAX_ROW_BYTES,
  });
  streams.push(parser);
  // Errors anywhere reach the parser, whose iterator throws them below.
  pipeline(streams, () => {});
  const win1252 = config.encoding === 'latin1';
  try {
    for await (const row of parser as AsyncIterable<Row>) {
      if (win1252) row.cells = row.cells.map(fromWindows1252);
      row.end += from.bytes;
      row.line += from.line;
      yield row;
    }
    if (parser.failure) throw parser.failure;
  } catch (error) {
    throw readFailure(error, file, from, parser.lastLine);
  } finally {
    for (const stream of streams) stream.destroy();
  }
}

/** Drops the first `count` bytes that pass. */
function skipBytes(count: number): Transform {
  let left = count;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      if (left >= chunk.length) {
        left -= chunk.length;
        return callback();
      }
      const rest = left > 0 ? chunk.subarray(left) : chunk;
      left = 0;
      callback(null, rest);
    },
  });
}

/**
 * Passes bytes through unchanged, failing at the first that is not UTF-8 (which csv-parse
 * would turn into U+FFFD without a word): the file is most likely in another encoding.
 */
function utf8Check(file: CsvFile, firstLine: number): Transform {
  let carry: Buffer | undefined;
  let line = firstLine + 1;
  const fail = (bytes: Buffer) =>
    new ConfigError(
      `${file.name}, line ${line + linesBeforeInvalid(bytes)}: not UTF-8 text. If the file was saved in Latin-1 or Windows-1252 (Excel on Windows does), set encoding to latin1.`,
    );
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      const bytes = carry ? Buffer.concat([carry, chunk]) : chunk;
      // A character split between two chunks is checked with the next one.
      const cut = bytes.length - unfinishedTail(bytes);
      const whole = bytes.subarray(0, cut);
      if (!isUtf8(whole)) return callback(fail(whole));
      line += countLineBreaks(whole);
      carry = cut < bytes.length ? Buffer.from(bytes.subarray(cut)) : undefined;
      callback(null, chunk);
    },
    flush(callback) {
      callback(carry ? fail(carry) : null);
    },
  });
}

/** How many bytes at the end begin a UTF-8 character that the next chunk completes. */
function unfinishedTail(bytes: Buffer): number {
  for (let back = 1; back <= Math.min(3, bytes.length); back++) {
    const byte = bytes[bytes.length - back]!;
    if ((byte & 0xc0) === 0x80) continue; // a continuation byte: look further back
    const length = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    return length > back ? back : 0;
  }
  return 0;
}

function countLineBreaks(bytes: Buffer): number {
  let count = 0;
  for (let at = bytes.indexOf(10); at !== -1; at = bytes.indexOf(10, at + 1)) count++;
  return count;
}

/** Line breaks before the first byte that is not UTF-8 (decoded leniently, it is U+FFFD). */
function linesBeforeInvalid(bytes: Buffer): number {
  const text = new TextDecoder('utf-8', { ignoreBOM: true }).decode(bytes);
  const bad = text.indexOf('\uFFFD');
  let count = 0;
  for (let at = text.indexOf('\n'); at !== -1 && at < bad; at = text.indexOf('\n', at + 1)) {
    count++;
  }
  return count;
}

/**
 * Bytes 80–9F, which ISO-8859-1 leaves to control characters and Windows-1252 gives € ‚ ƒ „ …
 * and curly quotes: the WHATWG Encoding Standard reads `latin1` this way, as browsers do
 * (https://encoding.spec.whatwg.org/index-windows-1252.txt). 81, 8D, 8F, 90 and 9D stay.
 */
const WINDOWS_1252 = [
  0x20ac, 0x81, 0x201a, 0x192, 0x201e, 0x2026, 0x2020, 0x2021, 0x2c6, 0x2030, 0x160, 0x2039, 0x152,
  0x8d, 0x17d, 0x8f, 0x90, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014, 0x2dc, 0x2122,
  0x161, 0x203a, 0x153, 0x9d, 0x17e, 0x178,
].map((code) => String.fromCharCode(code));
const HAS_C1 = /[\x80-\x9f]/;
const C1 = /[\x80-\x9f]/g;

const fromWindows1252 = (cell: string) =>
  HAS_C1.test(cell) ? cell.replace(C1, (c) => WINDOWS_1252[c.charCodeAt(0) - 0x80]!) : cell;

/** A failure while reading rows, as one of the SDK's kinds, with the file and the line. */
function readFailure(error: unknown, file: CsvFile, from: Position, lastLine: number): unknown {
  if (error instanceof ConfigError || error instanceof TransientError) return error;
  if (error instanceof CsvError) {
    const line = from.line + (error as CsvError & { lines: number }).lines;
    const started = from.line + lastLine + 1;
    switch (error.code) {
      case 'CSV_QUOTE_NOT_CLOSED':
        return new ConfigError(
          `${file.name}, line ${started}: a quoted cell is never closed (the file ends inside it).`,
        );
      case 'CSV_MAX_RECORD_SIZE':
        return new ConfigError(
          `${file.name}, line ${started}: a row longer than ${MAX_ROW_BYTES} bytes, most likely a quote that is never closed.`,
        );
      default:
        return new ConfigError(`${file.name}, line ${line}: ${error.message}`);
    }
  }
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code.startsWith('Z_')) {
    return new ConfigError(
      `${file.name} starts like a gzip file but cannot be decompressed (${(error as Error).message}): is it truncated?`,
      { cause: error },
    );
  }
  return fsFailure(error, file.name);
}

/** A file system failure: what the admin must fix is a ConfigError, what may pass is transient. */
export function fsFailure(error: unknown, what: string): unknown {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || error instanceof ConfigError) return error;
  switch (code) {
    case 'ENOENT':
      return new ConfigError(`${what} does not exist.`);
    case 'ENOTDIR':
      return new ConfigError(`${what}: a folder on its path is a file.`);
    case 'EACCES':
    case 'EPERM':
      return new ConfigError(
        `Permission denied: the hub's process (user ${process.getuid?.() ?? '?'}) cannot read ${what}.`,
      );
    case 'EISDIR':
      return new ConfigError(`${what} is a folder, not a file.`);
    default:
      // EMFILE, EIO, EBUSY…: the machine, not the configuration.
      return new TransientError(`Cannot read ${what}: ${code}.`, { cause: error });
  }
}
