/**
 * The Google Sheets transport: the configuration, the googleapis client built from it, and the
 * one wrapper every Sheets call goes through, which turns googleapis' errors into the SDK's kinds
 * with the method, the URL without its query, the status and Google's own message — never the
 * gaxios error itself, whose config holds the Authorization header.
 */
// Only the Sheets API of googleapis: its index loads every Google API there is (about 100 MB in
// every hub that merely has this plugin installed).
import {
  auth as googleAuth,
  sheets,
  type sheets_v4,
} from 'googleapis/build/src/apis/sheets/index.js';
import {
  classifyHttpFailure,
  ConfigError,
  retryAfterMs,
  secret,
  TransientError,
  VendorError,
  vendorMessage,
  z,
  type CheckResult,
  type DestinationCheck,
} from 'audiencehub/sdk';

/** What Sheets lets one workbook hold: Σ rowCount × columnCount of its tabs, empty cells too. */
export const CELL_LIMIT = 10_000_000;
/** Google recommends at most 2 MB a request; leave room for the envelope (developers.google.com/sheets/api/limits). */
export const MAX_BODY_BYTES = 1_900_000;
/** A cell holds at most 50,000 characters. */
export const MAX_CELL_CHARS = 50_000;
/** Write requests count per minute per user; Google's 429 says nothing about when to retry. */
export const QUOTA_WINDOW_MS = 60_000;

const SCOPE = 'https://www.googleapis.com/auth/spreadsheets';

const ServiceAccountKey = z.object({
  client_email: z.string().min(3),
  private_key: z.string().min(1),
});

export const SheetsConfig = z
  .object({
    /** The id in the spreadsheet's URL: docs.google.com/spreadsheets/d/<id>/edit. */
    spreadsheetId: z.string().regex(/^[A-Za-z0-9_-]{10,200}$/, 'the id from the spreadsheet URL'),
    /** A service account's JSON key file, whole; share the spreadsheet with its client_email. */
    serviceAccountKey: secret(
      z.string().refine((text) => {
        try {
          return ServiceAccountKey.safeParse(JSON.parse(text)).success;
        } catch {
          return false;
        }
      }, 'a service account JSON key with client_email and private_key'),
    ).optional(),
    /** An OAuth access token with the spreadsheets scope (short-lived: proxies, tests). */
    accessToken: secret(z.string().min(1)).optional(),
    /** The tab to write; default: the segment's name. */
    tabName: z
      .string()
      .min(1)
      .max(100)
      .refine((t) => !/[[\]*?/\\:]/.test(t), 'no [ ] * ? / \\ : in a tab name')
      .optional(),
    /** Another API root (a proxy, an emulator); only its origin counts. */
    rootUrl: z.url({ protocol: /^https?$/ }).optional(),
    /** How long a quota 429 waits before the batch is tried again (Google's window: a minute). */
    quotaWaitMs: z.number().int().min(0).max(600_000).default(QUOTA_WINDOW_MS),
  })
  .refine((c) => (c.serviceAccountKey === undefined) !== (c.accessToken === undefined), {
    message: 'give either serviceAccountKey or accessToken',
    path: ['serviceAccountKey'],
  });
export type SheetsConfig = z.infer<typeof SheetsConfig>;

/** Whom to share the spreadsheet with, for messages: the service account, or "the token's user". */
export function principal(config: SheetsConfig): string {
  if (!config.serviceAccountKey) return "the access token's account";
  return (JSON.parse(config.serviceAccountKey) as { client_email: string }).client_email;
}

// One client per parsed config (the engine parses a config once per run), so a service
// account's token is fetched once and reused by every call of the run.
const clients = new WeakMap<SheetsConfig, sheets_v4.Sheets>();

/**
 * The Sheets client for a config. `retry: false`: googleapis would otherwise retry GETs and PUTs
 * itself, ignoring the quota window; the engine retries whole batches instead.
 */
