/**
 * Segment benchmark: full computation of the loyal-customers, hot-leads, high-value and RFM
 * templates on generated data (1M profiles, 10M events by default), each against a hand-written
 * query answering the same question; then incremental latency — from a message stored to the
 * segment membership it causes — while ingesting at a steady rate.
 *
 *   npm run bench:segments                  # PGlite in a temp dir
 *   npm run bench:segments -- --pg          # a fresh database on 127.0.0.1:5432
 *   npm run bench:segments -- --profiles 100000 --events 1000000
 *
 * The method and recorded results are in docs/benchmarks.md.
 */
import { parseArgs } from 'node:util';
import { sql, type SQL } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import { rows, type Database, type Db } from '../../src/db/index.ts';
import { ingestMessages } from '../../src/events/ingest.ts';
import { parseMessage } from '../../src/events/message.ts';
import { startWorker } from '../../src/jobs/worker.ts';
import { createLogger } from '../../src/log.ts';
import { compileSegment } from '../../src/segments/compile.ts';
import { computeSegment, segmentResolver } from '../../src/segments/compute.ts';
import { computeRfm } from '../../src/segments/rfm.ts';
import type { SegmentRules } from '../../src/segments/rules.ts';
import { createSegment } from '../../src/segments/store.ts';
import {
  highValue,
  hotLeads,
  loyalCustomers,
  RFM_GROUPS,
  rfmGroup,
} from '../../src/segments/templates.ts';
import { openHubDatabase } from '../../src/server.ts';
import { uuidv7 } from '../../src/ids.ts';
import {
  commit,
  DEFAULT_PG_URL,
  loadAverage,
  machine,
  postgresVersion,
  saveResult,
  scratch,
} from '../support.ts';
import { generate } from './generate.ts';

const USAGE = `Usage: npm run bench:segments -- [options]
  --profiles N         profiles to generate (default 1000000)
  --events N           events to generate (default 10000000)
  --pg                 PostgreSQL instead of PGlite (also BENCH_DRIVER=postgres)
  --pg-url URL         server for the scratch database (default BENCH_PG_URL or ${DEFAULT_PG_URL})
  --repeat N           timed runs of each query, after one warm-up (default 3)
  --rate N             events per second while measuring incremental latency (default 1000)
  --seconds N          how long to measure incremental latency (default 30)
  --keep               keep the scratch database
  -h, --help`;

