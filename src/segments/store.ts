/**
 * Segment definitions: create, read, update, delete, with ownership and visibility. A private
 * segment is seen only by its owner and admins; a shared one by every token. Only the owner or
 * an admin may change or delete a segment.
 */
import { z } from '@hono/zod-openapi';
import { CronExpressionParser } from 'cron-parser';
import { sql, type SQL } from 'drizzle-orm';
import type { Principal } from '../auth/credentials.ts';
import { refuseManaged, type ManagedWrite } from '../apply/managed.ts';
import { recordAudit } from '../audit.ts';
import { rows, withRetry, type Db } from '../db/index.ts';
import { badRequest, HubError, notFound } from '../errors.ts';
import { uuidv7 } from '../ids.ts';
import { compileSegment } from './compile.ts';
import { assertNotSynced, assertSegmentUnlocked } from '../sync/locks.ts';
import { segmentResolver } from './compute.ts';
import type { SegmentRules } from './rules.ts';
import { checkSegmentRules, segmentReferences } from './rules.ts';

export const SegmentType = z.enum(['dynamic', 'static']);
export type SegmentType = z.infer<typeof SegmentType>;
export const Visibility = z.enum(['private', 'shared']);
export type Visibility = z.infer<typeof Visibility>;

const Name = z.string().trim().min(1).max(100);
const Description = z.string().max(2000);
const Schedule = z
  .string()
  .trim()
  .max(100)
  .openapi({ description: 'A cron expression, in UTC, e.g. `0 * * * *` (hourly).' });

export const CreateSegment = z
  .object({
    name: Name,
    description: Description.default(''),
    type: SegmentType.default('dynamic'),
    visibility: Visibility.default('private'),
    rules: z
      .unknown()
      .optional()
      .openapi({ description: 'The rule tree (docs/segments.md). Omit for an uploaded list.' }),
    schedule: Schedule.nullable().optional(),
    template: z.string().max(100).nullable().optional(),
  })
  .openapi('CreateSegment');
export type CreateSegment = z.infer<typeof CreateSegment>;

export const UpdateSegment = z
  .object({
    name: Name.optional(),
    description: Description.optional(),
    visibility: Visibility.optional(),
    rules: z.unknown().optional(),
    schedule: Schedule.nullable().optional(),
  })
  .openapi('UpdateSegment');
export type UpdateSegment = z.infer<typeof UpdateSegment>;

export interface Segment {
  id: string;
  name: string;
  description: string;
  type: SegmentType;
  visibility: Visibility;
  owner: { id: string; name: string };
  rules: SegmentRules | null;
  schedule: string | null;
  nextRunAt: Date | null;
  template: string | null;
  size: number;
  createdAt: Date;
  updatedAt: Date;
  lastComputedAt: Date | null;
  /** The config-as-code key when `audiencehub apply` manages it (the API then refuses edits). */
  managedBy: string | null;
}

interface SegmentRow {
  id: string;
  name: string;
  description: string;
  type: SegmentType;
  visibility: Visibility;
  owner_id: string;
  owner_name: string;
  rules: SegmentRules | null;
  schedule: string | null;
  next_run_at: string | Date | null;
  template: string | null;
  size: number;
  created_at: string | Date;
  updated_at: string | Date;
  last_computed_at: string | Date | null;
  managed_by: string | null;
}

const date = (v: string | Date) => new Date(v);
const maybeDate = (v: string | Date | null) => (v === null ? null : new Date(v));

export const toSegment = (r: SegmentRow): Segment => ({
  id: r.id,
  name: r.name,
  description: r.description,
  type: r.type,
  visibility: r.visibility,
  owner: { id: r.owner_id, name: r.owner_name },
  rules: r.rules,
  schedule: r.schedule,
  nextRunAt: maybeDate(r.next_run_at),
  template: r.template,
  size: r.size,
  createdAt: date(r.created_at),
  updatedAt: date(r.updated_at),
  lastComputedAt: maybeDate(r.last_computed_at),
  managedBy: r.managed_by ?? null,
});

/** Segments `principal` may see: shared ones, its own, and all of them for an admin. */
export function visibleTo(principal: Principal, alias = 's'): SQL {
  if (principal.role === 'admin') return sql`true`;
  const a = sql.raw(alias);
  return sql`(${a}.visibility = 'shared' or ${a}.owner_id = ${principal.tokenId})`;
}

/**
 * The next time a cron schedule falls due after `from`; a 400 naming `field` when the
 * expression is not valid cron.
 */
export function nextScheduledRun(schedule: string, from: Date, field = 'schedule'): Date {
  try {
    return CronExpressionParser.parse(schedule, { currentDate: from, tz: 'UTC' }).next().toDate();
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw badRequest(`"${schedule}" is not a valid cron expression: ${reason}`, [
      { field, message: `not a valid cron expression: ${reason}` },
    ]);
  }
}

/**
 * Validate rules and everything they reference (unknown segments, cycles) for segment `id`.
 * Only segments `principal` may see can be referenced: a private segment of someone else is
 * unknown here, so its members cannot be learnt through a reference.
 */
