/**
 * How a stream's rows become the hub's data: which fields are identities, which are traits, and
 * whether (and how) a row is an event. A mapping is JSON, validated by {@link StreamMapping}.
 *
 * A row becomes an identify message (its identities and traits) and, when the mapping has an
 * `event`, a track message — both when it has traits and an event. Both go through the same
 * identity resolution as the tracking API. A track message's id derives from the record's key
 * (one event per record, however often it is read); an identify's from what it says (rows
 * repeating a customer's identities and traits, like the lines of their orders, store one). A row that cannot be mapped (no usable identity, a
 * date or number that cannot be read) is rejected with a reason naming the field.
 *
 * @example
 * // UCI Online Retail: one event per invoice line, the customer by CustomerID.
 * {
 *   "identities": { "customer_id": "CustomerID" },
 *   "traits": { "country": "Country" },
 *   "event": {
 *     "name": "Order Line",
 *     "timestamp": { "field": "InvoiceDate", "format": "YYYY-MM-DD HH:mm:ss", "timezone": "Europe/London" },
 *     "properties": { "invoice": "InvoiceNo", "sku": "StockCode", "quantity": { "field": "Quantity", "type": "integer" } },
 *     "revenue": { "multiply": ["Quantity", "UnitPrice"] }
 *   }
 * }
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { HubConfig } from '../config.ts';
import type { PreparedMessage } from '../events/message.ts';
import type { FieldError } from '../errors.ts';
import {
  IDENTITY,
  IDENTITY_TYPE,
  normaliseIdentity,
  type IdentityKey,
} from '../profiles/identity.ts';
import type { SourceStream } from '../sdk/source.ts';
import { dateFormatProblem, dateReader, timeZoneProblem, type DateReader } from './dates.ts';

const FieldName = z.string().trim().min(1).max(200).describe('A field of the stream’s rows');
const Name = z.string().trim().min(1).max(200);
const TimeZone = z
  .string()
  .trim()
  .min(1)
  .superRefine((tz, ctx) => {
    const problem = timeZoneProblem(tz);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });
const DateFormat = z
  .string()
  .trim()
  .min(1)
  .max(100)
  .superRefine((format, ctx) => {
    const problem = dateFormatProblem(format);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });

/** What a field's value is read as. */
export const ValueType = z.enum(['string', 'number', 'integer', 'boolean', 'date', 'datetime']);
export type ValueType = z.infer<typeof ValueType>;

/**
 * A field taken as it is (`"Country"`), or read as a type (`{ "field": "Age", "type":
 * "integer" }`; dates with an optional `format` and `timezone`). A value that does not read as
 * its type rejects the row.
 */
export const FieldSpec = z.union([
  FieldName,
  z
    .object({
      field: FieldName,
      type: ValueType.optional(),
      format: DateFormat.optional(),
      timezone: TimeZone.optional(),
    })
    .strict(),
]);
export type FieldSpec = z.infer<typeof FieldSpec>;

/** A date and time field: ISO 8601 unless a `format` says otherwise, UTC unless a `timezone` does. */
export const TimestampSpec = z.union([
  FieldName,
  z
    .object({ field: FieldName, format: DateFormat.optional(), timezone: TimeZone.optional() })
    .strict(),
]);
export type TimestampSpec = z.infer<typeof TimestampSpec>;

/** Revenue from one field, or the product of two (`Quantity` × `UnitPrice`). */
export const RevenueSpec = z.union([
  FieldName,
  z.object({ field: FieldName }).strict(),
  z.object({ multiply: z.tuple([FieldName, FieldName]) }).strict(),
]);
export type RevenueSpec = z.infer<typeof RevenueSpec>;

export const EventMapping = z
  .object({
    /** A constant name, or `{ "field": … }` to take it from each row. */
    name: z.union([Name, z.object({ field: FieldName }).strict()]),
    /** When the event happened; the time the row was read when absent. */
    timestamp: TimestampSpec.optional(),
    /** A list of fields (kept under their names) or a map of property → field. */
    properties: z.union([z.array(FieldName).max(200), z.record(Name, FieldSpec)]).optional(),
    /** Makes the event a purchase of this amount (it counts in purchase_count and total_spent). */
    revenue: RevenueSpec.optional(),
  })
  .strict();
