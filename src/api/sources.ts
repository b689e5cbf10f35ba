/**
 * `/api/source-connectors` and `/api/sources`: configured source connectors, their streams'
 * mappings, import runs, rejects and uploaded files.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { OpenAPIHono, createRoute, z, type Hook } from '@hono/zod-openapi';
import type { HubContext } from '../context.ts';
import { HubError } from '../errors.ts';
import { importDepsOf, type ImportDeps } from '../imports/deps.ts';
import { StreamMapping } from '../imports/mapping.ts';
import { exportRejectsCsv, listRejects } from '../imports/rejects.ts';
import { listImportRuns, runImport, type ImportRun as Run } from '../imports/run.ts';
import {
  CreateSource,
  PutStreamMapping,
  UpdateSource,
  connectorSecrets,
  createSource,
  deleteSource,
  discoverStreams,
  enabledStreams,
  getSource,
  listSources,
  listStreams,
  loadSource,
  setStreamMapping,
  updateSource,
  uploadFolder,
} from '../imports/store.ts';
import type { SourceConnector } from '../sdk/source.ts';
import { configJsonSchema, jsonResponse as json } from './config-schema.ts';
import { bearerSecurity, requireRole, rolesNote, type ApiEnv } from './auth.ts';
import { IdParam, Limit, cursorOf, pageOf, toPage } from './params.ts';
import { inBody, problemResponses, redact, validationHook } from './problem.ts';

const Time = z.iso.datetime();
const Count = z.number().int();

export const SourceConnectorInfo = z
  .object({
    name: z.string().openapi({ example: 'postgres', description: 'Pass as `connector`.' }),
    title: z.string(),
    description: z.string().nullable(),
    config: z.record(z.string(), z.unknown()).openapi({
      description:
        'The JSON Schema of `config`. Secret fields are `writeOnly` (strings also `format: password`): stored encrypted, never returned.',
    }),
    secrets: z.array(z.string()).openapi({ description: 'The names of the secret fields.' }),
    uploads: z.boolean().openapi({
      description: 'It can read files uploaded to the hub (leave `config.path` out).',
    }),
    limits: z
      .object({ requestsPerSecond: z.number().optional(), concurrency: z.number().optional() })
      .openapi({ description: 'How hard the service may be asked; the hub keeps to it.' }),
  })
  .openapi('SourceConnector');

export const Source = z
  .object({
    id: z.uuid(),
    name: z.string(),
    connector: z.string(),
    config: z
      .record(z.string(), z.unknown())
      .openapi({ description: 'The configuration without its secret fields.' }),
    secrets: z
      .array(z.string())
      .openapi({ description: 'Which secret fields are set; their values are never shown.' }),
    uploads: z.boolean().openapi({
      description:
        'It reads the files uploaded to it (`POST /api/sources/{id}/files`), one stream per file.',
    }),
    schedule: z.string().nullable().openapi({ description: 'Cron (UTC) of scheduled imports.' }),
    nextRunAt: Time.nullable(),
    expectedIntervalMinutes: Count.nullable(),
    alertWebhookHost: z
      .string()
      .nullable()
      .openapi({ description: 'The host alerts are POSTed to; the URL itself is never shown.' }),
    maxRejectShare: z.number(),
    managedBy: z.string().nullable().openapi({
      description:
        'The config-as-code key when `audiencehub apply` manages the source: the API then refuses to change or delete it (409 `managed-by-config`).',
    }),
    lastSuccessAt: Time.nullable(),
    createdAt: Time,
    updatedAt: Time,
  })
  .openapi('Source');

const SourceField = z.object({
  name: z.string(),
  type: z.enum(['string', 'number', 'integer', 'boolean', 'date', 'datetime', 'json']),
  description: z.string().optional(),
});

export const SourceStreamInfo = z
  .object({
    name: z.string(),
    description: z.string().optional(),
    fields: z.array(SourceField),
    primaryKey: z.array(z.string()),
    modes: z.array(z.enum(['full_refresh', 'incremental'])),
    cursorField: z.string().optional(),
    mapping: StreamMapping.nullable().openapi({
      description: 'How its rows are imported; null while it has no mapping (not imported).',
    }),
    enabled: z.boolean(),
    cursorAt: Time.nullable().openapi({ description: 'When its cursor last moved.' }),
  })
  .openapi('SourceStream');

export const ImportRun = z
  .object({
    id: Count,
    sourceId: z.uuid(),
    stream: z.string(),
    trigger: z.string().openapi({ description: '`manual`, `schedule` or `cli`.' }),
    status: z.enum(['running', 'succeeded', 'failed']),
    startedAt: Time,
    finishedAt: Time.nullable(),
    durationMs: Count.nullable(),
    rowsRead: Count,
    rowsImported: Count.openapi({ description: 'Rows that stored at least one new message.' }),
    rowsDuplicate: Count.openapi({
      description: 'Rows already stored (read again) or exact copies of an earlier row.',
    }),
    rowsRejected: Count.openapi({ description: 'Rows that failed the mapping (see rejects).' }),
    error: z.string().nullable().openapi({ description: 'Why a failed run failed.' }),
  })
  .openapi('ImportRun');

export const ImportReject = z
  .object({
    id: Count,
    runId: Count,
    stream: z.string(),
    recordKey: z.string().openapi({
      description:
        "The record's primary key values, the connector's key, or `#` and a content digest.",
    }),
    row: z.record(z.string(), z.unknown()).openapi({ description: 'The row as it was read.' }),
    reason: z.string(),
    field: z.string().nullable(),
    at: Time,
  })
  .openapi('ImportReject');

const tags = ['Sources'];
const ANY = ['admin', 'marketer', 'integrator'] as const;
const OPERATE = ['admin', 'integrator'] as const;
const reader = { tags, security: bearerSecurity, middleware: requireRole(...ANY) };
const admin = { tags, security: bearerSecurity, middleware: requireRole('admin') };
const operator = { tags, security: bearerSecurity, middleware: requireRole(...OPERATE) };
const StreamParams = z.object({
  id: IdParam.shape.id,
  stream: z
    .string()
    .min(1)
    .openapi({ param: { name: 'stream', in: 'path' }, example: 'orders' }),
});

const connectors = createRoute({
  ...reader,
  method: 'get',
  path: '/source-connectors',
  summary: 'Installed source connectors',
  description: `${rolesNote(...ANY)} Each connector's name, title, configuration schema and limits: what a source can be made of.`,
  responses: {
    200: json(z.object({ data: z.array(SourceConnectorInfo) }), 'Every installed connector'),
    ...problemResponses(401, 403, 503),
  },
});

const list = createRoute({
  ...reader,
  method: 'get',
  path: '/sources',
  summary: 'List sources',
  description: `${rolesNote(...ANY)} Every source by name, without secret values.`,
  responses: {
    200: json(z.object({ data: z.array(Source) }), 'Every source'),
    ...problemResponses(401, 403, 503),
  },
});

const create = createRoute({
  ...admin,
  method: 'post',
  path: '/sources',
  summary: 'Create a source',
  description: `${rolesNote('admin')} The configuration must fit the connector's schema (400 naming \`body.config.<field>\`) and pass the connector's check (422 \`source-check-failed\`) before it is saved; a source reading uploads is checked when its first file arrives. Secret fields and the alert webhook URL are stored encrypted and never returned. Names are unique in any case (409 \`source-name-taken\`). Audit-logged.`,
  request: {
    body: { content: { 'application/json': { schema: CreateSource } }, required: true },
  },
  responses: {
    201: json(Source, 'The source'),
    ...problemResponses(400, 401, 403, 409, 422, 503),
  },
});

const read = createRoute({
  ...reader,
  method: 'get',
  path: '/sources/{id}',
  summary: 'A source',
  description: `${rolesNote(...ANY)} Secret values are never shown; \`secrets\` says which are set.`,
  request: { params: IdParam },
  responses: { 200: json(Source, 'The source'), ...problemResponses(401, 403, 404, 503) },
});

const update = createRoute({
  ...admin,
  method: 'patch',
  path: '/sources/{id}',
  summary: 'Change a source',
  description: `${rolesNote('admin')} \`config\` holds the fields to change; a secret field left out keeps its value. A changed configuration is checked again (422 when the connector refuses). Audit-logged.`,
  request: {
    params: IdParam,
    body: { content: { 'application/json': { schema: UpdateSource } }, required: true },
  },
  responses: {
    200: json(Source, 'The source'),
    ...problemResponses(400, 401, 403, 404, 409, 422, 503),
  },
});

const remove = createRoute({
  ...admin,
  method: 'delete',
  path: '/sources/{id}',
  summary: 'Delete a source',
  description: `${rolesNote('admin')} Removes its mappings, run history, rejects and uploaded files; what it imported stays. Refused (409 \`import-running\`) while a run is in progress. Audit-logged.`,
  request: { params: IdParam },
  responses: { 204: { description: 'Deleted' }, ...problemResponses(401, 403, 404, 409, 503) },
});

const streams = createRoute({
  ...reader,
  method: 'get',
  path: '/sources/{id}/streams',
  summary: "A source's streams",
  description: `${rolesNote(...ANY)} What the connector discovers now (fields, primary key, read modes), each with its mapping. 422 \`discover-failed\` when the connector cannot answer.`,
  request: { params: IdParam },
  responses: {
    200: json(z.object({ data: z.array(SourceStreamInfo) }), 'Every stream'),
    ...problemResponses(401, 403, 404, 422, 503),
  },
});

const putMapping = createRoute({
  ...admin,
  method: 'put',
  path: '/sources/{id}/streams/{stream}',
  summary: "Set a stream's mapping",
  description: `${rolesNote('admin')} Which fields are identities, traits and events (docs/imports.md). A mapping that does not validate, or names fields the stream does not have, is a 422 \`invalid-mapping\` naming each field (\`body.mapping.event.timestamp.format\`). \`resetCursor\` makes the next run read the stream from its start (rows already imported are not stored twice). Audit-logged.`,
  request: {
    params: StreamParams,
    body: { content: { 'application/json': { schema: PutStreamMapping } }, required: true },
  },
  responses: {
    200: json(SourceStreamInfo, 'The stream with its mapping'),
    ...problemResponses(401, 403, 404, 409, 422, 503),
  },
});

const RunRequest = z
  .object({
    stream: z.string().min(1).optional().openapi({
      description: 'Import only this stream; every enabled stream when absent.',
    }),
  })
  .openapi('ImportRunRequest');

const runNow = createRoute({
  ...operator,
  method: 'post',
  path: '/sources/{id}/runs',
  summary: 'Import now',
  description: `${rolesNote(...OPERATE)} Imports one stream, or every enabled stream with a mapping. When the hub runs a worker, the runs are queued (202; a request while a run of the stream is queued joins it) and show under /runs. Otherwise they run in the request and the finished runs are answered (200; a failed run is a run with \`status: failed\` and its \`error\`), or 409 \`import-running\` while another run holds a stream.`,
  request: {
    params: IdParam,
    body: { content: { 'application/json': { schema: RunRequest } }, required: false },
  },
  responses: {
    200: json(z.object({ data: z.array(ImportRun) }), 'The finished runs'),
    202: json(
      z.object({ sourceId: z.uuid(), streams: z.array(z.string()), status: z.literal('queued') }),
      'Queued for a worker',
    ),
    ...problemResponses(400, 401, 403, 404, 409, 503),
  },
});

const runs = createRoute({
  ...reader,
  method: 'get',
  path: '/sources/{id}/runs',
  summary: 'Import run history',
  description: `${rolesNote(...ANY)} Every run, newest first: rows read, imported, duplicate and rejected, duration and status.`,
  request: {
    params: IdParam,
    query: z.object({
      limit: Limit,
      cursor: cursorOf(Count),
      stream: z.string().optional().openapi({ description: 'Only this stream’s runs.' }),
    }),
  },
  responses: {
    200: json(pageOf(ImportRun, 'ImportRunPage'), 'A page of runs'),
    ...problemResponses(400, 401, 403, 404, 503),
  },
});

const rejects = createRoute({
  ...operator,
  method: 'get',
  path: '/sources/{id}/rejects',
  summary: 'Rejected rows, or all of them as CSV',
  description: `${rolesNote(...OPERATE)} Rows that failed their mapping, oldest first, each with its reason and the field it names; a row is listed once, under the latest run that rejected it, and leaves the list when it imports. With \`format=csv\` or \`Accept: text/csv\`, every matching reject as an attachment with columns run_id, stream, record_key, field, reason, rejected_at and the row's fields (RFC 4180; cells starting with = + - @ are prefixed with \`'\`).`,
  request: {
    params: IdParam,
    query: z.object({
      limit: Limit,
      cursor: cursorOf(Count),
      runId: z.coerce.number().int().positive().optional(),
      stream: z.string().optional(),
      format: z.enum(['json', 'csv']).optional(),
    }),
  },
  responses: {
    200: {
      description: 'A page of rejects, or the CSV',
      content: {
        'application/json': { schema: pageOf(ImportReject, 'ImportRejectPage') },
        'text/csv': { schema: z.string() },
      },
    },
    ...problemResponses(400, 401, 403, 404, 503),
  },
});

const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

const upload = createRoute({
  ...operator,
  method: 'post',
  path: '/sources/{id}/files',
  summary: 'Upload a file to a source',
  description: `${rolesNote(...OPERATE)} The raw file as the body (\`Content-Encoding: gzip\` accepted: it is kept compressed, as \`<name>.gz\`), at most AUDIENCEHUB_MAX_UPLOAD_BYTES as sent (413 otherwise). Only for a source that reads uploads (409 \`source-not-uploadable\`). Each file is one stream, named by the file; a name already taken is a 409 \`file-exists\` (upload new data under a new name). The connector's check runs on the folder with the new file: a file it refuses is removed again (422 \`source-check-failed\`).`,
  request: {
    params: IdParam,
    query: z.object({
      name: z
        .string()
        .regex(FILE_NAME, 'letters, digits, . _ - only, e.g. orders-2024-06.csv')
        .refine((n) => !n.includes('..'), 'must not contain ..')
        .openapi({ example: 'orders-2024-06.csv' }),
    }),
    body: {
      content: {
        'text/csv': { schema: z.string().openapi({ format: 'binary' }) },
        'application/octet-stream': { schema: z.string().openapi({ format: 'binary' }) },
      },
      required: true,
    },
  },
  responses: {
    201: json(
      z.object({ name: z.string(), bytes: Count, streams: z.array(z.string()) }),
      'Stored; the source’s streams now',
    ),
    ...problemResponses(400, 401, 403, 404, 409, 413, 422, 503),
  },
});

/** A connector as the API describes it: its config as JSON Schema, secret fields write-only. */
function describeConnector(connector: SourceConnector) {
  return {
    name: connector.name,
    title: connector.title,
    description: connector.description ?? null,
    config: configJsonSchema(connector.config),
    secrets: connectorSecrets(connector),
    uploads: connector.uploads === true,
    limits: { ...connector.limits },
  };
}

