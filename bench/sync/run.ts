/**
 * Sync benchmark: a segment of 1M members to the Mailchimp emulator through the real engine and
 * plugin — (a) the first full sync with 0 ms and with 200 ms of emulator latency, against the
 * bound the vendor's limits allow (10 connections × 500 members per call ÷ latency); (b) a
 * re-run with no change (time and API calls); (c) a 1% change (only that delta sent). The
 * emulator runs on its own thread (remote-emulator.ts), as the service runs on its own machine.
 *
 *   npm run bench:sync -- --pg                  # PostgreSQL (the targets are for it)
 *   npm run bench:sync -- --members 100000      # smaller
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { sql } from 'drizzle-orm';
import mailchimpPlugin from '../../plugins/mailchimp/index.ts';
import { rows, type Db } from '../../src/db/index.ts';
import { secretBox } from '../../src/destinations/secrets.ts';
import { createDestination } from '../../src/destinations/store.ts';
import { uuidv7 } from '../../src/ids.ts';
import { createLogger } from '../../src/log.ts';
import { openHubDatabase } from '../../src/server.ts';
import { runSync, type SyncDeps } from '../../src/sync/engine.ts';
import { createRegistry } from '../../src/sync/registry.ts';
import { createSync } from '../../src/sync/store.ts';
import {
  commit,
  DEFAULT_PG_URL,
  loadAverage,
  machine,
  postgresVersion,
  saveResult,
  scratch,
} from '../support.ts';
import { startRemoteMailchimp } from './remote-emulator.ts';

function options() {
  const { values } = parseArgs({
    options: {
      members: { type: 'string', default: '1000000' },
      pg: { type: 'boolean', default: process.env.BENCH_DRIVER === 'postgres' },
      'pg-url': { type: 'string', default: DEFAULT_PG_URL },
      latency: { type: 'string', default: '200' },
      keep: { type: 'boolean', default: false },
    },
  });
  const members = Number(values.members);
  if (!Number.isInteger(members) || members < 100) throw new Error('--members: at least 100');
  return {
    members,
    driver: values.pg ? ('postgres' as const) : ('pglite' as const),
    pgUrl: values['pg-url'],
    latencyMs: Number(values.latency),
    keep: values.keep,
  };
}

const admin = { tokenId: uuidv7(), name: 'bench', role: 'admin' as const };

/** `n` profiles with an email and a first name, all members of one shared static segment. */
async function generate(db: Db, n: number): Promise<string> {
  await db.execute(sql`
    insert into profiles (id, kind, traits)
    select gen_random_uuid(), 'customer',
      jsonb_build_object('first_name', 'Name' || g, 'email', 'person' || g || '@example.com')
    from generate_series(1, ${n}) g`);
  await db.execute(sql`
    insert into identities (type, value, profile_id, source)
    select 'email', traits->>'email', id, 'bench' from profiles`);
  const segmentId = uuidv7();
  await db.execute(sql`
    insert into segments (id, name, type, visibility, owner_id, owner_name)
    values (${segmentId}, 'Everyone', 'static', 'shared', ${admin.tokenId}, 'bench')`);
  await db.execute(sql`
    insert into segment_members (segment_id, profile_id) select ${segmentId}::uuid, id from profiles`);
  await db.execute(sql`analyze`);
  return segmentId;
}

