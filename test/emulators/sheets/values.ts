/**
 * The `spreadsheets.values` methods: get, batchGet, update, batchUpdate, append, clear,
 * batchClear. https://developers.google.com/workspace/sheets/api/reference/rest/v4/spreadsheets.values
 *
 * Sheets' rules kept here:
 * - a range must lie inside the grid ("Range (…) exceeds grid limits"), for reads and clears
 *   as for writes; `values.update`/`batchUpdate` never grow the grid — data running past the
 *   range (or, from a single-cell range, past the grid) is refused with "Requested writing
 *   within range [...], but tried writing to row [N]";
 * - only `values.append` grows the grid: after the table it finds, with INSERT_ROWS inserting
 *   rows and OVERWRITE adding rows and columns only when the data reaches past the grid —
 *   subject to the 10,000,000-cell limit;
 * - `valueInputOption` is required for writes; a body `range` must match the URL's;
 * - a write is checked whole before any cell changes, so a refused write changes nothing.
 */
import { MAX_COLUMNS, columnLetters, formatRange } from './a1.ts';
import {
  SKIP,
  toCell,
  type CellWrite,
  type DateTimeRenderOption,
  type ValueInputOption,
  type ValueRenderOption,
} from './cells.ts';
import { cellLimit, invalid } from './errors.ts';
import {
  boxInGrid,
  boxLabel,
  clearCells,
  findTable,
  insertRows,
  readCells,
  resize,
  resolveRange,
  totalCells,
  writeCells,
  type Box,
  type Major,
  type Sheet,
  type Spreadsheet,
  type Target,
} from './state.ts';

type Json = Record<string, unknown>;

export interface ReadOptions {
  major: Major;
  render: ValueRenderOption;
  dates: DateTimeRenderOption;
}

/** The options every read takes, from query parameters (or a batchUpdate body). */
export function readOptions(get: (name: string) => string | undefined, prefix = ''): ReadOptions {
  const major = get('majorDimension');
  const render = get(prefix ? `${prefix}ValueRenderOption` : 'valueRenderOption');
  const dates = get(prefix ? `${prefix}DateTimeRenderOption` : 'dateTimeRenderOption');
  return {
    major: major === 'COLUMNS' ? 'COLUMNS' : 'ROWS',
    render: (render as ValueRenderOption | undefined) ?? 'FORMATTED_VALUE',
    dates: (dates as DateTimeRenderOption | undefined) ?? 'SERIAL_NUMBER',
  };
}

function valueRange(sheet: Sheet, box: Box, opts: ReadOptions): Json {
  const values = readCells(sheet, box, opts.major, opts.render, opts.dates);
  const out: Json = { range: boxLabel(sheet, box), majorDimension: opts.major };
  if (values.length > 0) out.values = values;
  return out;
}

export function getValues(ss: Spreadsheet, range: string, opts: ReadOptions): Json {
  const target = resolveRange(ss, range);
  return valueRange(target.sheet, boxInGrid(target), opts);
}

export function batchGetValues(ss: Spreadsheet, ranges: string[], opts: ReadOptions): Json {
  const out: Json = { spreadsheetId: ss.spreadsheetId };
  if (ranges.length > 0) out.valueRanges = ranges.map((r) => getValues(ss, r, opts));
  return out;
}

export function inputOption(value: unknown): ValueInputOption {
  if (value === undefined || value === null || value === '') {
    throw invalid("'valueInputOption' is required but not specified");
  }
  if (value !== 'RAW' && value !== 'USER_ENTERED') {
    throw invalid(`Invalid valueInputOption: ${String(value)}`);
  }
  return value;
}

/** A checked write: where it goes and the cells, nothing changed yet. */
interface Plan {
  target: Target;
  sheet: Sheet;
  r0: number;
  c0: number;
  block: CellWrite[][];
  width: number;
}

/**
 * Checks one ValueRange against a URL range: syntax, tab, grid, body range, value shapes.
 * `where` is the proto path Sheets names in shape errors (`data`, `data[2]`).
 */
function plan(
  ss: Spreadsheet,
  range: string,
  body: Json,
  option: ValueInputOption,
  where: string,
): Plan {
  const target = resolveRange(ss, range);
  if (typeof body.range === 'string' && body.range !== range) {
    const other = resolveRange(ss, body.range);
    if (
      other.sheet !== target.sheet ||
      JSON.stringify(other.rect) !== JSON.stringify(target.rect)
    ) {
      throw invalid(`Request range[${range}] does not match value's range[${body.range}]`);
    }
  }
  const block = cellsOf(body, option, where);
  return { target, sheet: target.sheet, r0: 0, c0: 0, block, width: widthOf(block) };
}

