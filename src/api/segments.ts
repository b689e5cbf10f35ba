import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import type { Principal } from '../auth/credentials.ts';
import type { HubContext } from '../context.ts';
import { HubError } from '../errors.ts';
import { inlineJobs } from '../jobs/index.ts';
import { listRuns, type RunTrigger, type SegmentRun as Run } from '../segments/compute.ts';
import { MemberUpload, exportMembersCsv, listMembers, uploadMembers } from '../segments/members.ts';
import { SegmentRules } from '../segments/rules.ts';
import {
  HistoryCursor,
  MAX_SERIES_DAYS,
  SegmentListCursor,
  SegmentSort,
  SortOrder,
  listSegments,
  membershipHistory,
  previewSegment,
  segmentOverlap,
  segmentRuns,
  segmentStats,
} from '../segments/stats.ts';
import { TEMPLATES, findTemplate } from '../segments/templates.ts';
import {
  CreateSegment,
  SegmentType,
  UpdateSegment,
  Visibility,
  createSegment,
  deleteSegment,
  getOwnSegment,
  getSegment,
  updateSegment,
} from '../segments/store.ts';
import { bearerSecurity, requireRole, rolesNote, type ApiEnv } from './auth.ts';
import { IdParam, Limit, cursorOf, pageOf, toPage } from './params.ts';
import { inBody, problemResponses, redact, validationHook } from './problem.ts';
import { jsonResponse as json } from './config-schema.ts';

const Time = z.iso.datetime();
const Count = z.number().int();

export const Segment = z
  .object({
    id: z.uuid(),
    name: z.string(),
    description: z.string(),
    type: SegmentType,
    visibility: Visibility,
    owner: z.object({ id: z.uuid(), name: z.string() }).openapi({
      description: 'The API token that created the segment.',
    }),
    rules: SegmentRules.nullable().openapi({
      description: 'The rule tree (docs/segments.md); null for an uploaded list.',
    }),
    schedule: z
      .string()
      .nullable()
      .openapi({ description: 'Cron (UTC) of scheduled recomputation.' }),
    nextRunAt: Time.nullable(),
    template: z.string().nullable(),
    size: Count.openapi({ description: 'Members now.' }),
    createdAt: Time,
    updatedAt: Time,
    lastComputedAt: Time.nullable(),
    managedBy: z.string().nullable().openapi({
      description:
        'The config-as-code key when `audiencehub apply` manages the segment: the API then refuses to change or delete it (409 `managed-by-config`).',
    }),
  })
  .openapi('Segment');
export type Segment = z.infer<typeof Segment>;

export const SegmentRun = z
  .object({
    id: Count,
    segmentId: z.uuid(),
    kind: z.enum(['full', 'incremental']),
    trigger: z.enum(['create', 'manual', 'schedule', 'update', 'upload', 'data']),
    status: z.enum(['running', 'succeeded', 'failed']),
    startedAt: Time,
    finishedAt: Time.nullable(),
    size: Count.nullable(),
    entered: Count.nullable(),
    exited: Count.nullable(),
    evaluated: Count.nullable().openapi({ description: 'Profiles evaluated (incremental runs).' }),
    error: z.string().nullable(),
  })
  .openapi('SegmentRun');
export type SegmentRun = z.infer<typeof SegmentRun>;

export const SegmentWithRun = Segment.extend({
  run: SegmentRun.nullable().openapi({
    description:
      'The computation this request started, when it ran before the answer (it may have failed: see `status` and `error`); null when none was needed or it was queued (it then shows under /runs).',
  }),
}).openapi('SegmentWithRun');
export type SegmentWithRun = z.infer<typeof SegmentWithRun>;

export const SegmentListItem = Segment.omit({ rules: true })
  .extend({
    change30d: Count.nullable().openapi({
      description: 'Size now minus the size 30 days ago; null when the size then is not known.',
    }),
    revenue: z.number().openapi({ description: 'The sum of the members’ `total_spent`.' }),
  })
  .openapi('SegmentListItem');
