import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import type { HubContext } from '../context.ts';
import { listIngestRejections } from '../events/rejections.ts';
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
