/**
 * Import benchmark: the full UCI Online Retail CSV (541,909 rows) through a CSV source into the
 * hub — profiles by CustomerID, an `Order Line` purchase event per row, rows without a customer
 * rejected — against the database's own `COPY` of the same file into a plain table, and (on
 * PostgreSQL) against the floor of any set-based path: `COPY` plus one insert into `events`.
 *
 *   npm run bench:import -- --pg      # PostgreSQL (the targets are for it)
 *   npm run bench:import              # embedded PGlite
 */
import { createReadStream, statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { createGunzip } from 'node:zlib';
import { PGlite } from '@electric-sql/pglite';
import { sql } from 'drizzle-orm';
import postgres from 'postgres';
import { rows } from '../../src/db/index.ts';
import { secretBox } from '../../src/destinations/secrets.ts';
import { createImportDeps } from '../../src/imports/deps.ts';
import { runImport } from '../../src/imports/run.ts';
import { createSource, setStreamMapping } from '../../src/imports/store.ts';
import { uuidv7 } from '../../src/ids.ts';
import { createLogger } from '../../src/log.ts';
import { foldAll } from '../../src/profiles/fold.ts';
import { openHubDatabase } from '../../src/server.ts';
import { datasetFile } from '../../test/support/online-retail.ts';
import {
  commit,
  DEFAULT_PG_URL,
  loadAverage,
  machine,
  postgresVersion,
  saveResult,
  scratch,
} from '../support.ts';

const FILE = datasetFile('online_retail/online_retail.csv.gz');

/** UCI Online Retail, mapped as docs/imports.md shows. */
export const ONLINE_RETAIL_MAPPING = {
  identities: { customer_id: 'CustomerID' },
  traits: { country: 'Country' },
  event: {
    name: 'Order Line',
    timestamp: { field: 'InvoiceDate', format: 'YYYY-MM-DD HH:mm:ss', timezone: 'Europe/London' },
    properties: {
      invoice: 'InvoiceNo',
      sku: 'StockCode',
      description: 'Description',
      quantity: { field: 'Quantity', type: 'integer' },
      unit_price: { field: 'UnitPrice', type: 'number' },
    },
    revenue: { multiply: ['Quantity', 'UnitPrice'] },
  },
};

function options() {
  const { values } = parseArgs({
    options: {
      pg: { type: 'boolean', default: process.env.BENCH_DRIVER === 'postgres' },
      'pg-url': { type: 'string', default: DEFAULT_PG_URL },
      'skip-baseline': { type: 'boolean', default: false },
    },
  });
  return {
    driver: values.pg ? ('postgres' as const) : ('pglite' as const),
    pgUrl: values['pg-url'],
    skipBaseline: values['skip-baseline'],
  };
}

/** Peak RSS while `work` runs, sampled every 100 ms. */
async function measured<T>(work: () => Promise<T>) {
  let peak = process.memoryUsage().rss;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 100);
  const cpu = process.cpuUsage();
  const started = performance.now();
  try {
    const result = await work();
    const used = process.cpuUsage(cpu);
    return {
      result,
      seconds: (performance.now() - started) / 1000,
      cpuSeconds: (used.user + used.system) / 1e6,
      peakRssMb: Math.round(Math.max(peak, process.memoryUsage().rss) / 2 ** 20),
    };
  } finally {
    clearInterval(timer);
  }
}

const PLAIN_TABLE = `create table online_retail (
  invoice_no text, stock_code text, description text, quantity integer,
  invoice_date timestamp, unit_price numeric, customer_id integer, country text)`;

