/**
 * Cell values: how a written value is stored (valueInputOption RAW or USER_ENTERED) and how a
 * stored value is rendered (valueRenderOption, dateTimeRenderOption).
 * https://developers.google.com/workspace/sheets/api/reference/rest/v4/ValueInputOption
 *
 * What USER_ENTERED parses, as the Sheets UI does for an en_US spreadsheet: numbers (`"007"`
 * becomes 7, `"+4420"` becomes 4420 — the classic loss of leading zeros and plus signs), `1,234`,
 * percentages, `$` amounts, TRUE/FALSE, dates `2024-01-31`, `2024-01-31 10:30[:00]` and
 * `1/31/2024` (stored as serial numbers), a leading `'` (kept as text, apostrophe dropped) and
 * formulas. Formulas are stored, never evaluated: every render option returns the formula text,
 * and `getCell` tells them apart. ISO timestamps with `T` stay text, as in Sheets.
 */
import { invalid } from './errors.ts';

export type Scalar = string | number | boolean;

/** A value with a format Sheets inferred from USER_ENTERED input, or a formula. */
export interface RichCell {
  value: Scalar;
  formatted: string;
  formula?: string;
  date?: boolean;
}

/** A stored cell: a plain value (RAW, or USER_ENTERED that needed no format) or a rich one. */
export type Cell = Scalar | RichCell;

/** In a write: leave the cell as it is (JSON null). */
export const SKIP = Symbol('skip');
/** In a write: empty the cell (the empty string). */
export const CLEAR = Symbol('clear');
export type CellWrite = Cell | typeof SKIP | typeof CLEAR;

export type ValueInputOption = 'RAW' | 'USER_ENTERED';
export type ValueRenderOption = 'FORMATTED_VALUE' | 'UNFORMATTED_VALUE' | 'FORMULA';
export type DateTimeRenderOption = 'SERIAL_NUMBER' | 'FORMATTED_STRING';

/** Sheets refuses longer text in one cell. */
export const MAX_CELL_CHARS = 50_000;

const NUMBER = /^[+-]?(?:\d+|\d{1,3}(?:,\d{3})+)?(?:\.\d+)?(?:[eE][+-]?\d+)?$/;
const PERCENT = /^[+-]?(?:\d+(?:\.\d+)?|\.\d+)%$/;
const CURRENCY = /^([+-]?)\$((?:\d+|\d{1,3}(?:,\d{3})+)(?:\.\d+)?)$/;
const ISO_DATE = /^(\d{4})-(\d{1,2})-(\d{1,2})(?: (\d{1,2}):(\d{2})(?::(\d{2}))?)?$/;
const US_DATE = /^(\d{1,2})\/(\d{1,2})\/(\d{4})$/;

/**
 * The stored form of one written value. `where` names it in errors (`values[3][1]`).
 *
 * @example toCell('007', 'USER_ENTERED', 'values[0][0]') // 7
 */
export function toCell(raw: unknown, option: ValueInputOption, where: string): CellWrite {
  if (raw === null || raw === undefined) return SKIP;
  if (typeof raw === 'number' || typeof raw === 'boolean') return raw;
  if (typeof raw !== 'string') {
    throw invalid(
      `Invalid ${where}: ${Array.isArray(raw) ? 'list_value' : 'struct_value'} ${JSON.stringify(raw)}`,
    );
  }
  if (raw.length > MAX_CELL_CHARS) {
    throw invalid(
      `Your input contains more than the maximum of ${MAX_CELL_CHARS} characters in a single cell.`,
    );
  }
  if (raw === '') return CLEAR;
  return option === 'RAW' ? raw : parseUserEntered(raw);
}

function parseUserEntered(text: string): Cell {
  if (text.startsWith("'")) return text.slice(1);
  if (text.startsWith('=') && text.length > 1)
    return { value: text, formatted: text, formula: text };
  const t = text.trim();
  if (/^(true|false)$/i.test(t)) return t.toLowerCase() === 'true';
  if (/\d/.test(t) && NUMBER.test(t)) {
    const n = Number(t.replaceAll(',', ''));
    if (Number.isFinite(n)) return t.includes(',') ? { value: n, formatted: t } : n;
  }
  if (PERCENT.test(t)) return { value: Number(t.slice(0, -1)) / 100, formatted: t };
  const money = CURRENCY.exec(t);
  if (money) {
    const n = Number(money[2]!.replaceAll(',', ''));
    return { value: money[1] === '-' ? -n : n, formatted: t };
  }
  const serial = dateSerial(t);
  if (serial !== undefined) return { value: serial, formatted: t, date: true };
  return text;
}

