/**
 * `audiencehub apply`: make the hub hold what a config folder declares. The plan compares each
 * declared object with the one config made before (found by its key, kept in `managed_by`) and
 * says what will be created, changed (which fields) and deleted — objects config made whose key
 * is gone. Applying carries the plan out; a second apply then plans nothing.
 *
 * Objects made through the API are never touched (a key whose name an API-made object already
 * has is a problem, not a take-over), and the API refuses to edit objects config manages.
 *
 * Everything that can be checked is checked before anything is written: the files, the
 * references between them, the plugins' configs (each destination's `check`), segment rules and
 * sync mappings. Writing then goes object by object; if a service fails half-way, running apply
 * again finishes the job.
 */
import { sql } from 'drizzle-orm';
import type { Principal } from '../auth/credentials.ts';
import { hashSecret, newSecret, secretPrefix } from '../auth/secrets.ts';
import type { HubContext } from '../context.ts';
import { rows, type Db } from '../db/index.ts';
import { HubError } from '../errors.ts';
import { uuidv7 } from '../ids.ts';
import { inlineJobs } from '../jobs/index.ts';
import { secretKeys } from '../sdk/destination.ts';
import { createDestination, deleteDestination, updateDestination } from '../destinations/store.ts';
import { segmentReferences, type SegmentRules } from '../segments/rules.ts';
import { createSegment, deleteSegment, getSegment, updateSegment } from '../segments/store.ts';
import { findTemplate } from '../segments/templates.ts';
import { referencedSegments } from '../sync/locks.ts';
import { createSync, deleteSync, getSync, setAutoSync, updateSync } from '../sync/store.ts';
import { importDepsOf, type ImportDeps } from '../imports/deps.ts';
import { StreamMapping } from '../imports/mapping.ts';
import { createSource, deleteSource, setStreamMapping, updateSource } from '../imports/store.ts';
import {
  ConfigFileError,
  secretProblems,
  type Declared,
  type LoadedConfig,
  type SegmentSpec,
  type SourceSpec,
} from './load.ts';

export type Action = 'create' | 'update' | 'replace' | 'delete';

export interface PlannedChange {
  kind: 'source' | 'destination' | 'segment' | 'sync';
  key: string;
  action: Action;
  /** For updates: the fields that change. */
  fields?: string[];
  /** The object's id, when it exists. */
  id?: string;
}

export interface Plan {
  changes: PlannedChange[];
  /** Declared objects already as declared. */
  unchanged: number;
}

/** The name config as code acts under, in audit records and as the owner of its segments. */
export const CONFIG_ACTOR = 'config as code';

interface ManagedRow {
  id: string;
  managed_by: string;
}

const TABLES = {
  source: sql.raw('sources'),
  destination: sql.raw('destinations'),
  segment: sql.raw('segments'),
  sync: sql.raw('syncs'),
} as const;

async function managed(db: Db, kind: keyof typeof TABLES): Promise<Map<string, string>> {
  const found = await rows<ManagedRow>(
    db,
    sql`select id, managed_by from ${TABLES[kind]} where managed_by is not null`,
  );
  return new Map(found.map((r) => [r.managed_by, r.id]));
}

/** Canonical JSON: objects with sorted keys, so equal values compare equal. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b)))
      : v,
  );
}

const changed = (want: Record<string, unknown>, have: Record<string, unknown>) =>
  Object.keys(want).filter((k) => canonical(want[k]) !== canonical(have[k]));

/**
 * Compare a loaded config with the hub. Throws a ConfigFileError listing every problem found
 * (unknown plugins, secrets written in clear, names taken by objects made through the API…).
 */
