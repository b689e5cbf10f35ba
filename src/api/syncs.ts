import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import type { HubContext } from '../context.ts';
import { HubError } from '../errors.ts';
import { ConfigError } from '../sdk/errors.ts';
import { planSync, runSync, type SyncRunSummary } from '../sync/engine.ts';
import { listRunErrors, listSyncErrors, listSyncRuns } from '../sync/history.ts';
import { Mapping } from '../sync/mapping.ts';
import {
  CreateSync,
  SyncMode,
  UpdateSync,
  createSync,
  deleteSync,
  getSync,
  listSyncs,
  resync,
  retryRejected,
  setAutoSync,
  updateSync,
} from '../sync/store.ts';
import { bearerSecurity, requireRole, rolesNote, type ApiEnv } from './auth.ts';
import { syncDepsOf } from './destinations.ts';
import { IdParam, Limit, cursorOf, pageOf, toPage } from './params.ts';
import { inBody, problemResponses, validationHook } from './problem.ts';
import { jsonResponse as json } from './config-schema.ts';

const Time = z.iso.datetime();
const Count = z.number().int();

export const Sync = z
  .object({
    id: z.uuid(),
    segmentId: z.uuid(),
    destinationId: z.uuid(),
    mode: SyncMode.openapi({
      description: '`mirror`: add, update and remove; `upsert`: add and update, never remove.',
    }),
    mapping: Mapping,
    schedule: z.string().nullable().openapi({ description: 'Cron (UTC) of scheduled runs.' }),
    nextRunAt: Time.nullable(),
    autoSync: z.boolean().openapi({
      description:
        'Runs after every membership change and on its schedule; while on, the segment is locked.',
    }),
    createdAt: Time,
    updatedAt: Time,
    managedBy: z.string().nullable().openapi({
      description:
        'The config-as-code key when `audiencehub apply` manages the sync: the API then refuses to change or delete it (409 `managed-by-config`).',
    }),
  })
  .openapi('Sync');
export type Sync = z.infer<typeof Sync>;

export const SyncRun = z
  .object({
    id: Count,
    syncId: z.uuid(),
    trigger: z.string().openapi({ description: '`manual`, `schedule` or `auto`.' }),
    status: z.enum(['running', 'succeeded', 'partial', 'failed']).openapi({
      description: '`partial`: some rows were rejected or left to retry (see the run’s errors).',
    }),
    startedAt: Time,
    finishedAt: Time.nullable(),
    added: Count,
    updated: Count,
    removed: Count,
    rejected: Count,
    retried: Count,
    error: z.string().nullable().openapi({ description: 'Why a failed run failed.' }),
  })
  .openapi('SyncRun');
export type SyncRun = z.infer<typeof SyncRun>;

export const SyncRowError = z
  .object({
    id: Count,
    runId: Count,
    profileId: z.uuid(),
    action: z.enum(['add', 'update', 'remove']),
    status: z.enum(['rejected', 'retry']).openapi({
      description:
        '`rejected`: the destination refused the row (sent again only once its values change); `retry`: not done this time, tried again on the next run.',
    }),
    reason: z.string(),
    at: Time,
  })
  .openapi('SyncRowError');
export type SyncRowError = z.infer<typeof SyncRowError>;

export const SyncRowErrorPage = pageOf(SyncRowError, 'SyncRowErrorPage');

export const SyncPlan = z
  .object({
    add: Count,
    update: Count,
    remove: Count,
    retry: Count.openapi({
      description:
        'Rejected rows marked to be sent again (`retry-rejected`, `resync`), whatever their values.',
    }),
    heldBack: Count.openapi({
      description: 'Rows the destination rejected whose values have not changed: not sent again.',
    }),
    samples: z
      .array(
        z.object({
          action: z.enum(['add', 'update', 'remove']),
          profileId: z.uuid(),
          fields: z.record(z.string(), z.unknown()),
          state: z.record(z.string(), z.unknown()).optional().openapi({
            description:
              'What the plugin kept for the row when the destination last confirmed it (a vendor record id…), handed back with the update.',
          }),
        }),
      )
      .openapi({
        description: 'A few of the rows to add, update or retry, with their mapped values.',
      }),
  })
  .openapi('SyncPlan');
export type SyncPlan = z.infer<typeof SyncPlan>;

export const SyncRunQueued = z
  .object({ syncId: z.uuid(), status: z.literal('queued') })
  .openapi('SyncRunQueued');

