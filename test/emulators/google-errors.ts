/**
 * Google's error responses, shared by the Google API emulators: the JSON error body
 * `{ error: { code, message, status, details? } }` (https://cloud.google.com/apis/design/errors)
 * and the front end's HTML pages for 404 routes and 502s.
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

export interface GoogleErrorBody {
  error: { code: number; message: string; status: string; details?: unknown[] };
}

/** A failed call, rendered by the server as Google's JSON error. */
export class GoogleApiError extends Error {
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

  body(): GoogleErrorBody {
    const error: GoogleErrorBody['error'] = {
      code: this.code,
      message: this.message,
      status: this.status,
    };
    if (this.details) error.details = this.details;
    return { error };
  }
}

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
