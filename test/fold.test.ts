import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { testConfig } from '../src/config.ts';
import { rows, type Database, type Db } from '../src/db/index.ts';
import {
  ensureEventCounts,
  foldAll,
  foldNewEvents,
  holdIngestHorizon,
  type FoldResult,
} from '../src/profiles/fold.ts';
import { mergeProfiles } from '../src/profiles/resolve.ts';
import { countSegment } from '../src/segments/compile.ts';
import { driver, testDatabase } from './support/db.ts';
import { count, profileOf, send } from './support/ingest.ts';
import { meetOpenTransaction } from './support/wait.ts';

let database: Database;
let db: Db;
const config = testConfig();

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

async function totals(id: string) {
  const [p] = await rows<{ event_count: number; purchase_count: number; total_spent: string }>(
    db,
    sql`select event_count, purchase_count, total_spent from profiles where id = ${id}`,
  );
  return { ...p!, total_spent: Number(p!.total_spent) };
}

/** Store one track event for `profileId` directly, inside a transaction holding the horizon. */
async function rawEvent(tx: Db, profileId: string, messageId: string) {
  await holdIngestHorizon(tx);
  await tx.execute(
    sql`insert into events (profile_id, source, message_id, type, name, "timestamp", received_at)
        values (${profileId}, 'web', ${messageId}, 'track', 'Viewed', now(), now())`,
  );
}