function options() {
  const { values } = parseArgs({
    options: {
      profiles: { type: 'string', default: '1000000' },
      events: { type: 'string', default: '10000000' },
      pg: { type: 'boolean', default: process.env.BENCH_DRIVER === 'postgres' },
      'pg-url': { type: 'string', default: DEFAULT_PG_URL },
      repeat: { type: 'string', default: '3' },
      rate: { type: 'string', default: '1000' },
      seconds: { type: 'string', default: '30' },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const int = (name: string, text: string | undefined, min: number) => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < min) {
      throw new Error(`--${name}: "${text}" is not an integer ≥ ${min}`);
    }
    return n;
  };
  return {
    help: values.help,
    profiles: int('profiles', values.profiles, 10),
    events: int('events', values.events, 10),
    driver: values.pg ? ('postgres' as const) : ('pglite' as const),
    pgUrl: values['pg-url'],
    repeat: int('repeat', values.repeat, 1),
    rate: int('rate', values.rate, 1),
    seconds: int('seconds', values.seconds, 1),
    keep: values.keep,
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const percentile = (xs: number[], p: number) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
};

/** Median wall time (ms) of `repeat` runs after a warm-up, and the count the query returned. */
async function time(db: Db, query: SQL, repeat: number) {
  const once = async () => {
    const started = performance.now();
    const [row] = await rows<{ n: number }>(db, sql`select count(*)::int as n from (${query}) q`);
    return { ms: performance.now() - started, n: row!.n };
  };
  const warm = await once();
  const runs = [];
  for (let i = 0; i < repeat; i++) runs.push(await once());
  if (runs.some((r) => r.n !== warm.n)) throw new Error('a query answered differently across runs');
  return { ms: median(runs.map((r) => r.ms)), count: warm.n };
}

/** The hand-written queries: what an engineer would type for the same questions. */
function handWritten(asOf: string) {
  const at = sql`${asOf}::timestamptz`;
  return {
    loyal: sql`
      select profile_id from events
      where revenue is not null and "timestamp" > ${at} - interval '3 months' and "timestamp" <= ${at}
      group by profile_id having count(*) >= 2`,
    hotLeads: sql`
      select profile_id from events
      where type = 'page' and properties->>'path' = '/pricing'
        and "timestamp" > ${at} - interval '7 days' and "timestamp" <= ${at}
      group by profile_id having count(*) >= 3
      union
      select profile_id from events
      where type = 'track' and name in ('File Downloaded', 'Form Submitted')
        and "timestamp" > ${at} - interval '30 days' and "timestamp" <= ${at}`,
    highValue: sql`
      select id from profiles
      where merged_into is null and total_spent > 200 and purchase_count > 3`,
    /** Every purchaser's RFM scores, by ntile-free quintiles (cume_dist), in one select. */
    rfmScores: sql`
      with u as (
        select profile_id,
          floor(extract(epoch from (${at} - max("timestamp"))) / 86400) as recency,
          count(distinct coalesce(properties->>'order_id', properties->>'transaction_id', message_id)) as frequency,
          sum(revenue) as monetary
        from events where revenue is not null and "timestamp" <= ${at}
        group by profile_id
      )
      select profile_id,
        ceil(5 * cume_dist() over (order by recency desc)) as r,
        ceil(5 * cume_dist() over (order by frequency)) as f,
        ceil(5 * cume_dist() over (order by monetary)) as m
      from u`,
  };
}

/** Hand-written: the members of an RFM group, from the stored scores. */
function handWrittenRfmGroup(rules: SegmentRules): SQL {
  // The groups are conjunctions of score ranges; written out the way a person would.
  const ranges: SQL[] = [];
  const walk = (node: unknown) => {
    const n = node as Record<string, unknown>;
    if (Array.isArray(n.all)) n.all.forEach(walk);
    const c = n.computed as
      { name: string; op: string; value?: number; from?: number; to?: number } | undefined;
    if (!c) return;
    const col = sql.identifier(c.name);
    const [lo, hi] = Array.isArray(c.value) ? c.value : [c.value, c.value];
    if (c.op === 'between') ranges.push(sql`${col} between ${lo} and ${hi}`);
    else if (c.op === 'gte') ranges.push(sql`${col} >= ${c.value}`);
    else if (c.op === 'lte') ranges.push(sql`${col} <= ${c.value}`);
    else if (c.op === 'eq') ranges.push(sql`${col} = ${c.value}`);
    else throw new Error(`no hand-written form for ${c.op}`);
  };
  walk(rules);
  return sql`select id from profiles where merged_into is null and ${sql.join(ranges, sql` and `)}`;
}

async function main() {
  const opts = options();
  if (opts.help) {
    console.log(USAGE);
    return;
  }
  const loadAverageAtStart = loadAverage();
  const log = (text: string) =>
    console.error(`[${new Date().toISOString().slice(11, 19)}] ${text}`);
  const place = await scratch(opts.driver, opts.pgUrl, 'segments');
  let database: Database | undefined;
  try {
    database = await openHubDatabase(place.config);
    const { db } = database;
    const now = new Date();
    const generated = performance.now();
    await generate(db, { profiles: opts.profiles, events: opts.events }, now, (step) =>
      log(`generating ${step}`),
    );
    const generateSeconds = (performance.now() - generated) / 1000;
    log(`generated in ${generateSeconds.toFixed(0)} s`);

    const asOf = now.toISOString();
    const hand = handWritten(asOf);
    const resolveSegment = segmentResolver(db);
    // Event windows end at the generation time (the hand-written queries' asOf); computed traits
    // are read from their stored columns, as they are without an asOf.
    const compile = (rules: SegmentRules, windowed: boolean) =>
      compileSegment(rules, { resolveSegment, ...(windowed ? { asOf: now } : {}) });
    const dialect = new PgDialect();
    const templates: { key: string; rules: SegmentRules; hand: SQL; windowed: boolean }[] = [
      { key: 'loyal-customers', rules: loyalCustomers(), hand: hand.loyal, windowed: true },
      { key: 'hot-leads', rules: hotLeads(), hand: hand.hotLeads, windowed: true },
      { key: 'high-value', rules: highValue(), hand: hand.highValue, windowed: false },
    ];

    // RFM scores first: the RFM groups read them.
    log('rfm scores');
    const rfmStarted = performance.now();
    const scored = await computeRfm(db, { asOf: now });
    const rfmMs = performance.now() - rfmStarted;
    // Scoring rewrites hundreds of thousands of rows; flush them now, untimed, so that the
    // checkpoint they cause does not land in whichever template happens to run next.
    await db.execute(sql`checkpoint`);
    const rfmHand = await time(db, hand.rfmScores, opts.repeat);
    if (rfmHand.count !== scored)
      throw new Error(`rfm: ${scored} scored, hand-written ${rfmHand.count}`);
    for (const group of RFM_GROUPS) {
      const rules = rfmGroup(group);
      templates.push({
        key: `rfm-${group.key}`,
        rules,
        hand: handWrittenRfmGroup(rules),
        windowed: false,
      });
    }

    const results = [];
    for (const t of templates) {
      log(`template ${t.key}`);
      const compiled = await compile(t.rules, t.windowed);
      const hub = await time(db, compiled, opts.repeat);
      const byHand = await time(db, t.hand, opts.repeat);
      if (hub.count !== byHand.count) {
        throw new Error(
          `${t.key}: the template selects ${hub.count}, the hand-written query ${byHand.count}`,
        );
      }
      const plan = await rows<{ 'QUERY PLAN': string }>(db, sql`explain ${compiled}`);
      const segment = await createSegment(
        db,
        { tokenId: uuidv7(), name: 'bench', role: 'admin' },
        { name: t.key, description: '', type: 'static', visibility: 'shared', rules: t.rules },
        { maxPerOwner: 1000 },
      );
      const runStarted = performance.now();
      const run = await computeSegment(db, segment.id, 'manual');
      const runMs = performance.now() - runStarted;
      results.push({
        template: t.key,
        members: hub.count,
        templateMs: Math.round(hub.ms),
        handWrittenMs: Math.round(byHand.ms),
        ratio: Number((hub.ms / byHand.ms).toFixed(2)),
        fullRunMs: Math.round(runMs),
        runSize: run.size,
        plan: plan.map((p) => p['QUERY PLAN']).join('\n'),
        sql: dialect.sqlToQuery(compiled).sql,
      });
      log(
        `  ${hub.count} members: ${hub.ms.toFixed(0)} ms vs ${byHand.ms.toFixed(0)} ms by hand; full run ${runMs.toFixed(0)} ms`,
      );
    }

    log(`incremental latency at ${opts.rate} events/s for ${opts.seconds} s`);
    const latency = await incrementalLatency(database, place.config, opts.rate, opts.seconds);

    const summary = {
      date: new Date().toISOString().slice(0, 10),
      commit: commit(),
      driver: opts.driver,
      profiles: opts.profiles,
      events: opts.events,
      generateSeconds: Math.round(generateSeconds),
      rfm: {
        scored,
        computeMs: Math.round(rfmMs),
        handWrittenSelectMs: Math.round(rfmHand.ms),
        ratio: Number((rfmMs / rfmHand.ms).toFixed(2)),
      },
      templates: results.map(({ plan: _plan, sql: _sql, ...r }) => r),
      incremental: latency,
      plans: Object.fromEntries(results.map((r) => [r.template, { sql: r.sql, plan: r.plan }])),
      machine: machine(loadAverageAtStart, await postgresVersion(opts.driver, opts.pgUrl)),
    };
    console.log(JSON.stringify({ ...summary, plans: undefined }));
    for (const r of results) {
      console.log(
        `| ${r.template} | ${r.members.toLocaleString('en-US')} | ${r.templateMs} | ${r.handWrittenMs} | ${r.ratio} | ${r.fullRunMs} |`,
      );
    }
    saveResult('segments', opts.driver, summary);
  } finally {
    await database?.close();
    if (!opts.keep) await place.drop();
    else console.error(`kept: ${place.config.databaseUrl ?? place.config.dataDir}`);
  }
}

/**
 * Send `rate` events a second for `seconds` through the ingest path while the worker runs; a
 * tenth of them are probes — a new person submitting a form, which puts them in the hot-leads
 * segment — and the latency is the time from a probe's batch being stored to its person being a
 * member (polled every 20 ms).
 */
async function incrementalLatency(
  database: Database,
  config: Parameters<typeof startWorker>[1],
  rate: number,
  seconds: number,
) {
  const { db } = database;
  const segment = await createSegment(
    db,
    { tokenId: uuidv7(), name: 'bench', role: 'admin' },
    {
      name: 'hot leads (live)',
      description: '',
      type: 'dynamic',
      visibility: 'shared',
      rules: hotLeads(),
    },
    { maxPerOwner: 1000 },
  );
  await computeSegment(db, segment.id, 'create');
  const worker = await startWorker(database, config, createLogger('warn'), { runJobs: false });
  const pending = new Map<string, number>();
  const latencies: number[] = [];
  let polling = true;
  let stopAt = Infinity;
  const poller = (async () => {
    while (polling || pending.size > 0) {
      if (pending.size > 0) {
        const found = await rows<{ value: string }>(
          db,
          sql`select i.value from identities i
              join segment_members m on m.profile_id = i.profile_id and m.segment_id = ${segment.id}
              where i.type = 'user_id'
                and i.value in (select x from json_array_elements_text(${JSON.stringify([...pending.keys()])}::json) x)`,
        );
        const at = performance.now();
        for (const f of found) {
          latencies.push(at - pending.get(f.value)!);
          pending.delete(f.value);
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
      if (!polling && performance.now() > stopAt + 30_000) break;
    }
  })();
  const batchesPerSecond = 10;
  const perBatch = Math.max(1, Math.round(rate / batchesPerSecond));
  const started = performance.now();
  let sent = 0;
  for (let b = 0; b < seconds * batchesPerSecond; b++) {
    const due = started + (b * 1000) / batchesPerSecond;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const probe = `probe-${b}`;
    const raw = Array.from({ length: perBatch }, (_, i) =>
      i === 0
        ? { type: 'track', userId: probe, event: 'Form Submitted' }
        : {
            type: 'track',
            userId: `u${1 + Math.floor(Math.random() * 100_000)}`,
            event: 'Product Viewed',
            properties: { category: 'books' },
          },
    );
    const messages = raw.map((m) => {
      const parsed = parseMessage(m, { source: 'bench', receivedAt: new Date(), config });
      if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
      return parsed.message;
    });
    await ingestMessages(db, config, messages);
    pending.set(probe, performance.now());
    sent += messages.length;
  }
  const elapsed = (performance.now() - started) / 1000;
  stopAt = performance.now();
  polling = false;
  await poller;
  await worker.stop();
  return {
    targetRate: rate,
    achievedRate: Math.round(sent / elapsed),
    probes: seconds * batchesPerSecond,
    measured: latencies.length,
    p50Ms: Math.round(percentile(latencies, 50)),
    p95Ms: Math.round(percentile(latencies, 95)),
    maxMs: Math.round(Math.max(...latencies)),
  };
}

main().catch((error: unknown) => {
  console.error(`bench:segments: ${error instanceof Error ? error.message : String(error)}`);
  if (error instanceof Error) console.error(error.stack);
  process.exitCode = 1;
});
