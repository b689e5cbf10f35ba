/**
 * Ingestion benchmark: Segment `track` events through the hub's `POST /v1/batch`, end to end,
 * against a plain multi-row INSERT of the same rows into a fresh copy of the `events` table.
 *
 *   npm run bench:ingest                       # 1,000,000 events on PGlite in a temp dir
 *   npm run bench:ingest -- --pg               # on a fresh database on 127.0.0.1:5432
 *   npm run bench:ingest -- --events 5000 --concurrency 8
 *
 * The method and recorded results are in docs/benchmarks.md.
 */
import { randomBytes } from 'node:crypto';
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { PerformanceObserver } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import postgres from 'postgres';
import type { HubConfig } from '../../src/config.ts';
import { rows, type Database } from '../../src/db/index.ts';
import { createLogger } from '../../src/log.ts';
import { openHubDatabase, startHub } from '../../src/server.ts';
import { sql } from 'drizzle-orm';
import {
  commit,
  DEFAULT_PG_URL,
  loadAverage,
  machine,
  postgresVersion,
  saveResult,
  scratch,
} from '../support.ts';
import { createTraffic, type Traffic } from './generate.ts';
import {
  batchSender,
  runSenders,
  type SenderJob,
  type SenderReport,
  type SenderStats,
} from './senders.ts';

const USAGE = `Usage: npm run bench:ingest -- [options]
  --events N         events to send (default 1000000)
  --users N          distinct users (default: events / 10, at most 100000)
  --batch N          events per /v1/batch request (default 500)
  --concurrency N    concurrent senders (default 8)
  --pg               PostgreSQL instead of PGlite (also BENCH_DRIVER=postgres)
  --pg-url URL       server to create the scratch databases on
                     (default BENCH_PG_URL or postgres://postgres@127.0.0.1:5432/postgres)
  --senders-in-process
                     run the senders in the benchmark's (and so the hub's) process, not in
                     a child process of their own
  --skip-baseline    only the hub
  --baseline-only    only the bare INSERT, its figures printed as JSON (how the baseline run
                     ahead of the hub is made, in a process of its own)
  --keep             keep the scratch databases / folders
  -h, --help`;

function options() {
  const { values } = parseArgs({
    options: {
      events: { type: 'string', default: '1000000' },
      users: { type: 'string' },
      batch: { type: 'string', default: '500' },
      concurrency: { type: 'string', default: '8' },
      pg: { type: 'boolean', default: process.env.BENCH_DRIVER === 'postgres' },
      'pg-url': {
        type: 'string',
        default: DEFAULT_PG_URL,
      },
      'skip-baseline': { type: 'boolean', default: false },
      'baseline-only': { type: 'boolean', default: false },
      'run-id': { type: 'string' },
      now: { type: 'string' },
      'senders-in-process': { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const int = (name: string, text: string | undefined, min: number) => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < min)
      throw new Error(`--${name}: "${text}" is not an integer ≥ ${min}`);
    return n;
  };
  const events = int('events', values.events, 1);
  return {
    help: values.help,
    events,
    users: values.users
      ? int('users', values.users, 1)
      : Math.max(1, Math.min(100_000, Math.floor(events / 10))),
    batch: int('batch', values.batch, 1),
    concurrency: int('concurrency', values.concurrency, 1),
    driver: values.pg ? ('postgres' as const) : ('pglite' as const),
    pgUrl: values['pg-url'],
    skipBaseline: values['skip-baseline'],
    baselineOnly: values['baseline-only'],
    runId: values['run-id'] ?? `bench-${Date.now().toString(36)}`,
    now: values.now ? int('now', values.now, 0) : Date.now(),
    sendersInProcess: values['senders-in-process'],
    keep: values.keep,
  };
}
type Options = ReturnType<typeof options>;

/** Where the memory was at the last phase's peak RSS: V8 heap, buffers, the rest native. */
let atPeak: NodeJS.MemoryUsage | undefined;

/** Peak RSS of this process, sampled every 100 ms while a phase runs. */
function rssSampler() {
  let peak = process.memoryUsage().rss;
  const timer = setInterval(() => {
    const usage = process.memoryUsage();
    if (usage.rss > peak) {
      peak = usage.rss;
      atPeak = usage;
    }
  }, 100);
  // A failed phase must not keep the process alive.
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      return Math.max(peak, process.memoryUsage().rss);
    },
  };
}

