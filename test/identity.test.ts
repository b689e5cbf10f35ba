import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { testConfig } from '../src/config.ts';
import { rows, type Database, type Db } from '../src/db/index.ts';
import { ingestMessages } from '../src/events/ingest.ts';
import { createIngestWriter } from '../src/events/writer.ts';
import { parseMessage } from '../src/events/message.ts';
import { uuidv7 } from '../src/ids.ts';
import { eraseProfile } from '../src/profiles/erase.ts';
import { foldAll, foldNewEvents } from '../src/profiles/fold.ts';
import { IdentityCache } from '../src/profiles/identity-cache.ts';
import { mergeProfiles, readProfileEpoch } from '../src/profiles/resolve.ts';
import { driver, testDatabase } from './support/db.ts';
import { count, liveProfiles, profileOf, send } from './support/ingest.ts';
import { meetOpenTransaction } from './support/wait.ts';

const config = testConfig({ traitSourcePriority: ['crm', 'erp'] });
let database: Database;
let db: Db;

beforeAll(async () => {
  database = await testDatabase();
  db = database.db;
});
afterAll(() => database.close());
beforeEach(async () => {
  await db.execute(
    sql`truncate profiles, identities, traits, events, profile_event_counts, merges, event_cursors
      restart identity`,
  );
});

