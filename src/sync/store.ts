/**
 * Syncs: one shared segment to one destination, with a field mapping and a mode. Only admins
 * turn auto-sync on or off; while it is on, the segment is locked (./locks.ts). Rows can be
 * marked to be sent again on the next run: the rejected ones, or all (a resync).
 */
import { z } from '@hono/zod-openapi';
import { sql } from 'drizzle-orm';
import type { Principal } from '../auth/credentials.ts';
import { refuseManaged, type ManagedWrite } from '../apply/managed.ts';
import { recordAudit } from '../audit.ts';
import { rows, withRetry, type Db } from '../db/index.ts';
import { badRequest, HubError, notFound } from '../errors.ts';
import { uuidv7 } from '../ids.ts';
import { destinationFields } from '../destinations/store.ts';
import { nextScheduledRun, visibleTo } from '../segments/store.ts';
import { markForResend, type SyncDeps } from './engine.ts';
import { lockSegments, referencedSegments } from './locks.ts';
import { Mapping, mappingProblems } from './mapping.ts';

export const SyncMode = z.enum(['mirror', 'upsert']);

export const CreateSync = z
  .object({
    segmentId: z.uuid(),
    destinationId: z.uuid(),
    mode: SyncMode.default('mirror'),
    mapping: Mapping,
    schedule: z.string().trim().max(100).nullable().optional(),
  })
  .openapi('CreateSync');
export type CreateSync = z.infer<typeof CreateSync>;

export const UpdateSync = z
  .object({
    mode: SyncMode.optional(),
    mapping: Mapping.optional(),
    schedule: z.string().trim().max(100).nullable().optional(),
  })
  .openapi('UpdateSync');
export type UpdateSync = z.infer<typeof UpdateSync>;

export interface Sync {
  id: string;
  segmentId: string;
  destinationId: string;
  mode: 'mirror' | 'upsert';
  mapping: Mapping;
  schedule: string | null;
  nextRunAt: Date | null;
  autoSync: boolean;
  createdAt: Date;
  updatedAt: Date;
  /** The config-as-code key when `audiencehub apply` manages it (the API then refuses edits). */
  managedBy: string | null;
}

interface Row {
  id: string;
  segment_id: string;
  destination_id: string;
  mode: 'mirror' | 'upsert';
  mapping: Mapping;
  schedule: string | null;
  next_run_at: string | Date | null;
  auto_sync: boolean;
  created_at: string | Date;
  updated_at: string | Date;
  managed_by: string | null;
}

const toSync = (r: Row): Sync => ({
  id: r.id,
  segmentId: r.segment_id,
  destinationId: r.destination_id,
  mode: r.mode,
  mapping: r.mapping,
  schedule: r.schedule,
  nextRunAt: r.next_run_at === null ? null : new Date(r.next_run_at),
  autoSync: r.auto_sync,
  createdAt: new Date(r.created_at),
  updatedAt: new Date(r.updated_at),
  managedBy: r.managed_by ?? null,
});

const actor = (p: Principal) => ({ id: p.tokenId, name: p.name });

/** Check a mapping against the destination's fields: known targets, required ones present. */
async function checkMapping(db: Db, deps: SyncDeps, destinationId: string, mapping: Mapping) {
  const problems = mappingProblems(mapping);
  if (problems.length > 0) throw badRequest('The mapping is not valid.', problems);
  const [destination] = await rows<{ plugin: string }>(
    db,
    sql`select plugin from destinations where id = ${destinationId}`,
  );
  if (!destination) {
    throw badRequest(`No destination with id ${destinationId}.`, [
      { field: 'destinationId', message: 'no such destination' },
    ]);
  }
  // The plugin says what it can take; an empty list means any field.
  const { fields, acceptsNewFields } = await destinationFields(db, deps, destinationId);
  const title = deps.registry.get(destination.plugin)?.title ?? destination.plugin;
  if (fields.length === 0) return;
  const known = new Map(fields.map((f) => [f.key, f]));
  const errors: { field: string; message: string }[] = [];
  mapping.forEach((entry, i) => {
    if (!known.has(entry.to) && !acceptsNewFields) {
      errors.push({
        field: `mapping[${i}].to`,
        message: `${title} has no field "${entry.to}" (it has ${[...known.keys()].join(', ')})`,
      });
    }
  });
  for (const f of fields.filter((f) => f.required)) {
    if (!mapping.some((m) => m.to === f.key)) {
      errors.push({ field: 'mapping', message: `the required field "${f.key}" is not mapped` });
    }
  }
  if (errors.length > 0) throw badRequest('The mapping does not fit the destination.', errors);
}

