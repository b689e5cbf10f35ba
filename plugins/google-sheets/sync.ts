/**
 * Writing a sync into its tab. Column A holds the profile id (header `profile_id`), then one
 * column per mapped field in mapping order. Each run reads column A once, on its first batch,
 * into an index of row positions kept in this module per sync (cleared by `prepare`), so an
 * update or a removal finds its row without scanning the sheet. Every change of a batch goes
 * through `spreadsheets.batchUpdate` — atomic, so a request either applies whole or not at all
 * and the index never drifts from the sheet:
 * - an update (or an add whose row is already there) overwrites its row;
 * - a removal (mirror only) deletes its row: `deleteDimension` requests, highest rows first so
 *   the positions of the others stay valid, contiguous rows merged into one request;
 * - an add goes below the last row, after the grid is grown (`appendDimension`): writing at
 *   fixed rows, never `values.append`, whose "table" detection stops at gaps.
 * Requests are packed so that no body passes MAX_BODY_BYTES (Google recommends 2 MB). Before any
 * write, the workbook's grid (Σ rows × columns of every tab) after the batch is checked against
 * the 10,000,000-cell limit. README.md says why each choice was made.
 */
import type { sheets_v4 } from 'googleapis/build/src/apis/sheets/index.js';
import {
  ConfigError,
  type DestinationPrepare,
  type DestinationSync,
  type PluginContext,
  type RowResult,
  type SyncInfo,
  type SyncRow,
} from 'audiencehub/sdk';
import { call, CELL_LIMIT, MAX_BODY_BYTES, MAX_CELL_CHARS, type SheetsConfig } from './client.ts';

/** The key column's header: what marks a tab as one this plugin writes. */
export const KEY_HEADER = 'profile_id';

/** A sync's tab as this run knows it. Row positions are 0-based grid indexes; row 0 is the header. */
interface Tab {
  sheetId: number;
  title: string;
  /** Profile id → row index. */
  rows: Map<string, number>;
  /** Rows in use, header included: the next add goes to this index. */
  end: number;
  rowCount: number;
  columnCount: number;
}

// Per run, by sync id: filled on a run's first batch, cleared by `prepare` when the next starts
// (a person may have edited the sheet in between). The engine runs one batch of a spreadsheet at
// a time (concurrency 1 per limitKey), so nothing else moves rows under an index.
const tabs = new Map<string, Tab>();

type Request = sheets_v4.Schema$Request;
type CellData = sheets_v4.Schema$CellData;
type SheetProps = { sheetId: number; title: string; rowCount: number; columnCount: number };

/** Quote a tab title for an A1 range: `'Tab ''x'''`. */
export const quote = (title: string) => `'${title.replaceAll("'", "''")}'`;

/** The tab a sync writes: `tabName`, or the segment's name made a valid title. */
export function tabTitle(config: SheetsConfig, sync: Pick<SyncInfo, 'segmentName'>): string {
  if (config.tabName) return config.tabName;
  const title = sync.segmentName
    // Sheets refuses these in titles, as Excel does; control characters would be invisible.
    .replace(/[[\]*?/\\:\p{Cc}]/gu, ' ')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, 100);
  return title || 'audiencehub';
}

/** Start of a run: forget the last run's index, the sheet may have changed since. */
export const prepare: DestinationPrepare<SheetsConfig> = async ({ sync }) => {
  tabs.delete(sync.id);
};

/** Every tab of the workbook with its grid size, in one read. */
async function readBook(config: SheetsConfig): Promise<SheetProps[]> {
  const { data } = await call(config, 'read the spreadsheet', (s) =>
    s.spreadsheets.get({
      spreadsheetId: config.spreadsheetId,
      fields: 'sheets.properties(sheetId,title,gridProperties(rowCount,columnCount))',
    }),
  );
  return (data.sheets ?? []).map((s) => ({
    sheetId: s.properties?.sheetId ?? 0,
    title: s.properties?.title ?? '',
    rowCount: s.properties?.gridProperties?.rowCount ?? 0,
    columnCount: s.properties?.gridProperties?.columnCount ?? 0,
  }));
}

const cellsOf = (book: SheetProps[], except?: number) =>
  book.filter((t) => t.sheetId !== except).reduce((n, t) => n + t.rowCount * t.columnCount, 0);