describe(`identity resolution (${driver})`, () => {
  it('creates a visitor for an anonymous id and makes it a customer when identified', async () => {
    await send(db, config, [{ type: 'page', anonymousId: 'anon-1', name: 'Home' }]);
    let [p] = await liveProfiles(db);
    expect(p!.kind).toBe('visitor');

    await send(db, config, [
      {
        type: 'identify',
        anonymousId: 'anon-1',
        userId: 'u-1',
        traits: { email: ' Ann@Example.COM ' },
      },
    ]);
    const profiles = await liveProfiles(db);
    expect(profiles).toHaveLength(1);
    p = profiles[0];
    expect(p!.kind).toBe('customer');
    expect(await profileOf(db, 'email', 'ann@example.com')).toBe(p!.id);
    expect(await profileOf(db, 'user_id', 'u-1')).toBe(p!.id);
  });

  it('gathers identities from ids, traits, context traits and external ids, each once', () => {
    const parsed = parseMessage(
      {
        type: 'identify',
        userId: ' u-9 ',
        anonymousId: 'anon-9',
        traits: { email: 'Eve@Example.com' },
        context: {
          traits: { email: 'eve@example.COM', phone: '+44 7911 123456' },
          externalIds: [
            { id: 'C-77', type: 'Crm_Id', collection: 'users', encoding: 'none' },
            { id: 'C-77', type: 'crm_id', collection: 'users', encoding: 'none' },
            { id: 'G-1', type: 'group_ref', collection: 'accounts', encoding: 'none' },
          ],
        },
      },
      { source: 'web', receivedAt: new Date(), config },
    );
    if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
    expect(parsed.message.identities).toEqual([
      { type: 'user_id', value: 'u-9' },
      { type: 'anonymous_id', value: 'anon-9' },
      { type: 'email', value: 'eve@example.com' },
      { type: 'phone', value: '+447911123456' },
      { type: 'crm_id', value: 'C-77' },
    ]);
  });

  it('normalises phones to E.164 and ignores values that are not phones or emails', async () => {
    await send(db, config, [
      {
        type: 'identify',
        userId: 'u-2',
        traits: { phone: '+44 7911 123456', email: 'not-an-email' },
      },
    ]);
    expect(await profileOf(db, 'phone', '+447911123456')).toBeDefined();
    expect(await count(db, 'identities', sql`type = 'email'`)).toBe(0);
    const [p] = await liveProfiles(db);
    // Kept as a trait all the same: nothing the client sent is lost.
    expect(p!.traits.email).toBe('not-an-email');
  });

  it('follows merge chains: A+B, then B+C, leaves one profile and re-pointed tombstones', async () => {
    await send(db, config, [{ type: 'track', event: 'A', anonymousId: 'a', messageId: 'm1' }]);
    await send(db, config, [{ type: 'track', event: 'B', userId: 'b', messageId: 'm2' }]);
    await send(db, config, [
      { type: 'identify', userId: 'c', traits: { email: 'c@x.io' }, messageId: 'm3' },
    ]);
    const [pa, pb, pc] = [
      await profileOf(db, 'anonymous_id', 'a'),
      await profileOf(db, 'user_id', 'b'),
      await profileOf(db, 'user_id', 'c'),
    ];
    expect(new Set([pa, pb, pc]).size).toBe(3);

    // A + B: A is older and survives.
    await send(db, config, [{ type: 'alias', userId: 'b', previousId: 'a', messageId: 'm4' }]);
    expect(await profileOf(db, 'user_id', 'b')).toBe(pa);
    // B + C (through b's profile, now A): A is still the oldest.
    await send(db, config, [
      {
        type: 'track',
        event: 'Linked',
        userId: 'b',
        context: { traits: { email: 'C@x.io' } },
        messageId: 'm5',
      },
    ]);
    const live = await liveProfiles(db);
    expect(live.map((p) => p.id)).toEqual([pa]);
    for (const [type, value] of [
      ['anonymous_id', 'a'],
      ['user_id', 'b'],
      ['user_id', 'c'],
      ['email', 'c@x.io'],
    ] as const) {
      expect(await profileOf(db, type, value)).toBe(pa);
    }
    // Every event is on the survivor; the tombstones point at it directly.
    expect(await count(db, 'events', sql`profile_id <> ${pa}`)).toBe(0);
    expect(await count(db, 'events')).toBe(5);
    const tombstones = await rows<{ id: string; merged_into: string }>(
      db,
      sql`select id, merged_into from profiles where merged_into is not null order by id`,
    );
    expect(tombstones).toEqual([pb, pc].sort().map((id) => ({ id, merged_into: pa })));
    const merges = await rows<{
      merged_id: string;
      survivor_id: string;
      cause: { messageId: string; identityTypes: string[] };
    }>(db, sql`select merged_id, survivor_id, cause from merges order by id`);
    expect(merges.map((m) => [m.merged_id, m.survivor_id, m.cause.messageId])).toEqual([
      [pb, pa, 'm4'],
      [pc, pa, 'm5'],
    ]);
    expect(merges[1]!.cause.identityTypes).toEqual(['email', 'user_id']);
    // Computed traits were recomputed over everything the person did.
    expect(live[0]!.event_count).toBe(3);
    expect(live[0]!.kind).toBe('customer');
  });

  it('merges profiles from different sources that share an email', async () => {
    await send(
      db,
      config,
      [{ type: 'identify', userId: 'crm-17', traits: { email: 'Dee@Shop.example', plan: 'gold' } }],
      'crm',
    );
    await send(
      db,
      config,
      [
        {
          type: 'identify',
          anonymousId: 'cookie-9',
          traits: { email: 'dee@shop.example ', plan: 'free', city: 'Leeds' },
        },
      ],
      'web',
    );
    const live = await liveProfiles(db);
    expect(live).toHaveLength(1);
    // crm outranks web by configured priority; web's city fills in what crm lacks.
    expect(live[0]!.traits).toMatchObject({
      email: 'Dee@Shop.example',
      plan: 'gold',
      city: 'Leeds',
    });
    expect(await count(db, 'traits')).toBe(5);
  });

  it('merges within one batch, and keeps the first profile created in it', async () => {
    const result = await send(db, config, [
      { type: 'track', event: 'x', anonymousId: 'q1' },
      { type: 'track', event: 'x', userId: 'q2' },
      { type: 'identify', anonymousId: 'q1', userId: 'q2' },
    ]);
    expect(new Set(result.profileIds).size).toBe(1);
    expect(await liveProfiles(db)).toHaveLength(1);
    // Neither profile existed before the batch: nothing to merge, nothing to record.
    expect(await count(db, 'merges')).toBe(0);
  });

  it('resolves traits by source priority, then recency, ignoring older out-of-order values', async () => {
    const tier = (source: string, value: unknown, timestamp: string) =>
      send(
        db,
        config,
        [{ type: 'identify', userId: 't', traits: { tier: value }, timestamp }],
        source,
      );
    const resolved = async () => (await liveProfiles(db))[0]!.traits.tier;

    await tier('web', 'web-new', '2024-02-01T00:00:00Z');
    await tier('erp', 'erp', '2024-01-01T00:00:00Z');
    expect(await resolved()).toBe('erp');
    await tier('erp', 'erp-older', '2023-12-01T00:00:00Z');
    expect(await resolved()).toBe('erp');
    // A null from the higher-priority source clears it there, so the web value shows.
    await tier('erp', null, '2024-03-01T00:00:00Z');
    expect(await resolved()).toBe('web-new');
  });

  it('does not lose events or duplicate profiles when concurrent messages merge the same two profiles', async () => {
    await send(db, config, [{ type: 'track', event: 'seen', anonymousId: 'anon-c' }]);
    await send(db, config, [{ type: 'track', event: 'seen', userId: 'user-c' }]);
    const n = 24;
    await Promise.all(
      Array.from({ length: n }, (_, i) =>
        send(db, config, [
          {
            type: 'track',
            event: 'Linked',
            anonymousId: 'anon-c',
            userId: 'user-c',
            messageId: `link-${i}`,
          },
        ]),
      ),
    );
    const live = await liveProfiles(db);
    expect(live).toHaveLength(1);
    expect(await count(db, 'events')).toBe(n + 2);
    expect(await count(db, 'events', sql`profile_id <> ${live[0]!.id}`)).toBe(0);
    expect(await count(db, 'merges')).toBe(1);
    expect(live[0]!.event_count).toBe(n + 2);
  });

  it('creates one profile when concurrent messages bring the same new identities', async () => {
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        send(db, config, [
          {
            type: 'identify',
            userId: 'fresh',
            anonymousId: `device-${i % 3}`,
            traits: { email: 'fresh@x.io' },
          },
        ]),
      ),
    );
    expect(await liveProfiles(db)).toHaveLength(1);
    expect(await count(db, 'identities')).toBe(5);
  });

  it('creates the identities of a batch of thousands of new people, more than there are lock slots', async () => {
    // 6,000 people with three identities each: one advisory lock per new identity would ask
    // PostgreSQL's shared lock table for 18,000 slots, past what it holds by default.
    const people = 6000;
    const messages = Array.from({ length: people }, (_, i) => ({
      type: 'identify',
      userId: `bulk-${i}`,
      anonymousId: `bulk-device-${i}`,
      traits: { email: `bulk-${i}@x.io` },
    }));
    const result = await send(db, config, messages);
    expect(result.accepted).toBe(people);
    expect(await count(db, 'identities')).toBe(3 * people);
    expect(new Set(result.profileIds).size).toBe(people);
    // The same people again, with one new device each: all found, nothing created twice.
    const again = await send(
      db,
      config,
      messages.map((m, i) => ({ ...m, anonymousId: `bulk-device-${i}-b` })),
    );
    expect(again.profileIds).toEqual(result.profileIds);
    expect(await count(db, 'identities')).toBe(4 * people);
  });

  it('creates each new person once when two batches too large to lock bring the same people', async () => {
    const people = 1500;
    const batch = (copy: string) =>
      Array.from({ length: people }, (_, i) => ({
        type: 'track',
        event: 'Signed Up',
        messageId: `${copy}-${i}`,
        userId: `race-${i}`,
      }));
    const results = await Promise.all([send(db, config, batch('a')), send(db, config, batch('b'))]);
    expect(results[0]!.profileIds).toEqual(results[1]!.profileIds);
    expect(await count(db, 'identities')).toBe(people);
    expect(await liveProfiles(db)).toHaveLength(people);
    expect(await count(db, 'events')).toBe(2 * people);
  });

  it('stores a retried message once, even when the retries race', async () => {
    const message = {
      type: 'track',
      event: 'Order Completed',
      userId: 'buyer',
      messageId: 'order-1',
      properties: { revenue: 42.5 },
    };
    await Promise.all([1, 2, 3, 4].map(() => send(db, config, [message])));
    const again = await send(db, config, [message, message]);
    expect(again).toMatchObject({ accepted: 0, duplicates: 2 });
    expect(await count(db, 'events')).toBe(1);
    const [p] = await liveProfiles(db);
    expect(p).toMatchObject({ event_count: 1, purchase_count: 1 });
    expect(Number(p!.total_spent)).toBe(42.5);
  });

  it('stores only the new messages of a batch that repeats some already stored', async () => {
    const track = (messageId: string) => ({ type: 'track', event: 'x', userId: 'r', messageId });
    await send(db, config, [track('a'), track('b')]);
    const again = await send(db, config, [track('b'), track('c'), track('a'), track('d')]);
    expect(again).toMatchObject({ accepted: 2, duplicates: 2, stored: [false, true, false, true] });
    expect(await count(db, 'events')).toBe(4);
    expect((await liveProfiles(db))[0]!.event_count).toBe(4);
  });

  it('answers a messageId repeated within a batch as a duplicate of the same profile', async () => {
    const result = await send(db, config, [
      { type: 'track', event: 'x', userId: 'a', messageId: 'm1' },
      { type: 'track', event: 'x', userId: 'b', messageId: 'm2' },
      { type: 'track', event: 'x', userId: 'a', messageId: 'm1' },
    ]);
    const a = await profileOf(db, 'user_id', 'a');
    const b = await profileOf(db, 'user_id', 'b');
    expect(result).toEqual({
      accepted: 2,
      duplicates: 1,
      profileIds: [a, b, a],
      stored: [true, true, false],
    });
    expect(await count(db, 'events')).toBe(2);
  });

  it('keeps the same messageId from two sources apart', async () => {
    await send(db, config, [{ type: 'track', event: 'x', userId: 'u', messageId: 'same' }], 'web');
    await send(db, config, [{ type: 'track', event: 'x', userId: 'u', messageId: 'same' }], 'app');
    expect(await count(db, 'events')).toBe(2);
  });
});

