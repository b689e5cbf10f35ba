import { gzipSync } from 'node:zlib';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { serve, type ServerType } from '@hono/node-server';
import { Analytics } from '@segment/analytics-node';
import { createApp } from '../src/api/app.ts';
import { createWriteKey, revokeWriteKey } from '../src/auth/credentials.ts';
import { testConfig } from '../src/config.ts';
import { rows, type Database, type Db } from '../src/db/index.ts';
import { runsOneAtATime } from '../src/db/drivers/capabilities.ts';
import {
  checkTrack,
  MAX_MESSAGE_BYTES,
  Message,
  parseMessage,
  type MessageType,
} from '../src/events/message.ts';
import { silentLogger } from '../src/log.ts';
import { driver, testDatabase } from './support/db.ts';
import { count, liveProfiles, profileOf } from './support/ingest.ts';

let database: Database;
let db: Db;
let app: ReturnType<typeof createApp>;
let writeKey: string;

const basic = (key: string) => `Basic ${Buffer.from(`${key}:`).toString('base64')}`;

function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  return app.request(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: basic(writeKey), ...headers },
    body: typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body),
  });
}

beforeAll(async () => {
  database = await testDatabase();
  db = database.db;
  app = createApp({ db, config: testConfig(), log: silentLogger });
  writeKey = (await createWriteKey(db, { name: 'web', source: 'web' })).writeKey;
});
afterAll(() => database.close());
beforeEach(async () => {
  await db.execute(
    sql`truncate profiles, identities, traits, events, profile_event_counts, merges, ingest_rejections,
      event_cursors`,
  );
});

async function expectProblem(res: Response, status: number) {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  const body = (await res.json()) as {
    status: number;
    title: string;
    detail: string;
    errors?: { field: string; message: string }[];
  };
  expect(body.status).toBe(status);
  expect(body.title).toBeTruthy();
  return body;
}

