/**
 * The HubSpot connector against the HubSpot emulator, through the SDK's HTTP client as the hub
 * gives it: check, discover, full and incremental reads of contacts (labels and owners
 * resolved), ties on `lastmodifieddate` across pages and past the search ceiling, resuming from
 * checkpoints, the owners stream, credentials refused, the search limit waited out, and the
 * SDK's conformance kit.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  ConfigError,
  createHttpClient,
  sourceConformance,
  type Cursor,
  type PluginContext,
  type ReadMode,
  type SourceStream,
} from 'audiencehub/sdk';
import { createRequestLimiter } from '../../src/sdk/http.ts';
import {
  seedAccount,
  startHubSpotEmulator,
  type HubSpotEmulator,
  type HubSpotEmulatorOptions,
} from '../../test/emulators/hubspot/index.ts';
import hubspotSource from './index.ts';
import { HubSpotConfig } from './client.ts';
import { CONTACTS, OWNERS } from './streams.ts';

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

const configOf = (token = hubspot.token): HubSpotConfig =>
  HubSpotConfig.parse({ baseUrl: hubspot.url, accessToken: token });

const quiet = () => {};

/**
 * The context the hub gives a read: its HTTP client with short backoff steps and, when
 * `paced`, the hub's limiter for the connector's declared limits.
 */
function context(options: { paced?: boolean; signal?: AbortSignal } = {}): PluginContext {
  const signal = options.signal ?? new AbortController().signal;
  const limiter = options.paced ? createRequestLimiter(hubspotSource.limits!) : undefined;
  return {
    log: { debug: quiet, info: quiet, warn: quiet, error: quiet },
    signal,
    http: (http) =>
      createHttpClient({ ...http, backoff: { baseMs: 20, maxMs: 5000 }, signal, limiter }),
  };
}

interface Read {
  records: Record<string, unknown>[];
  /** Each checkpoint with how many records came before it. */
  checkpoints: { cursor: Cursor; after: number }[];
  last: Cursor | undefined;
}

async function read(
  stream: SourceStream,
  options: { cursor?: Cursor | null; mode?: ReadMode; ctx?: PluginContext; token?: string } = {},
): Promise<Read> {
  const result: Read = { records: [], checkpoints: [], last: undefined };
  for await (const message of hubspotSource.read(
    {
      config: configOf(options.token),
      stream,
      cursor: options.cursor ?? null,
      mode: options.mode ?? (stream.modes.includes('incremental') ? 'incremental' : 'full_refresh'),
    },
    options.ctx ?? context(),
  )) {
    if (message.type === 'record') result.records.push(message.data);
    else {
      result.checkpoints.push({ cursor: message.cursor, after: result.records.length });
      result.last = message.cursor;
    }
  }
  return result;
}

const ids = (r: Read) => r.records.map((c) => c.id as string);
const sortedIds = (values: string[]) => [...values].sort((a, b) => Number(a) - Number(b));
const searches = () => hubspot.requests.filter((r) => r.path.endsWith('/contacts/search'));

/** (lastmodifieddate, id) never goes backwards across a read. */
function expectOrdered(records: Record<string, unknown>[]) {
  const keys = records.map((r) => [Date.parse(r.lastmodifieddate as string), Number(r.id)]);
  for (let i = 1; i < keys.length; i++) {
    const [at, id] = keys[i]!;
    const [prevAt, prevId] = keys[i - 1]!;
    expect(at! > prevAt! || (at === prevAt && id! > prevId!), `record ${i}`).toBe(true);
  }
}