describe(`a message stored while its retry is being stored (${driver})`, () => {
  it('stores it once, and the rest of the batch the retry came in', async () => {
    const first = { type: 'track', event: 'x', userId: 'retrying', messageId: 'r-1' };
    const retry = () =>
      send(db, config, [
        first,
        { type: 'track', event: 'x', userId: 'retrying', messageId: 'r-2' },
      ]);
    let result: Awaited<ReturnType<typeof send>>;
    if (driver === 'postgres') {
      // The first copy is inserted but not committed when the retry's insert meets it.
      result = await meetOpenTransaction(
        db,
        (tx) =>
          tx.execute(
            sql`insert into events (profile_id, source, message_id, type, "timestamp", received_at)
                values (${uuidv7()}, 'web', 'r-1', 'track', now(), now())`,
          ),
        retry,
      );
    } else {
      // PGlite runs one transaction at a time: the first copy is simply stored before.
      await send(db, config, [first]);
      result = await retry();
    }
    expect(result).toMatchObject({ accepted: 1, duplicates: 1, stored: [false, true] });
    expect(await count(db, 'events', sql`message_id = 'r-1'`)).toBe(1);
    expect(await count(db, 'events', sql`message_id = 'r-2'`)).toBe(1);
  });
});

describe(`a new identity and a concurrent merge (${driver})`, () => {
  it('never leaves a new identity on a profile merged away before the batch commits', async () => {
    await send(db, config, [{ type: 'track', event: 'x', userId: 'older' }]);
    await send(db, config, [{ type: 'track', event: 'x', userId: 'newer' }]);
    const survivor = (await profileOf(db, 'user_id', 'older'))!;
    const loser = (await profileOf(db, 'user_id', 'newer'))!;
    const merge = (tx: Db) =>
      mergeProfiles(tx, [
        {
          loser,
          survivor,
          cause: { source: 'web', messageId: null, messageType: 'identify', identityTypes: [] },
        },
      ]);
    // The newer profile gains an anonymous id (no change to its row otherwise).
    const gain = () =>
      send(db, config, [{ type: 'track', event: 'x', userId: 'newer', anonymousId: 'device' }]);
    if (driver === 'postgres') {
      // The merge has moved the loser's identities but not committed when the batch reads it.
      await meetOpenTransaction(
        db,
        async (tx) => {
          await tx.execute(
            sql`select 1 from profiles where id in (${loser}, ${survivor}) for update`,
          );
          await merge(tx);
        },
        gain,
      );
    } else {
      // PGlite runs one transaction at a time: the merge simply precedes the batch.
      await db.transaction(merge);
      await gain();
    }
    expect(await profileOf(db, 'anonymous_id', 'device')).toBe(survivor);
    expect(await profileOf(db, 'user_id', 'newer')).toBe(survivor);
    expect(await count(db, 'events', sql`profile_id = ${survivor}`)).toBe(3);
  });
});

