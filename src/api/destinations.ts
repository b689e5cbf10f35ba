import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import type { HubContext } from '../context.ts';
import {
  CreateDestination,
  UpdateDestination,
  createDestination,
  deleteDestination,
  destinationFields,
  getDestination,
  listDestinations,
  updateDestination,
} from '../destinations/store.ts';
import { HubError } from '../errors.ts';
import { secretKeys, type DestinationPlugin } from '../sdk/destination.ts';
import type { SyncDeps } from '../sync/engine.ts';
import { configJsonSchema, jsonResponse as json } from './config-schema.ts';
import { bearerSecurity, requireRole, rolesNote, type ApiEnv } from './auth.ts';
import { IdParam } from './params.ts';
import { inBody, problemResponses, validationHook } from './problem.ts';

const Time = z.iso.datetime();

export const DestinationPluginInfo = z
  .object({
    name: z.string().openapi({ example: 'mailchimp', description: 'Pass as `plugin`.' }),
    title: z.string(),
    description: z.string().nullable(),
    config: z.record(z.string(), z.unknown()).openapi({
      description:
        'The JSON Schema of `config` (as sent: defaults optional). Secret fields are `writeOnly` (strings also `format: password`): stored encrypted, never returned.',
    }),
    secrets: z.array(z.string()).openapi({ description: 'The names of the secret fields.' }),
    limits: z
      .object({
        batchSize: z.number().int(),
        concurrency: z.number().int(),
        callsPerSecond: z.number().optional(),
      })
      .openapi({ description: 'What the destination takes at once; the engine keeps to it.' }),
  })
  .openapi('DestinationPlugin');
export type DestinationPluginInfo = z.infer<typeof DestinationPluginInfo>;

export const Destination = z
  .object({
    id: z.uuid(),
    name: z.string(),
    plugin: z.string(),
    config: z
      .record(z.string(), z.unknown())
      .openapi({ description: 'The configuration without its secret fields.' }),
    secrets: z
      .array(z.string())
      .openapi({ description: 'Which secret fields are set; their values are never shown.' }),
    createdAt: Time,
    updatedAt: Time,
    managedBy: z.string().nullable().openapi({
      description:
        'The config-as-code key when `audiencehub apply` manages the destination: the API then refuses to change or delete it (409 `managed-by-config`).',
    }),
  })
  .openapi('Destination');
export type Destination = z.infer<typeof Destination>;

export const DestinationField = z
  .object({
    key: z.string().openapi({ example: 'email', description: 'What a mapping names in `to`.' }),
    label: z.string(),
    type: z.enum(['string', 'number', 'boolean', 'date']),
    required: z.boolean().optional().openapi({ description: 'Every sync must map it.' }),
    identifier: z
      .boolean()
      .optional()
      .openapi({ description: 'It identifies the row at the destination.' }),
  })
  .openapi('DestinationField');
export type DestinationField = z.infer<typeof DestinationField>;

export const DestinationFields = z
  .object({
    data: z.array(DestinationField).openapi({
      description: 'The fields rows may carry; an empty list means any field name.',
    }),
    acceptsNewFields: z.boolean().openapi({
      description: 'Mappings may also name fields not listed: the plugin creates them.',
    }),
  })
  .openapi('DestinationFields');
export type DestinationFields = z.infer<typeof DestinationFields>;

const tags = ['Destinations'];
/** Marketers pick destinations for their syncs, so they read them; secrets never leave anyway. */
const READ = ['admin', 'marketer'] as const;
const reader = { tags, security: bearerSecurity, middleware: requireRole(...READ) };
const admin = { tags, security: bearerSecurity, middleware: requireRole('admin') };

const plugins = createRoute({
  ...reader,
  method: 'get',
  path: '/destination-plugins',
  summary: 'Installed destination plugins',
  description: `${rolesNote(...READ)} Each plugin's name, title, configuration schema and limits: what a destination can be made of.`,
  responses: {
    200: json(z.object({ data: z.array(DestinationPluginInfo) }), 'Every installed plugin'),
    ...problemResponses(401, 403, 503),
  },
});

const list = createRoute({
  ...reader,
  method: 'get',
  path: '/destinations',
  summary: 'List destinations',
  description: `${rolesNote(...READ)} Every destination by name, without secret values.`,
  responses: {
    200: json(z.object({ data: z.array(Destination) }), 'Every destination'),
    ...problemResponses(401, 403, 503),
  },
});

const create = createRoute({
  ...admin,
  method: 'post',
  path: '/destinations',
  summary: 'Create a destination',
  description: `${rolesNote('admin')} The configuration must fit the plugin's schema (400 naming \`body.config.<field>\`) and pass the plugin's check (422 \`destination-check-failed\`) before it is saved. Secret fields are stored encrypted and never returned. Names are unique in any case (409 \`destination-name-taken\`). Audit-logged.`,
  request: {
    body: { content: { 'application/json': { schema: CreateDestination } }, required: true },
  },
  responses: {
    201: json(Destination, 'The destination'),
    ...problemResponses(400, 401, 403, 409, 422, 503),
  },
});

