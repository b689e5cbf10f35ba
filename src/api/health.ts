import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { sql } from 'drizzle-orm';
import type { HubContext } from '../context.ts';
import type { Db } from '../db/index.ts';
import { HubError } from '../errors.ts';
import { problemResponses, validationHook } from './problem.ts';

export const Health = z.object({ status: z.literal('ok') }).openapi('Health');
export type Health = z.infer<typeof Health>;

/** Throws a 503 when the database does not answer. */
export async function checkDatabase(db: Db): Promise<void> {
  try {
    await db.execute(sql`select 1`);
  } catch (error) {
    const unavailable = new HubError(
      503,
      'unavailable',
      'Service Unavailable',
      'The database is not reachable.',
    );
    // Kept as the cause so the error handler logs why (redacted).
    throw Object.assign(unavailable, { cause: error });
  }
}

const route = createRoute({
  tags: ['Health'],
  security: [],
  method: 'get',
  path: '/health',
  summary: 'Liveness and database reachability',
  description: 'No authentication.',
  responses: {
    200: { description: 'Up', content: { 'application/json': { schema: Health } } },
    ...problemResponses(503),
  },
});

/** `/health`, for load balancers: no credentials, no data. */
export function healthRoutes(ctx: HubContext) {
  return new OpenAPIHono({ defaultHook: validationHook }).openapi(route, async (c) => {
    await checkDatabase(ctx.db);
    return c.json({ status: 'ok' as const }, 200);
  });
}
