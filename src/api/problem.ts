/**
 * RFC 9457 problem details: the one shape every API error takes, and the one handler that
 * renders it. https://www.rfc-editor.org/rfc/rfc9457
 */
import { randomUUID } from 'node:crypto';
import { z, type Hook } from '@hono/zod-openapi';
import type { Context, ErrorHandler, NotFoundHandler } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { isConnectionLoss } from '../db/index.ts';
import { HubError, type FieldError } from '../errors.ts';
import type { Logger } from '../log.ts';

export const ProblemFieldError = z
  .object({ field: z.string(), message: z.string() })
  .openapi('FieldError');
export type ProblemFieldError = z.infer<typeof ProblemFieldError>;

export const Problem = z
  .looseObject({
    type: z.string().openapi({ example: 'urn:audiencehub:problem:validation' }),
    title: z.string(),
    status: z.number().int(),
    detail: z.string().optional(),
    instance: z.string().openapi({ description: 'The request path.' }),
    errors: z.array(ProblemFieldError).optional(),
  })
  .openapi('Problem');
export type Problem = z.infer<typeof Problem>;

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/** What a 503 for a lost database connection asks the client to wait before retrying. */
const RETRY_AFTER_SECONDS = 1;

const DESCRIPTIONS: Record<number, string> = {
  400: 'Invalid request: `errors` names each failing field.',
  401: 'Missing, unknown or revoked credentials.',
  403: 'The token’s role may not do this.',
  404: 'No such resource.',
  413: 'The body is larger than the endpoint allows.',
  503: 'Out of reach for now: the database connection was lost (`database-unavailable`), or a service the request needs is busy or down. Send it again later, after `Retry-After` when given.',
};

/** OpenAPI response entries for the given error statuses, all problem+json. */
export function problemResponses<S extends number>(...statuses: S[]) {
  return Object.fromEntries(
    statuses.map((s) => [
      s,
      {
        description: DESCRIPTIONS[s] ?? TITLES[s] ?? 'Error',
        content: { 'application/problem+json': { schema: Problem } },
      },
    ]),
  ) as Record<
    S,
    { description: string; content: { 'application/problem+json': { schema: typeof Problem } } }
  >;
}

export interface ProblemInput {
  status: number;
  /** The slug the problem `type` is made of. */
  code: string;
  title: string;
  detail?: string;
  errors?: FieldError[];
  /** Extra members. */
  extra?: Record<string, unknown>;
}

/** Render a problem document. Headers set earlier with `c.header` (e.g. WWW-Authenticate) are kept. */
export function problem(c: Context, p: ProblemInput): Response {
  const body: Problem = {
    ...p.extra,
    type: `urn:audiencehub:problem:${p.code}`,
    title: p.title,
    status: p.status,
    ...(p.detail === undefined ? {} : { detail: p.detail }),
    instance: c.req.path,
    ...(p.errors === undefined ? {} : { errors: p.errors }),
  };
  return c.body(JSON.stringify(body), p.status as ContentfulStatusCode, {
    'Content-Type': 'application/problem+json',
  });
}

/**
 * The app's one error handler. A {@link HubError} is rendered as it says; hono's own
 * HTTP errors (malformed JSON, unsupported media type) keep their status; a lost database
 * connection is a 503 with Retry-After; anything else is a 500 whose detail says nothing about
 * the cause, which is logged, redacted, under an id.
 */
export function problemHandler(log: Logger): ErrorHandler {
  return (error, c) => {
    if (error instanceof HubError) {
      if (error.status >= 500) logFailure(log, c, error);
      return problem(c, error);
    }
    if (error instanceof HTTPException && error.status < 500) {
      return problem(c, {
        status: error.status,
        code: error.status === 400 ? 'invalid-request' : `http-${error.status}`,
        title: TITLES[error.status] ?? 'Error',
        detail: error.message,
      });
    }
    if (isConnectionLoss(error)) {
      // Not a bug in the request or in the hub: the client should send it again shortly.
      log.warn('database unavailable', {
        method: c.req.method,
        path: c.req.path,
        error: redact(error),
      });
      c.header('Retry-After', String(RETRY_AFTER_SECONDS));
      return problem(c, {
        status: 503,
        code: 'database-unavailable',
        title: TITLES[503]!,
        detail:
          'The database could not be reached, so the request may not have been carried out. ' +
          'Send it again: a tracking message is stored once per messageId.',
      });
    }
    const errorId = logFailure(log, c, error);
    return problem(c, {
      status: 500,
      code: 'internal',
      title: TITLES[500]!,
      detail: `An unexpected error occurred. It was logged with id ${errorId}.`,
      extra: { errorId },
    });
  };
}