/**
 * CPU time of the PostgreSQL server processes serving one database (backends and autovacuum),
 * read from /proc every 250 ms while a phase runs, so backends that come and go are counted.
 * Only when the server runs on this machine; null otherwise.
 */
function serverCpuSampler(pgUrl: string, database: string) {
  const admin = postgres(pgUrl, { max: 1, onnotice: () => {} });
  const ticks = 100; // USER_HZ on Linux
  const first = new Map<number, number>();
  const last = new Map<number, number>();
  let readable = true;
  const cpuOf = (pid: number): number | null => {
    try {
      // Fields after the command name (which may hold spaces): utime and stime are 14th and 15th.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return (Number(fields[11]) + Number(fields[12])) / ticks;
    } catch {
      return null;
    }
  };
  const sample = async (initial: boolean) => {
    const pids = await admin<{ pid: number }[]>`
      select pid from pg_stat_activity where datname = ${database}`;
    for (const { pid } of pids) {
      const cpu = cpuOf(pid);
      if (cpu === null) {
        readable = false;
        continue;
      }
      if (initial) first.set(pid, cpu);
      last.set(pid, cpu);
    }
  };
  let timer: NodeJS.Timeout | undefined;
  let pending = Promise.resolve();
  return {
    async start() {
      await sample(true);
      timer = setInterval(() => {
        pending = pending.then(() => sample(false)).catch(() => {});
      }, 250);
      timer.unref();
    },
    /** Server CPU seconds since start(), or null when /proc could not be read. */
    async stop(): Promise<number | null> {
      clearInterval(timer);
      await pending;
      await sample(false).catch(() => {});
      await admin.end();
      if (!readable) return null;
      let total = 0;
      for (const [pid, cpu] of last) total += cpu - (first.get(pid) ?? 0);
      return total;
    },
  };
}

function serverSampler(opts: Options, databaseUrl: string | undefined) {
  if (opts.driver !== 'postgres' || !databaseUrl) return null;
  return serverCpuSampler(opts.pgUrl, new URL(databaseUrl).pathname.slice(1));
}

function cpuSince(start: NodeJS.CpuUsage): number {
  const { user, system } = process.cpuUsage(start);
  return (user + system) / 1e6;
}

interface PhaseResult {
  seconds: number;
  eventsPerSecond: number;
  peakRssMb: number;
  /** Time this process spent building and serialising batches (it shares the CPU with the hub). */
  clientSeconds: number;
  /** CPU time (user + system) of this process during the phase: near `seconds` means Node is the limit. */
  cpuSeconds: number;
  /** CPU time of the PostgreSQL server processes for this database (PostgreSQL on this machine). */
  serverCpuSeconds: number | null;
  /** Share of the phase this process's event loop was not waiting for work (0–1). */
  eventLoopBusy: number;
  /** Time this process's main thread was paused for garbage collection. */
  gcPauseSeconds: number;
  /** Share of the machine's CPU time left idle during the phase (Linux), else null. */
  idleShare: number | null;
  stored: number;
}

type Measured = Pick<
  PhaseResult,
  | 'seconds'
  | 'eventsPerSecond'
  | 'peakRssMb'
  | 'cpuSeconds'
  | 'eventLoopBusy'
  | 'gcPauseSeconds'
  | 'idleShare'
>;

/** The machine's CPU time so far, idle and in all, from /proc/stat; null where there is none. */
function machineTimes(): { idle: number; total: number } | null {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1);
    const ticks = fields.map(Number);
    // user nice system idle iowait irq softirq steal: idle and waiting for I/O count as idle.
    return { idle: ticks[3]! + ticks[4]!, total: ticks.reduce((a, b) => a + b, 0) };
  } catch {
    return null;
  }
}

/** Run the senders and measure the phase: wall time, this process's CPU time and peak RSS. */
async function measure(traffic: Traffic, run: () => Promise<void>): Promise<Measured> {
  const rss = rssSampler();
  let gcMs = 0;
  const gc = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) gcMs += entry.duration;
  });
  gc.observe({ entryTypes: ['gc'] });
  const times = machineTimes();
  const loop = performance.eventLoopUtilization();
  const cpu = process.cpuUsage();
  const started = performance.now();
  let peak: number;
  try {
    await run();
  } finally {
    peak = rss.stop();
    gc.disconnect();
  }
  const seconds = (performance.now() - started) / 1000;
  const after = machineTimes();
  return {
    seconds,
    eventsPerSecond: traffic.events / seconds,
    cpuSeconds: cpuSince(cpu),
    peakRssMb: peak / 2 ** 20,
    eventLoopBusy: performance.eventLoopUtilization(loop).utilization,
    gcPauseSeconds: gcMs / 1000,
    idleShare:
      times && after && after.total > times.total
        ? (after.idle - times.idle) / (after.total - times.total)
        : null,
  };
}

