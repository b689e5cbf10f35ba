/**
 * Sources: configured source connectors, each with a mapping per stream. An admin creates one
 * with its credentials; the connector's `check` must pass before it is saved; secret fields are
 * sealed with the destinations' key and never come back out through the API, a log or an error.
 *
 * A connector that reads files (`uploads: true`, like `csv`) can read the files uploaded to the
 * hub: a source of it created without `config.path` reads `<dataDir>/uploads/<sourceId>/`, one
 * stream per file, and its `path` is never stored (so the data directory may move).
 */
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { z } from '@hono/zod-openapi';
import { sql } from 'drizzle-orm';
import { refuseManaged, type ManagedWrite } from '../apply/managed.ts';
import type { Principal } from '../auth/credentials.ts';
import { recordAudit } from '../audit.ts';
import {
  openConfig,
  parseConfig,
  parseStoredConfig,
  redactSecrets,
  secretValues,
  splitSecrets,
} from '../destinations/sealed-config.ts';
import { rows, type Db } from '../db/index.ts';
import { badRequest, HubError, notFound, type FieldError } from '../errors.ts';
import { uuidv7 } from '../ids.ts';
import type { Logger } from '../log.ts';
import type { PluginContext } from '../sdk/destination.ts';
import { ConfigError, TransientError, VendorError } from '../sdk/errors.ts';
import { createHttpClient, createRequestLimiter } from '../sdk/http.ts';
import type { SourceConnector, SourceStream } from '../sdk/source.ts';
import { secretKeys } from '../sdk/destination.ts';
import { nextScheduledRun } from '../segments/store.ts';
import type { ImportDeps } from './deps.ts';
import { StreamMapping, unknownFields } from './mapping.ts';

const Schedule = z
  .string()
  .trim()
  .max(100)
  .openapi({ description: 'A cron expression, in UTC, e.g. `0 3 * * *` (daily at 03:00).' });
const WebhookUrl = z
  .url({ protocol: /^https?$/, error: 'an http or https URL' })
  .max(2000)
  .openapi({
    description:
      'Where alerts are POSTed (JSON). Stored encrypted, as such URLs often carry a token; only its host is shown.',
  });
const RejectShare = z.number().min(0).max(1).openapi({
  description:
    'A run whose share of rejected rows exceeds this fails before writing the batch that crossed it (default 0.1).',
});
const Interval = z.number().int().min(1).max(525_600).openapi({
  description: 'Alert when no run of the source has succeeded for this many minutes (null: never).',
});

export const CreateSource = z
  .object({
    name: z.string().trim().min(1).max(100).openapi({ example: 'ERP' }),
    connector: z.string().min(1).max(50).openapi({ example: 'postgres' }),
    config: z.record(z.string(), z.unknown()).default({}).openapi({
      description:
        "The connector's configuration; secret fields are stored encrypted. A file connector's `path` left out means the files uploaded to this source.",
    }),
    schedule: Schedule.nullable().optional(),
    expectedIntervalMinutes: Interval.nullable().optional(),
    alertWebhookUrl: WebhookUrl.nullable().optional(),
    maxRejectShare: RejectShare.optional(),
  })
  .openapi('CreateSource');
export type CreateSource = z.input<typeof CreateSource>;

export const UpdateSource = z
  .object({
    name: z.string().trim().min(1).max(100).optional(),
    config: z
      .record(z.string(), z.unknown())
      .optional()
      .openapi({ description: 'Fields to change; a secret field left out keeps its value.' }),
    schedule: Schedule.nullable().optional(),
    expectedIntervalMinutes: Interval.nullable().optional(),
    alertWebhookUrl: WebhookUrl.nullable().optional(),
    maxRejectShare: RejectShare.optional(),
  })
  .openapi('UpdateSource');
export type UpdateSource = z.input<typeof UpdateSource>;