export type SegmentListItem = z.infer<typeof SegmentListItem>;

export const SegmentPage = pageOf(SegmentListItem, 'SegmentPage');

export const SegmentListQuery = z.object({
  limit: Limit,
  cursor: cursorOf(SegmentListCursor),
  q: z.string().trim().min(1).max(200).optional().openapi({
    description: 'Segments whose name or description contains this text (any case).',
  }),
  type: SegmentType.optional(),
  visibility: Visibility.optional(),
  owner: z
    .union([z.literal('me'), z.uuid()], { error: 'expected me or an owner’s token id' })
    .optional()
    .openapi({ description: '`me`, or the id of the token that owns the segments.' }),
  sort: SegmentSort.optional().openapi({ description: 'Default `createdAt`.' }),
  order: SortOrder.optional().openapi({
    description: 'Default `asc` for `name`, `desc` for the others. Unknown values come last.',
  }),
});

const ProfileCard = {
  kind: z.enum(['customer', 'visitor']),
  email: z.string().nullable(),
  identities: z
    .array(z.object({ type: z.string(), value: z.string() }))
    .openapi({ description: 'Up to 5: email, phone and user id first.' }),
};

export const SegmentMember = z
  .object({ profileId: z.uuid(), ...ProfileCard, enteredAt: Time })
  .openapi('SegmentMember');
export type SegmentMember = z.infer<typeof SegmentMember>;

export const SegmentMemberPage = pageOf(SegmentMember, 'SegmentMemberPage');

export const MemberQuery = z.object({
  limit: Limit,
  cursor: cursorOf(z.uuid()),
  format: z.enum(['json', 'csv']).optional().openapi({
    description: 'csv: every member as a CSV attachment (also chosen by `Accept: text/csv`).',
  }),
});

export const UploadResult = z
  .object({
    run: SegmentRun,
    received: Count,
    matched: Count.openapi({ description: 'Identifiers held by a profile.' }),
    size: Count.openapi({ description: 'Distinct profiles now in the segment.' }),
    unmatched: z
      .array(
        z.object({
          index: Count.openapi({ description: 'The position in `identifiers`.' }),
          type: z.string(),
          value: z.string().openapi({ description: 'As uploaded.' }),
          reason: z.enum(['invalid', 'not_found']),
        }),
      )
      .openapi({ description: 'Identifiers that matched no profile, in upload order.' }),
  })
  .openapi('SegmentUploadResult');
export type UploadResult = z.infer<typeof UploadResult>;

export const SegmentStats = z
  .object({
    segmentId: z.uuid(),
    size: Count,
    change30d: Count.nullable(),
    revenue: z.number(),
    lastComputedAt: Time.nullable(),
    series: z
      .array(z.object({ day: z.iso.date(), size: Count.nullable() }))
      .openapi({ description: 'One entry per day (UTC), oldest first, ending today.' }),
  })
  .openapi('SegmentStats');
export type SegmentStats = z.infer<typeof SegmentStats>;

export const MembershipChange = z
  .object({
    id: Count,
    profileId: z.uuid(),
    change: z.enum(['entered', 'exited']),
    at: Time,
    runId: Count.nullable().openapi({ description: 'Null for exits through a profile merge.' }),
  })
  .openapi('SegmentMembershipChange');
export type MembershipChange = z.infer<typeof MembershipChange>;

export const SegmentOverlap = z
  .object({
    a: z.object({ id: z.uuid(), name: z.string(), size: Count }),
    b: z.object({ id: z.uuid(), name: z.string(), size: Count }),
    both: Count.openapi({ description: '|A ∩ B|' }),
    onlyA: Count.openapi({ description: '|A − B|' }),
    onlyB: Count.openapi({ description: '|B − A|' }),
  })
  .openapi('SegmentOverlap');
export type SegmentOverlap = z.infer<typeof SegmentOverlap>;

