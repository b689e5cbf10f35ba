import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  ConfigError,
  createHttpClient,
  retryAfterMs,
  secret,
  secretKeys,
  TransientError,
  VendorError,
  z,
} from '../../src/sdk/index.ts';
import { createRequestLimiter } from '../../src/sdk/http.ts';

/** A scripted server: each request takes the next answer from `script`. */
type Answer = (req: IncomingMessage, res: ServerResponse) => void;
let script: Answer[] = [];
let seen: { method?: string; url?: string; auth?: string; at: number }[] = [];
let server: Server;
let baseUrl: string;

const json =
  (status: number, body: unknown, headers: Record<string, string> = {}): Answer =>
  (_req, res) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  };
const drop: Answer = (req) => req.socket.destroy();

beforeAll(async () => {
  server = createServer((req, res) => {
    seen.push({
      method: req.method,
      url: req.url,
      auth: req.headers.authorization,
      at: Date.now(),
    });
    req.resume();
    req.on('end', () => (script.shift() ?? json(200, { ok: true }))(req, res));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));
beforeEach(() => {
  script = [];
  seen = [];
});

const client = (extra: Partial<Parameters<typeof createHttpClient>[0]> = {}) =>
  createHttpClient({
    baseUrl,
    vendor: 'Acme',
    auth: { username: 'user', password: 'sk-live-secret' },
    backoff: { baseMs: 10, maxMs: 2000 },
    ...extra,
  });

describe('the SDK HTTP client', () => {
  it('waits out a 429 for as long as Retry-After says, then succeeds', async () => {
    script = [
      json(429, { title: 'Too Many Requests' }, { 'retry-after': '1' }),
      json(200, { n: 1 }),
    ];
    const retries: number[] = [];
    const res = await client({ onRetry: (r) => retries.push(r.waitMs) }).request<{ n: number }>({
      method: 'POST',
      path: '/things',
      body: { a: 1 },
    });
    expect(res.data).toEqual({ n: 1 });
    expect(retries).toEqual([1000]);
    expect(seen[1]!.at - seen[0]!.at).toBeGreaterThanOrEqual(950);
  });

  it('retries 5xx and dropped connections with backoff, then gives up as transient', async () => {
    script = [json(503, { detail: 'down' }), drop, json(200, { ok: 1 })];
    expect((await client().request({ method: 'GET', path: '/x' })).data).toEqual({ ok: 1 });
    expect(seen).toHaveLength(3);

    script = Array.from({ length: 4 }, () => json(502, { message: 'bad gateway' }));
    const failure = await client({ retries: 3 })
      .request({ method: 'GET', path: '/x?token=abc' })
      .catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(TransientError);
    expect((failure as Error).message).toBe(`Acme answered 502 to GET ${baseUrl}/x: bad gateway`);
  });

  it('does not retry a request marked retry: false', async () => {
    script = [json(503, {})];
    await expect(
      client().request({ method: 'POST', path: '/once', retry: false }),
    ).rejects.toBeInstanceOf(TransientError);
    expect(seen).toHaveLength(1);
  });

  it('hands a wait longer than it may sit through back to the engine', async () => {
    script = [json(429, {}, { 'retry-after': '600' })];
    const failure = await client()
      .request({ method: 'GET', path: '/x' })
      .catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(TransientError);
    expect((failure as TransientError).retryAfterMs).toBe(600_000);
    expect(seen).toHaveLength(1);
  });

  it('turns 401/403 into a ConfigError and other 4xx into a VendorError, never showing credentials', async () => {
    script = [json(401, { detail: 'API key invalid' })];
    const refused = await client()
      .request({ method: 'GET', path: '/me' })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ConfigError);
    expect(seen[0]!.auth).toBe(`Basic ${Buffer.from('user:sk-live-secret').toString('base64')}`);

    script = [json(400, { error: { message: 'field "x" is unknown' } })];
    const bad = await client()
      .request({ method: 'PUT', path: '/things/1' })
      .catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(VendorError);
    expect((bad as VendorError).request).toEqual({
      method: 'PUT',
      url: `${baseUrl}/things/1`,
      status: 400,
    });
    for (const error of [refused, bad]) {
      const text = JSON.stringify(error, Object.getOwnPropertyNames(error as object));
      expect(text).not.toContain('sk-live-secret');
      expect(text).not.toContain(Buffer.from('user:sk-live-secret').toString('base64'));
    }
  });

  it('stops waiting when the run is aborted', async () => {
    script = [json(429, {}, { 'retry-after': '1' })];
    const controller = new AbortController();
    const pending = client({ signal: controller.signal }).request({ method: 'GET', path: '/x' });
    setTimeout(() => controller.abort(), 100);
    const started = Date.now();
    await expect(pending).rejects.toThrow('the run was stopped');
    expect(Date.now() - started).toBeLessThan(900);
  });

  it('reads Retry-After as seconds or as an HTTP date', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(retryAfterMs('120', now)).toBe(120_000);
    expect(retryAfterMs('Thu, 01 Jan 2026 00:00:30 GMT', now)).toBe(30_000);
    expect(retryAfterMs('soon', now)).toBeUndefined();
    expect(retryAfterMs(undefined, now)).toBeUndefined();
  });
});

describe('secret config fields', () => {
  it('are found through optional and defaulted wrappers', () => {
    const schema = z.object({
      apiKey: secret(z.string()),
      token: secret(z.string()).optional(),
      list: z.string(),
      signingKey: secret(z.string()).default('x'),
    });
    expect(secretKeys(schema).sort()).toEqual(['apiKey', 'signingKey', 'token']);
  });
});

describe('the SDK HTTP client on redirects', () => {
  it('does not follow them, so a POST never turns into a GET elsewhere', async () => {
    script = [
      (_req, res) => {
        res.writeHead(302, { location: `${baseUrl}/elsewhere` });
        res.end();
      },
    ];
    const failure = await client()
      .request({ method: 'POST', path: '/moved', body: { a: 1 } })
      .catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(VendorError);
    expect((failure as VendorError).request.status).toBe(302);
    expect(seen.map((s) => `${s.method} ${s.url}`)).toEqual(['POST /moved']);
  });
});

describe('the request limiter', () => {
  it('never starts more than the limit within any one second', async () => {
    const limiter = createRequestLimiter({ requestsPerSecond: 4 });
    const started: number[] = [];
    const request = () =>
      limiter.schedule(async () => {
        started.push(performance.now());
      });
    // One request, then a burst most of a second later: a window of one second counted from the
    // first would take three more at once, and four again as the next window opens.
    const first = request();
    await new Promise((resolve) => setTimeout(resolve, 900));
    await Promise.all([first, ...Array.from({ length: 9 }, request)]);
    expect(started).toHaveLength(10);
    // The fifth start after any start is at least a second later (a millisecond for the clock).
    for (let i = 0; i + 4 < started.length; i++) {
      expect(started[i + 4]! - started[i]!).toBeGreaterThanOrEqual(999);
    }
  });

  it('keeps at most `concurrency` requests in flight', async () => {
    const limiter = createRequestLimiter({ concurrency: 2 });
    let inFlight = 0;
    let peak = 0;
    await Promise.all(
      Array.from({ length: 6 }, () =>
        limiter.schedule(async () => {
          peak = Math.max(peak, ++inFlight);
          await new Promise((resolve) => setTimeout(resolve, 20));
          inFlight--;
        }),
      ),
    );
    expect(peak).toBe(2);
  });
});
