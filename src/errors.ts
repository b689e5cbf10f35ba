/** A field-level problem, as listed in a problem+json `errors` member. */
export interface FieldError {
  /** A JSON pointer-ish path to the field, e.g. `batch[3].userId` or `limit`. */
  field: string;
  message: string;
}

/**
 * The hub's one error type. Domain code throws it; the API renders it as RFC 9457
 * problem+json and the CLI prints its detail. Never put a secret or personal data in it.
 *
 * @example
 * throw new HubError(404, 'not-found', 'Profile not found', `No profile with id ${id}.`);
 */
export class HubError extends Error {
  constructor(
    readonly status: number,
    /** A short stable slug; the problem `type` is derived from it. */
    readonly code: string,
    readonly title: string,
    readonly detail?: string,
    readonly errors?: FieldError[],
    /** Extra members for the problem document. */
    readonly extra?: Record<string, unknown>,
  ) {
    super(detail ?? title);
    this.name = 'HubError';
  }
}

export const notFound = (what: string, id: string) =>
  new HubError(404, 'not-found', `${what} not found`, `No ${what.toLowerCase()} with id ${id}.`);

export const badRequest = (detail: string, errors?: FieldError[]) =>
  new HubError(400, 'invalid-request', 'Invalid request', detail, errors);
