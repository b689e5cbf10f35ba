/**
 * The Google Analytics transport: the configuration, the googleapis Analytics Data client built
 * from it, and the one wrapper every Data API call goes through. The wrapper retries what passes
 * in seconds (no answer, 5xx, the concurrent-requests 429, a 429 with a short Retry-After) the
 * way the SDK's HTTP client does, and turns every other failure into the SDK's error kinds with
 * the method, the URL without its query, the status and Google's own message — never the
 * gaxios error itself, whose config holds the Authorization header.
 */
import { createPrivateKey } from 'node:crypto';
// Only the Analytics Data API of googleapis: its index loads every Google API there is (about
// 100 MB in every hub that merely has this connector installed).
import {
  analyticsdata,
  auth as googleAuth,
  type analyticsdata_v1beta,
} from 'googleapis/build/src/apis/analyticsdata/index.js';
import {
  classifyHttpFailure,
  ConfigError,
  retryAfterMs,
  secret,
  TransientError,
  VendorError,
  vendorMessage,
  z,
  type PluginContext,
} from 'audiencehub/sdk';
import { isDay, isTimeZone } from './dates.ts';

/** Read access to GA4 reports (developers.google.com/analytics/devguides/reporting/data/v1). */
const SCOPE = 'https://www.googleapis.com/auth/analytics.readonly';

/** Rows one runReport returns at most, whatever its `limit` asks (discovery: RunReportRequest.limit). */
export const MAX_PAGE_ROWS = 250_000;

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

const ServiceAccountKey = z.object({
  client_email: z.string().min(3),
  private_key: z.string().min(1),
  private_key_id: z.string().optional(),
});
type ServiceAccountKey = z.infer<typeof ServiceAccountKey>;

function parseKey(text: string): ServiceAccountKey | undefined {
  try {
    const key = ServiceAccountKey.parse(JSON.parse(text));
    createPrivateKey(key.private_key);
    return key;
  } catch {
    return undefined;
  }
}

export const GaConfig = z
  .object({
    /** The numeric GA4 property id (Admin → Property settings), not a Measurement ID (G-…). */
    propertyId: z
      .string()
      .trim()
      .regex(
        /^(properties\/)?\d+$/,
        'the numeric GA4 property id (Admin → Property settings), not a Measurement ID (G-…)',
      )
      .optional(),
    /** A service account's JSON key file, whole; add its client_email as a Viewer of the property. */
    serviceAccountKey: secret(
      z
        .string()
        .refine(
          (text) => parseKey(text) !== undefined,
          'a service account JSON key with client_email and a PEM private_key',
        ),
    ).optional(),
    /** An OAuth access token with the analytics.readonly scope (short-lived: proxies, tests). */
    accessToken: secret(z.string().min(1)).optional(),
    /** The custom dimension holding the user's id, e.g. `customUser:crm_id`. */
    userIdDimension: z
      .string()
      .regex(
        /^(customUser|customEvent):[A-Za-z][A-Za-z0-9_]*$/,
        'a custom dimension such as customUser:crm_id',
      )
      .optional(),
    /** First day of the first read (`YYYY-MM-DD`); default: 90 days before it. */
    startDate: z.string().refine(isDay, 'a day written YYYY-MM-DD').optional(),
    /** Whole days after its end before a day is read (GA4 processes a day for 24–48 hours). */
    settleDays: z.number().int().min(0).max(30).default(2),
    /** The property's reporting time zone (IANA); default: learnt from the first report. */
    timeZone: z.string().refine(isTimeZone, 'an IANA time zone such as Europe/Paris').optional(),
    /** Only these events; default: all. */
    eventNames: z.array(z.string().min(1)).min(1).optional(),
    /** The revenue metric read beside eventCount, or none. */
    revenueMetric: z.enum(['purchaseRevenue', 'totalRevenue', 'none']).default('purchaseRevenue'),
    /** Rows asked for per runReport call (Google returns at most 250,000). */
    pageSize: z.number().int().min(1).max(MAX_PAGE_ROWS).default(MAX_PAGE_ROWS),
    /** Tokens left for the property's other users: a read stops below them and resumes later. */
    quotaReserve: z
      .object({
        tokensPerHour: z.number().int().min(0).default(2_000),
        tokensPerDay: z.number().int().min(0).default(10_000),
      })
      .default({ tokensPerHour: 2_000, tokensPerDay: 10_000 }),
    /** Another API root (a proxy, an emulator); only its origin counts. */
    rootUrl: z.url({ protocol: /^https?$/ }).optional(),
    /** A BigQuery export NDJSON file (`.ndjson`, `.jsonl`, `.json`, optionally `.gz`) or a folder of them. */
    files: z.string().min(1).optional(),
    /** Export lines between two checkpoints. */
    checkpointEvery: z.number().int().min(1).max(1_000_000).default(5_000),
  })
  .superRefine((c, ctx) => {
    if (c.propertyId === undefined && c.files === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['propertyId'],
        message: 'give propertyId (the Data API), files (a BigQuery export), or both',
      });
    }
    if (c.propertyId === undefined) return;
    if ((c.serviceAccountKey === undefined) === (c.accessToken === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['serviceAccountKey'],
        message: 'give either serviceAccountKey or accessToken to read the property',
      });
    }
    if (c.userIdDimension === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['userIdDimension'],
        message: 'name the custom dimension holding the user id, e.g. customUser:crm_id',
      });
    }
  });
