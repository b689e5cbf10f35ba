import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { testConfig } from '../../src/config.ts';
import { rows, type Database, type Db } from '../../src/db/index.ts';
import { listRejects } from '../../src/imports/rejects.ts';
import { getImportRun, listImportRuns, runImport } from '../../src/imports/run.ts';
import { createSource, setStreamMapping } from '../../src/imports/store.ts';
import type { StreamMappingInput } from '../../src/imports/mapping.ts';
import { testDatabase } from '../support/db.ts';
import { admin, importDeps, tableSource } from './support.ts';

let database: Database;
let db: Db;
const config = testConfig();
const tables = tableSource();
const logs: string[] = [];
const deps = importDeps([tables.connector], logs);

beforeAll(async () => {
  database = await testDatabase();
  db = database.db;
});
afterAll(async () => {
  await database?.close();
});

let counter = 0;
/** A source over a fresh table, with the table's mapping set. */
async function sourceWith(
  rowsOf: Record<string, unknown>[],
  mapping: StreamMappingInput,
  options: { maxRejectShare?: number; checkpointEvery?: number; primaryKey?: string[] } = {},
) {
  const stream = `t${++counter}`;
  tables.tables.set(stream, { rows: rowsOf, primaryKey: options.primaryKey });
  const source = await createSource(db, deps, admin, {
    name: `source ${counter}`,
    connector: 'tables',
    config: { database: 'db', token: 'good', checkpointEvery: options.checkpointEvery ?? 3 },
    maxRejectShare: options.maxRejectShare,
  });
  await setStreamMapping(db, deps, admin, source.id, stream, { mapping });
  return { source, stream };
}

const customers: StreamMappingInput = {
  identities: { email: 'email', customer_id: 'id' },
  traits: { name: 'name' },
  event: {
    name: 'Order Completed',
    timestamp: 'at',
    properties: ['sku'],
    revenue: { multiply: ['qty', 'price'] },
  },
};
const order = (i: number, extra: Record<string, unknown> = {}) => ({
  id: String(1000 + (i % 7)),
  email: `Person${i % 7}@Example.com`,
  name: `Person ${i % 7}`,
  at: `2024-01-${String((i % 28) + 1).padStart(2, '0')}T10:00:00Z`,
  sku: `sku-${i}`,
  qty: '2',
  price: '1.25',
  ...extra,
});

const eventsOf = (source: string) =>
  rows<{ message_id: string; name: string; revenue: string }>(
    db,
    sql`select message_id, name, revenue from events where source = ${source} and type = 'track'
        order by message_id`,
  );