export async function planConfig(ctx: HubContext, config: LoadedConfig): Promise<Plan> {
  const { db } = ctx;
  const problems: string[] = [];
  const changes: PlannedChange[] = [];
  let unchanged = 0;
  const sync = requireSyncDeps(ctx);

  // Sources.
  const sources = await managed(db, 'source');
  const imports = config.sources.length > 0 || sources.size > 0 ? await importDepsOf(ctx) : null;
  for (const { key, spec, file } of config.sources) {
    const where = `${file}: sources.${key}`;
    const connector = imports!.connectors.get(spec.connector);
    if (!connector) {
      problems.push(
        `${where}.connector: no connector "${spec.connector}" (installed: ${imports!.connectors
          .list()
          .map((c) => c.name)
          .join(', ')})`,
      );
      continue;
    }
    problems.push(...secretProblems(spec.config, secretKeys(connector.config), where));
    const parsed = connector.config.safeParse(spec.config);
    if (!parsed.success) {
      for (const issue of parsed.error.issues) {
        problems.push(`${where}.config.${issue.path.join('.')}: ${issue.message}`);
      }
      continue;
    }
    const mappings: Record<string, unknown> = {};
    for (const [stream, settings] of Object.entries(spec.streams)) {
      const mapping = StreamMapping.safeParse(settings.mapping);
      if (!mapping.success) {
        for (const issue of mapping.error.issues) {
          problems.push(
            `${where}.streams.${stream}.mapping.${issue.path.join('.')}: ${issue.message}`,
          );
        }
        continue;
      }
      mappings[stream] = {
        mapping: { ...mapping.data, traitSource: mapping.data.traitSource ?? nameOf(key, spec) },
        enabled: settings.enabled,
      };
    }
    const id = sources.get(key);
    if (!id) {
      await nameFree(db, 'sources', nameOf(key, spec), `${where}.name`, problems);
      changes.push({ kind: 'source', key, action: 'create' });
      continue;
    }
    const [row] = await rows<{
      name: string;
      connector: string;
      config: Record<string, unknown>;
      secrets: string;
      schedule: string | null;
      expected_interval_minutes: number | null;
      alert_webhook: string | null;
      max_reject_share: string | number;
    }>(db, sql`select * from sources where id = ${id}`);
    if (row!.connector !== spec.connector) {
      problems.push(
        `${where}.connector: a source's connector cannot change (${row!.connector} → ${spec.connector}); give it a new key`,
      );
      continue;
    }
    const streams = await rows<{ stream: string; mapping: unknown; enabled: boolean }>(
      db,
      sql`select stream, mapping, enabled from import_streams where source_id = ${id}`,
    );
    const fields = changed(
      {
        name: nameOf(key, spec),
        config: parsed.data,
        schedule: spec.schedule,
        expectedIntervalMinutes: minutes(spec.expectedInterval),
        alertWebhook: spec.alertWebhook,
        maxRejectShare: spec.maxRejectShare ?? 0.1,
        streams: mappings,
      },
      {
        name: row!.name,
        config: connector.config.parse({
          ...row!.config,
          ...imports!.box.open<Record<string, unknown>>(row!.secrets),
        }),
        schedule: row!.schedule,
        expectedIntervalMinutes: row!.expected_interval_minutes,
        alertWebhook: row!.alert_webhook ? imports!.box.open<string>(row!.alert_webhook) : null,
        maxRejectShare: Number(row!.max_reject_share),
        streams: Object.fromEntries(
          streams
            .filter((s) => s.stream in mappings)
            .map((s) => [s.stream, { mapping: s.mapping, enabled: s.enabled }]),
        ),
      },
    );
    if (fields.length === 0) unchanged++;
    else changes.push({ kind: 'source', key, action: 'update', fields, id });
  }
  for (const [key, id] of sources) {
    if (!config.sources.some((s) => s.key === key)) {
      changes.push({ kind: 'source', key, action: 'delete', id });
    }
  }

  // Destinations.
  const destinations = await managed(db, 'destination');
  for (const { key, spec, file } of config.destinations) {
    const where = `${file}: destinations.${key}`;
    const plugin = sync.registry.get(spec.plugin);
    if (!plugin) {
      problems.push(
        `${where}.plugin: no plugin "${spec.plugin}" (installed: ${sync.registry
          .list()
          .map((p) => p.name)
          .join(', ')})`,
      );
      continue;
    }
    problems.push(...secretProblems(spec.config, secretKeys(plugin.config), where));
    const parsed = plugin.config.safeParse(spec.config);
    if (!parsed.success) {
      for (const issue of parsed.error.issues) {
        problems.push(`${where}.config.${issue.path.join('.')}: ${issue.message}`);
      }
      continue;
    }
    const id = destinations.get(key);
    if (!id) {
      await nameFree(db, 'destinations', nameOf(key, spec), `${where}.name`, problems);
      changes.push({ kind: 'destination', key, action: 'create' });
      continue;
    }
    const [row] = await rows<{
      name: string;
      plugin: string;
      config: Record<string, unknown>;
      secrets: string;
    }>(db, sql`select name, plugin, config, secrets from destinations where id = ${id}`);
    if (row!.plugin !== spec.plugin) {
      problems.push(
        `${where}.plugin: a destination's plugin cannot change (${row!.plugin} → ${spec.plugin}); give it a new key`,
      );
      continue;
    }
    const have = plugin.config.parse({
      ...row!.config,
      ...sync.box.open<Record<string, unknown>>(row!.secrets),
    });
    const fields = changed(
      { name: nameOf(key, spec), config: parsed.data },
      { name: row!.name, config: have },
    );
    if (fields.length === 0) unchanged++;
    else changes.push({ kind: 'destination', key, action: 'update', fields, id });
  }
  for (const [key, id] of destinations) {
    if (!config.destinations.some((d) => d.key === key)) {
      changes.push({ kind: 'destination', key, action: 'delete', id });
    }
  }

  // Segments.
  const segments = await managed(db, 'segment');
  const principal = await configPrincipal(db);
  for (const declared of segmentOrder(config.segments, problems)) {
    const { key, spec, file } = declared;
    const where = `${file}: segments.${key}`;
    const rules = segmentRules(spec, where, problems);
    if (rules === undefined) continue;
    const id = segments.get(key);
    if (!id) {
      await nameFree(db, 'segments', nameOf(key, spec), `${where}.name`, problems);
      changes.push({ kind: 'segment', key, action: 'create' });
      continue;
    }
    const current = await getSegment(db, principal, id);
    if (current.type !== spec.type) {
      problems.push(
        `${where}.type: a segment's type cannot change (${current.type} → ${spec.type}); give it a new key`,
      );
      continue;
    }
    const fields = changed(
      {
        name: nameOf(key, spec),
        description: descriptionOf(spec),
        visibility: spec.visibility,
        rules: withSegmentIds(rules, segments),
        schedule: spec.schedule,
      },
      { ...current },
    );
    if (fields.length === 0) unchanged++;
    else changes.push({ kind: 'segment', key, action: 'update', fields, id });
  }
  for (const [key, id] of segments) {
    if (!config.segments.some((s) => s.key === key))
      changes.push({ kind: 'segment', key, action: 'delete', id });
  }

  // Syncs.
  const syncs = await managed(db, 'sync');
  for (const { key, spec } of config.syncs) {
    const id = syncs.get(key);
    if (!id) {
      changes.push({ kind: 'sync', key, action: 'create' });
      continue;
    }
    const current = await getSync(db, id);
    const segmentId = segments.get(spec.segment);
    const destinationId = destinations.get(spec.destination);
    if (current.segmentId !== segmentId || current.destinationId !== destinationId) {
      // A sync to another segment or destination starts a new ledger.
      changes.push({
        kind: 'sync',
        key,
        action: 'replace',
        fields: ['segment', 'destination'],
        id,
      });
      continue;
    }
    const fields = changed(
      { mode: spec.mode, mapping: spec.mapping, schedule: spec.schedule, autoSync: spec.autoSync },
      { ...current },
    );
    if (fields.length === 0) unchanged++;
    else changes.push({ kind: 'sync', key, action: 'update', fields, id });
  }
  for (const [key, id] of syncs) {
    if (!config.syncs.some((s) => s.key === key))
      changes.push({ kind: 'sync', key, action: 'delete', id });
  }

  if (problems.length > 0) throw new ConfigFileError(problems);
  return { changes, unchanged };
}

