/**
 * The `spreadsheets` methods: create, get and batchUpdate.
 * https://developers.google.com/workspace/sheets/api/reference/rest/v4/spreadsheets
 *
 * batchUpdate is atomic, as in Sheets: one invalid request rolls back the ones before it.
 * Request kinds emulated: addSheet, deleteSheet, updateSheetProperties (title, index, hidden,
 * gridProperties.rowCount / columnCount / frozenRowCount / frozenColumnCount),
 * updateSpreadsheetProperties (title, locale, timeZone), appendDimension, insertDimension,
 * deleteDimension, updateCells / appendCells / repeatCell (userEnteredValue only; formats are
 * accepted and dropped), and, as accepted no-ops, the formatting kinds listed in `COSMETIC`.
 * Any other kind answers 501 UNIMPLEMENTED, naming it, rather than pretending to succeed.
 */
import { formatRange } from './a1.ts';
import { CLEAR, cellData, fromExtendedValue, type CellWrite } from './cells.ts';
import { SheetsApiError, invalid } from './errors.ts';
import { parseFields, type Selection } from './fields.ts';
import {
  DEFAULT_COLUMNS,
  DEFAULT_ROWS,
  beginTxn,
  boxInGrid,
  clearCells,
  deleteColumns,
  deleteRows,
  findSheet,
  insertColumns,
  insertRows,
  newSheet,
  resize,
  resolveRange,
  rollback,
  sheetById,
  sheetProperties,
  touch,
  writeCells,
  type Box,
  type Sheet,
  type Spreadsheet,
  type Txn,
} from './state.ts';
import { checkCellLimit } from './values.ts';

type Json = Record<string, unknown>;

export interface SpreadsheetContext {
  cellLimit: number;
  /** A fresh sheet id (Sheets picks random positive int32s). */
  newSheetId: (ss: Spreadsheet) => number;
}

/** Formatting requests that change nothing the emulator keeps: accepted, reply `{}`. */
const COSMETIC = new Set([
  'updateDimensionProperties',
  'autoResizeDimensions',
  'updateBorders',
  'setBasicFilter',
  'clearBasicFilter',
  'mergeCells',
  'unmergeCells',
]);

/** The Spreadsheet resource as `get` and `create` return it. */
export function spreadsheetResource(
  ss: Spreadsheet,
  opts: { ranges?: string[]; includeGridData?: boolean } = {},
): Json {
  const wanted = new Map<Sheet, Box[]>();
  for (const range of opts.ranges ?? []) {
    const target = resolveRange(ss, range);
    const boxes = wanted.get(target.sheet) ?? [];
    boxes.push(boxInGrid(target));
    wanted.set(target.sheet, boxes);
  }
  const chosen = wanted.size > 0 ? ss.sheets.filter((s) => wanted.has(s)) : ss.sheets;
  return {
    spreadsheetId: ss.spreadsheetId,
    properties: {
      title: ss.title,
      locale: ss.locale,
      autoRecalc: 'ON_CHANGE',
      timeZone: ss.timeZone,
    },
    sheets: chosen.map((sheet) => {
      const out: Json = { properties: sheetProperties(ss, sheet) };
      if (opts.includeGridData) {
        const boxes = wanted.get(sheet) ?? [
          { r0: 0, r1: sheet.rowCount, c0: 0, c1: sheet.columnCount },
        ];
        out.data = boxes.map((box) => gridData(sheet, box));
      }
      return out;
    }),
    spreadsheetUrl: `https://docs.google.com/spreadsheets/d/${ss.spreadsheetId}/edit`,
  };
}

function gridData(sheet: Sheet, box: Box): Json {
  const out: Json = {};
  if (box.r0) out.startRow = box.r0;
  if (box.c0) out.startColumn = box.c0;
  const rowData: Json[] = [];
  const end = Math.min(box.r1, sheet.rows.length);
  for (let r = box.r0; r < end; r++) {
    const row = sheet.rows[r];
    const values: Json[] = [];
    if (row) {
      const stop = Math.min(box.c1, row.length);
      for (let c = box.c0; c < stop; c++) {
        const cell = row[c];
        values.push(cell === undefined ? {} : cellData(cell));
      }
    }
    rowData.push(values.length > 0 ? { values } : {});
  }
  while (rowData.length > 0 && Object.keys(rowData[rowData.length - 1]!).length === 0)
    rowData.pop();
  if (rowData.length > 0) out.rowData = rowData;
  return out;
}

