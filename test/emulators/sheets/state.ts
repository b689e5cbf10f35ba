/**
 * The emulator's spreadsheets: tabs with a grid size (rowCount × columnCount, which is what the
 * 10,000,000-cell limit counts) and sparse cell data. Every operation costs in proportion to
 * the cells it touches or the rows it moves, never to the spreadsheet's size:
 * - `rows` holds only rows up to the last one with data, each trimmed of trailing empties;
 * - the cell count of a workbook is Σ rowCount × columnCount over its tabs;
 * - a batchUpdate snapshots the row index of each tab it touches (pointers only) and copies
 *   a row before changing it in place, so a failed batch is rolled back without copying data.
 */
import { formatRange, parseA1, quoteSheetName, type GridRect } from './a1.ts';
import {
  CLEAR,
  SKIP,
  render,
  type Cell,
  type CellWrite,
  type DateTimeRenderOption,
  type Scalar,
  type ValueRenderOption,
} from './cells.ts';
import { invalid, unparsableRange } from './errors.ts';

export type Row = Array<Cell | undefined>;

export interface Sheet {
  sheetId: number;
  title: string;
  rowCount: number;
  columnCount: number;
  frozenRowCount: number;
  frozenColumnCount: number;
  hidden: boolean;
  /** Cell data by row; `rows.length` is one past the last row holding a value. */
  rows: Array<Row | undefined>;
}

export interface Spreadsheet {
  spreadsheetId: string;
  title: string;
  locale: string;
  timeZone: string;
  sheets: Sheet[];
  /** Tokens allowed to open it; everyone when undefined. */
  sharedWith?: Set<string>;
}

/** A new tab's grid, as in Sheets. */
export const DEFAULT_ROWS = 1000;
export const DEFAULT_COLUMNS = 26;

export function newSheet(
  sheetId: number,
  title: string,
  rowCount = DEFAULT_ROWS,
  columnCount = DEFAULT_COLUMNS,
): Sheet {
  return {
    sheetId,
    title,
    rowCount,
    columnCount,
    frozenRowCount: 0,
    frozenColumnCount: 0,
    hidden: false,
    rows: [],
  };
}

export function totalCells(ss: Spreadsheet): number {
  let n = 0;
  for (const s of ss.sheets) n += s.rowCount * s.columnCount;
  return n;
}

/** Tab titles are unique without regard to case in Sheets. */
export function findSheet(ss: Spreadsheet, title: string): Sheet | undefined {
  const key = title.toLowerCase();
  return ss.sheets.find((s) => s.title.toLowerCase() === key);
}

export function sheetById(ss: Spreadsheet, sheetId: number): Sheet | undefined {
  return ss.sheets.find((s) => s.sheetId === sheetId);
}

/** SheetProperties as `spreadsheets.get` returns them. */
export function sheetProperties(ss: Spreadsheet, sheet: Sheet): Record<string, unknown> {
  const grid: Record<string, number> = {
    rowCount: sheet.rowCount,
    columnCount: sheet.columnCount,
  };
  if (sheet.frozenRowCount) grid.frozenRowCount = sheet.frozenRowCount;
  if (sheet.frozenColumnCount) grid.frozenColumnCount = sheet.frozenColumnCount;
  const props: Record<string, unknown> = {
    sheetId: sheet.sheetId,
    title: sheet.title,
    index: ss.sheets.indexOf(sheet),
    sheetType: 'GRID',
    gridProperties: grid,
  };
  if (sheet.hidden) props.hidden = true;
  return props;
}

/** A range resolved against a spreadsheet. */
export interface Target {
  sheet: Sheet;
  /** The cells named; undefined for the whole tab. */
  rect?: GridRect;
  /** The range as Sheets echoes it in messages: `'My tab'!A1:B2`. */
  label: string;
  /** A single cell, which writes treat as the top-left corner of the data. */
  anchor?: boolean;
}

/** The rectangle a target covers, open ends closed at the grid's edge. */
export interface Box {
  r0: number;
  r1: number;
  c0: number;
  c1: number;
}

