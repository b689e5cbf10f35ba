/**
 * A1 notation as the Sheets API reads and writes it: `'Tab name'!A1:D10`, `Tab!A:Z`, `Tab!2:5`,
 * `Tab!A5:B` (row 5 down), `A1` (the first visible sheet), `'Tab'` (the whole sheet).
 * https://developers.google.com/workspace/sheets/api/guides/concepts#cell
 *
 * Choices where Google's grammar is not published (kept strict, so a plugin that works here
 * does not depend on leniency Sheets may not have):
 * - an unquoted sheet name may hold only letters, digits, `_` and `.`; anything else (spaces,
 *   `&`, `-`, `'`) must be quoted, apostrophes doubled: `'It''s'!A1`;
 * - R1C1 notation and named ranges are not understood ("Unable to parse range").
 */

/** Columns go up to ZZZ (18,278) in Sheets. */
export const MAX_COLUMNS = 18_278;

/** A rectangle on one sheet, 0-based and half-open; an `end` left undefined runs to the grid's edge. */
export interface GridRect {
  startRow: number;
  endRow?: number;
  startCol: number;
  endCol?: number;
}

export interface ParsedRange {
  /** The sheet title, unquoted, or undefined when the range names none (the first visible sheet). */
  sheet?: string;
  /** The cells; undefined for a whole sheet. */
  rect?: GridRect;
  /** The A1 part as written, upper-cased (for messages that echo the request). */
  a1?: string;
  /** A single cell (`B2`): a write may run right and down from it to the grid's edge. */
  anchor?: boolean;
}

const UNQUOTED_NAME = /^[\p{L}\p{N}_.]+$/u;
const A1_PART = /^\$?([A-Za-z]{1,3})?\$?([0-9]+)?$/;

/**
 * Parses a range, or returns undefined when Sheets would answer "Unable to parse range".
 * The sheet name is not looked up here (see `resolveRange` in state.ts).
 *
 * @example parseA1("'It''s'!B2:C") // { sheet: "It's", rect: { startRow: 1, startCol: 1, endCol: 3 }, a1: 'B2:C' }
 */
export function parseA1(text: string): ParsedRange | undefined {
  if (text.length === 0) return undefined;
  let sheet: string | undefined;
  let rest: string | undefined;
  if (text.startsWith("'")) {
    let name = '';
    let i = 1;
    for (;;) {
      const quote = text.indexOf("'", i);
      if (quote < 0) return undefined;
      name += text.slice(i, quote);
      if (text[quote + 1] === "'") {
        name += "'";
        i = quote + 2;
        continue;
      }
      i = quote + 1;
      break;
    }
    if (name.length === 0) return undefined;
    sheet = name;
    if (i === text.length) return { sheet };
    if (text[i] !== '!') return undefined;
    rest = text.slice(i + 1);
  } else {
    const bang = text.lastIndexOf('!');
    if (bang >= 0) {
      sheet = text.slice(0, bang);
      if (!UNQUOTED_NAME.test(sheet)) return undefined;
      rest = text.slice(bang + 1);
    } else {
      const rect = parseCells(text);
      if (rect) return { rect, a1: text.toUpperCase(), anchor: !text.includes(':') };
      if (!UNQUOTED_NAME.test(text)) return undefined;
      return { sheet: text };
    }
  }
  const rect = parseCells(rest);
  if (!rect) return undefined;
  return { sheet, rect, a1: rest.toUpperCase(), anchor: !rest.includes(':') };
}

interface Corner {
  col?: number;
  row?: number;
}

function parseCorner(text: string): Corner | undefined {
  const m = A1_PART.exec(text);
  if (!m || (m[1] === undefined && m[2] === undefined)) return undefined;
  const corner: Corner = {};
  if (m[1] !== undefined) {
    const col = columnIndex(m[1]);
    if (col >= MAX_COLUMNS) return undefined;
    corner.col = col;
  }
  if (m[2] !== undefined) {
    const row = Number(m[2]);
    if (!Number.isSafeInteger(row) || row < 1) return undefined;
    corner.row = row - 1;
  }
  return corner;
}

function parseCells(text: string): GridRect | undefined {
  const parts = text.split(':');
  if (parts.length > 2) return undefined;
  const a = parseCorner(parts[0]!);
  if (!a) return undefined;
  if (parts.length === 1) {
    // A lone corner must be a cell: "A" or "5" alone is not a range.
    if (a.col === undefined || a.row === undefined) return undefined;
    return { startRow: a.row, endRow: a.row + 1, startCol: a.col, endCol: a.col + 1 };
  }
  const b = parseCorner(parts[1]!);
  if (!b) return undefined;
  // Columns: both given (A1:C3, A:C), or neither (2:5). "A1:5" is not a range.
  if ((a.col === undefined) !== (b.col === undefined)) return undefined;
  const rect: GridRect = { startRow: 0, startCol: 0 };
  if (a.col !== undefined && b.col !== undefined) {
    rect.startCol = Math.min(a.col, b.col);
    rect.endCol = Math.max(a.col, b.col) + 1;
  }
  if (a.row !== undefined && b.row !== undefined) {
    rect.startRow = Math.min(a.row, b.row);
    rect.endRow = Math.max(a.row, b.row) + 1;
  } else if (a.row !== undefined) {
    rect.startRow = a.row; // A5:B, from row 5 down
  } else if (b.row !== undefined) {
    rect.endRow = b.row + 1;
  }
  return rect;
}

/** `A` → 0, `Z` → 25, `AA` → 26. */
export function columnIndex(letters: string): number {
  let n = 0;
  for (const ch of letters.toUpperCase()) n = n * 26 + (ch.charCodeAt(0) - 64);
  return n - 1;
}

/** 0 → `A`, 26 → `AA`. */
export function columnLetters(index: number): string {
  let n = index + 1;
  let s = '';
  while (n > 0) {
    const r = (n - 1) % 26;
    s = String.fromCharCode(65 + r) + s;
    n = Math.floor((n - 1) / 26);
  }
  return s;
}

/**
 * The sheet name as Sheets writes it in ranges it returns: bare when it is a plain identifier
 * that cannot be read as a cell, quoted (apostrophes doubled) otherwise.
 */
export function quoteSheetName(title: string): string {
  const plain =
    /^[A-Za-z_][A-Za-z0-9_]*$/.test(title) &&
    !/^[A-Za-z]{1,3}[0-9]+$/.test(title) &&
    !/^[Rr][0-9]*[Cc][0-9]*$/.test(title) &&
    !/^(true|false)$/i.test(title);
  return plain ? title : `'${title.replaceAll("'", "''")}'`;
}

/** `Tab!A1:C3`, or `Tab!B2` for a single cell (Sheets collapses those). */
export function formatRange(
  title: string,
  startRow: number,
  endRow: number,
  startCol: number,
  endCol: number,
): string {
  const a = `${columnLetters(startCol)}${startRow + 1}`;
  const single = endRow - startRow === 1 && endCol - startCol === 1;
  const cells = single ? a : `${a}:${columnLetters(endCol - 1)}${endRow}`;
  return `${quoteSheetName(title)}!${cells}`;
}