export type GaConfig = z.infer<typeof GaConfig>;

/** The property's resource name: `properties/123`. */
export const propertyName = (config: GaConfig): string =>
  `properties/${config.propertyId!.replace(/^properties\//, '')}`;

/** Whom to grant access to, for messages: the service account's email, or "the token's user". */
export function principal(config: GaConfig): string {
  return config.serviceAccountKey
    ? (parseKey(config.serviceAccountKey)?.client_email ?? 'the service account')
    : "the access token's account";
}

// One client per parsed config (the hub parses a config once per run).
const clients = new WeakMap<GaConfig, analyticsdata_v1beta.Analyticsdata>();

/**
 * The Analytics Data client for a config. A service account signs its own short-lived JWT
 * bearer (`useJWTAccessWithScope`, as Google's own GA Data client libraries do): no call to the
 * token endpoint. `retry: false`: retries are this file's, which honour Retry-After.
 */
export function analyticsClient(config: GaConfig): analyticsdata_v1beta.Analyticsdata {
  let client = clients.get(config);
  if (!client) {
    let auth;
    if (config.serviceAccountKey) {
      const key = parseKey(config.serviceAccountKey)!;
      const jwt = new googleAuth.JWT({
        email: key.client_email,
        key: key.private_key,
        keyId: key.private_key_id,
        scopes: [SCOPE],
      });
      jwt.useJWTAccessWithScope = true;
      auth = jwt;
    } else {
      auth = new googleAuth.OAuth2();
      auth.setCredentials({ access_token: config.accessToken });
    }
    client = analyticsdata({
      version: 'v1beta',
      auth,
      retry: false,
      ...(config.rootUrl ? { rootUrl: new URL(config.rootUrl).origin + '/' } : {}),
    });
    clients.set(config, client);
  }
  return client;
}

interface GaxiosLike {
  code?: unknown;
  message?: unknown;
  config?: { method?: string; url?: string | URL };
  response?: { status?: number; data?: unknown; headers?: unknown };
}

function header(headers: unknown, name: string): string | undefined {
  if (!headers) return undefined;
  if (typeof (headers as Headers).get === 'function') {
    return (headers as Headers).get(name) ?? undefined;
  }
  const value = (headers as Record<string, unknown>)[name];
  return typeof value === 'string' ? value : undefined;
}

const NETWORK =
  /ECONNRESET|ECONNREFUSED|ECONNABORTED|ETIMEDOUT|EPIPE|ENOTFOUND|EAI_AGAIN|socket hang up|other side closed|network/i;

/**
 * How long a spent token quota takes to return. Google says "in under an hour" / "in under 24
 * hours" and no more; waiting the whole window is sure to find every token spent back.
 */
function quotaWaitMs(message: string): number | undefined {
  if (/tokens per day/i.test(message)) return DAY_MS;
  if (/tokens (for a project )?per hour/i.test(message)) return HOUR_MS;
  return undefined;
}