export interface ApplyResult extends Plan {
  /** Segments created or whose rules changed: computed after the apply. */
  computed: string[];
  /** Sources created or changed: the caller may import them now. */
  imported: string[];
}

/**
 * Plan, then carry the plan out.
 *
 * @example
 * const result = await applyConfig(ctx, loadConfigDir('config', process.env));
 * console.log(describePlan(result));
 */
export async function applyConfig(ctx: HubContext, config: LoadedConfig): Promise<ApplyResult> {
  const plan = await planConfig(ctx, config);
  const { db } = ctx;
  const deps = requireSyncDeps(ctx);
  const principal = await configPrincipal(db);
  const destinationDeps = { registry: deps.registry, box: deps.box, log: ctx.log };
  const of = (kind: PlannedChange['kind'], key: string) =>
    plan.changes.find((c) => c.kind === kind && c.key === key);
  const computed: string[] = [];

  // Auto-syncs that would hold a segment this apply changes or deletes, or that go themselves,
  // are turned off first; the last step turns on every auto-sync the config wants.
  const touchedSegments = new Set(
    plan.changes
      .filter(
        (c) =>
          c.kind === 'segment' &&
          c.id &&
          (c.action === 'delete' || c.fields?.some((f) => f === 'rules' || f === 'visibility')),
      )
      .map((c) => c.id!),
  );
  for (const [key, id] of await managed(db, 'sync')) {
    const current = await getSync(db, id);
    if (!current.autoSync) continue;
    const change = of('sync', key);
    const holds = (await referencedSegments(db, current.segmentId)).some((s) =>
      touchedSegments.has(s),
    );
    if (
      holds ||
      change?.action === 'delete' ||
      change?.action === 'replace' ||
      change?.fields?.includes('autoSync')
    ) {
      await setAutoSync(db, principal, id, false, { managed: true });
    }
  }

  // Deletions, dependants first.
  for (const change of plan.changes.filter(
    (c) => c.kind === 'sync' && (c.action === 'delete' || c.action === 'replace'),
  )) {
    await deleteSync(db, principal, change.id!, { managed: true });
  }
  const deletedSegments = plan.changes.filter((c) => c.kind === 'segment' && c.action === 'delete');
  for (const change of await deletionOrder(db, deletedSegments))
    await deleteSegment(db, principal, change.id!, { managed: true });
  for (const change of plan.changes.filter(
    (c) => c.kind === 'destination' && c.action === 'delete',
  )) {
    await deleteDestination(db, principal, change.id!, { managed: true });
  }

  for (const change of plan.changes.filter((c) => c.kind === 'source' && c.action === 'delete')) {
    await deleteSource(db, await importDepsOf(ctx), principal, change.id!, { managed: true });
  }

  // Sources, then their streams' mappings.
  const imported: string[] = [];
  for (const declared of config.sources) {
    const change = of('source', declared.key);
    if (!change) continue;
    const imports = await importDepsOf(ctx);
    const id = await applySource(db, imports, principal, declared, change);
    imported.push(id);
  }

  // Destinations.
  const destinationIds = await managed(db, 'destination');
  for (const { key, spec } of config.destinations) {
    const change = of('destination', key);
    if (change?.action === 'create') {
      const created = await createDestination(db, destinationDeps, principal, {
        name: nameOf(key, spec),
        plugin: spec.plugin,
        config: spec.config,
      });
      await markManaged(db, 'destinations', created.id, key);
      destinationIds.set(key, created.id);
    } else if (change?.action === 'update') {
      await updateDestination(
        db,
        destinationDeps,
        principal,
        change.id!,
        {
          name: nameOf(key, spec),
          config: spec.config,
        },
        { managed: true },
      );
    }
  }

  // Segments, each after the segments its rules reference.
  const segmentIds = await managed(db, 'segment');
  for (const { key, spec, file } of segmentOrder(config.segments, [])) {
    const change = of('segment', key);
    if (!change) continue;
    const rules = withSegmentIds(segmentRules(spec, `${file}: segments.${key}`, [])!, segmentIds);
    if (change.action === 'create') {
      const created = await createSegment(
        db,
        principal,
        {
          name: nameOf(key, spec),
          description: descriptionOf(spec),
          type: spec.type,
          visibility: spec.visibility,
          rules,
          schedule: spec.schedule,
          template: spec.template ?? null,
        },
        { maxPerOwner: Number.MAX_SAFE_INTEGER },
      );
      await markManaged(db, 'segments', created.id, key);
      segmentIds.set(key, created.id);
      computed.push(created.id);
    } else if (change.action === 'update') {
      const { recompute } = await updateSegment(
        db,
        principal,
        change.id!,
        {
          name: nameOf(key, spec),
          description: descriptionOf(spec),
          visibility: spec.visibility,
          rules,
          schedule: spec.schedule,
        },
        { managed: true },
      );
      if (recompute) computed.push(change.id!);
    }
  }
  const jobs = ctx.jobs ?? inlineJobs(db);
  for (const id of computed) await jobs.requestComputation(id, 'manual');

  // Syncs.
  const syncIds = await managed(db, 'sync');
  for (const { key, spec } of config.syncs) {
    const change = of('sync', key);
    const base = {
      mode: spec.mode,
      mapping: spec.mapping,
      schedule: spec.schedule,
    };
    if (change?.action === 'create' || change?.action === 'replace') {
      const created = await createSync(db, deps, principal, {
        ...base,
        segmentId: segmentIds.get(spec.segment)!,
        destinationId: destinationIds.get(spec.destination)!,
      });
      await markManaged(db, 'syncs', created.id, key);
      syncIds.set(key, created.id);
    } else if (change?.action === 'update' && change.fields!.some((f) => f !== 'autoSync')) {
      await updateSync(db, deps, principal, change.id!, base, { managed: true });
    }
  }
  for (const { key, spec } of config.syncs) {
    const id = syncIds.get(key)!;
    const current = await getSync(db, id);
    if (current.autoSync !== spec.autoSync)
      await setAutoSync(db, principal, id, spec.autoSync, { managed: true });
  }
  return { ...plan, computed, imported };
}

