/**
 * Google's error responses, as the Sheets API sends them: a JSON body
 * `{ error: { code, message, status, details? } }` (https://cloud.google.com/apis/design/errors).
 * The front end's HTML pages for 404 routes and 502s are shared: ../google-errors.ts.
 */

import { GoogleApiError } from '../google-errors.ts';

/** A failed call of the Sheets API, rendered by the server as Google's JSON error. */
export class SheetsApiError extends GoogleApiError {}

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