describe(`tracking API (${driver})`, () => {
  it('knows whether the database runs one transaction at a time (one writer then)', () => {
    expect(runsOneAtATime(db)).toBe(driver === 'pglite');
  });

  it('accepts each message type on its own endpoint', async () => {
    const calls: [string, Record<string, unknown>][] = [
      ['/v1/identify', { userId: 'u1', traits: { email: 'u1@example.com', plan: 'pro' } }],
      ['/v1/track', { userId: 'u1', event: 'Signed Up', properties: { via: 'ad' } }],
      ['/v1/page', { userId: 'u1', name: 'Pricing', properties: { path: '/pricing' } }],
      ['/v1/screen', { userId: 'u1', name: 'Home' }],
      ['/v1/group', { userId: 'u1', groupId: 'acme', traits: { size: 10 } }],
      ['/v1/alias', { userId: 'u1', previousId: 'anon-old' }],
    ];
    for (const [path, body] of calls) {
      const res = await post(path, body);
      expect(res.status, path).toBe(200);
      expect(await res.json()).toEqual({ success: true });
    }
    const stored = await rows<{ type: string; name: string | null }>(
      db,
      sql`select type, name from events order by id`,
    );
    expect(stored).toEqual([
      { type: 'identify', name: null },
      { type: 'track', name: 'Signed Up' },
      { type: 'page', name: 'Pricing' },
      { type: 'screen', name: 'Home' },
      { type: 'group', name: null },
      { type: 'alias', name: null },
    ]);
    const [p] = await liveProfiles(db);
    expect(p!.traits).toMatchObject({ email: 'u1@example.com', plan: 'pro' });
    expect(await profileOf(db, 'user_id', 'anon-old')).toBe(p!.id);
  });

  it('takes the write key from the body when there is no Authorization header', async () => {
    const res = await app.request('/v1/track', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ writeKey, userId: 'b1', event: 'x' }),
    });
    expect(res.status).toBe(200);
    expect(await count(db, 'events')).toBe(1);
  });

  it('refuses missing, unknown and revoked write keys, storing nothing', async () => {
    const missing = await app.request('/v1/track', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ userId: 'x', event: 'x' }),
    });
    await expectProblem(missing, 401);
    expect(missing.headers.get('www-authenticate')).toMatch(/^Basic /);
    await expectProblem(
      await post('/v1/track', { userId: 'x', event: 'x' }, { authorization: basic('ahw_nope') }),
      401,
    );

    const { writeKey: doomed, summary } = await createWriteKey(db, { name: 'doomed' });
    expect(
      (await post('/v1/track', { userId: 'x', event: 'x' }, { authorization: basic(doomed) }))
        .status,
    ).toBe(200);
    await revokeWriteKey(db, summary.id, { id: null, name: 'test' });
    const revoked = await post(
      '/v1/track',
      { userId: 'y', event: 'y' },
      { authorization: basic(doomed) },
    );
    expect((await expectProblem(revoked, 401)).detail).toMatch(/revoked/);
    expect(await count(db, 'events')).toBe(1);
  });

  it('answers malformed JSON with a 400 naming the body', async () => {
    const body = await expectProblem(await post('/v1/track', '{"userId": "u", '), 400);
    expect(body.errors).toEqual([{ field: 'body', message: 'not valid JSON' }]);
    expect(await count(db, 'events')).toBe(0);
  });

  it('names the field when a message has no identity or a wrong type, and stores nothing of it', async () => {
    const noId = await expectProblem(await post('/v1/track', { event: 'x' }), 400);
    expect(noId.errors).toEqual([
      { field: 'userId', message: 'a message needs a userId or an anonymousId' },
    ]);
    const wrongType = await expectProblem(
      await post('/v1/track', { userId: 'u', event: 5, properties: 'nope' }),
      400,
    );
    expect(wrongType.errors!.map((e) => e.field).sort()).toEqual(['event', 'properties']);
    const badDate = await expectProblem(
      await post('/v1/identify', { userId: 'u', timestamp: 'yesterday' }),
      400,
    );
    expect(badDate.errors!.map((e) => e.field)).toEqual(['timestamp']);
    expect(await count(db, 'events')).toBe(0);
    expect(await count(db, 'profiles')).toBe(0);
    expect(await count(db, 'ingest_rejections')).toBe(3);
  });

  it('enforces the spec size limits: 32 KB a message, 500 KB a batch', async () => {
    const big = 'x'.repeat(33 * 1024);
    await expectProblem(
      await post('/v1/track', { userId: 'u', event: 'x', properties: { big } }),
      413,
    );

    const batch = Array.from({ length: 20 }, (_, i) => ({
      type: 'track',
      userId: `u${i}`,
      event: 'x',
      properties: { pad: 'y'.repeat(26 * 1024) },
    }));
    await expectProblem(await post('/v1/batch', { batch }), 413);

    // Inside a batch that fits, an oversize message is rejected on its own.
    const res = await post('/v1/batch', {
      batch: [
        { type: 'track', userId: 'ok', event: 'x' },
        { type: 'track', userId: 'big', event: 'x', properties: { big } },
      ],
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      accepted: number;
      rejected: { index: number; errors: { field: string; message: string }[] }[];
    };
    expect(body.accepted).toBe(1);
    expect(body.rejected).toEqual([
      {
        index: 1,
        messageId: null,
        errors: [{ field: 'batch[1]', message: expect.stringMatching(/limit is 32768 bytes/) }],
      },
    ]);
    expect(await count(db, 'events')).toBe(1);
  });

  it('weighs a message to the byte as JSON in UTF-8, escapes and characters beyond ASCII included', () => {
    // Padding of characters that take more room as JSON or UTF-8 than as a string: a quote
    // (escaped), a control character (\u0001), an accent (2 bytes) and an emoji (4 bytes).
    const unit = '"\u0001é😀';
    const messageOf = (extra: number) => {
      const base = { type: 'track', userId: 'u', event: 'x', properties: { pad: '' } };
      const bytes = (pad: string) =>
        Buffer.byteLength(JSON.stringify({ ...base, properties: { pad } }), 'utf8');
      let pad = '';
      while (bytes(pad + unit) <= MAX_MESSAGE_BYTES) pad += unit;
      while (bytes(pad + 'a') <= MAX_MESSAGE_BYTES) pad += 'a';
      pad += 'a'.repeat(extra);
      expect(bytes(pad)).toBe(MAX_MESSAGE_BYTES + extra);
      return { ...base, properties: { pad } };
    };
    const parse = (raw: unknown) =>
      parseMessage(raw, { source: 'web', receivedAt: new Date(), config: testConfig() });
    expect(parse(messageOf(0)).ok).toBe(true);
    // Objects with a JSON form of their own (a Date: 26 characters) are weighed by that form.
    const dates = { type: 'track', userId: 'u', event: 'x', properties: { at: [] as Date[] } };
    dates.properties.at = Array.from({ length: 1300 }, () => new Date(0));
    expect(parse(dates).ok).toBe(false);
    const over = parse(messageOf(1));
    expect(over).toEqual({
      ok: false,
      errors: [
        {
          field: 'body',
          message: `message is ${MAX_MESSAGE_BYTES + 1} bytes; the limit is 32768 bytes (32 KB)`,
        },
      ],
    });
  });

  it('stores the valid messages of a partly invalid batch and lists the invalid ones', async () => {
    const res = await post('/v1/batch', {
      batch: [
        { type: 'track', userId: 'a', event: 'Ok', messageId: 'm-1' },
        { type: 'track', event: 'No identity', messageId: 'm-2' },
        { type: 'teleport', userId: 'a', messageId: 'm-3' },
        { type: 'identify', anonymousId: 'z', traits: { email: 'z@x.io' }, messageId: 'm-4' },
      ],
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      accepted: number;
      rejected: { index: number; messageId: string; errors: { field: string }[] }[];
    };
    expect(body.accepted).toBe(2);
    expect(body.rejected.map((r) => [r.index, r.messageId, r.errors[0]!.field])).toEqual([
      [1, 'm-2', 'batch[1].userId'],
      [2, 'm-3', 'batch[2].type'],
    ]);
    const stored = await rows<{ message_id: string }>(
      db,
      sql`select message_id from events order by 1`,
    );
    expect(stored.map((r) => r.message_id)).toEqual(['m-1', 'm-4']);
    const rejections = await rows<{ message_id: string; batch_index: number; reason: string }>(
      db,
      sql`select message_id, batch_index, reason from ingest_rejections order by batch_index`,
    );
    expect(rejections.map((r) => [r.message_id, r.batch_index])).toEqual([
      ['m-2', 1],
      ['m-3', 2],
    ]);
    expect(rejections[0]!.reason).toMatch(/batch\[1\]\.userId/);
  });

  it('answers a batch with no valid message with a 400 listing every error', async () => {
    const body = await expectProblem(
      await post('/v1/batch', {
        batch: [{ type: 'track' }, { type: 'identify', userId: 7, traits: [] }],
      }),
      400,
    );
    expect(body.errors!.map((e) => e.field)).toEqual(
      expect.arrayContaining(['batch[0].event', 'batch[1].traits']),
    );
    await expectProblem(await post('/v1/batch', { messages: [] }), 400);
    expect(await count(db, 'events')).toBe(0);
  });

  it('stores a retried batch once and says so', async () => {
    const batch = [
      {
        type: 'track',
        userId: 'r',
        event: 'Order Completed',
        messageId: 'o-1',
        properties: { revenue: 10 },
      },
      {
        type: 'track',
        userId: 'r',
        event: 'Order Completed',
        messageId: 'o-2',
        properties: { revenue: 5 },
      },
    ];
    expect(await (await post('/v1/batch', { batch })).json()).toMatchObject({
      accepted: 2,
      duplicates: 0,
    });
    expect(await (await post('/v1/batch', { batch })).json()).toMatchObject({
      accepted: 0,
      duplicates: 2,
    });
    const [p] = await liveProfiles(db);
    expect(p).toMatchObject({ purchase_count: 2, event_count: 2 });
    expect(Number(p!.total_spent)).toBe(15);
  });

  it('stores the new messages of a partly retried batch, and only those', async () => {
    const track = (messageId: string, revenue: number) => ({
      type: 'track',
      userId: 'partly',
      event: 'Order Completed',
      messageId,
      properties: { revenue },
    });
    await post('/v1/batch', { batch: [track('p-2', 20), track('p-4', 40)] });
    const res = await post('/v1/batch', {
      batch: [track('p-1', 1), track('p-2', 999), track('p-3', 3), track('p-4', 999)],
    });
    expect(await res.json()).toMatchObject({ accepted: 2, duplicates: 2 });
    const stored = await rows<{ message_id: string; revenue: string }>(
      db,
      sql`select message_id, revenue from events where user_id = 'partly' order by message_id`,
    );
    // The stored copies of p-2 and p-4 are the first ones, untouched by the retry.
    expect(stored.map((e) => [e.message_id, Number(e.revenue)])).toEqual([
      ['p-1', 1],
      ['p-2', 20],
      ['p-3', 3],
      ['p-4', 40],
    ]);
  });

  it('reads gzip-compressed bodies', async () => {
    const body = gzipSync(
      JSON.stringify({ batch: [{ type: 'track', userId: 'g', event: 'Zipped' }] }),
    );
    const res = await post('/v1/batch', body, { 'content-encoding': 'gzip' });
    expect(res.status).toBe(200);
    expect(await count(db, 'events', sql`name = 'Zipped'`)).toBe(1);
  });

  it('stores every field of an event exactly as sent', async () => {
    const properties = {
      text: 'tab\there, "quoted", back\\slash, line\nbreak, ünïcødé, emoji 🎉, nul-free',
      nested: { list: [1, 2.5, null, true, 'x'], empty: {} },
      revenue: '12.3456',
    };
    const context = { ip: '10.0.0.1', locale: 'de-DE', traits: { plan: 'pro' } };
    const times = [
      '1969-07-20T20:17:40.001Z',
      '2000-02-29T23:59:59.999Z',
      '9999-12-31T23:59:59.999Z',
    ];
    const res = await post('/v1/batch', {
      batch: times.map((timestamp, i) => ({
        type: 'track',
        userId: `exact-${i}`,
        anonymousId: `device-${i}`,
        event: i === 0 ? 'Order Completed' : 'Viewed',
        messageId: `exact-${i}`,
        timestamp,
        properties,
        context,
      })),
    });
    expect(res.status).toBe(200);
    const stored = await rows<{
      message_id: string;
      source: string;
      type: string;
      name: string;
      properties: unknown;
      context: unknown;
      revenue: string | null;
      ts: string;
      original_ts: string;
      sent_at: Date | null;
      received_at: Date;
      user_id: string;
      anonymous_id: string;
      profile_id: string;
    }>(
      db,
      sql`select message_id, source, type, name, properties, context, revenue::text as revenue,
            to_char("timestamp" at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as ts,
            to_char(original_timestamp at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
              as original_ts,
            sent_at, received_at, user_id, anonymous_id, profile_id
          from events order by message_id`,
    );
    expect(stored).toHaveLength(3);
    for (const [i, e] of stored.entries()) {
      const micro = times[i]!.replace('Z', '000Z');
      expect(e).toMatchObject({
        message_id: `exact-${i}`,
        source: 'web',
        type: 'track',
        name: i === 0 ? 'Order Completed' : 'Viewed',
        properties,
        context,
        revenue: i === 0 ? '12.3456' : null,
        ts: micro,
        original_ts: micro,
        sent_at: null,
        user_id: `exact-${i}`,
        anonymous_id: `device-${i}`,
        profile_id: await profileOf(db, 'user_id', `exact-${i}`),
      });
      expect(Math.abs(new Date(e.received_at).getTime() - Date.now())).toBeLessThan(60_000);
    }
  });

  it('uses the batch sentAt to correct each message timestamp', async () => {
    const receivedNear = Date.now();
    await post('/v1/batch', {
      sentAt: new Date(receivedNear - 10 * 60_000).toISOString(),
      batch: [
        {
          type: 'track',
          userId: 'c',
          event: 'x',
          timestamp: new Date(receivedNear - 11 * 60_000).toISOString(),
        },
      ],
    });
    const [e] = await rows<{ timestamp: Date }>(db, sql`select "timestamp" from events`);
    // The client's clock is 10 minutes slow: the event happened about a minute ago.
    expect(Math.abs(new Date(e!.timestamp).getTime() - (receivedNear - 60_000))).toBeLessThan(
      5_000,
    );
  });
});

