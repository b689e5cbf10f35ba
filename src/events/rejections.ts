import type { WriteKeyPrincipal } from '../auth/credentials.ts';
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