function positiveInt(value: unknown, what: string, at: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw invalid(`${at}${what} must be a positive integer, not ${JSON.stringify(value)}`);
  }
  return value;
}

function defaultTitle(ss: Spreadsheet): string {
  for (let n = ss.sheets.length + 1; ; n++) {
    if (!findSheet(ss, `Sheet${n}`)) return `Sheet${n}`;
  }
}

/** POST /v4/spreadsheets */
export function createSpreadsheet(
  spreadsheetId: string,
  body: Json,
  ctx: SpreadsheetContext,
): Spreadsheet {
  const props = (body.properties ?? {}) as Json;
  const ss: Spreadsheet = {
    spreadsheetId,
    title: typeof props.title === 'string' ? props.title : 'Untitled spreadsheet',
    locale: typeof props.locale === 'string' ? props.locale : 'en_US',
    timeZone: typeof props.timeZone === 'string' ? props.timeZone : 'Etc/GMT',
    sheets: [],
  };
  const sheets = Array.isArray(body.sheets) ? (body.sheets as Json[]) : [];
  if (sheets.length === 0) sheets.push({ properties: { sheetId: 0, title: 'Sheet1' } });
  sheets.forEach((s, i) => {
    const p = (s.properties ?? {}) as Json;
    // The first tab of a new spreadsheet has id 0 unless one is given.
    const sheetId = p.sheetId ?? (i === 0 ? 0 : undefined);
    addSheet(ss, { properties: { ...p, sheetId } }, `Invalid sheets[${i}]: `, ctx);
  });
  return ss;
}

function addSheet(ss: Spreadsheet, r: Json, at: string, ctx: SpreadsheetContext): Json {
  const props = (r.properties ?? {}) as Json;
  const grid = (props.gridProperties ?? {}) as Json;
  let sheetId: number;
  if (props.sheetId !== undefined && props.sheetId !== null) {
    if (
      typeof props.sheetId !== 'number' ||
      !Number.isInteger(props.sheetId) ||
      props.sheetId < 0
    ) {
      throw invalid(`${at}Invalid sheetId: ${JSON.stringify(props.sheetId)}`);
    }
    sheetId = props.sheetId;
    if (sheetById(ss, sheetId))
      throw invalid(`${at}A sheet with the id ${sheetId} already exists.`);
  } else {
    sheetId = ctx.newSheetId(ss);
  }
  const title =
    typeof props.title === 'string' && props.title !== '' ? props.title : defaultTitle(ss);
  if (findSheet(ss, title)) {
    throw invalid(
      `${at}A sheet with the name "${title}" already exists. Please enter another name.`,
    );
  }
  const rowCount =
    grid.rowCount === undefined ? DEFAULT_ROWS : positiveInt(grid.rowCount, 'rowCount', at);
  const columnCount =
    grid.columnCount === undefined
      ? DEFAULT_COLUMNS
      : positiveInt(grid.columnCount, 'columnCount', at);
  checkCellLimit(ss, undefined, rowCount, columnCount, ctx.cellLimit, at);
  const sheet = newSheet(sheetId, title, rowCount, columnCount);
  sheet.hidden = props.hidden === true;
  if (typeof grid.frozenRowCount === 'number') sheet.frozenRowCount = grid.frozenRowCount;
  if (typeof grid.frozenColumnCount === 'number') sheet.frozenColumnCount = grid.frozenColumnCount;
  const index =
    typeof props.index === 'number'
      ? Math.max(0, Math.min(props.index, ss.sheets.length))
      : ss.sheets.length;
  ss.sheets.splice(index, 0, sheet);
  return { addSheet: { properties: sheetProperties(ss, sheet) } };
}

function sheetOf(ss: Spreadsheet, id: unknown, at: string): Sheet {
  const sheetId = id === undefined || id === null ? 0 : Number(id);
  const sheet = sheetById(ss, sheetId);
  if (!sheet) throw invalid(`${at}No grid with id: ${sheetId}`);
  return sheet;
}

function requireFields(r: Json, at: string): Selection {
  if (typeof r.fields !== 'string' || r.fields === '') {
    throw invalid(
      `${at}At least one field must be listed in 'fields'. (Use '*' to indicate all fields.)`,
    );
  }
  return parseFields(r.fields);
}

