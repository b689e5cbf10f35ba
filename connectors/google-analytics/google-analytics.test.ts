/**
 * The Google Analytics connector against the GA4 emulator, through the real googleapis client
 * (every request checked against the discovery document), and on the GA4 BigQuery export
 * sample of the shared datasets. The clock is faked (Date only) so "today", the settling rule
 * and the quota windows move when a test says so.
 */
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { appendFile, copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  ConfigError,
  secretKeys,
  sourceConformance,
  TransientError,
  type Cursor,
  type PluginContext,
  type SourceStream,
} from 'audiencehub/sdk';
import {
  startGa4Emulator,
  type EventInput,
  type Ga4Emulator,
} from '../../test/emulators/ga4/index.ts';
import { datasetFile } from '../../test/support/datasets.ts';
import connector from './index.ts';
import { GaConfig } from './client.ts';

const TOKEN = 'ya29.connector-test-token';
const NOW = new Date('2024-05-10T12:00:00Z');
const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;

const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const SA_EMAIL = 'audiencehub-reader@audiencehub-test.iam.gserviceaccount.com';
const SA_KEY = JSON.stringify({
  type: 'service_account',
  project_id: 'audiencehub-test',
  private_key_id: 'k-1',
  private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  client_email: SA_EMAIL,
});

interface Logged {
  level: string;
  msg: string;
  data?: Record<string, unknown>;
}
let logs: Logged[] = [];
const context = (signal = new AbortController().signal): PluginContext => ({
  log: {
    debug: (msg, data) => logs.push({ level: 'debug', msg, data }),
    info: (msg, data) => logs.push({ level: 'info', msg, data }),
    warn: (msg, data) => logs.push({ level: 'warn', msg, data }),
    error: (msg, data) => logs.push({ level: 'error', msg, data }),
  },
  signal,
  http: () => {
    throw new Error('the Google Analytics connector goes through googleapis');
  },
});

interface Read {
  records: Record<string, unknown>[];
  checkpoints: { cursor: Cursor; after: number }[];
  error?: unknown;
}

/** Reads a stream to its end or its first error, as the hub does. */
async function readStream(
  config: GaConfig,
  name: string,
  cursor: Cursor | null = null,
): Promise<Read> {
  const streams = await connector.discover({ config }, context());
  const stream = streams.find((s) => s.name === name) as SourceStream;
  const out: Read = { records: [], checkpoints: [] };
  try {
    for await (const m of connector.read(
      { config, stream, cursor, mode: 'incremental' },
      context(),
    )) {
      if (m.type === 'record') out.records.push(m.data);
      else out.checkpoints.push({ cursor: m.cursor, after: out.records.length });
    }
  } catch (error) {
    out.error = error;
  }
  return out;
}

const last = (r: Read): Cursor => r.checkpoints.at(-1)!.cursor;
const keyOf = (r: Record<string, unknown>) => `${r.user_id}|${r.date}|${r.event_name}`;

/** Seeded events: three users over 1–9 May, a page_view a day each, some purchases. */
function seed(days = [1, 2, 3, 4, 5, 6, 7, 8, 9]): EventInput[] {
  const out: EventInput[] = [];
  for (const d of days) {
    const date = `2024-05-0${d}`;
    for (const u of [1, 2, 3]) {
      out.push({ date, eventName: 'page_view', count: d + u, user: { crm_id: `c-${u}` } });
      if ((d + u) % 3 === 0) {
        out.push({
          date,
          eventName: 'purchase',
          count: 1,
          revenue: 10 * u + d,
          user: { crm_id: `c-${u}` },
        });
      }
    }
    // Visitors without the user property: not a person the hub can place.
    out.push({ date, eventName: 'page_view', count: 50 });
  }
  return out;
}

