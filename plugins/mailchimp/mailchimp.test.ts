import { createHash, randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  ConfigError,
  TransientError,
  type PluginContext,
  type RowResult,
  type SyncInfo,
  type SyncRow,
} from 'audiencehub/sdk';
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
import {
  startMailchimpEmulator,
  type MailchimpEmulator,
} from '../../test/emulators/mailchimp/index.ts';
import { driver, testDatabase } from '../../test/support/db.ts';
import { send } from '../../test/support/ingest.ts';
import mailchimp from './index.ts';
import { MailchimpConfig } from './client.ts';

let emulator: MailchimpEmulator;
let listId: string;
const logs: { level: string; msg: string }[] = [];

beforeEach(async () => {
  emulator = await startMailchimpEmulator({ validate: true });
  listId = emulator.createList({ name: 'Customers' }).id;
  logs.length = 0;
});
afterEach(async () => {
  expect(emulator.violations).toEqual([]);
  await emulator.close();
});

const configOf = (extra: Partial<MailchimpConfig> = {}): MailchimpConfig =>
  MailchimpConfig.parse({ apiKey: emulator.apiKey, listId, baseUrl: emulator.url, ...extra });

const ctx = (): PluginContext => {
  const push = (level: string) => (msg: string) => logs.push({ level, msg });
  return {
    log: { debug: push('debug'), info: push('info'), warn: push('warn'), error: push('error') },
    signal: new AbortController().signal,
    http: () => {
      throw new Error('the Mailchimp plugin goes through its SDK');
    },
  };
};

const info: SyncInfo = {
  id: 'sync-1',
  segmentName: 'Loyal',
  mode: 'mirror',
  fields: ['EMAIL', 'FNAME'],
};

/** The state an `ok` answer asked the hub to keep with the row. */
const stateOf = (result: RowResult | undefined) =>
  result?.status === 'ok' ? result.state : undefined;

let rowId = 0;
const row = (action: SyncRow['action'], email: string, fields = {}): SyncRow => ({
  id: `row-${++rowId}`,
  action,
  fields: { EMAIL: email, ...fields },
});

/** One run of the plugin by hand: prepare, then one batch; each row's result by address. */
async function answers(config: MailchimpConfig, batch: SyncRow[], sync = info) {
  await mailchimp.prepare!({ config, sync }, ctx());
  const results = await mailchimp.sync({ config, sync, batch }, ctx());
  return Object.fromEntries(results.map((r, i) => [batch[i]!.fields.EMAIL as string, r]));
}

/** The same, with a confirmed row as just 'ok'. */
async function run(config: MailchimpConfig, batch: SyncRow[], sync = info) {
  const results = await answers(config, batch, sync);
  return Object.fromEntries(
    Object.entries(results).map(([email, r]) => [email, r.status === 'ok' ? 'ok' : r]),
  );
}

/** The requests made since `from`, as `METHOD /path` after `/3.0`, the list id as `{list}`. */
const callsSince = (from: number) =>
  emulator.requests
    .slice(from)
    .map(
      (r) => `${r.method} ${r.path.split('?')[0]!.slice('/3.0'.length).replace(listId, '{list}')}`,
    );

