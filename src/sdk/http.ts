/**
 * The one HTTP client plugins use: retries what is worth retrying (429, 5xx, network failures)
 * with backoff that honours Retry-After, stops when the run is aborted, and turns every failure
 * into one of the SDK's error kinds with a message that keeps the method, the URL without its
 * query, the status and the vendor's own words — never a header, so never a credential.
 */
import axios, { type AxiosInstance, type AxiosRequestConfig } from 'axios';
import PQueue from 'p-queue';
import { ConfigError, TransientError, VendorError } from './errors.ts';

export interface HttpClientOptions {
  /** The service's base URL; plugins take it from their config so tests can use an emulator. */
  baseUrl: string;
  /** The service's name, for messages: "Mailchimp answered 429 …". */
  vendor: string;
  headers?: Record<string, string>;
  auth?: { username: string; password: string };
  /** Per attempt (default 30 s). */
  timeoutMs?: number;
  /** Attempts after the first for transient failures (default 5). */
  retries?: number;
  /** First backoff step and the longest wait between attempts (default 500 ms and 60 s). */
  backoff?: { baseMs: number; maxMs: number };
  /** Cancels waits and requests in flight. */
  signal?: AbortSignal;
  /** Hears about each retry (never given headers or bodies). */
  onRetry?: (info: { attempt: number; waitMs: number; reason: string }) => void;
  /**
   * Paces requests (each attempt counts) under limits shared with every other client given the
   * same limiter, e.g. all of one source's requests; see {@link createRequestLimiter}.
   */
  limiter?: RequestLimiter;
}

/** Requests in flight and started per second, shared by the clients that hold it. */
export interface RequestLimiter {
  /** Run `task` when the limits allow; a task still waiting when `signal` aborts never runs. */
  schedule<T>(task: () => Promise<T>, signal?: AbortSignal): Promise<T>;
}

/**
 * A limiter for a service's declared limits: at most `concurrency` requests in flight and
 * `requestsPerSecond` started per second. Starts are spaced 1000 / `requestsPerSecond` ms apart,
 * so no second — counted from any moment, as services count — holds more than the limit; a
 * fixed window of one second would let two full windows meet at their edge.
 *
 * @example
 * const limiter = createRequestLimiter({ requestsPerSecond: 4, concurrency: 2 }); // HubSpot search: 4/s
 * const http = createHttpClient({ baseUrl, vendor: 'HubSpot', limiter });
 */
export function createRequestLimiter(limits: {
  requestsPerSecond?: number;
  concurrency?: number;
}): RequestLimiter {
  const rate = limits.requestsPerSecond;
  const queue = new PQueue({
    concurrency: limits.concurrency ?? Infinity,
    ...(rate === undefined ? {} : { intervalCap: 1, interval: Math.ceil(1000 / rate) }),
  });
  return {
    schedule: (task, signal) => queue.add(task, { signal }),
  };
}

export interface HttpRequest {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Relative to the base URL. */
  path: string;
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  headers?: Record<string, string>;
  /** false: a failure is not retried (for requests that must not run twice). */
  retry?: boolean;
}

export interface HttpResponse<T> {
  status: number;
  headers: Record<string, string>;
  data: T;
}

export interface HttpClient {
  request<T = unknown>(request: HttpRequest): Promise<HttpResponse<T>>;
}

const TRANSIENT_STATUS = new Set([408, 425, 429, 500, 502, 503, 504]);
const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ERR_NETWORK',
  'ERR_SOCKET_CONNECTION_TIMEOUT',
]);

/**
 * The wait a Retry-After header asks for, in milliseconds: delta-seconds or an HTTP date
 * (RFC 9110 §10.2.3); undefined when absent or unreadable.
 *
 * @example
 * retryAfterMs('30'); // 30000
 */
export function retryAfterMs(
  value: string | undefined | null,
  now = Date.now(),
): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/**
 * The vendor's own message from an error body: problem+json `detail`/`title`, Google's
 * `error.message`, or a plain `message`/`error` string.
 */
export function vendorMessage(body: unknown): string | undefined {
  if (typeof body === 'string') return body.slice(0, 300) || undefined;
  if (!body || typeof body !== 'object') return undefined;
  const b = body as Record<string, unknown>;
  const nested = b.error as Record<string, unknown> | string | undefined;
  const candidates = [
    b.detail,
    b.title,
    typeof nested === 'object' ? nested?.message : nested,
    b.message,
  ];
  const found = candidates.find((c) => typeof c === 'string' && c.length > 0) as string | undefined;
  return found?.slice(0, 300);
}

/**
 * Turn a status answered by a service into the SDK's error kinds: 401/403 → ConfigError,
 * 408/425/429/5xx → TransientError (with Retry-After), other 4xx → VendorError. For plugins
 * whose vendor SDK does its own HTTP.
 *
 * @example
 * catch (e) { throw classifyHttpFailure('Mailchimp', { method: 'POST', url, status: e.status, headers, body }); }
 */