async function countEvents(database: { db: Database['db'] }): Promise<number> {
  const [row] = await rows<{ n: number }>(database.db, sql`select count(*)::int as n from events`);
  return row?.n ?? 0;
}

/** Events stored but not yet folded into computed traits. */
async function foldLag(database: { db: Database['db'] }): Promise<number> {
  const [row] = await rows<{ lag: string | number }>(
    database.db,
    sql`select (select coalesce(max(id), 0) from events)
          - coalesce((select position from event_cursors where name = 'computed-traits'), 0) as lag`,
  );
  return Number(row?.lag ?? 0);
}

/**
 * Start the senders in a child process and wait until it is ready; `go()` starts them and
 * resolves with their report once every batch has been answered.
 */
async function startSenders(job: SenderJob) {
  const child = fork(new URL('./senders.ts', import.meta.url), ['--bench-sender'], {
    execArgv: process.execArgv,
  });
  const next = () =>
    new Promise<unknown>((resolve, reject) => {
      const onExit = (code: number | null) =>
        reject(new Error(`the sender process exited (${code})`));
      child.once('exit', onExit);
      child.once('message', (message) => {
        child.off('exit', onExit);
        resolve(message);
      });
    });
  const ready = next();
  child.send(job);
  await ready;
  return {
    async go(): Promise<Exclude<SenderReport, { error: string }>> {
      const done = next();
      child.send('go');
      const report = (await done) as SenderReport;
      if ('error' in report) throw new Error(report.error);
      return report;
    },
  };
}

async function benchHub(
  opts: Options,
  traffic: Traffic,
): Promise<
  PhaseResult & {
    foldedSeconds: number;
    foldedEventsPerSecond: number;
    senderCpuSeconds: number | null;
    senderPeakRssMb: number | null;
  }
> {
  const place = await scratch(opts.driver, opts.pgUrl, 'hub');
  const server = serverSampler(opts, place.config.databaseUrl);
  const writeKey = `ahw_bench_${randomBytes(16).toString('hex')}`;
  const config: HubConfig = {
    ...place.config,
    initialWriteKey: writeKey,
    initialAdminToken: `aht_bench_${randomBytes(16).toString('hex')}`,
  };
  const hub = await startHub(config, createLogger('warn'), { print: () => {} });
  const auth = `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`;
  let stats: SenderStats;
  let senderCpuSeconds: number | null = null;
  let senderPeakRssMb: number | null = null;
  try {
    let measured: Measured;
    if (opts.sendersInProcess) {
      const sender = batchSender(traffic, hub.url, auth);
      stats = sender.stats;
      await server?.start();
      measured = await measure(traffic, () =>
        runSenders(traffic, opts.concurrency, sender.send).finally(sender.close),
      );
    } else {
      const child = await startSenders({
        traffic: traffic.options,
        concurrency: opts.concurrency,
        url: hub.url,
        auth,
      });
      await server?.start();
      let report: Exclude<SenderReport, { error: string }> | undefined;
      measured = await measure(traffic, async () => {
        report = await child.go();
      });
      stats = report!;
      senderCpuSeconds = report!.cpuSeconds;
      senderPeakRssMb = report!.peakRssMb;
    }
    // Computed traits are folded in the background: the data is fully processed only once the
    // fold has caught up with the last event.
    const waitStarted = performance.now();
    while ((await foldLag(hub.context)) > 0) await new Promise((r) => setTimeout(r, 20));
    const foldedSeconds = measured.seconds + (performance.now() - waitStarted) / 1000;
    // Until the fold caught up: its work is part of what ingestion costs the server.
    const serverCpuSeconds = (await server?.stop()) ?? null;
    const stored = await countEvents(hub.context);
    if (stored !== traffic.events) {
      console.error(`warning: the hub stored ${stored} events of ${traffic.events} sent`);
    }
    console.error(`largest request body: ${(stats.largest / 1024).toFixed(0)} KiB`);
    return {
      ...measured,
      clientSeconds: stats.clientSeconds,
      senderCpuSeconds,
      senderPeakRssMb,
      serverCpuSeconds,
      stored,
      foldedSeconds,
      foldedEventsPerSecond: traffic.events / foldedSeconds,
    };
  } finally {
    await hub.close();
    if (!opts.keep) await place.drop();
    else {
      await place.keep();
      console.error(`kept: ${config.databaseUrl ?? config.dataDir}`);
    }
  }
}