const read = createRoute({
  ...reader,
  method: 'get',
  path: '/destinations/{id}',
  summary: 'A destination',
  description: `${rolesNote(...READ)} Secret values are never shown; \`secrets\` says which are set.`,
  request: { params: IdParam },
  responses: {
    200: json(Destination, 'The destination'),
    ...problemResponses(401, 403, 404, 503),
  },
});

const fields = createRoute({
  ...reader,
  method: 'get',
  path: '/destinations/{id}/fields',
  summary: "A destination's fields",
  description: `${rolesNote(...READ)} What a sync's mapping may name (\`to\`), asked of the plugin with the stored configuration. When the plugin cannot answer: 422 \`destination-fields-failed\` with its reason (refused credentials, a deleted list), 503 \`destination-unavailable\` while the service is busy or out of reach, 502 \`destination-fields-failed\` for anything else, 409 \`destination-misconfigured\` when the plugin is gone or the stored configuration no longer fits it. Secret values never appear in an answer.`,
  request: { params: IdParam },
  responses: {
    200: json(DestinationFields, "The destination's fields"),
    ...problemResponses(401, 403, 404, 409, 422, 502, 503),
  },
});

const update = createRoute({
  ...admin,
  method: 'patch',
  path: '/destinations/{id}',
  summary: 'Change a destination',
  description: `${rolesNote('admin')} \`config\` holds the fields to change; a secret field left out keeps its value. A changed configuration is checked again by the plugin (422 when it refuses). Audit-logged.`,
  request: {
    params: IdParam,
    body: { content: { 'application/json': { schema: UpdateDestination } }, required: true },
  },
  responses: {
    200: json(Destination, 'The destination'),
    ...problemResponses(400, 401, 403, 404, 422, 503),
  },
});

const remove = createRoute({
  ...admin,
  method: 'delete',
  path: '/destinations/{id}',
  summary: 'Delete a destination',
  description: `${rolesNote('admin')} Refused (409 \`destination-in-use\`, listing them in \`syncs\`) while syncs use it. What was sent stays at the destination. Audit-logged.`,
  request: { params: IdParam },
  responses: {
    204: { description: 'Deleted' },
    ...problemResponses(401, 403, 404, 409, 503),
  },
});

/** The sync deps of the hub, or a 503 when it was started without them. */
export function syncDepsOf(ctx: HubContext): SyncDeps {
  if (ctx.sync) return ctx.sync;
  throw new HubError(
    503,
    'destinations-unavailable',
    'Destinations unavailable',
    'This hub was started without destination plugins and a secret key, so destinations and syncs are unavailable.',
  );
}

/** A plugin as the API describes it: its config as JSON Schema, secret fields write-only. */
function describePlugin(plugin: DestinationPlugin): DestinationPluginInfo {
  return {
    name: plugin.name,
    title: plugin.title,
    description: plugin.description ?? null,
    config: configJsonSchema(plugin.config),
    secrets: secretKeys(plugin.config),
    limits: { ...plugin.limits },
  };
}

/** `/api/destination-plugins` and `/api/destinations`: configured plugin instances. */
export function destinationRoutes(ctx: HubContext) {
  return new OpenAPIHono<ApiEnv>({ defaultHook: validationHook })
    .openapi(plugins, (c) =>
      c.json({ data: syncDepsOf(ctx).registry.list().map(describePlugin) }, 200),
    )
    .openapi(list, async (c) =>
      c.json({ data: await listDestinations(ctx.db, syncDepsOf(ctx)) }, 200),
    )
    .openapi(create, async (c) => {
      const destination = await inBody(
        createDestination(ctx.db, syncDepsOf(ctx), c.get('principal'), c.req.valid('json')),
      );
      return c.json(destination, 201);
    })
    .openapi(read, async (c) =>
      c.json(await getDestination(ctx.db, syncDepsOf(ctx), c.req.valid('param').id), 200),
    )
    .openapi(fields, async (c) => {
      const found = await destinationFields(ctx.db, syncDepsOf(ctx), c.req.valid('param').id);
      return c.json({ data: found.fields, acceptsNewFields: found.acceptsNewFields }, 200);
    })
    .openapi(update, async (c) => {
      const destination = await inBody(
        updateDestination(
          ctx.db,
          syncDepsOf(ctx),
          c.get('principal'),
          c.req.valid('param').id,
          c.req.valid('json'),
        ),
      );
      return c.json(destination, 200);
    })
    .openapi(remove, async (c) => {
      await deleteDestination(ctx.db, c.get('principal'), c.req.valid('param').id);
      return c.body(null, 204);
    });
}