/**
 * Create a sync of a shared segment to a destination.
 *
 * @example
 * await createSync(db, deps, admin, { segmentId, destinationId, mode: 'mirror',
 *   mapping: [{ from: 'identity:email', to: 'email' }] });
 */
export async function createSync(
  db: Db,
  deps: SyncDeps,
  principal: Principal,
  input: CreateSync,
): Promise<Sync> {
  // A segment the caller may not see is not there for them: no hint that the id exists.
  const [segment] = await rows<{ visibility: string }>(
    db,
    sql`select visibility from segments s where s.id = ${input.segmentId} and ${visibleTo(principal)}`,
  );
  if (!segment) {
    throw badRequest(`No segment with id ${input.segmentId}.`, [
      { field: 'segmentId', message: 'no such segment' },
    ]);
  }
  if (segment.visibility !== 'shared') {
    throw new HubError(409, 'segment-private', 'Segment is private', undefined, [
      { field: 'segmentId', message: 'only shared segments can be synced; share it first' },
    ]);
  }
  await checkMapping(db, deps, input.destinationId, input.mapping);
  const schedule = input.schedule || null;
  const next = schedule ? nextScheduledRun(schedule, new Date()).toISOString() : null;
  const id = uuidv7();
  const created = await withRetry(db, async (tx) => {
    // The segment must still be shared once locked (a concurrent change to private waits).
    await lockSegments(tx, [input.segmentId]);
    const [still] = await rows<{ visibility: string }>(
      tx,
      sql`select visibility from segments where id = ${input.segmentId}`,
    );
    if (still?.visibility !== 'shared') {
      throw new HubError(409, 'segment-private', 'Segment is private', undefined, [
        { field: 'segmentId', message: 'only shared segments can be synced' },
      ]);
    }
    const [row] = await rows<Row>(
      tx,
      sql`insert into syncs (id, segment_id, destination_id, mode, mapping, schedule, next_run_at,
            created_by)
          values (${id}, ${input.segmentId}, ${input.destinationId}, ${input.mode},
            ${JSON.stringify(input.mapping)}::jsonb, ${schedule}, ${next}::timestamptz,
            ${principal.tokenId})
          returning *`,
    );
    await recordAudit(tx, actor(principal), 'sync.created', 'sync', id, {
      segmentId: input.segmentId,
      destinationId: input.destinationId,
    });
    return row!;
  });
  return toSync(created);
}

export async function getSync(db: Db, id: string): Promise<Sync> {
  const [row] = await rows<Row>(db, sql`select * from syncs where id = ${id}`);
  if (!row) throw notFound('Sync', id);
  return toSync(row);
}

export async function listSyncs(
  db: Db,
  filter: { segmentId?: string; destinationId?: string } = {},
): Promise<Sync[]> {
  const found = await rows<Row>(
    db,
    sql`select * from syncs
        where (${filter.segmentId ?? null}::uuid is null or segment_id = ${filter.segmentId ?? null}::uuid)
          and (${filter.destinationId ?? null}::uuid is null
               or destination_id = ${filter.destinationId ?? null}::uuid)
        order by created_at desc, id`,
  );
  return found.map(toSync);
}

export async function updateSync(
  db: Db,
  deps: SyncDeps,
  principal: Principal,
  id: string,
  input: UpdateSync,
  options: ManagedWrite = {},
): Promise<Sync> {
  const current = await getSync(db, id);
  refuseManaged('sync', current.managedBy, options);
  if (input.mapping) await checkMapping(db, deps, current.destinationId, input.mapping);
  const schedule = input.schedule === undefined ? current.schedule : input.schedule || null;
  const next =
    input.schedule === undefined
      ? (current.nextRunAt?.toISOString() ?? null)
      : schedule
        ? nextScheduledRun(schedule, new Date()).toISOString()
        : null;
  const [row] = await rows<Row>(
    db,
    sql`update syncs set mode = ${input.mode ?? current.mode},
          mapping = ${JSON.stringify(input.mapping ?? current.mapping)}::jsonb,
          schedule = ${schedule}, next_run_at = ${next}::timestamptz, updated_at = now()
        where id = ${id} returning *`,
  );
  await recordAudit(db, actor(principal), 'sync.updated', 'sync', id, {
    fields: Object.keys(input).sort(),
  });
  return toSync(row!);
}