/** The records expected for days from..to, computed from the seed rows, not by the connector. */
function expected(events: EventInput[], from: string, to: string) {
  const m = new Map<
    string,
    { user_id: string; date: string; event_name: string; event_count: number; revenue: number }
  >();
  for (const e of events) {
    if (!e.user?.crm_id || e.date < from || e.date > to) continue;
    const k = `${e.user.crm_id}|${e.date}|${e.eventName}`;
    const r = m.get(k) ?? {
      user_id: e.user.crm_id,
      date: e.date,
      event_name: e.eventName,
      event_count: 0,
      revenue: 0,
    };
    r.event_count += e.count ?? 1;
    r.revenue += e.revenue ?? 0;
    m.set(k, r);
  }
  return [...m.values()].sort((a, b) => keyOf(a).localeCompare(keyOf(b)));
}
const byKey = (rs: Record<string, unknown>[]) =>
  [...rs].sort((a, b) => keyOf(a).localeCompare(keyOf(b)));

let emulator: Ga4Emulator;
let property: string;
let events: EventInput[];

beforeAll(async () => {
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(NOW);
  emulator = await startGa4Emulator({
    validate: 'reject',
    tokens: [TOKEN, 'ya29.stranger'],
    serviceAccounts: [{ clientEmail: SA_EMAIL, publicKey, keyId: 'k-1' }],
  });
});
afterAll(async () => {
  await emulator.close();
  vi.useRealTimers();
});
beforeEach(() => {
  vi.setSystemTime(NOW);
  logs = [];
  property = emulator.createProperty({
    timeZone: 'UTC',
    customDimensions: ['customUser:crm_id', 'customUser:tier'],
    access: [TOKEN, SA_EMAIL],
  });
  events = seed();
  emulator.addEvents(property, events);
  emulator.requests.length = 0;
});
afterEach(() => {
  emulator.clearFaults();
  expect(emulator.violations).toEqual([]);
});

const apiConfig = (extra: Record<string, unknown> = {}): GaConfig =>
  GaConfig.parse({
    propertyId: property,
    accessToken: TOKEN,
    userIdDimension: 'customUser:crm_id',
    rootUrl: emulator.url,
    startDate: '2024-05-01',
    timeZone: 'UTC',
    pageSize: 5,
    ...extra,
  });

describe('google-analytics: configuration and discovery', () => {
  it('keeps its credentials secret and names the field of a bad configuration', () => {
    expect(secretKeys(connector.config).sort()).toEqual(['accessToken', 'serviceAccountKey']);
    const issue = (input: Record<string, unknown>) => {
      const r = GaConfig.safeParse(input);
      return r.success ? undefined : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    };
    expect(
      issue({ propertyId: 'G-ABC123', accessToken: 't', userIdDimension: 'customUser:x' }),
    ).toEqual([
      'propertyId: the numeric GA4 property id (Admin → Property settings), not a Measurement ID (G-…)',
    ]);
    expect(issue({ propertyId: '123', accessToken: 't' })).toEqual([
      'userIdDimension: name the custom dimension holding the user id, e.g. customUser:crm_id',
    ]);
    expect(issue({ propertyId: '123', userIdDimension: 'customUser:x' })?.[0]).toMatch(
      /^serviceAccountKey: give either/,
    );
    expect(
      issue({
        propertyId: '123',
        userIdDimension: 'customUser:x',
        serviceAccountKey: '{"client_email":"a@b.c","private_key":"nope"}',
      })?.[0],
    ).toMatch(/^serviceAccountKey: a service account JSON key/);
    expect(issue({})?.[0]).toMatch(/^propertyId: give propertyId \(the Data API\), files/);
    expect(issue({ files: '/x', timeZone: 'Mars/Olympus' })?.[0]).toMatch(/^timeZone:/);
    expect(issue({ files: '/x', pageSize: 300_000 })?.[0]).toMatch(/^pageSize:/);
    expect(GaConfig.parse({ files: '/x' })).toMatchObject({ settleDays: 2, checkpointEvery: 5000 });
  });

  it('offers the streams its configuration can read', async () => {
    const both = GaConfig.parse({ ...apiConfig(), files: '/tmp/export' });
    const streams = await connector.discover({ config: both }, context());
    expect(streams.map((s) => [s.name, s.primaryKey, s.cursorField])).toEqual([
      ['daily_user_events', ['user_id', 'date', 'event_name'], 'date'],
      ['events', ['event_id'], 'event_time'],
    ]);
    const filesOnly = await connector.discover(
      { config: GaConfig.parse({ files: '/tmp/export' }) },
      context(),
    );
    expect(filesOnly.map((s) => s.name)).toEqual(['events']);
  });
});