export const SyncResend = z
  .object({
    syncId: z.uuid(),
    marked: Count.openapi({ description: 'Rows of the ledger marked to be sent again.' }),
    status: z.enum(['queued', 'finished']).openapi({
      description:
        '`queued`: a worker runs the sync soon; `finished`: it ran in the request (`run`).',
    }),
    run: SyncRun.nullable().openapi({
      description: 'The finished run, when it ran in the request.',
    }),
  })
  .openapi('SyncResend');
export type SyncResend = z.infer<typeof SyncResend>;

export const AutoSyncRequest = z.object({ enabled: z.boolean() }).openapi('AutoSyncRequest');

const RunParams = IdParam.extend({
  runId: z.coerce
    .number()
    .int()
    .min(1)
    .openapi({ param: { name: 'runId', in: 'path' }, example: 42 }),
});

const tags = ['Syncs'];
/** Syncs are the team's: admins and marketers manage any of them; integrators do not see them. */
const ROLES = ['admin', 'marketer'] as const;
const member = { tags, security: bearerSecurity, middleware: requireRole(...ROLES) };
const page = { limit: Limit, cursor: cursorOf(Count) };

const list = createRoute({
  ...member,
  method: 'get',
  path: '/syncs',
  summary: 'List syncs',
  description: `${rolesNote(...ROLES)} Newest first, optionally of one segment or to one destination.`,
  request: {
    query: z.object({
      segmentId: z.uuid().optional().openapi({ description: 'Only syncs of this segment.' }),
      destinationId: z
        .uuid()
        .optional()
        .openapi({ description: 'Only syncs to this destination.' }),
    }),
  },
  responses: {
    200: json(z.object({ data: z.array(Sync) }), 'The syncs'),
    ...problemResponses(400, 401, 403, 503),
  },
});

const create = createRoute({
  ...member,
  method: 'post',
  path: '/syncs',
  summary: 'Create a sync',
  description: `${rolesNote(...ROLES)} Sends a shared segment (any owner's: sharing a segment is what lets others use it) to a destination. A private one answers 409 \`segment-private\`. The mapping's targets must be fields the destination offers, its required ones mapped (400 naming \`body.mapping[i].to\`). Auto-sync starts off: an admin turns it on.`,
  request: { body: { content: { 'application/json': { schema: CreateSync } }, required: true } },
  responses: {
    201: json(Sync, 'The sync'),
    ...problemResponses(400, 401, 403, 409, 503),
  },
});

const read = createRoute({
  ...member,
  method: 'get',
  path: '/syncs/{id}',
  summary: 'A sync',
  description: rolesNote(...ROLES),
  request: { params: IdParam },
  responses: { 200: json(Sync, 'The sync'), ...problemResponses(401, 403, 404, 503) },
});

const update = createRoute({
  ...member,
  method: 'patch',
  path: '/syncs/{id}',
  summary: 'Change a sync',
  description: `${rolesNote(...ROLES)} Mode, mapping or schedule. A new mapping is checked against the destination's fields; changed values are sent as updates on the next run.`,
  request: {
    params: IdParam,
    body: { content: { 'application/json': { schema: UpdateSync } }, required: true },
  },
  responses: {
    200: json(Sync, 'The sync'),
    ...problemResponses(400, 401, 403, 404, 503),
  },
});

const remove = createRoute({
  ...member,
  method: 'delete',
  path: '/syncs/{id}',
  summary: 'Delete a sync',
  description: `${rolesNote(...ROLES)} With its ledger and history; what was sent stays at the destination. Refused (409 \`sync-auto\`) while auto-sync is on.`,
  request: { params: IdParam },
  responses: {
    204: { description: 'Deleted' },
    ...problemResponses(401, 403, 404, 409, 503),
  },
});

const run = createRoute({
  ...member,
  method: 'post',
  path: '/syncs/{id}/run',
  summary: 'Run a sync now',
  description: `${rolesNote(...ROLES)} Sends what changed since the destination last confirmed. When the hub runs a worker, the run is queued (202; a request while one is already queued joins it) and shows under /runs. Otherwise it runs in the request and answers the finished run (200; a failed run is a run with \`status: failed\` and its \`error\`), or 409 \`sync-running\` (with \`runId\`) while another run holds the sync: one run per sync at a time.`,
  request: { params: IdParam },
  responses: {
    200: json(SyncRun, 'The finished run'),
    202: json(SyncRunQueued, 'Queued for a worker'),
    ...problemResponses(401, 403, 404, 409, 503),
  },
});

