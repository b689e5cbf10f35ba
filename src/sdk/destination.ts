/**
 * What a destination plugin is: a plain object of small functions, each taking one argument
 * object and the call's context. `defineDestination` only gives it its types; the registry
 * checks it when it is registered.
 */
import type { z } from 'zod';
import type { HttpClient, HttpClientOptions } from './http.ts';

/** What every plugin call receives besides its arguments. */
export interface PluginContext {
  log: {
    debug(msg: string, data?: Record<string, unknown>): void;
    info(msg: string, data?: Record<string, unknown>): void;
    warn(msg: string, data?: Record<string, unknown>): void;
    error(msg: string, data?: Record<string, unknown>): void;
  };
  /** Aborted when the run is stopped: pass it on, stop soon. */
  signal: AbortSignal;
  /** An HTTP client that retries transient failures and honours Retry-After (see ./http.ts). */
  http(options: Omit<HttpClientOptions, 'signal'>): HttpClient;
}

/**
 * How much a destination takes at once, with the reason beside each number. The engine
 * enforces them; a plugin never sleeps or throttles itself.
 */
export interface DestinationLimits {
  /** Rows per `sync` call. */
  batchSize: number;
  /** `sync` calls in flight at once, across every sync sharing a `limitKey`. */
  concurrency: number;
  /** `sync` calls started per second at most, if the service counts them. */
  callsPerSecond?: number;
}

/** A field rows can carry to the destination. */
export interface DestinationField {
  key: string;
  label: string;
  type: 'string' | 'number' | 'boolean' | 'date';
  /** Every row must have it (e.g. the email address). */
  required?: boolean;
  /** It identifies the row at the destination (at most one). */
  identifier?: boolean;
}

/** The sync a call works for: enough to name what it creates at the destination. */
export interface SyncInfo {
  id: string;
  /** The segment's name, e.g. for a tag or a tab. */
  segmentName: string;
  mode: 'mirror' | 'upsert';
  /** Destination field keys, in mapping order. */
  fields: string[];
}

/**
 * One row to send: `add` (entered the segment), `update` (mapped values changed), `remove`
 * (left the segment; only in mirror mode, only for rows this hub added).
 */
export interface SyncRow {
  /** The profile id; results refer to it. */
  id: string;
  action: 'add' | 'update' | 'remove';
  /** The mapped values (for `remove`, the values last confirmed). */
  fields: Record<string, unknown>;
  /**
   * What the plugin kept for this row when the destination last confirmed it (`state` of an
   * `ok` result): the vendor's record id, whether the hub created the record… Absent for `add`.
   */
  state?: Record<string, unknown>;
}

/** What happened to one row. */
export type RowResult =
  /**
   * Confirmed. `state` (small JSON) is kept with the row and handed back on its next `update`
   * or `remove`; omitted, the state kept before stays.
   */
  | { id: string; status: 'ok'; state?: Record<string, unknown> }
  /** The destination refused this row (bad email, unsubscribed person…): not retried as is. */
  | { id: string; status: 'rejected'; reason: string }
  /** Not done this time, for a passing reason: the engine retries the row. */
  | { id: string; status: 'retry'; reason: string; retryAfterMs?: number };

export type CheckResult = { ok: true } | { ok: false; reason: string };

export type DestinationCheck<C> = (args: { config: C }, ctx: PluginContext) => Promise<CheckResult>;

/** The fields a destination offers; an empty list means it takes any field name. */
export type DestinationFields<C> = (
  args: { config: C },
  ctx: PluginContext,
) => Promise<DestinationField[]>;

/** Make the destination ready for a sync (create a tag, a tab, missing fields…); idempotent. */
export type DestinationPrepare<C> = (
  args: { config: C; sync: SyncInfo },
  ctx: PluginContext,
) => Promise<void>;

/** Called once after a run's last batch (e.g. to publish what the batches staged); idempotent. */
export type DestinationFinish<C> = (
  args: { config: C; sync: SyncInfo },
  ctx: PluginContext,
) => Promise<void>;

/**
 * Send a batch; answer one result per row. Throw a ConfigError when nothing can work, a
 * TransientError when the whole call should be retried.
 */
export type DestinationSync<C> = (
  args: { config: C; sync: SyncInfo; batch: SyncRow[] },
  ctx: PluginContext,
) => Promise<RowResult[]>;

export interface DestinationPlugin<C = unknown> {
  /** Unique, kebab-case: `mailchimp`, `google-sheets`. */
  name: string;
  title: string;
  description?: string;
  /** The configuration's schema; fields wrapped in {@link secret} are encrypted at rest. */
  config: z.ZodType<C>;
  limits: DestinationLimits;
  /**
   * Syncs whose configs give the same key share `limits.concurrency` (e.g. one Mailchimp API
   * key allows 10 connections, however many audiences use it). Default: the destination.
   */
  limitKey?: (config: C) => string;
  check: DestinationCheck<C>;
  fields: DestinationFields<C>;
  /**
   * Mappings may also name fields `fields` does not list yet: the plugin creates them (e.g.
   * Mailchimp merge fields) in `prepare` or its first batch.
   */
  acceptsNewFields?: boolean;
  prepare?: DestinationPrepare<C>;
  sync: DestinationSync<C>;
  finish?: DestinationFinish<C>;
}

/**
 * Declare a destination plugin with its types inferred.
 *
 * @example
 * export default defineDestination({
 *   name: 'acme', title: 'Acme CRM',
 *   config: z.object({ baseUrl: z.url(), apiKey: secret(z.string()) }),
 *   limits: { batchSize: 100, concurrency: 4 }, // Acme: 100 contacts per call, 4 connections
 *   check, fields, sync,
 * });
 */
export function defineDestination<C>(plugin: DestinationPlugin<C>): DestinationPlugin<C> {
  return plugin;
}

const SECRET = 'audiencehub.secret';

/**
 * Mark a config field as secret: encrypted at rest, never returned, logged or put in an error.
 *
 * @example
 * config: z.object({ apiKey: secret(z.string().min(1)) })
 */
export function secret<T extends z.ZodType>(schema: T): T {
  return schema.meta({ [SECRET]: true }) as T;
}

/**
 * The top-level keys of a config schema marked with {@link secret}.
 *
 * @example
 * secretKeys(z.object({ apiKey: secret(z.string()), list: z.string() })); // ['apiKey']
 */
export function secretKeys(schema: z.ZodType): string[] {
  const shape = (schema as unknown as { shape?: Record<string, z.ZodType> }).shape;
  if (!shape) return [];
  return Object.entries(shape)
    .filter(([, field]) => isSecret(field))
    .map(([key]) => key);
}

function isSecret(field: z.ZodType): boolean {
  if (field.meta()?.[SECRET] === true) return true;
  // Optional, nullable or defaulted wrappers keep the mark on their inner type.
  const inner = (field as unknown as { unwrap?: () => z.ZodType }).unwrap?.();
  return inner ? isSecret(inner) : false;
}
