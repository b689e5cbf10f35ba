/**
 * How Google's API front end answers, shared by the Google API emulators (Sheets, GA4): JSON
 * answers with the `vary` header Google sends, its JSON errors and HTML pages, the 400 for a body
 * that does not parse or breaks the discovery schema, the injected status faults, and the log
 * entry's status and error. Each emulator routes and answers its API itself; the error bodies
 * are in ./google-errors.ts.
 *
 * @example
 * const answer = answerOf(() => ({ status: 200, body: { echo: readJsonBody(req, raw) } }));
 * recordAnswer(record, answer);
 * sendAnswer(res, answer);
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { gunzipSync } from 'node:zlib';
import { GoogleApiError, htmlErrorPage } from './google-errors.ts';
import type { Fault, RecordedRequest } from './types.ts';

/** What the emulator answers: a JSON value, or a string sent as it is (an HTML page). */
export interface GoogleAnswer {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

/** The log entry fields every Google emulator fills in. */
export interface GoogleRecordedRequest extends RecordedRequest {
  /**
   * The discovery method id, e.g. `sheets.spreadsheets.values.update` or
   * `analyticsdata.properties.runReport`.
   */
  operation?: string;
  /** The injected fault that answered (or swallowed) this request. */
  fault?: Fault['kind'];
  /** Google's error message, for a 4xx/5xx answer. */
  error?: string;
}

/** Google's JSON error, with the headers the error carries (Retry-After, WWW-Authenticate). */
export function answerError(e: GoogleApiError): GoogleAnswer {
  return { status: e.code, body: e.body(), headers: e.headers };
}

/** What `handle` answers, or the Google error it threw; any other throw is a bug and goes on. */
export function answerOf(handle: () => GoogleAnswer): GoogleAnswer {
  try {
    return handle();
  } catch (e) {
    if (!(e instanceof GoogleApiError)) throw e;
    return answerError(e);
  }
}

/** The front end's HTML page for a path no API serves (404) or a 502. */
export function htmlAnswer(status: 404 | 502, headers?: Record<string, string>): GoogleAnswer {
  return {
    status,
    body: htmlErrorPage(status),
    headers: { ...headers, 'content-type': 'text/html; charset=UTF-8' },
  };
}

/**
 * The answer to an injected status fault: the HTML 502 page, or the API's JSON error; `quotaError`
 * is the API's own 429. Retry-After is sent only when the fault asks for it.
 */
export function faultAnswer(
  fault: Extract<Fault, { kind: 'status' }>,
  quotaError: () => GoogleApiError,
): GoogleAnswer {
  const headers: Record<string, string> = {};
  if (fault.retryAfterSeconds !== undefined) {
    headers['retry-after'] = String(fault.retryAfterSeconds);
  }
  if (fault.status === 502) return htmlAnswer(502, headers);
  const e =
    fault.status === 429
      ? quotaError()
      : fault.status === 500
        ? internalError()
        : new GoogleApiError('UNAVAILABLE', 'The service is currently unavailable.');
  return { status: e.code, body: e.body(), headers };
}

/** Writes the answer with the headers Google sends on every API response. */
export function sendAnswer(res: ServerResponse, answer: GoogleAnswer): void {
  const text = typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body);
  res.writeHead(answer.status, {
    'content-type': 'application/json; charset=UTF-8',
    vary: 'Origin, X-Origin, Referer',
    ...answer.headers,
  });
  res.end(text);
}

/**
 * The request body as JSON, gunzipped when sent with `content-encoding: gzip`; undefined when
 * empty. Throws Google's 400 for a body that does not parse.
 */
export function readJsonBody(req: IncomingMessage, raw: Buffer): unknown {
  if (raw.length === 0) return undefined;
  try {
    return JSON.parse(
      (req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw).toString('utf8'),
    );
  } catch {
    throw new GoogleApiError(
      'INVALID_ARGUMENT',
      'Invalid JSON payload received. Unexpected token.',
    );
  }
}

/**
 * Google's 400 for the first departure from the discovery schema in the body or the query, as
 * the real API refuses such a request ("Invalid JSON payload received. Unknown name …");
 * undefined when there is none. Departures elsewhere (route, response) are only recorded.
 */
export function schemaRejection(
  violations: ReadonlyArray<{ where: string; message: string }>,
): GoogleApiError | undefined {
  const rejected = violations.find((v) => v.where === 'body' || v.where === 'query');
  if (!rejected) return undefined;
  return new GoogleApiError(
    'INVALID_ARGUMENT',
    `Invalid JSON payload received. ${rejected.message}`,
    [
      {
        '@type': 'type.googleapis.com/google.rpc.BadRequest',
        fieldViolations: [{ field: rejected.where, description: rejected.message }],
      },
    ],
  );
}

/** Puts the answer's status, and for a 4xx/5xx Google's message, in the request's log entry. */
export function recordAnswer(record: GoogleRecordedRequest, answer: GoogleAnswer): void {
  record.status = answer.status;
  if (answer.status >= 400) {
    const b = answer.body as { error?: { message?: string } } | string;
    record.error = typeof b === 'string' ? `HTTP ${answer.status}` : b.error?.message;
  }
}

/** Ends the connection without an answer, as an injected drop fault asks. */
export function dropConnection(
  req: IncomingMessage,
  record: GoogleRecordedRequest,
  kind: 'drop' | 'drop-after-apply',
): void {
  record.fault = kind;
  req.socket.destroy();
}

/**
 * A bug in the emulator (its handler threw): logged with its stack and answered as Google's 500,
 * so the client fails at once rather than hang. Fits `startHttpEmulator`'s `onError`.
 */
export function answerEmulatorBug(
  e: unknown,
  { res, record }: { res: ServerResponse; record: GoogleRecordedRequest },
): void {
  record.status = 500;
  record.error = `emulator bug: ${e instanceof Error ? e.stack : String(e)}`;
  if (!res.headersSent) sendAnswer(res, answerError(internalError()));
}

function internalError(): GoogleApiError {
  return new GoogleApiError('INTERNAL', 'Internal error encountered.');
}