async function checkRules(
  db: Db,
  principal: Principal,
  id: string,
  name: string,
  input: unknown,
): Promise<SegmentRules> {
  const checked = checkSegmentRules(input, 'rules');
  if (!checked.ok) {
    const first = checked.errors[0]!;
    throw badRequest(`Invalid segment rules: ${first.field}: ${first.message}`, checked.errors);
  }
  // Compiling resolves every reference and rejects cycles, with the field that leads to them.
  await compileSegment(checked.rules, {
    resolveSegment: segmentResolver(db, visibleTo(principal)),
    segmentId: id,
    segmentName: name,
  });
  return checked.rules;
}

/** JSON with object keys sorted: equal for equal values, whatever order the keys came in. */
function canonical(value: unknown): string {
  const sorted = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(sorted)
      : v !== null && typeof v === 'object'
        ? Object.fromEntries(
            Object.keys(v)
              .sort()
              .map((k) => [k, sorted((v as Record<string, unknown>)[k])]),
          )
        : v;
  return JSON.stringify(sorted(value));
}

const nameTaken = (name: string) =>
  new HubError(
    409,
    'segment-name-taken',
    'Segment name taken',
    `You already have a segment named "${name}".`,
    [{ field: 'name', message: 'already used by another of your segments' }],
  );

const isUniqueViolation = (error: unknown) =>
  (error as { code?: string })?.code === '23505' ||
  (error as { cause?: { code?: string } })?.cause?.code === '23505';

/**
 * Create a segment owned by `principal`. Dynamic segments need rules; static ones either have
 * rules (computed once) or none (an uploaded list). The caller computes it afterwards.
 *
 * @example
 * const segment = await createSegment(db, principal, { name: 'Loyal', rules }, { maxPerOwner: 50 });
 */
export async function createSegment(
  db: Db,
  principal: Principal,
  input: CreateSegment,
  limits: { maxPerOwner: number },
): Promise<Segment> {
  const id = uuidv7();
  const type = input.type ?? 'dynamic';
  if (type === 'dynamic' && input.rules === undefined) {
    throw badRequest('A dynamic segment needs rules.', [
      { field: 'rules', message: 'required for a dynamic segment' },
    ]);
  }
  if (type === 'static' && input.schedule) {
    throw badRequest('A static segment never recomputes: it cannot have a schedule.', [
      { field: 'schedule', message: 'only dynamic segments have a schedule' },
    ]);
  }
  const rules =
    input.rules === undefined ? null : await checkRules(db, principal, id, input.name, input.rules);
  const schedule = input.schedule || null;
  const nextRunAt = schedule ? nextScheduledRun(schedule, new Date()) : null;
  try {
    return await withRetry(db, async (tx) => {
      // Serialise creations by one owner, so the limit holds under concurrent requests.
      await tx.execute(
        sql`select pg_advisory_xact_lock(hashtextextended(${principal.tokenId}, 7))`,
      );
      const [owned] = await rows<{ n: number }>(
        tx,
        sql`select count(*)::int as n from segments where owner_id = ${principal.tokenId}`,
      );
      if (owned!.n >= limits.maxPerOwner) {
        throw new HubError(
          409,
          'segment-limit',
          'Too many segments',
          `An owner may have at most ${limits.maxPerOwner} segments; delete one first.`,
          undefined,
          { limit: limits.maxPerOwner },
        );
      }
      const [row] = await rows<SegmentRow>(
        tx,
        sql`insert into segments (id, name, description, type, visibility, owner_id, owner_name,
              rules, schedule, next_run_at, template)
            values (${id}, ${input.name}, ${input.description ?? ''}, ${type},
              ${input.visibility ?? 'private'}, ${principal.tokenId}, ${principal.name},
              ${rules === null ? null : JSON.stringify(rules)}::jsonb, ${schedule},
              ${nextRunAt?.toISOString() ?? null}::timestamptz,
              ${input.template ?? null})
            returning *`,
      );
      await recordAudit(tx, actor(principal), 'segment.created', 'segment', id, { type });
      return toSegment(row!);
    });
  } catch (error) {
    if (isUniqueViolation(error)) throw nameTaken(input.name);
    throw error;
  }
}

const actor = (p: Principal) => ({ id: p.tokenId, name: p.name });

/** A segment `principal` may see; 404 otherwise (a private segment's existence is not told). */
export async function getSegment(db: Db, principal: Principal, id: string): Promise<Segment> {
  const [row] = await rows<SegmentRow>(
    db,
    sql`select * from segments s where s.id = ${id} and ${visibleTo(principal)}`,
  );
  if (!row) throw notFound('Segment', id);
  return toSegment(row);
}