export const PreviewRequest = z
  .object({
    rules: z
      .unknown()
      .refine((v) => v !== undefined, 'required')
      .openapi({ description: 'A rule tree, as in CreateSegment.' }),
    asOf: z.iso.datetime({ offset: true }).optional().openapi({
      description: 'Evaluate as of this time (event windows end here); default now.',
    }),
    sample: z.number().int().min(0).max(100).default(10).openapi({
      description: 'How many matching profiles to return, newest first.',
    }),
  })
  .openapi('SegmentPreviewRequest');
export type PreviewRequest = z.infer<typeof PreviewRequest>;

export const SegmentPreview = z
  .object({
    count: Count,
    sample: z.array(z.object({ id: z.uuid(), ...ProfileCard })),
    tookMs: Count,
    asOf: Time,
  })
  .openapi('SegmentPreview');
export type SegmentPreview = z.infer<typeof SegmentPreview>;

export const SegmentTemplate = z
  .object({
    key: z.string().openapi({ description: 'Pass as `template` when creating a segment.' }),
    name: z.string(),
    description: z.string(),
    group: z.enum(['lifecycle', 'engagement', 'value', 'acquisition', 'rfm']),
    rules: SegmentRules,
  })
  .openapi('SegmentTemplate');
export type SegmentTemplate = z.infer<typeof SegmentTemplate>;

export const ComputationQueued = z
  .object({ segmentId: z.uuid(), status: z.literal('queued') })
  .openapi('SegmentComputationQueued');

const tags = ['Segments'];
const READ = ['admin', 'marketer', 'integrator'] as const;
const WRITE = ['admin', 'marketer'] as const;
const reader = { tags, security: bearerSecurity };
const writer = { tags, security: bearerSecurity, middleware: requireRole(...WRITE) };

const list = createRoute({
  ...reader,
  method: 'get',
  path: '/segments',
  summary: 'List, search, sort and filter segments',
  description: `${rolesNote(...READ)} Segments the token can see: shared ones, its own, and every one for an admin; with size, 30-day change and revenue.`,
  request: { query: SegmentListQuery },
  responses: { 200: json(SegmentPage, 'A page of segments'), ...problemResponses(400, 401) },
});

const create = createRoute({
  ...writer,
  method: 'post',
  path: '/segments',
  summary: 'Create a segment',
  description: `${rolesNote(...WRITE)} A segment with rules (dynamic, or static computed once) is computed before the answer unless a worker takes the job. With \`template\` (GET /api/segments/templates) and no \`rules\`, the template's rules are used. Names are unique per owner (any case); each owner may have a limited number of segments (409 \`segment-limit\`).`,
  request: {
    body: { content: { 'application/json': { schema: CreateSegment } }, required: true },
  },
  responses: {
    201: json(SegmentWithRun, 'The segment, and its first computation'),
    ...problemResponses(400, 401, 403, 409),
  },
});

const preview = createRoute({
  ...writer,
  method: 'post',
  path: '/segments/preview',
  summary: 'Preview unsaved rules',
  description: `${rolesNote(...WRITE)} How many profiles the rules select, and a sample, as of \`asOf\`; nothing is stored.`,
  request: {
    body: { content: { 'application/json': { schema: PreviewRequest } }, required: true },
  },
  responses: {
    200: json(SegmentPreview, 'The count and a sample'),
    ...problemResponses(400, 401, 403),
  },
});

const templates = createRoute({
  ...reader,
  method: 'get',
  path: '/segments/templates',
  summary: 'Built-in segment templates',
  description: `${rolesNote(...READ)} Rule trees to use as they are or as a starting point (docs/segments.md).`,
  responses: {
    200: json(z.object({ data: z.array(SegmentTemplate) }), 'Every template'),
    ...problemResponses(401),
  },
});

const overlap = createRoute({
  ...reader,
  method: 'get',
  path: '/segments/overlap',
  summary: 'Overlap of two segments',
  description: `${rolesNote(...READ)} |A∩B|, |A−B| and |B−A| of the stored members.`,
  request: { query: z.object({ a: z.uuid(), b: z.uuid() }) },
  responses: {
    200: json(SegmentOverlap, 'The overlap'),
    ...problemResponses(400, 401, 404),
  },
});

