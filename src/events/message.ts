/**
 * Messages of the Segment HTTP tracking spec, validated and turned into what the hub stores.
 * https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/
 */
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { HubConfig } from '../config.ts';
import type { FieldError } from '../errors.ts';
import {
  IDENTITY,
  IDENTITY_TYPE,
  normaliseEmail,
  normaliseId,
  normaliseIdentity,
  normalisePhone,
  type IdentityKey,
} from '../profiles/identity.ts';

/** The spec's limits: 32 KB a message, 500 KB a batch request. */
export const MAX_MESSAGE_BYTES = 32 * 1024;
export const MAX_BATCH_BYTES = 500 * 1024;

export const MESSAGE_TYPES = ['track', 'identify', 'page', 'screen', 'alias', 'group'] as const;
export type MessageType = (typeof MESSAGE_TYPES)[number];

const Id = z.union([z.string().trim().min(1).max(512), z.number().finite()]);
const Json = z.record(z.string(), z.unknown());
const When = z.union([z.iso.datetime({ offset: true, local: true }), z.iso.date()]);

const Common = {
  messageId: z.string().min(1).max(256).optional(),
  userId: Id.nullish(),
  anonymousId: Id.nullish(),
  timestamp: When.nullish(),
  originalTimestamp: When.nullish(),
  sentAt: When.nullish(),
  context: Json.nullish(),
  integrations: Json.nullish(),
};

export const TrackMessage = z.object({
  type: z.literal('track'),
  event: z.string().trim().min(1).max(200),
  properties: Json.nullish(),
  ...Common,
});
export const IdentifyMessage = z.object({
  type: z.literal('identify'),
  traits: Json.nullish(),
  ...Common,
});
export const PageMessage = z.object({
  type: z.literal('page'),
  name: z.string().max(200).nullish(),
  category: z.string().max(200).nullish(),
  properties: Json.nullish(),
  ...Common,
});
export const ScreenMessage = PageMessage.extend({ type: z.literal('screen') });
export const AliasMessage = z.object({
  type: z.literal('alias'),
  previousId: Id,
  ...Common,
});
export const GroupMessage = z.object({
  type: z.literal('group'),
  groupId: Id,
  traits: Json.nullish(),
  ...Common,
});

/** Any message; `type` picks the shape. */
export const Message = z.discriminatedUnion('type', [
  TrackMessage,
  IdentifyMessage,
  PageMessage,
  ScreenMessage,
  AliasMessage,
  GroupMessage,
]);
export type Message = z.infer<typeof Message>;

/**
 * A message ready to be resolved and stored. Its times are epoch milliseconds rather than
 * Dates: a message waits for its transaction, and every object it holds is one more for the
 * garbage collector to copy meanwhile.
 */
export interface PreparedMessage {
  type: MessageType;
  source: string;
  messageId: string;
  /** Identities to look up and link; all of them end on one profile. */
  identities: IdentityKey[];
  /** For alias: the previous id, which may be known as a user id or as an anonymous id. */
  previousId?: string;
  name: string | null;
  properties: Record<string, unknown>;
  context: Record<string, unknown>;
  /** Traits to record for the profile (identify), keyed by trait name. */
  traits: Record<string, unknown> | null;
  revenue: number | null;
  /** When it happened, corrected for the client's clock. */
  timestamp: number;
  /** The time the client gave, if any. */
  originalTimestamp: number | null;
  sentAt: number | null;
  receivedAt: number;
  userId: string | null;
  anonymousId: string | null;
}

export type Parsed = { ok: true; message: PreparedMessage } | { ok: false; errors: FieldError[] };

const fieldPath = (prefix: string, path: PropertyKey[]) =>
  path.reduce<string>(
    (acc, key) =>
      typeof key === 'number' ? `${acc}[${key}]` : acc ? `${acc}.${String(key)}` : String(key),
    prefix,
  );

/**
 * Validate one message and prepare it for storage. `prefix` names where it sat in the
 * request (`batch[3]`) so that errors point at the field.
 */
