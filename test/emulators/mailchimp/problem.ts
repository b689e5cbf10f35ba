/**
 * Mailchimp's error document (RFC 7807 "problem detail", which Mailchimp calls the Problem Detail
 * Document): `type`, `title`, `status`, `detail`, `instance`, plus `errors[{field, message}]` on
 * validation failures. Titles and details below are the ones Mailchimp sends, as recorded in
 * ../shared/VENDOR-APIS.md §1.3 and in public recorded traffic (grouparoo's nock fixtures); the
 * few that could not be confirmed are marked "[inferred]".
 */

export const PROBLEM_TYPE = 'https://mailchimp.com/developer/marketing/docs/errors/';

export interface FieldError {
  field: string;
  message: string;
}

/** A Mailchimp error answer, thrown by the emulator's handlers and rendered by the server. */
export class MailchimpProblem extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    readonly detail: string,
    readonly errors?: FieldError[],
    readonly headers: Record<string, string> = {},
  ) {
    super(`${status} ${title}: ${detail}`);
  }

  /** The body Mailchimp sends; `instance` is the request id, also sent as X-Request-Id. */
  body(instance: string): Record<string, unknown> {
    const body: Record<string, unknown> = {
      type: PROBLEM_TYPE,
      title: this.title,
      status: this.status,
      detail: this.detail,
      instance,
    };
    if (this.errors) body.errors = this.errors;
    return body;
  }
}

const VALIDATION_DETAIL =
  "The resource submitted could not be validated. For field-specific details, see the 'errors' array.";

export const problems = {
  notFound: () =>
    new MailchimpProblem(404, 'Resource Not Found', 'The requested resource could not be found.'),
  methodNotAllowed: (allow: string[], detail?: string) =>
    new MailchimpProblem(
      405,
      'Method Not Allowed',
      detail ??
        "The requested method and resource are not compatible. See the Allow header for this resource's available methods.",
      undefined,
      { Allow: allow.join(', ') },
    ),
  apiKeyMissing: () =>
    new MailchimpProblem(401, 'API Key Missing', 'Your request did not include an API key.'),
  apiKeyInvalid: () =>
    new MailchimpProblem(
      401,
      'API Key Invalid',
      "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
    ),
  jsonParse: () =>
    new MailchimpProblem(
      400,
      'JSON Parse Error',
      'We encountered an unspecified JSON parsing error.',
    ),
  /** A schema failure: Mailchimp names the field and what was wrong in `errors`. */
  invalid: (errors: FieldError[]) =>
    new MailchimpProblem(400, 'Invalid Resource', VALIDATION_DETAIL, errors),
  invalidResource: (detail: string, errors?: FieldError[]) =>
    new MailchimpProblem(400, 'Invalid Resource', detail, errors),
  badRequest: (detail: string) => new MailchimpProblem(400, 'Bad Request', detail),
  fakeEmail: (email: string) =>
    new MailchimpProblem(
      400,
      'Invalid Resource',
      `${email} looks fake or invalid, please enter a real email address.`,
    ),
  memberExists: (email: string) =>
    new MailchimpProblem(
      400,
      'Member Exists',
      `${email} is already a list member. Use PUT to insert or update list members.`,
    ),
  compliance: (email: string) =>
    new MailchimpProblem(
      400,
      'Member In Compliance State',
      `${email} is in a compliance state due to unsubscribe, bounce, or compliance review and cannot be subscribed.`,
    ),
  forgotten: (email: string) =>
    new MailchimpProblem(
      400,
      'Forgotten Email Not Subscribed',
      `${email} was permanently deleted and cannot be re-imported. The contact must re-subscribe to get back on the list.`,
    ),
  mergeFields: (errors: FieldError[]) =>
    new MailchimpProblem(400, 'Invalid Resource', 'Your merge fields were invalid.', errors),
  /** The 10-connection limit (the detail string many client test suites match on). */
  tooManyConnections: (limit: number) =>
    new MailchimpProblem(
      429,
      'Too Many Requests',
      `You have exceeded the limit of ${limit} simultaneous connections.`,
    ),
  /** Not a documented Mailchimp limit: the emulator's optional per-minute quota. */
  tooManyRequestsPerMinute: (limit: number) =>
    new MailchimpProblem(
      429,
      'Too Many Requests',
      `You have exceeded the limit of ${limit} requests per minute.`,
    ),
};

/** The body an injected status fault answers with. */
export function faultProblem(status: 429 | 500 | 502 | 503, maxConnections: number) {
  switch (status) {
    case 429:
      return problems.tooManyConnections(maxConnections);
    case 500:
      return new MailchimpProblem(
        500,
        'Internal Server Error',
        'An unexpected internal error has occurred. Please contact Support for more information.',
      );
    case 502:
      return new MailchimpProblem(502, 'Bad Gateway', 'The server received an invalid response.');
    case 503:
      return new MailchimpProblem(
        503,
        'Service Unavailable',
        'The server is temporarily unable to handle the request. Please try again later.',
      );
  }
}