describe(`ingestion under concurrency (${driver})`, () => {
  it('keeps every invariant when overlapping batches and merges race', async () => {
    // 40 people, each known by an anonymous id and later by a user id and an email; batches
    // from 6 concurrent senders overlap on people and link their identities as they go.
    const people = 40;
    const batches = Array.from({ length: 30 }, (_, b) =>
      Array.from({ length: 25 }, (_, j) => {
        const p = (b * 7 + j * 3) % people;
        const step = (b + j) % 4;
        const id =
          step === 0
            ? { anonymousId: `a-${p}` }
            : step === 1
              ? { userId: `u-${p}` }
              : step === 2
                ? { anonymousId: `a-${p}`, userId: `u-${p}` }
                : { userId: `u-${p}`, context: { traits: { email: `p${p}@x.io` } } };
        return {
          type: 'track',
          event: j % 5 === 0 ? 'Order Completed' : 'Viewed',
          properties: { revenue: 2 },
          messageId: `b${b}-m${j}`,
          ...id,
        };
      }),
    );
    let next = 0;
    const sender = async () => {
      while (next < batches.length) await send(db, config, batches[next++]!);
    };
    // The background fold runs all along, racing the merges.
    let sending = true;
    let folds = 0;
    const folder = async () => {
      while (sending) {
        folds += (await foldNewEvents(db, { maxEvents: 60 })).events > 0 ? 1 : 0;
      }
    };
    const folding = folder();
    await Promise.all(Array.from({ length: 6 }, sender));
    // Retrying everything changes nothing.
    await Promise.all(batches.slice(0, 10).map((b) => send(db, config, b)));
    sending = false;
    await folding;
    expect(folds).toBeGreaterThan(1);
    await foldAll(db);

    const total = batches.length * 25;
    expect(await count(db, 'events')).toBe(total);
    expect(
      await count(
        db,
        'events',
        sql`profile_id in (select id from profiles where merged_into is not null)`,
      ),
    ).toBe(0);
    expect(
      await count(
        db,
        'identities',
        sql`profile_id not in (select id from profiles where merged_into is null)`,
      ),
    ).toBe(0);
    // Every person whose ids were linked is one profile.
    for (let p = 0; p < people; p++) {
      const a = await profileOf(db, 'anonymous_id', `a-${p}`);
      const u = await profileOf(db, 'user_id', `u-${p}`);
      if (a && u) expect(a).toBe(u);
    }
    // Computed traits equal a recomputation from the stored events.
    const mismatched = await rows<{ id: string }>(
      db,
      sql`select p.id from profiles p
          left join (select profile_id, count(*) filter (where type in ('track','page','screen')) as n,
                            count(revenue) as purchases, coalesce(sum(revenue), 0) as spent
                     from events group by profile_id) e on e.profile_id = p.id
          where p.merged_into is null
            and (p.event_count <> coalesce(e.n, 0) or p.purchase_count <> coalesce(e.purchases, 0)
                 or p.total_spent <> coalesce(e.spent, 0))`,
    );
    expect(mismatched).toEqual([]);
    const [sums] = await rows<{ n: number }>(
      db,
      sql`select sum(count)::int as n from profile_event_counts`,
    );
    expect(sums!.n).toBe(total);
  });
});