/** The columns the hub fills in `events` (all but the serial id), with their types. */
const COLUMNS: [name: string, type: string][] = [
  ['profile_id', 'uuid'],
  ['source', 'text'],
  ['message_id', 'text'],
  ['type', 'text'],
  ['name', 'text'],
  ['properties', 'jsonb'],
  ['context', 'jsonb'],
  ['revenue', 'numeric'],
  ['timestamp', 'timestamptz'],
  ['original_timestamp', 'timestamptz'],
  ['sent_at', 'timestamptz'],
  ['received_at', 'timestamptz'],
  ['user_id', 'text'],
  ['anonymous_id', 'text'],
];

/** `insert into events (…) values ($1, …), (…)` for `n` rows: one statement per batch. */
function insertStatement(n: number): string {
  const names = COLUMNS.map(([name]) => `"${name}"`).join(', ');
  const values = Array.from(
    { length: n },
    (_, r) =>
      `(${COLUMNS.map(([, type], c) => `$${r * COLUMNS.length + c + 1}::${type}`).join(', ')})`,
  );
  return `insert into events (${names}) values ${values.join(', ')}`;
}

/** The parameters for the rows the hub stores for a batch, minus what only resolution decides. */
function rowParams(traffic: Traffic, i: number, sentAt: string): (string | null)[] {
  const receivedAt = new Date().toISOString();
  return traffic
    .batch(i)
    .flatMap((e) => [
      traffic.profileId(e.userId),
      'tracking',
      e.messageId,
      'track',
      e.event,
      JSON.stringify(e.properties),
      JSON.stringify(e.context),
      e.event === 'Order Completed' ? String(e.properties.revenue) : null,
      e.timestamp,
      e.timestamp,
      sentAt,
      receivedAt,
      e.userId,
      e.anonymousId,
    ]);
}

/**
 * Run a statement on the driver's own client, under drizzle: building a 7,000-parameter
 * insert through drizzle's query builder costs more CPU than the database spends on it.
 */
function rawQuery(
  database: Database,
): (text: string, params: (string | null)[]) => Promise<unknown> {
  const client = (database.db as unknown as { $client: unknown }).$client;
  if (database.driver === 'postgres') {
    const pg = client as postgres.Sql;
    return (text, params) => pg.unsafe(text, params, { prepare: true });
  }
  const lite = client as { query(text: string, params: unknown[]): Promise<unknown> };
  return (text, params) => lite.query(text, params);
}

async function benchBaseline(opts: Options, traffic: Traffic): Promise<PhaseResult> {
  const place = await scratch(opts.driver, opts.pgUrl, 'baseline');
  // The same migrations as the hub: an identical `events` table with identical indexes.
  const database = await openHubDatabase(place.config);
  const query = rawQuery(database);
  const statements = new Map<number, string>();
  const server = serverSampler(opts, place.config.databaseUrl);
  let clientMs = 0;
  try {
    // Open the pool's connections first, so the sampler sees them from the start.
    await Promise.all(Array.from({ length: opts.concurrency }, () => query('select 1', [])));
    await server?.start();
    const measured = await measure(traffic, () =>
      runSenders(traffic, opts.concurrency, async (i) => {
        const t0 = performance.now();
        const params = rowParams(traffic, i, new Date().toISOString());
        const n = params.length / COLUMNS.length;
        let text = statements.get(n);
        if (!text) statements.set(n, (text = insertStatement(n)));
        clientMs += performance.now() - t0;
        await query(text, params);
      }),
    );
    const serverCpuSeconds = (await server?.stop()) ?? null;
    return {
      ...measured,
      clientSeconds: clientMs / 1000,
      serverCpuSeconds,
      stored: await countEvents(database),
    };
  } finally {
    await database.close();
    await (opts.keep ? place.keep() : place.drop());
  }
}

const mb = (n: number) => Math.round(n);

const percent = (share: number) => `${Math.round(share * 100)}%`;