describe(`tracking API with @segment/analytics-node (${driver})`, () => {
  let server: ServerType;
  let host: string;
  beforeAll(async () => {
    server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' });
    await new Promise((r) => server.once('listening', r));
    host = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('receives every call of the real client', async () => {
    const analytics = new Analytics({ writeKey, host, flushAt: 5, maxRetries: 1 });
    const errors: unknown[] = [];
    analytics.on('error', (e) => errors.push(e));
    analytics.identify({ anonymousId: 'dev-1', traits: { email: 'Client@Example.com' } });
    analytics.page({ anonymousId: 'dev-1', name: 'Pricing', properties: { path: '/pricing' } });
    analytics.screen({ anonymousId: 'dev-1', name: 'Cart' });
    for (let i = 0; i < 7; i++) {
      analytics.track({
        anonymousId: 'dev-1',
        event: 'Product Viewed',
        properties: { sku: `s${i}` },
      });
    }
    analytics.alias({ userId: 'cust-1', previousId: 'dev-1' });
    analytics.track({ userId: 'cust-1', event: 'Order Completed', properties: { revenue: 19.99 } });
    analytics.group({ userId: 'cust-1', groupId: 'org-9', traits: { name: 'Org' } });
    await analytics.closeAndFlush({ timeout: 10_000 });

    expect(errors).toEqual([]);
    expect(await count(db, 'events')).toBe(13);
    const live = await liveProfiles(db);
    expect(live).toHaveLength(1);
    expect(live[0]).toMatchObject({ kind: 'customer', purchase_count: 1, event_count: 10 });
    expect(await profileOf(db, 'email', 'client@example.com')).toBe(live[0]!.id);
    // The client's own messageIds were kept, so its retries are idempotent.
    expect(await count(db, 'events', sql`message_id like 'node-next-%'`)).toBe(13);
  });
});

describe('the track message fast path', () => {
  it('takes exactly what the schema takes, and gives what the schema gives', () => {
    // Each field: a typical valid value first (picked most of the time), then edge cases.
    const ids = [
      'u1',
      null,
      '',
      '  ',
      ' u1 ',
      'u'.repeat(512),
      ` ${'u'.repeat(512)} `,
      'u'.repeat(513),
      42,
      1.5,
      -0,
      Infinity,
      NaN,
      true,
      {},
    ];
    const times = [
      '2026-11-20T10:11:12.123Z',
      null,
      '',
      '2026-11-20T10:11:12+01:00',
      '2026-11-20T10:11:12',
      '2026-11-20',
      '2026-02-29',
      '2024-02-29T00:00:00Z',
      '2026-13-01T00:00:00Z',
      '2026-11-20 10:11:12Z',
      'yesterday',
      1732000000000,
    ];
    const records = [
      { a: 1, nested: { b: [1, 2] } },
      null,
      {},
      [],
      'x',
      3,
      JSON.parse('{"__proto__": {"a": 1}, "b": 2}') as unknown,
      Object.create(null) as unknown,
      new Date(0),
    ];
    const fields: Record<string, unknown[]> = {
      type: ['track', undefined, 'page', 'TRACK', 'identify'],
      event: [
        'Viewed',
        undefined,
        null,
        '',
        '   ',
        '  Padded  ',
        'x'.repeat(200),
        'x'.repeat(201),
        ` ${'x'.repeat(200)} `,
        5,
      ],
      messageId: ['m-1', undefined, null, '', 'm'.repeat(256), 'm'.repeat(257), 7],
      userId: ids,
      anonymousId: ids,
      timestamp: times,
      originalTimestamp: times,
      sentAt: times,
      properties: records,
      context: records,
      integrations: records,
      extra: [undefined, 'ignored'],
    };
    let seed = 7;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    let accepted = 0;
    let refused = 0;
    for (let n = 0; n < 20_000; n++) {
      const raw: Record<string, unknown> = {};
      for (const [key, values] of Object.entries(fields)) {
        const value = random() < 0.8 ? values[0] : values[Math.floor(random() * values.length)];
        if (value !== undefined || random() < 0.5) raw[key] = value;
      }
      const endpoint: MessageType | undefined = n % 5 === 0 ? 'track' : undefined;
      const fast = checkTrack(raw, endpoint);
      const schema = Message.safeParse(endpoint ? { ...raw, type: endpoint } : raw);
      if (fast) {
        accepted++;
        expect(schema.success).toBe(true);
        expect(fast).toEqual(schema.data);
      } else if (!schema.success) refused++;
    }
    // Both sides were exercised.
    expect(accepted).toBeGreaterThan(1000);
    expect(refused).toBeGreaterThan(1000);
  });
});