/**
 * Resolves an A1 range, throwing "Unable to parse range" as Sheets does for bad syntax and
 * unknown tabs. A range naming no tab is on the first visible tab, unless the whole text is a
 * tab's title (then it is that whole tab).
 */
export function resolveRange(ss: Spreadsheet, text: string): Target {
  const parsed = parseA1(text);
  if (!parsed) {
    const whole = findSheet(ss, text);
    if (whole) return { sheet: whole, label: quoteSheetName(whole.title) };
    throw unparsableRange(text);
  }
  let sheet: Sheet | undefined;
  if (parsed.sheet !== undefined) {
    sheet = findSheet(ss, parsed.sheet);
  } else {
    const whole = findSheet(ss, text);
    if (whole) return { sheet: whole, label: quoteSheetName(whole.title) };
    sheet = ss.sheets.find((s) => !s.hidden) ?? ss.sheets[0];
  }
  if (!sheet) throw unparsableRange(text);
  const name = quoteSheetName(sheet.title);
  if (!parsed.rect) return { sheet, label: name };
  return { sheet, rect: parsed.rect, label: `${name}!${parsed.a1}`, anchor: parsed.anchor };
}

/**
 * Refuses a range reaching past the grid, with Sheets' message; returns the box it covers.
 * Reads, clears and value writes all check this (only appends grow the grid).
 */
export function boxInGrid(target: Target): Box {
  const { sheet, rect } = target;
  if (!rect) return { r0: 0, r1: sheet.rowCount, c0: 0, c1: sheet.columnCount };
  const outside =
    rect.startRow >= sheet.rowCount ||
    rect.startCol >= sheet.columnCount ||
    (rect.endRow ?? 0) > sheet.rowCount ||
    (rect.endCol ?? 0) > sheet.columnCount;
  if (outside) {
    throw invalid(
      `Range (${target.label}) exceeds grid limits. Max rows: ${sheet.rowCount}, max columns: ${sheet.columnCount}`,
    );
  }
  return {
    r0: rect.startRow,
    r1: rect.endRow ?? sheet.rowCount,
    c0: rect.startCol,
    c1: rect.endCol ?? sheet.columnCount,
  };
}

export function boxLabel(sheet: Sheet, box: Box): string {
  return formatRange(sheet.title, box.r0, box.r1, box.c0, box.c1);
}

// ---- row storage ---------------------------------------------------------------------------

/** Undo information for a spreadsheets.batchUpdate, so a failing request rolls all back. */
export interface Txn {
  ss: Spreadsheet;
  props: Pick<Spreadsheet, 'title' | 'locale' | 'timeZone'>;
  sheets: Sheet[];
  snapshots: Map<Sheet, { props: Omit<Sheet, 'rows'>; rows: Array<Row | undefined> }>;
  copied: WeakSet<Row>;
}

export function beginTxn(ss: Spreadsheet): Txn {
  const props = { title: ss.title, locale: ss.locale, timeZone: ss.timeZone };
  return { ss, props, sheets: ss.sheets.slice(), snapshots: new Map(), copied: new WeakSet() };
}

/** Records a tab's state the first time a batch touches it. */
export function touch(txn: Txn | undefined, sheet: Sheet): void {
  if (!txn || txn.snapshots.has(sheet)) return;
  const { rows, ...props } = sheet;
  txn.snapshots.set(sheet, { props, rows: rows.slice() });
}

export function rollback(txn: Txn): void {
  for (const [sheet, snap] of txn.snapshots) Object.assign(sheet, snap.props, { rows: snap.rows });
  Object.assign(txn.ss, txn.props, { sheets: txn.sheets });
}

/** The row to change in place (created if empty; copied first inside a batch). */
function editRow(sheet: Sheet, r: number, txn?: Txn): Row {
  let row = sheet.rows[r];
  if (!row) {
    row = [];
    if (txn) txn.copied.add(row);
    sheet.rows[r] = row;
  } else if (txn && !txn.copied.has(row)) {
    row = row.slice();
    txn.copied.add(row);
    sheet.rows[r] = row;
  }
  return row;
}

