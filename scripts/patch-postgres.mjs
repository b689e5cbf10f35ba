#!/usr/bin/env node
/**
 * Run after every install (the `postinstall` script): fixes to postgres.js 3.4.9 for a
 * connection that is lost (PostgreSQL restarting, a backend terminated, the network failing)
 * while it is in use. Upstream: porsager/postgres#1154, #1208.
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
 *
 * Idempotent. Fails the install when postgres.js is not the code this was written for: a new
 * version may have fixed the bugs (then drop the patch) or moved the code (then update it).
 * test/connection-loss.test.ts proves the patched behaviour.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const MARKER = '/* audiencehub: connection-loss guard */';

const closedError = "Errors.connection('CONNECTION_CLOSED', options)";

/** [original, patched] pairs for index.js; each original occurs exactly once. */
const INDEX = [
  // A transaction: remember the connection its BEGIN reserved, and refuse statements once
  // that reservation has ended (the connection closed, or the transaction ended).
  [
    `    async function scope(c, fn, name) {
      const sql = Sql(handler)`,
    `    async function scope(c, fn, name) {
      const reservation = c.reserved ${MARKER}
      const sql = Sql(handler)`,
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
    if (text.includes(MARKER)) return `${file}: already patched`;
    for (const [original, patched] of edits) {
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