function tooManyCells(config: SheetsConfig, title: string, cells: number): ConfigError {
  return new ConfigError(
    `Spreadsheet ${config.spreadsheetId} would hold ${cells.toLocaleString('en')} cells with tab "${title}" written, past Google Sheets' limit of ${CELL_LIMIT.toLocaleString('en')} (rows × columns of every tab, empty cells included). Nothing was written: delete tabs or empty rows and columns, map fewer fields, or use another spreadsheet.`,
  );
}

/**
 * Find the sync's tab (or create it with its header) and index its rows. A tab of that title
 * that does not start with the `profile_id` header is someone else's: refused, not overwritten.
 */
async function openTab(
  config: SheetsConfig,
  sync: SyncInfo,
  book: SheetProps[],
  header: string[],
  ctx: PluginContext,
): Promise<Tab> {
  const title = tabTitle(config, sync);
  const found = book.find((t) => t.title.toLowerCase() === title.toLowerCase());
  if (!found) {
    const cells = cellsOf(book) + header.length;
    if (cells > CELL_LIMIT) throw tooManyCells(config, title, cells);
    let sheetId: number;
    const taken = new Set(book.map((t) => t.sheetId));
    do sheetId = 1 + Math.floor(Math.random() * 2_000_000_000);
    while (taken.has(sheetId));
    // One atomic write: the tab and its header, so a tab never exists without its header.
    await write(config, `create tab "${title}"`, [
      {
        addSheet: {
          properties: {
            sheetId,
            title,
            gridProperties: { rowCount: 1, columnCount: header.length },
          },
        },
      },
      rowWrite(sheetId, 0, header.length, [header.map((h) => cell(h))]),
    ]);
    ctx.log.info('google sheets tab created', { title });
    return { sheetId, title, rows: new Map(), end: 1, rowCount: 1, columnCount: header.length };
  }
  const range = quote(found.title);
  const { data } = await call(config, `read tab "${found.title}"`, (s) =>
    s.spreadsheets.values.batchGet({
      spreadsheetId: config.spreadsheetId,
      ranges: [`${range}!A:A`, `${range}!1:1`],
      valueRenderOption: 'UNFORMATTED_VALUE',
    }),
  );
  const column = data.valueRanges?.[0]?.values ?? [];
  const first = (data.valueRanges?.[1]?.values?.[0] ?? []).map((v) => String(v));
  if (first.length > 0 && first[0] !== KEY_HEADER) {
    throw new ConfigError(
      `Tab "${found.title}" of spreadsheet ${config.spreadsheetId} holds other data (its A1 is not "${KEY_HEADER}"); it was left alone. Set tabName to a new tab's name, or rename that tab.`,
    );
  }
  const tab: Tab = {
    sheetId: found.sheetId,
    title: found.title,
    rows: new Map(),
    end: Math.max(1, column.length),
    rowCount: found.rowCount,
    columnCount: found.columnCount,
  };
  column.forEach((row, i) => {
    const id = row?.[0];
    if (i > 0 && id !== undefined && id !== '') tab.rows.set(String(id), i);
  });
  if (first.length !== header.length || first.some((h, i) => h !== header[i])) {
    // The mapping changed (or the tab was empty): a new header; the engine sends every row
    // whose mapped values changed, so the data rows follow.
    const requests: Request[] = [];
    if (tab.columnCount < header.length) {
      const cells = cellsOf(book, tab.sheetId) + tab.rowCount * header.length;
      if (cells > CELL_LIMIT) throw tooManyCells(config, tab.title, cells);
      requests.push({
        appendDimension: {
          sheetId: tab.sheetId,
          dimension: 'COLUMNS',
          length: header.length - tab.columnCount,
        },
      });
      tab.columnCount = header.length;
    }
    const width = Math.max(header.length, first.length);
    const padded = [...header, ...Array<string>(width - header.length).fill('')];
    requests.push(rowWrite(tab.sheetId, 0, width, [padded.map((h) => cell(h || null))]));
    await write(config, `write the header of tab "${tab.title}"`, requests);
  }
  return tab;
}

/** A sheet cell from a mapped value: typed, never parsed (a leading `=` stays text). */
export function cell(value: unknown): CellData {
  if (value === null || value === undefined) return {};
  if (typeof value === 'number' && Number.isFinite(value)) {
    return { userEnteredValue: { numberValue: value } };
  }
  if (typeof value === 'boolean') return { userEnteredValue: { boolValue: value } };
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return { userEnteredValue: { stringValue: text } };
}

/** Overwrite whole rows from `row`: the range form clears cells a value left empty. */
function rowWrite(sheetId: number, row: number, width: number, values: CellData[][]): Request {
  return {
    updateCells: {
      range: {
        sheetId,
        startRowIndex: row,
        endRowIndex: row + values.length,
        startColumnIndex: 0,
        endColumnIndex: width,
      },
      rows: values.map((v) => ({ values: v })),
      fields: 'userEnteredValue',
    },
  };
}

