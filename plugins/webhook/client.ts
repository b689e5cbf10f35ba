/**
 * The webhook's transport: its configuration, how a request is signed, and the one place its
 * HTTP goes through (the SDK client, which retries 429, 5xx and dropped connections honouring
 * Retry-After). Every error leaving this file has the secrets blanked out of its message.
 */
import { createHmac, randomUUID } from 'node:crypto';
import {
  ConfigError,
  secret,
  TransientError,
  VendorError,
  z,
  type CheckResult,
  type DestinationCheck,
  type HttpClient,
  type HttpResponse,
  type PluginContext,
} from 'audiencehub/sdk';

/** Rows per request at most; see the limits in ./index.ts for why. */
export const MAX_BATCH = 500;

/** The headers every request carries (README.md documents them for receivers). */
export const HEADERS = {
  signature: 'x-audiencehub-signature',
  timestamp: 'x-audiencehub-timestamp',
  event: 'x-audiencehub-event',
  idempotencyKey: 'idempotency-key',
} as const;

// RFC 9110 §5.6.2: a header name is a token.
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// No line breaks or other control characters: they would split the header.
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const SET_BY_PLUGIN = new Set([
  'host',
  'content-type',
  'content-length',
  'transfer-encoding',
  'connection',
  ...Object.values(HEADERS),
]);

const Headers = z
  .record(z.string().regex(TOKEN, 'not a valid header name'), z.string().regex(FIELD_VALUE))
  .superRefine((headers, ctx) => {
    for (const name of Object.keys(headers)) {
      const lower = name.toLowerCase();
      if (lower === 'authorization') {
        ctx.addIssue({
          code: 'custom',
          path: [name],
          message: 'use the authorization field, which is kept secret',
        });
      } else if (SET_BY_PLUGIN.has(lower) || lower.startsWith('x-audiencehub-')) {
        ctx.addIssue({ code: 'custom', path: [name], message: 'this header is set by the plugin' });
      }
    }
  });

export const WebhookConfig = z
  .object({
    /** Where batches are posted. */
    url: z
      // Not z.httpUrl(): it refuses IP addresses and localhost, which receivers on a LAN use.
      .url({ protocol: /^https?$/, error: 'an http:// or https:// URL' })
      .refine((url) => {
        const { username, password } = new URL(url);
        return !username && !password;
      }, 'no credentials in the URL: they would show wherever the URL does; use authorization'),
    /** The HMAC-SHA256 key receivers verify signatures with. */
    signingKey: secret(z.string().min(16, 'at least 16 characters')),
    /** The Authorization header's whole value, e.g. `Bearer abc…`. */
    authorization: secret(z.string().min(1).regex(FIELD_VALUE)).optional(),
    /** Extra headers sent as they are (not secret: no credentials here). */
    headers: Headers.optional(),
    /** Extra headers whose values are credentials (`X-Api-Key`…): encrypted at rest. */
    secretHeaders: secret(Headers).optional(),
    /** Rows per request, for receivers that take less than the plugin's limit. */
    batchSize: z.number().int().min(1).max(MAX_BATCH).default(MAX_BATCH),
  })
  .refine(
    (c) => {
      const plain = Object.keys(c.headers ?? {}).map((n) => n.toLowerCase());
      return Object.keys(c.secretHeaders ?? {}).every((n) => !plain.includes(n.toLowerCase()));
    },
    { message: 'a header is set both in headers and in secretHeaders', path: ['secretHeaders'] },
  );
export type WebhookConfig = z.infer<typeof WebhookConfig>;

/**
 * The signature of a request, as `sha256=<hex>`: HMAC-SHA256 with the signing key over the
 * timestamp header's value, a dot, and the body's exact bytes (README.md, "Verifying").
 *
 * @example
 * sign('a-key-of-16-chars', 1735689600, '{"ping":true}'); // 'sha256=9c1f…'
 */
export function sign(key: string, timestamp: number, rawBody: string): string {
  const mac = createHmac('sha256', key).update(`${timestamp}.`).update(rawBody, 'utf8');
  return `sha256=${mac.digest('hex')}`;
}

/** Every secret value of a config, longest first, with the token of `Bearer <token>` too. */
function secretValues(config: WebhookConfig): string[] {
  const values = [config.signingKey, ...Object.values(config.secretHeaders ?? {})];
  if (config.authorization) {
    values.push(config.authorization, ...config.authorization.split(/\s+/));
  }
  // Short fragments ("Bearer") are not secrets and would blank out ordinary words.
  return values.filter((v) => v.length >= 8).sort((a, b) => b.length - a.length);
}

/** A message with every secret of the config blanked out (a receiver may echo a header). */
export function redact(message: string, config: WebhookConfig): string {
  return secretValues(config).reduce((text, s) => text.split(s).join('[redacted]'), message);
}