/** A segment `principal` may change: 404 when not visible, 403 when visible but not theirs. */
export async function getOwnSegment(db: Db, principal: Principal, id: string): Promise<Segment> {
  const segment = await getSegment(db, principal, id);
  if (principal.role !== 'admin' && segment.owner.id !== principal.tokenId) {
    throw new HubError(
      403,
      'forbidden',
      'Forbidden',
      'Only the owner of a segment or an admin may change it.',
    );
  }
  return segment;
}

/**
 * Change a segment. Returns it and whether what it selects may have changed (new rules), in
 * which case the caller recomputes it.
 */
export async function updateSegment(
  db: Db,
  principal: Principal,
  id: string,
  input: UpdateSegment,
  options: ManagedWrite = {},
): Promise<{ segment: Segment; recompute: boolean }> {
  const current = await getOwnSegment(db, principal, id);
  refuseManaged('segment', current.managedBy, options);
  const name = input.name ?? current.name;
  if (input.rules !== undefined && current.rules === null) {
    throw badRequest('This segment is an uploaded list: it has no rules to change.', [
      { field: 'rules', message: 'an uploaded list has no rules' },
    ]);
  }
  if (input.schedule && current.type === 'static') {
    throw badRequest('A static segment never recomputes: it cannot have a schedule.', [
      { field: 'schedule', message: 'only dynamic segments have a schedule' },
    ]);
  }
  const rules =
    input.rules === undefined ? undefined : await checkRules(db, principal, id, name, input.rules);
  const schedule = input.schedule === undefined ? current.schedule : input.schedule || null;
  const nextRunAt =
    input.schedule === undefined
      ? current.nextRunAt
      : schedule
        ? nextScheduledRun(schedule, new Date())
        : null;
  const rulesChange = rules !== undefined && canonical(rules) !== canonical(current.rules);
  const visibilityChange =
    input.visibility !== undefined && input.visibility !== current.visibility;
  try {
    return await withRetry(db, async (tx) => {
      // Rules and visibility stay as they are while an auto-sync holds the segment, and a
      // synced segment stays shared: checked under the segments' row locks.
      if (rulesChange || visibilityChange) await assertSegmentUnlocked(tx, id);
      if (visibilityChange && input.visibility === 'private') await assertNotSynced(tx, id);
      const [row] = await rows<SegmentRow>(
        tx,
        sql`update segments set name = ${name},
            description = ${input.description ?? current.description},
            visibility = ${input.visibility ?? current.visibility},
            rules = ${rules === undefined ? JSON.stringify(current.rules) : JSON.stringify(rules)}::jsonb,
            schedule = ${schedule}, next_run_at = ${nextRunAt?.toISOString() ?? null}::timestamptz,
            updated_at = now()
          where id = ${id}
          returning *`,
      );
      await recordAudit(tx, actor(principal), 'segment.updated', 'segment', id, {
        fields: Object.keys(input).filter((k) => input[k as keyof UpdateSegment] !== undefined),
      });
      // A static segment keeps the members it was computed with: new rules apply to dynamic ones.
      const recompute = rulesChange && current.type === 'dynamic';
      return { segment: toSegment(row!), recompute };
    });
  } catch (error) {
    if (isUniqueViolation(error)) throw nameTaken(name);
    throw error;
  }
}

/**
 * Delete a segment with its members, history and runs. Refused (409, naming them) while other
 * segments' rules reference it.
 */
export async function deleteSegment(
  db: Db,
  principal: Principal,
  id: string,
  options: ManagedWrite = {},
): Promise<void> {
  const current = await getOwnSegment(db, principal, id);
  refuseManaged('segment', current.managedBy, options);
  await withRetry(db, async (tx) => {
    await assertSegmentUnlocked(tx, id);
    const [synced] = await rows<{ id: string }>(
      tx,
      sql`select id from syncs where segment_id = ${id} limit 1`,
    );
    if (synced) {
      throw new HubError(
        409,
        'segment-synced',
        'Segment is synced',
        `Sync ${synced.id} sends this segment: delete the sync first.`,
        undefined,
        { syncs: [synced.id] },
      );
    }
    const others = await rows<{ id: string; name: string; rules: SegmentRules }>(
      tx,
      sql`select id, name, rules from segments where rules is not null and id <> ${id}
          and rules::text like ${'%' + id + '%'}`,
    );
    const referencing = others.filter((s) => segmentReferences(s.rules).some((r) => r.id === id));
    if (referencing.length > 0) {
      const names = referencing.map((s) => `"${s.name}"`).join(', ');
      throw new HubError(
        409,
        'segment-referenced',
        'Segment in use',
        `Other segments' rules reference this segment: ${names}. Change them first.`,
        undefined,
        { referencedBy: referencing.map((s) => ({ id: s.id, name: s.name })) },
      );
    }
    for (const table of [
      'segment_members',
      'segment_membership_changes',
      'segment_runs',
      'segment_daily_sizes',
    ]) {
      await tx.execute(sql`delete from ${sql.identifier(table)} where segment_id = ${id}`);
    }
    await tx.execute(sql`delete from segments where id = ${id}`);
    await recordAudit(tx, actor(principal), 'segment.deleted', 'segment', id, {});
  });
}