async function main() {
  const opts = options();
  const loadAtStart = loadAverage();
  const log = (text: string) =>
    console.error(`[${new Date().toISOString().slice(11, 19)}] ${text}`);
  const place = await scratch(opts.driver, opts.pgUrl, 'sync');
  const database = await openHubDatabase(place.config);
  const mailchimp = await startRemoteMailchimp();
  try {
    const { db } = database;
    log(`generating ${opts.members.toLocaleString('en-US')} members`);
    const segmentId = await generate(db, opts.members);
    const registry = createRegistry();
    registry.register(mailchimpPlugin);
    const deps: SyncDeps = {
      registry,
      box: secretBox(randomBytes(32)),
      log: createLogger('warn'),
      queues: new Map(),
    };

    /** A fresh audience and sync, then one timed run. */
    const fullSync = async (latencyMs: number) => {
      const list = await mailchimp.createList({ name: `bench ${latencyMs} ms` });
      const destination = await createDestination(db, deps, admin, {
        name: `mailchimp ${latencyMs} ms ${uuidv7()}`,
        plugin: 'mailchimp',
        config: { apiKey: mailchimp.apiKey, listId: list.id, baseUrl: mailchimp.url },
      });
      const sync = await createSync(db, deps, admin, {
        segmentId,
        destinationId: destination.id,
        mode: 'mirror',
        mapping: [
          { from: 'identity:email', to: 'EMAIL' },
          { from: 'trait:first_name', to: 'FNAME' },
        ],
      });
      await mailchimp.setLatency(latencyMs);
      const before = (await mailchimp.stats()).requests;
      const cpu = process.cpuUsage();
      const loop = performance.eventLoopUtilization();
      const started = performance.now();
      const run = await runSync(db, deps, sync.id, 'manual');
      const seconds = (performance.now() - started) / 1000;
      const cpuSeconds = (process.cpuUsage(cpu).user + process.cpuUsage(cpu).system) / 1e6;
      const busySeconds = performance.eventLoopUtilization(loop).active / 1000;
      await mailchimp.setLatency(0);
      const stats = await mailchimp.stats();
      if (run.status !== 'succeeded' || run.added !== opts.members) {
        throw new Error(`run ${run.id}: ${run.status}, added ${run.added}: ${run.error}`);
      }
      const calls = stats.requests - before;
      const bound = latencyMs > 0 ? (10 * 500) / (latencyMs / 1000) : null;
      const rate = opts.members / seconds;
      log(
        `  ${latencyMs} ms: ${rate.toFixed(0)} members/s (${seconds.toFixed(1)} s, ${calls} calls)` +
          (bound ? `, ${((rate / bound) * 100).toFixed(0)}% of the bound ${bound}` : ''),
      );
      return {
        sync,
        list,
        result: {
          latencyMs,
          seconds: Number(seconds.toFixed(1)),
          membersPerSecond: Math.round(rate),
          calls,
          boundMembersPerSecond: bound,
          ofBound: bound ? Number((rate / bound).toFixed(2)) : null,
          // Both threads: the hub's and the emulator's.
          processCpuSeconds: Number(cpuSeconds.toFixed(1)),
          // The hub's event loop alone.
          hubLoopBusySeconds: Number(busySeconds.toFixed(1)),
          hubLoopMicrosecondsPerMember: Math.round((busySeconds * 1e6) / opts.members),
          peakConnections: stats.peakInFlight,
          refusedForConcurrency: stats.refusedForConcurrency,
        },
      };
    };

    log('(a) first full sync, 0 ms latency');
    const fast = await fullSync(0);
    log(`(a) first full sync, ${opts.latencyMs} ms latency`);
    const slow = await fullSync(opts.latencyMs);

    log('(b) re-run with no change');
    const before = (await mailchimp.stats()).requests;
    let started = performance.now();
    const idle = await runSync(db, deps, fast.sync.id, 'manual');
    const noChange = {
      seconds: Number(((performance.now() - started) / 1000).toFixed(2)),
      calls: (await mailchimp.stats()).requests - before,
      sent: idle.added + idle.updated + idle.removed,
    };
    log(`  ${noChange.seconds} s, ${noChange.calls} calls`);

    log('(c) a 1% change');
    const changed = Math.round(opts.members / 100);
    await db.execute(sql`
      update profiles set traits = traits || jsonb_build_object('first_name', 'Renamed')
      where id in (select id from profiles order by id limit ${changed})`);
    const callsBefore = (await mailchimp.stats()).requests;
    started = performance.now();
    const delta = await runSync(db, deps, fast.sync.id, 'manual');
    const onePercent = {
      changed,
      seconds: Number(((performance.now() - started) / 1000).toFixed(2)),
      updated: delta.updated,
      calls: (await mailchimp.stats()).requests - callsBefore,
    };
    log(`  ${onePercent.updated} updated in ${onePercent.seconds} s, ${onePercent.calls} calls`);
    const [held] = await rows<{ n: number }>(
      db,
      sql`select count(*)::int as n from sync_state where sync_id = ${fast.sync.id}`,
    );

    const summary = {
      date: new Date().toISOString().slice(0, 10),
      commit: commit(),
      driver: opts.driver,
      members: opts.members,
      firstSync: [fast.result, slow.result],
      noChange,
      onePercent,
      ledgerRows: held!.n,
      audienceMembers: await mailchimp.memberCount(fast.list.id),
      machine: machine(loadAtStart, await postgresVersion(opts.driver, opts.pgUrl)),
    };
    console.log(JSON.stringify(summary));
    saveResult('sync', opts.driver, summary);
  } finally {
    await mailchimp.close();
    await database.close();
    if (!opts.keep) await place.drop();
  }
}

main().catch((error: unknown) => {
  console.error(`bench:sync: ${error instanceof Error ? error.message : String(error)}`);
  if (error instanceof Error) console.error(error.stack);
  process.exitCode = 1;
});