describe('google-analytics: daily_user_events from the Data API', () => {
  it('pages through more rows than a page with offset and rowCount, and reads only settled days', async () => {
    const read = await readStream(apiConfig(), 'daily_user_events');
    expect(read.error).toBeUndefined();
    // 10 May, settling 2 days: 1–7 May are read; 8 and 9 May wait.
    const want = expected(events, '2024-05-01', '2024-05-07');
    expect(want).toHaveLength(28);
    expect(byKey(read.records)).toEqual(want);
    const reports = emulator.requests.filter(
      (r) => r.operation === 'analyticsdata.properties.runReport',
    );
    expect(reports).toHaveLength(6);
    expect(reports.every((r) => r.status === 200)).toBe(true);
    // A checkpoint after each page, covering the records before it, then the end.
    expect(read.checkpoints.map((c) => c.after)).toEqual([5, 10, 15, 20, 25, 28]);
    expect(read.checkpoints[1]!.cursor).toEqual({
      through: null,
      timeZone: 'UTC',
      range: { from: '2024-05-01', to: '2024-05-07', offset: 10, rowCount: 28 },
    });
    expect(last(read)).toEqual({ through: '2024-05-07', timeZone: 'UTC' });
    // Pages follow the calendar.
    const dates = read.records.map((r) => r.date as string);
    expect(dates).toEqual([...dates].sort());
  });

  it('reads a day once it has settled, and each settled day once', async () => {
    const first = await readStream(apiConfig(), 'daily_user_events');
    const cursor = last(first);
    // The same day: nothing new has settled.
    const quiet = await readStream(apiConfig(), 'daily_user_events', cursor);
    expect(quiet.records).toEqual([]);
    expect(last(quiet)).toEqual(cursor);
    // A day later 8 May has settled: its rows, and only them.
    vi.setSystemTime(NOW.getTime() + DAY_MS);
    const next = await readStream(apiConfig(), 'daily_user_events', cursor);
    expect(byKey(next.records)).toEqual(expected(events, '2024-05-08', '2024-05-08'));
    expect(last(next)).toEqual({ through: '2024-05-08', timeZone: 'UTC' });
    // settleDays 0: yesterday is read as soon as today starts (there are no events on 10 May).
    const eager = await readStream(apiConfig({ settleDays: 0 }), 'daily_user_events', last(next));
    expect(byKey(eager.records)).toEqual(expected(events, '2024-05-09', '2024-05-10'));
    expect(last(eager)).toEqual({ through: '2024-05-10', timeZone: 'UTC' });
  });

  it('learns the property time zone, counting days conservatively until it knows it', async () => {
    const tokyo = emulator.createProperty({
      timeZone: 'Asia/Tokyo',
      customDimensions: ['customUser:crm_id'],
    });
    emulator.addEvents(tokyo, seed());
    const config = GaConfig.parse({ ...apiConfig(), propertyId: tokyo, timeZone: undefined });
    const first = await readStream(config, 'daily_user_events');
    // At 12:00 UTC it is 10 May everywhere from UTC−12 on: 7 May is the last settled day anyway.
    expect(last(first)).toEqual({ through: '2024-05-07', timeZone: 'Asia/Tokyo' });
    // 20:00 UTC on 10 May is 11 May in Tokyo: 8 May has settled there.
    vi.setSystemTime(new Date('2024-05-10T20:00:00Z'));
    const next = await readStream(config, 'daily_user_events', last(first));
    expect(new Set(next.records.map((r) => r.date))).toEqual(new Set(['2024-05-08']));
  });

  it('resumes from a checkpoint in the middle of a report without repeat or gap', async () => {
    const full = await readStream(apiConfig(), 'daily_user_events');
    const middle = full.checkpoints[2]!;
    emulator.requests.length = 0;
    const resumed = await readStream(apiConfig(), 'daily_user_events', middle.cursor);
    expect(middle.after).toBe(15);
    expect(resumed.records).toEqual(full.records.slice(15));
    // Only the pages after it are asked for: offsets 15, 20 and 25.
    expect(emulator.requests).toHaveLength(3);
  });

  it('reads a range again from its start when its rows changed between pages', async () => {
    const full = await readStream(apiConfig(), 'daily_user_events');
    // A late event for a new user on 3 May: the report now has one more row.
    emulator.addEvents(property, [
      { date: '2024-05-03', eventName: 'page_view', user: { crm_id: 'c-9' } },
    ]);
    const resumed = await readStream(apiConfig(), 'daily_user_events', full.checkpoints[2]!.cursor);
    expect(logs.some((l) => l.level === 'warn' && /rows changed under the pages/.test(l.msg))).toBe(
      true,
    );
    expect(resumed.records).toHaveLength(29);
    expect(resumed.records).toContainEqual({
      user_id: 'c-9',
      date: '2024-05-03',
      event_name: 'page_view',
      event_count: 1,
      revenue: 0,
    });
  });

  it('stops when the property is close to its hourly quota, and goes on after the wait', async () => {
    // Each 5-row page costs 2 tokens; with 7 tokens an hour and 2 in reserve, the second
    // page leaves 3 and the third 1, under the reserve.
    emulator.setQuota(property, { tokensPerHour: 7 });
    const config = apiConfig({ quotaReserve: { tokensPerHour: 2, tokensPerDay: 0 } });
    const first = await readStream(config, 'daily_user_events');
    expect(first.error).toBeInstanceOf(TransientError);
    expect((first.error as TransientError).retryAfterMs).toBe(HOUR_MS);
    expect((first.error as Error).message).toMatch(
      /1 tokens left this hour for the property, under the 2 kept in reserve/,
    );
    expect(first.records).toHaveLength(15);
    expect(first.checkpoints.at(-1)!.after).toBe(15);
    // The hub waits the hour out; the tokens are back and the read goes on from its checkpoint.
    vi.setSystemTime(NOW.getTime() + HOUR_MS + 1000);
    emulator.setQuota(property, { tokensPerHour: 40_000 });
    const rest = await readStream(config, 'daily_user_events', last(first));
    expect(rest.error).toBeUndefined();
    expect(byKey([...first.records, ...rest.records])).toEqual(
      expected(events, '2024-05-01', '2024-05-07'),
    );
  });

  it('fails clearly, without retrying, when Google says the hourly tokens are spent', async () => {
    emulator.setQuota(property, { tokensPerHour: 4 });
    const config = apiConfig({ quotaReserve: { tokensPerHour: 0, tokensPerDay: 0 } });
    const read = await readStream(config, 'daily_user_events');
    expect(read.error).toBeInstanceOf(TransientError);
    expect((read.error as TransientError).retryAfterMs).toBe(HOUR_MS);
    expect((read.error as Error).message).toMatch(
      /Google Analytics answered 429 .*: Exhausted property tokens per hour/,
    );
    expect(read.records).toHaveLength(10);
    const statuses = emulator.requests.map((r) => r.status);
    expect(statuses).toEqual([200, 200, 429]);
  });

  it('retries what passes in seconds: an injected 503, a dropped connection, a 429 with Retry-After', async () => {
    emulator.inject({ kind: 'status', status: 503, count: 1 });
    emulator.inject({ kind: 'drop', count: 1 });
    emulator.inject({ kind: 'status', status: 429, count: 1, retryAfterSeconds: 1 });
    const read = await readStream(apiConfig(), 'daily_user_events');
    expect(read.error).toBeUndefined();
    expect(byKey(read.records)).toEqual(expected(events, '2024-05-01', '2024-05-07'));
    expect(emulator.requests.slice(0, 3).map((r) => r.fault)).toEqual(['status', 'drop', 'status']);
  });

  it('reads as a service account with its key, and answers bad credentials with what to do', async () => {
    const viaKey = GaConfig.parse({
      ...apiConfig(),
      accessToken: undefined,
      serviceAccountKey: SA_KEY,
    });
    expect(await connector.check({ config: viaKey }, context())).toEqual({ ok: true });
    const read = await readStream(viaKey, 'daily_user_events');
    expect(read.records).toHaveLength(28);
    expect(emulator.requests.every((r) => r.principal === SA_EMAIL)).toBe(true);

    const wrongToken = apiConfig({ accessToken: 'ya29.expired-token' });
    const refused = await connector.check({ config: wrongToken }, context());
    expect(refused).toEqual({
      ok: false,
      reason:
        'Google Analytics refused the credentials (401) to read the property metadata: the access token expired or was revoked.',
    });
    const failed = await readStream(wrongToken, 'daily_user_events');
    expect(failed.error).toBeInstanceOf(ConfigError);
    expect(failed.records).toEqual([]);

    const stranger = apiConfig({ accessToken: 'ya29.stranger' });
    const denied = await connector.check({ config: stranger }, context());
    expect(denied.ok).toBe(false);
    expect(!denied.ok && denied.reason).toMatch(
      /403: User does not have sufficient permissions for this property.*add the access token's account as a Viewer/,
    );

    emulator.revokeAccess(property, SA_EMAIL);
    const revoked = await connector.check({ config: viaKey }, context());
    expect(!revoked.ok && revoked.reason).toContain(`add ${SA_EMAIL} as a Viewer of the property`);
    for (const r of [refused, denied, revoked])
      expect(JSON.stringify(r)).not.toMatch(/ya29\.|PRIVATE KEY/);
  });

  it('names the user dimension a property lacks, in check and in a read', async () => {
    const config = apiConfig({ userIdDimension: 'customUser:loyalty_id' });
    const result = await connector.check({ config }, context());
    expect(result).toEqual({
      ok: false,
      reason: `userIdDimension: properties/${property} has no custom dimension customUser:loyalty_id (it has customUser:crm_id, customUser:tier). Register the user property as a custom dimension in Admin → Custom definitions.`,
    });
    const read = await readStream(config, 'daily_user_events');
    expect(read.error).toBeInstanceOf(ConfigError);
    expect((read.error as Error).message).toMatch(
      /^userIdDimension: property \d+ has no custom dimension customUser:loyalty_id/,
    );
  });

  it('reads only the events named, and no revenue when told', async () => {
    const read = await readStream(
      apiConfig({ eventNames: ['purchase'], revenueMetric: 'none' }),
      'daily_user_events',
    );
    const want = expected(events, '2024-05-01', '2024-05-07').filter(
      (r) => r.event_name === 'purchase',
    );
    expect(byKey(read.records)).toEqual(want.map((r) => ({ ...r, revenue: null })));
    const total = await readStream(
      apiConfig({ eventNames: ['purchase'], revenueMetric: 'totalRevenue' }),
      'daily_user_events',
    );
    expect(byKey(total.records)).toEqual(want);
  });

  it('passes the source conformance kit against the emulator', async () => {
    const config = apiConfig({ pageSize: 4 });
    const report = await sourceConformance({
      connector,
      config,
      badConfig: apiConfig({ accessToken: 'ya29.not-a-token' }),
      emulator,
      stream: 'daily_user_events',
      change: async () => {
        vi.setSystemTime(NOW.getTime() + DAY_MS);
      },
    });
    expect(report.filter((c) => !c.ok)).toEqual([]);
    expect(report.map((c) => c.check)).toContain('an incremental read yields only what changed');
  }, 120_000);
});

