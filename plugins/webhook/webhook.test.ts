import { createHmac, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  createServer,
  type IncomingHttpHeaders,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  ConfigError,
  createHttpClient,
  secretKeys,
  TransientError,
  type PluginContext,
  type RowResult,
  type SyncInfo,
  type SyncRow,
} from 'audiencehub/sdk';
import webhook from './index.ts';
import type { WebhookConfig } from './client.ts';

// The receivers' verification function, taken from the README so the documented scheme is the
// one tested.
const readme = readFileSync(new URL('./README.md', import.meta.url), 'utf8');
const snippet = /```js\n([\s\S]*?)```/.exec(readme)![1]!.replace(/^import .*$/m, '');
const verify = new Function(
  'createHmac',
  'timingSafeEqual',
  `${snippet}\nreturn verifyAudiencehubSignature;`,
)(createHmac, timingSafeEqual) as (
  raw: Buffer,
  headers: IncomingHttpHeaders,
  key: string,
  toleranceSeconds?: number,
) => boolean;

const KEY = 'whsec-0123456789abcdef';
const AUTH = 'Bearer tok_live_5f3a9c2e71';
const API_KEY = 'apikey_live_77e1b0d4';
const SECRETS = [KEY, AUTH, 'tok_live_5f3a9c2e71', API_KEY];

/** What the receiver saw of one request. */
interface Received {
  headers: IncomingHttpHeaders;
  raw: Buffer;
  body: Record<string, unknown>;
  verified: boolean;
  at: number;
}
type Answer = (res: ServerResponse) => void;

let server: Server;
let url: string;
let received: Received[];
let script: Answer[];

const json =
  (status: number, body: unknown, headers: Record<string, string> = {}): Answer =>
  (res) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  };
const drop: Answer = (res) => res.socket?.destroy();

