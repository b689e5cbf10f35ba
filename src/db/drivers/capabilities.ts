/**
 * What a driver can do that callers may plan around. PGlite runs PostgreSQL in this process's
 * own thread, on one connection: transactions started together only queue one behind another.
 */
const oneAtATime = new WeakSet<object>();

/** Record that `db` runs one statement at a time (done by the driver that opened it). */
export function markOneAtATime(db: object): void {
  oneAtATime.add(db);
}

/**
 * Whether `db` runs one statement at a time, so that running transactions side by side gains
 * nothing.
 *
 * @example
 * const writers = runsOneAtATime(db) ? 1 : 2;
 */
export function runsOneAtATime(db: object): boolean {
  return oneAtATime.has(db);
}