describe('google-analytics: events from BigQuery export files', () => {
  const SAMPLE = datasetFile(
    'google_analytics/ga4_obfuscated_sample_ecommerce_events_sample.ndjson.gz',
  );
  // The independent count: straight from the file, without the connector.
  const lines = gunzipSync(readFileSync(SAMPLE))
    .toString('utf8')
    .split('\n')
    .filter((l) => l.trim());
  // One line holds a bare NaN (written by Python): the test reads it as null too.
  const raw = lines.map(
    (l) => JSON.parse(l.replaceAll(': NaN', ': null')) as Record<string, unknown>,
  );
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ga4-export-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const filesConfig = (files: string, extra: Record<string, unknown> = {}) =>
    GaConfig.parse({ files, ...extra });

  it('reads the sample export end to end: every event, every device, params flattened', async () => {
    expect(raw).toHaveLength(460);
    const read = await readStream(filesConfig(SAMPLE), 'events');
    expect(read.error).toBeUndefined();
    expect(read.records).toHaveLength(raw.length);
    expect(new Set(read.records.map((r) => r.event_id)).size).toBe(460);
    const devices = new Set(raw.map((e) => e.user_pseudo_id));
    expect(devices.size).toBe(167);
    expect(new Set(read.records.map((r) => r.user_pseudo_id))).toEqual(devices);
    const count = (names: unknown[]) =>
      names.reduce<Record<string, number>>(
        (m, n) => ({ ...m, [String(n)]: (m[String(n)] ?? 0) + 1 }),
        {},
      );
    expect(count(read.records.map((r) => r.event_name))).toEqual(
      count(raw.map((e) => e.event_name)),
    );
    expect(read.records.filter((r) => (r.items as unknown[]).length > 0)).toHaveLength(
      raw.filter((e) => (e.items as unknown[]).length > 0).length,
    );
    expect(read.records.filter((r) => r.ecommerce !== null)).toHaveLength(
      raw.filter((e) => e.ecommerce).length,
    );

    // The first line, field by field.
    const first = raw[0]!;
    expect(read.records[0]).toMatchObject({
      event_name: 'first_visit',
      event_date: '2020-11-01',
      event_timestamp: 1604192073036492,
      event_time: '2020-11-01T00:54:33.036Z',
      user_pseudo_id: '1005694.5834348403',
      user_id: null,
      ga_session_id: 4863244888,
      properties: {
        session_engaged: 1,
        ga_session_number: 1,
        page_location:
          'https://shop.googlemerchandisestore.com/Google+Redesign/Lifestyle/Drinkware',
        ga_session_id: 4863244888,
        engaged_session_event: 1,
        page_title: 'Drinkware | Lifestyle | Google Merchandise Store',
      },
      geo: first.geo,
      device: first.device,
      traffic_source: first.traffic_source,
      platform: 'WEB',
      stream_id: '2100450278',
    });
    // A parameter whose value is null stays, as null.
    expect(read.records[1]!.properties).toMatchObject({ dclid: null, debug_mode: 1 });
    expect(last(read)).toEqual({
      files: {
        'ga4_obfuscated_sample_ecommerce_events_sample.ndjson.gz': expect.objectContaining({
          lines: 460,
          done: true,
        }),
      },
    });
  });

  it('keeps ecommerce revenue, and INT64 columns written as strings', async () => {
    const purchase = {
      event_date: '20240503',
      event_timestamp: '1714723200123456',
      event_name: 'purchase',
      event_params: [
        { key: 'currency', value: { string_value: 'EUR' } },
        { key: 'value', value: { double_value: 42.5 } },
        { key: 'ga_session_id', value: { int_value: '1714723000' } },
      ],
      user_id: 'crm-77',
      user_pseudo_id: '123.456',
      ecommerce: { transaction_id: 'T-1', purchase_revenue: 42.5, purchase_revenue_in_usd: 46.1 },
      items: [{ item_id: 'SKU1', price: 42.5, quantity: 1 }],
    };
    await writeFile(join(dir, 'events_20240503.json'), `${JSON.stringify(purchase)}\n`);
    const read = await readStream(filesConfig(dir), 'events');
    expect(read.records).toEqual([
      expect.objectContaining({
        event_name: 'purchase',
        event_timestamp: 1714723200123456,
        user_id: 'crm-77',
        ga_session_id: 1714723000,
        revenue: 42.5,
        revenue_in_usd: 46.1,
        currency: 'EUR',
        transaction_id: 'T-1',
        properties: { currency: 'EUR', value: 42.5, ga_session_id: 1714723000 },
        items: [{ item_id: 'SKU1', price: 42.5, quantity: 1 }],
      }),
    ]);
  });

  it('resumes in the middle of a gzipped file by reading it again and skipping what was read', async () => {
    const config = filesConfig(SAMPLE, { checkpointEvery: 100 });
    const full = await readStream(config, 'events');
    expect(full.checkpoints.map((c) => c.after)).toEqual([100, 200, 300, 400, 460]);
    const resumed = await readStream(config, 'events', full.checkpoints[1]!.cursor);
    expect(resumed.records).toEqual(full.records.slice(200));
    // Nothing more to read: a read from the end yields nothing.
    expect((await readStream(config, 'events', last(full))).records).toEqual([]);
  });

  it('resumes a plain file at its byte offset, reads what is appended, and reads a rewritten file again', async () => {
    const path = join(dir, 'events_20201101.ndjson');
    await writeFile(path, lines.slice(0, 300).join('\n') + '\n');
    const config = filesConfig(dir, { checkpointEvery: 120 });
    const full = await readStream(config, 'events');
    expect(full.records).toHaveLength(300);
    const mid = full.checkpoints[0]!;
    expect(mid.cursor).toEqual({
      files: {
        'events_20201101.ndjson': expect.objectContaining({
          lines: 120,
          offset: Buffer.byteLength(lines.slice(0, 120).join('\n') + '\n'),
          done: false,
        }),
      },
    });
    expect((await readStream(config, 'events', mid.cursor)).records).toEqual(
      full.records.slice(120),
    );

    await appendFile(path, lines.slice(300, 350).join('\n') + '\n');
    const appended = await readStream(config, 'events', last(full));
    expect(appended.records.map((r) => r.event_timestamp)).toEqual(
      raw.slice(300, 350).map((e) => e.event_timestamp),
    );

    // Rewritten (a line removed at the start): read again; the events keep their ids.
    await writeFile(path, lines.slice(1, 350).join('\n') + '\n');
    const again = await readStream(config, 'events', last(appended));
    expect(again.records).toHaveLength(349);
    const ids = new Set([...full.records, ...appended.records].map((r) => r.event_id));
    expect(again.records.every((r) => ids.has(r.event_id))).toBe(true);
    expect(logs.some((l) => /changed since it was read/.test(l.msg))).toBe(true);
  });

  it('reads new files of a folder and gzip members appended to one, in name order', async () => {
    await mkdir(join(dir, 'day1'));
    await writeFile(
      join(dir, 'day1', 'events_20201101.json.gz'),
      gzipSync(lines.slice(0, 10).join('\n') + '\n'),
    );
    await writeFile(join(dir, 'notes.txt'), 'not an export');
    const config = filesConfig(dir);
    const first = await readStream(config, 'events');
    expect(first.records).toHaveLength(10);
    await writeFile(
      join(dir, 'events_20201102.json.gz'),
      gzipSync(lines.slice(10, 15).join('\n') + '\n'),
    );
    await appendFile(
      join(dir, 'day1', 'events_20201101.json.gz'),
      gzipSync(lines.slice(15, 18).join('\n') + '\n'),
    );
    const next = await readStream(config, 'events', last(first));
    // day1/… sorts before events_…: its appended member first, then the new file.
    expect(next.records.map((r) => r.event_timestamp)).toEqual(
      [...raw.slice(15, 18), ...raw.slice(10, 15)].map((e) => e.event_timestamp),
    );
  });

  it('skips lines that are not events, with the reason, and waits for a last line still being written', async () => {
    const path = join(dir, 'events.ndjson');
    const partial = lines[3]!.slice(0, 40);
    await writeFile(
      path,
      [lines[0], 'not json', '{"event_name":"x"}', '', lines[1]].join('\n') + '\n' + partial,
    );
    const first = await readStream(filesConfig(dir), 'events');
    expect(first.records.map((r) => r.event_timestamp)).toEqual([
      raw[0]!.event_timestamp,
      raw[1]!.event_timestamp,
    ]);
    const skipped = logs.filter((l) => /not an event/.test(l.msg)).map((l) => l.data);
    expect(skipped).toEqual([
      { file: 'events.ndjson', line: 2, reason: 'not JSON' },
      {
        file: 'events.ndjson',
        line: 3,
        reason: 'no event_timestamp (microseconds since the epoch)',
      },
    ]);
    await appendFile(path, lines[3]!.slice(40) + '\n');
    const next = await readStream(filesConfig(dir), 'events', last(first));
    expect(next.records.map((r) => r.event_timestamp)).toEqual([raw[3]!.event_timestamp]);
  });

  it('fails a gzipped file cut short as transient, after what it could read', async () => {
    const whole = gzipSync(lines.slice(0, 50).join('\n') + '\n');
    await writeFile(join(dir, 'events.json.gz'), whole.subarray(0, Math.floor(whole.length / 2)));
    const read = await readStream(filesConfig(dir, { checkpointEvery: 5 }), 'events');
    expect(read.error).toBeInstanceOf(TransientError);
    expect((read.error as Error).message).toMatch(
      /events\.json\.gz could not be read past line \d+/,
    );
    expect(read.records.length).toBeGreaterThan(0);
    // Not gzip at all: nothing will change that by waiting.
    await rm(join(dir, 'events.json.gz'));
    await writeFile(join(dir, 'broken.json.gz'), 'not gzip\n');
    const broken = await readStream(filesConfig(dir), 'events');
    expect(broken.error).toBeInstanceOf(ConfigError);
    expect((broken.error as Error).message).toBe(
      'files: broken.json.gz cannot be read past line 0 (Z_DATA_ERROR).',
    );
    expect(await connector.check({ config: filesConfig(dir) }, context())).toEqual({
      ok: false,
      reason: 'files: broken.json.gz cannot be read (Z_DATA_ERROR)',
    });
  });

  it('checks that the files exist and hold GA4 events', async () => {
    expect(await connector.check({ config: filesConfig(SAMPLE) }, context())).toEqual({ ok: true });
    expect(await connector.check({ config: filesConfig(join(dir, 'missing')) }, context())).toEqual(
      {
        ok: false,
        reason: `files: ${join(dir, 'missing')} does not exist`,
      },
    );
    expect(await connector.check({ config: filesConfig(dir) }, context())).toEqual({
      ok: false,
      reason: `files: no .ndjson, .jsonl or .json file (gzipped or not) in ${dir}`,
    });
    await writeFile(join(dir, 'a.json'), '{"hello":"world"}\n');
    expect(await connector.check({ config: filesConfig(dir) }, context())).toEqual({
      ok: false,
      reason: 'files: the first line of a.json is not a GA4 export event (no event_name)',
    });
  });

  it('passes the source conformance kit on a folder of export files', async () => {
    await copyFile(SAMPLE, join(dir, 'events_a.ndjson.gz'));
    const report = await sourceConformance({
      connector,
      config: filesConfig(dir, { checkpointEvery: 50 }),
      badConfig: filesConfig(join(dir, 'nowhere')),
      stream: 'events',
      change: async () => {
        const extra = { ...raw[0], event_timestamp: 1700000000000000, event_name: 'purchase' };
        await writeFile(join(dir, 'events_b.ndjson'), `${JSON.stringify(extra)}\n`);
      },
    });
    expect(report.filter((c) => !c.ok)).toEqual([]);
  });
});