/** Whether a field mask selects a path (or part of it). */
function selects(sel: Selection, path: string[]): boolean {
  let cur: Selection = sel;
  for (const p of path) {
    if (cur.has('*')) return true;
    const next = cur.get(p);
    if (next === true) return true;
    if (!next) return false;
    cur = next;
  }
  return true;
}

/** A GridRange, closed at the grid's edge; refused when it leaves the grid. */
function gridBox(ss: Spreadsheet, range: Json | undefined, at: string): { sheet: Sheet; box: Box } {
  const g = range ?? {};
  const sheet = sheetOf(ss, g.sheetId, at);
  const num = (v: unknown, dflt: number): number => (typeof v === 'number' ? v : dflt);
  const box = {
    r0: num(g.startRowIndex, 0),
    r1: num(g.endRowIndex, sheet.rowCount),
    c0: num(g.startColumnIndex, 0),
    c1: num(g.endColumnIndex, sheet.columnCount),
  };
  if (box.r0 < 0 || box.c0 < 0 || box.r0 > box.r1 || box.c0 > box.c1) {
    throw invalid(`${at}Invalid range: start index must not be after end index`);
  }
  if (box.r1 > sheet.rowCount || box.c1 > sheet.columnCount) {
    throw invalid(
      `${at}Range (${formatRange(sheet.title, box.r0, box.r1, box.c0, box.c1)}) exceeds grid limits. Max rows: ${sheet.rowCount}, max columns: ${sheet.columnCount}`,
    );
  }
  return { sheet, box };
}

function dimension(value: unknown, at: string): 'ROWS' | 'COLUMNS' {
  if (value !== 'ROWS' && value !== 'COLUMNS')
    throw invalid(`${at}dimension must be ROWS or COLUMNS`);
  return value;
}

function cellRows(rows: unknown): CellWrite[][] {
  if (!Array.isArray(rows)) return [];
  return rows.map((row: Json) =>
    Array.isArray(row?.values)
      ? (row.values as Json[]).map((cd) =>
          fromExtendedValue(cd?.userEnteredValue as Json | undefined),
        )
      : [],
  );
}

