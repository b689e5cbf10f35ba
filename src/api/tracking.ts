/**
 * The tracking API, compatible with the Segment HTTP tracking spec, so Segment and RudderStack
 * client libraries can send to the hub unchanged.
 *
 * Batches with some invalid messages: the valid ones are stored and the answer is 200 with
 * `rejected` listing each invalid message's index, messageId and field errors (the invalid ones
 * are recorded in the rejection log, without their content). A batch with no valid message is
 * a 400 problem+json listing every error. Single-message endpoints answer 400 when invalid.
 */
import { gunzipSync } from 'node:zlib';
import { Hono, type Context } from 'hono';
import type { HubContext } from '../context.ts';
import { authenticateWriteKey, type WriteKeyPrincipal } from '../auth/credentials.ts';
import { runsOneAtATime } from '../db/drivers/capabilities.ts';
import { createIngestWriter } from '../events/writer.ts';
import { recordRejections, type Rejection } from '../events/rejections.ts';
import {
  MAX_BATCH_BYTES,
  MAX_MESSAGE_BYTES,
  MESSAGE_TYPES,
  parseMessage,
  type MessageType,
  type PreparedMessage,
} from '../events/message.ts';
import { HubError } from '../errors.ts';

function unauthorized(c: Context, detail: string): HubError {
  c.header('WWW-Authenticate', 'Basic realm="audiencehub tracking"');
  return new HubError(401, 'unauthorized', 'Unauthorized', detail);
}

/** The write key from `Authorization: Basic base64(writeKey:)`, or null when absent. */
function basicUser(header: string | undefined): string | null {
  if (!header) return null;
  const [scheme, encoded] = header.split(' ');
  if (scheme?.toLowerCase() !== 'basic' || !encoded) return null;
  const decoded = Buffer.from(encoded, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon === -1 ? decoded : decoded.slice(0, colon);
}

/** The body as JSON, within `limit` bytes (after gunzip when the client compressed it). */
async function readJson(c: Context, limit: number): Promise<unknown> {
  const declared = Number(c.req.header('content-length') ?? NaN);
  const tooLarge = (size: number | string) =>
    new HubError(
      413,
      'payload-too-large',
      'Payload too large',
      `The request body is ${size} bytes; the limit for this endpoint is ${limit} bytes.`,
    );
  if (declared > limit * 4) throw tooLarge(declared);
  let body = Buffer.from(await c.req.arrayBuffer());
  if (c.req.header('content-encoding')?.toLowerCase() === 'gzip') {
    try {
      body = gunzipSync(body, { maxOutputLength: limit + 1 });
    } catch (error) {
      if ((error as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE')
        throw tooLarge(`> ${limit}`);
      throw new HubError(400, 'invalid-body', 'Invalid body', 'The gzip body could not be read.');
    }
  }
  if (body.length > limit) throw tooLarge(body.length);
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new HubError(
      400,
      'malformed-json',
      'Malformed JSON',
      'The request body is not valid JSON.',
      [{ field: 'body', message: 'not valid JSON' }],
    );
  }
}

async function authenticate(
  ctx: HubContext,
  c: Context,
  body: unknown,
): Promise<WriteKeyPrincipal> {
  const fromBody =
    typeof body === 'object' &&
    body !== null &&
    typeof (body as { writeKey?: unknown }).writeKey === 'string'
      ? (body as { writeKey: string }).writeKey
      : null;
  const key = basicUser(c.req.header('authorization')) || fromBody;
  if (!key) {
    throw unauthorized(
      c,
      'Send the write key as the username of HTTP Basic auth (or as "writeKey" in the body).',
    );
  }
  const principal = await authenticateWriteKey(ctx.db, key);
  if (!principal) throw unauthorized(c, 'The write key is unknown or has been revoked.');
  return principal;
}

/**
 * The tracking routes, mounted at `/v1`.
 *
 * @example
 * app.route('/v1', trackingRoutes(ctx));
 */
export function trackingRoutes(ctx: HubContext): Hono {
  const app = new Hono();
  // PGlite runs one transaction at a time: more writers would only split batches.
  const writer = createIngestWriter(ctx.db, ctx.config, {
    writers: runsOneAtATime(ctx.db) ? 1 : 2,
  });

  for (const type of MESSAGE_TYPES) {
    app.post(`/${type}`, async (c) => {
      const body = await readJson(c, MAX_MESSAGE_BYTES);
      const principal = await authenticate(ctx, c, body);
      const parsed = parseMessage(body, {
        type: type as MessageType,
        source: principal.source,
        receivedAt: new Date(),
        config: ctx.config,
      });
      if (!parsed.ok) {
        await recordRejections(ctx.db, principal, [rejection(body, null, parsed.errors)]);
        throw new HubError(
          400,
          'invalid-message',
          'Invalid message',
          describe(parsed.errors),
          parsed.errors,
        );
      }
      await writer.write([parsed.message]);
      return c.json({ success: true });
    });
  }

  const batch = async (c: Context) => {
    const body = await readJson(c, MAX_BATCH_BYTES);
    const principal = await authenticate(ctx, c, body);
    const list = (body as { batch?: unknown } | null)?.batch;
    if (!Array.isArray(list)) {
      throw new HubError(
        400,
        'invalid-batch',
        'Invalid batch',
        'The body must be {"batch": [messages]}.',
        [{ field: 'batch', message: 'must be an array of messages' }],
      );
    }
    const receivedAt = new Date();
    const valid: PreparedMessage[] = [];
    const rejected: Rejection[] = [];
    list.forEach((raw, index) => {
      const parsed = parseMessage(raw, {
        source: principal.source,
        receivedAt,
        batchSentAt: (body as { sentAt?: unknown }).sentAt,
        config: ctx.config,
        prefix: `batch[${index}]`,
      });
      if (parsed.ok) valid.push(parsed.message);
      else rejected.push(rejection(raw, index, parsed.errors));
    });
    if (rejected.length > 0) await recordRejections(ctx.db, principal, rejected);
    if (valid.length === 0 && list.length > 0) {
      const errors = rejected.flatMap((r) => r.errors);
      throw new HubError(400, 'invalid-batch', 'Invalid batch', describe(errors), errors);
    }
    const result = await writer.write(valid);
    return c.json({
      success: true,
      accepted: result.accepted,
      duplicates: result.duplicates,
      rejected: rejected.map(({ index, messageId, errors }) => ({ index, messageId, errors })),
    });
  };
  app.post('/batch', batch);
  // Segment's historical import endpoint takes the same body.
  app.post('/import', batch);

  return app;
}

function rejection(raw: unknown, index: number | null, errors: Rejection['errors']): Rejection {
  const id = (raw as { messageId?: unknown } | null)?.messageId;
  return {
    index,
    messageId: typeof id === 'string' ? id.slice(0, 256) : null,
    reason: describe(errors),
    errors,
  };
}

function describe(errors: Rejection['errors']): string {
  const first = errors.slice(0, 3).map((e) => `${e.field}: ${e.message}`);
  const more = errors.length > 3 ? ` (and ${errors.length - 3} more)` : '';
  return first.join('; ') + more;
}