const read = createRoute({
  ...reader,
  method: 'get',
  path: '/segments/{id}',
  summary: 'A segment',
  description: `${rolesNote(...READ)} A private segment of another owner answers 404 (admins see it).`,
  request: { params: IdParam },
  responses: { 200: json(Segment, 'The segment'), ...problemResponses(401, 404) },
});

const update = createRoute({
  ...writer,
  method: 'patch',
  path: '/segments/{id}',
  summary: 'Change a segment',
  description: `${rolesNote(...WRITE)} Only its owner or an admin (403 otherwise). New rules of a dynamic segment recompute it.`,
  request: {
    params: IdParam,
    body: { content: { 'application/json': { schema: UpdateSegment } }, required: true },
  },
  responses: {
    200: json(SegmentWithRun, 'The segment, and its recomputation'),
    ...problemResponses(400, 401, 403, 404, 409),
  },
});

const remove = createRoute({
  ...writer,
  method: 'delete',
  path: '/segments/{id}',
  summary: 'Delete a segment',
  description: `${rolesNote(...WRITE)} Only its owner or an admin. Refused (409 \`segment-referenced\`, listing them in \`referencedBy\`) while other segments’ rules reference it.`,
  request: { params: IdParam },
  responses: {
    204: { description: 'Deleted, with its members, history and runs' },
    ...problemResponses(401, 403, 404, 409),
  },
});

const compute = createRoute({
  ...writer,
  method: 'post',
  path: '/segments/{id}/compute',
  summary: 'Compute a segment now',
  description: `${rolesNote(...WRITE)} Any such token that can see a dynamic segment; a static one only its owner or an admin (computing replaces what it holds). An uploaded list answers 409 \`segment-not-computable\`.`,
  request: { params: IdParam },
  responses: {
    200: json(SegmentRun, 'The finished run (see `status`)'),
    202: json(ComputationQueued, 'Queued on a worker; the run shows under /runs'),
    ...problemResponses(401, 403, 404, 409),
  },
});

const members = createRoute({
  ...reader,
  method: 'get',
  path: '/segments/{id}/members',
  summary: 'Members of a segment, or all of them as CSV',
  description: `${rolesNote(...READ)} Newest profiles first. With \`format=csv\` or \`Accept: text/csv\`, every member as an attachment with columns profile_id, kind, email, phone, user_id, anonymous_id, entered_at (RFC 4180; cells starting with = + - @ are prefixed with \`'\`).`,
  request: { params: IdParam, query: MemberQuery },
  responses: {
    200: {
      description: 'A page of members, or the CSV',
      content: {
        'application/json': { schema: SegmentMemberPage },
        'text/csv': { schema: z.string() },
      },
    },
    ...problemResponses(400, 401, 404),
  },
});

const upload = createRoute({
  ...writer,
  method: 'put',
  path: '/segments/{id}/members',
  summary: 'Replace the members of an uploaded list',
  description: `${rolesNote(...WRITE)} Only its owner or an admin; only a static segment created without rules (409 \`segment-not-uploadable\` otherwise). Plain strings are email addresses. Identifiers that are invalid or held by no profile are listed in \`unmatched\` and do not fail the upload.`,
  request: {
    params: IdParam,
    body: { content: { 'application/json': { schema: MemberUpload } }, required: true },
  },
  responses: {
    200: json(UploadResult, 'The new membership'),
    ...problemResponses(400, 401, 403, 404, 409),
  },
});

const runs = createRoute({
  ...reader,
  method: 'get',
  path: '/segments/{id}/runs',
  summary: 'Computation history',
  description: `${rolesNote(...READ)} Every run (full, incremental, upload), newest first.`,
  request: { params: IdParam, query: z.object({ limit: Limit, cursor: cursorOf(Count) }) },
  responses: {
    200: json(pageOf(SegmentRun, 'SegmentRunPage'), 'A page of runs'),
    ...problemResponses(400, 401, 404),
  },
});