export interface Source {
  id: string;
  name: string;
  connector: string;
  /** The config without its secrets (and without the uploads folder). */
  config: Record<string, unknown>;
  /** Which secret fields are set (their values are never shown). */
  secrets: string[];
  /** It reads the files uploaded to it. */
  uploads: boolean;
  schedule: string | null;
  nextRunAt: Date | null;
  expectedIntervalMinutes: number | null;
  /** The host alerts are POSTed to, or null; the URL itself is never shown. */
  alertWebhookHost: string | null;
  maxRejectShare: number;
  managedBy: string | null;
  lastSuccessAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface SourceRow {
  id: string;
  name: string;
  connector: string;
  config: Record<string, unknown>;
  secrets: string;
  schedule: string | null;
  next_run_at: string | Date | null;
  expected_interval_minutes: number | null;
  alert_webhook: string | null;
  max_reject_share: number | string;
  managed_by: string | null;
  last_success_at: string | Date | null;
  overdue_alerted_at: string | Date | null;
  created_by: string | null;
  created_at: string | Date;
  updated_at: string | Date;
}

const date = (v: string | Date | null) => (v === null ? null : new Date(v));

function toSource(r: SourceRow, deps: Pick<ImportDeps, 'box' | 'connectors'>): Source {
  const connector = deps.connectors.get(r.connector);
  return {
    id: r.id,
    name: r.name,
    connector: r.connector,
    config: r.config,
    secrets: Object.keys(deps.box.open<Record<string, unknown>>(r.secrets)).sort(),
    uploads: readsUploads(connector, r.config),
    schedule: r.schedule,
    nextRunAt: date(r.next_run_at),
    expectedIntervalMinutes: r.expected_interval_minutes,
    alertWebhookHost: r.alert_webhook ? new URL(deps.box.open<string>(r.alert_webhook)).host : null,
    maxRejectShare: Number(r.max_reject_share),
    managedBy: r.managed_by,
    lastSuccessAt: date(r.last_success_at),
    createdAt: new Date(r.created_at),
    updatedAt: new Date(r.updated_at),
  };
}

/** A file connector with no path of its own reads the source's uploads folder. */
const readsUploads = (connector: SourceConnector | undefined, config: Record<string, unknown>) =>
  connector?.uploads === true && (config.path === undefined || config.path === null);

/** The folder a source's uploaded files go to. */
export const uploadFolder = (deps: Pick<ImportDeps, 'uploadsDir'>, sourceId: string) =>
  join(deps.uploadsDir, sourceId);

const actor = (p: Principal) => ({ id: p.tokenId, name: p.name });

function connectorOf(deps: ImportDeps, name: string): SourceConnector {
  const connector = deps.connectors.get(name);
  if (!connector) {
    const known = deps.connectors
      .list()
      .map((c) => c.name)
      .join(', ');
    throw badRequest(`There is no source connector "${name}" (installed: ${known || 'none'}).`, [
      { field: 'connector', message: `unknown connector; installed: ${known || 'none'}` },
    ]);
  }
  return connector;
}

/**
 * The context a connector call gets: a logger, the signal, and an HTTP client paced by the
 * connector's limits, shared by every call for the same source in this process.
 */
export function connectorContext(
  deps: ImportDeps,
  sourceId: string,
  connector: Pick<SourceConnector, 'limits'>,
  log: Logger,
  signal: AbortSignal,
): PluginContext {
  const limits = connector.limits;
  let limiter = undefined;
  if (limits && (limits.requestsPerSecond !== undefined || limits.concurrency !== undefined)) {
    const limiters = (deps.limiters ??= new Map());
    limiter = limiters.get(sourceId);
    if (!limiter) {
      limiter = createRequestLimiter(limits);
      limiters.set(sourceId, limiter);
    }
  }
  return {
    log,
    signal,
    http: (options) => createHttpClient({ ...options, signal, limiter }),
  };
}

/** Run a connector call with a deadline; its failure as a reason with no secret in it. */
async function guarded<T>(
  deps: ImportDeps,
  sourceId: string,
  connector: SourceConnector,
  secrets: string[],
  call: (ctx: PluginContext) => Promise<T>,
  timeoutMs = 30_000,
): Promise<{ ok: true; value: T } | { ok: false; reason: string }> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    const ctx = connectorContext(
      deps,
      sourceId,
      connector,
      deps.log.child({ connector: connector.name, sourceId }),
      controller.signal,
    );
    return { ok: true, value: await call(ctx) };
  } catch (error) {
    const known =
      error instanceof ConfigError ||
      error instanceof TransientError ||
      error instanceof VendorError;
    const reason = controller.signal.aborted
      ? `no answer within ${timeoutMs / 1000} s`
      : known
        ? error.message
        : `it failed unexpectedly${error instanceof Error ? `: ${error.message.split('\n')[0]}` : ''}`;
    return { ok: false, reason: redactSecrets(reason, secrets) };
  } finally {
    clearTimeout(timer);
  }
}