function cellsOf(body: Json, option: ValueInputOption, where: string): CellWrite[][] {
  const values = body.values ?? [];
  if (!Array.isArray(values)) {
    throw invalid(
      `Invalid value at '${where}.values' (type.googleapis.com/google.protobuf.ListValue), ${JSON.stringify(values)}`,
    );
  }
  const rows: CellWrite[][] = values.map((row: unknown, i) => {
    if (!Array.isArray(row)) {
      throw invalid(
        `Invalid value at '${where}.values[${i}]' (type.googleapis.com/google.protobuf.ListValue), ${JSON.stringify(row)}`,
      );
    }
    return row.map((v: unknown, j) => toCell(v, option, `values[${i}][${j}]`));
  });
  if (body.majorDimension !== 'COLUMNS') return rows;
  const transposed: CellWrite[][] = [];
  rows.forEach((col, j) =>
    col.forEach((cell, i) => {
      const row = (transposed[i] ??= []);
      while (row.length < j) row.push(SKIP);
      row[j] = cell;
    }),
  );
  return transposed;
}

function widthOf(block: CellWrite[][]): number {
  let w = 0;
  for (const row of block) if (row.length > w) w = row.length;
  return w;
}

/** Places a planned update at its range, refusing data that runs past the range or grid. */
function placeUpdate(p: Plan, range: string): Plan {
  const box = boxInGrid(p.target);
  const limit = p.target.anchor
    ? { r1: p.sheet.rowCount, c1: p.sheet.columnCount }
    : { r1: box.r1, c1: box.c1 };
  if (box.r0 + p.block.length > limit.r1) {
    throw invalid(
      `Requested writing within range [${range}], but tried writing to row [${box.r0 + p.block.length}]`,
    );
  }
  if (box.c0 + p.width > limit.c1) {
    throw invalid(
      `Requested writing within range [${range}], but tried writing to column [${columnLetters(box.c0 + p.width - 1)}]`,
    );
  }
  return { ...p, r0: box.r0, c0: box.c0 };
}

interface Written {
  response: Json;
  rows: number;
  columns: number;
  cells: number;
}

function apply(ss: Spreadsheet, p: Plan, echo: ReadOptions | undefined, echoBox?: Box): Written {
  writeCells(p.sheet, p.r0, p.c0, p.block);
  const cols = new Set<number>();
  let rows = 0;
  let cells = 0;
  for (const row of p.block) {
    let any = false;
    row.forEach((w, j) => {
      if (w === SKIP) return;
      any = true;
      cells++;
      cols.add(j);
    });
    if (any) rows++;
  }
  const response: Json = { spreadsheetId: ss.spreadsheetId };
  if (p.block.length > 0 && p.width > 0) {
    const written = { r0: p.r0, r1: p.r0 + p.block.length, c0: p.c0, c1: p.c0 + p.width };
    Object.assign(response, {
      updatedRange: boxLabel(p.sheet, written),
      updatedRows: rows,
      updatedColumns: cols.size,
      updatedCells: cells,
    });
    if (echo) response.updatedData = valueRange(p.sheet, echoBox ?? written, echo);
  }
  return { response, rows, columns: cols.size, cells };
}

function echoOptions(
  includeValues: unknown,
  get: (name: string) => string | undefined,
): ReadOptions | undefined {
  if (includeValues !== true && includeValues !== 'true') return undefined;
  return readOptions(get, 'response');
}

/** PUT values/{range} */
export function updateValues(
  ss: Spreadsheet,
  range: string,
  query: URLSearchParams,
  body: Json,
): Json {
  const option = inputOption(query.get('valueInputOption') ?? undefined);
  const p = placeUpdate(plan(ss, range, body, option, 'data'), range);
  const get = (n: string): string | undefined => query.get(n) ?? undefined;
  const echo = echoOptions(query.get('includeValuesInResponse'), get);
  const echoBox = p.target.anchor ? undefined : boxInGrid(p.target);
  return apply(ss, p, echo, echoBox).response;
}

