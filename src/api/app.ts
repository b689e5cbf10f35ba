import { OpenAPIHono } from '@hono/zod-openapi';
import type { HubContext } from '../context.ts';
import { auditRoutes } from './audit.ts';
import { requireToken, type ApiEnv } from './auth.ts';
import { destinationRoutes } from './destinations.ts';
import { docsPageRoutes } from './docs-page.ts';
import { healthRoutes } from './health.ts';
import { openApiRoutes, registerSecuritySchemes, registerTrackingDocs } from './openapi.ts';
import { notFoundHandler, problemHandler, validationHook } from './problem.ts';
import { profileRoutes } from './profiles.ts';
import { rejectionRoutes } from './rejections.ts';
import { segmentRoutes } from './segments.ts';
import { sourceRoutes } from './sources.ts';
import { syncRoutes } from './syncs.ts';
import { tokenRoutes } from './tokens.ts';
import { trackingRoutes } from './tracking.ts';
import { writeKeyRoutes } from './write-keys.ts';

/**
 * The hub's HTTP app: `/health`, the tracking API at `/v1`, the management API at `/api`.
 *
 * @example
 * const app = createApp({ db, config, log });
 * const res = await app.request('/api/profiles', { headers: { Authorization: `Bearer ${token}` } });
 */
export function createApp(ctx: HubContext): OpenAPIHono<ApiEnv> {
  const app = new OpenAPIHono<ApiEnv>({ defaultHook: validationHook });
  app.onError(problemHandler(ctx.log));
  app.notFound(notFoundHandler);
  registerSecuritySchemes(app.openAPIRegistry);

  app.route('/', healthRoutes(ctx));
  app.route('/v1', trackingRoutes(ctx));
  registerTrackingDocs(app.openAPIRegistry);

  // Handlers run in the order they are added, so the docs page, mounted before the token
  // check, answers without one; every other /api route is behind it.
  app.route('/api', docsPageRoutes());
  app.use('/api/*', requireToken(ctx));
  app.route('/api', tokenRoutes(ctx));
  app.route('/api', writeKeyRoutes(ctx));
  app.route('/api', profileRoutes(ctx));
  app.route('/api', rejectionRoutes(ctx));
  app.route('/api', segmentRoutes(ctx));
  app.route('/api', destinationRoutes(ctx));
  app.route('/api', syncRoutes(ctx));
  app.route('/api', sourceRoutes(ctx));
  app.route('/api', auditRoutes(ctx));
  app.route('/api', openApiRoutes(app));
  return app;
}