export function parseMessage(
  raw: unknown,
  options: {
    type?: MessageType;
    source: string;
    receivedAt: Date;
    batchSentAt?: unknown;
    config: HubConfig;
    prefix?: string;
  },
): Parsed {
  const prefix = options.prefix ?? '';
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return { ok: false, errors: [{ field: prefix || 'body', message: 'must be a JSON object' }] };
  }
  // Measured exactly only when it might be over: serialising every message to weigh it would
  // cost a copy of each.
  const size =
    jsonBytesAtMost(raw, MAX_MESSAGE_BYTES) <= MAX_MESSAGE_BYTES
      ? 0
      : Buffer.byteLength(JSON.stringify(raw), 'utf8');
  if (size > MAX_MESSAGE_BYTES) {
    return {
      ok: false,
      errors: [
        {
          field: prefix || 'body',
          message: `message is ${size} bytes; the limit is ${MAX_MESSAGE_BYTES} bytes (32 KB)`,
        },
      ],
    };
  }
  let m: Message | null = checkTrack(raw as Record<string, unknown>, options.type);
  if (!m) {
    const input = options.type ? { ...raw, type: options.type } : raw;
    const result = Message.safeParse(input);
    if (!result.success) {
      return {
        ok: false,
        errors: result.error.issues.map((issue) => ({
          field: fieldPath(prefix, issue.path) || 'body',
          message: issue.message,
        })),
      };
    }
    m = result.data;
  }
  const userId = normaliseId(m.userId);
  const anonymousId = normaliseId(m.anonymousId);
  const errors: FieldError[] = [];
  if (m.type === 'alias') {
    if (!userId)
      errors.push({ field: fieldPath(prefix, ['userId']), message: 'alias needs a userId' });
  } else if (!userId && !anonymousId) {
    errors.push({
      field: fieldPath(prefix, ['userId']),
      message: 'a message needs a userId or an anonymousId',
    });
  }

  const receivedAt = options.receivedAt.getTime();
  const original = parseTime(m.timestamp ?? m.originalTimestamp);
  const sentAt = parseTime(m.sentAt ?? options.batchSentAt);
  if (m.timestamp != null && original === null) {
    errors.push({ field: fieldPath(prefix, ['timestamp']), message: 'not a valid date' });
  }
  if (errors.length) return { ok: false, errors };

  // The spec corrects client clock skew: timestamp = receivedAt − (sentAt − originalTimestamp).
  const timestamp =
    original !== null && sentAt !== null
      ? receivedAt - (sentAt - original)
      : (original ?? receivedAt);

  const context = (m.context ?? {}) as Record<string, unknown>;
  const traits = m.type === 'identify' ? ((m.traits ?? {}) as Record<string, unknown>) : null;
  const identities = collectIdentities(userId, anonymousId, traits, context, options.config);
  const properties = propertiesOf(m);
  const name = m.type === 'track' ? m.event : 'name' in m ? (m.name ?? null) : null;

  return {
    ok: true,
    message: {
      type: m.type,
      source: options.source,
      messageId: m.messageId ?? randomUUID(),
      identities,
      previousId: m.type === 'alias' ? (normaliseId(m.previousId) ?? undefined) : undefined,
      name,
      properties,
      context,
      traits,
      revenue: m.type === 'track' ? revenueOf(m.event, properties, options.config) : null,
      timestamp,
      originalTimestamp: original,
      sentAt,
      receivedAt,
      userId,
      anonymousId,
    },
  };
}

/**
 * An upper bound on the UTF-8 size of `value` as JSON, without building the text: a string
 * character takes at most 6 bytes (`\u001f`; a character beyond the BMP is two at 4 bytes), a
 * number at most 24 characters, each key and value a comma and a colon. Stops counting once past
 * `limit`. Values JSON leaves out (functions, undefined) are counted as if present; an object
 * that is neither plain nor an array counts as over the limit, so that it is weighed exactly.
 */
function jsonBytesAtMost(value: unknown, limit: number): number {
  return weigh(value, 0, limit);
}

/** `total` plus the most `v` can take as JSON, or more than `limit` as soon as it is past it. */
function weigh(v: unknown, total: number, limit: number): number {
  if (total > limit) return total;
  if (typeof v === 'string') return total + 6 * v.length + 2;
  if (typeof v === 'number' || typeof v === 'bigint') return total + 24;
  if (v === null || typeof v !== 'object') return total + 5;
  // A Date, a Buffer…: JSON has its own text for it (toJSON); weigh the message exactly.
  if (!Array.isArray(v) && !hasPlainPrototype(v)) return limit + 1;
  total += 2;
  if (Array.isArray(v)) {
    for (const item of v) total = weigh(item, total + 1, limit);
    return total;
  }
  for (const key in v) {
    if (!Object.hasOwn(v, key)) continue;
    total = weigh((v as Record<string, unknown>)[key], total + 6 * key.length + 4, limit);
  }
  return total;
}

/**
 * A well-formed track message, the bulk of all traffic, checked by hand against the same rules
 * as {@link TrackMessage} and turned into the same output (strings trimmed where the schema
 * trims, unknown keys ignored), without the schema's per-field overhead and copies. Anything
 * else, valid or not, answers null and goes through the schema, which names what is wrong.
 */