/** Validate a full config and run the connector's check; errors name `config.<field>`. */
async function checked(
  deps: ImportDeps,
  sourceId: string,
  connector: SourceConnector,
  config: Record<string, unknown>,
  options: { check: boolean },
): Promise<Record<string, unknown>> {
  const valid = parseConfig(connector.config, `the ${connector.title} connector`, config);
  if (!options.check) return valid;
  const secrets = secretValues(splitSecrets(connector.config, valid).sealed);
  const outcome = await guarded(deps, sourceId, connector, secrets, (ctx) =>
    connector.check({ config: valid }, ctx),
  );
  const reason = !outcome.ok
    ? outcome.reason
    : !outcome.value.ok
      ? redactSecrets(outcome.value.reason, secrets)
      : null;
  if (reason !== null) {
    throw new HubError(
      422,
      'source-check-failed',
      'Source check failed',
      `${connector.title} refused this configuration: ${reason}`,
      [{ field: 'config', message: reason }],
    );
  }
  return valid;
}

/** Whether a folder holds any file yet. */
const hasFiles = (dir: string) => {
  try {
    return readdirSync(dir).some((f) => !f.startsWith('.'));
  } catch {
    return false;
  }
};

function nextRun(schedule: string | null | undefined): string | null {
  return schedule ? nextScheduledRun(schedule, new Date()).toISOString() : null;
}

const nameTaken = (name: string) =>
  new HubError(409, 'source-name-taken', 'Source name taken', undefined, [
    { field: 'name', message: `a source named "${name}" exists` },
  ]);

const isUniqueViolation = (error: unknown) =>
  (error as { cause?: { code?: string } }).cause?.code === '23505' ||
  (error as { code?: string }).code === '23505';

/**
 * Create a source after its connector's check passed (a source reading uploads is checked when
 * its first file arrives).
 *
 * @example
 * await createSource(db, deps, admin, { name: 'ERP', connector: 'postgres', config: { url, password } });
 */
export async function createSource(
  db: Db,
  deps: ImportDeps,
  principal: Principal,
  input: CreateSource,
  options: { managedBy?: string } = {},
): Promise<Source> {
  const data = CreateSource.parse(input);
  const connector = connectorOf(deps, data.connector);
  const id = uuidv7();
  const uploads = readsUploads(connector, data.config);
  const folder = uploadFolder(deps, id);
  const valid = await checked(
    deps,
    id,
    connector,
    uploads ? { ...data.config, path: folder } : data.config,
    { check: !uploads },
  );
  const { open, sealed } = splitSecrets(connector.config, valid);
  if (uploads) delete open.path;
  try {
    const [row] = await rows<SourceRow>(
      db,
      sql`insert into sources (id, name, connector, config, secrets, schedule, next_run_at,
            expected_interval_minutes, alert_webhook, max_reject_share, managed_by, created_by)
          values (${id}, ${data.name}, ${connector.name}, ${JSON.stringify(open)}::jsonb,
            ${deps.box.seal(sealed)}, ${data.schedule || null},
            ${nextRun(data.schedule)}::timestamptz, ${data.expectedIntervalMinutes ?? null},
            ${data.alertWebhookUrl ? deps.box.seal(data.alertWebhookUrl) : null},
            ${data.maxRejectShare ?? 0.1}, ${options.managedBy ?? null}, ${principal.tokenId})
          returning *`,
    );
    if (uploads) mkdirSync(folder, { recursive: true });
    await recordAudit(db, actor(principal), 'source.created', 'source', id, {
      connector: connector.name,
    });
    return toSource(row!, deps);
  } catch (error) {
    if (isUniqueViolation(error)) throw nameTaken(data.name);
    throw error;
  }
}

