import {
  appendFile,
  mkdir,
  mkdtemp,
  readFile,
  rm,
  symlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import {
  ConfigError,
  sourceConformance,
  TransientError,
  type Cursor,
  type PluginContext,
  type SourceStream,
} from 'audiencehub/sdk';
import { testConfig } from '../../src/config.ts';
import { rows, type Database } from '../../src/db/index.ts';
import { listRejects } from '../../src/imports/rejects.ts';
import { runImport } from '../../src/imports/run.ts';
import { createSource, setStreamMapping } from '../../src/imports/store.ts';
import { testDatabase } from '../../test/support/db.ts';
import { admin, importDeps } from '../../test/imports/support.ts';
import csv from './index.ts';
import { CsvConfig } from './client.ts';
import { inferType } from './fields.ts';
import { CHECKPOINT_ROWS, type FileCursor } from './streams.ts';

const ONLINE_RETAIL = '/work/shared/datasets/online_retail/online_retail.csv.gz';
const LEADS = '/work/shared/datasets/crm/x_education_leads.csv.gz';

let dir: string;
let logs: string[];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'audiencehub-csv-'));
  logs = [];
});
afterEach(() => rm(dir, { recursive: true, force: true }));

function context(signal = new AbortController().signal): PluginContext {
  const keep = (msg: string) => logs.push(msg);
  return {
    log: { debug: keep, info: keep, warn: keep, error: keep },
    signal,
    http: () => {
      throw new Error('the CSV connector makes no HTTP requests');
    },
  };
}

const configOf = (path: string, extra: Partial<CsvConfig> = {}): CsvConfig =>
  csv.config.parse({ path, ...extra });

interface Read {
  records: { data: Record<string, unknown>; key: string }[];
  checkpoints: { cursor: Cursor; after: number }[];
}

async function discover(config: CsvConfig): Promise<SourceStream[]> {
  return csv.discover({ config }, context());
}

/** Read a stream to its end, as the hub does. */
async function readAll(
  config: CsvConfig,
  stream: SourceStream | string,
  cursor: Cursor | null = null,
): Promise<Read> {
  const streams = typeof stream === 'string' ? await discover(config) : [stream];
  const target = streams.find((s) => s.name === (typeof stream === 'string' ? stream : s.name))!;
  const read: Read = { records: [], checkpoints: [] };
  for await (const m of csv.read(
    { config, stream: target, cursor, mode: 'incremental' },
    context(),
  )) {
    if (m.type === 'record') read.records.push({ data: m.data, key: m.key! });
    else read.checkpoints.push({ cursor: m.cursor, after: read.records.length });
  }
  return read;
}

/** A stream as discover describes it, for files discover itself would refuse. */
const streamNamed = (name: string): SourceStream => ({
  name,
  fields: [],
  primaryKey: [],
  modes: ['full_refresh', 'incremental'],
});

/** The read's records until it throws, and what it threw. */
async function readUntilError(config: CsvConfig, stream: string, cursor: Cursor | null = null) {
  const read: Read = { records: [], checkpoints: [] };
  const messages = csv.read(
    { config, stream: streamNamed(stream), cursor, mode: 'incremental' },
    context(),
  );
  try {
    for await (const m of messages) {
      if (m.type === 'record') read.records.push({ data: m.data, key: m.key! });
      else read.checkpoints.push({ cursor: m.cursor, after: read.records.length });
    }
  } catch (error) {
    return { read, error };
  }
  throw new Error('the read did not fail');
}

const people = (from: number, to: number) =>
  Array.from({ length: to - from }, (_, i) => {
    const n = from + i;
    return `${n},p${n}@example.com,"Name ${n}, Jr.",${n % 7 === 0 ? '' : (n * 1.5).toFixed(2)}\n`;
  }).join('');
const PEOPLE_HEADER = 'id,email,name,spent\n';