/** A mapping that does not validate is a 422 naming each field under `body.`. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the hook serves one route
const mappingHook: Hook<any, any, any, any> = (result, c) => {
  if (result.success || result.target !== 'json') return validationHook(result, c);
  const errors = result.error.issues.map((issue) => ({
    field: ['body', ...issue.path.map(String)].join('.'),
    message: issue.message,
  }));
  throw new HubError(
    422,
    'invalid-mapping',
    'Invalid mapping',
    errors.length === 1
      ? `${errors[0]!.field}: ${errors[0]!.message}`
      : `${errors.length} fields of the mapping are invalid.`,
    errors,
  );
};

/** The sources routes. */
export function sourceRoutes(ctx: HubContext) {
  const deps = () => importDepsOf(ctx);
  return new OpenAPIHono<ApiEnv>({ defaultHook: validationHook })
    .openapi(connectors, async (c) =>
      c.json({ data: (await deps()).connectors.list().map(describeConnector) }, 200),
    )
    .openapi(list, async (c) => c.json({ data: await listSources(ctx.db, await deps()) }, 200))
    .openapi(create, async (c) => {
      const source = await inBody(
        createSource(ctx.db, await deps(), c.get('principal'), c.req.valid('json')),
      );
      return c.json(source, 201);
    })
    .openapi(read, async (c) =>
      c.json(await getSource(ctx.db, await deps(), c.req.valid('param').id), 200),
    )
    .openapi(update, async (c) => {
      const source = await inBody(
        updateSource(
          ctx.db,
          await deps(),
          c.get('principal'),
          c.req.valid('param').id,
          c.req.valid('json'),
        ),
      );
      return c.json(source, 200);
    })
    .openapi(remove, async (c) => {
      await deleteSource(ctx.db, await deps(), c.get('principal'), c.req.valid('param').id);
      return c.body(null, 204);
    })
    .openapi(streams, async (c) =>
      c.json({ data: await listStreams(ctx.db, await deps(), c.req.valid('param').id) }, 200),
    )
    .openapi(
      putMapping,
      async (c) => {
        // The route's own hook leaves the parameters' type to be restated.
        const { id, stream } = c.req.valid('param') as z.infer<typeof StreamParams>;
        const result = await inBody(
          setStreamMapping(
            ctx.db,
            await deps(),
            c.get('principal'),
            id,
            stream,
            c.req.valid('json'),
          ),
        );
        return c.json(result, 200);
      },
      mappingHook,
    )
    .openapi(runNow, async (c) => {
      const { id } = c.req.valid('param');
      const { stream } = c.req.valid('json');
      const imports = await deps();
      await getSource(ctx.db, imports, id); // 404 now, rather than a job for nothing
      const targets = stream ? [stream] : await enabledStreams(ctx.db, id);
      if (targets.length === 0) {
        throw new HubError(
          409,
          'nothing-to-import',
          'Nothing to import',
          'No stream of this source has a mapping and is enabled: set one with PUT /api/sources/{id}/streams/{stream}.',
        );
      }
      // Read at request time: the hub's worker may be attached after the app is built.
      const request = ctx.jobs?.requestImportRun;
      if (request) {
        for (const s of targets) await request(id, s, 'manual');
        return c.json({ sourceId: id, streams: targets, status: 'queued' as const }, 202);
      }
      const done: Run[] = [];
      for (const s of targets) {
        done.push(await runImport(ctx.db, imports, ctx.config, id, s, 'manual'));
      }
      return c.json({ data: done }, 200);
    })
    .openapi(runs, async (c) => {
      const { id } = c.req.valid('param');
      const { limit, cursor, stream } = c.req.valid('query');
      await getSource(ctx.db, await deps(), id);
      return c.json(
        toPage(await listImportRuns(ctx.db, id, { limit, before: cursor, stream })),
        200,
      );
    })
    .openapi(rejects, async (c) => {
      const { id } = c.req.valid('param');
      const query = c.req.valid('query');
      const csv =
        query.format === 'csv' ||
        (query.format === undefined && /\btext\/csv\b/i.test(c.req.header('Accept') ?? ''));
      const filter = { runId: query.runId, stream: query.stream };
      if (!csv) {
        const page = await listRejects(ctx.db, id, {
          ...filter,
          limit: query.limit,
          after: query.cursor,
        });
        return c.json(toPage(page), 200);
      }
      const { filename, lines } = await exportRejectsCsv(ctx.db, id, filter);
      return c.body(
        streamOf(lines, (error) =>
          ctx.log.error('rejects export failed', { sourceId: id, error: redact(error) }),
        ),
        200,
        {
          'Content-Type': 'text/csv; charset=utf-8',
          'Content-Disposition': `attachment; filename="${filename}"`,
          'Cache-Control': 'no-store',
        },
      );
    })
    .openapi(upload, async (c) => {
      const { id } = c.req.valid('param');
      const { name } = c.req.valid('query');
      const imports = await deps();
      const source = await getSource(ctx.db, imports, id);
      if (!source.uploads) {
        throw new HubError(
          409,
          'source-not-uploadable',
          'Source does not read uploads',
          `This source reads ${source.config.path === undefined ? 'from its service' : 'its own path'}, not uploaded files.`,
        );
      }
      const gzip = (c.req.header('content-encoding') ?? '').toLowerCase() === 'gzip';
      const stored = await storeUpload(
        imports,
        id,
        gzip && !name.endsWith('.gz') ? `${name}.gz` : name,
        c.req.raw,
        ctx.config.maxUploadBytes,
      );
      try {
        await checkUploads(ctx, imports, id);
      } catch (error) {
        rmSync(stored.path, { force: true });
        throw error;
      }
      const found = await discoverStreams(ctx.db, imports, id);
      return c.json(
        { name: stored.name, bytes: stored.bytes, streams: found.map((s) => s.name) },
        201,
      );
    });
}