export type EventMapping = z.infer<typeof EventMapping>;

/** How one stream is mapped onto profiles, traits and events. */
export const StreamMapping = z
  .object({
    /** Identity type → field, e.g. `{ "email": "Email", "customer_id": "CustomerID" }`. */
    identities: z.record(
      z.string().regex(IDENTITY_TYPE, 'identity types are lower snake case, e.g. customer_id'),
      FieldName,
    ),
    /** Trait → field. */
    traits: z.record(Name, FieldSpec).default({}),
    /** The trait source the traits are recorded under (AUDIENCEHUB_TRAIT_PRIORITY ranks them); the source's name when absent. */
    traitSource: z.string().trim().min(1).max(100).optional(),
    /** When the traits held; the event's timestamp, else the time the row was read, when absent. */
    observedAt: TimestampSpec.optional(),
    event: EventMapping.optional(),
    /** Drop a row whose content exactly repeats an earlier row of the stream (default true). */
    dropDuplicates: z.boolean().default(true),
  })
  .strict()
  .superRefine((m, ctx) => {
    if (Object.keys(m.identities).length === 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['identities'],
        message: 'map at least one field to an identity (email, phone, user_id or your own type)',
      });
    }
  });
export type StreamMapping = z.infer<typeof StreamMapping>;
export type StreamMappingInput = z.input<typeof StreamMapping>;

/**
 * Fields the mapping names that the stream does not have, as errors naming the mapping's
 * place (`traits.country`). A dotted name (`geo.country`) is checked by its first part.
 */
export function unknownFields(mapping: StreamMapping, stream: SourceStream): FieldError[] {
  if (stream.fields.length === 0) return [];
  const known = new Set(stream.fields.map((f) => f.name));
  const errors: FieldError[] = [];
  const check = (path: string, field: string) => {
    if (known.has(field) || known.has(field.split('.')[0]!)) return;
    errors.push({ field: path, message: `"${field}" is not a field of stream ${stream.name}` });
  };
  const spec = (path: string, s: FieldSpec | TimestampSpec) =>
    check(path, typeof s === 'string' ? s : s.field);
  for (const [type, field] of Object.entries(mapping.identities))
    check(`identities.${type}`, field);
  for (const [trait, s] of Object.entries(mapping.traits)) spec(`traits.${trait}`, s);
  if (mapping.observedAt) spec('observedAt', mapping.observedAt);
  const event = mapping.event;
  if (event) {
    if (typeof event.name !== 'string') check('event.name.field', event.name.field);
    if (event.timestamp) spec('event.timestamp', event.timestamp);
    if (Array.isArray(event.properties)) {
      event.properties.forEach((f, i) => check(`event.properties[${i}]`, f));
    } else if (event.properties) {
      for (const [p, s] of Object.entries(event.properties)) spec(`event.properties.${p}`, s);
    }
    const revenue = event.revenue;
    if (revenue !== undefined) {
      if (typeof revenue === 'string') check('event.revenue', revenue);
      else if ('field' in revenue) check('event.revenue.field', revenue.field);
      else revenue.multiply.forEach((f, i) => check(`event.revenue.multiply[${i}]`, f));
    }
  }
  return errors;
}

/** A row that could not be mapped. */
export interface Rejection {
  reason: string;
  /** The field the reason is about. */
  field?: string;
}

/** Where a row came from, for its message ids and provenance. */
export interface RowOrigin {
  /** The source's id: message ids stay the same when the source is renamed. */
  sourceId: string;
  stream: string;
  /** The record's key (see {@link recordKeyOf}). */
  key: string;
}

/** A mapping compiled for a run: readers built once, then applied to each row. */
export interface CompiledMapping {
  /** The row's messages, or why it is rejected. */
  map(
    row: Record<string, unknown>,
    origin: RowOrigin,
  ): { ok: true; messages: PreparedMessage[] } | ({ ok: false } & Rejection);
}

/** What a typed read gives: a value, nothing (empty), or a reason it cannot be read. */
type Read = { value: unknown } | { empty: true } | { error: string };

