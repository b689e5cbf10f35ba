import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { testConfig, type HubConfig } from '../../src/config.ts';
import { rows, type Database, type Db } from '../../src/db/index.ts';
import { alertOverdueSources, type ImportAlert } from '../../src/imports/alerts.ts';
import { listImportRuns, runImport } from '../../src/imports/run.ts';
import { createSource, setStreamMapping } from '../../src/imports/store.ts';
import type { SegmentJobs } from '../../src/jobs/index.ts';
import { queueDueImports, startWorker, type Worker } from '../../src/jobs/worker.ts';
import { databaseUrlOf, testDatabase } from '../support/db.ts';
import { until } from '../support/wait.ts';
import { admin, importDeps, tableSource } from './support.ts';

let database: Database;
let db: Db;
let config: HubConfig;
let worker: Worker;
let hook: Server;
let hookUrl: string;
/** Every alert the webhook received, in order. */
const received: ImportAlert[] = [];
const tables = tableSource();
const logs: string[] = [];
const deps = importDeps([tables.connector], logs);
const mapping = { identities: { email: 'email' }, traits: { name: 'name' } };

beforeAll(async () => {
  database = await testDatabase();
  db = database.db;
  config = testConfig({ foldIntervalMs: 50, databaseUrl: await databaseUrlOf(db) });
  hook = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      received.push(JSON.parse(body) as ImportAlert);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve));
  hookUrl = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/alerts?token=s3cret-hook`;
  worker = await startWorker(database, config, deps.log, { imports: deps, refresh: false });
});
afterAll(async () => {
  await worker?.stop();
  await new Promise((resolve) => hook?.close(resolve));
  await database?.close();
});

let counter = 0;
async function source(options: { schedule?: string; expectedIntervalMinutes?: number } = {}) {
  const n = ++counter;
  tables.tables.set(`people${n}`, {
    rows: [
      { email: `a${n}@example.com`, name: 'A' },
      { email: `b${n}@example.com`, name: 'B' },
    ],
  });
  tables.tables.set(`other${n}`, { rows: [{ email: `c${n}@example.com`, name: 'C' }] });
  const created = await createSource(db, deps, admin, {
    name: `jobs ${n}`,
    connector: 'tables',
    config: { database: 'x', token: 'good' },
    alertWebhookUrl: hookUrl,
    ...options,
  });
  await setStreamMapping(db, deps, admin, created.id, `people${n}`, { mapping });
  await setStreamMapping(db, deps, admin, created.id, `other${n}`, { mapping, enabled: false });
  return { ...created, stream: `people${n}`, other: `other${n}` };
}

describe('import jobs', () => {
  it('run a requested import on the worker', async () => {
    const s = await source();
    await worker.jobs.requestImportRun!(s.id, s.stream, 'manual');
    const runs = await until(
      () => listImportRuns(db, s.id, { limit: 5 }),
      (page) => page.data[0]?.status === 'succeeded',
    );
    expect(runs.data).toEqual([
      expect.objectContaining({ stream: s.stream, trigger: 'manual', rowsImported: 2 }),
    ]);
  });

  it('queue each enabled stream of a source whose schedule fell due, once', async () => {
    const s = await source({ schedule: '*/5 * * * *' });
    const queued: string[] = [];
    const jobs: SegmentJobs = {
      requestComputation: async () => null,
      requestImportRun: async (sourceId, stream, trigger) => {
        queued.push(`${sourceId}/${stream}/${trigger}`);
      },
    };
    await db.execute(
      sql`update sources set next_run_at = now() - interval '1 minute' where id = ${s.id}`,
    );
    expect(await queueDueImports(db, jobs)).toBe(1);
    expect(queued).toEqual([`${s.id}/${s.stream}/schedule`]);
    const [next] = await rows<{ due: boolean }>(
      db,
      sql`select next_run_at > now() as due from sources where id = ${s.id}`,
    );
    expect(next!.due).toBe(true);
    expect(await queueDueImports(db, jobs)).toBe(0);
  });
});

describe('import alerts', () => {
  it('POST a failed run to the webhook once per episode, and log it', async () => {
    const s = await source();
    const alerts = () => received.filter((a) => a.source.id === s.id);
    const failing = async () => {
      tables.behaviour.failRead = 'the table is locked';
      try {
        return await runImport(db, deps, config, s.id, s.stream, 'manual');
      } finally {
        tables.behaviour.failRead = null;
      }
    };
    const first = await failing();
    expect(first).toMatchObject({ status: 'failed', error: 'the table is locked' });
    await failing();
    await until(
      async () => alerts().length,
      (n) => n >= 1,
    );
    expect(alerts()).toEqual([
      expect.objectContaining({
        type: 'import.failed',
        source: { id: s.id, name: s.name },
        stream: s.stream,
        runId: first.id,
        error: 'the table is locked',
      }),
    ]);
    expect(logs.join('\n')).toContain(`alert: import of ${s.name}/${s.stream} failed`);
    expect(logs.join('\n')).not.toContain('s3cret-hook');

    // A success ends the episode; the next failure alerts again.
    expect((await runImport(db, deps, config, s.id, s.stream, 'manual')).status).toBe('succeeded');
    await failing();
    expect(alerts().map((a) => a.type)).toEqual(['import.failed', 'import.failed']);
  });

  it('POST a source overdue for its expected interval once, until it succeeds again', async () => {
    const s = await source({ expectedIntervalMinutes: 60 });
    const alerts = () => received.filter((a) => a.source.id === s.id);
    const inTwoHours = new Date(Date.now() + 2 * 3_600_000);
    expect(await alertOverdueSources(db, deps, new Date())).toBe(0);
    expect(await alertOverdueSources(db, deps, inTwoHours)).toBeGreaterThanOrEqual(1);
    expect(await alertOverdueSources(db, deps, inTwoHours)).toBe(0);
    expect(alerts()).toEqual([
      expect.objectContaining({
        type: 'source.overdue',
        source: { id: s.id, name: s.name },
        lastSuccessAt: null,
        expectedIntervalMinutes: 60,
      }),
    ]);
    await runImport(db, deps, config, s.id, s.stream, 'manual');
    const inFourHours = new Date(Date.now() + 4 * 3_600_000);
    await alertOverdueSources(db, deps, inFourHours);
    expect(alerts().map((a) => a.type)).toEqual(['source.overdue', 'source.overdue']);
    expect(alerts()[1]!.lastSuccessAt).toEqual(expect.any(String));
  });
});
