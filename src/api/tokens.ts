import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { Role, createApiToken, listApiTokens, revokeApiToken } from '../auth/credentials.ts';
import type { HubContext } from '../context.ts';
import { actorOf, bearerSecurity, requireRole, rolesNote, type ApiEnv } from './auth.ts';
import { IdParam } from './params.ts';
import { problemResponses, validationHook } from './problem.ts';

export const ApiToken = z
  .object({
    id: z.uuid(),
    name: z.string(),
    role: Role,
    prefix: z.string().openapi({ description: 'The first characters of the token.' }),
    createdAt: z.iso.datetime(),
    lastUsedAt: z.iso.datetime().nullable(),
    revokedAt: z.iso.datetime().nullable(),
  })
  .openapi('ApiToken');
export type ApiToken = z.infer<typeof ApiToken>;

export const CreateApiToken = z
  .object({ name: z.string().trim().min(1).max(100), role: Role })
  .openapi('CreateApiToken');
export type CreateApiToken = z.infer<typeof CreateApiToken>;

export const CreatedApiToken = ApiToken.extend({
  token: z.string().openapi({ description: 'The secret. It is shown here once and never again.' }),
  warning: z.string(),
}).openapi('CreatedApiToken');
export type CreatedApiToken = z.infer<typeof CreatedApiToken>;

export const SECRET_WARNING =
  'Store this secret now: it is not shown again (only its hash is kept).';

const admin = {
  tags: ['API tokens'],
  description: rolesNote('admin'),
  security: bearerSecurity,
  middleware: requireRole('admin'),
};

const create = createRoute({
  ...admin,
  method: 'post',
  path: '/tokens',
  summary: 'Create an API token',
  request: {
    body: { content: { 'application/json': { schema: CreateApiToken } }, required: true },
  },
  responses: {
    201: {
      description: 'The token, with its secret',
      content: { 'application/json': { schema: CreatedApiToken } },
    },
    ...problemResponses(400, 401, 403),
  },
});

const list = createRoute({
  ...admin,
  method: 'get',
  path: '/tokens',
  summary: 'List API tokens (never their secrets)',
  responses: {
    200: {
      description: 'All tokens, newest first, revoked ones included',
      content: { 'application/json': { schema: z.object({ data: z.array(ApiToken) }) } },
    },
    ...problemResponses(401, 403),
  },
});

const revoke = createRoute({
  ...admin,
  method: 'delete',
  path: '/tokens/{id}',
  summary: 'Revoke an API token',
  request: { params: IdParam },
  responses: {
    200: {
      description: 'The revoked token',
      content: { 'application/json': { schema: ApiToken } },
    },
    ...problemResponses(401, 403, 404),
  },
});

/** `/api/tokens`: management API tokens (admin only). */
export function tokenRoutes(ctx: HubContext) {
  return new OpenAPIHono<ApiEnv>({ defaultHook: validationHook })
    .openapi(create, async (c) => {
      const { token, summary } = await createApiToken(
        ctx.db,
        c.req.valid('json'),
        actorOf(c.get('principal')),
      );
      return c.json({ ...summary, token, warning: SECRET_WARNING }, 201);
    })
    .openapi(list, async (c) => c.json({ data: await listApiTokens(ctx.db) }, 200))
    .openapi(revoke, async (c) => {
      const { id } = c.req.valid('param');
      return c.json(await revokeApiToken(ctx.db, id, actorOf(c.get('principal'))), 200);
    });
}