/**
 * Compile a mapping for a run. `traitSource` is the name messages are recorded under (the
 * mapping's, else the source's); `receivedAt` stands in for missing timestamps.
 *
 * @example
 * const mapping = compileMapping(StreamMapping.parse(json), { traitSource: 'erp', config, receivedAt: new Date() });
 * const result = mapping.map(row, { sourceId, stream: 'orders', key });
 */
export function compileMapping(
  mapping: StreamMapping,
  options: { traitSource: string; config: HubConfig; receivedAt: Date },
): CompiledMapping {
  const { config, receivedAt } = options;
  const source = mapping.traitSource ?? options.traitSource;
  const identities = Object.entries(mapping.identities);
  const traits = Object.entries(mapping.traits).map(
    ([name, spec]) => [name, reader(spec)] as const,
  );
  const observedAt = mapping.observedAt ? timestampReader(mapping.observedAt) : null;
  const event = mapping.event;
  const eventTime = event?.timestamp ? timestampReader(event.timestamp) : null;
  const properties: (readonly [string, FieldReader])[] = !event?.properties
    ? []
    : Array.isArray(event.properties)
      ? event.properties.map((f) => [f, reader(f)] as const)
      : Object.entries(event.properties).map(([p, spec]) => [p, reader(spec)] as const);
  const revenue = event?.revenue === undefined ? null : revenueReader(event.revenue);
  const purchaseProperty = (name: string) =>
    config.purchaseEvents.find((p) => p.event === name)?.revenueProperty;
  const context = (origin: RowOrigin) => ({ import: { source, stream: origin.stream } });

  return {
    map(row, origin) {
      // Identities: a value that cannot be normalised is left out; no usable one rejects the row.
      const keys: IdentityKey[] = [];
      const unusable: string[] = [];
      for (const [type, field] of identities) {
        const raw = valueAt(row, field);
        if (isEmpty(raw)) {
          unusable.push(`${field} is empty`);
          continue;
        }
        const value = normaliseIdentity(type, raw, config.defaultPhoneCountry);
        if (value) keys.push({ type, value });
        else unusable.push(`${field} is not a valid ${describeIdentity(type)}`);
      }
      if (keys.length === 0) {
        return {
          ok: false,
          reason: `no identity: ${unusable.join('; ')}`,
          field: identities[0]?.[1],
        };
      }

      const traitValues: Record<string, unknown> = {};
      for (const [name, read] of traits) {
        const r = read(row);
        if ('error' in r) return { ok: false, reason: r.error, field: read.field };
        if ('value' in r) traitValues[name] = r.value;
      }

      let when: Date | null = null;
      let name: string | null = null;
      const props: Record<string, unknown> = {};
      let amount: number | null = null;
      if (event) {
        if (eventTime) {
          const r = eventTime(row);
          if ('error' in r) return { ok: false, reason: r.error, field: eventTime.field };
          if ('value' in r) when = r.value as Date;
        }
        if (typeof event.name === 'string') {
          name = event.name;
        } else {
          const raw = valueAt(row, event.name.field);
          if (isEmpty(raw)) {
            return {
              ok: false,
              reason: `${event.name.field}: empty, the event needs a name`,
              field: event.name.field,
            };
          }
          name = String(raw).trim().slice(0, 200);
        }
        for (const [prop, read] of properties) {
          const r = read(row);
          if ('error' in r) return { ok: false, reason: r.error, field: read.field };
          if ('value' in r) props[prop] = r.value;
        }
        if (revenue) {
          const r = revenue(row);
          if ('error' in r) return { ok: false, reason: r.error, field: r.field };
          amount = r.value;
        } else {
          // As the tracking API does: a configured purchase event carries its revenue property.
          const property = purchaseProperty(name);
          if (property !== undefined) {
            const raw = props[property];
            const n = typeof raw === 'string' ? Number(raw) : raw;
            amount = typeof n === 'number' && Number.isFinite(n) ? n : 0;
          }
        }
      }

      let observed: Date | null = null;
      if (observedAt) {
        const r = observedAt(row);
        if ('error' in r) return { ok: false, reason: r.error, field: observedAt.field };
        if ('value' in r) observed = r.value as Date;
      }

      const userId = keys.find((k) => k.type === IDENTITY.userId)?.value ?? null;
      const anonymousId = keys.find((k) => k.type === IDENTITY.anonymousId)?.value ?? null;
      const messages: PreparedMessage[] = [];
      const hasTraits = Object.keys(traitValues).length > 0;
      if (hasTraits || !event) {
        const at = (observed ?? when ?? receivedAt).getTime();
        messages.push({
          type: 'identify',
          source,
          // What it says, not which row says it: the rows of one customer (an order line
          // each) repeat the same identify, stored once; a change is a new one.
          messageId: identifyId(origin, keys, traitValues),
          identities: keys,
          name: null,
          properties: {},
          context: context(origin),
          traits: traitValues,
          revenue: null,
          timestamp: at,
          originalTimestamp: (observed ?? when)?.getTime() ?? null,
          sentAt: null,
          receivedAt: receivedAt.getTime(),
          userId,
          anonymousId,
        });
      }
      if (event) {
        messages.push({
          type: 'track',
          source,
          // One event per record, whatever later changes to the row.
          messageId: messageId(origin, 'track'),
          identities: keys,
          name,
          properties: props,
          context: context(origin),
          traits: null,
          revenue: amount,
          timestamp: (when ?? receivedAt).getTime(),
          originalTimestamp: when?.getTime() ?? null,
          sentAt: null,
          receivedAt: receivedAt.getTime(),
          userId,
          anonymousId,
        });
      }
      return { ok: true, messages };
    },
  };
}