export async function listSources(db: Db, deps: ImportDeps): Promise<Source[]> {
  const found = await rows<SourceRow>(db, sql`select * from sources order by lower(name), id`);
  return found.map((r) => toSource(r, deps));
}

async function sourceRow(db: Db, id: string): Promise<SourceRow> {
  const [row] = await rows<SourceRow>(db, sql`select * from sources where id = ${id}`);
  if (!row) throw notFound('Source', id);
  return row;
}

export async function getSource(db: Db, deps: ImportDeps, id: string): Promise<Source> {
  return toSource(await sourceRow(db, id), deps);
}

/** A source found by its id or (case-insensitively) its name: for the CLI. */
export async function findSource(db: Db, deps: ImportDeps, idOrName: string): Promise<Source> {
  const isId = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(idOrName);
  const [row] = await rows<SourceRow>(
    db,
    isId
      ? sql`select * from sources where id = ${idOrName}`
      : sql`select * from sources where lower(name) = lower(${idOrName})`,
  );
  if (!row) {
    throw new HubError(404, 'not-found', 'Source not found', `No source "${idOrName}".`);
  }
  return toSource(row, deps);
}

/** Change a source; a changed config is checked again. Secrets left out are kept. */
export async function updateSource(
  db: Db,
  deps: ImportDeps,
  principal: Principal,
  id: string,
  input: UpdateSource,
  options: ManagedWrite = {},
): Promise<Source> {
  const data = UpdateSource.parse(input);
  const row = await sourceRow(db, id);
  refuseManaged('source', row.managed_by, options);
  const connector = connectorOf(deps, row.connector);
  let config = row.config;
  let secrets = row.secrets;
  if (data.config) {
    const merged = { ...openConfig(deps.box, row.config, row.secrets).config, ...data.config };
    const uploads = readsUploads(connector, merged);
    const folder = uploadFolder(deps, id);
    const valid = await checked(
      deps,
      id,
      connector,
      uploads ? { ...merged, path: folder } : merged,
      {
        check: !uploads || hasFiles(folder),
      },
    );
    const parts = splitSecrets(connector.config, valid);
    if (uploads) {
      delete parts.open.path;
      mkdirSync(folder, { recursive: true });
    }
    config = parts.open;
    secrets = deps.box.seal(parts.sealed);
  }
  const schedule = data.schedule === undefined ? row.schedule : data.schedule || null;
  const nextRunAt =
    data.schedule === undefined
      ? (date(row.next_run_at)?.toISOString() ?? null)
      : nextRun(schedule);
  const webhook =
    data.alertWebhookUrl === undefined
      ? row.alert_webhook
      : data.alertWebhookUrl
        ? deps.box.seal(data.alertWebhookUrl)
        : null;
  let updated: SourceRow | undefined;
  try {
    [updated] = await rows<SourceRow>(
      db,
      sql`update sources set name = ${data.name ?? row.name},
            config = ${JSON.stringify(config)}::jsonb, secrets = ${secrets},
            schedule = ${schedule}, next_run_at = ${nextRunAt}::timestamptz,
            expected_interval_minutes = ${
              data.expectedIntervalMinutes === undefined
                ? row.expected_interval_minutes
                : data.expectedIntervalMinutes
            },
            alert_webhook = ${webhook},
            max_reject_share = ${data.maxRejectShare ?? Number(row.max_reject_share)},
            updated_at = now()
          where id = ${id} returning *`,
    );
  } catch (error) {
    if (isUniqueViolation(error)) throw nameTaken(data.name ?? row.name);
    throw error;
  }
  await recordAudit(db, actor(principal), 'source.updated', 'source', id, {
    fields: Object.keys(data)
      .filter((k) => k !== 'config')
      .concat(Object.keys(data.config ?? {}).map((k) => `config.${k}`))
      .sort(),
  });
  return toSource(updated!, deps);
}

/**
 * Delete a source with its stream settings, run history, rejects and uploaded files; refused
 * (409) while one of its streams is being imported. What it imported stays.
 */