/** Run the connector's check on the source's uploads folder (422 when it refuses). */
async function checkUploads(ctx: HubContext, deps: ImportDeps, id: string) {
  const source = await loadSource(ctx.db, deps, id);
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 60_000);
  let outcome: { ok: true } | { ok: false; reason: string };
  try {
    outcome = await source.connector.check(
      { config: source.config },
      {
        log: deps.log,
        signal: controller.signal,
        http: () => {
          throw new Error('a file connector makes no HTTP requests');
        },
      },
    );
  } catch (error) {
    outcome = { ok: false, reason: error instanceof Error ? error.message : String(error) };
  } finally {
    clearTimeout(timer);
  }
  if (!outcome.ok) {
    throw new HubError(
      422,
      'source-check-failed',
      'Source check failed',
      `${source.connector.title} cannot read the uploaded file: ${outcome.reason}`,
      [{ field: 'body', message: outcome.reason }],
    );
  }
}

/**
 * Stream the request body into the source's uploads folder: into a temporary file first, renamed
 * once complete, so a connector never reads half a file.
 */
async function storeUpload(
  deps: ImportDeps,
  sourceId: string,
  name: string,
  request: Request,
  limit: number,
): Promise<{ name: string; path: string; bytes: number }> {
  const tooLarge = (size: number | string) =>
    new HubError(
      413,
      'payload-too-large',
      'Payload too large',
      `The file is ${size} bytes; the limit is ${limit} bytes (AUDIENCEHUB_MAX_UPLOAD_BYTES).`,
    );
  const declared = Number(request.headers.get('content-length') ?? NaN);
  if (declared > limit) throw tooLarge(declared);
  const folder = uploadFolder(deps, sourceId);
  mkdirSync(folder, { recursive: true });
  const path = join(folder, name);
  if (existsSync(path)) {
    throw new HubError(
      409,
      'file-exists',
      'File exists',
      `This source already has a file named ${name}: upload new data under a new name.`,
    );
  }
  if (!request.body) {
    throw new HubError(400, 'invalid-body', 'Invalid body', 'The request has no body.', [
      { field: 'body', message: 'send the file as the request body' },
    ]);
  }
  const partial = join(folder, `.${name}.${randomBytes(6).toString('hex')}.part`);
  let bytes = 0;
  const count = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      bytes += chunk.length;
      if (bytes > limit) done(tooLarge(`> ${limit}`));
      else done(null, chunk);
    },
  });
  try {
    await pipeline(
      Readable.fromWeb(request.body as WebReadableStream),
      count,
      createWriteStream(partial, { flags: 'wx' }),
    );
    if (bytes === 0) {
      throw new HubError(400, 'invalid-body', 'Invalid body', 'The file is empty.', [
        { field: 'body', message: 'empty' },
      ]);
    }
    if (existsSync(path)) {
      throw new HubError(409, 'file-exists', 'File exists', `${name} arrived meanwhile.`);
    }
    renameSync(partial, path);
  } catch (error) {
    rmSync(partial, { force: true });
    throw error;
  }
  return { name, path, bytes };
}

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
  });
}
