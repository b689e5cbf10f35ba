/**
 * The HubSpot emulator's own behaviour, driven over HTTP with axios as the connector's client
 * does: tokens and scopes, contact listing and search with their paging and ceiling, owners,
 * property definitions, writes moving `lastmodifieddate`, both rate limits, faults, and the
 * seed helper's Pagila contacts.
 */
import axios, { type AxiosResponse } from 'axios';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  pagilaCustomers,
  seedAccount,
  startHubSpotEmulator,
  type HubSpotEmulator,
  type HubSpotEmulatorOptions,
} from './hubspot/index.ts';

let hubspot: HubSpotEmulator;

const start = async (options: HubSpotEmulatorOptions = {}) => {
  await hubspot?.close();
  hubspot = await startHubSpotEmulator(options);
  return hubspot;
};

beforeEach(async () => {
  hubspot = await startHubSpotEmulator();
});
afterEach(async () => {
  await hubspot.close();
});

/** What the emulator answers, loosely: one shape for records, listings and error bodies. */
interface CrmObject {
  id: string;
  properties: Record<string, string | null>;
  [key: string]: unknown;
}
interface Answer {
  results: CrmObject[];
  total: number;
  paging?: { next: { after: string; link?: string } };
  message: string;
  correlationId: string;
  options: { value: string; label: string }[];
  [key: string]: unknown;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

async function call(
  method: 'GET' | 'POST',
  path: string,
  options: { body?: unknown; token?: string | null; params?: Record<string, unknown> } = {},
): Promise<AxiosResponse<Answer>> {
  const token = options.token === undefined ? hubspot.token : options.token;
  return axios.request({
    method,
    url: `${hubspot.url}${path}`,
    data: options.body,
    params: options.params,
    headers: token === null ? {} : { Authorization: `Bearer ${token}` },
    validateStatus: () => true,
    proxy: false,
  });
}

const search = (body: unknown, token?: string) =>
  call('POST', '/crm/v3/objects/contacts/search', { body, token });

const T0 = Date.parse('2024-03-01T10:00:00.000Z');

describe('authentication', () => {
  it('answers 401 INVALID_AUTHENTICATION for a missing or unknown token', async () => {
    for (const token of [null, 'pat-na1-wrong']) {
      const res = await call('GET', '/crm/v3/objects/contacts', { token });
      expect(res.status).toBe(401);
      expect(res.headers['content-type']).toBe('application/json;charset=utf-8');
      expect(res.data).toEqual({
        status: 'error',
        message: expect.stringMatching(/^Authentication credentials not found\./),
        correlationId: expect.stringMatching(UUID),
        category: 'INVALID_AUTHENTICATION',
      });
      expect(res.headers['x-hubspot-correlation-id']).toBe(res.data.correlationId);
    }
  });

  it('answers 403 MISSING_SCOPES naming the scope an endpoint needs', async () => {
    await start({
      tokens: ['pat-all', { token: 'pat-contacts', scopes: ['crm.objects.contacts.read'] }],
    });
    expect((await call('GET', '/crm/v3/objects/contacts', { token: 'pat-contacts' })).status).toBe(
      200,
    );
    const res = await call('GET', '/crm/v3/owners', { token: 'pat-contacts' });
    expect(res.status).toBe(403);
    expect(res.data).toMatchObject({
      status: 'error',
      category: 'MISSING_SCOPES',
      errors: [{ context: { requiredGranularScopes: ['crm.objects.owners.read'] } }],
    });
    expect((await call('GET', '/crm/v3/owners', { token: 'pat-all' })).status).toBe(200);
  });
});

describe('listing contacts', () => {
  it('pages in id order with paging.next.after, default properties and asked-for ones', async () => {
    const ids = [1, 2, 3, 4, 5].map(
      (n) =>
        hubspot.createContact(
          { email: `P${n}@Example.com`, firstname: `P${n}`, phone: '+1 555' },
          {
            at: T0 + n,
          },
        ).id,
    );
    const first = await call('GET', '/crm/v3/objects/contacts', { params: { limit: 2 } });
    expect(first.status).toBe(200);
    expect(first.data.results.map((r) => r.id)).toEqual(ids.slice(0, 2));
    expect(first.data.results[0]).toEqual({
      id: ids[0],
      properties: {
        createdate: new Date(T0 + 1).toISOString(),
        email: 'p1@example.com',
        firstname: 'P1',
        hs_object_id: ids[0],
        lastmodifieddate: new Date(T0 + 1).toISOString(),
        lastname: null,
      },
      createdAt: new Date(T0 + 1).toISOString(),
      updatedAt: new Date(T0 + 1).toISOString(),
      archived: false,
    });
    const after = first.data.paging!.next.after;
    expect(first.data.paging!.next.link).toBe(
      `${hubspot.url}/crm/v3/objects/contacts?after=${after}`,
    );

    const rest = await call('GET', '/crm/v3/objects/contacts', {
      params: { limit: 100, after, properties: 'email,phone,nonexistent' },
    });
    expect(rest.data.results.map((r) => r.id)).toEqual(ids.slice(2));
    expect(rest.data.paging).toBeUndefined();
    expect(rest.data.results[0]!.properties).toEqual({
      createdate: expect.any(String),
      email: 'p3@example.com',
      hs_object_id: ids[2],
      lastmodifieddate: expect.any(String),
      phone: '+1 555',
    });
  });

  it('refuses a limit over 100 and leaves archived contacts out unless asked', async () => {
    expect(
      (await call('GET', '/crm/v3/objects/contacts', { params: { limit: 101 } })).data,
    ).toMatchObject({ status: 'error', category: 'VALIDATION_ERROR' });
    const gone = hubspot.createContact({ email: 'gone@example.com' });
    hubspot.createContact({ email: 'kept@example.com' });
    hubspot.archiveContact(gone.id);
    const live = await call('GET', '/crm/v3/objects/contacts');
    expect(live.data.results.map((r) => r.properties.email)).toEqual(['kept@example.com']);
    const archived = await call('GET', '/crm/v3/objects/contacts', { params: { archived: true } });
    expect(archived.data.results).toMatchObject([
      { id: gone.id, archived: true, archivedAt: expect.any(String) },
    ]);
  });
});

describe('writes', () => {
  it('move lastmodifieddate (never createdate) and are found by a search on it', async () => {
    const created = hubspot.createContact({ email: 'a@example.com' }, { at: T0 });
    expect(created.properties.lastmodifieddate).toBe(new Date(T0).toISOString());
    const updated = hubspot.updateContact(
      created.id,
      { lifecyclestage: 'customer' },
      {
        at: T0 + 5000,
      },
    );
    expect(updated.properties).toMatchObject({
      createdate: new Date(T0).toISOString(),
      lastmodifieddate: new Date(T0 + 5000).toISOString(),
      lifecyclestage: 'customer',
    });
    const found = await search({
      filterGroups: [
        { filters: [{ propertyName: 'lastmodifieddate', operator: 'GT', value: String(T0) }] },
      ],
    });
    expect(found.data.results.map((r) => r.id)).toEqual([created.id]);
    hubspot.updateContact(created.id, { lifecyclestage: null }, { at: T0 + 6000 });
    expect(hubspot.contact(created.id)?.properties.lifecyclestage).toBeUndefined();
    expect(() => hubspot.updateContact(created.id, { lastmodifieddate: 'x' } as never)).toThrow(
      /kept by HubSpot/,
    );
  });
});

describe('search', () => {
  beforeEach(() => {
    for (let n = 1; n <= 30; n++) {
      hubspot.createContact(
        {
          email: `c${n}@example.com`,
          lifecyclestage: n % 3 === 0 ? 'customer' : 'lead',
          hs_analytics_source: n % 2 === 0 ? 'ORGANIC_SEARCH' : 'DIRECT_TRAFFIC',
        },
        // Three contacts per timestamp.
        { at: T0 + Math.floor((n - 1) / 3) * 1000 },
      );
    }
  });

  it('ORs filter groups and ANDs their filters, with total and default page of 10', async () => {
    const res = await search({
      filterGroups: [
        {
          filters: [
            { propertyName: 'lifecyclestage', operator: 'EQ', value: 'customer' },
            { propertyName: 'hs_analytics_source', operator: 'EQ', value: 'ORGANIC_SEARCH' },
          ],
        },
        { filters: [{ propertyName: 'email', operator: 'EQ', value: 'C1@EXAMPLE.COM' }] },
      ],
      properties: ['email'],
    });
    expect(res.status).toBe(200);
    const emails = res.data.results.map((r) => r.properties.email).sort();
    expect(emails).toEqual(
      ['c1', 'c6', 'c12', 'c18', 'c24', 'c30'].map((e) => `${e}@example.com`).sort(),
    );
    expect(res.data.total).toBe(6);
    expect(res.data.paging).toBeUndefined();
    expect(Object.keys(res.data.results[0]!.properties).sort()).toEqual([
      'createdate',
      'email',
      'hs_object_id',
      'lastmodifieddate',
    ]);
    const all = await search({});
    expect(all.data.total).toBe(30);
    expect(all.data.results).toHaveLength(10);
    expect(all.data.paging).toEqual({ next: { after: '10' } });
  });

  it('sorts by one rule, dates compared as epoch ms or ISO, ties in no id order', async () => {
    const res = await search({
      filterGroups: [
        {
          filters: [
            {
              propertyName: 'lastmodifieddate',
              operator: 'BETWEEN',
              value: String(T0 + 1000),
              highValue: new Date(T0 + 3000).toISOString(),
            },
          ],
        },
      ],
      sorts: [{ propertyName: 'lastmodifieddate', direction: 'DESCENDING' }],
      limit: 200,
    });
    const dates = res.data.results.map((r) => Date.parse(r.properties.lastmodifieddate!));
    expect(dates).toEqual([3, 3, 3, 2, 2, 2, 1, 1, 1].map((k) => T0 + k * 1000));
    // Within each run of three equal dates, ids are not in ascending order every time.
    const ids = res.data.results.map((r) => Number(r.id));
    const runs = [ids.slice(0, 3), ids.slice(3, 6), ids.slice(6, 9)];
    expect(runs.some((run) => run.join() !== [...run].sort((a, b) => a - b).join())).toBe(true);

    const two = await search({
      sorts: [
        { propertyName: 'lastmodifieddate', direction: 'ASCENDING' },
        { propertyName: 'hs_object_id', direction: 'ASCENDING' },
      ],
    });
    expect(two.status).toBe(400);
    expect(two.data).toMatchObject({
      message: 'Only one sorting rule can be applied to any search.',
      category: 'VALIDATION_ERROR',
    });
  });

  it('refuses a limit over 200, unknown properties and operators', async () => {
    // Refused searches count against the per-second limit too.
    await start({ searchRequestsPerSecond: 100 });
    for (const body of [
      { limit: 201 },
      { filterGroups: [{ filters: [{ propertyName: 'nope', operator: 'EQ', value: 'x' }] }] },
      { filterGroups: [{ filters: [{ propertyName: 'email', operator: 'LIKE', value: 'x' }] }] },
      { sorts: [{ propertyName: 'nope' }] },
      {
        filterGroups: Array.from({ length: 6 }, () => ({
          filters: [{ propertyName: 'email', operator: 'HAS_PROPERTY' }],
        })),
      },
    ]) {
      const res = await search(body);
      expect(res.status).toBe(400);
      expect(res.data).toMatchObject({ status: 'error', category: 'VALIDATION_ERROR' });
    }
    const bad = await call('POST', '/crm/v3/objects/contacts/search', {
      body: '{"limit":',
    });
    expect(bad.status).toBe(400);
  });

  it('offers the page past the ceiling and answers 400 when it is asked for', async () => {
    await start({ maxSearchResults: 25 });
    for (let n = 0; n < 40; n++) hubspot.createContact({ email: `x${n}@example.com` });
    const sorted = { sorts: [{ propertyName: 'hs_object_id', direction: 'ASCENDING' }] };
    const page = await search({ ...sorted, limit: 20, after: '10' });
    expect(page.data.results).toHaveLength(15);
    expect(page.data.total).toBe(40);
    expect(page.data.paging).toEqual({ next: { after: '25' } });
    const beyond = await search({ ...sorted, limit: 20, after: '25' });
    expect(beyond.status).toBe(400);
    expect(beyond.data).toMatchObject({ status: 'error', category: 'VALIDATION_ERROR' });
    expect(beyond.data.message).toMatch(/beyond 25 results/);
  });
});

describe('owners and properties', () => {
  it('lists owners with paging, by email, archived apart, and reads one', async () => {
    const owners = [1, 2, 3].map((n) =>
      hubspot.addOwner({ email: `o${n}@example.com`, firstName: `O${n}`, lastName: 'Owner' }),
    );
    hubspot.archiveOwner(owners[2]!.id);
    const first = await call('GET', '/crm/v3/owners', { params: { limit: 1 } });
    expect(first.data.results).toEqual([
      {
        id: owners[0]!.id,
        email: 'o1@example.com',
        firstName: 'O1',
        lastName: 'Owner',
        userId: owners[0]!.userId,
        createdAt: expect.any(String),
        updatedAt: expect.any(String),
        archived: false,
      },
    ]);
    const next = await call('GET', '/crm/v3/owners', {
      params: { limit: 1, after: first.data.paging!.next.after },
    });
    expect(next.data.results.map((o) => o.id)).toEqual([owners[1]!.id]);
    expect(next.data.paging).toBeUndefined();
    const archived = await call('GET', '/crm/v3/owners', { params: { archived: true } });
    expect(archived.data.results.map((o) => o.id)).toEqual([owners[2]!.id]);
    const byEmail = await call('GET', '/crm/v3/owners', { params: { email: 'O2@example.com' } });
    expect(byEmail.data.results.map((o) => o.id)).toEqual([owners[1]!.id]);
    expect((await call('GET', `/crm/v3/owners/${owners[1]!.id}`)).data.email).toBe(
      'o2@example.com',
    );
    expect((await call('GET', '/crm/v3/owners/999')).status).toBe(404);
  });

  it('describes enumeration properties with their options, custom ones included', async () => {
    hubspot.addPropertyOption('lifecyclestage', '1234567', 'Partner');
    const res = await call('GET', '/crm/v3/properties/contacts/lifecyclestage');
    expect(res.data).toMatchObject({ name: 'lifecyclestage', type: 'enumeration' });
    expect(res.data.options.map((o) => [o.value, o.label])).toContainEqual([
      'marketingqualifiedlead',
      'Marketing Qualified Lead',
    ]);
    expect(res.data.options.at(-1)).toMatchObject({ value: '1234567', label: 'Partner' });
    const missing = await call('GET', '/crm/v3/properties/contacts/nope');
    expect(missing.status).toBe(404);
    expect(missing.data.category).toBe('OBJECT_NOT_FOUND');
    const all = await call('GET', '/crm/v3/properties/contacts');
    expect(all.data.results.map((p) => p.name)).toContain('hs_analytics_source');
  });

  it('answers 404 for an unknown path and 405 for a wrong method', async () => {
    expect((await call('GET', '/crm/v3/objects/tickets')).status).toBe(404);
    const wrong = await call('POST', '/crm/v3/objects/contacts/42');
    expect(wrong.status).toBe(405);
    expect(wrong.headers.allow).toBe('GET');
  });
});

describe('rate limits', () => {
  it('refuses a fifth search within a second with 429 SECONDLY, and lets it through after', async () => {
    // Sent at once, so that all five arrive within the second however slow the machine.
    const answers = await Promise.all([1, 2, 3, 4, 5].map(() => search({ limit: 1 })));
    expect(answers.map((r) => r.status).sort()).toEqual([200, 200, 200, 200, 429]);
    const refused = answers.find((r) => r.status === 429)!;
    expect(refused.data).toEqual({
      status: 'error',
      message: 'You have reached your secondly limit.',
      errorType: 'RATE_LIMIT',
      correlationId: expect.stringMatching(UUID),
      policyName: 'SECONDLY',
      category: 'RATE_LIMITS',
    });
    expect(refused.headers['retry-after']).toBe('1');
    expect(refused.headers['x-hubspot-ratelimit-max']).toBeUndefined();
    // Listing does not count against the search limit.
    expect((await call('GET', '/crm/v3/objects/contacts')).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect((await search({ limit: 1 })).status).toBe(200);
    expect(hubspot.stats).toMatchObject({ refusedBySearchLimit: 1, peakSearchesPerSecond: 4 });
  });

  it('refuses requests past the ten-second burst limit with TEN_SECONDLY_ROLLING', async () => {
    await start({ requestsPerTenSeconds: 3 });
    const ok = await call('GET', '/crm/v3/objects/contacts');
    expect(ok.headers).toMatchObject({
      'x-hubspot-ratelimit-max': '3',
      'x-hubspot-ratelimit-remaining': '2',
      'x-hubspot-ratelimit-interval-milliseconds': '10000',
    });
    await call('GET', '/crm/v3/owners');
    await search({});
    const refused = await call('GET', '/crm/v3/objects/contacts');
    expect(refused.status).toBe(429);
    expect(refused.data).toMatchObject({
      message: 'You have reached your ten_secondly_rolling limit.',
      policyName: 'TEN_SECONDLY_ROLLING',
      errorType: 'RATE_LIMIT',
    });
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(9);
    expect(hubspot.stats.refusedByBurstLimit).toBe(1);
  });
});

describe('faults', () => {
  it('answers injected statuses with HubSpot bodies, Retry-After only when given', async () => {
    hubspot.inject({ kind: 'status', status: 503, count: 1 });
    hubspot.inject({ kind: 'status', status: 429, count: 1, retryAfterSeconds: 2 });
    const unavailable = await call('GET', '/crm/v3/objects/contacts');
    expect(unavailable.status).toBe(503);
    expect(unavailable.data).toMatchObject({ status: 'error', correlationId: expect.any(String) });
    expect(unavailable.headers['retry-after']).toBeUndefined();
    const limited = await search({});
    expect(limited.status).toBe(429);
    expect(limited.data.policyName).toBe('SECONDLY');
    expect(limited.headers['retry-after']).toBe('2');
    expect((await call('GET', '/crm/v3/objects/contacts')).status).toBe(200);
  });

  it('drops connections before or after answering, delays answers, and logs requests', async () => {
    hubspot.inject({ kind: 'drop', count: 1 });
    await expect(
      axios.get(`${hubspot.url}/crm/v3/owners`, {
        headers: { Authorization: `Bearer ${hubspot.token}` },
        proxy: false,
      }),
    ).rejects.toMatchObject({ code: 'ECONNRESET' });
    hubspot.inject({ kind: 'drop-after-apply', count: 1 });
    await expect(
      axios.post(
        `${hubspot.url}/crm/v3/objects/contacts/search`,
        {},
        {
          headers: { Authorization: `Bearer ${hubspot.token}` },
          proxy: false,
        },
      ),
    ).rejects.toMatchObject({ code: 'ECONNRESET' });
    hubspot.setLatency(150);
    const started = Date.now();
    expect((await call('GET', '/crm/v3/owners')).status).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    hubspot.clearFaults();
    expect(hubspot.requests.map((r) => [r.method, r.path, r.status])).toEqual([
      ['GET', '/crm/v3/owners', 0],
      ['POST', '/crm/v3/objects/contacts/search', 0],
      ['GET', '/crm/v3/owners', 200],
    ]);
    expect(hubspot.requests[1]!.body).toEqual({});
  });
});

describe('seedAccount', () => {
  it('creates contacts sharing emails with Pagila customers, owners and tied timestamps', async () => {
    const { owners, contacts } = seedAccount(hubspot, {
      contacts: 12,
      fromPagila: 5,
      perTimestamp: 4,
    });
    const customers = pagilaCustomers();
    expect(customers).toHaveLength(599);
    expect(contacts.slice(0, 5).map((c) => c.properties.email)).toEqual(
      customers.slice(0, 5).map((c) => c.email.toLowerCase()),
    );
    expect(contacts[0]!.properties).toMatchObject({
      email: 'mary.smith@sakilacustomer.org',
      firstname: 'Mary',
      lastname: 'Smith',
    });
    expect(contacts[5]!.properties.email).toBe('contact6@example.com');
    expect(owners.map((o) => o.archived)).toEqual([false, false, false, true]);
    const dates = contacts.map((c) => c.properties.lastmodifieddate);
    expect(new Set(dates).size).toBe(3);
    expect(dates.filter((d) => d === dates[0])).toHaveLength(4);
    expect(contacts.some((c) => c.properties.hubspot_owner_id === owners[3]!.id)).toBe(true);
    // The same options give the same account.
    const again = await start();
    const second = seedAccount(again, { contacts: 12, fromPagila: 5, perTimestamp: 4 });
    expect(second.contacts.map((c) => c.properties.lifecyclestage)).toEqual(
      contacts.map((c) => c.properties.lifecyclestage),
    );
  });
});
