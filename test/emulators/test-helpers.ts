/** Helpers shared by the emulator suites that drive a Google emulator through googleapis. */

/** A rejected googleapis call, as a plain object a test can assert on. */
export interface GoogleFailure {
  /** The HTTP status; undefined when no answer came (a dropped connection). */
  status?: number;
  /** The network error code, e.g. `ECONNRESET`. */
  code?: string;
  message: string;
  /** Google's JSON error, when the body was one. */
  error?: { code: number; message: string; status: string; details?: unknown[] };
  /** The body as googleapis parsed it (a string for Google's HTML error pages). */
  body?: unknown;
  headers?: Headers;
}

/**
 * The rejection of a googleapis call (fails the test if the call succeeds).
 *
 * @example
 * const denied = await googleFailure(sheets.spreadsheets.get({ spreadsheetId }));
 * expect(denied.error?.status).toBe('PERMISSION_DENIED');
 */
export async function googleFailure(call: Promise<unknown>): Promise<GoogleFailure> {
  try {
    await call;
  } catch (e) {
    const err = e as {
      status?: number;
      code?: string;
      message: string;
      response?: { data?: unknown; headers?: Headers };
    };
    const data = err.response?.data as { error?: GoogleFailure['error'] } | undefined;
    return {
      status: err.status,
      code: err.code,
      message: err.message,
      error: typeof data === 'object' ? data?.error : undefined,
      body: data,
      headers: err.response?.headers,
    };
  }
  throw new Error('expected the call to fail');
}
