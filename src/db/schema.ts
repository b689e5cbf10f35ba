/**
 * The hub's tables. Migrations in `./migrations` are generated from this file with
 * `npm run db:generate` and applied on start (`audiencehub migrate` applies them alone).
 */
import { sql } from 'drizzle-orm';
import {
  bigint,
  bigserial,
  boolean,
  date,
  doublePrecision,
  index,
  integer,
  json,
  jsonb,
  numeric,
  pgSequence,
  pgTable,
  primaryKey,
  smallint,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from 'drizzle-orm/pg-core';

const ts = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' });

/**
 * One person. A live profile has `mergedInto` null; a merged one is a tombstone whose
 * `mergedInto` names the survivor (always a live profile: merges re-point older tombstones).
 */
export const profiles = pgTable(
  'profiles',
  {
    id: uuid('id').primaryKey(),
    /** `customer` once any identifying identity is known, `visitor` while only anonymous ids are. */
    kind: text('kind').notNull().default('visitor'),
    createdAt: ts('created_at').notNull().defaultNow(),
    updatedAt: ts('updated_at').notNull().defaultNow(),
    mergedInto: uuid('merged_into'),
    mergedAt: ts('merged_at'),
    /** The resolved traits (source priority, then recency), kept in step with `traits`. */
    traits: jsonb('traits').$type<Record<string, unknown>>().notNull().default({}),
    firstSeenAt: ts('first_seen_at'),
    lastSeenAt: ts('last_seen_at'),
    eventCount: integer('event_count').notNull().default(0),
    purchaseCount: integer('purchase_count').notNull().default(0),
    totalSpent: numeric('total_spent', { precision: 18, scale: 4 }).notNull().default('0'),
    lastPurchaseAt: ts('last_purchase_at'),
    /** RFM scores 1–5 (see docs/segments.md), as of `rfmAsOf`; null for profiles without purchases. */
    rfmRecency: smallint('rfm_recency'),
    rfmFrequency: smallint('rfm_frequency'),
    rfmMonetary: smallint('rfm_monetary'),
    rfmAsOf: ts('rfm_as_of'),
  },
  (t) => [
    index('profiles_merged_into_idx').on(t.mergedInto),
    index('profiles_traits_idx').using('gin', sql`${t.traits} jsonb_path_ops`),
  ],
);

/**
 * Moves on with every transaction that merges profiles and every erasure, in whatever process:
 * an identity cache that sees it moved only by its own process's merges knows none of the
 * profiles it names was merged or erased elsewhere (src/profiles/identity-cache.ts).
 */
export const profileEpoch = pgSequence('profile_epoch');

/** (type, normalised value) → the live profile that holds it. */
export const identities = pgTable(
  'identities',
  {
    type: text('type').notNull(),
    value: text('value').notNull(),
    profileId: uuid('profile_id').notNull(),
    source: text('source').notNull(),
    createdAt: ts('created_at').notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.type, t.value] }),
    index('identities_profile_idx').on(t.profileId),
    // Prefix search over every identity type (`GET /api/profiles?q=`).
    index('identities_value_prefix_idx').using('btree', sql`lower(${t.value}) text_pattern_ops`),
  ],
);

/** Trait values as each source last reported them. */
export const traits = pgTable(
  'traits',
  {
    profileId: uuid('profile_id').notNull(),
    source: text('source').notNull(),
    key: text('key').notNull(),
    value: jsonb('value').notNull(),
    observedAt: ts('observed_at').notNull(),
  },
  (t) => [primaryKey({ columns: [t.profileId, t.source, t.key] })],
);