describe('the Mailchimp plugin against the emulator', () => {
  it('checks the key and the audience', async () => {
    expect(await mailchimp.check({ config: configOf() }, ctx())).toEqual({ ok: true });
    const missing = await mailchimp.check({ config: configOf({ listId: 'nope' }) }, ctx());
    expect(missing).toEqual({ ok: false, reason: 'Mailchimp audience nope not found.' });
    const badKey = await mailchimp.check({ config: configOf({ apiKey: 'wrong-us1' }) }, ctx());
    expect(badKey.ok).toBe(false);
    expect(!badKey.ok && badKey.reason).toMatch(/401 .*check the API key/);
    expect(!badKey.ok && badKey.reason).not.toContain('wrong-us1');
  });

  it('derives the data centre from the key', async () => {
    const { basePath } = await import('./client.ts');
    expect(basePath({ apiKey: 'abc-us6' })).toBe('https://us6.api.mailchimp.com/3.0');
    expect(() => basePath({ apiKey: 'abc' })).toThrow(ConfigError);
  });

  it('offers EMAIL and the merge fields, and creates mapped ones that are missing', async () => {
    const fields = await mailchimp.fields({ config: configOf() }, ctx());
    expect(fields.map((f) => f.key)).toEqual(['EMAIL', 'FNAME', 'LNAME', 'ADDRESS', 'PHONE']);
    expect(fields[0]).toMatchObject({ required: true, identifier: true });
    const sync = { ...info, fields: ['EMAIL', 'FNAME', 'PLAN'] };
    expect(await run(configOf(), [row('add', 'a@example.com', { PLAN: 'pro' })], sync)).toEqual({
      'a@example.com': 'ok',
    });
    expect(emulator.mergeFields(listId).map((f) => f.tag)).toContain('PLAN');
    expect(emulator.member(listId, 'a@example.com')!.mergeFields.PLAN).toBe('pro');
  });

  it('never re-subscribes anyone, and rejects what Mailchimp refuses, row by row', async () => {
    emulator.addMember(listId, { email: 'gone@example.com', status: 'unsubscribed' });
    emulator.addMember(listId, { email: 'bounced@example.com', status: 'cleaned' });
    emulator.addMember(listId, { email: 'kept@example.com', status: 'subscribed' });
    emulator.addMember(listId, { email: 'erased@example.com', status: 'subscribed' });
    emulator.forgetMember(listId, 'erased@example.com');
    const results = await run(configOf(), [
      row('add', 'new@example.com', { FNAME: 'Ada' }),
      row('add', 'gone@example.com', { FNAME: 'Gone' }),
      row('update', 'bounced@example.com'),
      row('add', 'kept@example.com', { FNAME: 'Kept' }),
      row('add', 'not-an-email'),
      row('add', 'erased@example.com'),
      row('add', ''),
    ]);
    expect(results['new@example.com']).toBe('ok');
    expect(results['kept@example.com']).toBe('ok');
    expect(results['gone@example.com']).toMatchObject({
      status: 'rejected',
      reason: /unsubscribed/,
    });
    expect(results['bounced@example.com']).toMatchObject({ status: 'rejected', reason: /cleaned/ });
    expect(results['not-an-email']).toMatchObject({
      status: 'rejected',
      reason: /fake or invalid/,
    });
    expect(results['erased@example.com']).toMatchObject({
      status: 'rejected',
      reason: /permanently deleted/,
    });
    expect(results['']).toMatchObject({ status: 'rejected' });
    expect(emulator.member(listId, 'gone@example.com')!.status).toBe('unsubscribed');
    expect(emulator.member(listId, 'bounced@example.com')!.status).toBe('cleaned');
    expect(emulator.member(listId, 'kept@example.com')!.mergeFields.FNAME).toBe('Kept');
    expect(emulator.segmentMembers(listId, 'Loyal').sort()).toEqual([
      'kept@example.com',
      'new@example.com',
    ]);
  });

  it('with double opt-in, makes new members pending and leaves subscribed ones be', async () => {
    emulator.addMember(listId, { email: 'in@example.com', status: 'subscribed' });
    const config = configOf({ doubleOptIn: true });
    await run(config, [row('add', 'in@example.com'), row('add', 'new@example.com')]);
    expect(emulator.member(listId, 'in@example.com')!.status).toBe('subscribed');
    expect(emulator.member(listId, 'new@example.com')!.status).toBe('pending');
  });

  it('removes the tag only, unless archiving was asked for', async () => {
    emulator.addMember(listId, { email: 'other@example.com', tags: ['Loyal'] });
    const added = await answers(configOf(), [
      row('add', 'a@example.com'),
      row('add', 'b@example.com'),
    ]);
    expect(await run(configOf(), [row('remove', 'a@example.com')])).toEqual({
      'a@example.com': 'ok',
    });
    expect(emulator.member(listId, 'a@example.com')).toMatchObject({
      status: 'subscribed',
      tags: [],
    });
    expect(emulator.memberTags(listId, 'other@example.com')).toEqual(['Loyal']);

    const archiving = configOf({ archiveOnRemove: true });
    const leaving = { ...row('remove', 'b@example.com'), state: stateOf(added['b@example.com']) };
    expect(await run(archiving, [leaving])).toEqual({ 'b@example.com': 'ok' });
    expect(emulator.member(listId, 'b@example.com')!.status).toBe('archived');
    // Archived, forgotten or never there: nothing left to do, and it is not an error.
    expect(await run(archiving, [{ ...leaving, id: `row-${++rowId}` }])).toEqual({
      'b@example.com': 'ok',
    });
  });

  it('answers whether the hub created each member, and archives only those', async () => {
    // A newsletter subscriber before they became a customer: the hub must not archive them.
    emulator.addMember(listId, { email: 'reader@example.com', tags: ['Newsletter'] });
    emulator.addMember(listId, { email: 'shelved@example.com' });
    emulator.setMemberStatus(listId, 'shelved@example.com', 'archived');
    const config = configOf({ archiveOnRemove: true });
    const first = await answers(config, [
      row('add', 'new@example.com'),
      row('add', 'reader@example.com'),
    ]);
    expect(first['new@example.com']).toMatchObject({ status: 'ok', state: { created: true } });
    expect(first['reader@example.com']).toMatchObject({ status: 'ok', state: { created: false } });
    expect(emulator.memberTags(listId, 'reader@example.com')).toEqual(['Newsletter', 'Loyal']);

    // An update keeps the state it had (no `state` in the answer); an update of someone
    // Mailchimp no longer holds adds them back, so the hub created them.
    const kept = {
      ...row('update', 'new@example.com', { FNAME: 'Ann' }),
      state: { created: true },
    };
    const back = { ...row('update', 'shelved@example.com'), state: { created: false } };
    const second = await answers(config, [kept, back]);
    expect(second['new@example.com']).toEqual({ id: kept.id, status: 'ok' });
    expect(second['shelved@example.com']).toMatchObject({ state: { created: true } });
    expect(emulator.member(listId, 'shelved@example.com')).toMatchObject({
      status: 'subscribed',
      tags: ['Loyal'],
    });

    // Rows confirmed before the hub kept state say nothing: treated as not created.
    emulator.addMember(listId, { email: 'old@example.com', tags: ['Loyal'] });
    const before = emulator.requests.length;
    const leaving = [
      { ...row('remove', 'new@example.com'), state: stateOf(first['new@example.com']) },
      { ...row('remove', 'reader@example.com'), state: stateOf(first['reader@example.com']) },
      row('remove', 'old@example.com'),
    ];
    expect(await run(config, leaving)).toEqual({
      'new@example.com': 'ok',
      'reader@example.com': 'ok',
      'old@example.com': 'ok',
    });
    expect(emulator.member(listId, 'new@example.com')!.status).toBe('archived');
    expect(emulator.member(listId, 'reader@example.com')).toMatchObject({
      status: 'subscribed',
      tags: ['Newsletter'],
    });
    expect(emulator.member(listId, 'old@example.com')).toMatchObject({
      status: 'subscribed',
      tags: [],
    });
    expect(callsSince(before).filter((c) => c.startsWith('DELETE'))).toEqual([
      `DELETE /lists/{list}/members/${createHash('md5').update('new@example.com').digest('hex')}`,
    ]);
  });

  it('tags new members in the batch subscribe call: 1,200 people cost 3 calls', async () => {
    const config = configOf();
    const before = emulator.requests.length;
    await mailchimp.prepare!({ config, sync: info }, ctx());
    const people = Array.from({ length: 1200 }, (_, n) => row('add', `p${n}@example.com`));
    const results = [];
    // As the engine sends them: batches of the plugin's batchSize.
    for (let i = 0; i < people.length; i += mailchimp.limits.batchSize) {
      const batch = people.slice(i, i + mailchimp.limits.batchSize);
      results.push(...(await mailchimp.sync({ config, sync: info, batch }, ctx())));
    }
    expect(results.filter((r) => r.status === 'ok' && r.state?.created === true)).toHaveLength(
      1200,
    );
    expect(callsSince(before)).toEqual([
      // The set-up, once a run: merge fields read, the tag looked for and created.
      'GET /lists/{list}/merge-fields',
      'GET /lists/{list}/segments',
      'POST /lists/{list}/segments',
      'POST /lists/{list}',
      'POST /lists/{list}',
      'POST /lists/{list}',
    ]);
    expect(emulator.segmentMembers(listId, 'Loyal')).toHaveLength(1200);
    expect(emulator.member(listId, 'p1199@example.com')).toMatchObject({
      status: 'subscribed',
      tags: ['Loyal'],
    });
  });

  it('neither re-subscribes nor tags an existing unsubscribed member', async () => {
    emulator.addMember(listId, { email: 'gone@example.com', status: 'unsubscribed' });
    emulator.createTag(listId, 'Loyal');
    const config = configOf();
    const before = emulator.requests.length;
    const results = await run(config, [
      row('add', 'new@example.com'),
      row('add', 'gone@example.com', { FNAME: 'Gone' }),
    ]);
    expect(results).toEqual({
      'new@example.com': 'ok',
      'gone@example.com': expect.objectContaining({
        status: 'rejected',
        reason: expect.stringMatching(/unsubscribed/),
      }),
    });
    expect(emulator.member(listId, 'gone@example.com')).toMatchObject({
      status: 'unsubscribed',
      mergeFields: { FNAME: 'Gone' },
      tags: [],
    });
    // Created and tagged in one call; the existing member found by the update pass; no tag call.
    expect(callsSince(before)).toEqual([
      'GET /lists/{list}/merge-fields',
      'GET /lists/{list}/segments',
      'POST /lists/{list}',
      'POST /lists/{list}',
    ]);
  });

  it('does not count as created a member added by a call whose answer was lost', async () => {
    const config = configOf({ archiveOnRemove: true });
    await mailchimp.prepare!({ config, sync: info }, ctx());
    const batch = [row('add', 'a@example.com')];
    // A first batch makes the run's set-up, so the fault below falls on batch subscribe.
    await mailchimp.sync({ config, sync: info, batch: [row('add', 'first@example.com')] }, ctx());
    emulator.inject({ kind: 'drop-after-apply', count: 1 });
    const lost = await mailchimp.sync({ config, sync: info, batch }, ctx()).catch((e) => e);
    expect(lost).toBeInstanceOf(TransientError);
    // The retry finds the member: confirmed and tagged, but not known as the hub's (safe: kept).
    const [retried] = await mailchimp.sync({ config, sync: info, batch }, ctx());
    expect(retried).toMatchObject({ status: 'ok', state: { created: false } });
    expect(emulator.memberTags(listId, 'a@example.com')).toEqual(['Loyal']);
  });

  it('turns 429 and dropped connections into TransientErrors, 401 into a ConfigError', async () => {
    emulator.inject({ kind: 'status', status: 429, count: 1, retryAfterSeconds: 2 });
    const config = configOf();
    await mailchimp.prepare!({ config, sync: info }, ctx());
    const batch = [row('add', 'a@example.com')];
    const busy = await mailchimp.sync({ config, sync: info, batch }, ctx()).catch((e) => e);
    expect(busy).toBeInstanceOf(TransientError);
    expect(busy.retryAfterMs).toBe(2000);
    emulator.inject({ kind: 'drop', count: 1 });
    const dropped = await mailchimp.sync({ config, sync: info, batch }, ctx()).catch((e) => e);
    expect(dropped).toBeInstanceOf(TransientError);
    const badKey = configOf({ apiKey: 'revoked-key-us1' });
    const refused = await mailchimp
      .sync({ config: badKey, sync: info, batch }, ctx())
      .catch((e) => e);
    expect(refused).toBeInstanceOf(ConfigError);
    expect(refused.message).not.toContain('revoked-key-us1');
    expect(refused.message).toMatch(/answered 401 to GET http:\/\/127\.0\.0\.1:\d+\/3\.0\/lists/);
  });

  it('reports an audience deleted in Mailchimp', async () => {
    await run(configOf(), [row('add', 'a@example.com')]);
    emulator.deleteList(listId);
    const failure = await run(configOf(), [row('add', 'b@example.com')]).catch((e) => e);
    expect(failure).toBeInstanceOf(ConfigError);
    expect(failure.message).toMatch(/audience .* was deleted in Mailchimp/);
  });

  it('reports a tag deleted in Mailchimp, and the next run re-creates it', async () => {
    const config = configOf();
    await run(config, [row('add', 'a@example.com')]);
    // Deleted during a run: the run fails with a reason.
    emulator.deleteSegment(listId, 'Loyal');
    const failure = await mailchimp
      .sync({ config, sync: info, batch: [row('add', 'b@example.com')] }, ctx())
      .catch((e) => e);
    expect(failure).toBeInstanceOf(ConfigError);
    expect(failure.message).toMatch(/tag "Loyal" \(id \d+\) was deleted in Mailchimp/);
    // Told by the new member's tag id (batch subscribe made the tag again by name) or, for
    // members the update pass found, by the tag call's 404.
    await mailchimp.prepare!({ config, sync: info }, ctx());
    await mailchimp.sync({ config, sync: info, batch: [row('update', 'a@example.com')] }, ctx());
    emulator.deleteSegment(listId, 'Loyal');
    const again = await mailchimp
      .sync({ config, sync: info, batch: [row('update', 'a@example.com')] }, ctx())
      .catch((e) => e);
    expect(again).toBeInstanceOf(ConfigError);
    expect(again.message).toMatch(/tag "Loyal" \(id \d+\) was deleted in Mailchimp/);
    // The next run makes it again, and says so.
    expect(await run(config, [row('add', 'b@example.com')])).toEqual({ 'b@example.com': 'ok' });
    expect(emulator.segmentMembers(listId, 'Loyal')).toEqual(['b@example.com']);
    expect(logs.find((l) => l.level === 'warn')?.msg).toMatch(/was deleted in Mailchimp/);
  });
});

