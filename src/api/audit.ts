import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { and, desc, eq, lt } from 'drizzle-orm';
import type { HubContext } from '../context.ts';
import type { Db } from '../db/index.ts';
import { auditLog } from '../db/schema.ts';
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