/** How busy the phase kept this process's event loop and the machine. */
const phaseLoad = (phase: Measured) =>
  `event loop busy ${percent(phase.eventLoopBusy)}, GC pauses ${phase.gcPauseSeconds.toFixed(1)} s` +
  (phase.idleShare === null ? '' : `; machine idle ${percent(phase.idleShare)}`);

const loadFigures = (phase: Measured) => ({
  eventLoopBusy: Number(phase.eventLoopBusy.toFixed(3)),
  gcPauseSeconds: Number(phase.gcPauseSeconds.toFixed(2)),
  idleShare: phase.idleShare === null ? null : Number(phase.idleShare.toFixed(3)),
});

/** A baseline phase's figures, as recorded. */
function baselineFigures(baseline: PhaseResult, opts: Options) {
  return {
    eventsPerSecond: Math.round(baseline.eventsPerSecond),
    seconds: Number(baseline.seconds.toFixed(2)),
    clientSeconds: Number(baseline.clientSeconds.toFixed(2)),
    cpuSeconds: Number(baseline.cpuSeconds.toFixed(2)),
    serverCpuSeconds: baseline.serverCpuSeconds && Number(baseline.serverCpuSeconds.toFixed(2)),
    serverCpuUsPerEvent:
      baseline.serverCpuSeconds && Math.round((baseline.serverCpuSeconds * 1e6) / opts.events),
    peakRssMb: mb(baseline.peakRssMb),
    ...loadFigures(baseline),
    stored: baseline.stored,
  };
}
type BaselineFigures = ReturnType<typeof baselineFigures>;

/** The baseline in a child process of this script (`--baseline-only`), with the same traffic. */
function baselineInChild(opts: Options): Promise<BaselineFigures> {
  const args = [
    '--baseline-only',
    ...['--events', String(opts.events), '--users', String(opts.users)],
    ...['--batch', String(opts.batch), '--concurrency', String(opts.concurrency)],
    ...['--run-id', opts.runId, '--now', String(opts.now), '--pg-url', opts.pgUrl],
    ...(opts.driver === 'postgres' ? ['--pg'] : []),
    ...(opts.keep ? ['--keep'] : []),
  ];
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), args, {
      execArgv: process.execArgv,
      stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    });
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`the baseline run ahead of the hub exited ${code}`));
      try {
        resolve(JSON.parse(out.trim().split('\n').at(-1)!) as BaselineFigures);
      } catch {
        reject(new Error('the baseline run ahead of the hub printed no figures'));
      }
    });
  });
}