export async function deleteSource(
  db: Db,
  deps: Pick<ImportDeps, 'uploadsDir'>,
  principal: Principal,
  id: string,
  options: ManagedWrite = {},
): Promise<void> {
  await db.transaction(async (tx) => {
    const [row] = await rows<{ id: string; managed_by: string | null }>(
      tx,
      sql`select id, managed_by from sources where id = ${id} for update`,
    );
    if (!row) throw notFound('Source', id);
    refuseManaged('source', row.managed_by, options);
    const running = await rows<{ stream: string; lease_run_id: string | number }>(
      tx,
      sql`select stream, lease_run_id from import_streams
          where source_id = ${id} and lease_run_id is not null and lease_until > now()`,
    );
    if (running.length > 0) {
      throw new HubError(
        409,
        'import-running',
        'Import running',
        `Streams of this source are being imported (${running.map((r) => r.stream).join(', ')}); wait for the runs to finish.`,
        undefined,
        { runIds: running.map((r) => Number(r.lease_run_id)) },
      );
    }
    await tx.execute(
      sql`delete from import_row_digests
          where stream_id in (select id from import_streams where source_id = ${id})`,
    );
    await tx.execute(sql`delete from import_rejects where source_id = ${id}`);
    await tx.execute(sql`delete from import_runs where source_id = ${id}`);
    await tx.execute(sql`delete from import_streams where source_id = ${id}`);
    await tx.execute(sql`delete from sources where id = ${id}`);
    await recordAudit(tx, actor(principal), 'source.deleted', 'source', id, {});
  });
  rmSync(uploadFolder(deps, id), { recursive: true, force: true });
}

/** A source ready to read: its connector and its decrypted, validated config. */
export interface LoadedSource {
  row: SourceRow;
  connector: SourceConnector;
  config: unknown;
  /** Secret values, to blank out of any message that might repeat them. */
  secretValues: string[];
}

/** Load a source with its connector and config (a ConfigError when either no longer fits). */
export async function loadSource(db: Db, deps: ImportDeps, id: string): Promise<LoadedSource> {
  const row = await sourceRow(db, id);
  const connector = deps.connectors.get(row.connector);
  if (!connector) {
    throw new ConfigError(`The source's connector "${row.connector}" is not installed.`);
  }
  const { config: full, secrets } = openConfig(deps.box, row.config, row.secrets);
  if (readsUploads(connector, row.config)) full.path = uploadFolder(deps, id);
  const config = parseStoredConfig(
    connector.config,
    full,
    `The source's configuration no longer fits the ${connector.title} connector`,
  );
  return { row, connector, config, secretValues: secretValues(secrets) };
}

/** A stream as the API shows it: what the connector reports, and how this hub imports it. */
export interface StreamInfo extends SourceStream {
  /** Its mapping, or null while it has none (it is not imported). */
  mapping: StreamMapping | null;
  enabled: boolean;
  /** When the stored cursor was last advanced. */
  cursorAt: Date | null;
}

interface StreamRow {
  id: string | number;
  source_id: string;
  stream: string;
  mapping: Record<string, unknown>;
  enabled: boolean;
  cursor: unknown;
  cursor_at: string | Date | null;
}

/** Ask the connector for the source's streams (`discover`); 422 when it cannot answer. */
export async function discoverStreams(
  db: Db,
  deps: ImportDeps,
  id: string,
): Promise<SourceStream[]> {
  const source = await loadSource(db, deps, id).catch((error: unknown) => {
    if (error instanceof ConfigError) {
      throw new HubError(422, 'source-unreadable', 'Source cannot be read', error.message);
    }
    throw error;
  });
  const outcome = await guarded(
    deps,
    id,
    source.connector,
    source.secretValues,
    (ctx) => source.connector.discover({ config: source.config }, ctx),
    60_000,
  );
  if (!outcome.ok) {
    throw new HubError(
      422,
      'discover-failed',
      'Streams could not be listed',
      `${source.connector.title} could not list the streams: ${outcome.reason}`,
    );
  }
  return outcome.value;
}

/** The streams with their import settings. */
export async function listStreams(db: Db, deps: ImportDeps, id: string): Promise<StreamInfo[]> {
  const streams = await discoverStreams(db, deps, id);
  const settings = await rows<StreamRow>(
    db,
    sql`select * from import_streams where source_id = ${id}`,
  );
  const byName = new Map(settings.map((s) => [s.stream, s]));
  return streams.map((s) => {
    const set = byName.get(s.name);
    return {
      ...s,
      mapping: set ? StreamMapping.parse(set.mapping) : null,
      enabled: set?.enabled ?? false,
      cursorAt: set ? date(set.cursor_at) : null,
    };
  });
}

