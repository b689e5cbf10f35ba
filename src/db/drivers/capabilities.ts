/**
 * What a driver can do that callers may plan around. PGlite runs PostgreSQL in this process's
 * own thread, on one connection: transactions started together only queue one behind another.
 */
const oneAtATime = new WeakSet<object>();
const pipelining = new WeakSet<object>();

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

/** Record that `db` (or a transaction on it) keeps the order of statements sent together. */
export function markPipelining(db: object): void {
  pipelining.add(db);
}

/**
 * Whether statements of one transaction on `db` may be sent without waiting for each answer:
 * postgres.js pipelines them on the connection, in order. PGlite does not keep their order. A
 * transaction handle counts only when marked (`withRetry` marks those it begins); unknown
 * handles run their statements one after another.
 */
export function pipelines(db: object): boolean {
  return pipelining.has(db);
}