describe(`the computed-traits fold (${driver})`, () => {
  it('leaves computed traits untouched until it runs, then folds each event exactly once', async () => {
    await send(db, config, [
      { type: 'track', userId: 'f', event: 'purchase', properties: { value: 10 } },
      { type: 'track', userId: 'f', event: 'Viewed' },
    ]);
    const id = (await profileOf(db, 'user_id', 'f'))!;
    expect(await totals(id)).toEqual({ event_count: 0, purchase_count: 0, total_spent: 0 });

    const first = await foldNewEvents(db);
    expect(first).toMatchObject({ events: 2, profileIds: [id], more: false });
    expect(await totals(id)).toEqual({ event_count: 2, purchase_count: 1, total_spent: 10 });
    // Nothing new: folding again changes nothing.
    expect((await foldNewEvents(db)).events).toBe(0);
    expect(await totals(id)).toEqual({ event_count: 2, purchase_count: 1, total_spent: 10 });
  });

  it('works through a backlog in steps of maxEvents', async () => {
    await send(
      db,
      config,
      Array.from({ length: 25 }, (_, i) => ({ type: 'track', userId: `s${i % 5}`, event: 'e' })),
    );
    const steps: FoldResult[] = [];
    for (;;) {
      const step = await foldNewEvents(db, { maxEvents: 10 });
      steps.push(step);
      if (!step.more) break;
    }
    expect(steps.map((s) => s.events)).toEqual([10, 10, 5]);
    const [sum] = await rows<{ n: number }>(
      db,
      sql`select sum(event_count)::int as n from profiles`,
    );
    expect(sum!.n).toBe(25);
  });

  it('moves an event stored on a just-merged profile to the survivor before counting it', async () => {
    await send(db, config, [{ type: 'track', userId: 'keep', event: 'x' }]);
    await send(db, config, [{ type: 'track', anonymousId: 'gone', event: 'x' }]);
    const loser = (await profileOf(db, 'anonymous_id', 'gone'))!;
    await foldAll(db);
    await send(db, config, [{ type: 'identify', userId: 'keep', anonymousId: 'gone' }]);
    const survivor = (await profileOf(db, 'user_id', 'keep'))!;
    expect(survivor).not.toBe(loser);
    // A batch that read the loser as live just before the merge committed stores its event there.
    await db.transaction((tx) => rawEvent(tx, loser, 'late'));

    await foldAll(db);
    expect(await count(db, 'events', sql`profile_id = ${loser}`)).toBe(0);
    expect(await totals(survivor)).toMatchObject({ event_count: 3 });
    expect(await totals(loser)).toMatchObject({ event_count: 0 });
  });

  it('counts on the survivor the events of a profile merged while the fold is counting', async () => {
    await send(db, config, [{ type: 'track', userId: 'stay', event: 'x' }]);
    await send(db, config, [{ type: 'track', anonymousId: 'merged', event: 'x' }]);
    const survivor = (await profileOf(db, 'user_id', 'stay'))!;
    const loser = (await profileOf(db, 'anonymous_id', 'merged'))!;
    const merge = (tx: Db) =>
      mergeProfiles(tx, [
        {
          loser,
          survivor,
          cause: { source: 'web', messageId: null, messageType: 'identify', identityTypes: [] },
        },
      ]);
    if (driver === 'postgres') {
      // A merge holds both profiles while the fold reads the window: the fold's first count
      // still sees the loser's event as the loser's, and must not lose it.
      const folded = await meetOpenTransaction(
        db,
        (tx) =>
          tx.execute(sql`select 1 from profiles where id in (${loser}, ${survivor}) for update`),
        () => foldAll(db),
        // Once the fold is blocked on the merge's row locks, the merge happens and commits.
        merge,
      );
      expect(folded).toBe(2);
    } else {
      // PGlite runs one transaction at a time: the merge simply precedes the fold.
      await db.transaction(merge);
      expect(await foldAll(db)).toBe(2);
    }
    expect(await totals(survivor)).toMatchObject({ event_count: 2 });
    expect(await totals(loser)).toMatchObject({ event_count: 0 });
    const counts = await rows<{ profile_id: string; count: number }>(
      db,
      sql`select profile_id, count from profile_event_counts`,
    );
    expect(counts).toEqual([{ profile_id: survivor, count: 2 }]);
  });

  it('combines folded totals on merge and folds the rest into the survivor', async () => {
    await send(db, config, [
      { type: 'track', userId: 'm', event: 'purchase', properties: { value: 5 } },
    ]);
    await send(db, config, [
      { type: 'track', anonymousId: 'n', event: 'purchase', properties: { value: 7 } },
    ]);
    await foldAll(db);
    // Not folded yet when the merge happens.
    await send(db, config, [
      { type: 'track', anonymousId: 'n', event: 'purchase', properties: { value: 11 } },
    ]);
    await send(db, config, [{ type: 'identify', userId: 'm', anonymousId: 'n' }]);
    const survivor = (await profileOf(db, 'user_id', 'm'))!;
    expect(await totals(survivor)).toEqual({ event_count: 2, purchase_count: 2, total_spent: 12 });
    await foldAll(db);
    expect(await totals(survivor)).toEqual({ event_count: 3, purchase_count: 3, total_spent: 23 });
    const counts = await rows<{ profile_id: string; count: number }>(
      db,
      sql`select profile_id, count from profile_event_counts where name = 'purchase'`,
    );
    expect(counts).toEqual([{ profile_id: survivor, count: 3 }]);
  });

  it('never skips an event whose transaction commits after a later one', async () => {
    await send(db, config, [{ type: 'track', userId: 'h', event: 'x' }]);
    const id = (await profileOf(db, 'user_id', 'h'))!;
    await foldAll(db);
    // A batch takes an id, then stays in flight while a later batch commits.
    let finish!: () => void;
    const held = new Promise<void>((resolve) => (finish = resolve));
    let inserted!: () => void;
    const insertedYet = new Promise<void>((resolve) => (inserted = resolve));
    const slow = db.transaction(async (tx) => {
      await rawEvent(tx, id, 'slow');
      inserted();
      await held;
    });
    await insertedYet;
    // (PGlite runs one transaction at a time: there, the later batch waits for the first.)
    if (driver === 'postgres') {
      await send(db, config, [{ type: 'track', userId: 'h', event: 'x', messageId: 'later' }]);
    }
    const folding = foldAll(db);
    // Let the fold run as far as it can while the first batch is still open.
    await new Promise((resolve) => setTimeout(resolve, 100));
    finish();
    await slow;
    await folding;
    await foldAll(db);
    expect(await totals(id)).toMatchObject({ event_count: driver === 'postgres' ? 3 : 2 });
  });
});