async function main() {
  const opts = options();
  if (opts.help) {
    console.log(USAGE);
    return;
  }
  const loadAverageAtStart = loadAverage();
  const traffic = createTraffic({
    events: opts.events,
    users: opts.users,
    batchSize: opts.batch,
    runId: opts.runId,
    now: opts.now,
  });
  if (opts.baselineOnly) {
    console.log(JSON.stringify(baselineFigures(await benchBaseline(opts, traffic), opts)));
    return;
  }
  console.error(
    `ingest benchmark: ${opts.events} events, ${opts.users} users, batches of ${opts.batch}, ` +
      `${opts.concurrency} senders, ${opts.driver}`,
  );
  // The bare INSERT runs before the hub and after it, and the hub is measured against the mean
  // of the two: the machine's speed drifts over a run. The one before runs in a process of its
  // own, so that its memory is not counted in the hub's.
  const before = opts.skipBaseline ? null : await baselineInChild(opts);
  const hub = await benchHub(opts, traffic);
  console.error(
    `hub:      ${hub.eventsPerSecond.toFixed(0)} events/s (${hub.seconds.toFixed(1)} s); ` +
      `computed traits current after ${hub.foldedSeconds.toFixed(1)} s ` +
      `(${hub.foldedEventsPerSecond.toFixed(0)} events/s)`,
  );
  const perEvent = (seconds: number | null) =>
    seconds === null ? '–' : `${((seconds * 1e6) / opts.events).toFixed(0)} µs`;
  console.error(
    `          CPU per event: hub's process ${perEvent(hub.cpuSeconds)}, ` +
      `senders ${opts.sendersInProcess ? 'included' : perEvent(hub.senderCpuSeconds)}, ` +
      `server ${perEvent(hub.serverCpuSeconds)}`,
  );
  console.error(`          ${phaseLoad(hub)}`);
  const peakMemory = atPeak && {
    rss: mb(atPeak.rss / 2 ** 20),
    heapTotal: mb(atPeak.heapTotal / 2 ** 20),
    heapUsed: mb(atPeak.heapUsed / 2 ** 20),
    external: mb(atPeak.external / 2 ** 20),
    arrayBuffers: mb(atPeak.arrayBuffers / 2 ** 20),
  };
  if (peakMemory) {
    console.error(
      `          at peak RSS (MB): ${Object.entries(peakMemory)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
    );
  }
  const after = opts.skipBaseline ? null : await benchBaseline(opts, traffic);
  const baselines = before && after ? [before, baselineFigures(after, opts)] : [];
  for (const [when, b] of baselines.map((b, i) => [i === 0 ? 'before' : 'after', b] as const)) {
    console.error(
      `baseline ${when}: ${b.eventsPerSecond} events/s (${b.seconds.toFixed(1)} s); ` +
        `CPU per event: Node ${perEvent(b.cpuSeconds)}, server ${perEvent(b.serverCpuSeconds)}; ` +
        `event loop busy ${percent(b.eventLoopBusy)}, machine idle ` +
        `${b.idleShare === null ? '–' : percent(b.idleShare)}`,
    );
  }
  const baselineRate =
    baselines.length > 0
      ? baselines.reduce((sum, b) => sum + b.eventsPerSecond, 0) / baselines.length
      : null;
  const summary = {
    date: new Date().toISOString().slice(0, 10),
    commit: commit(),
    driver: opts.driver,
    events: opts.events,
    users: opts.users,
    batch: opts.batch,
    concurrency: opts.concurrency,
    senders: opts.sendersInProcess ? 'in-process' : 'child process',
    hub: {
      eventsPerSecond: Math.round(hub.eventsPerSecond),
      seconds: Number(hub.seconds.toFixed(2)),
      clientSeconds: Number(hub.clientSeconds.toFixed(2)),
      cpuSeconds: Number(hub.cpuSeconds.toFixed(2)),
      senderCpuSeconds: hub.senderCpuSeconds && Number(hub.senderCpuSeconds.toFixed(2)),
      senderPeakRssMb: hub.senderPeakRssMb && mb(hub.senderPeakRssMb),
      serverCpuSeconds: hub.serverCpuSeconds && Number(hub.serverCpuSeconds.toFixed(2)),
      nodeCpuUsPerEvent: Math.round((hub.cpuSeconds * 1e6) / opts.events),
      serverCpuUsPerEvent:
        hub.serverCpuSeconds && Math.round((hub.serverCpuSeconds * 1e6) / opts.events),
      peakRssMb: mb(hub.peakRssMb),
      peakMemoryMb: peakMemory,
      stored: hub.stored,
      ...loadFigures(hub),
      foldedSeconds: Number(hub.foldedSeconds.toFixed(2)),
      foldedEventsPerSecond: Math.round(hub.foldedEventsPerSecond),
    },
    baseline:
      baselineRate === null
        ? null
        : {
            eventsPerSecond: Math.round(baselineRate),
            before: baselines[0],
            after: baselines[1],
          },
    ratio: baselineRate !== null ? Number((hub.eventsPerSecond / baselineRate).toFixed(3)) : null,
    maxRssMb: mb(process.resourceUsage().maxRSS / 1024),
    loadAverageAtEnd: loadAverage(),
    machine: machine(loadAverageAtStart, await postgresVersion(opts.driver, opts.pgUrl)),
  };
  console.log(JSON.stringify(summary));
  const row = [
    summary.date,
    summary.driver === 'postgres'
      ? `PostgreSQL ${summary.machine.postgres?.split(' ')[0]}`
      : 'PGlite',
    summary.events.toLocaleString('en-US'),
    `${summary.batch} × ${summary.concurrency}`,
    summary.hub.eventsPerSecond.toLocaleString('en-US'),
    summary.baseline?.eventsPerSecond.toLocaleString('en-US') ?? '–',
    summary.ratio ?? '–',
    `${summary.hub.peakRssMb} MB`,
    summary.baseline ? `${summary.baseline.after!.peakRssMb} MB` : '–',
    `${summary.maxRssMb} MB`,
  ];
  console.log(`| ${row.join(' | ')} |`);
  saveResult('ingest', summary.driver, summary);
}

main().catch((error: unknown) => {
  console.error(`bench:ingest: ${error instanceof Error ? error.message : String(error)}`);
  if (process.env.LOG_LEVEL === 'debug' && error instanceof Error) console.error(error.stack);
  process.exitCode = 1;
});