describe(`the identity cache (${driver})`, () => {
  const cached = (cache: IdentityCache, messages: Record<string, unknown>[]) =>
    ingestMessages(
      db,
      config,
      messages.map((raw) => {
        const parsed = parseMessage(raw, { source: 'web', receivedAt: new Date(), config });
        if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
        return parsed.message;
      }),
      cache,
    );

  it('recovers when a cached profile was merged away by another process', async () => {
    const cache = new IdentityCache();
    await send(db, config, [{ type: 'track', event: 'x', userId: 'old-u' }]);
    await cached(cache, [{ type: 'track', event: 'x', anonymousId: 'new-a' }]);
    const stale = await profileOf(db, 'anonymous_id', 'new-a');
    expect(cache.get('anonymous_id:new-a')).toBe(stale);
    // Elsewhere (no cache), the two are linked: the newer profile becomes a tombstone.
    await send(db, config, [{ type: 'identify', anonymousId: 'new-a', userId: 'old-u' }]);
    const survivor = await profileOf(db, 'user_id', 'old-u');
    expect(survivor).not.toBe(stale);

    const result = await cached(cache, [{ type: 'track', event: 'after', anonymousId: 'new-a' }]);
    expect(result.profileIds).toEqual([survivor]);
    expect(cache.get('anonymous_id:new-a')).toBe(survivor);
    expect(await count(db, 'events', sql`profile_id <> ${survivor}`)).toBe(0);
    expect((await liveProfiles(db)).find((p) => p.id === survivor)!.event_count).toBe(3);
  });

  it('moves the profile epoch on with every merge and every erasure, and with nothing else', async () => {
    const before = await readProfileEpoch(db);
    await send(db, config, [{ type: 'track', event: 'x', userId: 'e-u' }]);
    await send(db, config, [{ type: 'identify', anonymousId: 'e-a', traits: { plan: 'pro' } }]);
    expect(await readProfileEpoch(db)).toBe(before);
    await send(db, config, [{ type: 'identify', userId: 'e-u', anonymousId: 'e-a' }]);
    const merged = await readProfileEpoch(db);
    expect(merged).toBe(before + 1);
    await eraseProfile(db, (await profileOf(db, 'user_id', 'e-u'))!, { id: null, name: 'test' });
    expect(await readProfileEpoch(db)).toBe(merged + 1);
  });

  it('sends nothing to a profile its own process merged away, through identities the merge did not carry', async () => {
    const cache = new IdentityCache();
    await cached(cache, [{ type: 'track', event: 'x', userId: 'keep' }]);
    await cached(cache, [{ type: 'track', event: 'x', userId: 'other', anonymousId: 'device' }]);
    const loser = cache.get('user_id:other');
    expect(loser).toBeDefined();
    // The device turns out to be the first person's: the newer profile is merged away, and the
    // cache held its user id, which the merging message did not carry.
    await cached(cache, [{ type: 'identify', userId: 'keep', anonymousId: 'device' }]);
    const survivor = await profileOf(db, 'user_id', 'keep');
    expect(survivor).not.toBe(loser);
    expect(cache.get('user_id:other')).toBeUndefined();

    const result = await cached(cache, [{ type: 'track', event: 'after', userId: 'other' }]);
    expect(result.profileIds).toEqual([survivor]);
    expect(await count(db, 'events', sql`profile_id <> ${survivor}`)).toBe(0);
    expect(cache.get('user_id:other')).toBe(survivor);
  });

  it('follows a merge made through the cache to the survivor', async () => {
    const cache = new IdentityCache();
    await cached(cache, [{ type: 'track', event: 'x', userId: 'first' }]);
    await cached(cache, [{ type: 'track', event: 'x', anonymousId: 'second' }]);
    const loser = cache.get('anonymous_id:second');
    expect(loser).toBeDefined();
    const result = await cached(cache, [
      { type: 'identify', userId: 'first', anonymousId: 'second' },
    ]);
    const survivor = await profileOf(db, 'user_id', 'first');
    expect(survivor).not.toBe(loser);
    expect(result.profileIds).toEqual([survivor]);
    expect(cache.get('anonymous_id:second')).toBe(survivor);
    expect(cache.get('user_id:first')).toBe(survivor);
  });

  it('sends the cached people of a batch to the survivor of a merge another message of it makes', async () => {
    const cache = new IdentityCache();
    await cached(cache, [{ type: 'track', event: 'x', userId: 'elder' }]);
    await cached(cache, [{ type: 'track', event: 'x', anonymousId: 'younger', userId: 'y-u' }]);
    await cached(cache, [{ type: 'track', event: 'x', userId: 'bystander' }]);
    const loser = cache.get('anonymous_id:younger')!;
    const bystander = cache.get('user_id:bystander')!;
    // Every message but the fourth is settled by the cache alone; the fourth links two cached
    // people, and merges away the profile of the first and third.
    const result = await cached(cache, [
      { type: 'track', event: 'a', anonymousId: 'younger', userId: 'y-u' },
      { type: 'track', event: 'b', userId: 'bystander' },
      { type: 'track', event: 'c', userId: 'y-u' },
      { type: 'identify', userId: 'elder', anonymousId: 'younger', traits: { plan: 'pro' } },
      { type: 'track', event: 'd', userId: 'elder' },
    ]);
    const survivor = (await profileOf(db, 'user_id', 'elder'))!;
    expect(survivor).not.toBe(loser);
    expect(result.profileIds).toEqual([survivor, bystander, survivor, survivor, survivor]);
    expect(await count(db, 'events', sql`profile_id = ${loser}`)).toBe(0);
    expect(await count(db, 'events', sql`profile_id = ${survivor}`)).toBe(6);
    await foldAll(db);
    const live = await liveProfiles(db);
    expect(live.map((p) => p.id).sort()).toEqual([bystander, survivor].sort());
    expect(live.find((p) => p.id === survivor)!.event_count).toBe(5);
    expect(cache.get('user_id:y-u')).not.toBe(loser);
  });

  it('recovers when a cached profile was erased', async () => {
    const cache = new IdentityCache();
    await cached(cache, [{ type: 'track', event: 'x', anonymousId: 'gone' }]);
    const erased = (await profileOf(db, 'anonymous_id', 'gone'))!;
    await eraseProfile(db, erased, { id: null, name: 'test' });
    const result = await cached(cache, [{ type: 'track', event: 'back', anonymousId: 'gone' }]);
    expect(result.profileIds[0]).not.toBe(erased);
    expect(await count(db, 'events')).toBe(1);
    expect(await count(db, 'events', sql`profile_id = ${erased}`)).toBe(0);
  });
});

