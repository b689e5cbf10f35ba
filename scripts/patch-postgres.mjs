#!/usr/bin/env node
/**
 * Run after every install (the `postinstall` script): changes to postgres.js 3.4.9. Most fix
 * what happens to a connection that is lost (PostgreSQL restarting, a backend terminated, the
 * network failing) while it is in use (upstream: porsager/postgres#1154, #1208); the last one
 * saves every transaction a round trip.
 *
 * - A statement sent in a transaction after its connection had closed was written to a socket
 *   that is gone: the write threw from a timer, outside any promise, and ended the process. A
 *   lost connection does that whenever it fails statements of a transaction, since postgres.js
 *   then sends its `rollback` down it. Patched, such a statement fails with CONNECTION_CLOSED,
 *   as the ones in flight did; once the pool has reconnected the connection, it cannot run
 *   outside the transaction either. (`sql.reserve()` has the same flaw and more; the hub does
 *   not use it.)
 * - A connection closed after a socket error did not fail a statement sent between the error
 *   and the close, which then never settled. Patched, every statement still in flight fails.
 * - A closed connection kept what it was in the middle of, and the next connection on the
 *   same slot inherited it: bytes buffered but not yet written went out ahead of its startup
 *   message; the count of rows read so far, when the close came in the middle of a result,
 *   made the next query's rows land past the start of its result (a lookup of a write key
 *   found nothing, and the request was answered 401); the error received before the close
 *   failed the next connection's first statement. Patched, all of it is dropped with the
 *   connection, once the statements in flight have been failed.
 * - A new connection first reads the array types; when it was lost during that read, the read's
 *   failure was left unhandled, which Node reports as an unhandled rejection. Patched, it is
 *   dropped: the connection's statements fail with it. (The client may then not read the types
 *   at all: a pool whose very first read failed was seen returning an array as its text.)
 * - `sql.begin` waited for the answer to BEGIN before it let the transaction send anything. The
 *   statements now follow BEGIN down the connection it reserved without waiting, as pgjdbc and
 *   pgx send them; BEGIN's answer is checked before COMMIT. An ingest transaction is a few
 *   round trips, so this is a good part of its time. BEGIN fails only when its session does,
 *   and then everything sent after it fails too. Were a BEGIN to fail on a session that lives
 *   on, the statements already sent behind it would each commit on its own; the transaction
 *   still fails, at COMMIT, so that its caller does not take it for done.
 *
 * Idempotent, edit by edit, so a copy patched by an earlier version of this script gets the
 * edits it lacks. Fails the install when postgres.js is not the code this was written for: a new
 * version may have fixed the bugs (then drop the patch) or moved the code (then update it).
 * test/connection-loss.test.ts proves the patched behaviour.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const MARKER = '/* audiencehub: connection-loss guard */';
/** The comment on the lines that pipeline a transaction's BEGIN. */
export const PIPELINED = '/* audiencehub: pipelined begin */';

const closedError = "Errors.connection('CONNECTION_CLOSED', options)";

/** [original, patched] pairs for index.js; each original occurs exactly once. */
const INDEX = [
  // A transaction: remember the connection its BEGIN reserved, and refuse statements once
  // that reservation has ended (the connection closed, or the transaction ended).
  [
    `      const sql = Sql(handler)
      sql.savepoint = savepoint`,
    `      const reservation = c.reserved ${MARKER}
      const sql = Sql(handler)
      sql.savepoint = savepoint`,
  ],
  [
    `      function handler(q) {
        q.catch(e => uncaughtError || (uncaughtError = e))
        c.queue === full`,
    `      function handler(q) {
        q.catch(e => uncaughtError || (uncaughtError = e))
        if (c.reserved !== reservation) return q.reject(${closedError})
        c.queue === full`,
  ],
  // BEGIN pipelined: the transaction's statements go out as soon as BEGIN has its connection,
  // not once its answer is back. Its outcome is awaited before COMMIT.
  [
    `      await sql.unsafe('begin ' + options.replace(/[^a-z ]/ig, ''), [], { onexecute }).execute()
      return await Promise.race([
        scope(connection, fn),`,
    `      let onreserved ${PIPELINED}
      const reserving = new Promise(r => onreserved = r)
      const began = sql.unsafe('begin ' + options.replace(/[^a-z ]/ig, ''), [], {
        onexecute: c => (onexecute(c), onreserved())
      }).execute()
      began.catch(() => {})
      await Promise.race([reserving, began])
      connection.queue === full && move(connection, reserved)
      return await Promise.race([
        scope(connection, fn, null, began),`,
  ],
  [`    async function scope(c, fn, name) {`, `    async function scope(c, fn, name, began) {`],
  [
    `      if (!name) {
        prepare`,
    `      if (!name) {
        await began ${PIPELINED}
        prepare`,
  ],
];

/**
 * The same for connection.js: a closed connection fails every statement still in flight, and
 * its unsent bytes and what it was reading go with it.
 */
const CONNECTION = [
  [
    `  async function closed(hadError) {
    incoming = Buffer.alloc(0)
    remaining = 0
    incomings = null
    clearImmediate(nextWriteTimer)`,
    `  async function closed(hadError) {
    incoming = Buffer.alloc(0)
    remaining = 0
    incomings = null
    clearImmediate(nextWriteTimer)
    chunk = nextWriteTimer = null ${MARKER}`,
  ],
  [
    `    !hadError && (query || sent.length) && error(Errors.connection('CONNECTION_CLOSED', options, socket))
`,
    `    ;(query || sent.length) && error(Errors.connection('CONNECTION_CLOSED', options, socket))
    query = results = errorResponse = null
    result = new Result()
    rows = 0
`,
  ],
  // A connection lost while it read the array types left that read's failure unhandled.
  [
    `        return fetchArrayTypes()
`,
    `        return fetchArrayTypes().catch(() => {}) ${MARKER}
`,
  ],
];

/** Both builds Node may load, ESM (`import`) and CommonJS (`require`), file by file. */
const FILES = [
  ['src/index.js', INDEX],
  ['src/connection.js', CONNECTION],
  ['cjs/src/index.js', INDEX],
  ['cjs/src/connection.js', CONNECTION],
];

function packageRoot() {
  // src/index.js → the package folder.
  return dirname(dirname(fileURLToPath(import.meta.resolve('postgres'))));
}

/** Patch postgres.js in place; returns what was done to each file. */
export function patchPostgres(root = packageRoot()) {
  return FILES.map(([file, edits]) => {
    const path = join(root, file);
    let text = readFileSync(path, 'utf8');
    const pending = edits.filter(([, patched]) => !text.includes(patched));
    if (pending.length === 0) return `${file}: already patched`;
    for (const [original, patched] of pending) {
      const at = text.indexOf(original);
      if (at < 0 || text.indexOf(original, at + 1) >= 0) {
        throw new Error(
          `${path} is not the postgres.js code scripts/patch-postgres.mjs was written for ` +
            `(porsager/postgres#1154, #1208). Check whether the installed version fixes it, then ` +
            `update or remove the patch.`,
        );
      }
      text = text.replace(original, () => patched);
    }
    writeFileSync(path, text);
    return `${file}: patched`;
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  try {
    for (const line of patchPostgres()) console.log(`postgres.js ${line}`);
  } catch (error) {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  }
}