/** The database's own COPY of the same file into a plain table. */
async function copyBaseline(driver: 'pglite' | 'postgres', pgUrl: string) {
  if (driver === 'pglite') {
    const pg = new PGlite();
    await pg.exec(PLAIN_TABLE);
    const chunks: Buffer[] = [];
    for await (const chunk of createReadStream(FILE).pipe(createGunzip())) chunks.push(chunk);
    const blob = new Blob(chunks);
    const run = await measured(() =>
      pg.query(`copy online_retail from '/dev/blob' with (format csv, header true)`, [], { blob }),
    );
    await pg.close();
    return run;
  }
  const admin = postgres(pgUrl, { max: 1, onnotice: () => {} });
  const name = `ah_bench_copy_${randomBytes(4).toString('hex')}`;
  await admin.unsafe(`create database ${name}`);
  const url = new URL(pgUrl);
  url.pathname = `/${name}`;
  const client = postgres(url.toString(), { max: 1, onnotice: () => {} });
  try {
    await client.unsafe(PLAIN_TABLE);
    return await measured(async () => {
      const writable =
        await client`copy online_retail from stdin with (format csv, header true)`.writable();
      await pipeline(createReadStream(FILE), createGunzip(), writable);
    });
  } finally {
    await client.end();
    await admin.unsafe(`drop database if exists ${name} with (force)`);
    await admin.end();
  }
}

/**
 * The least any import path could spend on PostgreSQL writing these rows into the hub's own
 * `events` table, with its indexes: `COPY` of the raw file into a staging table, then one
 * `INSERT … SELECT` of the rows with a customer, shaped as the mapping shapes them. It leaves out
 * everything an import must also do (identities, profiles, rejects, duplicates, computed traits)
 * and makes each profile id from the customer id, so it is a floor, not a path. The same insert
 * into a copy of `events` without its indexes shows what the indexes alone cost.
 */
async function setBasedFloor(pgUrl: string) {
  const place = await scratch('postgres', pgUrl, 'floor');
  const database = await openHubDatabase(place.config);
  await database.close();
  const client = postgres(place.config.databaseUrl!, { max: 1, onnotice: () => {} });
  try {
    await client.unsafe(`create unlogged table staging (
      invoice_no text, stock_code text, description text, quantity text, invoice_date text,
      unit_price text, customer_id text, country text)`);
    const copy = await measured(async () => {
      const writable =
        await client`copy staging from stdin with (format csv, header true)`.writable();
      await pipeline(createReadStream(FILE), createGunzip(), writable);
    });
    const insertInto = (table: string, onConflict: string) =>
      measured(() =>
        client.unsafe(`
          insert into ${table} (profile_id, source, message_id, type, name, properties, revenue,
            "timestamp", received_at, user_id)
          select md5(customer_id)::uuid, 'floor',
            md5(concat_ws(',', invoice_no, stock_code, description, quantity, invoice_date,
              unit_price, customer_id, country)),
            'track', 'Order Line',
            jsonb_build_object('invoice', invoice_no, 'sku', stock_code, 'description', description,
              'quantity', quantity::integer, 'unit_price', unit_price::numeric),
            quantity::numeric * unit_price::numeric,
            invoice_date::timestamp at time zone 'Europe/London', now(), customer_id
          from staging where customer_id <> ''
          ${onConflict}`),
      );
    const insert = await insertInto('events', 'on conflict (source, message_id) do nothing');
    await client.unsafe(`create table events_without_indexes (like events including defaults)`);
    const bare = await insertInto('events_without_indexes', '');
    return {
      copySeconds: copy.seconds,
      insertSeconds: insert.seconds,
      withoutIndexesSeconds: bare.seconds,
      rows: insert.result.count,
    };
  } finally {
    await client.end();
    await place.drop();
  }
}