const plan = createRoute({
  ...member,
  method: 'post',
  path: '/syncs/{id}/plan',
  summary: 'Plan a run (dry run)',
  description: `${rolesNote(...ROLES)} What the next run would add, update and remove, with samples; nothing is sent and nothing changes.`,
  request: {
    params: IdParam,
    query: z.object({
      samples: z.coerce
        .number()
        .int()
        .min(0)
        .max(100)
        .default(10)
        .openapi({ description: 'How many rows to show (0–100).' }),
    }),
  },
  responses: {
    200: json(SyncPlan, 'The plan'),
    ...problemResponses(400, 401, 403, 404, 409, 503),
  },
});

const retry = createRoute({
  ...member,
  method: 'post',
  path: '/syncs/{id}/retry-rejected',
  summary: 'Send rejected rows again',
  description: `${rolesNote(...ROLES)} Marks every row the destination rejected to be sent again, even unchanged (once the cause was fixed at the destination), and runs the sync as \`POST …/run\` does: queued (202) with a worker, else in the request (200, with \`run\`; 409 \`sync-running\` while another run holds the sync, the rows staying marked for it or the next). The run counts the rows it sends again and the destination takes in \`retried\`; refused again, they are \`rejected\`. Answers how many rows were marked. Audit-logged (\`sync.retry_rejected\`).`,
  request: { params: IdParam },
  responses: {
    200: json(SyncResend, 'Marked; the run finished'),
    202: json(SyncResend, 'Marked; the run is queued for a worker'),
    ...problemResponses(401, 403, 404, 409, 503),
  },
});

const resend = createRoute({
  tags,
  security: bearerSecurity,
  middleware: requireRole('admin'),
  method: 'post',
  path: '/syncs/{id}/resync',
  summary: 'Send everything again',
  description: `${rolesNote('admin')} For a destination emptied by hand (a deleted tab, list or tag): the next run sends every current member again, those the destination held as updates (plugins treat an update of a missing record as an upsert), rejected ones as adds, members not sent yet as adds. Nothing is removed that this hub did not add, and removals still touch only rows it added. Runs the sync as \`POST …/run\` does (202 queued, or 200 with \`run\`). Answers how many rows of the ledger were marked. Audit-logged (\`sync.resync\`).`,
  request: { params: IdParam },
  responses: {
    200: json(SyncResend, 'Marked; the run finished'),
    202: json(SyncResend, 'Marked; the run is queued for a worker'),
    ...problemResponses(401, 403, 404, 409, 503),
  },
});

const autoSync = createRoute({
  tags,
  security: bearerSecurity,
  middleware: requireRole('admin'),
  method: 'put',
  path: '/syncs/{id}/auto-sync',
  summary: 'Turn auto-sync on or off',
  description: `${rolesNote('admin')} While on, the sync runs after each membership change and on its schedule, and its segment — and every segment it references — is locked: changing rules, type or visibility, or deleting it, answers 409 \`segment-locked\` naming this sync. The toggle and segment edits are serialised, so they never both succeed. Audit-logged.`,
  request: {
    params: IdParam,
    body: { content: { 'application/json': { schema: AutoSyncRequest } }, required: true },
  },
  responses: {
    200: json(Sync, 'The sync'),
    ...problemResponses(400, 401, 403, 404, 409, 503),
  },
});

const runs = createRoute({
  ...member,
  method: 'get',
  path: '/syncs/{id}/runs',
  summary: 'Run history',
  description: `${rolesNote(...ROLES)} Every run, newest first, with its counts and status.`,
  request: { params: IdParam, query: z.object(page) },
  responses: {
    200: json(pageOf(SyncRun, 'SyncRunPage'), 'A page of runs'),
    ...problemResponses(400, 401, 403, 404, 503),
  },
});

const runErrors = createRoute({
  ...member,
  method: 'get',
  path: '/syncs/{id}/runs/{runId}/errors',
  summary: 'Rows a run did not get confirmed',
  description: `${rolesNote(...ROLES)} Rows the destination rejected, or left to retry, in this run, newest first, each with its reason.`,
  request: { params: RunParams, query: z.object(page) },
  responses: {
    200: json(SyncRowErrorPage, 'A page of row errors'),
    ...problemResponses(400, 401, 403, 404, 503),
  },
});

const errors = createRoute({
  ...member,
  method: 'get',
  path: '/syncs/{id}/errors',
  summary: 'Row errors across runs',
  description: `${rolesNote(...ROLES)} Newest first; \`profileId\` keeps one profile's (those of profiles since merged into it included).`,
  request: {
    params: IdParam,
    query: z.object({
      ...page,
      profileId: z.uuid().optional().openapi({ description: 'Only this profile’s errors.' }),
    }),
  },
  responses: {
    200: json(SyncRowErrorPage, 'A page of row errors'),
    ...problemResponses(400, 401, 403, 404, 503),
  },
});

