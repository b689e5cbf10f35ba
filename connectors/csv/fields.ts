/**
 * What a CSV file's columns are: names from its header row, types guessed from a sample of its
 * rows, and how a row becomes a record with a stable key.
 */
import { hash } from 'node:crypto';
import { ConfigError, type SourceField } from 'audiencehub/sdk';

/** A file's columns, from its header row. */
export interface Columns {
  /** The field names, in file order: the header cells, trimmed. */
  names: string[];
  /**
   * Cells a row may have: `names.length`, plus unnamed columns at the end of a header that
   * ends with a delimiter (Excel writes those); their cells must stay empty.
   */
  width: number;
  /** Column indexes in the order of their names, so a key ignores the order of columns. */
  keyOrder: number[];
  /** The names in that order, as JSON: the start of every key's hashed text. */
  keyPrefix: string;
}

/**
 * The columns a header row names. An empty or repeated name is a ConfigError naming the column:
 * records are keyed by name, so neither could be told apart.
 *
 * @example
 * columnsOf(['email', ' Name '], 'people.csv').names // ['email', 'Name']
 */
export function columnsOf(header: string[], file: string): Columns {
  const cells = header.map((cell) => cell.trim());
  let named = cells.length;
  while (named > 0 && cells[named - 1] === '') named--;
  if (named === 0) throw new ConfigError(`${file} has no column names in its header row.`);
  const names = cells.slice(0, named);
  const seen = new Map<string, number>();
  names.forEach((name, i) => {
    if (name === '') {
      throw new ConfigError(
        `${file}: column ${i + 1} has no name (its header cell is empty); give it one.`,
      );
    }
    const first = seen.get(name);
    if (first !== undefined) {
      throw new ConfigError(
        `${file}: columns ${first + 1} and ${i + 1} are both named "${name}"; rename one of them.`,
      );
    }
    seen.set(name, i);
  });
  const keyOrder = names
    .map((_, i) => i)
    .sort((a, b) => (names[a]! < names[b]! ? -1 : names[a]! > names[b]! ? 1 : 0));
  return {
    names,
    width: cells.length,
    keyOrder,
    keyPrefix: JSON.stringify(keyOrder.map((i) => names[i])),
  };
}

/**
 * A row as a record: each header name with its cell as text, an empty cell as null. A row with
 * more or fewer cells than the header is a ConfigError naming the line; a row whose cells are
 * all empty carries nothing and is `null`.
 */
export function recordOf(
  columns: Columns,
  cells: string[],
  where: { file: string; line: number },
): Record<string, string | null> | null {
  const { names } = columns;
  if (cells.length < names.length || cells.length > columns.width) {
    throw new ConfigError(
      `${where.file}, line ${where.line}: ${cells.length} cells where the header names ${names.length} columns.`,
    );
  }
  for (let i = names.length; i < cells.length; i++) {
    if (cells[i] !== '') {
      throw new ConfigError(
        `${where.file}, line ${where.line}: a value in column ${i + 1}, which the header does not name.`,
      );
    }
  }
  const data: Record<string, string | null> = {};
  let empty = true;
  for (let i = 0; i < names.length; i++) {
    const cell = cells[i]!;
    if (cell === '') data[names[i]!] = null;
    else {
      data[names[i]!] = cell;
      empty = false;
    }
  }
  return empty ? null : data;
}

/**
 * A record's key: a digest of its column names and values, in name order. Two rows with the
 * same values have the same key (the hub keeps one), whatever the order of the columns and
 * however often the file is read.
 */
export function keyOf(columns: Columns, cells: string[]): string {
  const values = columns.keyOrder.map((i) => cells[i] || null);
  // One-shot `hash` is several times faster than createHash() on a row's few hundred bytes.
  return hash('sha256', columns.keyPrefix + JSON.stringify(values), 'hex').slice(0, 32);
}

/** How many rows `discover` reads to guess each column's type. */
export const SAMPLE_ROWS = 10_000;

// Conservative on purpose: a guess that is too narrow makes the hub reject the rows that do not
// fit it, while `string` rejects nothing. Leading zeros (ZIP codes, phone numbers, account
// numbers) and integers past 2^53 stay text.
const INTEGER = /^-?(?:0|[1-9]\d{0,14})$/;
const DECIMAL = /^-?(?:0|[1-9]\d{0,14})(?:\.\d+(?:[eE][+-]?\d{1,3})?|[eE][+-]?\d{1,3})$/;
const BOOLEAN = /^(?:true|false)$/i;
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
// ISO 8601 with a space allowed for the T; the offset may be `+00` as PostgreSQL writes it.
const DATETIME =
  /^(\d{4})-(\d{2})-(\d{2})[T ]([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d)(?:\.\d{1,9})?)?(?:Z|[+-](?:[01]\d|2[0-3])(?::?[0-5]\d)?)?$/;

type Guess = SourceField['type'];

/** A column's type from its non-empty sampled values: the narrowest one all of them fit. */
export function inferType(values: Iterable<string>): Guess {
  let possible = new Set<Guess>(['integer', 'number', 'boolean', 'date', 'datetime']);
  let any = false;
  let withTime = false;
  for (const value of values) {
    if (value === '') continue;
    any = true;
    const fits = new Set<Guess>();
    if (INTEGER.test(value)) fits.add('integer');
    if (INTEGER.test(value) || (DECIMAL.test(value) && Number.isFinite(Number(value)))) {
      fits.add('number');
    }
    if (BOOLEAN.test(value)) fits.add('boolean');
    const date = DATE.exec(value);
    if (date && isDay(date)) fits.add('date').add('datetime');
    const time = DATETIME.exec(value);
    if (time && isDay(time)) {
      fits.add('datetime');
      withTime = true;
    }
    possible = new Set([...possible].filter((type) => fits.has(type)));
    if (possible.size === 0) return 'string';
  }
  if (!any) return 'string';
  for (const type of ['integer', 'number', 'boolean'] as const) {
    if (possible.has(type)) return type;
  }
  // Dates alone are dates; dates mixed with date-times are date-times.
  if (possible.has('date') && !withTime) return 'date';
  return possible.has('datetime') ? 'datetime' : 'string';
}

/** Year, month and day name a day that exists (no 31 April). */
function isDay(match: RegExpExecArray): boolean {
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  const date = new Date(Date.UTC(year, month - 1, day));
  return date.getUTCMonth() === month - 1 && date.getUTCDate() === day && year >= 1;
}