describe('check and discover', () => {
  it('accepts a working token and describes contacts and owners', async () => {
    expect(await hubspotSource.check({ config: configOf() }, context())).toEqual({ ok: true });
    const streams = await hubspotSource.discover({ config: configOf() }, context());
    expect(streams.map((s) => [s.name, s.primaryKey, s.modes, s.cursorField])).toEqual([
      ['contacts', ['id'], ['full_refresh', 'incremental'], 'lastmodifieddate'],
      ['owners', ['id'], ['full_refresh'], undefined],
    ]);
    expect(streams[0]!.fields.find((f) => f.name === 'lastmodifieddate')?.type).toBe('datetime');
  });

  it('refuses a bad token with the reason, never the token', async () => {
    const result = await hubspotSource.check(
      { config: configOf('pat-na1-not-a-token') },
      context(),
    );
    expect(result.ok).toBe(false);
    const reason = (result as { reason: string }).reason;
    expect(reason).toMatch(/^HubSpot answered 401 to GET http:\/\/127\.0\.0\.1:\d+\/crm\/v3\//);
    expect(reason).toMatch(/Authentication credentials not found.*did not accept the access token/);
    expect(reason).not.toContain('pat-na1-not-a-token');
  });

  it('names the scope a token lacks', async () => {
    await start({ tokens: [{ token: 'pat-na1-contacts', scopes: ['crm.objects.contacts.read'] }] });
    const result = await hubspotSource.check({ config: configOf() }, context());
    expect(result).toEqual({
      ok: false,
      reason: expect.stringMatching(
        /answered 403 to GET .*\/crm\/v3\/owners: This app hasn't been granted all required scopes.* give the private app the crm\.objects\.owners\.read scope/,
      ),
    });
  });
});

describe('contacts', () => {
  it('reads every contact once, labels and owners resolved, a checkpoint per page', async () => {
    const { owners, contacts } = seedAccount(hubspot, {
      contacts: 450,
      fromPagila: 50,
      perTimestamp: 3,
    });
    const full = await read(CONTACTS);
    expect(sortedIds(ids(full))).toEqual(contacts.map((c) => c.id));
    expectOrdered(full.records);
    expect(full.checkpoints.length).toBeGreaterThanOrEqual(3);
    expect(full.last).toEqual({
      lastmodifieddate: contacts.at(-1)!.properties.lastmodifieddate,
      id: contacts.at(-1)!.id,
    });

    const mary = full.records.find((r) => r.email === 'mary.smith@sakilacustomer.org')!;
    const stored = contacts[0]!.properties;
    const owner = owners.find((o) => o.id === stored.hubspot_owner_id);
    expect(mary).toEqual({
      id: contacts[0]!.id,
      email: 'mary.smith@sakilacustomer.org',
      firstname: 'Mary',
      lastname: 'Smith',
      phone: stored.phone ?? null,
      lifecyclestage: stored.lifecyclestage ?? null,
      lifecyclestage_label: expect.anything(),
      hs_analytics_source: stored.hs_analytics_source ?? null,
      hs_analytics_source_label: expect.anything(),
      hubspot_owner_id: stored.hubspot_owner_id ?? null,
      owner_email: owner?.email ?? null,
      owner_name: owner ? `${owner.firstName} ${owner.lastName}` : null,
      createdate: stored.createdate,
      lastmodifieddate: stored.lastmodifieddate,
    });
    const labels = Object.fromEntries(
      full.records.map((r) => [r.lifecyclestage, r.lifecyclestage_label]),
    );
    expect(labels).toMatchObject({
      marketingqualifiedlead: 'Marketing Qualified Lead',
      customer: 'Customer',
    });
    expect(
      full.records.find((r) => r.hs_analytics_source === 'SOCIAL_MEDIA')?.hs_analytics_source_label,
    ).toBe('Organic Social');
    // The deactivated owner is resolved from the archived list.
    const archivedOwner = owners.find((o) => o.archived)!;
    expect(full.records.find((r) => r.hubspot_owner_id === archivedOwner.id)?.owner_email).toBe(
      archivedOwner.email,
    );
    // Owners and labels are read once per read.
    expect(hubspot.requests.filter((r) => r.path.startsWith('/crm/v3/owners'))).toHaveLength(2);
    expect(hubspot.requests.filter((r) => r.path.startsWith('/crm/v3/properties'))).toHaveLength(2);
  });

  it('reads only what changed after the last checkpoint, and nothing when nothing did', async () => {
    const { contacts } = seedAccount(hubspot, { contacts: 60 });
    const first = await read(CONTACTS);
    expect(first.records).toHaveLength(60);
    expect((await read(CONTACTS, { cursor: first.last })).records).toEqual([]);

    const now = Date.now();
    hubspot.updateContact(contacts[10]!.id, { lifecyclestage: 'customer' }, { at: now });
    hubspot.updateContact(contacts[3]!.id, { firstname: 'Renamed' }, { at: now + 1 });
    const added = hubspot.createContact(
      { email: 'new@example.com', lifecyclestage: 'lead' },
      { at: now + 2 },
    );
    hubspot.archiveContact(contacts[20]!.id);
    const next = await read(CONTACTS, { cursor: first.last });
    expect(ids(next)).toEqual([contacts[10]!.id, contacts[3]!.id, added.id]);
    expect(next.records[0]).toMatchObject({
      lifecyclestage: 'customer',
      lifecyclestage_label: 'Customer',
    });
    expect(next.records[1]).toMatchObject({ firstname: 'Renamed' });
    expect(next.last).toEqual({
      lastmodifieddate: hubspot.contact(added.id)!.properties.lastmodifieddate,
      id: added.id,
    });
  });

  it('crosses the search ceiling with ties on lastmodifieddate: nothing lost or repeated', async () => {
    await start({ maxSearchResults: 50, searchRequestsPerSecond: 1000 });
    const { contacts } = seedAccount(hubspot, { contacts: 300, perTimestamp: 7 });
    const full = await read(CONTACTS);
    expect(sortedIds(ids(full))).toEqual(contacts.map((c) => c.id));
    expectOrdered(full.records);
    // No query is paged: the ceiling is never asked past.
    expect(searches().every((r) => r.status === 200)).toBe(true);
    expect(searches().every((r) => (r.body as { after?: unknown }).after === undefined)).toBe(true);
    expect(searches().length).toBeGreaterThan(300 / 50);

    // Resuming from any checkpoint reads exactly the rest.
    for (const checkpoint of full.checkpoints.filter((_, i) => i % 2 === 1)) {
      const resumed = await read(CONTACTS, { cursor: checkpoint.cursor });
      expect(ids(resumed)).toEqual(ids(full).slice(checkpoint.after));
    }
  });

  it('reads a date shared by more than a page of contacts by id, and resumes inside it', async () => {
    await start({ searchRequestsPerSecond: 1000 });
    const at = Date.parse('2024-05-01T08:00:00.000Z');
    const { contacts } = seedAccount(hubspot, { contacts: 450, perTimestamp: 430, since: at });
    const full = await read(CONTACTS);
    expect(ids(full)).toEqual(contacts.map((c) => c.id));
    const bySameDate = searches().filter(
      (r) =>
        (r.body as { sorts: { propertyName: string }[] }).sorts[0]!.propertyName === 'hs_object_id',
    );
    expect(bySameDate.length).toBeGreaterThanOrEqual(3);

    const inside = full.checkpoints.find((c) => c.after === 200)!;
    expect(inside.cursor).toEqual({
      lastmodifieddate: new Date(at).toISOString(),
      id: contacts[199]!.id,
    });
    const resumed = await read(CONTACTS, { cursor: inside.cursor });
    expect(ids(resumed)).toEqual(contacts.slice(200).map((c) => c.id));
  });

  it('reads in full by listing, then hands over to incremental reads', async () => {
    const { contacts } = seedAccount(hubspot, { contacts: 250 });
    const full = await read(CONTACTS, { mode: 'full_refresh' });
    expect(ids(full)).toEqual(contacts.map((c) => c.id));
    expect(
      hubspot.requests.filter((r) => r.path.startsWith('/crm/v3/objects/contacts?')),
    ).toHaveLength(3);
    const newest = contacts.at(-1)!;
    expect(full.last).toEqual({
      lastmodifieddate: newest.properties.lastmodifieddate,
      id: newest.id,
    });

    // A listing stopped after its first page resumes with the rest.
    const midway = full.checkpoints[0]!;
    expect(midway).toMatchObject({ after: 100, cursor: { after: expect.any(String) } });
    const resumed = await read(CONTACTS, { cursor: midway.cursor, mode: 'full_refresh' });
    expect(ids(resumed)).toEqual(contacts.slice(100).map((c) => c.id));

    hubspot.updateContact(contacts[5]!.id, { phone: '+44 20 7946 0000' });
    const changes = await read(CONTACTS, { cursor: full.last });
    expect(ids(changes)).toEqual([contacts[5]!.id]);
  });

  it('labels a custom lifecycle stage and leaves unknown owners unresolved', async () => {
    hubspot.addPropertyOption('lifecyclestage', '81726354', 'Partner');
    hubspot.createContact({
      email: 'p@example.com',
      lifecyclestage: '81726354',
      hubspot_owner_id: '999',
    });
    const { records } = await read(CONTACTS);
    expect(records[0]).toMatchObject({
      lifecyclestage: '81726354',
      lifecyclestage_label: 'Partner',
      hubspot_owner_id: '999',
      owner_email: null,
      owner_name: null,
    });
  });

  it('ends an empty account read with a checkpoint from where it started', async () => {
    expect(await read(CONTACTS)).toEqual({
      records: [],
      checkpoints: [{ cursor: null, after: 0 }],
      last: null,
    });
    const position = { lastmodifieddate: '2024-01-01T00:00:00.000Z', id: '5' };
    expect((await read(CONTACTS, { cursor: position })).last).toEqual(position);
    await expect(read(CONTACTS, { cursor: { page: 3 } })).rejects.toThrow(
      /cannot resume from checkpoint \{"page":3\}/,
    );
  });
});

describe('owners', () => {
  it('reads active then archived owners, and resumes between pages', async () => {
    const active = Array.from({ length: 501 }, (_, i) =>
      hubspot.addOwner({ email: `o${i}@example.com`, firstName: 'O', lastName: String(i) }),
    );
    const gone = hubspot.addOwner({ email: 'gone@example.com', archived: true });
    const full = await read(OWNERS);
    expect(ids(full)).toEqual([...active.map((o) => o.id), gone.id]);
    expect(full.records.at(-1)).toMatchObject({ email: 'gone@example.com', archived: true });
    expect(full.records[0]).toEqual({
      id: active[0]!.id,
      email: 'o0@example.com',
      firstName: 'O',
      lastName: '0',
      userId: active[0]!.userId,
      archived: false,
      createdAt: expect.any(String),
      updatedAt: expect.any(String),
    });
    const second = full.checkpoints.find((c) => c.after === 500)!;
    expect(ids(await read(OWNERS, { cursor: second.cursor }))).toEqual([active[500]!.id, gone.id]);
    expect((await read(OWNERS, { cursor: full.last })).records).toEqual([]);
  });
});

describe('failures', () => {
  it('stops a read on a refused token with a ConfigError that holds no token', async () => {
    const error = await read(CONTACTS, { token: 'pat-na1-revoked' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toMatch(
      /^HubSpot answered 401 to POST http:\/\/127\.0\.0\.1:\d+\/crm\/v3\/objects\/contacts\/search: .*did not accept the access token/,
    );
    expect((error as Error).message).not.toContain('pat-na1-revoked');
  });

  it('waits out the search limit, unpaced and paced by the hub’s limiter', async () => {
    // Unpaced against a limit of 2 a second: three searches in a second however slow the machine.
    await start({ searchRequestsPerSecond: 2 });
    const { contacts } = seedAccount(hubspot, { contacts: 1500 });
    const unpaced = await read(CONTACTS);
    expect(sortedIds(ids(unpaced))).toEqual(contacts.map((c) => c.id));
    expect(hubspot.stats.refusedBySearchLimit).toBeGreaterThan(0);
    const unpacedPages = searches().filter((r) => r.status === 200).length;

    await start();
    const again = seedAccount(hubspot, { contacts: 1500 });
    const paced = await read(CONTACTS, { ctx: context({ paced: true }) });
    expect(sortedIds(ids(paced))).toEqual(again.contacts.map((c) => c.id));
    // Each page took one successful search, whatever 429s came before it.
    expect(searches().filter((r) => r.status === 200)).toHaveLength(unpacedPages);
    expect(searches().every((r) => r.status === 200 || r.status === 429)).toBe(true);
  }, 30_000);

  it('rides out a 503 and a dropped connection mid-read', async () => {
    const { contacts } = seedAccount(hubspot, { contacts: 250 });
    hubspot.inject({ kind: 'status', status: 503, count: 2 });
    hubspot.inject({ kind: 'drop', count: 1 });
    const full = await read(CONTACTS);
    expect(sortedIds(ids(full))).toEqual(contacts.map((c) => c.id));
    expect(hubspot.requests.filter((r) => r.status === 503)).toHaveLength(2);
  });

  it('reads past HubSpot’s 10,000-result ceiling at its real size, paced at 4 requests a second', async () => {
    const { contacts } = seedAccount(hubspot, { contacts: 10_150, perTimestamp: 9 });
    const full = await read(CONTACTS, { ctx: context({ paced: true }) });
    expect(full.records).toHaveLength(10_150);
    expect(new Set(ids(full)).size).toBe(10_150);
    expect(sortedIds(ids(full))).toEqual(contacts.map((c) => c.id));
    expect(searches().every((r) => r.status !== 400)).toBe(true);
  }, 60_000);
});

describe('conformance', () => {
  it('passes the source conformance kit against the emulator', async () => {
    const { contacts } = seedAccount(hubspot, { contacts: 450, perTimestamp: 2 });
    const report = await sourceConformance({
      connector: hubspotSource,
      config: configOf(),
      badConfig: configOf('pat-na1-wrong-token'),
      emulator: hubspot,
      stream: 'contacts',
      change: async () => {
        hubspot.updateContact(contacts[7]!.id, { lifecyclestage: 'opportunity' });
      },
    });
    expect(report.filter((c) => !c.ok)).toEqual([]);
    expect(report.map((c) => c.check)).toContain(
      'a read resumed from a checkpoint repeats nothing and misses nothing',
    );
  }, 60_000);

  it('passes it for the owners stream', async () => {
    for (let i = 0; i < 520; i++) hubspot.addOwner({ email: `o${i}@example.com` });
    const report = await sourceConformance({
      connector: hubspotSource,
      config: configOf(),
      badConfig: configOf('pat-na1-wrong-token'),
      emulator: hubspot,
      stream: 'owners',
    });
    expect(report.filter((c) => !c.ok)).toEqual([]);
  }, 60_000);
});