/** Create or change one source and set its streams' mappings. */
async function applySource(
  db: Db,
  imports: ImportDeps,
  principal: Principal,
  { key, spec }: Declared<SourceSpec>,
  change: PlannedChange,
): Promise<string> {
  const settings = {
    name: nameOf(key, spec),
    config: spec.config,
    schedule: spec.schedule,
    expectedIntervalMinutes: minutes(spec.expectedInterval),
    alertWebhookUrl: spec.alertWebhook,
    maxRejectShare: spec.maxRejectShare ?? 0.1,
  };
  const id =
    change.action === 'create'
      ? (
          await createSource(
            db,
            imports,
            principal,
            { ...settings, connector: spec.connector },
            { managedBy: key },
          )
        ).id
      : (await updateSource(db, imports, principal, change.id!, settings, { managed: true })).id;
  for (const [stream, { mapping, enabled }] of Object.entries(spec.streams)) {
    await setStreamMapping(
      db,
      imports,
      principal,
      id,
      stream,
      { mapping, enabled },
      { managed: true },
    );
  }
  return id;
}

/** `90m`, `25h`, `2d` → minutes. */
function minutes(interval: string | null): number | null {
  if (interval === null) return null;
  const n = Number(interval.slice(0, -1));
  return n * { m: 1, h: 60, d: 1440 }[interval.at(-1) as 'm' | 'h' | 'd'];
}

