/**
 * One line of a GA4 BigQuery export (one event) as a record: `event_params` flattened into a
 * `properties` object, `user_properties` likewise, the timestamp in µs kept and given as an ISO
 * time, ecommerce revenue kept, and a stable `event_id`.
 *
 * The export's schema: support.google.com/analytics/answer/7029846. BigQuery writes INT64
 * columns as JSON strings in NDJSON exports and as numbers in other copies; both are read.
 */
import { createHash } from 'node:crypto';
import { fromCompactDay } from './dates.ts';

type Json = Record<string, unknown>;

/**
 * JSON.parse, also taking the bare `NaN`, `Infinity` and `-Infinity` that Python's json module
 * writes by default (exports often pass through pandas or a script): read as null.
 */
export function parseExportLine(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    let out = '';
    let inString = false;
    for (let i = 0; i < text.length; i++) {
      const ch = text[i]!;
      if (inString) {
        out += ch;
        if (ch === '\\') out += text[++i] ?? '';
        else if (ch === '"') inString = false;
        continue;
      }
      if (ch === '"') inString = true;
      const word = /^(-?Infinity|NaN)/.exec(text.slice(i, i + 9))?.[1];
      if (word) {
        out += 'null';
        i += word.length - 1;
      } else {
        out += ch;
      }
    }
    if (out === text) throw error;
    return JSON.parse(out);
  }
}

/** An INT64 as a number when it is exactly one, else its decimal text. */
function int64(value: unknown): number | string | null {
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  if (typeof value === 'string' && /^-?\d+$/.test(value)) {
    const n = Number(value);
    return Number.isSafeInteger(n) ? n : value;
  }
  return null;
}

function float(value: unknown): number | null {
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  if (typeof value === 'string' && value.trim() !== '' && Number.isFinite(Number(value))) {
    return Number(value);
  }
  return null;
}

/** `{ key, value: { string_value | int_value | double_value | float_value } }[]` as an object. */
export function flattenParams(list: unknown): Record<string, string | number | null> {
  const out: Record<string, string | number | null> = {};
  if (!Array.isArray(list)) return out;
  for (const item of list as Json[]) {
    if (!item || typeof item.key !== 'string') continue;
    const v = (item.value ?? {}) as Json;
    if (typeof v.string_value === 'string') out[item.key] = v.string_value;
    else if (int64(v.int_value) !== null) out[item.key] = int64(v.int_value);
    else if (float(v.double_value) !== null) out[item.key] = float(v.double_value);
    else if (float(v.float_value) !== null) out[item.key] = float(v.float_value);
    else out[item.key] = null;
  }
  return out;
}

const sorted = (o: Record<string, unknown>) =>
  Object.keys(o)
    .sort()
    .map((k) => [k, o[k]]);

/**
 * The event's identity: what the export says about the event itself — its stream, device id,
 * timestamp, name, bundle, batch position and parameters — and not how it was enriched, so the
 * same event in an intraday and a daily table keeps one id, and exact duplicates (which GA4
 * exports do hold) collapse into one record.
 */
export function eventId(raw: Json, properties: Record<string, unknown>): string {
  const identity = [
    raw.stream_id == null ? null : String(raw.stream_id),
    raw.user_pseudo_id ?? null,
    String(raw.event_timestamp),
    raw.event_name,
    raw.event_bundle_sequence_id == null ? null : String(raw.event_bundle_sequence_id),
    raw.batch_event_index ?? null,
    raw.batch_page_id ?? null,
    raw.batch_ordering_id ?? null,
    sorted(properties),
  ];
  return createHash('sha256').update(JSON.stringify(identity)).digest('hex').slice(0, 32);
}

const objectOrNull = (v: unknown): Json | null =>
  v && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : null;

/**
 * A record from one parsed export line, or why the line is not an event.
 *
 * @example toEventRecord(JSON.parse(line)) // { data: { event_id, event_name, … } }
 */
export function toEventRecord(raw: unknown): { data: Record<string, unknown> } | { error: string } {
  const e = objectOrNull(raw);
  if (!e) return { error: 'not a JSON object' };
  if (typeof e.event_name !== 'string' || e.event_name === '') return { error: 'no event_name' };
  const micros = int64(e.event_timestamp);
  if (micros === null || typeof micros !== 'number') {
    return { error: 'no event_timestamp (microseconds since the epoch)' };
  }
  const time = new Date(Math.floor(micros / 1000));
  if (Number.isNaN(time.getTime())) return { error: 'event_timestamp is out of range' };
  const date =
    typeof e.event_date === 'string' && /^\d{8}$/.test(e.event_date)
      ? fromCompactDay(e.event_date)
      : time.toISOString().slice(0, 10);
  const properties = flattenParams(e.event_params);
  const ecommerce = objectOrNull(e.ecommerce);
  const session = properties.ga_session_id;
  return {
    data: {
      event_id: eventId(e, properties),
      event_name: e.event_name,
      event_date: date,
      event_time: time.toISOString(),
      event_timestamp: micros,
      user_id: typeof e.user_id === 'string' && e.user_id !== '' ? e.user_id : null,
      user_pseudo_id: typeof e.user_pseudo_id === 'string' ? e.user_pseudo_id : null,
      ga_session_id: typeof session === 'number' || typeof session === 'string' ? session : null,
      properties,
      user_properties: flattenParams(e.user_properties),
      revenue: float(ecommerce?.purchase_revenue),
      revenue_in_usd: float(ecommerce?.purchase_revenue_in_usd),
      value_in_usd: float(e.event_value_in_usd),
      currency: typeof properties.currency === 'string' ? properties.currency : null,
      transaction_id:
        typeof ecommerce?.transaction_id === 'string' && ecommerce.transaction_id !== '(not set)'
          ? ecommerce.transaction_id
          : null,
      ecommerce,
      items: Array.isArray(e.items) ? e.items : [],
      device: objectOrNull(e.device),
      geo: objectOrNull(e.geo),
      traffic_source: objectOrNull(e.traffic_source),
      platform: typeof e.platform === 'string' ? e.platform : null,
      stream_id: e.stream_id == null ? null : String(e.stream_id),
    },
  };
}