describe('an import run', () => {
  it('maps rows to profiles, traits and events, and records the run', async () => {
    const { source, stream } = await sourceWith(
      Array.from({ length: 20 }, (_, i) => order(i)),
      customers,
    );
    const run = await runImport(db, deps, config, source.id, stream, 'manual', { batchSize: 8 });
    expect(run).toMatchObject({
      status: 'succeeded',
      rowsRead: 20,
      rowsImported: 20,
      rowsDuplicate: 0,
      rowsRejected: 0,
      error: null,
    });
    expect(run.durationMs).toBeGreaterThanOrEqual(0);
    const events = await eventsOf(source.name);
    expect(events).toHaveLength(20);
    expect(events.every((e) => Number(e.revenue) === 2.5)).toBe(true);
    const profiles = await rows<{ traits: Record<string, unknown> }>(
      db,
      sql`select p.traits from profiles p join identities i on i.profile_id = p.id
          where i.type = 'email' and i.value = 'person3@example.com'`,
    );
    expect(profiles).toEqual([{ traits: { name: 'Person 3' } }]);
    const history = await listImportRuns(db, source.id, { limit: 10 });
    expect(history.data.map((r) => r.id)).toEqual([run.id]);
  });

  it('reads only what follows the stored cursor, so a second run imports only new rows', async () => {
    const data = Array.from({ length: 10 }, (_, i) => order(i));
    const { source, stream } = await sourceWith(data, customers);
    await runImport(db, deps, config, source.id, stream, 'manual');
    data.push(order(10), order(11));
    const second = await runImport(db, deps, config, source.id, stream, 'schedule');
    expect(second).toMatchObject({ status: 'succeeded', rowsRead: 2, rowsImported: 2 });
    expect(tables.behaviour.reads.at(-1)).toBe(10);
    expect(await eventsOf(source.name)).toHaveLength(12);
  });

  it('keeps rows that fail the mapping as rejects with the reason naming the field', async () => {
    const data = Array.from({ length: 30 }, (_, i) => order(i));
    data[4] = order(4, { email: '', id: '' });
    data[9] = order(9, { at: 'yesterday' });
    data[17] = order(17, { qty: 'two' });
    const { source, stream } = await sourceWith(data, customers);
    const run = await runImport(db, deps, config, source.id, stream, 'manual');
    expect(run).toMatchObject({
      status: 'succeeded',
      rowsRead: 30,
      rowsImported: 27,
      rowsRejected: 3,
    });
    const { data: rejects } = await listRejects(db, source.id, { limit: 10, runId: run.id });
    expect(rejects.map((r) => [r.recordKey, r.field, r.reason])).toEqual([
      ['line-5', 'email', 'no identity: email is empty; id is empty'],
      ['line-10', 'at', 'at: "yesterday" is not a date (ISO 8601 expected)'],
      ['line-18', 'qty', 'qty: "two" is not a number'],
    ]);
    expect(rejects[1]!.row).toEqual(data[9]);
    expect(await eventsOf(source.name)).toHaveLength(27);
  });

  it('drops exact duplicate rows and stores nothing twice when a stream is read again', async () => {
    const data = Array.from({ length: 12 }, (_, i) => order(i));
    data.push({ ...data[2]! }, { ...data[5]! }, { ...data[5]! });
    const { source, stream } = await sourceWith(data, customers);
    const run = await runImport(db, deps, config, source.id, stream, 'manual', { batchSize: 4 });
    expect(run).toMatchObject({ rowsRead: 15, rowsImported: 12, rowsDuplicate: 3 });
    // From the start again: every row is already stored.
    await setStreamMapping(db, deps, admin, source.id, stream, {
      mapping: customers,
      resetCursor: true,
    });
    const again = await runImport(db, deps, config, source.id, stream, 'manual');
    expect(again).toMatchObject({ rowsRead: 15, rowsImported: 0, rowsDuplicate: 15 });
    expect(await eventsOf(source.name)).toHaveLength(12);
  });

  it('fails when the run has too many rejects, writing nothing of the batch that crossed the limit', async () => {
    const data = Array.from({ length: 400 }, (_, i) =>
      order(i, i >= 200 && i % 3 === 0 ? { qty: 'n/a' } : {}),
    );
    const { source, stream } = await sourceWith(data, customers, { checkpointEvery: 50 });
    const run = await runImport(db, deps, config, source.id, stream, 'manual', { batchSize: 100 });
    expect(run.status).toBe('failed');
    expect(run.error).toMatch(
      /^33 of 300 rows read \(11%\) were rejected, over this source's limit of 10%; nothing of the last batch was imported\. Commonest reasons: qty: … is not a number \(33\)$/,
    );
    // The two good batches are in; nothing of the third is.
    expect(await eventsOf(source.name)).toHaveLength(200);
    expect(run.rowsImported).toBe(200);
    const [cursor] = await rows<{ cursor: number }>(
      db,
      sql`select cursor from import_streams where source_id = ${source.id}`,
    );
    expect(cursor!.cursor).toBe(200);
    // Its rejects are kept, to read why.
    const { data: rejects } = await listRejects(db, source.id, { limit: 100, runId: run.id });
    expect(rejects).toHaveLength(33);
  });

  it('judges the share over the run so far, from the minimum sample on, with a per-source limit', async () => {
    // The first batch of 50 is below the minimum sample, so the run is judged from its second:
    // 6 rejects in its first 100 rows are over a 5% limit, and under a 10% one.
    const data = Array.from({ length: 150 }, (_, i) =>
      order(i, i >= 60 && i < 66 ? { id: '', email: '' } : {}),
    );
    const strict = await sourceWith(data, customers, { maxRejectShare: 0.05, checkpointEvery: 10 });
    const run = await runImport(db, deps, config, strict.source.id, strict.stream, 'manual', {
      batchSize: 50,
    });
    expect(run.status).toBe('failed');
    expect(run.error).toMatch(
      /^6 of 100 rows read \(6%\) were rejected, over this source's limit of 5%; nothing of the last batch was imported/,
    );
    expect(await eventsOf(strict.source.name)).toHaveLength(50);
    const lenient = await sourceWith(data, customers, { maxRejectShare: 0.1 });
    const ok = await runImport(db, deps, config, lenient.source.id, lenient.stream, 'manual', {
      batchSize: 50,
    });
    expect(ok).toMatchObject({ status: 'succeeded', rowsImported: 144, rowsRejected: 6 });
  });

  it('resumes a stopped run from the last stored checkpoint with no duplicate or missing row', async () => {
    const data = Array.from({ length: 47 }, (_, i) => order(i, { sku: `resume-${i}` }));
    const { source, stream } = await sourceWith(data, customers, { checkpointEvery: 4 });
    const controller = new AbortController();
    tables.behaviour.beforeRecord = (offset) => {
      if (offset === 29) controller.abort();
    };
    const stopped = await runImport(db, deps, config, source.id, stream, 'manual', {
      batchSize: 10,
      signal: controller.signal,
    });
    tables.behaviour.beforeRecord = null;
    expect(stopped.status).toBe('failed');
    expect(stopped.error).toBe('stopped before the end of the stream');
    // Batches of 10 were written up to row 20; the checkpoint at 20 is stored.
    const stored = await eventsOf(source.name);
    expect(stored.length).toBeGreaterThan(0);
    expect(stored.length).toBeLessThan(47);

    const resumed = await runImport(db, deps, config, source.id, stream, 'manual');
    expect(resumed.status).toBe('succeeded');
    const startedFrom = tables.behaviour.reads.at(-1) as number;
    expect(startedFrom).toBeGreaterThan(0);
    expect(resumed.rowsRead).toBe(47 - startedFrom);
    const events = await rows<{ sku: string; n: number }>(
      db,
      sql`select properties->>'sku' as sku, count(*)::int as n from events
          where source = ${source.name} and type = 'track' group by 1`,
    );
    expect(events).toHaveLength(47);
    expect(events.every((e) => e.n === 1)).toBe(true);
    expect(new Set(events.map((e) => e.sku))).toEqual(new Set(data.map((d) => d.sku)));
  });

  it('allows one run of a stream at a time', async () => {
    const { source, stream } = await sourceWith(
      Array.from({ length: 5 }, (_, i) => order(i)),
      customers,
    );
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let waiting!: () => void;
    const reached = new Promise<void>((resolve) => (waiting = resolve));
    tables.behaviour.beforeRecord = async (offset) => {
      if (offset === 2) {
        waiting();
        await gate;
      }
    };
    const first = runImport(db, deps, config, source.id, stream, 'manual');
    await reached;
    const refused = await runImport(db, deps, config, source.id, stream, 'manual').catch(
      (e: unknown) => e,
    );
    expect(refused).toMatchObject({ status: 409, code: 'import-running' });
    release();
    tables.behaviour.beforeRecord = null;
    expect((await first).status).toBe('succeeded');
    expect((await listImportRuns(db, source.id, { limit: 10 })).data).toHaveLength(1);
  });

  it('marks a run whose process died as interrupted when the next run takes over', async () => {
    const { source, stream } = await sourceWith([order(1)], customers);
    // A run that held the stream and whose lease ran out: its process is gone.
    const [dead] = await rows<{ id: number }>(
      db,
      sql`insert into import_runs (source_id, stream, trigger, status)
          values (${source.id}, ${stream}, 'manual', 'running') returning id`,
    );
    await db.execute(
      sql`update import_streams set lease_run_id = ${dead!.id}, lease_until = now() - interval '1 second'
          where source_id = ${source.id}`,
    );
    const run = await runImport(db, deps, config, source.id, stream, 'manual');
    expect(run.status).toBe('succeeded');
    expect(await getImportRun(db, Number(dead!.id))).toMatchObject({
      status: 'failed',
      error: 'interrupted: the process stopped before the run finished',
    });
  });

  it('records a failed run, and throws a transient failure only when asked (for the job queue)', async () => {
    const { source, stream } = await sourceWith([order(1)], customers);
    tables.behaviour.failRead = 'the service is down';
    tables.behaviour.transient = true;
    try {
      const failed = await runImport(db, deps, config, source.id, stream, 'manual');
      expect(failed).toMatchObject({ status: 'failed', error: 'the service is down' });
      await expect(
        runImport(db, deps, config, source.id, stream, 'schedule', { throwTransient: true }),
      ).rejects.toMatchObject({ name: 'TransientError', message: 'the service is down' });
    } finally {
      tables.behaviour.failRead = null;
      tables.behaviour.transient = false;
    }
    const runs = await listImportRuns(db, source.id, { limit: 5 });
    expect(runs.data.map((r) => r.status)).toEqual(['failed', 'failed']);
    // The stream is free again.
    expect((await runImport(db, deps, config, source.id, stream, 'manual')).status).toBe(
      'succeeded',
    );
  });
});
