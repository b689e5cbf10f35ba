/** The OpenAPI 3.1 document, generated from the same zod schemas the routes validate with. */
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import {
  AliasMessage,
  GroupMessage,
  IdentifyMessage,
  Message,
  PageMessage,
  ScreenMessage,
  TrackMessage,
} from '../events/message.ts';
import pkg from '../../package.json' with { type: 'json' };
import { bearerSecurity, rolesNote, type ApiEnv } from './auth.ts';
import { ProblemFieldError, problemResponses, validationHook } from './problem.ts';

type Registry = OpenAPIHono['openAPIRegistry'];

export function registerSecuritySchemes(registry: Registry) {
  registry.registerComponent('securitySchemes', 'bearer', {
    type: 'http',
    scheme: 'bearer',
    description: 'A management API token: `Authorization: Bearer aht_…`.',
  });
  registry.registerComponent('securitySchemes', 'basic', {
    type: 'http',
    scheme: 'basic',
    description:
      'A tracking write key as the username and an empty password, as Segment libraries send it.',
  });
}

const Json = z.record(z.string(), z.unknown());

export const TrackingAccepted = z.object({ success: z.literal(true) }).openapi('TrackingAccepted');
export type TrackingAccepted = z.infer<typeof TrackingAccepted>;

export const TrackingBatchAccepted = z
  .object({
    success: z.literal(true),
    accepted: z.number().int(),
    duplicates: z
      .number()
      .int()
      .openapi({ description: 'Messages already stored (same messageId).' }),
    rejected: z
      .array(
        z.object({
          index: z.number().int().nullable(),
          messageId: z.string().nullable(),
          errors: z.array(ProblemFieldError),
        }),
      )
      .openapi({ description: 'Invalid messages, also recorded in /api/ingest/rejections.' }),
  })
  .openapi('TrackingBatchAccepted');
export type TrackingBatchAccepted = z.infer<typeof TrackingBatchAccepted>;

export const TrackingBatch = z
  .object({
    batch: z.array(Message).min(1),
    context: Json.optional().openapi({ description: 'Merged into each message’s context.' }),
    integrations: Json.optional(),
    sentAt: z.string().optional(),
  })
  .openapi('TrackingBatch');
export type TrackingBatch = z.infer<typeof TrackingBatch>;

const TRACKING = [
  ['track', TrackMessage, 'TrackMessage', 'Record an action the user performed'],
  ['identify', IdentifyMessage, 'IdentifyMessage', 'Tie a user to their traits'],
  ['page', PageMessage, 'PageMessage', 'Record a page view'],
  ['screen', ScreenMessage, 'ScreenMessage', 'Record a screen view in an app'],
  ['alias', AliasMessage, 'AliasMessage', 'Link a previous id to a user id'],
  ['group', GroupMessage, 'GroupMessage', 'Associate a user with a group'],
] as const;

/**
 * Document the Segment-compatible tracking API served at `/v1` (by `tracking.ts`, a plain
 * hono router). https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/
 */
export function registerTrackingDocs(registry: Registry) {
  const operation = (path: string, summary: string, body: z.ZodType, accepted: z.ZodType) =>
    registry.registerPath({
      method: 'post',
      path,
      tags: ['Tracking'],
      summary,
      description:
        'Authenticated with a write key as the HTTP Basic username (or `writeKey` in the body). Body per the Segment HTTP tracking spec, gzip allowed.',
      security: [{ basic: [] }],
      request: { body: { required: true, content: { 'application/json': { schema: body } } } },
      responses: {
        200: { description: 'Stored', content: { 'application/json': { schema: accepted } } },
        ...problemResponses(400, 401, 413, 503),
      },
    });
  for (const [type, schema, name, summary] of TRACKING) {
    // The endpoint implies the type, so a single message may leave it out.
    const optionalType = { type: z.literal(type).optional() };
    const body = (schema as z.ZodObject).extend(optionalType).openapi(name);
    operation(`/v1/${type}`, summary, body, TrackingAccepted);
  }
  const batchSummary = 'Send several messages of any type at once (up to 500 KB)';
  operation('/v1/batch', batchSummary, TrackingBatch, TrackingBatchAccepted);
  operation(
    '/v1/import',
    `${batchSummary}; Segment's historical import`,
    TrackingBatch,
    TrackingBatchAccepted,
  );
}

/** The document for an app whose routes are all mounted. */
export function openApiDocument(app: OpenAPIHono<ApiEnv>) {
  return app.getOpenAPI31Document({
    openapi: '3.1.0',
    info: {
      title: 'audiencehub',
      version: pkg.version,
      description:
        'Management API (`/api`, bearer tokens with roles admin, marketer, integrator) and the Segment-compatible tracking API (`/v1`, write keys). Errors are RFC 9457 problem+json.',
    },
  });
}

const route = createRoute({
  tags: ['Documentation'],
  security: bearerSecurity,
  method: 'get',
  path: '/openapi.json',
  summary: 'This OpenAPI document',
  description: rolesNote('admin', 'marketer', 'integrator'),
  responses: {
    200: {
      description: 'OpenAPI 3.1',
      content: { 'application/json': { schema: z.record(z.string(), z.unknown()) } },
    },
    ...problemResponses(401),
  },
});

/** `/api/openapi.json`, describing `root` once everything is mounted on it. */
export function openApiRoutes(root: OpenAPIHono<ApiEnv>) {
  let document: ReturnType<typeof openApiDocument> | undefined;
  return new OpenAPIHono<ApiEnv>({ defaultHook: validationHook }).openapi(route, (c) =>
    c.json((document ??= openApiDocument(root)) as unknown as Record<string, unknown>, 200),
  );
}