describe(`per-event counts after a crash (${driver})`, () => {
  /** What a crash leaves of the unlogged per-event counts: nothing, marker included. */
  async function crash() {
    await db.execute(sql`delete from profile_event_counts`);
    await db.execute(sql`delete from profile_event_counts_ready`);
  }

  const kept = () =>
    rows<{ profile_id: string; name: string; count: number; first_at: Date; last_at: Date }>(
      db,
      sql`select profile_id, name, count, first_at, last_at from profile_event_counts
          order by profile_id, name`,
    );

  /** Every folded event counted from scratch, as the fold would have kept them. */
  const fromEvents = (upTo: number) =>
    rows<{ profile_id: string; name: string; count: number; first_at: Date; last_at: Date }>(
      db,
      sql`select profile_id, case when type = 'track' then name else type end as name,
            count(*)::int as count, min("timestamp") as first_at, max("timestamp") as last_at
          from events where id <= ${upTo} and type in ('track', 'page', 'screen')
          group by 1, 2 order by 1, 2`,
    );

  const ordered = (n: number) => ({
    rules: { event: { name: 'Order Completed', count: { atLeast: n } } },
    resolveSegment: () => null,
  });

  afterAll(async () => {
    // Leave the counts ready for the other suites sharing the database.
    await ensureEventCounts(db);
  });

  it('are kept unlogged, so that folding them costs no WAL', async () => {
    const [table] = await rows<{ persistence: string }>(
      db,
      sql`select relpersistence as persistence from pg_class where relname = 'profile_event_counts'`,
    );
    expect(table!.persistence).toBe('u');
  });

  it('are rebuilt from the folded events before the next fold, merges included', async () => {
    const events = (user: string, names: string[], extra: Record<string, unknown> = {}) =>
      names.map((event, i) => ({
        type: 'track',
        ...extra,
        userId: user,
        event,
        timestamp: new Date(Date.UTC(2026, 0, 1 + i)).toISOString(),
      }));
    await send(db, config, [
      ...events('r1', ['Order Completed', 'Order Completed', 'Viewed']),
      ...events('r2', ['Order Completed', 'Viewed']),
      { type: 'page', anonymousId: 'r-visitor', name: 'Home' },
      { type: 'track', anonymousId: 'r-visitor', event: 'Order Completed' },
    ]);
    await foldAll(db);
    // The visitor turns out to be r2: a merge, which moves the visitor's events and counts.
    await send(db, config, [{ type: 'identify', userId: 'r2', anonymousId: 'r-visitor' }]);
    const before = await kept();
    const [{ position }] = (await rows<{ position: string }>(
      db,
      sql`select position from event_cursors where name = 'computed-traits'`,
    )) as [{ position: string }];
    expect(before).toEqual(await fromEvents(Number(position)));
    expect(await countSegment(db, ordered(2).rules, ordered(2))).toBe(2);
    // Not folded yet when the crash comes.
    await send(db, config, events('r1', ['Viewed']));

    await crash();
    // A segment reading the counts fails rather than match nobody.
    const failure = await countSegment(db, ordered(2).rules, ordered(2)).then(
      () => null,
      (error: Error) => error,
    );
    expect(String((failure?.cause as Error | undefined)?.message)).toMatch(
      /per-event counts are being rebuilt/,
    );
    const folded = await foldNewEvents(db);
    expect(folded.events).toBe(2);
    const [{ last }] = (await rows<{ last: string }>(
      db,
      sql`select max(id) as last from events`,
    )) as [{ last: string }];
    const after = await kept();
    expect(after).toEqual(await fromEvents(Number(last)));
    const r1 = (await profileOf(db, 'user_id', 'r1'))!;
    expect(after.find((c) => c.profile_id === r1 && c.name === 'Viewed')?.count).toBe(2);
    expect(await countSegment(db, ordered(2).rules, ordered(2))).toBe(2);
    // Ready again: nothing more to rebuild.
    expect(await ensureEventCounts(db)).toBe(false);
  });

  it('are rebuilt once when several processes find them missing together', async () => {
    await send(db, config, [{ type: 'track', userId: 'twice', event: 'Viewed' }]);
    await foldAll(db);
    await crash();
    const rebuilt = await Promise.all([ensureEventCounts(db), ensureEventCounts(db)]);
    expect(rebuilt.filter(Boolean)).toHaveLength(1);
    expect(await kept()).toEqual(await fromEvents(Number.MAX_SAFE_INTEGER));
  });
});