const history = createRoute({
  ...reader,
  method: 'get',
  path: '/segments/{id}/history',
  summary: 'Membership history',
  description: `${rolesNote(...READ)} Who entered and left, and when, newest first.`,
  request: {
    params: IdParam,
    query: z.object({
      limit: Limit,
      cursor: cursorOf(HistoryCursor),
      profileId: z.uuid().optional().openapi({ description: 'Only this profile’s changes.' }),
    }),
  },
  responses: {
    200: json(pageOf(MembershipChange, 'SegmentHistoryPage'), 'A page of changes'),
    ...problemResponses(400, 401, 404),
  },
});

const stats = createRoute({
  ...reader,
  method: 'get',
  path: '/segments/{id}/stats',
  summary: 'Size, 30-day change, revenue and daily size series',
  description: `${rolesNote(...READ)} Each day of the series holds the last size known on or before it.`,
  request: {
    params: IdParam,
    query: z.object({
      days: z.coerce
        .number()
        .int()
        .min(1)
        .max(MAX_SERIES_DAYS)
        .default(30)
        .openapi({ description: `Days in the series, today included (1–${MAX_SERIES_DAYS}).` }),
    }),
  },
  responses: { 200: json(SegmentStats, 'The stats'), ...problemResponses(400, 401, 404) },
});

/** The template a segment is created from, whose rules it takes when it brings none. */
function withTemplate(input: CreateSegment): CreateSegment {
  if (input.template === undefined || input.template === null) return input;
  const template = findTemplate(input.template);
  if (!template) {
    throw new HubError(400, 'validation', 'Invalid request', `No template "${input.template}".`, [
      { field: 'body.template', message: 'no such template (see GET /api/segments/templates)' },
    ]);
  }
  return input.rules === undefined ? { ...input, rules: template.rules } : input;
}

