import type { WriteKeyPrincipal } from '../auth/credentials.ts';
import { desc, lt } from 'drizzle-orm';
import type { Db } from '../db/index.ts';
import { ingestRejections } from '../db/schema.ts';
import type { FieldError } from '../errors.ts';

/** A message the tracking API refused: where it was, its id, and why. Never its content. */
export interface Rejection {
  index: number | null;
  messageId: string | null;
  reason: string;
  errors: FieldError[];
}

/** Record refused messages so an integrator can see what was dropped and why. */
export async function recordRejections(
  db: Db,
  principal: WriteKeyPrincipal,
  rejections: Rejection[],
): Promise<void> {
  if (rejections.length === 0) return;
  await db.insert(ingestRejections).values(
    rejections.map((r) => ({
      writeKeyId: principal.writeKeyId,
      messageId: r.messageId,
      batchIndex: r.index,
      reason: r.reason.slice(0, 2000),
      errors: r.errors.slice(0, 50),
    })),
  );
}

/**
 * Messages the tracking API refused, newest first. Rows are only ever appended, so the
 * bigserial id orders them as received.
 *
 * @example
 * const { data, next } = await listIngestRejections(db, { limit: 50 });
 */
export async function listIngestRejections(
  db: Db,
  input: { limit: number; after?: number },
): Promise<{ data: IngestRejectionRow[]; next: number | null }> {
  const rows = await db
    .select()
    .from(ingestRejections)
    .where(input.after === undefined ? undefined : lt(ingestRejections.id, input.after))
    .orderBy(desc(ingestRejections.id))
    .limit(input.limit + 1);
  const data = rows.slice(0, input.limit);
  return { data, next: rows.length > input.limit ? data[data.length - 1]!.id : null };
}
export type IngestRejectionRow = typeof ingestRejections.$inferSelect;