describe('the CSV connector', () => {
  it('reads the whole UCI Online Retail file (541,909 rows, gzip) with a checkpoint every 10,000 rows', async () => {
    const config = configOf(ONLINE_RETAIL);
    const [stream] = await discover(config);
    expect(stream).toMatchObject({
      name: 'online_retail',
      primaryKey: [],
      modes: ['full_refresh', 'incremental'],
      fields: [
        { name: 'InvoiceNo', type: 'string' }, // C536379: cancellations
        { name: 'StockCode', type: 'string' },
        { name: 'Description', type: 'string' },
        { name: 'Quantity', type: 'integer' },
        { name: 'InvoiceDate', type: 'datetime' },
        { name: 'UnitPrice', type: 'number' },
        { name: 'CustomerID', type: 'integer' },
        { name: 'Country', type: 'string' },
      ],
    });

    const started = performance.now();
    let records = 0;
    let checkpoints = 0;
    let first: Record<string, unknown> | undefined;
    let last: Record<string, unknown> | undefined;
    let noCustomer = 0;
    let noDescription = 0;
    let lastCursor: Cursor | undefined;
    const keys = new Set<string>();
    const ctx = context();
    for await (const m of csv.read(
      { config, stream: stream!, cursor: null, mode: 'incremental' },
      ctx,
    )) {
      if (m.type === 'checkpoint') {
        checkpoints++;
        lastCursor = m.cursor;
        // Every checkpoint but the last falls on a multiple of 10,000 records.
        if (records % CHECKPOINT_ROWS !== 0) expect(records).toBe(541_909);
        continue;
      }
      records++;
      first ??= m.data;
      last = m.data;
      if (m.data.CustomerID === null) noCustomer++;
      if (m.data.Description === null) noDescription++;
      keys.add(m.key!);
    }
    const seconds = (performance.now() - started) / 1000;
    console.log(
      `Online Retail: ${records} records in ${seconds.toFixed(1)} s (${Math.round(records / seconds)} rows/s)`,
    );
    expect(records).toBe(541_909);
    expect(checkpoints).toBe(55);
    expect(first).toEqual({
      InvoiceNo: '536365',
      StockCode: '85123A',
      Description: 'WHITE HANGING HEART T-LIGHT HOLDER',
      Quantity: '6',
      InvoiceDate: '2010-12-01 08:26:00',
      UnitPrice: '2.55',
      CustomerID: '17850',
      Country: 'United Kingdom',
    });
    expect(last).toEqual({
      InvoiceNo: '581587',
      StockCode: '22138',
      Description: 'BAKING SET 9 PIECE RETROSPOT ', // as in the file: cells are not trimmed
      Quantity: '3',
      InvoiceDate: '2011-12-09 12:50:00',
      UnitPrice: '4.95',
      CustomerID: '12680',
      Country: 'France',
    });
    // The dataset's README: CustomerID is empty on 135,080 rows, Description on 1,454.
    expect(noCustomer).toBe(135_080);
    expect(noDescription).toBe(1_454);
    // Keys are content digests: the 5,268 exact duplicate rows share theirs. The count of
    // distinct lines, taken straight from the file, says how many keys there must be.
    const lines = gunzipSync(await readFile(ONLINE_RETAIL))
      .toString('utf8')
      .split('\n');
    const distinct = new Set(lines.slice(1).filter(Boolean)).size;
    expect(distinct).toBe(536_641);
    expect(keys.size).toBe(distinct);
    expect(lastCursor).toMatchObject({ rows: 541_909, end: true, gzip: true });
    expect(logs).toContain('read to the end of the file');
  }, 180_000);

  it('reads a real export whose lines end with a delimiter (an unnamed, empty last column)', async () => {
    const config = configOf(LEADS);
    const [stream] = await discover(config);
    expect(stream!.fields).toHaveLength(37);
    expect(stream!.fields.at(-1)).toEqual({ name: 'Last Notable Activity', type: 'string' });
    const read = await readAll(config, stream!);
    expect(read.records).toHaveLength(9_240);
    expect(read.records[0]!.data).toMatchObject({
      'Prospect ID': '7927b2df-8bba-4d29-b9a2-b6e0beafe620',
      'Lead Number': '660737',
      'Do Not Email': 'No',
      Country: null,
      'Last Notable Activity': 'Modified',
    });
  });

  it('reads a gzip file and a plain one alike, telling gzip by its bytes, not its name', async () => {
    const content = PEOPLE_HEADER + people(1, 101);
    await writeFile(join(dir, 'plain.csv'), content);
    // A gzip file named .csv is still gzip; the stream is named after the file either way.
    await writeFile(join(dir, 'packed.csv'), gzipSync(content));
    const plain = await readAll(configOf(join(dir, 'plain.csv')), 'plain');
    const packed = await readAll(configOf(join(dir, 'packed.csv')), 'packed');
    expect(plain.records).toHaveLength(100);
    expect(packed.records).toEqual(plain.records);
    expect(plain.records[6]!.data).toEqual({
      id: '7',
      email: 'p7@example.com',
      name: 'Name 7, Jr.',
      spent: null,
    });
    const plainEnd = plain.checkpoints.at(-1)!.cursor as unknown as FileCursor;
    const packedEnd = packed.checkpoints.at(-1)!.cursor as unknown as FileCursor;
    expect(plainEnd).toMatchObject({ file: 'plain.csv', gzip: false, end: true, rows: 100 });
    expect(plainEnd.bytes).toBe(Buffer.byteLength(content));
    expect(plainEnd.digest).toMatch(/^[0-9a-f]{32}$/);
    expect(packedEnd).toMatchObject({ file: 'packed.csv', gzip: true, end: true, rows: 100 });
    expect(packedEnd.bytes).toBe(Buffer.byteLength(content));
    expect(packedEnd.digest).toBeUndefined();
  });

  it('makes each *.csv and *.csv.gz file of a folder a stream, in name order', async () => {
    await writeFile(join(dir, 'orders.csv.gz'), gzipSync('order,email\nA1,a@example.com\n'));
    await writeFile(
      join(dir, 'customers.csv'),
      'email,name\na@example.com,Ann\nb@example.com,Bo\n',
    );
    await writeFile(join(dir, 'notes.txt'), 'not a stream');
    await writeFile(join(dir, '.hidden.csv'), 'x\n1\n');
    await mkdir(join(dir, 'folder.csv'));
    await symlink(join(dir, 'customers.csv'), join(dir, 'linked.csv'));
    const config = configOf(dir);
    expect(await csv.check({ config }, context())).toEqual({ ok: true });
    const streams = await discover(config);
    expect(streams.map((s) => [s.name, s.description])).toEqual([
      ['customers', 'customers.csv'],
      ['linked', 'linked.csv'],
      ['orders', 'orders.csv.gz (gzip)'],
    ]);
    const customers = await readAll(config, 'customers');
    expect(customers.records.map((r) => r.data)).toEqual([
      { email: 'a@example.com', name: 'Ann' },
      { email: 'b@example.com', name: 'Bo' },
    ]);
    const orders = await readAll(config, 'orders');
    expect(orders.records.map((r) => r.data)).toEqual([{ order: 'A1', email: 'a@example.com' }]);
  });

  it('describes a file again only once it changed', async () => {
    const path = join(dir, 'people.csv');
    const mtime = new Date('2024-06-01T10:00:00Z');
    await writeFile(path, 'id,mail\n1,a\n');
    await utimes(path, mtime, mtime);
    const [before] = await discover(configOf(path));
    // Same size, same modification time: taken for the same file, its description reused.
    await writeFile(path, 'id,note\n1,2\n');
    await utimes(path, mtime, mtime);
    expect(await discover(configOf(path))).toEqual([before]);
    // Parsed with other options, or once it changed, it is described anew.
    expect((await discover(configOf(path, { delimiter: ';' })))[0]!.fields).toEqual([
      { name: 'id,note', type: 'string' },
    ]);
    await utimes(path, mtime, new Date(mtime.getTime() + 5_000));
    expect((await discover(configOf(path)))[0]!.fields).toEqual([
      { name: 'id', type: 'integer' },
      { name: 'note', type: 'integer' },
    ]);
  });

  it('refuses a folder where two files would be the same stream, or that holds none', async () => {
    await writeFile(join(dir, 'a.csv'), 'x\n1\n');
    await writeFile(join(dir, 'a.csv.gz'), gzipSync('x\n1\n'));
    expect(await csv.check({ config: configOf(dir) }, context())).toEqual({
      ok: false,
      reason: expect.stringMatching(/a\.csv and a\.csv\.gz .* both be the stream "a"/),
    });
    const empty = join(dir, 'empty');
    await mkdir(empty);
    await expect(discover(configOf(empty))).rejects.toThrow(/holds no \.csv or \.csv\.gz file/);
    expect(await csv.check({ config: configOf(join(dir, 'missing.csv')) }, context())).toEqual({
      ok: false,
      reason: expect.stringContaining('missing.csv does not exist'),
    });
  });

  it('says which stream lost its file', async () => {
    await writeFile(join(dir, 'a.csv'), 'x\n1\n');
    await writeFile(join(dir, 'b.csv'), 'x\n2\n');
    const config = configOf(dir);
    const [, b] = await discover(config);
    await rm(join(dir, 'b.csv'));
    await expect(readAll(config, b!)).rejects.toThrow(
      new ConfigError(
        `${dir} no longer holds a file for the stream "b": was it renamed or removed?`,
      ),
    );
  });

  describe.each([
    ['plain', (s: string) => Buffer.from(s)],
    ['gzip', (s: string) => gzipSync(s)],
  ])('a %s file', (_kind, encode) => {
    it('resumes from any checkpoint with no record repeated or missed', async () => {
      const path = join(dir, 'people.csv');
      await writeFile(path, encode(PEOPLE_HEADER + people(1, 25_001)));
      const config = configOf(path);
      const full = await readAll(config, 'people');
      expect(full.records).toHaveLength(25_000);
      expect(full.checkpoints.map((c) => c.after)).toEqual([10_000, 20_000, 25_000]);
      for (const checkpoint of full.checkpoints.slice(0, 2)) {
        const resumed = await readAll(config, 'people', checkpoint.cursor);
        expect(resumed.records).toEqual(full.records.slice(checkpoint.after));
      }
    });

    it('yields nothing from a file read to its end and unchanged since', async () => {
      const path = join(dir, 'people.csv');
      await writeFile(path, encode(PEOPLE_HEADER + people(1, 51)));
      const config = configOf(path);
      const first = await readAll(config, 'people');
      const last = first.checkpoints.at(-1)!.cursor;
      const again = await readAll(config, 'people', last);
      expect(again.records).toEqual([]);
      expect(again.checkpoints.map((c) => c.cursor)).toEqual([last]);
    });

    it('reads a changed file again from the start', async () => {
      const path = join(dir, 'people.csv');
      await writeFile(path, encode(PEOPLE_HEADER + people(1, 51)));
      const config = configOf(path);
      const first = await readAll(config, 'people');
      // One value changed, the size the same: the modification time tells.
      await writeFile(path, encode(PEOPLE_HEADER + people(1, 51).replace('p3@', 'q3@')));
      await utimes(path, new Date(), new Date(Date.now() + 5_000));
      const again = await readAll(config, 'people', first.checkpoints.at(-1)!.cursor);
      expect(again.records).toHaveLength(50);
      expect(again.records[2]!.data.email).toBe('q3@example.com');
      // Unchanged rows keep their keys, so the hub stores nothing twice.
      expect(again.records.filter((r, i) => r.key === first.records[i]!.key)).toHaveLength(49);
      expect(logs).toContain(
        'the file changed since the last read: reading it again from the start',
      );
    });
  });

  it('yields only the rows appended to a plain file since the last read', async () => {
    const path = join(dir, 'people.csv');
    await writeFile(path, PEOPLE_HEADER + people(1, 51));
    const config = configOf(path);
    const first = await readAll(config, 'people');
    await appendFile(path, people(51, 61));
    const second = await readAll(config, 'people', first.checkpoints.at(-1)!.cursor);
    expect(second.records.map((r) => r.data.id)).toEqual(
      Array.from({ length: 10 }, (_, i) => String(51 + i)),
    );
    expect(second.checkpoints.at(-1)!.cursor).toMatchObject({ rows: 60, end: true });
    expect(logs).toContain('the file grew: reading the rows appended to it');
    // A read interrupted before the append resumes where it stopped, through the new rows.
    await appendFile(path, people(61, 25_001));
    const third = await readAll(config, 'people', second.checkpoints.at(-1)!.cursor);
    await appendFile(path, people(25_001, 25_011));
    const fourth = await readAll(config, 'people', third.checkpoints[0]!.cursor);
    expect(fourth.records.map((r) => r.data.id)).toEqual(
      Array.from({ length: 25_010 - 10_060 }, (_, i) => String(10_061 + i)),
    );
  });

  it('reads a plain file from the start when it grew but its old rows changed too', async () => {
    const path = join(dir, 'people.csv');
    await writeFile(path, PEOPLE_HEADER + people(1, 51));
    const config = configOf(path);
    const first = await readAll(config, 'people');
    await writeFile(path, PEOPLE_HEADER + people(1, 61).replace('p50@', 'x50@'));
    const again = await readAll(config, 'people', first.checkpoints.at(-1)!.cursor);
    expect(again.records).toHaveLength(60);
  });

  it('reads a gzip file that grew from the start (its old rows keep their keys)', async () => {
    const path = join(dir, 'people.csv.gz');
    await writeFile(path, gzipSync(PEOPLE_HEADER + people(1, 51)));
    const config = configOf(path);
    const first = await readAll(config, 'people');
    await writeFile(path, gzipSync(PEOPLE_HEADER + people(1, 61)));
    const again = await readAll(config, 'people', first.checkpoints.at(-1)!.cursor);
    expect(again.records).toHaveLength(60);
    expect(again.records.slice(0, 50)).toEqual(first.records);
  });

  it('reads afresh when another file stands for the stream, or the cursor is not its own', async () => {
    await writeFile(join(dir, 'people.csv'), PEOPLE_HEADER + people(1, 11));
    const config = configOf(dir);
    const first = await readAll(config, 'people');
    await rm(join(dir, 'people.csv'));
    await writeFile(join(dir, 'people.csv.gz'), gzipSync(PEOPLE_HEADER + people(1, 11)));
    const replaced = await readAll(config, 'people', first.checkpoints.at(-1)!.cursor);
    expect(replaced.records).toEqual(first.records);
    const foreign = await readAll(config, 'people', { page: 3 });
    expect(foreign.records).toHaveLength(10);
    const inHeader = { ...(replaced.checkpoints.at(-1)!.cursor as object), bytes: 3, end: false };
    expect((await readAll(config, 'people', inHeader)).records).toEqual(first.records);
  });

  it('keys records by their content: equal rows share a key, the column order does not matter', async () => {
    await writeFile(
      join(dir, 'a.csv'),
      'id,email\n1,a@example.com\n2,b@example.com\n1,a@example.com\n',
    );
    await writeFile(join(dir, 'b.csv'), 'email,id\na@example.com,1\n');
    const a = await readAll(configOf(dir), 'a');
    const b = await readAll(configOf(dir), 'b');
    expect(a.records[0]!.key).toMatch(/^[0-9a-f]{32}$/);
    expect(a.records[2]!.key).toBe(a.records[0]!.key);
    expect(a.records[1]!.key).not.toBe(a.records[0]!.key);
    expect(b.records[0]!.key).toBe(a.records[0]!.key);
  });

  it('parses quoted cells holding delimiters, line breaks and doubled quotes', async () => {
    const path = join(dir, 'quoted.csv');
    await writeFile(
      path,
      [
        'id,"note, with comma",quote',
        '1,"two\r\nlines, and a comma","say ""hi"""',
        '2,"","a 12"" pipe"',
        '3,unquoted 12" pipe,"quoted"tail',
        '',
        '4,"multi',
        '',
        'blank line inside",x',
      ].join('\r\n'),
    );
    const read = await readAll(configOf(path), 'quoted');
    expect(read.records.map((r) => r.data)).toEqual([
      { id: '1', 'note, with comma': 'two\r\nlines, and a comma', quote: 'say "hi"' },
      { id: '2', 'note, with comma': null, quote: 'a 12" pipe' },
      // Stray quotes are kept as text, quotes and all, rather than failing the file.
      { id: '3', 'note, with comma': 'unquoted 12" pipe', quote: '"quoted"tail' },
      { id: '4', 'note, with comma': 'multi\r\n\r\nblank line inside', quote: 'x' },
    ]);
  });

  it('takes another delimiter and quote, and no quoting at all', async () => {
    await writeFile(join(dir, 'semi.csv'), "id;name\n1;'Ann; Jr.'\n2;'O''Brien'\n");
    const semi = await readAll(
      configOf(join(dir, 'semi.csv'), { delimiter: ';', quote: "'" }),
      'semi',
    );
    expect(semi.records.map((r) => r.data.name)).toEqual(['Ann; Jr.', "O'Brien"]);
    await writeFile(join(dir, 'tabs.tsv'), 'id\tname\n1\t"Ann"\n');
    const tabs = await readAll(
      configOf(join(dir, 'tabs.tsv'), { delimiter: '\t', quote: '' }),
      'tabs',
    );
    expect(tabs.records.map((r) => r.data)).toEqual([{ id: '1', name: '"Ann"' }]);
    expect(CsvConfig.safeParse({ path: 'x', delimiter: ';', quote: ';' }).success).toBe(false);
    expect(CsvConfig.safeParse({ path: 'x', delimiter: '\n' }).success).toBe(false);
    expect(CsvConfig.safeParse({ path: ' ' }).success).toBe(false);
  });

  it('skips blank rows and turns empty cells into null', async () => {
    await writeFile(join(dir, 'gaps.csv'), '\n\nid,email\n1,\n,\n\n2,b@example.com');
    const read = await readAll(configOf(join(dir, 'gaps.csv')), 'gaps');
    expect(read.records.map((r) => r.data)).toEqual([
      { id: '1', email: null },
      { id: '2', email: 'b@example.com' },
    ]);
  });

  it('trims header names and strips a UTF-8 byte order mark', async () => {
    const path = join(dir, 'bom.csv');
    await writeFile(
      path,
      Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(' id , Ünïcode \n1,ça\n')]),
    );
    const [stream] = await discover(configOf(path));
    expect(stream!.fields.map((f) => f.name)).toEqual(['id', 'Ünïcode']);
    const read = await readAll(configOf(path), stream!);
    expect(read.records[0]!.data).toEqual({ id: '1', Ünïcode: 'ça' });
  });

  it.each([
    ['id,email,id\n1,a,2\n', 'bad.csv: columns 1 and 3 are both named "id"; rename one of them.'],
    [
      'id, ,email\n1,2,3\n',
      'bad.csv: column 2 has no name (its header cell is empty); give it one.',
    ],
    [',,\n1,2,3\n', 'bad.csv has no column names in its header row.'],
    ['', 'bad.csv is empty: a CSV file starts with a header row.'],
    ['\n\n', 'bad.csv is empty: a CSV file starts with a header row.'],
  ])('refuses the header of %j, naming the column', async (content, message) => {
    await writeFile(join(dir, 'bad.csv'), content);
    const config = configOf(join(dir, 'bad.csv'));
    expect(await csv.check({ config }, context())).toEqual({ ok: false, reason: message });
    await expect(discover(config)).rejects.toThrow(new ConfigError(message));
    await expect(readAll(config, streamNamed('bad'))).rejects.toThrow(new ConfigError(message));
  });

  it('stops at a row with the wrong number of cells, naming its line, keeping the rows before', async () => {
    const rows = people(1, 10_006).split('\n');
    rows.splice(10_002, 0, '10002b,"a\nb",too,many,cells');
    await writeFile(join(dir, 'broken.csv'), PEOPLE_HEADER + rows.join('\n'));
    const { read, error } = await readUntilError(configOf(join(dir, 'broken.csv')), 'broken');
    // Line 1 is the header; the bad row starts on line 10,004 and ends on 10,005.
    expect(error).toEqual(
      new ConfigError('broken.csv, line 10005: 5 cells where the header names 4 columns.'),
    );
    // The rows before it are all yielded, and covered by a checkpoint: nothing vanishes.
    expect(read.records).toHaveLength(10_002);
    expect(read.checkpoints.map((c) => c.after)).toEqual([10_000, 10_002]);
    // Resumed from there, it stops at once at the same line.
    const config = configOf(join(dir, 'broken.csv'));
    const resumed = await readUntilError(config, 'broken', read.checkpoints.at(-1)!.cursor);
    expect(resumed.read.records).toEqual([]);
    expect(resumed.error).toEqual(error);
  });

  it('refuses a value in a column the header does not name, and a row with too few cells', async () => {
    await writeFile(join(dir, 'trail.csv'), 'id,email,\n1,a,\n2,b\n3,c,oops\n');
    const first = await readUntilError(configOf(join(dir, 'trail.csv')), 'trail');
    expect(first.read.records.map((r) => r.data)).toEqual([
      { id: '1', email: 'a' },
      { id: '2', email: 'b' },
    ]);
    expect(first.error).toEqual(
      new ConfigError('trail.csv, line 4: a value in column 3, which the header does not name.'),
    );
    await writeFile(join(dir, 'short.csv'), 'id,email\n1\n');
    const second = await readUntilError(configOf(join(dir, 'short.csv')), 'short');
    expect(second.error).toEqual(
      new ConfigError('short.csv, line 2: 1 cells where the header names 2 columns.'),
    );
  });

  it('names the line where a quote is never closed', async () => {
    await writeFile(join(dir, 'open.csv'), 'id,note\n1,ok\n2,"never closed\n3,x\n4,y\n');
    const { read, error } = await readUntilError(configOf(join(dir, 'open.csv')), 'open');
    expect(read.records).toHaveLength(1);
    expect(error).toEqual(
      new ConfigError('open.csv, line 3: a quoted cell is never closed (the file ends inside it).'),
    );
    // Past 1 MiB the row is taken for an unclosed quote without reading to the end.
    await writeFile(join(dir, 'long.csv'), `id,note\n1,"${'x'.repeat(1 << 20)}\n2,y\n`);
    const long = await readUntilError(configOf(join(dir, 'long.csv')), 'long');
    expect((long.error as Error).message).toMatch(
      /^long\.csv, line 2: a row longer than 1048576 bytes, most likely a quote that is never closed/,
    );
  });

  describe('encodings', () => {
    // "José", "Müller", "€5" and curly quotes, as Excel on Windows saves them.
    const windows1252 = Buffer.concat([
      Buffer.from('name,price,note\nJos'),
      Buffer.from([0xe9]),
      Buffer.from(',5 '),
      Buffer.from([0x80]),
      Buffer.from(',M'),
      Buffer.from([0xfc]),
      Buffer.from('ller '),
      Buffer.from([0x93, 0x71, 0x94]),
      Buffer.from('\n'),
    ]);

    it('reads latin1 (as Windows-1252, like browsers do)', async () => {
      await writeFile(join(dir, 'latin.csv'), windows1252);
      const read = await readAll(configOf(join(dir, 'latin.csv'), { encoding: 'latin1' }), 'latin');
      expect(read.records.map((r) => r.data)).toEqual([
        { name: 'José', price: '5 €', note: 'Müller “q”' },
      ]);
    });

    it('refuses bytes that are not UTF-8 in a utf8 file, naming the line and the fix', async () => {
      const lines = Array.from({ length: 30_000 }, (_, i) => `n${i},1,ok`).join('\n');
      await writeFile(
        join(dir, 'latin.csv'),
        Buffer.concat([Buffer.from(`name,price,note\n${lines}\n`), windows1252.subarray(16)]),
      );
      const config = configOf(join(dir, 'latin.csv'));
      const { read, error } = await readUntilError(config, 'latin');
      expect(error).toEqual(
        new ConfigError(
          'latin.csv, line 30002: not UTF-8 text. If the file was saved in Latin-1 or Windows-1252 (Excel on Windows does), set encoding to latin1.',
        ),
      );
      expect(read.records.length).toBeLessThanOrEqual(30_000);
      await writeFile(join(dir, 'latin.csv'), windows1252);
      expect(await csv.check({ config }, context())).toEqual({
        ok: false,
        reason: expect.stringContaining('latin.csv, line 2: not UTF-8 text.'),
      });
    });

    it('reads UTF-8 characters split across chunks', async () => {
      // 64 KiB chunks: a run of 3- and 4-byte characters is cut somewhere in every one.
      const text = '名前🙂'.repeat(40_000);
      await writeFile(join(dir, 'wide.csv'), `id,text\n1,${text}\n2,ü\n`);
      const read = await readAll(configOf(join(dir, 'wide.csv')), 'wide');
      expect(read.records.map((r) => r.data)).toEqual([
        { id: '1', text },
        { id: '2', text: 'ü' },
      ]);
    });
  });

  it('refuses a truncated gzip file', async () => {
    const packed = gzipSync(PEOPLE_HEADER + people(1, 5_000));
    await writeFile(join(dir, 'cut.csv.gz'), packed.subarray(0, packed.length - 100));
    const { error } = await readUntilError(configOf(join(dir, 'cut.csv.gz')), 'cut');
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toMatch(
      /^cut\.csv\.gz starts like a gzip file but cannot be decompressed/,
    );
  });

  it('stops a read when the run is aborted', async () => {
    const path = join(dir, 'people.csv');
    await writeFile(path, PEOPLE_HEADER + people(1, 30_001));
    const config = configOf(path);
    const [stream] = await discover(config);
    const controller = new AbortController();
    let records = 0;
    const reading = (async () => {
      for await (const m of csv.read(
        { config, stream: stream!, cursor: null, mode: 'incremental' },
        context(controller.signal),
      )) {
        if (m.type === 'record' && ++records === 100) controller.abort();
      }
    })();
    await expect(reading).rejects.toThrow(
      new TransientError('the run was stopped', { retryAfterMs: 0 }),
    );
    expect(records).toBe(100);
  });

  it('guesses column types conservatively from a sample of rows', () => {
    expect(inferType(['1', '-20', '', '0'])).toBe('integer');
    expect(inferType(['1', '2.5', '-3e4'])).toBe('number');
    expect(inferType(['007', '12'])).toBe('string'); // leading zeros: codes, not quantities
    expect(inferType(['12345678901234567'])).toBe('string'); // past 2^53
    expect(inferType(['true', 'FALSE'])).toBe('boolean');
    expect(inferType(['yes', 'no'])).toBe('string');
    expect(inferType(['2024-02-29', '2023-12-31'])).toBe('date');
    expect(inferType(['2023-02-29'])).toBe('string'); // no such day
    expect(inferType(['2010-12-01 08:26:00', '2010-12-01'])).toBe('datetime');
    expect(inferType(['2022-01-29 01:58:52.222594+00', '2024-05-01T10:00Z'])).toBe('datetime');
    expect(inferType(['2024-05-01 25:00'])).toBe('string');
    expect(inferType(['', ''])).toBe('string');
    expect(inferType(['1', 'x'])).toBe('string');
  });

  it('passes the source conformance kit', async () => {
    const path = join(dir, 'people.csv');
    await writeFile(path, PEOPLE_HEADER + people(1, 25_001));
    const report = await sourceConformance({
      connector: csv,
      config: configOf(path),
      badConfig: configOf(join(dir, 'missing.csv')),
      change: () => appendFile(path, people(25_001, 25_101)),
    });
    const failed = report.filter((c) => !c.ok);
    expect(failed).toEqual([]);
    expect(report.find((c) => c.check.startsWith('an incremental read'))?.detail).toBe(
      'nothing read while unchanged; 100 changed records after the change',
    );
    expect(report.find((c) => c.check.startsWith('a read resumed'))?.detail).toBe(
      'resumed after 10000 records: 15000 more',
    );
  });
});