/** POST values:batchUpdate — every range checked before any is written. */
export function batchUpdateValues(ss: Spreadsheet, body: Json): Json {
  const option = inputOption(body.valueInputOption);
  const data = Array.isArray(body.data) ? (body.data as Json[]) : [];
  const plans = data.map((vr, i) => {
    if (typeof vr.range !== 'string') throw invalid(`Invalid data[${i}]: range is required`);
    return placeUpdate(plan(ss, vr.range, vr, option, `data[${i}]`), vr.range);
  });
  const get = (n: string): string | undefined =>
    body[n] === undefined ? undefined : String(body[n]);
  const echo = echoOptions(body.includeValuesInResponse, get);
  const responses: Json[] = [];
  const sheets = new Set<Sheet>();
  let rows = 0;
  let columns = 0;
  let cells = 0;
  for (const p of plans) {
    const echoBox = p.target.anchor ? undefined : boxInGrid(p.target);
    const w = apply(ss, p, echo, echoBox);
    responses.push(w.response);
    if (w.cells > 0) sheets.add(p.sheet);
    rows += w.rows;
    columns += w.columns;
    cells += w.cells;
  }
  const out: Json = { spreadsheetId: ss.spreadsheetId };
  if (plans.length > 0) {
    Object.assign(out, {
      totalUpdatedRows: rows,
      totalUpdatedColumns: columns,
      totalUpdatedCells: cells,
      totalUpdatedSheets: sheets.size,
      responses,
    });
  }
  return out;
}

/** Refuses a grid change that would take the workbook past the cell limit. */
export function checkCellLimit(
  ss: Spreadsheet,
  sheet: Sheet | undefined,
  rowCount: number,
  columnCount: number,
  limit: number,
  prefix = '',
): void {
  const before = sheet ? sheet.rowCount * sheet.columnCount : 0;
  if (totalCells(ss) - before + rowCount * columnCount > limit) {
    const e = cellLimit(limit);
    throw prefix ? invalid(`${prefix}${e.message}`) : e;
  }
  if (columnCount > MAX_COLUMNS) {
    throw invalid(
      `${prefix}This action would increase the number of columns in the sheet above the limit of ${MAX_COLUMNS}.`,
    );
  }
}

/** POST values/{range}:append */
export function appendValues(
  ss: Spreadsheet,
  range: string,
  query: URLSearchParams,
  body: Json,
  cellLimitValue: number,
): Json {
  const option = inputOption(query.get('valueInputOption') ?? undefined);
  const insert = query.get('insertDataOption') ?? 'OVERWRITE';
  const p = plan(ss, range, body, option, 'data');
  const box = boxInGrid(p.target);
  const { sheet } = p;
  // A single cell or a whole tab searches every column to its right; a wider range only its own.
  const wide = !p.target.rect || p.target.anchor;
  const table = findTable(sheet, box.r0, box.c0, wide ? sheet.columnCount : box.c1);
  const r0 = table ? table.r1 : box.r0;
  const c0 = table ? table.c0 : box.c0;
  const n = p.block.length;
  const rowCount = insert === 'INSERT_ROWS' ? sheet.rowCount + n : Math.max(sheet.rowCount, r0 + n);
  const columnCount = Math.max(sheet.columnCount, c0 + p.width);
  if (n > 0 && (rowCount !== sheet.rowCount || columnCount !== sheet.columnCount)) {
    checkCellLimit(ss, sheet, rowCount, columnCount, cellLimitValue);
  }
  if (n > 0) {
    if (insert === 'INSERT_ROWS') insertRows(sheet, r0, n);
    resize(sheet, rowCount, columnCount);
  }
  const get = (k: string): string | undefined => query.get(k) ?? undefined;
  const w = apply(ss, { ...p, r0, c0 }, echoOptions(query.get('includeValuesInResponse'), get));
  const out: Json = { spreadsheetId: ss.spreadsheetId };
  if (table) out.tableRange = formatRange(sheet.title, table.r0, table.r1, table.c0, table.c1);
  out.updates = w.response;
  return out;
}

/** POST values/{range}:clear */
export function clearValues(ss: Spreadsheet, range: string): Json {
  const target = resolveRange(ss, range);
  const box = boxInGrid(target);
  clearCells(target.sheet, box);
  return { spreadsheetId: ss.spreadsheetId, clearedRange: boxLabel(target.sheet, box) };
}

/** POST values:batchClear — every range checked before any is cleared. */
export function batchClearValues(ss: Spreadsheet, body: Json): Json {
  const ranges = Array.isArray(body.ranges) ? (body.ranges as unknown[]) : [];
  const boxes = ranges.map((r) => {
    const target = resolveRange(ss, String(r));
    return { sheet: target.sheet, box: boxInGrid(target) };
  });
  for (const { sheet, box } of boxes) clearCells(sheet, box);
  const out: Json = { spreadsheetId: ss.spreadsheetId };
  if (boxes.length > 0) out.clearedRanges = boxes.map(({ sheet, box }) => boxLabel(sheet, box));
  return out;
}