/** `/api/segments`: definitions, computation, members, history, stats, overlap and preview. */
export function segmentRoutes(ctx: HubContext) {
  const jobs = ctx.jobs ?? inlineJobs(ctx.db);

  /**
   * Request a computation after a create or an update. The segment is saved whatever happens:
   * a failed computation is answered as its failed run, not as a failed request.
   */
  const computeAfter = async (segmentId: string, trigger: RunTrigger): Promise<Run | null> => {
    try {
      return await jobs.requestComputation(segmentId, trigger);
    } catch (error) {
      ctx.log.error('segment computation failed', { segmentId, trigger, error: redact(error) });
      const [last] = await listRuns(ctx.db, segmentId, { limit: 1 });
      return last?.trigger === trigger && last.status === 'failed' ? last : null;
    }
  };

  const withRun = async (principal: Principal, id: string, run: Run | null) => ({
    ...(await getSegment(ctx.db, principal, id)),
    run,
  });

  return (
    new OpenAPIHono<ApiEnv>({ defaultHook: validationHook })
      .openapi(list, async (c) => {
        const { cursor, ...query } = c.req.valid('query');
        const page = await listSegments(ctx.db, c.get('principal'), { ...query, cursor });
        return c.json(toPage(page), 200);
      })
      .openapi(create, async (c) => {
        const principal = c.get('principal');
        const segment = await inBody(
          createSegment(ctx.db, principal, withTemplate(c.req.valid('json')), {
            maxPerOwner: ctx.config.maxSegmentsPerOwner,
          }),
        );
        const run = segment.rules === null ? null : await computeAfter(segment.id, 'create');
        return c.json(await withRun(principal, segment.id, run), 201);
      })
      // Before /segments/{id}, so that `preview` and `overlap` are not taken for ids.
      .openapi(preview, async (c) => {
        const body = c.req.valid('json');
        const result = await inBody(
          previewSegment(ctx.db, c.get('principal'), {
            rules: body.rules,
            asOf: body.asOf === undefined ? undefined : new Date(body.asOf),
            sample: body.sample,
          }),
        );
        return c.json(result, 200);
      })
      .openapi(templates, (c) => c.json({ data: [...TEMPLATES] }, 200))
      .openapi(overlap, async (c) => {
        const { a, b } = c.req.valid('query');
        return c.json(await segmentOverlap(ctx.db, c.get('principal'), a, b), 200);
      })
      .openapi(read, async (c) =>
        c.json(await getSegment(ctx.db, c.get('principal'), c.req.valid('param').id), 200),
      )
      .openapi(update, async (c) => {
        const principal = c.get('principal');
        const { id } = c.req.valid('param');
        const { recompute } = await inBody(
          updateSegment(ctx.db, principal, id, c.req.valid('json')),
        );
        const run = recompute ? await computeAfter(id, 'update') : null;
        return c.json(await withRun(principal, id, run), 200);
      })
      .openapi(remove, async (c) => {
        await deleteSegment(ctx.db, c.get('principal'), c.req.valid('param').id);
        return c.body(null, 204);
      })
      .openapi(compute, async (c) => {
        const principal = c.get('principal');
        const { id } = c.req.valid('param');
        const segment = await getSegment(ctx.db, principal, id);
        if (segment.type === 'static') await getOwnSegment(ctx.db, principal, id);
        if (segment.rules === null) {
          throw new HubError(
            409,
            'segment-not-computable',
            'Segment has no rules',
            'This segment is an uploaded list: its members change only by uploading a new list.',
          );
        }
        const run = await jobs.requestComputation(id, 'manual');
        if (run === null) return c.json({ segmentId: id, status: 'queued' as const }, 202);
        return c.json(run, 200);
      })
      .openapi(members, async (c) => {
        const principal = c.get('principal');
        const { id } = c.req.valid('param');
        const query = c.req.valid('query');
        const csv =
          query.format === 'csv' ||
          (query.format === undefined && /\btext\/csv\b/i.test(c.req.header('Accept') ?? ''));
        if (!csv) {
          const page = await listMembers(ctx.db, principal, id, {
            limit: query.limit,
            after: query.cursor,
          });
          return c.json(toPage(page), 200);
        }
        const { filename, lines } = await exportMembersCsv(ctx.db, principal, id);
        return c.body(
          streamOf(lines, (error) => {
            ctx.log.error('segment export failed', { segmentId: id, error: redact(error) });
          }),
          200,
          {
            'Content-Type': 'text/csv; charset=utf-8',
            'Content-Disposition': `attachment; filename="${filename}"`,
            'Cache-Control': 'no-store',
          },
        );
      })
      .openapi(upload, async (c) => {
        const result = await inBody(
          uploadMembers(ctx.db, c.get('principal'), c.req.valid('param').id, c.req.valid('json'), {
            defaultPhoneCountry: ctx.config.defaultPhoneCountry,
          }),
        );
        return c.json(result, 200);
      })
      .openapi(runs, async (c) => {
        const { limit, cursor } = c.req.valid('query');
        const page = await segmentRuns(ctx.db, c.get('principal'), c.req.valid('param').id, {
          limit,
          before: cursor,
        });
        return c.json(toPage(page), 200);
      })
      .openapi(history, async (c) => {
        const { limit, cursor, profileId } = c.req.valid('query');
        const page = await membershipHistory(ctx.db, c.get('principal'), c.req.valid('param').id, {
          limit,
          cursor,
          profileId,
        });
        return c.json(toPage(page), 200);
      })
      .openapi(stats, async (c) => {
        const { days } = c.req.valid('query');
        return c.json(
          await segmentStats(ctx.db, c.get('principal'), c.req.valid('param').id, { days }),
          200,
        );
      })
  );
}

/** A byte stream of the text chunks; a failure mid-way is logged and ends the body abruptly. */
function streamOf(chunks: AsyncIterable<string>, onError: (error: unknown) => void) {
  const encoder = new TextEncoder();
  const iterator = chunks[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { value, done } = await iterator.next();
        if (done) controller.close();
        else controller.enqueue(encoder.encode(value));
      } catch (error) {
        onError(error);
        controller.error(error);
      }
    },
    async cancel() {
      await iterator.return?.(undefined);
    },
  });
}
