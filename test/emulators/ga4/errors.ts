/**
 * The Analytics Data API's error responses: Google's JSON error body
 * `{ error: { code, message, status, details? } }` (https://cloud.google.com/apis/design/errors),
 * with the messages the API is seen to send. Where no real response was found the wording is
 * the emulator's own, marked so in README.md.
 */

import { GoogleApiError } from '../google-errors.ts';

/** A failed call of the Data API, rendered by the server as Google's JSON error. */
export class Ga4ApiError extends GoogleApiError {}

const SCHEMA_URL = 'https://developers.google.com/analytics/devguides/reporting/data/v1/api-schema';
const PROPERTY_ID_URL =
  'https://developers.google.com/analytics/devguides/reporting/data/v1/property-id';
const QUOTAS_URL = 'https://developers.google.com/analytics/devguides/reporting/data/v1/quotas';

export const invalid = (message: string): Ga4ApiError =>
  new Ga4ApiError('INVALID_ARGUMENT', message);

/** As the API words it, trailing space included (recorded in public client code and tests). */
export const unknownDimension = (name: string): Ga4ApiError =>
  invalid(
    `Field ${name} is not a valid dimension. For a list of valid dimensions and metrics, see ${SCHEMA_URL} `,
  );

export const unknownMetric = (name: string): Ga4ApiError =>
  invalid(
    `Field ${name} is not a valid metric. For a list of valid dimensions and metrics, see ${SCHEMA_URL} `,
  );

/** A property id that is not a number (a Measurement ID `G-…`, a UA id): 400. */
export const invalidPropertyId = (id: string): Ga4ApiError =>
  invalid(
    `Invalid property ID: ${id}. A numeric Property ID is required. To learn more about Property ID, see ${PROPERTY_ID_URL}.`,
  );

/** A property that does not exist or that the caller may not read: both answer 403. */
export const noPropertyAccess = (): Ga4ApiError =>
  new Ga4ApiError(
    'PERMISSION_DENIED',
    `User does not have sufficient permissions for this property. To learn more about Property ID, see ${PROPERTY_ID_URL}.`,
  );

const errorInfo = (reason: string, method: string) => ({
  '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
  reason,
  domain: 'googleapis.com',
  metadata: { service: 'analyticsdata.googleapis.com', method },
});

const WWW_AUTHENTICATE = {
  'www-authenticate': 'Bearer realm="https://accounts.google.com/", error="invalid_token"',
};

/** A bearer token Google does not accept (unknown, expired, revoked, badly signed). */
export const invalidCredentials = (method: string): Ga4ApiError =>
  new Ga4ApiError(
    'UNAUTHENTICATED',
    'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.',
    [errorInfo('ACCESS_TOKEN_TYPE_UNSUPPORTED', method)],
    WWW_AUTHENTICATE,
  );

/** No credentials at all: the Data API takes OAuth only. */
export const missingCredentials = (method: string): Ga4ApiError =>
  new Ga4ApiError(
    'UNAUTHENTICATED',
    'Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.',
    [errorInfo('CREDENTIALS_MISSING', method)],
    WWW_AUTHENTICATE,
  );

/** An API key instead of OAuth. */
export const apiKeyRefused = (method: string): Ga4ApiError =>
  new Ga4ApiError(
    'UNAUTHENTICATED',
    'API keys are not supported by this API. Expected OAuth2 access token or other authentication credentials that assert a principal. See https://cloud.google.com/docs/authentication',
    [errorInfo('CREDENTIALS_MISSING', method)],
  );

/** A token without an Analytics scope. */
export const insufficientScopes = (method: string): Ga4ApiError =>
  new Ga4ApiError('PERMISSION_DENIED', 'Request had insufficient authentication scopes.', [
    errorInfo('ACCESS_TOKEN_SCOPE_INSUFFICIENT', method),
  ]);

export type QuotaName =
  | 'tokensPerDay'
  | 'tokensPerHour'
  | 'tokensPerProjectPerHour'
  | 'concurrentRequests'
  | 'serverErrorsPerProjectPerHour';

const QUOTA_MESSAGES: Record<QuotaName, string> = {
  tokensPerDay: `Exhausted property tokens per day. These quota tokens will return in under 24 hours. To learn more, see ${QUOTAS_URL}`,
  tokensPerHour: `Exhausted property tokens per hour. These quota tokens will return in under an hour. To learn more, see ${QUOTAS_URL}`,
  tokensPerProjectPerHour: `Exhausted property tokens for a project per hour. These quota tokens will return in under an hour. To learn more, see ${QUOTAS_URL}`,
  concurrentRequests: `Exhausted concurrent requests quota. To learn more, see ${QUOTAS_URL}`,
  serverErrorsPerProjectPerHour: `Exhausted server errors per project per hour quota. To learn more, see ${QUOTAS_URL}`,
};

/** 429 RESOURCE_EXHAUSTED for one of the property's quotas; Google sends no Retry-After with it. */
export function quotaExhausted(quota: QuotaName, retryAfterSeconds?: number): Ga4ApiError {
  return new Ga4ApiError(
    'RESOURCE_EXHAUSTED',
    QUOTA_MESSAGES[quota],
    undefined,
    retryAfterSeconds === undefined ? undefined : { 'retry-after': String(retryAfterSeconds) },
  );
}
