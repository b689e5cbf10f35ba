import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { desc, lt } from 'drizzle-orm';
import type { HubContext } from '../context.ts';
import type { Db } from '../db/index.ts';
import { ingestRejections } from '../db/schema.ts';
import { bearerSecurity, requireRole, rolesNote, type ApiEnv } from './auth.ts';
import { Limit, cursorOf, pageOf, toPage } from './params.ts';
import { ProblemFieldError, problemResponses, validationHook } from './problem.ts';

export const IngestRejection = z
  .object({
    id: z.number().int(),
    writeKeyId: z.uuid().nullable(),
    messageId: z.string().nullable(),
    batchIndex: z
      .number()
      .int()
      .nullable()
      .openapi({ description: 'Its position in a /v1/batch request.' }),
    reason: z.string(),
    errors: z.array(ProblemFieldError),
    receivedAt: z.iso.datetime(),
  })
  .openapi('IngestRejection');
export type IngestRejection = z.infer<typeof IngestRejection>;

export const IngestRejectionPage = pageOf(IngestRejection, 'IngestRejectionPage');
export type IngestRejectionPage = z.infer<typeof IngestRejectionPage>;

export const RejectionQuery = z.object({ limit: Limit, cursor: cursorOf(z.number().int()) });
export type RejectionQuery = z.infer<typeof RejectionQuery>;

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

const list = createRoute({
  tags: ['Tracking'],
  security: bearerSecurity,
  middleware: requireRole('admin', 'integrator'),
  method: 'get',
  path: '/ingest/rejections',
  summary: 'Messages the tracking API rejected',
  description: `${rolesNote('admin', 'integrator')} Newest first, with the reason and the failing fields; message content is not kept.`,
  request: { query: RejectionQuery },
  responses: {
    200: {
      description: 'A page of rejections',
      content: { 'application/json': { schema: IngestRejectionPage } },
    },
    ...problemResponses(400, 401, 403),
  },
});

/** `/api/ingest/rejections`: what the tracking API refused, and why. */
export function rejectionRoutes(ctx: HubContext) {
  return new OpenAPIHono<ApiEnv>({ defaultHook: validationHook }).openapi(list, async (c) => {
    const { limit, cursor } = c.req.valid('query');
    return c.json(toPage(await listIngestRejections(ctx.db, { limit, after: cursor })), 200);
  });
}