/** Days since 1899-12-30, the Sheets (Lotus) epoch; the fraction is the time of day. */
function dateSerial(t: string): number | undefined {
  let y: number, mo: number, d: number;
  let h = 0,
    mi = 0,
    s = 0;
  const iso = ISO_DATE.exec(t);
  const us = iso ? undefined : US_DATE.exec(t);
  if (iso) {
    [y, mo, d] = [Number(iso[1]), Number(iso[2]), Number(iso[3])];
    if (iso[4] !== undefined) [h, mi, s] = [Number(iso[4]), Number(iso[5]), Number(iso[6] ?? 0)];
  } else if (us) {
    [mo, d, y] = [Number(us[1]), Number(us[2]), Number(us[3])];
  } else {
    return undefined;
  }
  const ms = Date.UTC(y, mo - 1, d);
  const check = new Date(ms);
  if (check.getUTCMonth() !== mo - 1 || check.getUTCDate() !== d) return undefined;
  if (h > 23 || mi > 59 || s > 59) return undefined;
  return ms / 86_400_000 + 25_569 + (h * 3600 + mi * 60 + s) / 86_400;
}

/** A value Sheets would write into an `updateCells` ExtendedValue. */
export function fromExtendedValue(value: Record<string, unknown> | undefined): CellWrite {
  if (!value) return CLEAR;
  if (typeof value.stringValue === 'string')
    return value.stringValue === '' ? CLEAR : value.stringValue;
  if (typeof value.numberValue === 'number') return value.numberValue;
  if (typeof value.boolValue === 'boolean') return value.boolValue;
  if (typeof value.formulaValue === 'string') {
    const f = value.formulaValue;
    return { value: f, formatted: f, formula: f };
  }
  return CLEAR;
}

/** Sheets' automatic number format, closely enough: up to 15 significant digits, `1E+21`. */
export function formatNumber(n: number): string {
  if (Number.isInteger(n) && Math.abs(n) < 1e15) return String(n);
  return String(Number(n.toPrecision(15))).replace('e', 'E');
}

/**
 * How a stored cell comes back from a read.
 *
 * @example render(7, 'FORMATTED_VALUE', 'SERIAL_NUMBER') // '7'
 */
export function render(
  cell: Cell,
  option: ValueRenderOption,
  dateOption: DateTimeRenderOption,
): Scalar {
  if (typeof cell !== 'object') {
    if (option !== 'FORMATTED_VALUE') return cell;
    if (typeof cell === 'number') return formatNumber(cell);
    if (typeof cell === 'boolean') return cell ? 'TRUE' : 'FALSE';
    return cell;
  }
  if (cell.formula !== undefined) return cell.formula;
  if (option === 'FORMATTED_VALUE') return cell.formatted;
  if (cell.date && dateOption === 'FORMATTED_STRING') return cell.formatted;
  return cell.value;
}

/** The CellData of a grid-data read: userEnteredValue, effectiveValue, formattedValue. */
export function cellData(cell: Cell): Record<string, unknown> {
  const extended = (v: Scalar): Record<string, Scalar> =>
    typeof v === 'number'
      ? { numberValue: v }
      : typeof v === 'boolean'
        ? { boolValue: v }
        : { stringValue: v };
  if (typeof cell !== 'object') {
    return {
      userEnteredValue: extended(cell),
      effectiveValue: extended(cell),
      formattedValue: render(cell, 'FORMATTED_VALUE', 'SERIAL_NUMBER'),
    };
  }
  if (cell.formula !== undefined) {
    return { userEnteredValue: { formulaValue: cell.formula }, formattedValue: cell.formula };
  }
  return {
    userEnteredValue: extended(cell.value),
    effectiveValue: extended(cell.value),
    formattedValue: cell.formatted,
  };
}
