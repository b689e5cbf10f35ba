/**
 * What a source connector is: a plain object of small functions, like a destination plugin,
 * in the Airbyte protocol's vocabulary — `check` the configuration, `discover` the streams,
 * `read` a stream from a cursor as a sequence of records and checkpoints (Airbyte's RECORD and
 * STATE messages). `defineSource` only gives it its types; the registry checks it when it is
 * registered.
 *
 * The contract that makes imports resumable: every record a connector yields before a
 * checkpoint is covered by that checkpoint. The hub stores a checkpoint's cursor only once every
 * record before it is stored; after a crash it calls `read` again with the last stored cursor,
 * so the connector re-reads at most what followed it, and the records' keys make that re-read
 * store nothing twice.
 */
import type { z } from 'zod';
import type { CheckResult, PluginContext } from './destination.ts';

/** A field a stream's records carry, as `discover` reports it. */
export interface SourceField {
  name: string;
  type: 'string' | 'number' | 'integer' | 'boolean' | 'date' | 'datetime' | 'json';
  description?: string;
}

/** How a stream can be read (Airbyte's sync modes). */
export type ReadMode = 'full_refresh' | 'incremental';

/** One stream of records: a table, a CRM object, a report, a file. */
export interface SourceStream {
  /** Unique within the source, e.g. `customers`, `contacts`, `events`. */
  name: string;
  description?: string;
  fields: SourceField[];
  /**
   * The fields that identify a record (Airbyte's `source_defined_primary_key`), e.g.
   * `['customer_id']`. The hub derives each record's idempotency key from them; empty when
   * the stream has none (the connector then gives each record a stable `key`).
   */
  primaryKey: string[];
  /** `incremental` when `read` can start after a cursor. */
  modes: ReadMode[];
  /**
   * The field incremental reads order by, e.g. `updated_at` (Airbyte's `cursor_field`). Absent
   * when the cursor is not a field of the records, e.g. a position in a file.
   */
  cursorField?: string;
}

/** A checkpoint's position: plain JSON the connector alone interprets. */
export type Cursor = string | number | boolean | null | Cursor[] | { [key: string]: Cursor };

/** What `read` yields. */
export type SourceMessage =
  /**
   * A record. `key` overrides the key built from the stream's primary key (for streams without
   * one, e.g. a CSV file's line number); it must be the same every time the record is read.
   */
  | { type: 'record'; data: Record<string, unknown>; key?: string }
  /** Every record yielded before it is covered: a read resumed with this cursor skips them. */
  | { type: 'checkpoint'; cursor: Cursor };

export type SourceCheck<C> = (args: { config: C }, ctx: PluginContext) => Promise<CheckResult>;

export type SourceDiscover<C> = (
  args: { config: C },
  ctx: PluginContext,
) => Promise<SourceStream[]>;

/**
 * Read one stream. `cursor` is the last checkpoint the hub stored for it (null: from the
 * start). `mode` is `full_refresh` only when the stream cannot be read incrementally or a full
 * re-read was asked for. Throw a ConfigError when nothing can work (bad credentials, a table
 * that is gone), a TransientError when trying again later may.
 */
export type SourceRead<C> = (
  args: { config: C; stream: SourceStream; cursor: Cursor | null; mode: ReadMode },
  ctx: PluginContext,
) => AsyncIterable<SourceMessage>;

/** How hard a source may be asked, with the reason beside each number; the hub enforces them. */
export interface SourceLimits {
  /** Requests per second at most (e.g. HubSpot's search API: 4). */
  requestsPerSecond?: number;
  /** Requests in flight at once. */
  concurrency?: number;
}

export interface SourceConnector<C = unknown> {
  /** Unique, kebab-case: `csv`, `postgres`, `hubspot`. */
  name: string;
  title: string;
  description?: string;
  /** The configuration's schema; fields wrapped in `secret` are encrypted at rest. */
  config: z.ZodType<C>;
  limits?: SourceLimits;
  /**
   * The connector reads files from the folder or file named by its `path` config field, and
   * can read files uploaded to the hub: a source created without `path` reads the folder its
   * uploads go to (`POST /api/sources/{id}/files`), one stream per file.
   */
  uploads?: boolean;
  check: SourceCheck<C>;
  discover: SourceDiscover<C>;
  read: SourceRead<C>;
}

/**
 * Declare a source connector with its types inferred.
 *
 * @example
 * export default defineSource({
 *   name: 'acme-crm', title: 'Acme CRM',
 *   config: z.object({ baseUrl: z.url(), apiKey: secret(z.string()) }),
 *   limits: { requestsPerSecond: 10 }, // Acme: 10 requests a second per key
 *   async check({ config }, ctx) { … return { ok: true }; },
 *   async discover() {
 *     return [{ name: 'contacts', fields: [{ name: 'email', type: 'string' }],
 *       primaryKey: ['id'], modes: ['full_refresh', 'incremental'], cursorField: 'updated_at' }];
 *   },
 *   async *read({ config, cursor }, ctx) {
 *     for await (const page of pagesSince(config, cursor, ctx)) {
 *       for (const contact of page.items) yield { type: 'record', data: contact };
 *       yield { type: 'checkpoint', cursor: page.lastUpdatedAt };
 *     }
 *   },
 * });
 */
export function defineSource<C>(connector: SourceConnector<C>): SourceConnector<C> {
  return connector;
}
