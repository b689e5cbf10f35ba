import { and, desc, eq, lt } from 'drizzle-orm';
import type { Db } from './db/index.ts';
import { auditLog } from './db/schema.ts';

/** Who acted: an API token (by id and name), or the hub itself. */
export interface Actor {
  id: string | null;
  name: string;
}

export const SYSTEM: Actor = { id: null, name: 'system' };

/**
 * Append to the audit log. `details` must hold no personal data and no secrets.
 *
 * @example
 * await recordAudit(tx, actor, 'write_key.revoked', 'write_key', id);
 */
export async function recordAudit(
  db: Db,
  actor: Actor,
  action: string,
  subjectType: string,
  subjectId: string | null,
  details: Record<string, unknown> = {},
): Promise<void> {
  await db.insert(auditLog).values({
    actorId: actor.id,
    actorName: actor.name,
    action,
    subjectType,
    subjectId,
    details,
  });
}

export type AuditRow = typeof auditLog.$inferSelect;

/**
 * The audit log, newest first (the bigserial id orders entries as written).
 *
 * @example
 * const { data } = await listAuditLog(db, { limit: 20, action: 'profile.erased' });
 */
export async function listAuditLog(
  db: Db,
  input: { limit: number; after?: number; action?: string; subjectId?: string },
): Promise<{ data: AuditRow[]; next: number | null }> {
  const rows = await db
    .select()
    .from(auditLog)
    .where(
      and(
        input.after === undefined ? undefined : lt(auditLog.id, input.after),
        input.action === undefined ? undefined : eq(auditLog.action, input.action),
        input.subjectId === undefined ? undefined : eq(auditLog.subjectId, input.subjectId),
      ),
    )
    .orderBy(desc(auditLog.id))
    .limit(input.limit + 1);
  const data = rows.slice(0, input.limit);
  return { data, next: rows.length > input.limit ? data[data.length - 1]!.id : null };
}