function trimRow(sheet: Sheet, r: number): void {
  const row = sheet.rows[r];
  if (!row) return;
  let n = row.length;
  while (n > 0 && row[n - 1] === undefined) n--;
  if (n === 0) sheet.rows[r] = undefined;
  else if (n !== row.length) row.length = n;
}

function trimRows(sheet: Sheet): void {
  const rows = sheet.rows;
  let n = rows.length;
  while (n > 0 && rows[n - 1] === undefined) n--;
  if (n !== rows.length) rows.length = n;
}

/** Writes a block of cells with its top-left at (r0, c0); the caller checked the grid. */
export function writeCells(
  sheet: Sheet,
  r0: number,
  c0: number,
  block: CellWrite[][],
  txn?: Txn,
): void {
  touch(txn, sheet);
  for (let i = 0; i < block.length; i++) {
    const src = block[i]!;
    if (src.length === 0) continue;
    const r = r0 + i;
    let row: Row | undefined;
    for (let j = 0; j < src.length; j++) {
      const w = src[j]!;
      if (w === SKIP) continue;
      const c = c0 + j;
      if (w === CLEAR) {
        const existing = sheet.rows[r];
        if (existing && c < existing.length && existing[c] !== undefined) {
          row ??= editRow(sheet, r, txn);
          row[c] = undefined;
        }
        continue;
      }
      row ??= editRow(sheet, r, txn);
      row[c] = w;
    }
    if (row) trimRow(sheet, r);
  }
  trimRows(sheet);
}

/** Empties the cells of a box (values only; Sheets keeps formats). */
export function clearCells(sheet: Sheet, box: Box, txn?: Txn): void {
  touch(txn, sheet);
  const end = Math.min(box.r1, sheet.rows.length);
  for (let r = box.r0; r < end; r++) {
    const row = sheet.rows[r];
    if (!row) continue;
    if (box.c0 === 0 && box.c1 >= row.length) {
      sheet.rows[r] = undefined;
      continue;
    }
    if (box.c0 >= row.length) continue;
    const edit = editRow(sheet, r, txn);
    const stop = Math.min(box.c1, edit.length);
    for (let c = box.c0; c < stop; c++) edit[c] = undefined;
    trimRow(sheet, r);
  }
  trimRows(sheet);
}

export type Major = 'ROWS' | 'COLUMNS';

/**
 * The values of a box as `values.get` returns them: trailing empty rows and columns dropped,
 * empty cells inside as "" and empty rows inside as [].
 */
export function readCells(
  sheet: Sheet,
  box: Box,
  major: Major,
  option: ValueRenderOption,
  dateOption: DateTimeRenderOption,
): Scalar[][] {
  const out: Scalar[][] = [];
  let last = -1;
  const end = Math.min(box.r1, sheet.rows.length);
  for (let r = box.r0; r < end; r++) {
    const row = sheet.rows[r];
    const values: Scalar[] = [];
    if (row) {
      const stop = Math.min(box.c1, row.length);
      let lastCol = box.c0 - 1;
      for (let c = stop - 1; c >= box.c0; c--) {
        if (row[c] !== undefined) {
          lastCol = c;
          break;
        }
      }
      for (let c = box.c0; c <= lastCol; c++) {
        const cell = row[c];
        values.push(cell === undefined ? '' : render(cell, option, dateOption));
      }
    }
    if (values.length > 0) last = out.length;
    out.push(values);
  }
  out.length = last + 1;
  if (major === 'ROWS') return out;
  const width = out.reduce((w, row) => Math.max(w, row.length), 0);
  const columns: Scalar[][] = [];
  for (let c = 0; c < width; c++) {
    const col: Scalar[] = out.map((row) => row[c] ?? '');
    let n = col.length;
    while (n > 0 && col[n - 1] === '') n--;
    col.length = n;
    columns.push(col);
  }
  return columns;
}