const describeIdentity = (type: string) =>
  type === IDENTITY.email ? 'email address' : type === IDENTITY.phone ? 'phone number' : 'id';

/**
 * A row's event id: a digest of the source, the stream and the record's key — the same every
 * time the record is read, so a re-read stores nothing twice.
 */
function messageId(origin: RowOrigin, kind: 'track'): string {
  const hash = createHash('sha256')
    .update(`${origin.sourceId}\u0000${origin.stream}\u0000${origin.key}\u0000${kind}`)
    .digest('base64url')
    .slice(0, 27);
  return `imp-t-${hash}`;
}

/** An identify's id: a digest of the source, the stream, and the identities and traits it says. */
function identifyId(
  origin: RowOrigin,
  keys: IdentityKey[],
  traits: Record<string, unknown>,
): string {
  const hash = createHash('sha256')
    .update(
      `${origin.sourceId}\u0000${origin.stream}\u0000${JSON.stringify(keys)}\u0000${JSON.stringify(traits)}`,
    )
    .digest('base64url')
    .slice(0, 27);
  return `imp-i-${hash}`;
}

/**
 * A record's identity: its primary key values, else the key the connector gave it, else a
 * digest of its content.
 *
 * @example
 * recordKeyOf({ primaryKey: ['id'] }, { id: 7, name: 'Ada' }); // '[7]'
 */
export function recordKeyOf(
  stream: Pick<SourceStream, 'primaryKey'>,
  data: Record<string, unknown>,
  key: string | undefined,
  digest: () => string,
): string {
  if (stream.primaryKey.length > 0) {
    const values = stream.primaryKey.map((field) => data[field]);
    if (values.every((v) => v !== undefined && v !== null && v !== '')) {
      return JSON.stringify(values);
    }
  }
  if (key !== undefined && key !== '') return key;
  return `#${digest()}`;
}