/** Every accepted message (track, page, screen, identify, group, alias). */
export const events = pgTable(
  'events',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    profileId: uuid('profile_id').notNull(),
    source: text('source').notNull(),
    messageId: text('message_id').notNull(),
    type: text('type').notNull(),
    /** The event name for track, the page or screen name for page and screen. */
    name: text('name'),
    properties: jsonb('properties').$type<Record<string, unknown>>().notNull().default({}),
    context: jsonb('context').$type<Record<string, unknown>>().notNull().default({}),
    /** Revenue when the event is a configured purchase event. */
    revenue: numeric('revenue', { precision: 18, scale: 4 }),
    timestamp: ts('timestamp').notNull(),
    originalTimestamp: ts('original_timestamp'),
    sentAt: ts('sent_at'),
    receivedAt: ts('received_at').notNull(),
    userId: text('user_id'),
    anonymousId: text('anonymous_id'),
  },
  (t) => [
    uniqueIndex('events_source_message_idx').on(t.source, t.messageId),
    index('events_profile_time_idx').on(t.profileId, t.timestamp),
  ],
);

/** Per-profile counts of each event name (computed traits). */
export const profileEventCounts = pgTable(
  'profile_event_counts',
  {
    profileId: uuid('profile_id').notNull(),
    name: text('name').notNull(),
    count: integer('count').notNull(),
    firstAt: ts('first_at').notNull(),
    lastAt: ts('last_at').notNull(),
  },
  (t) => [primaryKey({ columns: [t.profileId, t.name] })],
);

/**
 * How far a background consumer of the events table has read: every event with an id at or
 * below `position` has been processed (see src/profiles/fold.ts).
 */
export const eventCursors = pgTable('event_cursors', {
  name: text('name').primaryKey(),
  position: bigint('position', { mode: 'number' }).notNull().default(0),
  updatedAt: ts('updated_at').notNull().defaultNow(),
});

/** One row per merge: which profile survived, which became a tombstone, and why. */
export const merges = pgTable(
  'merges',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    survivorId: uuid('survivor_id').notNull(),
    mergedId: uuid('merged_id').notNull(),
    /** What caused it: the message and source, and the identity types that linked. */
    cause: jsonb('cause').$type<MergeCause>().notNull(),
    createdAt: ts('created_at').notNull().defaultNow(),
  },
  (t) => [index('merges_survivor_idx').on(t.survivorId), index('merges_merged_idx').on(t.mergedId)],
);

export interface MergeCause {
  source: string;
  messageId: string | null;
  messageType: string;
  /** Identity types (never values: they are personal data) that linked the profiles. */
  identityTypes: string[];
}

/** Management API tokens; only a hash of the secret is kept. */
export const apiTokens = pgTable(
  'api_tokens',
  {
    id: uuid('id').primaryKey(),
    name: text('name').notNull(),
    role: text('role').notNull(),
    /** The first characters of the token, shown in listings so a person can recognise it. */
    prefix: text('prefix').notNull(),
    hash: text('hash').notNull(),
    createdAt: ts('created_at').notNull().defaultNow(),
    createdBy: uuid('created_by'),
    lastUsedAt: ts('last_used_at'),
    revokedAt: ts('revoked_at'),
  },
  (t) => [uniqueIndex('api_tokens_hash_idx').on(t.hash)],
);

/** Tracking API write keys; only a hash of the key is kept. */
export const writeKeys = pgTable(
  'write_keys',
  {
    id: uuid('id').primaryKey(),
    name: text('name').notNull(),
    /** The source name its messages are recorded under (trait priority, idempotency scope). */
    source: text('source').notNull(),
    prefix: text('prefix').notNull(),
    hash: text('hash').notNull(),
    createdAt: ts('created_at').notNull().defaultNow(),
    createdBy: uuid('created_by'),
    revokedAt: ts('revoked_at'),
  },
  (t) => [uniqueIndex('write_keys_hash_idx').on(t.hash)],
);

/** Messages the tracking API refused, with the reason; no message content is kept. */
export const ingestRejections = pgTable(
  'ingest_rejections',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    writeKeyId: uuid('write_key_id'),
    messageId: text('message_id'),
    batchIndex: integer('batch_index'),
    reason: text('reason').notNull(),
    errors: jsonb('errors').$type<{ field: string; message: string }[]>().notNull().default([]),
    receivedAt: ts('received_at').notNull().defaultNow(),
  },
  (t) => [index('ingest_rejections_received_idx').on(t.receivedAt)],
);