/** One line per change, for the CLI and the log. */
export function describePlan(plan: Plan): string {
  if (plan.changes.length === 0) {
    return `Nothing to change: ${plan.unchanged} object${plan.unchanged === 1 ? '' : 's'} as declared.`;
  }
  const sign: Record<Action, string> = { create: '+', update: '~', replace: '-/+', delete: '-' };
  const lines = plan.changes.map(
    (c) =>
      `  ${sign[c.action].padEnd(3)} ${c.kind} ${c.key}${c.fields ? ` (${c.fields.join(', ')})` : ''}`,
  );
  const count = (a: Action) => plan.changes.filter((c) => c.action === a).length;
  return [
    ...lines,
    `${count('create')} to create, ${count('update') + count('replace')} to change, ${count('delete')} to delete, ${plan.unchanged} unchanged.`,
  ].join('\n');
}

/** The principal config acts as: an admin token no one holds (revoked at birth), made once. */
export async function configPrincipal(db: Db): Promise<Principal> {
  const [found] = await rows<{ id: string }>(
    db,
    sql`select id from api_tokens where name = ${CONFIG_ACTOR} and role = 'admin' order by created_at limit 1`,
  );
  if (found) return { tokenId: found.id, name: CONFIG_ACTOR, role: 'admin' };
  const secret = newSecret('aht');
  const id = uuidv7();
  await db.execute(
    sql`insert into api_tokens (id, name, role, prefix, hash, revoked_at)
        values (${id}, ${CONFIG_ACTOR}, 'admin', ${secretPrefix(secret)}, ${hashSecret(secret)}, now())`,
  );
  return { tokenId: id, name: CONFIG_ACTOR, role: 'admin' };
}

async function markManaged(
  db: Db,
  table: 'destinations' | 'segments' | 'syncs',
  id: string,
  key: string,
) {
  await db.execute(sql`update ${sql.raw(table)} set managed_by = ${key} where id = ${id}`);
}

/** The declared name; a template's name for a segment made from one; else the key. */
const nameOf = (key: string, spec: { name?: string; template?: string }) =>
  spec.name ?? (spec.template ? findTemplate(spec.template)?.name : undefined) ?? key;

/** A segment's description: the declared one, else its template's. */
const descriptionOf = (spec: SegmentSpec) =>
  spec.description || (spec.template ? (findTemplate(spec.template)?.description ?? '') : '');