async function write(config: SheetsConfig, what: string, requests: Request[]) {
  await call(config, what, (s) =>
    s.spreadsheets.batchUpdate({ spreadsheetId: config.spreadsheetId, requestBody: { requests } }),
  );
}

/** What one chunk does; `bytes` is what its rows and requests add to the body. */
type Unit =
  | { kind: 'overwrite'; row: number; values: CellData[]; bytes: number }
  | { kind: 'delete'; start: number; end: number; ids: string[]; bytes: number }
  | { kind: 'append'; id: string; values: CellData[]; bytes: number };

// Room for a chunk's envelope, its appendDimension and its appends' updateCells around the rows.
const CHUNK_OVERHEAD = 1_000;
const DELETE_BYTES = 160;
const OVERWRITE_BYTES = 200;

/** Removals as ranges of contiguous rows, highest first, so each leaves the next one's rows in place. */
function deletions(rows: { id: string; row: number }[]): Unit[] {
  const sorted = [...rows].sort((a, b) => b.row - a.row);
  const units: Extract<Unit, { kind: 'delete' }>[] = [];
  for (const { id, row } of sorted) {
    const last = units.at(-1);
    if (last && last.start === row + 1) {
      last.start = row;
      last.ids.push(id);
    } else {
      units.push({ kind: 'delete', start: row, end: row + 1, ids: [id], bytes: DELETE_BYTES });
    }
  }
  return units;
}

/** Pack units in order into chunks whose bodies stay under MAX_BODY_BYTES. */
function chunks(units: Unit[]): Unit[][] {
  const out: Unit[][] = [];
  let current: Unit[] = [];
  let size = CHUNK_OVERHEAD;
  for (const unit of units) {
    if (current.length > 0 && size + unit.bytes > MAX_BODY_BYTES) {
      out.push(current);
      current = [];
      size = CHUNK_OVERHEAD;
    }
    current.push(unit);
    size += unit.bytes;
  }
  if (current.length > 0) out.push(current);
  return out;
}

/** Remove deleted rows from the index and move the rows below them up. */
function commitDeletes(tab: Tab, ranges: { start: number; end: number; ids: string[] }[]) {
  if (ranges.length === 0) return;
  for (const r of ranges) for (const id of r.ids) tab.rows.delete(id);
  const ascending = [...ranges].sort((a, b) => a.start - b.start);
  const below: number[] = []; // rows deleted before each range's end, cumulated
  let total = 0;
  for (const r of ascending) below.push((total += r.end - r.start));
  for (const [id, row] of tab.rows) {
    // The last range ending at or above this row tells how many rows above it went.
    let lo = 0;
    let hi = ascending.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (ascending[mid]!.end <= row) lo = mid + 1;
      else hi = mid;
    }
    if (lo > 0) tab.rows.set(id, row - below[lo - 1]!);
  }
  tab.end -= total;
  tab.rowCount -= total;
}

/**
 * Send a batch. Each chunk commits to the index only once Google applied it, so a batch the
 * engine retries after a 429 part-way finds the rows already written (an add becomes an
 * overwrite, a removal of a gone row is done): retrying never duplicates or deletes twice.
 */