/** Who did what, without personal data. */
export const auditLog = pgTable(
  'audit_log',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    at: ts('at').notNull().defaultNow(),
    actorId: uuid('actor_id'),
    actorName: text('actor_name'),
    action: text('action').notNull(),
    subjectType: text('subject_type').notNull(),
    subjectId: text('subject_id'),
    details: jsonb('details').$type<Record<string, unknown>>().notNull().default({}),
  },
  (t) => [index('audit_log_at_idx').on(t.at)],
);

/**
 * A segment: dynamic (rules, recomputed on a schedule and as data arrives) or static (computed
 * once from rules, or an uploaded list of identifiers). Private ones are seen only by their
 * owner and admins.
 */
export const segments = pgTable(
  'segments',
  {
    id: uuid('id').primaryKey(),
    name: text('name').notNull(),
    description: text('description').notNull().default(''),
    /** `dynamic` or `static`. */
    type: text('type').notNull(),
    /** `private` or `shared`. */
    visibility: text('visibility').notNull(),
    /** The API token that created it (its owner), and that token's name for listings. */
    ownerId: uuid('owner_id').notNull(),
    ownerName: text('owner_name').notNull(),
    /** The rule tree (src/segments/rules.ts); null for an uploaded list. */
    rules: jsonb('rules').$type<unknown>(),
    /** A cron expression (UTC) for scheduled full recomputation of a dynamic segment. */
    schedule: text('schedule'),
    /** When the schedule next falls due. */
    nextRunAt: ts('next_run_at'),
    /** The template it was created from, if any. */
    template: text('template'),
    createdAt: ts('created_at').notNull().defaultNow(),
    updatedAt: ts('updated_at').notNull().defaultNow(),
    /** Members now, kept with every change of membership. */
    size: integer('size').notNull().default(0),
    lastComputedAt: ts('last_computed_at'),
    /** The config-as-code key of the object, when `audiencehub apply` manages it (API edits refused). */
    managedBy: text('managed_by'),
  },
  (t) => [
    uniqueIndex('segments_owner_name_idx').on(t.ownerId, sql`lower(${t.name})`),
    uniqueIndex('segments_managed_by_idx').on(t.managedBy),
    index('segments_next_run_idx').on(t.nextRunAt),
  ],
);

/** The profiles in a segment now. */
export const segmentMembers = pgTable(
  'segment_members',
  {
    segmentId: uuid('segment_id').notNull(),
    profileId: uuid('profile_id').notNull(),
    enteredAt: ts('entered_at').notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.segmentId, t.profileId] }),
    index('segment_members_profile_idx').on(t.profileId),
  ],
);

/** Who entered and left a segment, and when: the membership history. */
export const segmentMembershipChanges = pgTable(
  'segment_membership_changes',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    segmentId: uuid('segment_id').notNull(),
    profileId: uuid('profile_id').notNull(),
    /** true: entered; false: left. */
    entered: boolean('entered').notNull(),
    at: ts('at').notNull().defaultNow(),
    runId: bigint('run_id', { mode: 'number' }),
  },
  (t) => [
    index('segment_membership_changes_segment_idx').on(t.segmentId, t.at),
    index('segment_membership_changes_profile_idx').on(t.profileId),
  ],
);

/** Each computation of a segment: the computation history. */
export const segmentRuns = pgTable(
  'segment_runs',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    segmentId: uuid('segment_id').notNull(),
    /** `full` (every profile) or `incremental` (the profiles new data touched). */
    kind: text('kind').notNull(),
    /** What started it: `create`, `manual`, `schedule`, `update`, `upload`, `data`. */
    trigger: text('trigger').notNull(),
    /** `running`, `succeeded` or `failed`. */
    status: text('status').notNull(),
    startedAt: ts('started_at').notNull().defaultNow(),
    finishedAt: ts('finished_at'),
    size: integer('size'),
    entered: integer('entered'),
    exited: integer('exited'),
    /** Profiles evaluated, for incremental runs. */
    evaluated: integer('evaluated'),
    error: text('error'),
  },
  (t) => [index('segment_runs_segment_idx').on(t.segmentId, t.startedAt)],
);