function applyRequest(
  ss: Spreadsheet,
  req: unknown,
  i: number,
  txn: Txn,
  ctx: SpreadsheetContext,
): Json {
  if (!req || typeof req !== 'object' || Array.isArray(req)) {
    throw invalid(
      `Invalid value at 'requests[${i}]' (type.googleapis.com/google.apps.sheets.v4.Request), ${JSON.stringify(req)}`,
    );
  }
  const kinds = Object.entries(req as Json).filter(([, v]) => v !== undefined && v !== null);
  if (kinds.length !== 1) {
    throw invalid(
      `Invalid requests[${i}]: ${kinds.length === 0 ? 'No request set.' : 'More than one request set.'}`,
    );
  }
  const [kind, value] = kinds[0]!;
  const r = (value ?? {}) as Json;
  const at = `Invalid requests[${i}].${kind}: `;
  switch (kind) {
    case 'addSheet':
      return addSheet(ss, r, at, ctx);
    case 'deleteSheet': {
      const sheet = sheetById(ss, Number(r.sheetId));
      if (!sheet) throw invalid(`${at}No sheet with id: ${String(r.sheetId)}`);
      if (ss.sheets.length === 1)
        throw invalid(`${at}You can't remove all the sheets in a document.`);
      ss.sheets.splice(ss.sheets.indexOf(sheet), 1);
      return {};
    }
    case 'updateSheetProperties':
      updateSheetProperties(ss, r, at, txn, ctx);
      return {};
    case 'updateSpreadsheetProperties': {
      const sel = requireFields(r, at);
      const p = (r.properties ?? {}) as Json;
      if (selects(sel, ['title']) && typeof p.title === 'string') ss.title = p.title;
      if (selects(sel, ['locale']) && typeof p.locale === 'string') ss.locale = p.locale;
      if (selects(sel, ['timeZone']) && typeof p.timeZone === 'string') ss.timeZone = p.timeZone;
      return {};
    }
    case 'appendDimension': {
      const sheet = sheetOf(ss, r.sheetId, at);
      const n = positiveInt(r.length, 'length', at);
      const rows = dimension(r.dimension, at) === 'ROWS';
      const [rc, cc] = rows
        ? [sheet.rowCount + n, sheet.columnCount]
        : [sheet.rowCount, sheet.columnCount + n];
      checkCellLimit(ss, sheet, rc, cc, ctx.cellLimit, at);
      resize(sheet, rc, cc, txn);
      return {};
    }
    case 'insertDimension': {
      const range = (r.range ?? {}) as Json;
      const sheet = sheetOf(ss, range.sheetId, at);
      const rows = dimension(range.dimension, at) === 'ROWS';
      const start = Number(range.startIndex ?? 0);
      const end = Number(range.endIndex ?? 0);
      const count = rows ? sheet.rowCount : sheet.columnCount;
      if (!(start >= 0 && end > start && start <= count))
        throw invalid(`${at}Invalid dimension range ${start}..${end}`);
      const n = end - start;
      const [rc, cc] = rows
        ? [sheet.rowCount + n, sheet.columnCount]
        : [sheet.rowCount, sheet.columnCount + n];
      checkCellLimit(ss, sheet, rc, cc, ctx.cellLimit, at);
      if (rows) insertRows(sheet, start, n, txn);
      else insertColumns(sheet, start, n, txn);
      return {};
    }
    case 'deleteDimension': {
      const range = (r.range ?? {}) as Json;
      const sheet = sheetOf(ss, range.sheetId, at);
      const rows = dimension(range.dimension, at) === 'ROWS';
      const count = rows ? sheet.rowCount : sheet.columnCount;
      const start = Number(range.startIndex ?? 0);
      const end = Number(range.endIndex ?? count);
      if (!(start >= 0 && end > start && end <= count)) {
        throw invalid(`${at}Invalid dimension range ${start}..${end} (the sheet has ${count})`);
      }
      if (end - start === count) {
        throw invalid(`${at}You can't delete all the ${rows ? 'rows' : 'columns'} on the sheet.`);
      }
      if (rows) deleteRows(sheet, start, end, txn);
      else deleteColumns(sheet, start, end, txn);
      return {};
    }
    case 'updateCells': {
      const sel = requireFields(r, at);
      const block = cellRows(r.rows);
      const width = block.reduce((w, row) => Math.max(w, row.length), 0);
      let sheet: Sheet;
      let box: Box;
      if (r.range) {
        ({ sheet, box } = gridBox(ss, r.range as Json, at));
        if (block.length > box.r1 - box.r0 || width > box.c1 - box.c0) {
          throw invalid(`${at}The rows given do not fit in the range`);
        }
      } else {
        const start = (r.start ?? {}) as Json;
        const r0 = Number(start.rowIndex ?? 0);
        const c0 = Number(start.columnIndex ?? 0);
        ({ sheet, box } = gridBox(
          ss,
          {
            sheetId: start.sheetId,
            startRowIndex: r0,
            endRowIndex: r0 + block.length,
            startColumnIndex: c0,
            endColumnIndex: c0 + width,
          },
          at,
        ));
      }
      if (!selects(sel, ['userEnteredValue'])) return {};
      if (r.range) clearCells(sheet, box, txn);
      writeCells(sheet, box.r0, box.c0, block, txn);
      return {};
    }
    case 'appendCells': {
      const sel = requireFields(r, at);
      const sheet = sheetOf(ss, r.sheetId, at);
      const block = cellRows(r.rows);
      const width = block.reduce((w, row) => Math.max(w, row.length), 0);
      const r0 = sheet.rows.length;
      const rc = Math.max(sheet.rowCount, r0 + block.length);
      const cc = Math.max(sheet.columnCount, width);
      if (rc !== sheet.rowCount || cc !== sheet.columnCount) {
        checkCellLimit(ss, sheet, rc, cc, ctx.cellLimit, at);
        resize(sheet, rc, cc, txn);
      }
      if (selects(sel, ['userEnteredValue'])) writeCells(sheet, r0, 0, block, txn);
      return {};
    }
    case 'repeatCell': {
      const sel = requireFields(r, at);
      const { sheet, box } = gridBox(ss, r.range as Json | undefined, at);
      if (!selects(sel, ['userEnteredValue'])) return {};
      const cell = fromExtendedValue(
        (r.cell as Json | undefined)?.userEnteredValue as Json | undefined,
      );
      if (cell === CLEAR) {
        clearCells(sheet, box, txn);
      } else {
        const row: CellWrite[] = new Array<CellWrite>(box.c1 - box.c0).fill(cell);
        writeCells(
          sheet,
          box.r0,
          box.c0,
          Array.from({ length: box.r1 - box.r0 }, () => row),
          txn,
        );
      }
      return {};
    }
    default:
      if (COSMETIC.has(kind)) return {};
      throw new SheetsApiError(
        'UNIMPLEMENTED',
        `${at}the Sheets emulator does not implement this request kind (test/emulators/sheets/README.md)`,
      );
  }
}

