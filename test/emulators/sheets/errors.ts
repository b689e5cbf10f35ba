/**
 * Google's error responses, as the Sheets API sends them: a JSON body
 * `{ error: { code, message, status, details? } }` (https://cloud.google.com/apis/design/errors),
 * except the front end's HTML pages for 404 routes and 502s.
 */

export type GoogleStatus =
  | 'INVALID_ARGUMENT'
  | 'UNAUTHENTICATED'
  | 'PERMISSION_DENIED'
  | 'NOT_FOUND'
  | 'RESOURCE_EXHAUSTED'
  | 'INTERNAL'
  | 'UNIMPLEMENTED'
  | 'UNAVAILABLE';

const CODES: Record<GoogleStatus, number> = {
  INVALID_ARGUMENT: 400,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  NOT_FOUND: 404,
  RESOURCE_EXHAUSTED: 429,
  INTERNAL: 500,
  UNIMPLEMENTED: 501,
  UNAVAILABLE: 503,
};

/** A failed call: rendered by the server as Google's JSON error. */
export class SheetsApiError extends Error {
  readonly code: number;
  constructor(
    readonly status: GoogleStatus,
    message: string,
    readonly details?: unknown[],
    readonly headers?: Record<string, string>,
  ) {
    super(message);
    this.code = CODES[status];
  }

  body(): { error: { code: number; message: string; status: string; details?: unknown[] } } {
    const error: { code: number; message: string; status: string; details?: unknown[] } = {
      code: this.code,
      message: this.message,
      status: this.status,
    };
    if (this.details) error.details = this.details;
    return { error };
  }
}

export const invalid = (message: string): SheetsApiError =>
  new SheetsApiError('INVALID_ARGUMENT', message);

export const notFound = (): SheetsApiError =>
  new SheetsApiError('NOT_FOUND', 'Requested entity was not found.');

export const unparsableRange = (range: string): SheetsApiError =>
  invalid(`Unable to parse range: ${range}`);

export const cellLimit = (limit: number): SheetsApiError =>
  invalid(
    `This action would increase the number of cells in the workbook above the limit of ${limit} cells.`,
  );

export type QuotaKind = 'Read' | 'Write';
export type QuotaScope = 'user' | 'project';

/**
 * The 429 Sheets sends when a per-minute quota runs out; the body follows recorded responses
 * (ErrorInfo RATE_LIMIT_EXCEEDED plus a Help link). Google sends no Retry-After with it.
 */
export function quotaExceeded(
  kind: QuotaKind,
  scope: QuotaScope,
  limitValue: number,
  retryAfterSeconds?: number,
): SheetsApiError {
  const limitName = `${kind} requests per minute${scope === 'user' ? ' per user' : ''}`;
  const limitId = `${kind}RequestsPerMinutePer${scope === 'user' ? 'User' : 'Project'}`;
  return new SheetsApiError(
    'RESOURCE_EXHAUSTED',
    `Quota exceeded for quota metric '${kind} requests' and limit '${limitName}' of service 'sheets.googleapis.com' for consumer 'project_number:${PROJECT_NUMBER}'.`,
    [
      {
        '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
        reason: 'RATE_LIMIT_EXCEEDED',
        domain: 'googleapis.com',
        metadata: {
          quota_location: 'global',
          quota_metric: `sheets.googleapis.com/${kind.toLowerCase()}_requests`,
          quota_limit: limitId,
          quota_limit_value: String(limitValue),
          consumer: `projects/${PROJECT_NUMBER}`,
          service: 'sheets.googleapis.com',
        },
      },
      {
        '@type': 'type.googleapis.com/google.rpc.Help',
        links: [
          {
            description: 'Request a higher quota limit.',
            url: 'https://cloud.google.com/docs/quotas/help/request_increase',
          },
        ],
      },
    ],
    retryAfterSeconds === undefined ? undefined : { 'retry-after': String(retryAfterSeconds) },
  );
}

/** The Cloud project the emulator pretends the caller belongs to. */
export const PROJECT_NUMBER = '123456789012';

/** What Google's front end answers for a path no API serves, and for a 502: HTML, not JSON. */
export function htmlErrorPage(status: 404 | 502): string {
  const [title, text] =
    status === 404
      ? ['Not Found', 'The requested URL was not found on this server.']
      : [
          'Server Error',
          'The server encountered a temporary error and could not complete your request.<p>Please try again in 30 seconds.',
        ];
  return `<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <title>Error ${status} (${title})!!1</title>\n  <p><b>${status}.</b> <ins>That’s an error.</ins>\n  <p>${text}  <ins>That’s all we know.</ins>\n`;
}