async function main() {
  const opts = options();
  const loadAtStart = loadAverage();
  const log = (text: string) =>
    console.error(`[${new Date().toISOString().slice(11, 19)}] ${text}`);
  const place = await scratch(opts.driver, opts.pgUrl, 'import');
  const database = await openHubDatabase(place.config);
  try {
    const { db } = database;
    const logger = createLogger('warn');
    const deps = await createImportDeps(place.config, logger, secretBox(randomBytes(32)));
    const admin = { tokenId: uuidv7(), name: 'bench', role: 'admin' as const };
    const source = await createSource(db, deps, admin, {
      name: 'Online Retail',
      connector: 'csv',
      config: { path: FILE },
      // A quarter of the rows have no CustomerID (39% of those read by line 68,000): rejected.
      maxRejectShare: 0.4,
    });
    await setStreamMapping(db, deps, admin, source.id, 'online_retail', {
      mapping: ONLINE_RETAIL_MAPPING,
    });
    log(`importing ${FILE} (${(statSync(FILE).size / 2 ** 20).toFixed(1)} MB gzip)`);
    const hub = await measured(() =>
      runImport(db, deps, place.config, source.id, 'online_retail', 'manual'),
    );
    const run = hub.result;
    if (run.status !== 'succeeded') throw new Error(`import failed: ${run.error}`);
    const rate = run.rowsRead / hub.seconds;
    log(
      `  ${run.rowsRead} rows in ${hub.seconds.toFixed(1)} s: ${Math.round(rate)} rows/s ` +
        `(imported ${run.rowsImported}, duplicates ${run.rowsDuplicate}, rejected ${run.rowsRejected}), peak RSS ${hub.peakRssMb} MB`,
    );
    const fold = await measured(() => foldAll(db));
    const [counts] = await rows<{ profiles: number; events: number }>(
      db,
      sql`select (select count(*)::int from profiles where merged_into is null) as profiles,
                 (select count(*)::int from events) as events`,
    );
    log(
      `  computed traits folded in ${fold.seconds.toFixed(1)} s; ${counts!.profiles} profiles, ${counts!.events} events`,
    );

    let baseline = null;
    if (!opts.skipBaseline) {
      const copy = await copyBaseline(opts.driver, opts.pgUrl);
      baseline = {
        seconds: Number(copy.seconds.toFixed(2)),
        rowsPerSecond: Math.round(541_909 / copy.seconds),
      };
      log(`  COPY baseline: ${copy.seconds.toFixed(2)} s, ${baseline.rowsPerSecond} rows/s`);
    }
    let floor = null;
    if (!opts.skipBaseline && opts.driver === 'postgres') {
      const measuredFloor = await setBasedFloor(opts.pgUrl);
      const seconds = measuredFloor.copySeconds + measuredFloor.insertSeconds;
      floor = {
        copySeconds: Number(measuredFloor.copySeconds.toFixed(2)),
        insertSeconds: Number(measuredFloor.insertSeconds.toFixed(2)),
        insertWithoutIndexesSeconds: Number(measuredFloor.withoutIndexesSeconds.toFixed(2)),
        eventsInserted: measuredFloor.rows,
        rowsPerSecond: Math.round(541_909 / seconds),
        ofBaseline: baseline
          ? Number((541_909 / seconds / baseline.rowsPerSecond).toFixed(3))
          : null,
      };
      log(
        `  set-based floor: COPY ${floor.copySeconds} s + insert of ${floor.eventsInserted} events ` +
          `${floor.insertSeconds} s: ${floor.rowsPerSecond} rows/s (${floor.ofBaseline} of COPY); ` +
          `the same insert without the indexes of events ${floor.insertWithoutIndexesSeconds} s`,
      );
    }
    const summary = {
      date: new Date().toISOString().slice(0, 10),
      commit: commit(),
      driver: opts.driver,
      file: 'online_retail/online_retail.csv.gz',
      rowsRead: run.rowsRead,
      rowsImported: run.rowsImported,
      rowsDuplicate: run.rowsDuplicate,
      rowsRejected: run.rowsRejected,
      seconds: Number(hub.seconds.toFixed(1)),
      rowsPerSecond: Math.round(rate),
      cpuSeconds: Number(hub.cpuSeconds.toFixed(1)),
      peakRssMb: hub.peakRssMb,
      foldSeconds: Number(fold.seconds.toFixed(1)),
      profiles: counts!.profiles,
      events: counts!.events,
      baseline,
      floor,
      ofBaseline: baseline ? Number((rate / baseline.rowsPerSecond).toFixed(3)) : null,
      machine: machine(loadAtStart, await postgresVersion(opts.driver, opts.pgUrl)),
      loadAverageAtEnd: loadAverage(),
    };
    console.log(JSON.stringify(summary));
    saveResult('import', opts.driver, summary);
  } finally {
    await database.close();
    await place.drop();
  }
}

await main();