function updateSheetProperties(
  ss: Spreadsheet,
  r: Json,
  at: string,
  txn: Txn,
  ctx: SpreadsheetContext,
): void {
  const sel = requireFields(r, at);
  const p = (r.properties ?? {}) as Json;
  const sheet = sheetOf(ss, p.sheetId, at);
  touch(txn, sheet);
  if (selects(sel, ['title']) && typeof p.title === 'string') {
    const other = findSheet(ss, p.title);
    if (other && other !== sheet) {
      throw invalid(
        `${at}A sheet with the name "${p.title}" already exists. Please enter another name.`,
      );
    }
    sheet.title = p.title;
  }
  if (selects(sel, ['hidden']) && p.hidden !== undefined) sheet.hidden = p.hidden === true;
  if (selects(sel, ['index']) && typeof p.index === 'number') {
    // Indexes are "before the move": moving 0 to 2 lands after the sheet at 1.
    const from = ss.sheets.indexOf(sheet);
    const to = Math.max(0, Math.min(p.index > from ? p.index - 1 : p.index, ss.sheets.length - 1));
    ss.sheets.splice(from, 1);
    ss.sheets.splice(to, 0, sheet);
  }
  const grid = (p.gridProperties ?? {}) as Json;
  // Sheets applies rowCount before columnCount and checks the cell limit after each
  // (robin900/gspread-dataframe#38), so a shrink-columns-grow-rows resize can be refused.
  if (selects(sel, ['gridProperties', 'rowCount']) && grid.rowCount !== undefined) {
    const rows = positiveInt(grid.rowCount, 'rowCount', at);
    checkCellLimit(ss, sheet, rows, sheet.columnCount, ctx.cellLimit, at);
    resize(sheet, rows, sheet.columnCount, txn);
  }
  if (selects(sel, ['gridProperties', 'columnCount']) && grid.columnCount !== undefined) {
    const cols = positiveInt(grid.columnCount, 'columnCount', at);
    checkCellLimit(ss, sheet, sheet.rowCount, cols, ctx.cellLimit, at);
    resize(sheet, sheet.rowCount, cols, txn);
  }
  if (
    selects(sel, ['gridProperties', 'frozenRowCount']) &&
    typeof grid.frozenRowCount === 'number'
  ) {
    if (grid.frozenRowCount >= sheet.rowCount)
      throw invalid(`${at}You can't freeze all visible rows on the sheet.`);
    sheet.frozenRowCount = grid.frozenRowCount;
  }
  if (
    selects(sel, ['gridProperties', 'frozenColumnCount']) &&
    typeof grid.frozenColumnCount === 'number'
  ) {
    if (grid.frozenColumnCount >= sheet.columnCount) {
      throw invalid(`${at}You can't freeze all visible columns on the sheet.`);
    }
    sheet.frozenColumnCount = grid.frozenColumnCount;
  }
}

/** POST /v4/spreadsheets/{id}:batchUpdate — all requests or none. */
export function batchUpdateSpreadsheet(ss: Spreadsheet, body: Json, ctx: SpreadsheetContext): Json {
  const requests = body.requests;
  if (!Array.isArray(requests) || requests.length === 0)
    throw invalid('Must specify at least one request.');
  const txn = beginTxn(ss);
  const replies: Json[] = [];
  try {
    requests.forEach((req, i) => replies.push(applyRequest(ss, req, i, txn, ctx)));
  } catch (e) {
    rollback(txn);
    throw e;
  }
  const out: Json = { spreadsheetId: ss.spreadsheetId, replies };
  if (body.includeSpreadsheetInResponse === true) {
    out.updatedSpreadsheet = spreadsheetResource(ss, {
      ranges: Array.isArray(body.responseRanges) ? (body.responseRanges as string[]) : undefined,
      includeGridData: body.responseIncludeGridData === true,
    });
  }
  return out;
}