/** A name already taken by an object made through the API is a problem: config never takes one over. */
async function nameFree(
  db: Db,
  table: 'sources' | 'destinations' | 'segments',
  name: string,
  where: string,
  problems: string[],
) {
  const [taken] = await rows<{ id: string }>(
    db,
    sql`select id from ${sql.raw(table)} where lower(name) = lower(${name}) and managed_by is null limit 1`,
  );
  if (taken)
    problems.push(
      `${where}: "${name}" is the name of ${table.slice(0, -1)} ${taken.id}, made through the API`,
    );
}

function requireSyncDeps(ctx: HubContext) {
  if (!ctx.sync)
    throw new HubError(500, 'internal', 'No plugins', 'config apply needs the plugin registry');
  return ctx.sync;
}

/** A segment's rules: its own, or its template's; references to config keys kept for now. */
function segmentRules(spec: SegmentSpec, where: string, problems: string[]): unknown {
  if (spec.rules !== undefined) return spec.rules;
  const template = findTemplate(spec.template!);
  if (!template) {
    problems.push(
      `${where}.template: no template "${spec.template}" (see GET /api/segments/templates)`,
    );
    return undefined;
  }
  return template.rules;
}

/**
 * In config, a segment condition may name another config segment by key:
 * `{ "segment": { "key": "loyal-customers" } }`; it becomes that segment's id.
 */
function withSegmentIds(rules: unknown, ids: Map<string, string>): unknown {
  if (Array.isArray(rules)) return rules.map((r) => withSegmentIds(r, ids));
  if (!rules || typeof rules !== 'object') return rules;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(rules)) {
    if (k === 'segment' && v && typeof v === 'object' && 'key' in v) {
      const { key, ...rest } = v as { key: string };
      out[k] = { ...rest, id: ids.get(key) ?? `00000000-0000-0000-0000-000000000000` };
    } else out[k] = withSegmentIds(v, ids);
  }
  return out;
}

/** Config segment keys a segment's rules name. */
function keyReferences(rules: unknown): string[] {
  if (Array.isArray(rules)) return rules.flatMap(keyReferences);
  if (!rules || typeof rules !== 'object') return [];
  return Object.entries(rules).flatMap(([k, v]) =>
    k === 'segment' && v && typeof v === 'object' && 'key' in v
      ? [String((v as { key: unknown }).key)]
      : keyReferences(v),
  );
}

/** Segments ordered so each comes after those it references; cycles and unknown keys are problems. */
function segmentOrder(
  segments: Declared<SegmentSpec>[],
  problems: string[],
): Declared<SegmentSpec>[] {
  const byKey = new Map(segments.map((s) => [s.key, s]));
  const ordered: Declared<SegmentSpec>[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (s: Declared<SegmentSpec>, path: string[]) => {
    if (state.get(s.key) === 'done') return;
    if (state.get(s.key) === 'visiting') {
      problems.push(
        `${s.file}: segments.${s.key}: its rules reference themselves (${[...path, s.key].join(' → ')})`,
      );
      return;
    }
    state.set(s.key, 'visiting');
    for (const ref of keyReferences(s.spec.rules)) {
      const target = byKey.get(ref);
      if (!target)
        problems.push(`${s.file}: segments.${s.key}.rules: no segment "${ref}" in this config`);
      else visit(target, [...path, s.key]);
    }
    state.set(s.key, 'done');
    ordered.push(s);
  };
  for (const s of segments) visit(s, []);
  return ordered;
}

/** Segments to delete, those referencing others first. */
async function deletionOrder(db: Db, changes: PlannedChange[]): Promise<PlannedChange[]> {
  const ids = new Set(changes.map((c) => c.id!));
  const refs = new Map<string, string[]>();
  for (const change of changes) {
    const [row] = await rows<{ rules: SegmentRules | null }>(
      db,
      sql`select rules from segments where id = ${change.id!}`,
    );
    refs.set(
      change.id!,
      row?.rules
        ? segmentReferences(row.rules)
            .map((r) => r.id)
            .filter((id) => ids.has(id))
        : [],
    );
  }
  const ordered: PlannedChange[] = [];
  const done = new Set<string>();
  const visit = (id: string) => {
    if (done.has(id)) return;
    done.add(id);
    // Anything referencing `id` goes before it.
    for (const [other, targets] of refs) if (targets.includes(id)) visit(other);
    ordered.push(changes.find((c) => c.id === id)!);
  };
  for (const change of changes) visit(change.id!);
  return ordered;
}
