import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import type { HubContext } from '../context.ts';
import { listAuditLog } from '../audit.ts';
import { bearerSecurity, requireRole, rolesNote, type ApiEnv } from './auth.ts';
import { Limit, cursorOf, pageOf, toPage } from './params.ts';
import { problemResponses, validationHook } from './problem.ts';

export const AuditEntry = z
  .object({
    id: z.number().int(),
    at: z.iso.datetime(),
    actorId: z.uuid().nullable().openapi({ description: 'The API token that acted, if any.' }),
    actorName: z.string().nullable(),
    action: z.string().openapi({ example: 'profile.erased' }),
    subjectType: z.string(),
    subjectId: z.string().nullable(),
    details: z.record(z.string(), z.unknown()),
  })
  .openapi('AuditEntry');
export type AuditEntry = z.infer<typeof AuditEntry>;

export const AuditPage = pageOf(AuditEntry, 'AuditPage');
export type AuditPage = z.infer<typeof AuditPage>;

export const AuditQuery = z.object({
  limit: Limit,
  cursor: cursorOf(z.number().int()),
  action: z.string().max(100).optional().openapi({ example: 'api_token.revoked' }),
  subjectId: z.string().max(200).optional(),
});
export type AuditQuery = z.infer<typeof AuditQuery>;

const list = createRoute({
  tags: ['Audit'],
  security: bearerSecurity,
  middleware: requireRole('admin'),
  method: 'get',
  path: '/audit',
  summary: 'The audit log',
  description: `${rolesNote('admin')} Who did what, newest first; it holds no personal data.`,
  request: { query: AuditQuery },
  responses: {
    200: {
      description: 'A page of entries',
      content: { 'application/json': { schema: AuditPage } },
    },
    ...problemResponses(400, 401, 403),
  },
});

/** `/api/audit`: who did what. */
export function auditRoutes(ctx: HubContext) {
  return new OpenAPIHono<ApiEnv>({ defaultHook: validationHook }).openapi(list, async (c) => {
    const { cursor, ...filters } = c.req.valid('query');
    return c.json(toPage(await listAuditLog(ctx.db, { ...filters, after: cursor })), 200);
  });
}