export function checkTrack(
  raw: Record<string, unknown>,
  type: MessageType | undefined,
): z.infer<typeof TrackMessage> | null {
  if ((type ?? raw.type) !== 'track') return null;
  const event = typeof raw.event === 'string' ? raw.event.trim() : null;
  if (event === null || event.length < 1 || event.length > 200) return null;
  const messageId = raw.messageId;
  if (
    messageId !== undefined &&
    (typeof messageId !== 'string' || messageId.length < 1 || messageId.length > 256)
  ) {
    return null;
  }
  const userId = checkId(raw.userId);
  const anonymousId = checkId(raw.anonymousId);
  if (userId === false || anonymousId === false) return null;
  for (const key of ['timestamp', 'originalTimestamp', 'sentAt'] as const) {
    const value = raw[key];
    if (value != null && !When.safeParse(value).success) return null;
  }
  for (const key of ['properties', 'context', 'integrations'] as const) {
    const value = raw[key];
    if (value != null && !isPlainRecord(value)) return null;
  }
  return {
    type: 'track',
    event,
    messageId: messageId as string | undefined,
    userId,
    anonymousId,
    timestamp: raw.timestamp as string | null | undefined,
    originalTimestamp: raw.originalTimestamp as string | null | undefined,
    sentAt: raw.sentAt as string | null | undefined,
    properties: raw.properties as Record<string, unknown> | null | undefined,
    context: raw.context as Record<string, unknown> | null | undefined,
    integrations: raw.integrations as Record<string, unknown> | null | undefined,
  };
}

/** An id as {@link Id} takes it (a trimmed string of 1-512, or a finite number), or false. */
function checkId(value: unknown): string | number | null | undefined | false {
  if (value == null) return value as null | undefined;
  if (typeof value === 'number') return Number.isFinite(value) ? value : false;
  if (typeof value !== 'string') return false;
  const id = value.trim();
  return id.length >= 1 && id.length <= 512 ? id : false;
}

function hasPlainPrototype(value: object): boolean {
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/**
 * An object the schema's records take as they are: a plain object (as JSON.parse makes them)
 * without an own `__proto__` key, which the schema would drop.
 */
function isPlainRecord(value: unknown): boolean {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  return hasPlainPrototype(value) && !Object.hasOwn(value, '__proto__');
}

function propertiesOf(m: Message): Record<string, unknown> {
  switch (m.type) {
    case 'track':
      return (m.properties ?? {}) as Record<string, unknown>;
    case 'page':
    case 'screen': {
      const props = { ...(m.properties ?? {}) } as Record<string, unknown>;
      if (m.category != null && props.category === undefined) props.category = m.category;
      return props;
    }
    case 'group':
      return { groupId: String(m.groupId), traits: m.traits ?? {} };
    case 'alias':
      return { previousId: String(m.previousId) };
    case 'identify':
      return {};
  }
}

/** A time as epoch milliseconds, from a Date or a string as `new Date` reads it; else null. */
function parseTime(value: unknown): number | null {
  const time =
    value instanceof Date ? value.getTime() : typeof value === 'string' ? Date.parse(value) : NaN;
  return Number.isNaN(time) ? null : time;
}

/** The identities a message carries: ids, and email/phone from its traits or context.traits. */
function collectIdentities(
  userId: string | null,
  anonymousId: string | null,
  traits: Record<string, unknown> | null,
  context: Record<string, unknown>,
  config: HubConfig,
): IdentityKey[] {
  // A handful at most: an array searched in place costs less than a keyed map per message.
  const out: IdentityKey[] = [];
  addIdentity(out, IDENTITY.userId, userId);
  addIdentity(out, IDENTITY.anonymousId, anonymousId);
  const contextTraits = isObject(context.traits) ? context.traits : {};
  for (const source of [traits ?? {}, contextTraits]) {
    addIdentity(out, IDENTITY.email, normaliseEmail(source.email));
    addIdentity(out, IDENTITY.phone, normalisePhone(source.phone, config.defaultPhoneCountry));
  }
  // The spec's context.externalIds: [{ id, type, collection: 'users', encoding }].
  if (Array.isArray(context.externalIds)) {
    for (const ext of context.externalIds) {
      if (!isObject(ext) || (ext.collection !== undefined && ext.collection !== 'users')) continue;
      const type = typeof ext.type === 'string' ? ext.type.trim().toLowerCase() : '';
      if (!IDENTITY_TYPE.test(type)) continue;
      addIdentity(out, type, normaliseIdentity(type, ext.id, config.defaultPhoneCountry));
    }
  }
  return out;
}

/** Add an identity to a message's, unless it is empty or there already. */
function addIdentity(out: IdentityKey[], type: string, value: string | null): void {
  if (!value) return;
  for (const known of out) if (known.type === type && known.value === value) return;
  out.push({ type, value });
}

function revenueOf(
  event: string,
  properties: Record<string, unknown>,
  config: HubConfig,
): number | null {
  const purchase = config.purchaseEvents.find((p) => p.event === event);
  if (!purchase) return null;
  const raw = properties[purchase.revenueProperty];
  const value = typeof raw === 'string' ? Number(raw) : raw;
  // A purchase without a readable amount still counts as a purchase, for 0.
  return typeof value === 'number' && Number.isFinite(value) ? value : 0;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