/** Turn auto-sync on or off (admins only), under the row locks the segment's editors take. */
export async function setAutoSync(
  db: Db,
  principal: Principal,
  id: string,
  on: boolean,
  options: ManagedWrite = {},
): Promise<Sync> {
  if (principal.role !== 'admin') {
    throw new HubError(
      403,
      'forbidden',
      'Forbidden',
      'Only an admin may turn auto-sync on or off.',
    );
  }
  const current = await getSync(db, id);
  refuseManaged('sync', current.managedBy, options);
  const row = await withRetry(db, async (tx) => {
    // Every segment the synced one is made of: an edit of any of them takes the same locks.
    await lockSegments(tx, await referencedSegments(tx, current.segmentId));
    const [updated] = await rows<Row>(
      tx,
      sql`update syncs set auto_sync = ${on}, updated_at = now() where id = ${id} returning *`,
    );
    if (!updated) throw notFound('Sync', id);
    await recordAudit(
      tx,
      actor(principal),
      on ? 'sync.auto_sync_on' : 'sync.auto_sync_off',
      'sync',
      id,
      {
        segmentId: current.segmentId,
      },
    );
    return updated;
  });
  return toSync(row);
}

/** Delete a sync, its ledger and history. The destination keeps what was sent. */
export async function deleteSync(
  db: Db,
  principal: Principal,
  id: string,
  options: ManagedWrite = {},
): Promise<void> {
  await withRetry(db, async (tx) => {
    const [row] = await rows<{
      auto_sync: boolean;
      lease_run_id: string | null;
      managed_by: string | null;
    }>(tx, sql`select auto_sync, lease_run_id, managed_by from syncs where id = ${id} for update`);
    if (!row) throw notFound('Sync', id);
    refuseManaged('sync', row.managed_by, options);
    if (row.auto_sync) {
      throw new HubError(
        409,
        'sync-auto',
        'Auto-sync is on',
        'Turn auto-sync off before deleting the sync.',
      );
    }
    for (const table of ['sync_state', 'sync_row_errors', 'sync_runs']) {
      await tx.execute(sql`delete from ${sql.identifier(table)} where sync_id = ${id}`);
    }
    await tx.execute(sql`delete from syncs where id = ${id}`);
    await recordAudit(tx, actor(principal), 'sync.deleted', 'sync', id, {});
  });
}

/**
 * Mark every row the destination rejected to be sent again on the next run, even unchanged
 * (e.g. once the contacts were fixed at the destination); audit-logged. Answers how many rows
 * were marked; the caller requests the run.
 *
 * @example
 * const marked = await retryRejected(db, principal, syncId); // then run the sync
 */
export async function retryRejected(db: Db, principal: Principal, id: string): Promise<number> {
  return mark(db, principal, id, 'rejected', 'sync.retry_rejected');
}

/**
 * Mark every row to be sent again on the next run (admins only), for a destination emptied by
 * hand: what it held goes again as updates, rejected rows as adds, and the ledger still knows
 * which rows the hub added (removal touches only those). Audit-logged; answers how many rows
 * were marked.
 *
 * @example
 * const marked = await resync(db, admin, syncId); // then run the sync
 */
export async function resync(db: Db, principal: Principal, id: string): Promise<number> {
  if (principal.role !== 'admin') {
    throw new HubError(403, 'forbidden', 'Forbidden', 'Only an admin may resend a whole sync.');
  }
  return mark(db, principal, id, 'all', 'sync.resync');
}

async function mark(
  db: Db,
  principal: Principal,
  id: string,
  which: 'rejected' | 'all',
  action: string,
): Promise<number> {
  return withRetry(db, async (tx) => {
    const [row] = await rows<{ id: string }>(
      tx,
      sql`select id from syncs where id = ${id} for update`,
    );
    if (!row) throw notFound('Sync', id);
    const marked = await markForResend(tx, id, which);
    await recordAudit(tx, actor(principal), action, 'sync', id, { marked });
    return marked;
  });
}