/** A sync whose destination cannot be loaded is a conflict to fix, not a server failure. */
async function runnable<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    throw new HubError(409, 'sync-misconfigured', 'Sync cannot run', error.message);
  }
}

/**
 * Mark rows to be sent again, then run the sync as `POST …/run` does: queued for the hub's
 * worker (read at request time), else in the request.
 */
async function markAndRun(
  ctx: HubContext,
  syncId: string,
  markRows: () => Promise<number>,
): Promise<{
  syncId: string;
  marked: number;
  status: SyncResend['status'];
  run: SyncRunSummary | null;
}> {
  const deps = syncDepsOf(ctx);
  const marked = await markRows();
  const requestSyncRun = ctx.jobs?.requestSyncRun;
  if (requestSyncRun) {
    await requestSyncRun(syncId, 'manual');
    return { syncId, marked, status: 'queued', run: null };
  }
  const run = await runSync(ctx.db, deps, syncId, 'manual');
  return { syncId, marked, status: 'finished', run };
}

/** `/api/syncs`: segments sent to destinations, runs, plans, resends, auto-sync and run history. */
export function syncRoutes(ctx: HubContext) {
  return new OpenAPIHono<ApiEnv>({ defaultHook: validationHook })
    .openapi(list, async (c) =>
      c.json({ data: await listSyncs(ctx.db, c.req.valid('query')) }, 200),
    )
    .openapi(create, async (c) => {
      const sync = await inBody(
        createSync(ctx.db, syncDepsOf(ctx), c.get('principal'), c.req.valid('json')),
      );
      return c.json(sync, 201);
    })
    .openapi(read, async (c) => c.json(await getSync(ctx.db, c.req.valid('param').id), 200))
    .openapi(update, async (c) => {
      const sync = await inBody(
        updateSync(
          ctx.db,
          syncDepsOf(ctx),
          c.get('principal'),
          c.req.valid('param').id,
          c.req.valid('json'),
        ),
      );
      return c.json(sync, 200);
    })
    .openapi(remove, async (c) => {
      await deleteSync(ctx.db, c.get('principal'), c.req.valid('param').id);
      return c.body(null, 204);
    })
    .openapi(run, async (c) => {
      const { id } = c.req.valid('param');
      // Read at request time: the hub's worker may be attached after the app is built.
      const requestSyncRun = ctx.jobs?.requestSyncRun;
      if (requestSyncRun) {
        await getSync(ctx.db, id); // 404 now, rather than a job for nothing
        await requestSyncRun(id, 'manual');
        return c.json({ syncId: id, status: 'queued' as const }, 202);
      }
      const done = await runSync(ctx.db, syncDepsOf(ctx), id, 'manual');
      return c.json(done, 200);
    })
    .openapi(plan, async (c) => {
      const { samples } = c.req.valid('query');
      const result = await runnable(
        planSync(ctx.db, syncDepsOf(ctx), c.req.valid('param').id, { samples }),
      );
      return c.json(result, 200);
    })
    .openapi(retry, async (c) => {
      const { id } = c.req.valid('param');
      const answer = await markAndRun(ctx, id, () => retryRejected(ctx.db, c.get('principal'), id));
      return answer.run ? c.json(answer, 200) : c.json(answer, 202);
    })
    .openapi(resend, async (c) => {
      const { id } = c.req.valid('param');
      const answer = await markAndRun(ctx, id, () => resync(ctx.db, c.get('principal'), id));
      return answer.run ? c.json(answer, 200) : c.json(answer, 202);
    })
    .openapi(autoSync, async (c) => {
      const { enabled } = c.req.valid('json');
      return c.json(
        await setAutoSync(ctx.db, c.get('principal'), c.req.valid('param').id, enabled),
        200,
      );
    })
    .openapi(runs, async (c) => {
      const { limit, cursor } = c.req.valid('query');
      const found = await listSyncRuns(ctx.db, c.req.valid('param').id, {
        limit,
        before: cursor,
      });
      return c.json(toPage(found), 200);
    })
    .openapi(runErrors, async (c) => {
      const { id, runId } = c.req.valid('param');
      const { limit, cursor } = c.req.valid('query');
      const found = await listRunErrors(ctx.db, id, runId, { limit, before: cursor });
      return c.json(toPage(found), 200);
    })
    .openapi(errors, async (c) => {
      const { limit, cursor, profileId } = c.req.valid('query');
      const found = await listSyncErrors(ctx.db, c.req.valid('param').id, {
        limit,
        before: cursor,
        profileId,
      });
      return c.json(toPage(found), 200);
    });
}