beforeAll(async () => {
  // A receiver as the README tells one to write: verify, refuse what fails, then answer.
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const verified = verify(raw, req.headers, KEY);
      received.push({
        headers: req.headers,
        raw,
        body: JSON.parse(raw.toString('utf8')) as Record<string, unknown>,
        verified,
        at: Date.now(),
      });
      if (!verified) return json(401, { error: 'bad signature' })(res);
      (script.shift() ?? json(200, {}))(res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/audiencehub?team=growth`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

let logged: string[];
beforeEach(() => {
  received = [];
  script = [];
  logged = [];
});

/** The context the engine would give: its HTTP client, with short backoff steps for tests. */
function context(): PluginContext {
  const log = (msg: string, data?: Record<string, unknown>) =>
    logged.push(`${msg} ${JSON.stringify(data ?? {})}`);
  const signal = new AbortController().signal;
  return {
    log: { debug: log, info: log, warn: log, error: log },
    signal,
    http: (options) =>
      createHttpClient({ ...options, backoff: { baseMs: 5, maxMs: 5_000 }, signal }),
  };
}

const configOf = (extra: Partial<WebhookConfig> = {}): WebhookConfig =>
  webhook.config.parse({
    url,
    signingKey: KEY,
    authorization: AUTH,
    secretHeaders: { 'X-Api-Key': API_KEY },
    headers: { 'X-Team': 'growth' },
    ...extra,
  });

const info: SyncInfo = {
  id: '8d0c6a52-0000-4000-8000-000000000001',
  segmentName: 'Loyal customers',
  mode: 'mirror',
  fields: ['email', 'first_name'],
};
const rows = (n: number, action: SyncRow['action'] = 'add'): SyncRow[] =>
  Array.from({ length: n }, (_, i) => ({
    id: `p${i + 1}`,
    action,
    fields: { email: `person${i + 1}@example.com`, first_name: `Person ${i + 1}` },
  }));

/**
 * What the engine does with a plugin: `prepare` once, then batches of `limits.batchSize`, at
 * most `limits.concurrency` at once, a batch that throws a TransientError sent again (the same
 * array) a few times; one result per row expected.
 */
async function runLikeEngine(config: WebhookConfig, all: SyncRow[]): Promise<RowResult[]> {
  const ctx = context();
  await webhook.prepare?.({ config, sync: info }, ctx);
  const batches: SyncRow[][] = [];
  for (let i = 0; i < all.length; i += webhook.limits.batchSize) {
    batches.push(all.slice(i, i + webhook.limits.batchSize));
  }
  const results: RowResult[][] = [];
  const worker = async () => {
    for (let batch = batches.shift(); batch; batch = batches.shift()) {
      for (let attempt = 1; ; attempt++) {
        try {
          const answer = await webhook.sync({ config, sync: info, batch }, ctx);
          expect(answer.map((r) => r.id).sort()).toEqual(batch.map((r) => r.id).sort());
          results.push(answer);
          break;
        } catch (error) {
          if (!(error instanceof TransientError) || attempt === 4) throw error;
        }
      }
    }
  };
  await Promise.all(Array.from({ length: webhook.limits.concurrency }, worker));
  return results.flat();
}

const expectNoSecret = (text: string) => {
  for (const s of SECRETS) expect(text).not.toContain(s);
};
const failure = async (promise: Promise<unknown>) => {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(Error);
  expectNoSecret(JSON.stringify({ ...(error as object), message: (error as Error).message }));
  return error as Error;
};

describe('webhook destination', () => {
  it('posts a batch as signed JSON with its headers, and takes a 2xx as every row delivered', async () => {
    const batch = [...rows(2), { id: 'p9', action: 'remove' as const, fields: { email: 'x@y.z' } }];
    const results = await webhook.sync({ config: configOf(), sync: info, batch }, context());

    expect(results).toEqual(batch.map((r) => ({ id: r.id, status: 'ok' })));
    expect(received).toHaveLength(1);
    const [request] = received;
    expect(request!.verified).toBe(true);
    expect(request!.body).toEqual({
      sync: { id: info.id, segment: 'Loyal customers', mode: 'mirror' },
      batchId: expect.stringMatching(/^[0-9a-f-]{36}$/),
      sentAt: expect.any(String),
      rows: batch.map((r) => ({ id: r.id, action: r.action, fields: r.fields })),
    });
    expect(request!.headers).toMatchObject({
      'content-type': 'application/json',
      'x-audiencehub-event': 'batch',
      'idempotency-key': request!.body.batchId,
      authorization: AUTH,
      'x-api-key': API_KEY,
      'x-team': 'growth',
    });
    const signedAt = Number(request!.headers['x-audiencehub-timestamp']);
    expect(Math.abs(signedAt - Date.now() / 1000)).toBeLessThan(5);
    expect(request!.headers['x-audiencehub-signature']).toMatch(/^sha256=[0-9a-f]{64}$/);
  });

  it('signs what a receiver can check: another key, a changed body or an old timestamp fail', async () => {
    await webhook.sync({ config: configOf(), sync: info, batch: rows(1) }, context());
    const [{ raw, headers }] = received as [Received];
    expect(verify(raw, headers, KEY)).toBe(true);
    expect(verify(raw, headers, 'another-key-0123456789')).toBe(false);
    expect(verify(Buffer.from(raw.toString().replace('person1', 'person2')), headers, KEY)).toBe(
      false,
    );
    const old = String(Number(headers['x-audiencehub-timestamp']) - 600);
    expect(verify(raw, { ...headers, 'x-audiencehub-timestamp': old }, KEY)).toBe(false);
  });

  it('cuts a batch into requests of config.batchSize, each with its own key', async () => {
    const batch = rows(5);
    const results = await webhook.sync(
      { config: configOf({ batchSize: 2 }), sync: info, batch },
      context(),
    );
    expect(results.map((r) => r.status)).toEqual(['ok', 'ok', 'ok', 'ok', 'ok']);
    expect(received.map((r) => (r.body.rows as SyncRow[]).map((x) => x.id))).toEqual([
      ['p1', 'p2'],
      ['p3', 'p4'],
      ['p5'],
    ]);
    expect(new Set(received.map((r) => r.headers['idempotency-key'])).size).toBe(3);
  });

  it('waits out a 429 for as long as Retry-After says and resends the request unchanged', async () => {
    script = [json(429, { title: 'Too Many Requests' }, { 'retry-after': '1' })];
    const results = await webhook.sync(
      { config: configOf(), sync: info, batch: rows(3) },
      context(),
    );

    expect(results.every((r) => r.status === 'ok')).toBe(true);
    expect(received).toHaveLength(2);
    const [first, second] = received as [Received, Received];
    expect(second.at - first.at).toBeGreaterThanOrEqual(950);
    expect(second.raw.equals(first.raw)).toBe(true);
    expect(second.headers['idempotency-key']).toBe(first.headers['idempotency-key']);
    expect(second.headers['x-audiencehub-signature']).toBe(
      first.headers['x-audiencehub-signature'],
    );
    expect(logged.join('\n')).toMatch(/webhook request retried/);
    expectNoSecret(logged.join('\n'));
  });

  it('retries a 500 and a dropped connection with the same idempotency key', async () => {
    script = [json(500, { message: 'database is down' }), drop];
    const results = await webhook.sync(
      { config: configOf(), sync: info, batch: rows(2) },
      context(),
    );

    expect(results.every((r) => r.status === 'ok')).toBe(true);
    expect(received).toHaveLength(3);
    expect(new Set(received.map((r) => r.headers['idempotency-key'])).size).toBe(1);
    expect(received.every((r) => r.verified)).toBe(true);
  });

  it('throws a TransientError when the receiver keeps failing; the engine resending the batch reuses its key, a new run does not', async () => {
    const config = configOf();
    const batch = rows(2);
    script = Array.from({ length: 6 }, () => json(503, { detail: 'maintenance' }));
    const error = await failure(webhook.sync({ config, sync: info, batch }, context()));
    expect(error).toBeInstanceOf(TransientError);
    expect(error.message).toMatch(
      /answered 503 to POST http:\/\/127\.0\.0\.1:\d+\/hooks\/audiencehub: maintenance/,
    );
    expect(error.message).not.toContain('team=growth');
    expect(received).toHaveLength(6);

    await webhook.sync({ config, sync: info, batch }, context());
    expect(received).toHaveLength(7);
    expect(new Set(received.map((r) => r.headers['idempotency-key'])).size).toBe(1);

    await webhook.sync({ config, sync: info, batch: [...batch] }, context());
    expect(received[7]!.headers['idempotency-key']).not.toBe(
      received[0]!.headers['idempotency-key'],
    );
  });

  it('runs through an engine-like driver: batches in parallel, one result per row, retried batches deduplicable', async () => {
    script = [drop, json(502, {})];
    const all = rows(1_200);
    const results = await runLikeEngine(configOf(), all);
    expect(results).toHaveLength(1_200);
    expect(results.every((r) => r.status === 'ok')).toBe(true);
    const delivered = new Map<string, Received>();
    for (const r of received) delivered.set(r.headers['idempotency-key'] as string, r);
    const ids = [...delivered.values()].flatMap((r) => (r.body.rows as SyncRow[]).map((x) => x.id));
    expect(ids.sort()).toEqual(all.map((r) => r.id).sort());
  });

  it('turns the per-row results of a 2xx into rejections and retries', async () => {
    script = [
      json(200, {
        results: [
          { id: 'p2', status: 'rejected', reason: 'invalid email' },
          { id: 'p3', status: 'retry', reason: 'record locked' },
          { id: 'p4', status: 'ok' },
          { id: 'p99', status: 'rejected', reason: 'not in this request' },
          { id: 'p1', status: 'exploded' },
        ],
      }),
    ];
    const results = await webhook.sync(
      { config: configOf(), sync: info, batch: rows(4) },
      context(),
    );
    expect(results).toEqual([
      { id: 'p1', status: 'ok' },
      { id: 'p2', status: 'rejected', reason: 'invalid email' },
      { id: 'p3', status: 'retry', reason: 'record locked' },
      { id: 'p4', status: 'ok' },
    ]);
    expect(logged.join('\n')).toMatch(/naming no row of the request.*"ignored":2/);
  });

  it('rejects the rows of a request the receiver refuses with a 4xx, with its reason', async () => {
    script = [
      json(422, { title: 'Unprocessable', detail: 'first_name is required' }),
      json(200, {}),
    ];
    const results = await webhook.sync(
      { config: configOf({ batchSize: 2 }), sync: info, batch: rows(3) },
      context(),
    );
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'ok']);
    expect(results[0]).toMatchObject({
      reason: expect.stringMatching(/answered 422 to POST .*: first_name is required/),
    });
    expect(received).toHaveLength(2);
  });

  it('fails with a ConfigError holding no secret when the receiver refuses the credentials', async () => {
    script = [json(401, { message: `unknown key ${API_KEY} for ${AUTH}` })];
    const error = await failure(
      webhook.sync({ config: configOf(), sync: info, batch: rows(1) }, context()),
    );
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toMatch(
      /answered 401 to POST .*: unknown key \[redacted\] for \[redacted\]/,
    );
    expect(received).toHaveLength(1);
  });

  it('fails with a ConfigError when there is no receiver at the URL or the batch is too large', async () => {
    script = [json(404, 'Not Found')];
    const missing = await failure(
      webhook.sync({ config: configOf(), sync: info, batch: rows(1) }, context()),
    );
    expect(missing).toBeInstanceOf(ConfigError);
    expect(missing.message).toMatch(/answered 404 .*no webhook receiver at/);

    script = [json(413, { error: 'payload too large' })];
    const large = await failure(
      webhook.sync({ config: configOf(), sync: info, batch: rows(3) }, context()),
    );
    expect(large.message).toMatch(/refused 3 rows as too large; lower batchSize/);
  });

  it('fails with a TransientError when nothing listens, naming the URL but not its query', async () => {
    const config = configOf({ url: 'http://127.0.0.1:9/hook?token=abc' });
    const ctx = context();
    const error = await failure(
      webhook.sync(
        { config, sync: info, batch: rows(1) },
        { ...ctx, http: (o) => createHttpClient({ ...o, retries: 0, signal: ctx.signal }) },
      ),
    );
    expect(error).toBeInstanceOf(TransientError);
    expect(error.message).toMatch(
      /could not be reached for POST http:\/\/127\.0\.0\.1:9\/hook: ECONNREFUSED/,
    );
  });

  describe('check', () => {
    it('passes when the receiver verifies and accepts a signed ping', async () => {
      expect(await webhook.check({ config: configOf() }, context())).toEqual({ ok: true });
      expect(received).toHaveLength(1);
      expect(received[0]!.verified).toBe(true);
      expect(received[0]!.headers['x-audiencehub-event']).toBe('ping');
      expect(received[0]!.body).toEqual({ ping: true, sentAt: expect.any(String) });
    });

    it('says why it fails: a refused signature, no receiver, nothing listening — once, without secrets', async () => {
      const refused = await webhook.check(
        { config: configOf({ signingKey: 'not-the-receivers-key' }) },
        context(),
      );
      expect(refused).toEqual({
        ok: false,
        reason: expect.stringMatching(
          /answered 401 .*bad signature — check the authorization header and that the receiver verifies signatures with this signing key/,
        ),
      });

      script = [json(404, {})];
      const missing = await webhook.check({ config: configOf() }, context());
      expect(missing).toMatchObject({
        ok: false,
        reason: expect.stringMatching(/404 .*is there a webhook receiver at/),
      });

      script = [json(503, {})];
      expect(await webhook.check({ config: configOf() }, context())).toMatchObject({
        ok: false,
        reason: expect.stringMatching(/answered 503/),
      });
      expect(received).toHaveLength(3);

      const closed = await webhook.check(
        { config: configOf({ url: 'http://127.0.0.1:9/hook' }) },
        context(),
      );
      expect(closed).toMatchObject({
        ok: false,
        reason: expect.stringMatching(/could not be reached .*ECONNREFUSED/),
      });
      expectNoSecret(JSON.stringify([refused, missing, closed]));
    });
  });

  describe('config', () => {
    it('marks the signing key, authorization and secret headers secret', () => {
      expect(secretKeys(webhook.config).sort()).toEqual([
        'authorization',
        'secretHeaders',
        'signingKey',
      ]);
    });

    it('refuses what would leak a credential or break a request', () => {
      const problems = (input: Record<string, unknown>) => {
        const parsed = webhook.config.safeParse({ url, signingKey: KEY, ...input });
        return parsed.success
          ? []
          : parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
      };
      expect(problems({})).toEqual([]);
      expect(problems({ url: 'ftp://example.com/x' })).toHaveLength(1);
      expect(problems({ url: 'https://me:pw@example.com/x' })).toEqual([
        expect.stringMatching(/^url: no credentials in the URL/),
      ]);
      expect(problems({ signingKey: 'short' })).toEqual([expect.stringMatching(/^signingKey: /)]);
      expect(problems({ headers: { Authorization: 'Bearer x' } })).toEqual([
        'headers.Authorization: use the authorization field, which is kept secret',
      ]);
      expect(problems({ headers: { 'X-Audiencehub-Signature': 'x' } })).toHaveLength(1);
      expect(problems({ headers: { 'X-Bad': 'a\r\nInjected: 1' } })).toHaveLength(1);
      expect(problems({ headers: { 'x-a': '1' }, secretHeaders: { 'X-A': '2' } })).toHaveLength(1);
      expect(problems({ batchSize: 501 })).toHaveLength(1);
    });
  });

  it('takes any field: an empty list lets a mapping name its fields freely', async () => {
    expect(await webhook.fields({ config: configOf() }, context())).toEqual([]);
  });
});