export const notFoundHandler: NotFoundHandler = (c) =>
  problem(c, {
    status: 404,
    code: 'not-found',
    title: TITLES[404]!,
    detail: `No route for ${c.req.method} ${c.req.path}.`,
  });

/**
 * The OpenAPIHono `defaultHook`: a failed zod validation becomes a 400 naming every field
 * (`limit`, `body.name`, `body.batch[2].userId`). A path parameter that fails validation
 * (an id that is not a uuid) can name no resource, so it is a 404.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the hook serves every route
export const validationHook: Hook<any, any, any, any> = (result, c) => {
  if (result.success) return;
  if (result.target === 'param') {
    throw new HubError(404, 'not-found', TITLES[404]!, `Nothing found at ${c.req.path}.`);
  }
  const prefix = result.target === 'json' || result.target === 'form' ? 'body' : '';
  const errors = result.error.issues.map((issue) => ({
    field: fieldPath(prefix, issue.path) || result.target,
    message: issue.message,
  }));
  throw new HubError(
    400,
    'validation',
    'Invalid request',
    errors.length === 1
      ? `${errors[0]!.field}: ${errors[0]!.message}`
      : `${errors.length} fields are invalid.`,
    errors,
  );
};

function fieldPath(prefix: string, path: PropertyKey[]): string {
  return path.reduce<string>(
    (acc, key) =>
      typeof key === 'number' ? `${acc}[${key}]` : acc ? `${acc}.${String(key)}` : String(key),
    prefix,
  );
}

/** Log an unexpected failure without request bodies, headers or values; returns its id. */
function logFailure(log: Logger, c: Context, error: unknown): string {
  const errorId = randomUUID();
  log.error('request failed', {
    errorId,
    method: c.req.method,
    path: c.req.path,
    error: redact(error),
  });
  return errorId;
}

/**
 * What is safe to log of an error. Driver messages quote the offending value
 * (`invalid input syntax for type uuid: "jane@example.com"`) and drizzle appends the query's
 * parameters, so quoted text, parameters, URL credentials and secrets are dropped; the SQL
 * itself holds placeholders only.
 */
export function redact(error: unknown, depth = 0): Record<string, unknown> {
  if (!(error instanceof Error)) return { type: typeof error };
  const message = error.message.startsWith('Failed query:')
    ? error.message.split('\nparams:')[0]!
    : error.message
        .replace(/"[^"]*"|'[^']*'/g, '"…"')
        .replace(/\/\/[^/@\s]*@/g, '//…@')
        .replace(/\b(aht|ahw)_[\w-]+/g, '$1_…')
        .replace(/\bBearer\s+\S+/gi, 'Bearer …');
  const code = (error as { code?: unknown }).code;
  return {
    name: error.name,
    message: message.slice(0, 2000),
    ...(typeof code === 'string' ? { code } : {}),
    stack: (error.stack ?? '')
      .split('\n')
      .filter((line) => line.trimStart().startsWith('at '))
      .slice(0, 12)
      .map((line) => line.trim()),
    ...(error.cause && depth < 3 ? { cause: redact(error.cause, depth + 1) } : {}),
  };
}

/**
 * Run a domain call whose field errors name fields of the request body, and name them as the
 * API does (`body.<field>`).
 *
 * @example
 * const segment = await inBody(createSegment(db, principal, input, limits));
 */
export async function inBody<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (error) {
    if (!(error instanceof HubError) || !error.errors) throw error;
    throw new HubError(
      error.status,
      error.code,
      error.title,
      error.detail,
      error.errors.map((e) => ({ ...e, field: `body.${e.field}` })),
      error.extra,
    );
  }
}