/**
 * The SDK's error kinds with redacted messages. Anything else came straight from axios (an
 * invalid header value, too many redirects…) and holds the request's headers, so only its code
 * leaves this file.
 */
function cleanError(error: unknown, config: WebhookConfig): Error {
  if (error instanceof ConfigError) return new ConfigError(redact(error.message, config));
  if (error instanceof TransientError) {
    return new TransientError(redact(error.message, config), {
      retryAfterMs: error.retryAfterMs,
    });
  }
  if (error instanceof VendorError) {
    return new VendorError(redact(error.message, config), error.request);
  }
  const code = (error as { code?: unknown } | null)?.code;
  const where = endpoint(config);
  if (code === 'ERR_INVALID_CHAR' || code === 'ERR_HTTP_INVALID_HEADER_VALUE') {
    return new ConfigError(`A header for ${where} is not valid in HTTP (${code}).`);
  }
  return new VendorError(
    `The request to ${where} failed: ${typeof code === 'string' ? code : 'unknown error'}`,
    { method: 'POST', url: where, status: 0 },
  );
}

/** The URL without its query, which may hold a token. */
export const endpoint = (config: WebhookConfig) => config.url.split('?')[0]!;

/**
 * The HTTP client for one webhook: the configured headers, retries logged without secrets.
 * `retries` and `timeoutMs` are for `check`, which should answer quickly.
 */
export function webhookClient(
  config: WebhookConfig,
  ctx: PluginContext,
  options: { retries?: number; timeoutMs?: number } = {},
): HttpClient {
  return ctx.http({
    baseUrl: config.url,
    vendor: 'The webhook receiver',
    headers: {
      ...config.headers,
      ...config.secretHeaders,
      ...(config.authorization ? { authorization: config.authorization } : {}),
    },
    onRetry: ({ attempt, waitMs, reason }) =>
      ctx.log.info('webhook request retried', {
        attempt,
        waitMs,
        reason: redact(reason, config),
      }),
    ...options,
  });
}

/**
 * POST one signed JSON body. The body is serialised once, so the bytes signed are the bytes
 * sent, on every retry of the client too (same timestamp, signature and idempotency key).
 * Answers the receiver's 2xx response; throws the SDK's error kinds, redacted.
 */
export async function deliver(
  http: HttpClient,
  config: WebhookConfig,
  request: { event: 'batch' | 'ping'; idempotencyKey: string; body: unknown },
): Promise<HttpResponse<unknown>> {
  const raw = JSON.stringify(request.body);
  const timestamp = Math.floor(Date.now() / 1000);
  let response: HttpResponse<unknown>;
  try {
    response = await http.request({
      method: 'POST',
      path: '',
      // A Buffer goes out untouched; axios would re-serialise (and trim) a string.
      body: Buffer.from(raw, 'utf8'),
      headers: {
        'content-type': 'application/json',
        [HEADERS.event]: request.event,
        [HEADERS.timestamp]: String(timestamp),
        [HEADERS.signature]: sign(config.signingKey, timestamp, raw),
        [HEADERS.idempotencyKey]: request.idempotencyKey,
      },
    });
  } catch (error) {
    throw cleanError(error, config);
  }
  if (response.status < 200 || response.status > 299) {
    throw new ConfigError(
      `The webhook receiver answered ${response.status} to POST ${endpoint(config)}; a receiver must answer 2xx (point the URL at its final address).`,
    );
  }
  return response;
}

/** What a failed check tells the admin to look at, beyond the receiver's own answer. */
function advice(error: Error, config: WebhookConfig): string {
  const status = error instanceof VendorError ? error.request.status : undefined;
  if (error instanceof ConfigError && / answered 40[13] /.test(error.message)) {
    return `${error.message} — check the authorization header and that the receiver verifies signatures with this signing key.`;
  }
  if (status === 404 || status === 405 || status === 410) {
    return `${error.message} — is there a webhook receiver at ${endpoint(config)}?`;
  }
  return error.message;
}

/**
 * Post a signed `{ "ping": true }` (event `ping`) once, without retries: passes when the
 * receiver answers 2xx, otherwise says why (unreachable, refused credentials, no receiver…).
 */
export const check: DestinationCheck<WebhookConfig> = async ({ config }, ctx) => {
  const http = webhookClient(config, ctx, { retries: 0, timeoutMs: 10_000 });
  try {
    await deliver(http, config, {
      event: 'ping',
      idempotencyKey: randomUUID(),
      body: { ping: true, sentAt: new Date().toISOString() },
    });
    return { ok: true } satisfies CheckResult;
  } catch (error) {
    return { ok: false, reason: advice(cleanError(error, config), config) };
  }
};