/** The stored cell at (r, c), if any. */
export function cellAt(sheet: Sheet, r: number, c: number): Cell | undefined {
  return sheet.rows[r]?.[c];
}

function rowHasData(row: Row | undefined, c0: number, c1: number): boolean {
  if (!row) return false;
  const stop = Math.min(c1, row.length);
  for (let c = c0; c < stop; c++) if (row[c] !== undefined) return true;
  return false;
}

/**
 * The "table" `values.append` appends to: from the first row at or below `r0` with data in
 * columns [c0, c1), down to the last row before an empty one. Returns the box of the table.
 */
export function findTable(sheet: Sheet, r0: number, c0: number, c1: number): Box | undefined {
  const rows = sheet.rows;
  let r = r0;
  while (r < rows.length && !rowHasData(rows[r], c0, c1)) r++;
  if (r >= rows.length) return undefined;
  const start = r;
  let first = c1;
  let lastCol = c0;
  while (r < rows.length && rowHasData(rows[r], c0, c1)) {
    const row = rows[r]!;
    const stop = Math.min(c1, row.length);
    for (let c = c0; c < Math.min(first, stop); c++) {
      if (row[c] !== undefined) {
        first = c;
        break;
      }
    }
    for (let c = stop - 1; c >= lastCol; c--) {
      if (row[c] !== undefined) {
        lastCol = c;
        break;
      }
    }
    r++;
  }
  return { r0: start, r1: r, c0: first, c1: lastCol + 1 };
}

// ---- grid changes --------------------------------------------------------------------------

export function insertRows(sheet: Sheet, at: number, n: number, txn?: Txn): void {
  touch(txn, sheet);
  const rows = sheet.rows;
  if (at < rows.length) {
    const old = rows.length;
    rows.length = old + n;
    rows.copyWithin(at + n, at, old);
    rows.fill(undefined, at, at + n);
  }
  sheet.rowCount += n;
}

export function deleteRows(sheet: Sheet, start: number, end: number, txn?: Txn): void {
  touch(txn, sheet);
  if (start < sheet.rows.length) sheet.rows.splice(start, end - start);
  trimRows(sheet);
  sheet.rowCount -= end - start;
}

export function insertColumns(sheet: Sheet, at: number, n: number, txn?: Txn): void {
  touch(txn, sheet);
  for (let r = 0; r < sheet.rows.length; r++) {
    const row = sheet.rows[r];
    if (!row || row.length <= at) continue;
    const edit = editRow(sheet, r, txn);
    const old = edit.length;
    edit.length = old + n;
    edit.copyWithin(at + n, at, old);
    edit.fill(undefined, at, at + n);
  }
  sheet.columnCount += n;
}

export function deleteColumns(sheet: Sheet, start: number, end: number, txn?: Txn): void {
  touch(txn, sheet);
  for (let r = 0; r < sheet.rows.length; r++) {
    const row = sheet.rows[r];
    if (!row || row.length <= start) continue;
    editRow(sheet, r, txn).splice(start, end - start);
    trimRow(sheet, r);
  }
  trimRows(sheet);
  sheet.columnCount -= end - start;
}

/** Sets the grid size; shrinking drops the data outside, as in Sheets. */
export function resize(sheet: Sheet, rowCount: number, columnCount: number, txn?: Txn): void {
  touch(txn, sheet);
  if (rowCount < sheet.rows.length) {
    sheet.rows.length = rowCount;
    trimRows(sheet);
  }
  if (columnCount < sheet.columnCount) {
    for (let r = 0; r < sheet.rows.length; r++) {
      const row = sheet.rows[r];
      if (!row || row.length <= columnCount) continue;
      editRow(sheet, r, txn).length = columnCount;
      trimRow(sheet, r);
    }
    trimRows(sheet);
  }
  sheet.rowCount = rowCount;
  sheet.columnCount = columnCount;
}
