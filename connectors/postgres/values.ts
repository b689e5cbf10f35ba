/**
 * PostgreSQL types as the SDK's field types, and the server's text for a value as plain JSON
 * (README.md, "Values"). Every value arrives as the text PostgreSQL prints (./client.ts turns
 * off the driver's own parsing), in UTC and ISO styles.
 */
import type { SourceField } from 'audiencehub/sdk';

/** How a column's values become JSON; a domain counts as its base type. */
export type Kind =
  | 'integer'
  | 'bigint'
  | 'float'
  | 'numeric'
  | 'boolean'
  | 'date'
  | 'timestamp'
  | 'timestamptz'
  | 'json'
  | 'bytea'
  | 'array'
  | 'text';

const BY_OID: Record<number, Kind> = {
  16: 'boolean',
  17: 'bytea',
  20: 'bigint',
  21: 'integer',
  23: 'integer',
  26: 'integer',
  114: 'json',
  700: 'float',
  701: 'float',
  1082: 'date',
  1114: 'timestamp',
  1184: 'timestamptz',
  1700: 'numeric',
  3802: 'json',
};

/** The kind of a base type, by its oid and `typcategory` (`A` for arrays). */
export const kindOf = (oid: number, category: string): Kind =>
  BY_OID[oid] ?? (category === 'A' ? 'array' : 'text');

/** The field type `discover` reports for a kind. */
export const FIELD_TYPE: Record<Exclude<Kind, 'bytea'>, SourceField['type']> = {
  integer: 'integer',
  bigint: 'integer',
  float: 'number',
  numeric: 'number',
  boolean: 'boolean',
  date: 'date',
  timestamp: 'datetime',
  timestamptz: 'datetime',
  json: 'json',
  array: 'json',
  text: 'string',
};

/** Kinds a cursor or key column can have: values PostgreSQL orders and this reader compares. */
export const ORDERABLE = new Set<Kind>([
  'integer',
  'bigint',
  'float',
  'numeric',
  'boolean',
  'date',
  'timestamp',
  'timestamptz',
  'text',
]);

/**
 * One value as JSON. `element` is an array's element kind.
 *
 * @example
 * jsonValue('2022-01-29 01:58:52.222594+00', 'timestamptz'); // '2022-01-29T01:58:52.222594Z'
 * jsonValue('12345678901234567.89', 'numeric'); // the same string: a float64 would round it
 * jsonValue('0.99', 'numeric'); // 0.99
 */
export function jsonValue(raw: unknown, kind: Kind, element: Kind = 'text'): unknown {
  if (raw === null || raw === undefined) return null;
  if (kind === 'array') {
    // Arrays whose element type the driver knows arrive as arrays of the elements' text;
    // others (arrays of a domain, of a composite) as PostgreSQL's array literal, kept as is.
    return Array.isArray(raw) ? raw.map((item) => jsonValue(item, element)) : String(raw);
  }
  const text = String(raw);
  switch (kind) {
    case 'integer':
      return Number(text);
    case 'bigint': {
      const n = Number(text);
      return Number.isSafeInteger(n) ? n : text;
    }
    case 'float': {
      const n = Number(text);
      return Number.isFinite(n) ? n : null;
    }
    case 'numeric':
      return exactNumber(text);
    case 'boolean':
      return text === 't' || text === 'true';
    case 'timestamp':
      return text.replace(/^(\d{4,}-\d\d-\d\d) (\d\d:\d\d:\d\d(?:\.\d+)?)$/, '$1T$2');
    case 'timestamptz':
      // The session's TimeZone is UTC: every value ends in +00.
      return text.replace(/^(\d{4,}-\d\d-\d\d) (\d\d:\d\d:\d\d(?:\.\d+)?)\+00$/, '$1T$2Z');
    case 'json':
      return JSON.parse(text) as unknown;
    default:
      // date (ISO), text, uuid, enums, intervals (ISO 8601), times, money, network types…
      return text;
  }
}

/**
 * A numeric as a JSON number when a float64 holds it exactly as written (at most 15
 * significant digits, within its range), else as its exact decimal string; NaN and the
 * infinities, which JSON cannot carry, as null.
 */
function exactNumber(text: string): number | string | null {
  const n = Number(text);
  if (!Number.isFinite(n)) return /^[+-]?(?:nan|infinity)$/i.test(text) ? null : text;
  const digits = text.replace(/^[+-]/, '').replace('.', '').replace(/^0+/, '').replace(/0+$/, '');
  if (digits.length > 15) return text;
  if (n === 0 && digits !== '') return text;
  if (n !== 0 && (Math.abs(n) < 1e-300 || Math.abs(n) > 1e300)) return text;
  return n;
}
