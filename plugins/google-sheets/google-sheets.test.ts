/**
 * The Google Sheets plugin against the Sheets emulator, through the real googleapis client and
 * the real sync engine on this run's database driver: every request checked against the
 * discovery document (`validate: true`, no violations allowed).
 */
import { randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { secretKeys, type PluginContext } from 'audiencehub/sdk';
// The engine and the hub's stores are what drive a plugin in production; this suite drives the
// plugin through them, as test/sync/engine.test.ts does (plugin code itself imports only the SDK).
import type { Principal } from '../../src/auth/credentials.ts';
import { testConfig } from '../../src/config.ts';
import type { Database, Db } from '../../src/db/index.ts';
import { secretBox } from '../../src/destinations/secrets.ts';
import { createDestination } from '../../src/destinations/store.ts';
import { uuidv7 } from '../../src/ids.ts';
import { silentLogger } from '../../src/log.ts';
import { foldAll } from '../../src/profiles/fold.ts';
import { computeSegment } from '../../src/segments/compute.ts';
import { createSegment } from '../../src/segments/store.ts';
import { runSync, type SyncDeps } from '../../src/sync/engine.ts';
import { createRegistry } from '../../src/sync/registry.ts';
import { createSync } from '../../src/sync/store.ts';
import { startSheetsEmulator, type SheetsEmulator } from '../../test/emulators/sheets/index.ts';
import { driver, testDatabase } from '../../test/support/db.ts';
import { send } from '../../test/support/ingest.ts';
import sheets from './index.ts';
import { SheetsConfig } from './client.ts';
import { tabTitle } from './sync.ts';

let database: Database;
let db: Db;
let emulator: SheetsEmulator;
let deps: SyncDeps;
const hub = testConfig();
const admin: Principal = { tokenId: uuidv7(), name: 'admin', role: 'admin' };
const TOKEN = 'ya29.test-token-0123456789';

const ctx: PluginContext = {
  log: silentLogger,
  signal: new AbortController().signal,
  http: () => {
    throw new Error('the Sheets plugin goes through googleapis');
  },
};

beforeAll(async () => {
  database = await testDatabase();
  db = database.db;
  emulator = await startSheetsEmulator({ validate: true });
});
afterAll(async () => {
  await emulator.close();
  await database.close();
});
beforeEach(async () => {
  await db.execute(
    sql`truncate profiles, identities, traits, events, profile_event_counts, merges, event_cursors,
      segments, segment_members, segment_membership_changes, segment_runs, segment_daily_sizes,
      destinations, syncs, sync_state, sync_runs, sync_row_errors restart identity`,
  );
  emulator.resetQuota();
  emulator.clearFaults();
  emulator.requests.length = 0;
  const registry = createRegistry();
  registry.register(sheets);
  deps = { registry, box: secretBox(randomBytes(32)), log: silentLogger };
});
afterEach(() => {
  expect(emulator.violations).toEqual([]);
});

const person = (n: number, plan = 'pro', extra: Record<string, unknown> = {}) => ({
  type: 'identify',
  userId: `u${n}`,
  traits: { email: `p${n}@example.com`, plan, ...extra },
});

const configFor = (spreadsheetId: string, extra: Partial<SheetsConfig> = {}) => ({
  spreadsheetId,
  accessToken: TOKEN,
  rootUrl: emulator.url,
  quotaWaitMs: 50,
  ...extra,
});

/** A segment of plan = pro|team people synced to a new spreadsheet. */
async function setUp(
  options: {
    mode?: 'mirror' | 'upsert';
    tabs?: NonNullable<Parameters<SheetsEmulator['createSpreadsheet']>[0]>['tabs'];
    mapping?: { from: string; to: string }[];
    config?: Partial<SheetsConfig>;
  } = {},
) {
  const spreadsheetId = emulator.createSpreadsheet({ tabs: options.tabs ?? ['Sheet1'] });
  const segment = await createSegment(
    db,
    admin,
    {
      name: `Paying: customers ${uuidv7().slice(-6)}`,
      description: '',
      type: 'dynamic',
      visibility: 'shared',
      rules: { trait: { name: 'plan', op: 'in', value: ['pro', 'team'] } },
    },
    { maxPerOwner: 50 },
  );
  const destination = await createDestination(db, deps, admin, {
    name: `sheets-${uuidv7()}`,
    plugin: 'google-sheets',
    config: configFor(spreadsheetId, options.config),
  });
  const sync = await createSync(db, deps, admin, {
    segmentId: segment.id,
    destinationId: destination.id,
    mode: options.mode ?? 'mirror',
    mapping: options.mapping ?? [
      { from: 'identity:email', to: 'email' },
      { from: 'trait:plan', to: 'plan' },
    ],
  });
  const tab = tabTitle(SheetsConfig.parse(configFor(spreadsheetId, options.config)), {
    segmentName: segment.name,
  });
  const refresh = async () => {
    await foldAll(db);
    await computeSegment(db, segment.id, 'manual');
  };
  const run = () => runSync(db, deps, sync.id, 'manual');
  /** The tab's data rows (header left out), sorted by profile id. */
  const rowsOf = () =>
    emulator
      .readTab(spreadsheetId, tab)
      .slice(1)
      .sort((a, b) => String(a[0]).localeCompare(String(b[0])));
  const emails = () => rowsOf().map((r) => r[1]);
  return { spreadsheetId, sync, tab, refresh, run, rowsOf, emails };
}

const writes = () =>
  emulator.requests.filter((r) => r.method !== 'GET' && r.operation !== undefined);

describe(`the Google Sheets destination (${driver})`, () => {
  it('keeps its credentials secret and maps any field', async () => {
    expect(secretKeys(sheets.config).sort()).toEqual(['accessToken', 'serviceAccountKey']);
    expect(
      await sheets.fields({ config: SheetsConfig.parse(configFor('abcdefghijkl')) }, ctx),
    ).toEqual([]);
    expect(SheetsConfig.safeParse({ spreadsheetId: 'abcdefghijkl' }).success).toBe(false);
  });

  it('mirror: writes header and rows, then nothing, then only the changes', async () => {
    await send(
      db,
      hub,
      [1, 2, 3, 4, 5].map((n) => person(n)),
    );
    await send(db, hub, [person(6, 'free')]);
    const s = await setUp();
    await s.refresh();

    expect(await s.run()).toMatchObject({ status: 'succeeded', added: 5 });
    const all = emulator.readTab(s.spreadsheetId, s.tab);
    expect(all[0]).toEqual(['profile_id', 'email', 'plan']);
    expect(s.emails().sort()).toEqual([1, 2, 3, 4, 5].map((n) => `p${n}@example.com`));

    // No change: no request at all.
    emulator.requests.length = 0;
    expect(await s.run()).toMatchObject({ status: 'succeeded', added: 0, updated: 0 });
    expect(emulator.requests).toEqual([]);

    // One update: only its row changes, in place.
    const before = emulator.readTab(s.spreadsheetId, s.tab);
    await send(db, hub, [person(3, 'team')]);
    await s.refresh();
    expect(await s.run()).toMatchObject({ status: 'succeeded', updated: 1 });
    const after = emulator.readTab(s.spreadsheetId, s.tab);
    const changed = after.filter((row, i) => JSON.stringify(row) !== JSON.stringify(before[i]));
    expect(changed).toEqual([[expect.any(String), 'p3@example.com', 'team']]);
    expect(writes()).toHaveLength(1);

    // Two leave, one enters: rows deleted, the sheet equals the segment.
    await send(db, hub, [person(2, 'free'), person(4, 'free'), person(6, 'pro')]);
    await s.refresh();
    expect(await s.run()).toMatchObject({ status: 'succeeded', added: 1, removed: 2 });
    expect(s.emails().sort()).toEqual([1, 3, 5, 6].map((n) => `p${n}@example.com`));
    expect(emulator.tabs(s.spreadsheetId).find((t) => t.title === s.tab)?.rowCount).toBe(5);

    // Everyone leaves, then someone comes back: the index follows the deleted rows.
    await send(
      db,
      hub,
      [1, 3, 5, 6].map((n) => person(n, 'free')),
    );
    await s.refresh();
    expect(await s.run()).toMatchObject({ status: 'succeeded', removed: 4 });
    expect(emulator.readTab(s.spreadsheetId, s.tab)).toEqual([['profile_id', 'email', 'plan']]);
    await send(db, hub, [person(5, 'pro')]);
    await s.refresh();
    expect(await s.run()).toMatchObject({ status: 'succeeded', added: 1 });
    expect(s.emails()).toEqual(['p5@example.com']);
  });

  it('upsert: never deletes rows', async () => {
    await send(
      db,
      hub,
      [1, 2, 3].map((n) => person(n)),
    );
    const s = await setUp({ mode: 'upsert' });
    await s.refresh();
    expect(await s.run()).toMatchObject({ status: 'succeeded', added: 3 });
    await send(db, hub, [person(1, 'free'), person(2, 'team')]);
    await s.refresh();
    expect(await s.run()).toMatchObject({ status: 'succeeded', updated: 1, removed: 0 });
    expect(s.rowsOf().map((r) => [r[1], r[2]])).toEqual([
      ['p1@example.com', 'pro'],
      ['p2@example.com', 'team'],
      ['p3@example.com', 'pro'],
    ]);
    expect(emulator.tabs(s.spreadsheetId).find((t) => t.title === s.tab)?.rowCount).toBe(4);
  });

  it('keeps every request body under 2 MB', async () => {
    const wide = (n: number) => ({
      a: `${n}-`.padEnd(9000, 'a'),
      b: `${n}-`.padEnd(9000, 'b'),
      c: `${n}-`.padEnd(9000, 'c'),
    });
    await send(
      db,
      hub,
      Array.from({ length: 100 }, (_, n) => person(n, 'pro', wide(n))),
    );
    const s = await setUp({
      config: { quotaWaitMs: 400 },
      mapping: [
        { from: 'identity:email', to: 'email' },
        { from: 'trait:a', to: 'a' },
        { from: 'trait:b', to: 'b' },
        { from: 'trait:c', to: 'c' },
      ],
    });
    await s.refresh();
    // Two writes a window: the tab and the first chunk pass, the second chunk is refused; the
    // retried batch must neither duplicate the first chunk's rows nor lose any.
    emulator.setQuota({ writesPerUser: 2, windowMs: 300 });
    try {
      expect(await s.run()).toMatchObject({ status: 'succeeded', added: 100 });
    } finally {
      emulator.setQuota({ writesPerUser: 60, windowMs: 60_000 });
    }
    expect(emulator.requests.some((r) => r.status === 429)).toBe(true);
    const bodies = writes().map((r) => r.bodyBytes);
    expect(bodies.length).toBeGreaterThanOrEqual(3); // the tab, then at least two chunks
    expect(Math.max(...bodies)).toBeLessThan(2_000_000);
    expect(s.rowsOf()).toHaveLength(100);
    expect(new Set(s.emails()).size).toBe(100);
    expect(s.rowsOf().every((r) => String(r[2]).length === 9000)).toBe(true);
  });

  it('waits out a quota 429 and retries the batch', async () => {
    await send(
      db,
      hub,
      [1, 2, 3].map((n) => person(n)),
    );
    const s = await setUp({ config: { quotaWaitMs: 400 } });
    await s.refresh();
    // One write a window: the tab's creation passes, the rows' write is refused once.
    emulator.setQuota({ writesPerUser: 1, windowMs: 300 });
    try {
      expect(await s.run()).toMatchObject({ status: 'succeeded', added: 3 });
    } finally {
      emulator.setQuota({ writesPerUser: 60, windowMs: 60_000 });
    }
    expect(emulator.requests.some((r) => r.status === 429)).toBe(true);
    expect(s.emails()).toHaveLength(3);
  });

  it('refuses to pass 10 million cells before writing', async () => {
    await send(
      db,
      hub,
      [1, 2, 3].map((n) => person(n)),
    );
    // 9,999,990 cells already: the rows (3 × 3 cells) would pass the limit.
    const s = await setUp({ tabs: [{ title: 'Big', rowCount: 4_999_995, columnCount: 2 }] });
    await s.refresh();
    const run = await s.run();
    expect(run.status).toBe('failed');
    expect(run.error).toMatch(/would hold 10,000,00\d cells .* limit of 10,000,000/);
    // The tab and its header were written, no row was.
    expect(emulator.readTab(s.spreadsheetId, s.tab)).toEqual([['profile_id', 'email', 'plan']]);
    expect(writes().filter((r) => r.status === 400)).toEqual([]);
  });

  it('recreates a tab a person deleted; a deleted spreadsheet fails the run', async () => {
    await send(
      db,
      hub,
      [1, 2].map((n) => person(n)),
    );
    const s = await setUp();
    await s.refresh();
    await s.run();
    emulator.deleteTab(s.spreadsheetId, s.tab);
    await send(db, hub, [person(1, 'team'), person(3)]);
    await s.refresh();
    expect(await s.run()).toMatchObject({ status: 'succeeded', added: 1, updated: 1 });
    // The header and the changed rows come back; p2, unchanged, waits for its next change.
    expect(emulator.readTab(s.spreadsheetId, s.tab)[0]).toEqual(['profile_id', 'email', 'plan']);
    expect(s.emails().sort()).toEqual(['p1@example.com', 'p3@example.com']);

    emulator.deleteSpreadsheet(s.spreadsheetId);
    await send(db, hub, [person(4)]);
    await s.refresh();
    const run = await s.run();
    expect(run).toMatchObject({ status: 'failed' });
    expect(run.error).toMatch(/no spreadsheet .*deleted or the id is wrong/);
    expect(run.error).not.toContain(TOKEN);
  });

  it('refuses to write into a tab holding other data', async () => {
    await send(db, hub, [person(1)]);
    const s = await setUp({
      tabs: [{ title: 'Mine', values: [['name', 'phone']] }],
      config: { tabName: 'Mine' },
    });
    await s.refresh();
    const run = await s.run();
    expect(run.status).toBe('failed');
    expect(run.error).toMatch(/Tab "Mine" .* holds other data/);
    expect(emulator.readTab(s.spreadsheetId, 'Mine')).toEqual([['name', 'phone']]);
  });

  it('check: passes, or says why the spreadsheet cannot be written', async () => {
    const id = emulator.createSpreadsheet({ tabs: ['Sheet1'], sharedWith: [TOKEN] });
    const config = SheetsConfig.parse(configFor(id));
    expect(await sheets.check({ config }, ctx)).toEqual({ ok: true });

    const stranger = SheetsConfig.parse(configFor(id, { accessToken: 'ya29.someone-else' }));
    const refused = await sheets.check({ config: stranger }, ctx);
    expect(refused).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/403.*share spreadsheet/),
    });

    emulator.deleteSpreadsheet(id);
    expect(await sheets.check({ config }, ctx)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/no spreadsheet .*deleted or the id is wrong/),
    });
  });
});