export function sheetsClient(config: SheetsConfig): sheets_v4.Sheets {
  let client = clients.get(config);
  if (!client) {
    let auth;
    if (config.serviceAccountKey) {
      const key = ServiceAccountKey.parse(JSON.parse(config.serviceAccountKey));
      auth = new googleAuth.JWT({
        email: key.client_email,
        key: key.private_key,
        scopes: [SCOPE],
      });
    } else {
      auth = new googleAuth.OAuth2();
      auth.setCredentials({ access_token: config.accessToken });
    }
    client = sheets({
      version: 'v4',
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
  if (typeof (headers as Headers).get === 'function')
    return (headers as Headers).get(name) ?? undefined;
  const value = (headers as Record<string, unknown>)[name];
  return typeof value === 'string' ? value : undefined;
}

/**
 * Run one Sheets call; a failure leaves as a ConfigError (401, 403, 404: with what to do), a
 * TransientError (429 after the quota window, 5xx, no answer) or a VendorError (other 4xx).
 *
 * @example
 * const { data } = await call(config, 'read the spreadsheet', (s) => s.spreadsheets.get({ spreadsheetId }));
 */
export async function call<T>(
  config: SheetsConfig,
  what: string,
  fn: (sheets: sheets_v4.Sheets) => Promise<{ data: T }>,
): Promise<{ data: T }> {
  try {
    return await fn(sheetsClient(config));
  } catch (error) {
    throw sheetsError(config, what, error);
  }
}

function sheetsError(config: SheetsConfig, what: string, error: unknown): Error {
  if (
    error instanceof ConfigError ||
    error instanceof TransientError ||
    error instanceof VendorError
  ) {
    return error;
  }
  const e = (error ?? {}) as GaxiosLike;
  const status = e.response?.status;
  const method = (e.config?.method ?? 'GET').toUpperCase();
  const url = String(e.config?.url ?? config.rootUrl ?? 'https://sheets.googleapis.com');
  if (status === undefined) {
    const code = typeof e.code === 'string' ? e.code : 'no answer';
    // A service account's token request fails here too: a key Google refuses is not transient.
    if (/invalid_grant|invalid_client|unauthorized_client/i.test(String(e.message))) {
      return new ConfigError(
        `Google refused the service account key while trying to ${what} (${code}).`,
      );
    }
    return new TransientError(`Google Sheets could not be reached to ${what}: ${code}`);
  }
  const body = e.response?.data;
  const said = vendorMessage(body);
  const id = config.spreadsheetId;
  if (status === 404) {
    return new ConfigError(
      `Google Sheets has no spreadsheet ${id} (404 to ${what}): it was deleted or the id is wrong.`,
    );
  }
  if (status === 403) {
    return new ConfigError(
      `Google Sheets refused to ${what} (403${said ? `: ${said}` : ''}): share spreadsheet ${id} with ${principal(config)} as an Editor.`,
    );
  }
  if (status === 401) {
    return new ConfigError(
      `Google Sheets refused the credentials (401) to ${what}: ${config.accessToken ? 'the access token expired or was revoked' : 'the service account key was revoked'}.`,
    );
  }
  const failure = classifyHttpFailure('Google Sheets', {
    method,
    url,
    status,
    headers: { 'retry-after': header(e.response?.headers, 'retry-after') },
    body,
  });
  if (status === 429) {
    // Quota errors carry no Retry-After; the per-minute window has passed after a minute.
    return new TransientError(failure.message, {
      retryAfterMs: retryAfterMs(header(e.response?.headers, 'retry-after')) ?? config.quotaWaitMs,
    });
  }
  return failure;
}

/**
 * Pass when the spreadsheet exists and the credentials may edit it. Sheets has no "may I write"
 * question, so the check writes the spreadsheet's own title back to it: a no-op for the
 * document, refused (403) where the account may only read. Costs one read and one write of the
 * per-minute quotas.
 */
export const check: DestinationCheck<SheetsConfig> = async ({ config }) => {
  try {
    const { data } = await call(config, 'open the spreadsheet', (s) =>
      s.spreadsheets.get({ spreadsheetId: config.spreadsheetId, fields: 'properties.title' }),
    );
    await call(config, 'write to the spreadsheet', (s) =>
      s.spreadsheets.batchUpdate({
        spreadsheetId: config.spreadsheetId,
        requestBody: {
          requests: [
            {
              updateSpreadsheetProperties: {
                properties: { title: data.properties?.title ?? '' },
                fields: 'title',
              },
            },
          ],
        },
      }),
    );
    return { ok: true } satisfies CheckResult;
  } catch (error) {
    return { ok: false, reason: error instanceof Error ? error.message : String(error) };
  }
};
