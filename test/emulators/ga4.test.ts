/**
 * The GA4 Data API emulator, driven only through the real googleapis client (178.0.0) with its
 * own retries off (`retry: false`: one call, one request), every request checked against the
 * discovery document.
 */
import { generateKeyPairSync } from 'node:crypto';
import { google, type analyticsdata_v1beta } from 'googleapis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { addDays, dayIn, startGa4Emulator, type Ga4Emulator } from './ga4/index.ts';
import { googleFailure as failure } from './test-helpers.ts';

const TOKEN = 'ya29.ga4-test-token';
type Ga = analyticsdata_v1beta.Analyticsdata;
type RunReportRequest = analyticsdata_v1beta.Schema$RunReportRequest;

function gaWithToken(emulator: Ga4Emulator, token = TOKEN): Ga {
  const auth = new google.auth.OAuth2();
  auth.setCredentials({ access_token: token });
  return google.analyticsdata({ version: 'v1beta', auth, rootUrl: emulator.url, retry: false });
}

function serviceAccount(project = 'audiencehub-test') {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    clientEmail: `reader@${project}.iam.gserviceaccount.com`,
    keyId: 'key-1',
    privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

/** googleapis with a service account key, signing its own JWTs (no token endpoint). */
function gaWithKey(
  emulator: Ga4Emulator,
  key: { clientEmail: string; privateKey: string; keyId: string },
  scopes = ['https://www.googleapis.com/auth/analytics.readonly'],
): Ga {
  const auth = new google.auth.JWT({
    email: key.clientEmail,
    key: key.privateKey,
    keyId: key.keyId,
    scopes,
  });
  auth.useJWTAccessWithScope = true;
  return google.analyticsdata({ version: 'v1beta', auth, rootUrl: emulator.url, retry: false });
}

const report = (ga: Ga, property: string, requestBody: RunReportRequest) =>
  ga.properties.runReport({ property: `properties/${property}`, requestBody }).then((r) => r.data);

const USER_DAY_EVENT: RunReportRequest = {
  dateRanges: [{ startDate: '2024-05-01', endDate: '2024-05-03' }],
  dimensions: [{ name: 'customUser:crm_id' }, { name: 'date' }, { name: 'eventName' }],
  metrics: [{ name: 'eventCount' }, { name: 'purchaseRevenue' }],
  orderBys: [
    { dimension: { dimensionName: 'date' } },
    { dimension: { dimensionName: 'customUser:crm_id' } },
    { dimension: { dimensionName: 'eventName' } },
  ],
};

describe('GA4 emulator: runReport through googleapis', () => {
  let emulator: Ga4Emulator;
  let ga: Ga;
  let property: string;
  beforeAll(async () => {
    emulator = await startGa4Emulator({ validate: 'reject' });
    ga = gaWithToken(emulator);
    property = emulator.createProperty({ customDimensions: ['customUser:crm_id'] });
    emulator.addEvents(property, [
      { date: '2024-05-01', eventName: 'page_view', count: 3, user: { crm_id: 'c-1' } },
      { date: '2024-05-01', eventName: 'purchase', revenue: 19.99, user: { crm_id: 'c-1' } },
      { date: '2024-05-01', eventName: 'purchase', revenue: 5.01, user: { crm_id: 'c-1' } },
      { date: '2024-05-02', eventName: 'page_view', count: 2, user: { crm_id: 'c-2' } },
      { date: '2024-05-02', eventName: 'page_view', count: 7 },
      { date: '2024-05-04', eventName: 'page_view', user: { crm_id: 'c-3' } },
    ]);
  });
  afterAll(() => emulator.close());
  afterEach(() => expect(emulator.violations).toEqual([]));

  it('groups events per user, day and name, with the headers, metadata and rowCount', async () => {
    const data = await report(ga, property, { ...USER_DAY_EVENT, metricAggregations: ['TOTAL'] });
    expect(data.kind).toBe('analyticsData#runReport');
    expect(data.dimensionHeaders).toEqual([
      { name: 'customUser:crm_id' },
      { name: 'date' },
      { name: 'eventName' },
    ]);
    expect(data.metricHeaders).toEqual([
      { name: 'eventCount', type: 'TYPE_INTEGER' },
      { name: 'purchaseRevenue', type: 'TYPE_CURRENCY' },
    ]);
    const rows = data.rows!.map((r) => [
      ...r.dimensionValues!.map((v) => v.value),
      ...r.metricValues!.map((v) => v.value),
    ]);
    expect(rows).toEqual([
      ['c-1', '20240501', 'page_view', '3', '0'],
      ['c-1', '20240501', 'purchase', '2', '25'],
      ['(not set)', '20240502', 'page_view', '7', '0'],
      ['c-2', '20240502', 'page_view', '2', '0'],
    ]);
    expect(data.rowCount).toBe(4);
    expect(data.totals).toEqual([
      {
        dimensionValues: [
          { value: 'RESERVED_TOTAL' },
          { value: 'RESERVED_TOTAL' },
          { value: 'RESERVED_TOTAL' },
        ],
        metricValues: [{ value: '14' }, { value: '25' }],
      },
    ]);
    expect(data.metadata).toEqual({ currencyCode: 'USD', timeZone: 'UTC' });
    expect(data.propertyQuota).toBeUndefined();
  });

  it('pages with limit and offset; rowCount stays the total; past the end there are no rows', async () => {
    const pages: string[][] = [];
    for (let offset = 0; ; offset += 3) {
      const data = await report(ga, property, {
        ...USER_DAY_EVENT,
        limit: '3',
        offset: String(offset),
      });
      expect(data.rowCount).toBe(4);
      if (!data.rows) break;
      pages.push(data.rows.map((r) => r.dimensionValues!.map((v) => v.value).join('|')));
    }
    expect(pages.map((p) => p.length)).toEqual([3, 1]);
    expect(pages.flat()).toHaveLength(new Set(pages.flat()).size);
    // A report with no rows at all leaves rowCount out (proto3 JSON drops zeros).
    const empty = await report(ga, property, {
      ...USER_DAY_EVENT,
      dateRanges: [{ startDate: '2020-01-01', endDate: '2020-01-02' }],
    });
    expect(empty.rows).toBeUndefined();
    expect(empty.rowCount).toBeUndefined();
    expect(
      (await failure(report(ga, property, { ...USER_DAY_EVENT, limit: '0' }))).error,
    ).toMatchObject({ code: 400, status: 'INVALID_ARGUMENT', message: 'limit must be positive.' });
  });

  it('filters on dimensions, splits date ranges and resolves relative dates in the property zone', async () => {
    const data = await report(ga, property, {
      dateRanges: [
        { startDate: '2024-05-01', endDate: '2024-05-01', name: 'first' },
        { startDate: '2024-05-02', endDate: '2024-05-04' },
      ],
      dimensions: [{ name: 'eventName' }],
      metrics: [{ name: 'eventCount' }],
      dimensionFilter: {
        filter: { fieldName: 'eventName', inListFilter: { values: ['page_view'] } },
      },
      orderBys: [{ dimension: { dimensionName: 'dateRange' } }],
    });
    expect(data.dimensionHeaders).toEqual([{ name: 'eventName' }, { name: 'dateRange' }]);
    expect(
      data.rows!.map((r) => [r.dimensionValues![1]!.value, r.metricValues![0]!.value]),
    ).toEqual([
      ['date_range_1', '10'],
      ['first', '3'],
    ]);

    const tokyo = emulator.createProperty({ timeZone: 'Asia/Tokyo' });
    const today = dayIn('Asia/Tokyo', Date.now());
    emulator.addEvents(tokyo, [
      { date: today, eventName: 'now' },
      { date: addDays(today, -1), eventName: 'yesterday' },
      { date: addDays(today, -3), eventName: 'three' },
    ]);
    const names = async (startDate: string, endDate: string) =>
      (
        await report(ga, tokyo, {
          dateRanges: [{ startDate, endDate }],
          dimensions: [{ name: 'eventName' }],
          orderBys: [{ dimension: { dimensionName: 'eventName' } }],
        })
      ).rows?.map((r) => r.dimensionValues![0]!.value);
    expect(await names('today', 'today')).toEqual(['now']);
    expect(await names('3daysAgo', 'yesterday')).toEqual(['three', 'yesterday']);
  });

  it('answers INVALID_ARGUMENT for an unknown dimension or metric, and for an unregistered custom dimension', async () => {
    const dim = await failure(
      report(ga, property, {
        ...USER_DAY_EVENT,
        dimensions: [{ name: 'customUser:loyalty_id' }],
        orderBys: [],
      }),
    );
    expect(dim.status).toBe(400);
    expect(dim.error).toEqual({
      code: 400,
      status: 'INVALID_ARGUMENT',
      message:
        'Field customUser:loyalty_id is not a valid dimension. For a list of valid dimensions and metrics, see https://developers.google.com/analytics/devguides/reporting/data/v1/api-schema ',
    });
    const metric = await failure(
      report(ga, property, { ...USER_DAY_EVENT, metrics: [{ name: 'revenue' }] }),
    );
    expect(metric.error?.message).toMatch(/^Field revenue is not a valid metric\./);
    const none = await failure(report(ga, property, { dateRanges: USER_DAY_EVENT.dateRanges }));
    expect(none.error?.message).toBe(
      'Requests require dimensions and/or metrics. Most requests include both.',
    );
    const badDate = await failure(
      report(ga, property, {
        ...USER_DAY_EVENT,
        dateRanges: [{ startDate: '2024-02-30', endDate: 'today' }],
      }),
    );
    expect(badDate.error?.status).toBe('INVALID_ARGUMENT');
    // Registering the dimension (Admin → Custom definitions) makes it valid.
    emulator.registerDimension(property, 'customUser:loyalty_id');
    const data = await report(ga, property, {
      ...USER_DAY_EVENT,
      dimensions: [{ name: 'customUser:loyalty_id' }],
      orderBys: [],
    });
    expect(data.rows?.[0]?.dimensionValues?.[0]?.value).toBe('(not set)');
  });

  it('checks bodies against the discovery document: an unknown field is a 400', async () => {
    const bad = await failure(
      report(ga, property, { ...USER_DAY_EVENT, pageSize: 5 } as RunReportRequest),
    );
    expect(bad.status).toBe(400);
    expect(bad.error?.message).toMatch(/unknown field "pageSize"/);
    expect(emulator.violations).toHaveLength(1);
    emulator.violations.length = 0;
  });

  it('caps a page at 250,000 rows whatever the limit', async () => {
    const big = emulator.createProperty({ customDimensions: ['customUser:crm_id'] });
    emulator.addEvents(
      big,
      Array.from({ length: 250_003 }, (_, i) => ({
        date: '2024-06-01',
        eventName: 'page_view',
        user: { crm_id: `u${i}` },
      })),
    );
    const data = await report(ga, big, {
      dateRanges: [{ startDate: '2024-06-01', endDate: '2024-06-01' }],
      dimensions: [{ name: 'customUser:crm_id' }],
      limit: '1000000',
    });
    expect(data.rows).toHaveLength(250_000);
    expect(data.rowCount).toBe(250_003);
    const rest = await report(ga, big, {
      dateRanges: [{ startDate: '2024-06-01', endDate: '2024-06-01' }],
      dimensions: [{ name: 'customUser:crm_id' }],
      limit: '250000',
      offset: '250000',
    });
    expect(rest.rows).toHaveLength(3);
    // No limit: 10,000 rows.
    const defaulted = await report(ga, big, {
      dateRanges: [{ startDate: '2024-06-01', endDate: '2024-06-01' }],
      dimensions: [{ name: 'customUser:crm_id' }],
    });
    expect(defaulted.rows).toHaveLength(10_000);
  }, 60_000);

  it('describes the property in getMetadata; blocked revenue metrics report zeros', async () => {
    const { data } = await ga.properties.getMetadata({ name: `properties/${property}/metadata` });
    expect(data.name).toBe(`properties/${property}/metadata`);
    expect(data.dimensions).toContainEqual(
      expect.objectContaining({ apiName: 'customUser:crm_id', customDefinition: true }),
    );
    expect(data.metrics?.map((m) => m.apiName)).toEqual([
      'eventCount',
      'purchaseRevenue',
      'totalRevenue',
    ]);

    const blocked = emulator.createProperty({ revenueBlocked: true });
    emulator.addEvents(blocked, [{ date: '2024-05-01', eventName: 'purchase', revenue: 10 }]);
    const meta = await ga.properties.getMetadata({ name: `properties/${blocked}/metadata` });
    expect(meta.data.metrics?.find((m) => m.apiName === 'purchaseRevenue')?.blockedReasons).toEqual(
      ['NO_REVENUE_METRICS'],
    );
    const rows = await report(ga, blocked, {
      dateRanges: [{ startDate: '2024-05-01', endDate: '2024-05-01' }],
      dimensions: [{ name: 'eventName' }],
      metrics: [{ name: 'eventCount' }, { name: 'purchaseRevenue' }],
    });
    expect(rows.rows?.[0]?.metricValues?.map((v) => v.value)).toEqual(['1', '0']);
  });
});

describe('GA4 emulator: credentials and property access', () => {
  let emulator: Ga4Emulator;
  const key = serviceAccount();
  let property: string;
  beforeAll(async () => {
    emulator = await startGa4Emulator({
      validate: true,
      tokens: [TOKEN, 'ya29.other'],
      serviceAccounts: [
        { clientEmail: key.clientEmail, publicKey: key.publicKey, keyId: key.keyId },
      ],
    });
    property = emulator.createProperty({ access: [TOKEN, key.clientEmail] });
    emulator.addEvents(property, [{ date: '2024-05-01', eventName: 'page_view' }]);
  });
  afterAll(() => emulator.close());
  afterEach(() => expect(emulator.violations).toEqual([]));

  const body: RunReportRequest = {
    dateRanges: [{ startDate: '2024-05-01', endDate: '2024-05-01' }],
    metrics: [{ name: 'eventCount' }],
  };

  it('accepts a service account self-signed JWT and a granted token', async () => {
    const viaKey = await report(gaWithKey(emulator, key), property, body);
    expect(viaKey.rows?.[0]?.metricValues?.[0]?.value).toBe('1');
    expect(emulator.requests.at(-1)).toMatchObject({ principal: key.clientEmail, status: 200 });
    expect((await report(gaWithToken(emulator), property, body)).rowCount).toBe(1);
  });

  it('answers UNAUTHENTICATED for a token or key it does not accept, and for no credentials', async () => {
    const unknown = await failure(report(gaWithToken(emulator, 'ya29.unknown'), property, body));
    expect(unknown.status).toBe(401);
    expect(unknown.error).toMatchObject({
      status: 'UNAUTHENTICATED',
      message: expect.stringMatching(/^Request had invalid authentication credentials\./),
    });
    expect(unknown.headers?.get('www-authenticate')).toMatch(/invalid_token/);

    const stranger = serviceAccount();
    const forged = await failure(
      report(gaWithKey(emulator, { ...stranger, clientEmail: key.clientEmail }), property, body),
    );
    expect(forged.status).toBe(401);

    const anonymous = google.analyticsdata({
      version: 'v1beta',
      rootUrl: emulator.url,
      retry: false,
    });
    const none = await failure(report(anonymous, property, body));
    expect(none.error).toMatchObject({
      code: 401,
      status: 'UNAUTHENTICATED',
      message: expect.stringMatching(/^Request is missing required authentication credential/),
    });
    const apiKey = google.analyticsdata({
      version: 'v1beta',
      auth: 'AIza-key',
      rootUrl: emulator.url,
      retry: false,
    });
    expect((await failure(report(apiKey, property, body))).error?.message).toMatch(
      /^API keys are not supported by this API/,
    );

    emulator.revokeToken('ya29.other');
    expect(
      (await failure(report(gaWithToken(emulator, 'ya29.other'), property, body))).status,
    ).toBe(401);
  });

  it('answers PERMISSION_DENIED for a property the caller may not read, or a token without the scope', async () => {
    const other = emulator.createProperty({ access: ['ya29.someone-else'] });
    const denied = await failure(report(gaWithToken(emulator), other, body));
    expect(denied.error).toEqual({
      code: 403,
      status: 'PERMISSION_DENIED',
      message:
        'User does not have sufficient permissions for this property. To learn more about Property ID, see https://developers.google.com/analytics/devguides/reporting/data/v1/property-id.',
    });
    // A property that does not exist answers the same.
    expect((await failure(report(gaWithToken(emulator), '999999999', body))).status).toBe(403);
    emulator.grantAccess(other, TOKEN);
    expect((await report(gaWithToken(emulator), other, body)).kind).toBe('analyticsData#runReport');

    const driveOnly = await failure(
      report(gaWithKey(emulator, key, ['https://www.googleapis.com/auth/drive']), property, body),
    );
    expect(driveOnly.error).toMatchObject({
      code: 403,
      message: 'Request had insufficient authentication scopes.',
    });
  });

  it('answers 400 for a property id that is not a number (a Measurement ID)', async () => {
    const bad = await failure(report(gaWithToken(emulator), 'G-ABC123', body));
    expect(bad.error).toMatchObject({
      code: 400,
      status: 'INVALID_ARGUMENT',
      message: expect.stringMatching(
        /^Invalid property ID: G-ABC123\. A numeric Property ID is required\./,
      ),
    });
  });
});

describe('GA4 emulator: property quotas', () => {
  let emulator: Ga4Emulator;
  let ga: Ga;
  beforeAll(async () => {
    emulator = await startGa4Emulator({ validate: true });
    ga = gaWithToken(emulator);
  });
  afterAll(() => emulator.close());
  afterEach(() => expect(emulator.violations).toEqual([]));

  const body: RunReportRequest = {
    dateRanges: [{ startDate: '2024-05-01', endDate: '2024-05-01' }],
    dimensions: [{ name: 'eventName' }],
    metrics: [{ name: 'eventCount' }],
    returnPropertyQuota: true,
  };

  it('charges tokens per call and reports them in propertyQuota', async () => {
    const property = emulator.createProperty();
    emulator.addEvents(
      property,
      Array.from({ length: 2500 }, (_, i) => ({ date: '2024-05-01', eventName: `e${i}` })),
    );
    const first = await report(ga, property, body);
    // 2,500 rows returned: 1 + 3 tokens under the emulator's cost model.
    expect(first.propertyQuota).toEqual({
      tokensPerDay: { consumed: 4, remaining: 200_000 - 4 },
      tokensPerHour: { consumed: 4, remaining: 40_000 - 4 },
      concurrentRequests: { consumed: 0, remaining: 10 },
      serverErrorsPerProjectPerHour: { consumed: 0, remaining: 10 },
      potentiallyThresholdedRequestsPerHour: { consumed: 0, remaining: 120 },
      tokensPerProjectPerHour: { consumed: 4, remaining: 14_000 - 4 },
    });
    const second = await report(ga, property, { ...body, limit: '10' });
    expect(second.propertyQuota?.tokensPerHour).toEqual({ consumed: 2, remaining: 40_000 - 6 });
    expect(emulator.quotaUsed(property)).toEqual({ hour: 6, day: 6, projectHour: 6 });
  });

  it('answers 429 RESOURCE_EXHAUSTED once the hourly tokens are spent, until the window passes', async () => {
    const property = emulator.createProperty({ quota: { tokensPerHour: 4, hourMs: 400 } });
    emulator.addEvents(property, [{ date: '2024-05-01', eventName: 'page_view' }]);
    // One row: 2 tokens a call; the second call spends the last ones.
    for (let i = 0; i < 2; i++) await report(ga, property, body);
    const spent = await failure(report(ga, property, body));
    expect(spent.status).toBe(429);
    expect(spent.error).toMatchObject({
      code: 429,
      status: 'RESOURCE_EXHAUSTED',
      message: expect.stringMatching(/^Exhausted property tokens per hour\./),
    });
    expect(spent.headers?.get('retry-after')).toBeNull();
    expect(emulator.requests.at(-1)).toMatchObject({ status: 429 });
    await new Promise((r) => setTimeout(r, 450));
    expect((await report(ga, property, body)).propertyQuota?.tokensPerHour?.remaining).toBe(2);
  });

  it('counts the daily and per-project hourly tokens apart', async () => {
    const daily = emulator.createProperty({ quota: { tokensPerDay: 1 } });
    await report(ga, daily, body);
    expect((await failure(report(ga, daily, body))).error?.message).toMatch(
      /^Exhausted property tokens per day\./,
    );
    const perProject = emulator.createProperty({ quota: { tokensPerProjectPerHour: 1 } });
    await report(ga, perProject, body);
    expect((await failure(report(ga, perProject, body))).error?.message).toMatch(
      /^Exhausted property tokens for a project per hour\./,
    );
    emulator.resetQuota(perProject);
    expect((await report(ga, perProject, body)).kind).toBe('analyticsData#runReport');
  });

  it('refuses more concurrent requests than the property allows', async () => {
    const property = emulator.createProperty({ quota: { concurrentRequests: 2 } });
    emulator.setLatency(150);
    const results = await Promise.allSettled(
      Array.from({ length: 4 }, () => report(ga, property, body)),
    );
    emulator.clearFaults();
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(2);
    const refused = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect((refused.reason as { status: number }).status).toBe(429);
  });
});

describe('GA4 emulator: faults and latency', () => {
  let emulator: Ga4Emulator;
  let ga: Ga;
  let property: string;
  beforeAll(async () => {
    emulator = await startGa4Emulator({ validate: true });
    ga = gaWithToken(emulator);
    property = emulator.createProperty();
  });
  afterAll(() => emulator.close());

  const body: RunReportRequest = {
    dateRanges: [{ startDate: '2024-05-01', endDate: '2024-05-01' }],
    metrics: [{ name: 'eventCount' }],
  };

  it('answers an injected 429 with Retry-After, then serves again', async () => {
    emulator.inject({ kind: 'status', status: 429, count: 1, retryAfterSeconds: 2 });
    const f = await failure(report(ga, property, body));
    expect(f.status).toBe(429);
    expect(f.error?.status).toBe('RESOURCE_EXHAUSTED');
    expect(f.headers?.get('retry-after')).toBe('2');
    expect((await report(ga, property, body)).kind).toBe('analyticsData#runReport');
  });

  it('answers 503 and 500 as JSON, 502 as the front end’s HTML page; server errors are counted', async () => {
    emulator.inject({ kind: 'status', status: 503, count: 1 });
    emulator.inject({ kind: 'status', status: 500, count: 1 });
    emulator.inject({ kind: 'status', status: 502, count: 1 });
    expect((await failure(report(ga, property, body))).error?.status).toBe('UNAVAILABLE');
    expect((await failure(report(ga, property, body))).error?.status).toBe('INTERNAL');
    const html = await failure(report(ga, property, body));
    expect(html.status).toBe(502);
    expect(String(html.body)).toMatch(/<title>Error 502/);
    const after = await report(ga, property, { ...body, returnPropertyQuota: true });
    expect(after.propertyQuota?.serverErrorsPerProjectPerHour?.remaining).toBe(7);
  });

  it('drops a connection before or after serving; after serving the tokens are charged', async () => {
    emulator.resetQuota(property);
    emulator.inject({ kind: 'drop', count: 1 });
    expect((await failure(report(ga, property, body))).code).toMatch(/ECONNRESET|socket hang up/i);
    expect(emulator.quotaUsed(property).hour).toBe(0);
    emulator.inject({ kind: 'drop-after-apply', count: 1 });
    await failure(report(ga, property, body));
    expect(emulator.quotaUsed(property).hour).toBe(1);
    expect(emulator.requests.slice(-2).map((r) => r.fault)).toEqual(['drop', 'drop-after-apply']);
  });

  it('delays answers by the latency set, until faults are cleared', async () => {
    emulator.setLatency(200);
    const t0 = Date.now();
    await report(ga, property, body);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190);
    emulator.clearFaults();
    const t1 = Date.now();
    await report(ga, property, body);
    expect(Date.now() - t1).toBeLessThan(190);
  });
});