export function classifyHttpFailure(
  vendor: string,
  failure: {
    method: string;
    url: string;
    status: number;
    headers?: Record<string, string | undefined>;
    body?: unknown;
  },
): ConfigError | TransientError | VendorError {
  const url = withoutQuery(failure.url);
  const said = vendorMessage(failure.body);
  const message = `${vendor} answered ${failure.status} to ${failure.method} ${url}${said ? `: ${said}` : ''}`;
  if (failure.status === 401 || failure.status === 403) return new ConfigError(message);
  if (TRANSIENT_STATUS.has(failure.status)) {
    return new TransientError(message, {
      retryAfterMs: retryAfterMs(failure.headers?.['retry-after']),
    });
  }
  return new VendorError(message, { method: failure.method, url, status: failure.status });
}

const withoutQuery = (url: string) => url.split('?')[0]!;

/**
 * An HTTP client for one service.
 *
 * @example
 * const http = createHttpClient({ baseUrl: config.baseUrl, vendor: 'Acme', signal: ctx.signal });
 * const { data } = await http.request<{ id: string }>({ method: 'POST', path: '/lists', body });
 */
export function createHttpClient(options: HttpClientOptions): HttpClient {
  const retries = options.retries ?? 5;
  const backoff = options.backoff ?? { baseMs: 500, maxMs: 60_000 };
  const instance: AxiosInstance = axios.create({
    baseURL: options.baseUrl,
    timeout: options.timeoutMs ?? 30_000,
    headers: options.headers,
    auth: options.auth,
    // Every status comes back as a response; this file decides what is an error.
    validateStatus: () => true,
    // Our own retries; no proxy from the environment between a plugin and its service.
    proxy: false,
    // A redirect would turn a POST into a GET and may carry credentials elsewhere: surface it.
    maxRedirects: 0,
    maxBodyLength: Infinity,
    maxContentLength: Infinity,
  });

  const wait = (ms: number) =>
    new Promise<void>((resolve, reject) => {
      if (options.signal?.aborted) return reject(aborted());
      const timer = setTimeout(done, ms);
      function done() {
        options.signal?.removeEventListener('abort', onAbort);
        resolve();
      }
      function onAbort() {
        clearTimeout(timer);
        reject(aborted());
      }
      options.signal?.addEventListener('abort', onAbort, { once: true });
    });

  return {
    async request<T>(request: HttpRequest): Promise<HttpResponse<T>> {
      const config: AxiosRequestConfig = {
        method: request.method,
        url: request.path,
        params: request.query,
        data: request.body,
        headers: request.headers,
        signal: options.signal,
      };
      const attempts = request.retry === false ? 1 : retries + 1;
      for (let attempt = 1; ; attempt++) {
        let failure: TransientError | ConfigError | VendorError;
        try {
          const send = () => instance.request<T>(config);
          const res = options.limiter
            ? await options.limiter.schedule(send, options.signal)
            : await send();
          const headers = Object.fromEntries(
            Object.entries(res.headers).map(([k, v]) => [k.toLowerCase(), String(v)]),
          );
          if (res.status < 300) return { status: res.status, headers, data: res.data };
          failure = classifyHttpFailure(options.vendor, {
            method: request.method,
            url: `${options.baseUrl}${request.path}`,
            status: res.status,
            headers,
            body: res.data,
          });
        } catch (error) {
          if (options.signal?.aborted) throw aborted();
          const code = (error as { code?: string }).code ?? '';
          if (!NETWORK_CODES.has(code) && !/socket hang up|ECONNRESET/i.test(String(error))) {
            // Never let the transport's own error out: it carries the request, headers included.
            throw new VendorError(
              `${options.vendor}: ${request.method} ${withoutQuery(`${options.baseUrl}${request.path}`)} failed: ${code || (error instanceof Error ? error.message.split('\n')[0] : 'unknown error')}`,
              {
                method: request.method,
                url: withoutQuery(`${options.baseUrl}${request.path}`),
                status: 0,
              },
            );
          }
          failure = new TransientError(
            `${options.vendor} could not be reached for ${request.method} ${withoutQuery(`${options.baseUrl}${request.path}`)}: ${code || 'connection lost'}`,
          );
        }
        if (!(failure instanceof TransientError) || attempt >= attempts) throw failure;
        // Full jitter, unless the service said how long to wait. A wait longer than maxMs is
        // the engine's to schedule, not a request's to sit through.
        const exponential = Math.min(backoff.maxMs, backoff.baseMs * 2 ** (attempt - 1));
        const waitMs = failure.retryAfterMs ?? Math.round(Math.random() * exponential);
        if (waitMs > backoff.maxMs) throw failure;
        options.onRetry?.({ attempt, waitMs, reason: failure.message });
        await wait(waitMs);
      }
    },
  };
}

const aborted = () => new TransientError('the run was stopped', { retryAfterMs: 0 });
