/**
 * The three ways a plugin call can go wrong, kept apart because the engine treats them apart:
 * - {@link ConfigError}: the configuration is wrong (bad credentials, a missing audience, a
 *   mapping the destination refuses). Shown to the admin, never retried until it changes.
 * - {@link TransientError}: the service is busy or unreachable (429, 5xx, network). Retried,
 *   after `retryAfterMs` when the service said how long to wait.
 * - A rejected row is not an error: `sync` returns `{ id, status: 'rejected', reason }` for it,
 *   so one bad row never fails a batch.
 * Messages must never hold a secret or a row's personal data beyond what identifies the row.
 */

/**
 * The configuration cannot work: fix it, then try again.
 *
 * @example
 * if (res.status === 401) throw new ConfigError('Mailchimp refused the API key (401).');
 */
export class ConfigError extends Error {
  readonly kind = 'config';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ConfigError';
  }
}

/**
 * Worth retrying: the service is rate limiting, failing or out of reach.
 *
 * @example
 * throw new TransientError('Mailchimp answered 429: too many requests', { retryAfterMs: 30_000 });
 */
export class TransientError extends Error {
  readonly kind = 'transient';
  /** How long the service asked to wait, when it said. */
  readonly retryAfterMs?: number;
  constructor(message: string, options: { retryAfterMs?: number; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = 'TransientError';
    this.retryAfterMs = options.retryAfterMs;
  }
}

/**
 * The service refused a request for a reason that retrying will not fix and that is not the
 * configuration's fault (a 400 on a malformed request, say): a bug to report, kept apart from
 * misuse. Carries the method, the URL (without its query), the status and the vendor's message.
 */
export class VendorError extends Error {
  readonly kind = 'vendor';
  constructor(
    message: string,
    readonly request: { method: string; url: string; status: number },
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'VendorError';
  }
}

/** Is this error one the engine retries? */
export const isTransient = (error: unknown): error is TransientError =>
  error instanceof TransientError;
