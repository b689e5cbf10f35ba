import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { testConfig } from '../src/config.ts';
import { rows, type Database, type Db } from '../src/db/index.ts';
import {
  foldAll,
  foldNewEvents,
  holdIngestHorizon,
  type FoldResult,
} from '../src/profiles/fold.ts';
import { mergeProfiles } from '../src/profiles/resolve.ts';
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
