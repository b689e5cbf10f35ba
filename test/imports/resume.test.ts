import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { testConfig } from '../../src/config.ts';
import { rows, type Database, type Db } from '../../src/db/index.ts';
import { getImportRun, listImportRuns, runImport } from '../../src/imports/run.ts';
import { createSource, setStreamMapping } from '../../src/imports/store.ts';
import { driver, testDatabase } from '../support/db.ts';
import { admin, countingSource, importDeps } from './support.ts';

let database: Database;
let db: Db;
const config = testConfig();
const deps = importDeps([countingSource]);
const ROWS = 3000;

beforeAll(async () => {
  database = await testDatabase();
  db = database.db;
});
afterAll(async () => {
  await database?.close();
});

const mapping = {
  identities: { email: 'email' },
  event: { name: 'Counted', timestamp: 'at', properties: ['n'] },
};

async function countingImport(name: string, pauseMs: number) {
  const source = await createSource(db, deps, admin, {
    name,
    connector: 'counting',
    // Checkpoints every 70 rows, batches of 200: a batch is written past its last checkpoint,
    // so a resumed run re-reads rows that are already stored.
    config: { rows: ROWS, checkpointEvery: 70, pauseMs },
  });
  await setStreamMapping(db, deps, admin, source.id, 'numbers', { mapping });
  return source;
}

/** Every n stored for the source, with how many events each has. */
const stored = (source: string) =>
  rows<{ n: number; copies: number }>(
    db,
    sql`select (properties->>'n')::int as n, count(*)::int as copies from events
        where source = ${source} and type = 'track' group by 1 order by 1`,
  );

async function expectEveryRowOnce(source: string) {
  const found = await stored(source);
  expect(found).toHaveLength(ROWS);
  expect(found.filter((r) => r.copies !== 1)).toEqual([]);
  expect(found.map((r) => r.n)).toEqual(Array.from({ length: ROWS }, (_, i) => i));
}

async function waitFor(check: () => Promise<boolean>, ms = 30_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The lease of a run whose process is gone runs out; a test does not wait two minutes for it. */
const expireLease = (sourceId: string) =>
  db.execute(
    sql`update import_streams set lease_until = now() - interval '1 second'
        where source_id = ${sourceId} and lease_run_id is not null`,
  );

describe(`resuming an import (${driver})`, () => {
  it('after a stop mid-run: no duplicate or missing row', async () => {
    const source = await countingImport('stopped', 10);
    const controller = new AbortController();
    const stopping = runImport(db, deps, config, source.id, 'numbers', 'manual', {
      batchSize: 200,
      signal: controller.signal,
    });
    await waitFor(async () => ((await stored(source.name)).length ?? 0) >= 600);
    controller.abort();
    const stopped = await stopping;
    expect(stopped.status).toBe('failed');
    expect(stopped.rowsImported).toBeLessThan(ROWS);

    const resumed = await runImport(db, deps, config, source.id, 'numbers', 'manual', {
      batchSize: 200,
    });
    expect(resumed.status).toBe('succeeded');
    expect(stopped.rowsImported + resumed.rowsImported).toBe(ROWS);
    // It started from a stored checkpoint, not from the beginning.
    expect(resumed.rowsRead).toBeLessThan(ROWS);
    await expectEveryRowOnce(source.name);
  });

  // A real crash needs a second process on the same database, which only PostgreSQL allows
  // (PGlite is one connection inside this process); there the stop above stands in for it.
  const onPostgres = driver === 'postgres' ? it : () => {};
  onPostgres('after the importing process is killed: no duplicate or missing row', async () => {
    const source = await countingImport('killed', 15);
    const [row] = await rows<{ db: string }>(db, sql`select current_database() as db`);
    const url = new URL(process.env.DATABASE_URL!);
    url.pathname = `/${row!.db}`;
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'test/imports/run-import.ts',
        url.toString(),
        source.id,
        'numbers',
        deps.key.toString('base64'),
        '200',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    await waitFor(async () => {
      const [run] = (await listImportRuns(db, source.id, { limit: 1 })).data;
      if (child.exitCode !== null) throw new Error(`the import ended first: ${stderr}`);
      return (run?.rowsImported ?? 0) >= 800;
    });
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    expect(child.signalCode).toBe('SIGKILL');
    const [killed] = (await listImportRuns(db, source.id, { limit: 1 })).data;
    expect(killed!.status).toBe('running');
    expect((await stored(source.name)).length).toBeLessThan(ROWS);

    await expireLease(source.id);
    const resumed = await runImport(db, deps, config, source.id, 'numbers', 'manual', {
      batchSize: 200,
    });
    expect(resumed.status).toBe('succeeded');
    expect(resumed.rowsRead).toBeLessThan(ROWS);
    await expectEveryRowOnce(source.name);
    expect(await getImportRun(db, killed!.id)).toMatchObject({
      status: 'failed',
      error: 'interrupted: the process stopped before the run finished',
    });
  });
});