/** Turns a googleapis failure into the SDK's kinds, with what to do about it. */
export function analyticsError(config: GaConfig, what: string, error: unknown): Error {
  if (
    error instanceof ConfigError ||
    error instanceof TransientError ||
    error instanceof VendorError
  ) {
    return error;
  }
  const e = (error ?? {}) as GaxiosLike;
  const status = e.response?.status;
  const method = (e.config?.method ?? 'POST').toUpperCase();
  const url = String(
    e.config?.url ?? config.rootUrl ?? 'https://analyticsdata.googleapis.com',
  ).split('?')[0]!;
  if (status === undefined) {
    const code = typeof e.code === 'string' ? e.code : '';
    const message = typeof e.message === 'string' ? e.message.split('\n')[0]! : '';
    if (NETWORK.test(`${code} ${message}`)) {
      return new TransientError(
        `Google Analytics could not be reached to ${what}: ${code || 'connection lost'}`,
      );
    }
    return new VendorError(`Google Analytics: ${what} failed: ${code || message}`, {
      method,
      url,
      status: 0,
    });
  }
  const body = e.response?.data;
  // Google's front end answers some failures with an HTML page: keep only the status then.
  const said = typeof body === 'string' ? undefined : vendorMessage(body);
  const id = config.propertyId?.replace(/^properties\//, '');
  if (status === 401) {
    return new ConfigError(
      `Google Analytics refused the credentials (401) to ${what}: ${config.accessToken ? 'the access token expired or was revoked' : 'the service account key was deleted or disabled'}.`,
    );
  }
  if (status === 403) {
    if (said && /scope/i.test(said)) {
      return new ConfigError(
        `Google Analytics refused to ${what} (403: ${said}): the credentials need the analytics.readonly scope.`,
      );
    }
    return new ConfigError(
      `Google Analytics refused to ${what} for property ${id} (403${said ? `: ${said}` : ''}): add ${principal(config)} as a Viewer of the property (Admin → Property access management), and check propertyId.`,
    );
  }
  if (status === 400 && said) {
    const field = /Field (\S+) is not a valid (dimension|metric)/.exec(said);
    if (field && field[1] === config.userIdDimension) {
      return new ConfigError(
        `userIdDimension: property ${id} has no custom dimension ${field[1]}. Register the user property as a custom dimension (Admin → Custom definitions) or name one the property has.`,
      );
    }
    if (field && field[1] === config.revenueMetric) {
      return new ConfigError(`revenueMetric: property ${id} has no metric ${field[1]}.`);
    }
    if (/Invalid property ID/i.test(said)) {
      return new ConfigError(`propertyId: ${said}`);
    }
  }
  const failure = classifyHttpFailure('Google Analytics', {
    method,
    url,
    status,
    headers: { 'retry-after': header(e.response?.headers, 'retry-after') },
    body: said,
  });
  if (status === 429) {
    const after = retryAfterMs(header(e.response?.headers, 'retry-after'));
    return new TransientError(failure.message, {
      retryAfterMs: after ?? quotaWaitMs(said ?? ''),
    });
  }
  return failure;
}

/** Attempts after the first for failures that pass in seconds, and the waits between them. */
const RETRIES = 5;
const BACKOFF = { baseMs: 500, maxMs: 60_000 };

const stopped = () => new TransientError('the run was stopped', { retryAfterMs: 0 });

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(stopped());
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    function onAbort() {
      clearTimeout(timer);
      reject(stopped());
    }
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Run one Data API call; a failure leaves as a ConfigError (credentials, access, a dimension
 * the property lacks), a TransientError (quota spent: `retryAfterMs` says when it returns; no
 * answer or 5xx after the retries) or a VendorError (any other refusal).
 *
 * @example
 * const data = await call(config, ctx, 'read the metadata', (ga, options) =>
 *   ga.properties.getMetadata({ name: `${propertyName(config)}/metadata` }, options));
 */
export async function call<T>(
  config: GaConfig,
  ctx: PluginContext,
  what: string,
  fn: (
    ga: analyticsdata_v1beta.Analyticsdata,
    options: { signal: AbortSignal },
  ) => Promise<{ data: T }>,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    if (ctx.signal.aborted) throw stopped();
    try {
      return (await fn(analyticsClient(config), { signal: ctx.signal })).data;
    } catch (error) {
      if (ctx.signal.aborted) throw stopped();
      const failure = analyticsError(config, what, error);
      if (!(failure instanceof TransientError) || attempt > RETRIES) throw failure;
      // Full jitter unless Google said how long; a wait past a minute is the hub's to schedule.
      const exponential = Math.min(BACKOFF.maxMs, BACKOFF.baseMs * 2 ** (attempt - 1));
      const waitMs = failure.retryAfterMs ?? Math.round(Math.random() * exponential);
      if (waitMs > BACKOFF.maxMs) throw failure;
      ctx.log.info('Google Analytics: retrying', { attempt, waitMs, reason: failure.message });
      await sleep(waitMs, ctx.signal);
    }
  }
}
