import { sql } from 'drizzle-orm';
import { rows, type Db } from '../../src/db/index.ts';

/**
 * Read `read` until `done` holds or `ms` have passed, polling every `everyMs`, and answer the
 * last value read: the test then asserts on it, so a timeout fails showing what was last seen
 * rather than "timed out".
 *
 * @example
 * const run = await until(() => getImportRun(db, id), (r) => r?.status !== 'running');
 * expect(run).toMatchObject({ status: 'succeeded' });
 */
export async function until<T>(
  read: () => Promise<T>,
  done: (value: T) => boolean,
  ms = 15_000,
  everyMs = 25,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/**
 * What `next` does when it meets a transaction that is still open (PostgreSQL only): a
 * transaction does `hold`, then stays open until `next` waits on one of its locks (or is done
 * without waiting), does `afterwards`, and commits. Answers what `next` answers.
 *
 * @example
 * const result = await meetOpenTransaction(db, (tx) => lockProfiles(tx), () => send(db, config, batch));
 */
export async function meetOpenTransaction<T>(
  db: Db,
  hold: (tx: Db) => Promise<unknown>,
  next: () => Promise<T>,
  afterwards: (tx: Db) => Promise<unknown> = async () => {},
): Promise<T> {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let held!: () => void;
  const holding = new Promise<void>((resolve) => (held = resolve));
  const open = db.transaction(async (tx) => {
    await hold(tx as unknown as Db);
    held();
    await released;
    await afterwards(tx as unknown as Db);
  });
  await Promise.race([holding, open]);
  const pending = next();
  let done = false;
  void pending.then(
    () => (done = true),
    () => (done = true),
  );
  await until(
    async () => {
      const [w] = await rows<{ n: number }>(
        db,
        sql`select count(*)::int as n from pg_stat_activity
            where datname = current_database() and wait_event_type = 'Lock'`,
      );
      return w!.n;
    },
    (waiting) => waiting > 0 || done,
    5000,
    20,
  );
  release();
  await open;
  return pending;
}