describe(`Mailchimp through the sync engine (${driver})`, () => {
  let database: Database;
  let db: Db;
  let deps: SyncDeps;
  const hub = testConfig();
  const admin: Principal = { tokenId: uuidv7(), name: 'admin', role: 'admin' };

  beforeAll(async () => {
    database = await testDatabase();
    db = database.db;
  });
  afterAll(() => database.close());
  beforeEach(async () => {
    await db.execute(
      sql`truncate profiles, identities, traits, events, profile_event_counts, merges,
        event_cursors, segments, segment_members, segment_membership_changes, segment_runs,
        segment_daily_sizes, destinations, syncs, sync_state, sync_runs, sync_row_errors
        restart identity`,
    );
    const registry = createRegistry();
    registry.register(mailchimp);
    deps = { registry, box: secretBox(randomBytes(32)), log: silentLogger };
    emulator.addMergeField(listId, { tag: 'PLAN', type: 'text' });
  });

  const person = (n: number, plan = 'pro') => ({
    type: 'identify',
    userId: `u${n}`,
    traits: { email: `p${n}@example.com`, plan },
  });
  const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

  async function setUp(name = 'Paying', config: Partial<MailchimpConfig> = {}) {
    const segment = await createSegment(
      db,
      admin,
      {
        name,
        description: '',
        type: 'dynamic',
        visibility: 'shared',
        rules: { trait: { name: 'plan', op: 'in', value: ['pro', 'team'] } },
      },
      { maxPerOwner: 50 },
    );
    const destination = await createDestination(db, deps, admin, {
      name: `mailchimp-${uuidv7()}`,
      plugin: 'mailchimp',
      config: { apiKey: emulator.apiKey, listId, baseUrl: emulator.url, ...config },
    });
    const sync = await createSync(db, deps, admin, {
      segmentId: segment.id,
      destinationId: destination.id,
      mode: 'mirror',
      mapping: [
        { from: 'identity:email', to: 'EMAIL' },
        { from: 'trait:plan', to: 'PLAN' },
      ],
    });
    const refresh = async () => {
      await foldAll(db);
      await computeSegment(db, segment.id, 'manual');
    };
    return { sync, refresh };
  }

  it('sends the segment once, then nothing, then only a 1% change', async () => {
    await send(
      db,
      hub,
      range(0, 300).map((n) => person(n)),
    );
    emulator.addMember(listId, { email: 'p7@example.com', status: 'unsubscribed' });
    const { sync, refresh } = await setUp();
    await refresh();

    const start = emulator.requests.length;
    const first = await runSync(db, deps, sync.id, 'manual');
    expect(first).toMatchObject({ status: 'partial', added: 299, rejected: 1 });
    // New members are tagged by batch subscribe; the unsubscribed one is found, not tagged.
    expect(emulator.requests.slice(start).filter((r) => /\/segments\/\d+$/.test(r.path))).toEqual(
      [],
    );
    expect(emulator.segmentMembers(listId, 'Paying')).toHaveLength(299);
    expect(emulator.member(listId, 'p7@example.com')!.status).toBe('unsubscribed');
    expect(emulator.member(listId, 'p1@example.com')).toMatchObject({
      status: 'subscribed',
      mergeFields: { PLAN: 'pro' },
      tags: ['Paying'],
    });

    const before = emulator.requests.length;
    expect(await runSync(db, deps, sync.id, 'manual')).toMatchObject({ added: 0, updated: 0 });
    expect(emulator.requests.length).toBe(before);

    // 1%: two move to team, one leaves.
    await send(db, hub, [person(1, 'team'), person(2, 'team'), person(3, 'free')]);
    await refresh();
    const third = await runSync(db, deps, sync.id, 'manual');
    expect(third).toMatchObject({ status: 'succeeded', updated: 2, removed: 1, added: 0 });
    const calls = emulator.requests.slice(before).map((r) => `${r.method} ${r.path}`);
    // Set-up (merge fields, tag lookup), one upsert, one tag add, one tag removal.
    expect(calls).toHaveLength(5);
    expect(emulator.member(listId, 'p1@example.com')!.mergeFields.PLAN).toBe('team');
    expect(emulator.member(listId, 'p3@example.com')).toMatchObject({
      status: 'subscribed',
      tags: [],
    });
  });

  it('waits out a 429 and repeats nothing after a connection dropped mid-batch', async () => {
    await send(
      db,
      hub,
      range(0, 40).map((n) => person(n)),
    );
    const { sync, refresh } = await setUp();
    await refresh();
    emulator.inject({ kind: 'status', status: 429, count: 1, retryAfterSeconds: 1 });
    const started = Date.now();
    expect(await runSync(db, deps, sync.id, 'manual')).toMatchObject({
      status: 'succeeded',
      added: 40,
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);

    await send(
      db,
      hub,
      range(40, 80).map((n) => person(n)),
    );
    await refresh();
    emulator.inject({ kind: 'drop-after-apply', count: 2 });
    expect(await runSync(db, deps, sync.id, 'manual')).toMatchObject({
      status: 'succeeded',
      added: 40,
    });
    expect(emulator.members(listId)).toHaveLength(80);
    expect(emulator.segmentMembers(listId, 'Paying')).toHaveLength(80);
  });

  it('keeps every sync on one key within 10 connections', async () => {
    // 4 syncs × 3 batches: more batches than the key's 10 connections.
    for (const from of [0, 500, 1000]) {
      await send(
        db,
        hub,
        range(from, Math.min(from + 500, 1100)).map((n) => person(n)),
      );
    }
    const syncs = [];
    for (const name of ['A', 'B', 'C', 'D']) syncs.push(await setUp(name));
    for (const s of syncs) await s.refresh();
    emulator.setLatency(30);
    const runs = await Promise.all(syncs.map((s) => runSync(db, deps, s.sync.id, 'manual')));
    for (const r of runs) expect(r).toMatchObject({ status: 'succeeded', added: 1100 });
    expect(emulator.stats.peakInFlight).toBeGreaterThan(4);
    expect(emulator.stats.peakInFlight).toBeLessThanOrEqual(10);
    expect(emulator.stats.refusedForConcurrency).toBe(0);
    for (const tag of ['A', 'B', 'C', 'D']) {
      expect(emulator.segmentMembers(listId, tag)).toHaveLength(1100);
    }
  });

  it('fails the run with a clear error when the audience was deleted in Mailchimp', async () => {
    await send(db, hub, [person(1)]);
    const { sync, refresh } = await setUp();
    await refresh();
    emulator.deleteList(listId);
    const failed = await runSync(db, deps, sync.id, 'manual');
    expect(failed.status).toBe('failed');
    expect(failed.error).toMatch(/audience .* was deleted in Mailchimp/);
  });
});