/** A segment's size at the end of each day (UTC), for the size series and the 30-day change. */
export const segmentDailySizes = pgTable(
  'segment_daily_sizes',
  {
    segmentId: uuid('segment_id').notNull(),
    day: date('day', { mode: 'string' }).notNull(),
    size: integer('size').notNull(),
  },
  (t) => [primaryKey({ columns: [t.segmentId, t.day] })],
);

/** A configured destination plugin. Secret config fields are kept only encrypted. */
export const destinations = pgTable(
  'destinations',
  {
    id: uuid('id').primaryKey(),
    name: text('name').notNull(),
    /** The plugin's name in the registry, e.g. `mailchimp`. */
    plugin: text('plugin').notNull(),
    /** The config without its secret fields. */
    config: jsonb('config').$type<Record<string, unknown>>().notNull().default({}),
    /** The secret fields, sealed (src/destinations/secrets.ts). */
    secrets: text('secrets').notNull(),
    createdAt: ts('created_at').notNull().defaultNow(),
    updatedAt: ts('updated_at').notNull().defaultNow(),
    createdBy: uuid('created_by'),
    /** The config-as-code key of the object, when `audiencehub apply` manages it (API edits refused). */
    managedBy: text('managed_by'),
  },
  (t) => [
    uniqueIndex('destinations_name_idx').on(sql`lower(${t.name})`),
    uniqueIndex('destinations_managed_by_idx').on(t.managedBy),
  ],
);

/** One shared segment sent to one destination with a field mapping. */
export const syncs = pgTable(
  'syncs',
  {
    id: uuid('id').primaryKey(),
    segmentId: uuid('segment_id').notNull(),
    destinationId: uuid('destination_id').notNull(),
    /** `mirror` (add, update, remove) or `upsert` (never removes). */
    mode: text('mode').notNull(),
    /** Profile values → destination fields (src/sync/mapping.ts). */
    mapping: jsonb('mapping').$type<unknown[]>().notNull(),
    schedule: text('schedule'),
    nextRunAt: ts('next_run_at'),
    /** While on, the sync runs after membership changes, and its segment is locked. */
    autoSync: boolean('auto_sync').notNull().default(false),
    /** The run holding the sync (one at a time across workers), until its lease ends. */
    leaseRunId: bigint('lease_run_id', { mode: 'number' }),
    leaseUntil: ts('lease_until'),
    createdAt: ts('created_at').notNull().defaultNow(),
    updatedAt: ts('updated_at').notNull().defaultNow(),
    createdBy: uuid('created_by'),
    /** The config-as-code key of the object, when `audiencehub apply` manages it (API edits refused). */
    managedBy: text('managed_by'),
  },
  (t) => [
    uniqueIndex('syncs_managed_by_idx').on(t.managedBy),
    index('syncs_segment_idx').on(t.segmentId),
    index('syncs_destination_idx').on(t.destinationId),
  ],
);

/**
 * What a destination last confirmed for each profile of a sync: the ledger that makes each run
 * send only the difference, and removals touch only what this hub added.
 */
export const syncState = pgTable(
  'sync_state',
  {
    syncId: uuid('sync_id').notNull(),
    profileId: uuid('profile_id').notNull(),
    /** The mapped values the destination confirmed (or, when rejected, the values refused). */
    values: jsonb('values').$type<Record<string, unknown>>().notNull(),
    /**
     * `ok` (present at the destination), `rejected` (refused; sent again when its values change),
     * or a mark asking the next run to send the row whatever its values: `resend` (held; sent as
     * an update) or `retry` (rejected; sent as an add). See `markForResend` in src/sync/engine.ts.
     */
    status: text('status').notNull(),
    reason: text('reason'),
    /** What the plugin keeps for the row (RowResult `state`): a vendor id, who created it… */
    state: jsonb('state').$type<Record<string, unknown>>(),
    updatedAt: ts('updated_at').notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.syncId, t.profileId] })],
);