describe(`the ingest writer (${driver})`, () => {
  const prepare = (messages: Record<string, unknown>[]) =>
    messages.map((raw) => {
      const parsed = parseMessage(raw, { source: 'web', receivedAt: new Date(), config });
      if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
      return parsed.message;
    });

  it('stores requests that arrive together in one group, answering each for its own messages, through the identity cache', async () => {
    const identities = new IdentityCache();
    const writer = createIngestWriter(db, config, { writers: 1, identities });
    const track = (messageId: string, userId: string) => ({
      type: 'track',
      event: 'Viewed',
      messageId,
      userId,
    });
    // The first request runs alone; the next two wait for it and are then stored together.
    const [first, second, third] = await Promise.all([
      writer.write(prepare([track('m1', 'u1')])),
      writer.write(prepare([track('m2', 'u2'), track('m3', 'u3')])),
      writer.write(prepare([track('m3', 'u3'), track('m4', 'u4')])),
    ]);
    expect(first).toMatchObject({ accepted: 1, duplicates: 0, stored: [true] });
    expect(second).toMatchObject({ accepted: 2, duplicates: 0, stored: [true, true] });
    expect(third).toMatchObject({ accepted: 1, duplicates: 1, stored: [false, true] });
    expect(third.profileIds[0]).toBe(second.profileIds[1]);
    expect(await count(db, 'events')).toBe(4);
    // Every identity of the grouped requests is cached, so the next message resolves without a query.
    for (const u of ['u1', 'u2', 'u3', 'u4']) {
      expect(identities.get(`user_id:${u}`)).toBe(await profileOf(db, 'user_id', u));
    }
  });

  it('shares a request out among writers by person and answers for it in order', async () => {
    const writer = createIngestWriter(db, config, { writers: 3 });
    const people = ['p0', 'p1', 'p2', 'p3', 'p4', 'p5'];
    const messages = people.flatMap((u, i) => [
      { type: 'track', event: 'Viewed', messageId: `${u}-a`, userId: u, anonymousId: `d-${u}` },
      { type: 'track', event: 'Viewed', messageId: `${u}-b`, anonymousId: `d-${u}` },
      ...(i === 2 ? [{ type: 'track', event: 'Viewed', messageId: `${u}-a`, userId: u }] : []),
    ]);
    const result = await writer.write(prepare(messages));
    expect(result.accepted).toBe(12);
    expect(result.duplicates).toBe(1);
    expect(result.stored).toEqual(messages.map((m, i) => i !== 6));
    for (const [i, m] of messages.entries()) {
      const user = (m.userId ?? m.anonymousId.slice(2)) as string;
      expect(result.profileIds[i]).toBe(await profileOf(db, 'user_id', user));
    }
    expect(await count(db, 'events')).toBe(12);
    expect((await liveProfiles(db)).map((p) => p.event_count)).toEqual([2, 2, 2, 2, 2, 2]);
  });
});