export const PutStreamMapping = z
  .object({
    mapping: StreamMapping,
    enabled: z
      .boolean()
      .default(true)
      .openapi({ description: 'Off: not imported by schedules or whole-source runs.' }),
    resetCursor: z
      .boolean()
      .default(false)
      .openapi({ description: 'Read the stream from its start on the next run.' }),
  })
  .openapi('PutStreamMapping');
export type PutStreamMapping = z.input<typeof PutStreamMapping>;

/**
 * Set a stream's mapping (422 naming each field that does not fit). A mapping without a
 * `traitSource` gets the source's name now, so renaming the source later changes neither its
 * trait priority nor the ids of the messages its rows become.
 */
export async function setStreamMapping(
  db: Db,
  deps: ImportDeps,
  principal: Principal,
  id: string,
  streamName: string,
  input: unknown,
  options: ManagedWrite = {},
): Promise<StreamInfo> {
  const row = await sourceRow(db, id);
  refuseManaged('source', row.managed_by, options);
  const parsed = PutStreamMapping.safeParse(input);
  if (!parsed.success) {
    throw mappingProblem(
      parsed.error.issues.map((i) => ({ field: fieldPath(i.path), message: i.message })),
    );
  }
  const streams = await discoverStreams(db, deps, id);
  const stream = streams.find((s) => s.name === streamName);
  if (!stream) {
    throw new HubError(
      404,
      'not-found',
      'Stream not found',
      `The source has no stream "${streamName}" (it has: ${streams.map((s) => s.name).join(', ') || 'none'}).`,
    );
  }
  const mapping = {
    ...parsed.data.mapping,
    traitSource: parsed.data.mapping.traitSource ?? row.name,
  };
  const unknown = unknownFields(mapping, stream).map((e) => ({
    ...e,
    field: `mapping.${e.field}`,
  }));
  if (unknown.length > 0) throw mappingProblem(unknown);
  const [saved] = await rows<StreamRow>(
    db,
    sql`insert into import_streams (source_id, stream, mapping, enabled)
        values (${id}, ${streamName}, ${JSON.stringify(mapping)}::jsonb, ${parsed.data.enabled})
        on conflict (source_id, stream) do update
          set mapping = excluded.mapping, enabled = excluded.enabled, updated_at = now(),
            cursor = case when ${parsed.data.resetCursor} then null else import_streams.cursor end,
            cursor_at = case when ${parsed.data.resetCursor} then null else import_streams.cursor_at end
        returning *`,
  );
  await recordAudit(db, actor(principal), 'source.mapping_set', 'source', id, {
    stream: streamName,
    enabled: parsed.data.enabled,
    resetCursor: parsed.data.resetCursor,
  });
  return {
    ...stream,
    mapping: StreamMapping.parse(saved!.mapping),
    enabled: saved!.enabled,
    cursorAt: date(saved!.cursor_at),
  };
}

const mappingProblem = (errors: FieldError[]) =>
  new HubError(
    422,
    'invalid-mapping',
    'Invalid mapping',
    errors.length === 1
      ? `${errors[0]!.field}: ${errors[0]!.message}`
      : `${errors.length} fields of the mapping are invalid.`,
    errors,
  );

const fieldPath = (path: PropertyKey[]) =>
  path.reduce<string>(
    (acc, key) =>
      typeof key === 'number' ? `${acc}[${key}]` : acc ? `${acc}.${String(key)}` : String(key),
    '',
  ) || 'body';

/** The streams a run of the whole source imports: mapped and enabled. */
export async function enabledStreams(db: Db, sourceId: string): Promise<string[]> {
  const found = await rows<{ stream: string }>(
    db,
    sql`select stream from import_streams where source_id = ${sourceId} and enabled
        order by stream`,
  );
  return found.map((r) => r.stream);
}

/** Which secret fields a connector has: for the connector listing. */
export const connectorSecrets = (connector: SourceConnector) => secretKeys(connector.config);