/** Each run of a sync: the run history. */
export const syncRuns = pgTable(
  'sync_runs',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    syncId: uuid('sync_id').notNull(),
    /** `manual`, `schedule`, `auto` (membership changed), `dry-run`. */
    trigger: text('trigger').notNull(),
    /** `running`, `succeeded`, `partial` (rows rejected or left to retry), `failed`. */
    status: text('status').notNull(),
    startedAt: ts('started_at').notNull().defaultNow(),
    finishedAt: ts('finished_at'),
    added: integer('added').notNull().default(0),
    updated: integer('updated').notNull().default(0),
    removed: integer('removed').notNull().default(0),
    rejected: integer('rejected').notNull().default(0),
    retried: integer('retried').notNull().default(0),
    error: text('error'),
  },
  (t) => [index('sync_runs_sync_idx').on(t.syncId, t.startedAt)],
);

/** Rows a run could not deliver, with the reason: searchable by profile. */
export const syncRowErrors = pgTable(
  'sync_row_errors',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    runId: bigint('run_id', { mode: 'number' }).notNull(),
    syncId: uuid('sync_id').notNull(),
    profileId: uuid('profile_id').notNull(),
    action: text('action').notNull(),
    /** `rejected` by the destination, or `retry` left for the next run. */
    status: text('status').notNull(),
    reason: text('reason').notNull(),
    at: ts('at').notNull().defaultNow(),
  },
  (t) => [
    index('sync_row_errors_run_idx').on(t.runId),
    index('sync_row_errors_profile_idx').on(t.syncId, t.profileId),
  ],
);

/**
 * A configured source connector (ERP database, CRM, analytics, files). Secret config fields
 * are kept only encrypted, with the destinations' key.
 */
export const sources = pgTable(
  'sources',
  {
    id: uuid('id').primaryKey(),
    name: text('name').notNull(),
    /** The connector's name in the registry, e.g. `postgres`. */
    connector: text('connector').notNull(),
    /** The config without its secret fields. */
    config: jsonb('config').$type<Record<string, unknown>>().notNull().default({}),
    /** The secret fields, sealed (src/destinations/secrets.ts). */
    secrets: text('secrets').notNull(),
    /** A cron expression (UTC) for scheduled imports of every enabled stream; null: on demand. */
    schedule: text('schedule'),
    /** When the schedule next falls due. */
    nextRunAt: ts('next_run_at'),
    /** How long the source may go without a successful run before the overdue alert. */
    expectedIntervalMinutes: integer('expected_interval_minutes'),
    /** Where alerts are POSTed besides the log, sealed: such URLs often carry a token. */
    alertWebhook: text('alert_webhook'),
    /** A run whose share of rejected rows exceeds this fails instead of importing (0–1). */
    maxRejectShare: doublePrecision('max_reject_share').notNull().default(0.1),
    /** The config-as-code key of the object, when `audiencehub apply` manages it (API edits refused). */
    managedBy: text('managed_by'),
    /** The end of the last successful run of any of its streams. */
    lastSuccessAt: ts('last_success_at'),
    /** When the overdue alert of the current episode was sent; cleared by a success. */
    overdueAlertedAt: ts('overdue_alerted_at'),
    createdBy: uuid('created_by'),
    createdAt: ts('created_at').notNull().defaultNow(),
    updatedAt: ts('updated_at').notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex('sources_name_idx').on(sql`lower(${t.name})`),
    uniqueIndex('sources_managed_by_idx').on(t.managedBy),
    index('sources_next_run_idx').on(t.nextRunAt),
  ],
);