/** The md5 of a row's JSON as a uuid (for the digest table), and the JSON itself. */
export function rowDigest(json: string): string {
  const hex = createHash('md5').update(json).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// ---------------------------------------------------------------------------------------------
// Reading values

type FieldReader = ((row: Record<string, unknown>) => Read) & { field: string };

/** A field's value: the key as written, else a dotted path into nested objects. */
export function valueAt(row: Record<string, unknown>, field: string): unknown {
  if (Object.hasOwn(row, field)) return row[field];
  if (!field.includes('.')) return undefined;
  let value: unknown = row;
  for (const part of field.split('.')) {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

const isEmpty = (v: unknown) =>
  v === undefined || v === null || (typeof v === 'string' && v.trim() === '');

/** A short, safe rendering of a value for a reason. */
function shown(v: unknown): string {
  const text = typeof v === 'string' ? v : JSON.stringify(v);
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text);
}

const NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/** A number from a number or its plain decimal text; null when it is not one. */
export function readNumber(v: unknown): number | null {
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v !== 'string') return null;
  const text = v.trim();
  if (!NUMBER.test(text)) return null;
  const n = Number(text);
  return Number.isFinite(n) ? n : null;
}

function reader(spec: FieldSpec): FieldReader {
  const field = typeof spec === 'string' ? spec : spec.field;
  const type = typeof spec === 'string' ? undefined : spec.type;
  const dates =
    type === 'date' || type === 'datetime'
      ? dateReader(
          typeof spec === 'string' ? undefined : spec.format,
          typeof spec === 'string' ? undefined : spec.timezone,
        )
      : null;
  const read = (row: Record<string, unknown>): Read => {
    const raw = valueAt(row, field);
    if (isEmpty(raw)) return { empty: true };
    switch (type) {
      case undefined:
        return { value: typeof raw === 'string' ? raw.trim() : raw };
      case 'string':
        return { value: typeof raw === 'object' ? JSON.stringify(raw) : String(raw).trim() };
      case 'number':
      case 'integer': {
        const n = readNumber(raw);
        if (n === null) return { error: `${field}: ${shown(raw)} is not a number` };
        if (type === 'integer' && !Number.isInteger(n)) {
          return { error: `${field}: ${shown(raw)} is not a whole number` };
        }
        return { value: n };
      }
      case 'boolean': {
        const b = readBoolean(raw);
        if (b === null) return { error: `${field}: ${shown(raw)} is not true or false` };
        return { value: b };
      }
      case 'date':
      case 'datetime': {
        const d = dates!(raw);
        if (!d) return { error: dateError(field, raw, spec) };
        return { value: type === 'date' ? d.toISOString().slice(0, 10) : d.toISOString() };
      }
    }
  };
  return Object.assign(read, { field });
}

function readBoolean(v: unknown): boolean | null {
  if (typeof v === 'boolean') return v;
  if (v === 1 || v === 0) return v === 1;
  if (typeof v !== 'string') return null;
  const text = v.trim().toLowerCase();
  if (['true', 't', 'yes', 'y', '1'].includes(text)) return true;
  if (['false', 'f', 'no', 'n', '0'].includes(text)) return false;
  return null;
}

function dateError(field: string, raw: unknown, spec: FieldSpec | TimestampSpec): string {
  const format = typeof spec === 'string' ? undefined : spec.format;
  return `${field}: ${shown(raw)} is not a date${format && format !== 'iso' ? ` in the format ${format}` : ' (ISO 8601 expected)'}`;
}

function timestampReader(spec: TimestampSpec): FieldReader {
  const field = typeof spec === 'string' ? spec : spec.field;
  const read: DateReader = dateReader(
    typeof spec === 'string' ? undefined : spec.format,
    typeof spec === 'string' ? undefined : spec.timezone,
  );
  return Object.assign(
    (row: Record<string, unknown>): Read => {
      const raw = valueAt(row, field);
      if (isEmpty(raw)) return { error: `${field}: empty, a date is needed` };
      const d = read(raw);
      return d ? { value: d } : { error: dateError(field, raw, spec) };
    },
    { field },
  );
}

/** Revenue rounded to the events table's 4 decimals, so Quantity × UnitPrice keeps no float noise. */
function revenueReader(spec: RevenueSpec) {
  const fields =
    typeof spec === 'string' ? [spec] : 'field' in spec ? [spec.field] : [...spec.multiply];
  const read = (
    row: Record<string, unknown>,
  ): { value: number } | { error: string; field: string } => {
    let product = 1;
    for (const field of fields) {
      const raw = valueAt(row, field);
      if (isEmpty(raw)) return { error: `${field}: empty, the revenue needs a number`, field };
      const n = readNumber(raw);
      if (n === null) return { error: `${field}: ${shown(raw)} is not a number`, field };
      product *= n;
    }
    return { value: Math.round(product * 10_000) / 10_000 };
  };
  return read;
}