describe("the CSV connector through the hub's imports", () => {
  let database: Database;
  beforeAll(async () => {
    database = await testDatabase();
  });
  afterAll(() => database?.close());

  it('imports the first Online Retail rows, then only the rows appended to the file', async () => {
    const { db } = database;
    const deps = importDeps([csv]);
    const lines = gunzipSync(await readFile(ONLINE_RETAIL))
      .toString('utf8')
      .split('\n');
    const path = join(dir, 'online_retail.csv');
    await writeFile(path, lines.slice(0, 3_001).join('\n') + '\n');
    const source = await createSource(db, deps, admin, {
      name: 'Online Retail',
      connector: 'csv',
      config: { path: dir },
      // A quarter of the file's rows have no CustomerID: they are rejected, and that is expected.
      maxRejectShare: 1,
    });
    // The mapping the hub documents for this file.
    await setStreamMapping(db, deps, admin, source.id, 'online_retail', {
      mapping: {
        identities: { customer_id: 'CustomerID' },
        traits: { country: 'Country' },
        event: {
          name: 'Order Line',
          timestamp: {
            field: 'InvoiceDate',
            format: 'YYYY-MM-DD HH:mm:ss',
            timezone: 'Europe/London',
          },
          properties: { invoice: 'InvoiceNo', sku: 'StockCode' },
          revenue: { multiply: ['Quantity', 'UnitPrice'] },
        },
      },
    });
    /** What a slice of the file holds, counted from its lines. */
    const expected = (slice: string[], before: string[] = []) => {
      const seen = new Set(before);
      const fresh = slice.filter((l) => !seen.has(l) && seen.add(l));
      const noCustomer = fresh.filter((l) => l.split(',').at(-2) === '').length;
      return {
        rowsRead: slice.length,
        rowsDuplicate: slice.length - fresh.length,
        rowsRejected: noCustomer,
        rowsImported: fresh.length - noCustomer,
      };
    };
    const first = await runImport(db, deps, testConfig(), source.id, 'online_retail', 'manual');
    const firstRows = lines.slice(1, 3_001);
    expect(first).toMatchObject({ status: 'succeeded', error: null, ...expected(firstRows) });
    // Rows without a CustomerID are rejected by the mapping, not lost.
    const { data: rejects } = await listRejects(db, source.id, { limit: 1, runId: first.id });
    expect(rejects[0]).toMatchObject({ field: 'CustomerID' });

    await appendFile(path, lines.slice(3_001, 4_001).join('\n') + '\n');
    const second = await runImport(db, deps, testConfig(), source.id, 'online_retail', 'manual');
    expect(second).toMatchObject({
      status: 'succeeded',
      ...expected(lines.slice(3_001, 4_001), firstRows),
    });
    const [events] = await rows<{ n: number }>(
      db,
      sql`select count(*)::int as n from events where source = 'Online Retail' and type = 'track'`,
    );
    expect(events!.n).toBe(first.rowsImported + second.rowsImported);
    // Nothing changed since: the next run reads nothing.
    const third = await runImport(db, deps, testConfig(), source.id, 'online_retail', 'manual');
    expect(third).toMatchObject({ status: 'succeeded', rowsRead: 0 });
  });
});