/** How one stream of a source is imported: its mapping onto the core model, and its cursor. */
export const importStreams = pgTable(
  'import_streams',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    sourceId: uuid('source_id').notNull(),
    /** The stream's name as the connector's `discover` reports it. */
    stream: text('stream').notNull(),
    /** Fields → identities, traits and events (src/imports/mapping.ts). */
    mapping: jsonb('mapping').$type<Record<string, unknown>>().notNull(),
    /** Off: neither scheduled nor part of a run of the whole source. */
    enabled: boolean('enabled').notNull().default(true),
    /** The last checkpoint whose records are all stored; the next run reads from it. */
    cursor: jsonb('cursor').$type<unknown>(),
    cursorAt: ts('cursor_at'),
    /** The run holding the stream (one at a time across workers), until its lease ends. */
    leaseRunId: bigint('lease_run_id', { mode: 'number' }),
    leaseUntil: ts('lease_until'),
    /** When the failure alert of the current episode was sent; cleared by a success. */
    failureAlertedAt: ts('failure_alerted_at'),
    createdAt: ts('created_at').notNull().defaultNow(),
    updatedAt: ts('updated_at').notNull().defaultNow(),
  },
  (t) => [uniqueIndex('import_streams_source_stream_idx').on(t.sourceId, t.stream)],
);

/** Each import run of one stream: the run history. */
export const importRuns = pgTable(
  'import_runs',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    sourceId: uuid('source_id').notNull(),
    stream: text('stream').notNull(),
    /** `manual`, `schedule` or `cli`. */
    trigger: text('trigger').notNull(),
    /** `running`, `succeeded` or `failed`. */
    status: text('status').notNull(),
    /** The cursor the run started from (null: the beginning). */
    startCursor: jsonb('start_cursor').$type<unknown>(),
    rowsRead: integer('rows_read').notNull().default(0),
    /** Rows that stored at least one new message. */
    rowsImported: integer('rows_imported').notNull().default(0),
    /** Rows already stored (a re-read) or exact copies of another row. */
    rowsDuplicate: integer('rows_duplicate').notNull().default(0),
    /** Rows that failed the mapping, kept in `import_rejects`. */
    rowsRejected: integer('rows_rejected').notNull().default(0),
    startedAt: ts('started_at').notNull().defaultNow(),
    finishedAt: ts('finished_at'),
    error: text('error'),
  },
  (t) => [index('import_runs_source_idx').on(t.sourceId, t.startedAt)],
);

/**
 * Rows that failed their stream's mapping, with the row and the reason. A row is kept once per
 * stream (by its record key), under the latest run that rejected it; importing it later
 * removes it.
 */
export const importRejects = pgTable(
  'import_rejects',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    runId: bigint('run_id', { mode: 'number' }).notNull(),
    sourceId: uuid('source_id').notNull(),
    stream: text('stream').notNull(),
    /** The record's identity: its primary key values, the connector's key, or a content hash. */
    recordKey: text('record_key').notNull(),
    /** The record as the connector read it (json, not jsonb: its fields keep their order). */
    row: json('row').$type<Record<string, unknown>>().notNull(),
    reason: text('reason').notNull(),
    /** The field the reason names, when it names one. */
    field: text('field'),
    at: ts('at').notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex('import_rejects_record_idx').on(t.sourceId, t.stream, t.recordKey),
    index('import_rejects_run_idx').on(t.runId, t.id),
  ],
);

/**
 * A digest of each distinct row content a stream has imported, with the digest of the record
 * key that first had it: a later row with the same content under another key is an exact
 * duplicate and is dropped.
 */
export const importRowDigests = pgTable(
  'import_row_digests',
  {
    streamId: bigint('stream_id', { mode: 'number' }).notNull(),
    /** md5 of the row's canonical JSON, as a uuid (16 bytes). */
    digest: uuid('digest').notNull(),
    /** md5 of the record key that first had this content. */
    keyDigest: uuid('key_digest').notNull(),
  },
  (t) => [primaryKey({ columns: [t.streamId, t.digest] })],
);
