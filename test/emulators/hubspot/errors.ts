/**
 * HubSpot's error bodies: `{ status: 'error', message, correlationId, category, subCategory?,
 * errors?, context?, links? }` (the `Error` model of HubSpot's OpenAPI specs, as generated in
 * github.com/HubSpot/hubspot-api-nodejs codegen/crm/owners/models/ModelError.ts), with the
 * correlation id also sent as `X-HubSpot-Correlation-Id`. Rate-limit refusals carry the older
 * `errorType: 'RATE_LIMIT'` and `policyName` beside `category: 'RATE_LIMITS'`.
 *
 * Messages quoted from HubSpot are marked with where they were seen; the rest ("wording ours")
 * follow HubSpot's shape but their text could not be confirmed.
 */

export interface ErrorDetail {
  message: string;
  context?: Record<string, string[]>;
}

/** An error answer, thrown by the handlers and rendered by the server. */
export class HubSpotError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  body(correlationId: string): Record<string, unknown> {
    return { status: 'error', message: this.message, correlationId, ...this.extra };
  }
}

const withCategory = (category: string, extra: Record<string, unknown> = {}) => ({
  ...extra,
  category,
});

export const errors = {
  /**
   * A missing or unknown token. The message is HubSpot's, as answered to a private app token
   * it did not know (github.com/HubSpot/hubspot-api-nodejs/issues/432).
   */
  invalidAuthentication: () =>
    new HubSpotError(
      401,
      'Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview',
      withCategory('INVALID_AUTHENTICATION'),
      { 'X-HubSpot-Auth-Failure': '401 Unauthorized' },
    ),

  /** A token without the scope an endpoint needs (hubspot-api-nodejs/issues/268). */
  missingScopes: (scopes: string[]) =>
    new HubSpotError(
      403,
      "This app hasn't been granted all required scopes to make this call. Read more about required scopes here: https://developers.hubspot.com/scopes.",
      {
        errors: [
          {
            message: 'One or more of the following scopes are required.',
            context: { requiredGranularScopes: scopes },
          },
        ],
        links: { scopes: 'https://developers.hubspot.com/scopes' },
        category: 'MISSING_SCOPES',
      },
    ),

  /**
   * The search endpoints' per-second limit. Message and `policyName` as HubSpot sends them
   * (HGData/mk-node-hubspot#84; HubSpot's own Node client retries on exactly this message).
   */
  secondlyLimit: (retryAfterSeconds: number) =>
    new HubSpotError(
      429,
      'You have reached your secondly limit.',
      { errorType: 'RATE_LIMIT', policyName: 'SECONDLY', category: 'RATE_LIMITS' },
      { 'Retry-After': String(retryAfterSeconds) },
    ),

  /** The burst limit per app (hubspot-api-python#117). */
  tenSecondlyLimit: (retryAfterSeconds: number) =>
    new HubSpotError(
      429,
      'You have reached your ten_secondly_rolling limit.',
      { errorType: 'RATE_LIMIT', policyName: 'TEN_SECONDLY_ROLLING', category: 'RATE_LIMITS' },
      { 'Retry-After': String(retryAfterSeconds) },
    ),

  /** A request the API refuses to run; wording ours, category HubSpot's. */
  validation: (message: string, context?: Record<string, string[]>) =>
    new HubSpotError(400, message, withCategory('VALIDATION_ERROR', context ? { context } : {})),

  /** Unreadable JSON in a request body; wording ours. */
  invalidJson: () =>
    new HubSpotError(
      400,
      'Invalid input JSON on line 1: the request body is not valid JSON.',
      withCategory('VALIDATION_ERROR'),
    ),

  /** An unknown id or property; wording ours. */
  notFound: (message: string) => new HubSpotError(404, message, withCategory('OBJECT_NOT_FOUND')),

  /** A path the API does not serve; wording ours. */
  noRoute: (method: string, path: string) =>
    new HubSpotError(
      404,
      `Unable to route ${method} request: ${path}`,
      withCategory('OBJECT_NOT_FOUND'),
    ),

  methodNotAllowed: (method: string, allow: string[]) =>
    new HubSpotError(
      405,
      `HTTP ${method} is not supported by this URL`,
      withCategory('VALIDATION_ERROR'),
      { Allow: allow.join(', ') },
    ),

  /** An injected 5xx; wording ours. */
  server: (status: 500 | 502 | 503) =>
    new HubSpotError(
      status,
      status === 500
        ? 'internal error'
        : 'The service is temporarily unavailable. Please try again later.',
      withCategory(status === 500 ? 'INTERNAL_ERROR' : 'SERVICE_UNAVAILABLE'),
    ),
};