export const sync: DestinationSync<SheetsConfig> = async ({ config, sync, batch }, ctx) => {
  if (batch.length === 0) return [];
  const header = [KEY_HEADER, ...sync.fields];
  // Every batch reads the grid sizes: the cell check needs fresh ones, and a tab deleted or
  // resized by a person since the last batch shows here, before anything is written.
  const book = await readBook(config);
  let tab = tabs.get(sync.id);
  const current = tab && book.find((t) => t.sheetId === tab!.sheetId);
  if (tab && current) {
    tab.title = current.title;
    tab.rowCount = current.rowCount;
    tab.columnCount = current.columnCount;
  } else {
    if (tab)
      ctx.log.warn('google sheets tab gone during the run: recreating it', { title: tab.title });
    tabs.delete(sync.id);
    tab = await openTab(config, sync, await (tab ? readBook(config) : book), header, ctx);
    tabs.set(sync.id, tab);
  }
  const theTab = tab;

  const results = new Map<string, RowResult>();
  const overwrites: Unit[] = [];
  const appends: Extract<Unit, { kind: 'append' }>[] = [];
  const removals: { id: string; row: number }[] = [];
  for (const row of batch) {
    const at = theTab.rows.get(row.id);
    if (row.action === 'remove') {
      // Upsert never deletes; a row already gone (deleted by a person, or by an earlier try
      // of this batch) is done.
      if (sync.mode === 'mirror' && at !== undefined) removals.push({ id: row.id, row: at });
      results.set(row.id, { id: row.id, status: 'ok' });
      continue;
    }
    const values = rowCells(header, row);
    if (typeof values === 'string') {
      results.set(row.id, { id: row.id, status: 'rejected', reason: values });
      continue;
    }
    const bytes = Buffer.byteLength(JSON.stringify({ values }));
    if (bytes + CHUNK_OVERHEAD > MAX_BODY_BYTES) {
      results.set(row.id, {
        id: row.id,
        status: 'rejected',
        reason: `the row's values take ${bytes} bytes, more than one request to Google Sheets should carry (2 MB)`,
      });
      continue;
    }
    if (at !== undefined) {
      overwrites.push({ kind: 'overwrite', row: at, values, bytes: bytes + OVERWRITE_BYTES });
    } else {
      appends.push({ kind: 'append', id: row.id, values, bytes: bytes + 1 });
    }
    results.set(row.id, { id: row.id, status: 'ok' });
  }

  // The grid once this batch is in, checked before anything is written.
  const rowsAfter = Math.max(
    theTab.rowCount - removals.length,
    theTab.end - removals.length + appends.length,
  );
  const cells =
    cellsOf(book, theTab.sheetId) + rowsAfter * Math.max(theTab.columnCount, header.length);
  if (cells > CELL_LIMIT) throw tooManyCells(config, theTab.title, cells);
  if (theTab.columnCount < header.length) {
    await write(config, `widen tab "${theTab.title}"`, [
      {
        appendDimension: {
          sheetId: theTab.sheetId,
          dimension: 'COLUMNS',
          length: header.length - theTab.columnCount,
        },
      },
    ]);
    theTab.columnCount = header.length;
  }

  // Overwrites first (positions as read), then deletions (highest first), then adds below.
  for (const chunk of chunks([...overwrites, ...deletions(removals), ...appends])) {
    const requests: Request[] = [];
    const deleted: Extract<Unit, { kind: 'delete' }>[] = [];
    const added: Extract<Unit, { kind: 'append' }>[] = [];
    for (const unit of chunk) {
      if (unit.kind === 'overwrite') {
        requests.push(rowWrite(theTab.sheetId, unit.row, header.length, [unit.values]));
      } else if (unit.kind === 'delete') {
        deleted.push(unit);
        requests.push({
          deleteDimension: {
            range: {
              sheetId: theTab.sheetId,
              dimension: 'ROWS',
              startIndex: unit.start,
              endIndex: unit.end,
            },
          },
        });
      } else {
        added.push(unit);
      }
    }
    const removed = deleted.reduce((n, d) => n + d.end - d.start, 0);
    const start = theTab.end - removed;
    const grow = Math.max(0, start + added.length - (theTab.rowCount - removed));
    if (grow > 0) {
      requests.push({
        appendDimension: { sheetId: theTab.sheetId, dimension: 'ROWS', length: grow },
      });
    }
    if (added.length > 0) {
      requests.push(
        rowWrite(
          theTab.sheetId,
          start,
          header.length,
          added.map((a) => a.values),
        ),
      );
    }
    try {
      await write(config, `write ${chunk.length} rows to tab "${theTab.title}"`, requests);
    } catch (error) {
      // A write whose answer was lost may have been applied: the retry reads column A again
      // rather than trust an index that may be one chunk behind (and append those rows twice).
      tabs.delete(sync.id);
      throw error;
    }
    commitDeletes(theTab, deleted);
    theTab.rowCount += grow;
    added.forEach((a, i) => theTab.rows.set(a.id, start + i));
    theTab.end = start + added.length;
  }
  return batch.map((row) => results.get(row.id)!);
};

/** A row's cells in header order, or why it cannot be written. */
function rowCells(header: string[], row: SyncRow): CellData[] | string {
  const values: CellData[] = [cell(row.id)];
  for (const key of header.slice(1)) {
    const c = cell(row.fields[key]);
    const text = c.userEnteredValue?.stringValue;
    if (text !== undefined && text !== null && text.length > MAX_CELL_CHARS) {
      return `${key} has ${text.length} characters; a Google Sheets cell holds at most ${MAX_CELL_CHARS}`;
    }
    values.push(c);
  }
  return values;
}