describe(`computed traits (${driver})`, () => {
  it('maintains first/last seen, event counts, purchases and spend as data arrives', async () => {
    await send(db, config, [
      { type: 'page', userId: 'k', name: 'Pricing', timestamp: '2024-05-02T10:00:00Z' },
      {
        type: 'track',
        userId: 'k',
        event: 'purchase',
        properties: { value: 30, currency: 'GBP' },
        timestamp: '2024-05-03T10:00:00Z',
      },
      {
        type: 'track',
        userId: 'k',
        event: 'Order Completed',
        properties: { revenue: '12.25' },
        timestamp: '2024-05-01T10:00:00Z',
      },
      { type: 'track', userId: 'k', event: 'Product Viewed', timestamp: '2024-05-04T10:00:00Z' },
      { type: 'identify', userId: 'k', traits: { name: 'K' }, timestamp: '2024-04-30T10:00:00Z' },
    ]);
    const [p] = await liveProfiles(db);
    expect(p!.event_count).toBe(4);
    expect(p!.purchase_count).toBe(2);
    expect(Number(p!.total_spent)).toBe(42.25);
    expect(new Date(p!.first_seen_at).toISOString()).toBe('2024-04-30T10:00:00.000Z');
    expect(new Date(p!.last_seen_at).toISOString()).toBe('2024-05-04T10:00:00.000Z');
    expect(new Date(p!.last_purchase_at!).toISOString()).toBe('2024-05-03T10:00:00.000Z');
    const counts = await rows<{ name: string; count: number }>(
      db,
      sql`select name, count from profile_event_counts order by name`,
    );
    expect(counts).toEqual([
      { name: 'Order Completed', count: 1 },
      { name: 'Product Viewed', count: 1 },
      { name: 'page', count: 1 },
      { name: 'purchase', count: 1 },
    ]);
  });

  it('uses the configured purchase events', async () => {
    const custom = testConfig({
      purchaseEvents: [{ event: 'Checkout', revenueProperty: 'total' }],
    });
    await send(db, custom, [
      { type: 'track', userId: 'z', event: 'Checkout', properties: { total: 99 } },
      { type: 'track', userId: 'z', event: 'purchase', properties: { value: 5 } },
    ]);
    const [p] = await liveProfiles(db);
    expect(p!.purchase_count).toBe(1);
    expect(Number(p!.total_spent)).toBe(99);
  });

  it('corrects client clock skew with sentAt, as the spec says', async () => {
    const skew = 60 * 60 * 1000;
    const now = Date.now();
    await send(db, config, [
      {
        type: 'track',
        userId: 's',
        event: 'x',
        // The client's clock runs an hour fast.
        timestamp: new Date(now + skew - 5000).toISOString(),
        sentAt: new Date(now + skew).toISOString(),
      },
    ]);
    const [e] = await rows<{ timestamp: Date; original_timestamp: Date }>(
      db,
      sql`select "timestamp", original_timestamp from events`,
    );
    const corrected = new Date(e!.timestamp).getTime();
    expect(Math.abs(corrected - (now - 5000))).toBeLessThan(2000);
    expect(new Date(e!.original_timestamp).getTime()).toBe(now + skew - 5000);
  });
});
