/**
 * The HTTP side every vendor emulator shares: a `node:http` server on 127.0.0.1, the log of the
 * requests it served, injected latency and faults, and `close`. The emulator answers each request
 * itself, in its vendor's own words; the harness decides nothing about status codes or bodies.
 *
 * @example
 * const http = await startHttpEmulator({
 *   async handle({ res, record, url, delay, takeFault }) {
 *     await delay();
 *     if (takeFault()?.kind === 'drop') {
 *       res.socket?.destroy();
 *       return;
 *     }
 *     record.status = 200;
 *     res.end(JSON.stringify({ path: url.pathname }));
 *   },
 *   onError(error, { res }) {
 *     if (!res.headersSent) res.writeHead(500).end();
 *   },
 * });
 * return { ...http, ...vendorHelpers };
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Emulator, Fault, RecordedRequest } from './types.ts';

/** One request whose body has arrived, as the emulator's handler gets it. */
export interface Exchange<R extends RecordedRequest> {
  req: IncomingMessage;
  res: ServerResponse;
  /** The request's entry in `requests`; the handler sets its `status` when it answers. */
  record: R;
  /** The request URL on the emulator's origin. */
  url: URL;
  /** The body as received (still compressed if it was sent so). */
  body: Buffer;
  /** Waits the latency set with `setLatency`. */
  delay(): Promise<void>;
  /** The next injected fault, counted against its `count`; undefined when none is pending. */
  takeFault(): Fault | undefined;
}

export interface HttpEmulatorOptions<R extends RecordedRequest> {
  handle(exchange: Exchange<R>): Promise<void> | void;
  /** A bug in `handle` (it threw): answer as the vendor's 500 would rather than hang the client. */
  onError(error: unknown, exchange: { res: ServerResponse; record: R }): void;
  /** The log entry of a request that arrived, from the fields every emulator records. */
  record?: (request: RecordedRequest) => R;
  /** Port on 127.0.0.1; 0 (any free port) by default. */
  port?: number;
  /** How long an idle keep-alive connection stays open (Node's 5 s by default). */
  keepAliveTimeout?: number;
}

/** The `Emulator` switches, served by the harness; `url` is the origin `http://127.0.0.1:<port>`. */
export interface HttpEmulator<R extends RecordedRequest> extends Emulator {
  requests: R[];
}

/**
 * Starts the server and resolves once it listens.
 *
 * @example
 * const http = await startHttpEmulator({ handle, onError, keepAliveTimeout: 60_000 });
 */
export async function startHttpEmulator<R extends RecordedRequest = RecordedRequest>(
  options: HttpEmulatorOptions<R>,
): Promise<HttpEmulator<R>> {
  const startedAt = Date.now();
  const requests: R[] = [];
  const startRecord = options.record ?? ((request) => request as R);
  const faults: Array<{ fault: Fault; remaining: number | undefined }> = [];
  let latency = 0;

  const delay = (): Promise<void> =>
    new Promise((resolve) => (latency > 0 ? setTimeout(resolve, latency) : resolve()));
  const takeFault = (): Fault | undefined => {
    const active = faults[0];
    if (!active) return undefined;
    if (active.remaining !== undefined && --active.remaining <= 0) faults.shift();
    return active.fault;
  };

  const server = createServer((req, res) => {
    const record = startRecord({
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      status: 0,
      at: Date.now() - startedAt,
    });
    requests.push(record);
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      // Inside the promise, so that a URL the parser refuses is a bug answered with a 500 too.
      Promise.resolve()
        .then(() => {
          const url = new URL(req.url ?? '/', 'http://127.0.0.1');
          return options.handle({ req, res, record, url, body, delay, takeFault });
        })
        .catch((error: unknown) => options.onError(error, { res, record }));
    });
  });
  if (options.keepAliveTimeout !== undefined) server.keepAliveTimeout = options.keepAliveTimeout;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    setLatency(ms) {
      latency = ms;
    },
    inject(fault) {
      if (fault.count !== undefined && fault.count <= 0) return;
      faults.push({ fault, remaining: fault.count });
    },
    clearFaults() {
      faults.length = 0;
      latency = 0;
    },
    close() {
      // Closing twice is harmless: the second close finds no server and resolves.
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

/**
 * Runs `release` once, when the answer is written or the connection ends without one: how an
 * emulator counts the requests in flight against a vendor's simultaneous-request limit.
 *
 * @example
 * inFlight.set(key, (inFlight.get(key) ?? 0) + 1);
 * whenAnswered(res, () => inFlight.set(key, inFlight.get(key)! - 1));
 */
export function whenAnswered(res: ServerResponse, release: () => void): void {
  let released = false;
  const once = () => {
    if (released) return;
    released = true;
    release();
  };
  // `end` writes the answer synchronously; release then, so a client that reuses the connection
  // at once is not refused. `close` covers dropped sockets and aborted clients.
  const end = res.end.bind(res) as (...args: unknown[]) => ServerResponse;
  res.end = ((...args: unknown[]) => {
    once();
    return end(...args);
  }) as typeof res.end;
  res.on('close', once);
}
