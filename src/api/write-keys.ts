import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { createWriteKey, listWriteKeys, revokeWriteKey } from '../auth/credentials.ts';
import type { HubContext } from '../context.ts';
import { actorOf, bearerSecurity, requireRole, rolesNote, type ApiEnv } from './auth.ts';
import { IdParam } from './params.ts';
import { problemResponses, validationHook } from './problem.ts';
import { SECRET_WARNING } from './tokens.ts';

export const WriteKey = z
  .object({
    id: z.uuid(),
    name: z.string(),
    source: z.string().openapi({ description: 'The source its messages are recorded under.' }),
    prefix: z.string().openapi({ description: 'The first characters of the key.' }),
    createdAt: z.iso.datetime(),
    revokedAt: z.iso.datetime().nullable(),
  })
  .openapi('WriteKey');
export type WriteKey = z.infer<typeof WriteKey>;

export const CreateWriteKey = z
  .object({
    name: z.string().trim().min(1).max(100),
    // Source names appear in comma-separated settings (AUDIENCEHUB_TRAIT_PRIORITY).
    source: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/, 'letters, digits, _ . : - (at most 64)')
      .default('tracking')
      .openapi({ description: 'Defaults to `tracking`.' }),
  })
  .openapi('CreateWriteKey');
export type CreateWriteKey = z.infer<typeof CreateWriteKey>;

export const CreatedWriteKey = WriteKey.extend({
  writeKey: z.string().openapi({
    description: 'The secret, used as the HTTP Basic username. Shown here once and never again.',
  }),
  warning: z.string(),
}).openapi('CreatedWriteKey');
export type CreatedWriteKey = z.infer<typeof CreatedWriteKey>;

const admin = {
  tags: ['Write keys'],
  description: rolesNote('admin'),
  security: bearerSecurity,
  middleware: requireRole('admin'),
};

const create = createRoute({
  ...admin,
  method: 'post',
  path: '/write-keys',
  summary: 'Create a tracking write key',
  request: {
    body: { content: { 'application/json': { schema: CreateWriteKey } }, required: true },
  },
  responses: {
    201: {
      description: 'The write key, with its secret',
      content: { 'application/json': { schema: CreatedWriteKey } },
    },
    ...problemResponses(400, 401, 403),
  },
});

const list = createRoute({
  ...admin,
  method: 'get',
  path: '/write-keys',
  summary: 'List write keys (never their secrets)',
  responses: {
    200: {
      description: 'All write keys, newest first, revoked ones included',
      content: { 'application/json': { schema: z.object({ data: z.array(WriteKey) }) } },
    },
    ...problemResponses(401, 403),
  },
});

const revoke = createRoute({
  ...admin,
  method: 'delete',
  path: '/write-keys/{id}',
  summary: 'Revoke a write key',
  request: { params: IdParam },
  responses: {
    200: {
      description: 'The revoked write key',
      content: { 'application/json': { schema: WriteKey } },
    },
    ...problemResponses(401, 403, 404),
  },
});

/** `/api/write-keys`: the tracking API's credentials (admin only). */
export function writeKeyRoutes(ctx: HubContext) {
  return new OpenAPIHono<ApiEnv>({ defaultHook: validationHook })
    .openapi(create, async (c) => {
      const { writeKey, summary } = await createWriteKey(
        ctx.db,
        c.req.valid('json'),
        actorOf(c.get('principal')),
      );
      return c.json({ ...summary, writeKey, warning: SECRET_WARNING }, 201);
    })
    .openapi(list, async (c) => c.json({ data: await listWriteKeys(ctx.db) }, 200))
    .openapi(revoke, async (c) => {
      const { id } = c.req.valid('param');
      return c.json(await revokeWriteKey(ctx.db, id, actorOf(c.get('principal'))), 200);
    });
}
