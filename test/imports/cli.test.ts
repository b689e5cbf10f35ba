import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { testConfig, type HubConfig } from '../../src/config.ts';
import { rows, type Database } from '../../src/db/index.ts';
import { createImportDeps } from '../../src/imports/deps.ts';
import { createSource, setStreamMapping } from '../../src/imports/store.ts';
import { silentLogger } from '../../src/log.ts';
import { openHubDatabase } from '../../src/server.ts';
import { runCli, type Env } from '../cli/cli.ts';
import { driver, testDatabase } from '../support/db.ts';
import { admin } from './support.ts';

// The command runs the real CSV connector, as an operator would, on the hub's own database.
const dir = mkdtempSync(join(tmpdir(), 'ah-import-cli-'));
let env: Env;
let config: HubConfig;
let postgresDb: Database | undefined;

beforeAll(async () => {
  writeFileSync(
    join(dir, 'people.csv'),
    'email,name,joined\nada@example.com,Ada,2020-01-01\ngrace@example.com,Grace,2020-02-01\n',
  );
  writeFileSync(
    join(dir, 'broken.csv'),
    'email,name,joined\n,Nobody,2020-01-01\nalan@example.com,Alan,someday\n',
  );
  if (driver === 'postgres') {
    postgresDb = await testDatabase();
    const [row] = await rows<{ db: string }>(postgresDb.db, sql`select current_database() as db`);
    const url = new URL(process.env.DATABASE_URL!);
    url.pathname = `/${row!.db}`;
    config = testConfig({ dataDir: join(dir, 'data'), databaseUrl: url.toString() });
    env = { DATABASE_URL: url.toString(), AUDIENCEHUB_DATA_DIR: config.dataDir };
  } else {
    config = testConfig({ dataDir: join(dir, 'data'), databaseUrl: undefined });
    env = { DATABASE_URL: undefined, AUDIENCEHUB_DATA_DIR: config.dataDir };
  }
  // Set up a source as the API would, then let go of the database for the command.
  const database = await openHubDatabase(config);
  try {
    const deps = await createImportDeps(config, silentLogger);
    for (const [name, file] of [
      ['People', 'people.csv'],
      ['Broken', 'broken.csv'],
    ] as const) {
      const source = await createSource(database.db, deps, admin, {
        name,
        connector: 'csv',
        config: { path: join(dir, file) },
      });
      const stream = file.replace('.csv', '');
      await setStreamMapping(database.db, deps, admin, source.id, stream, {
        mapping: {
          identities: { email: 'email' },
          traits: { name: 'name', joined: { field: 'joined', type: 'date' } },
        },
      });
    }
  } finally {
    await database.close();
  }
}, 60_000);
afterAll(async () => {
  await postgresDb?.close();
});

describe('audiencehub import', () => {
  it('imports a source in the foreground and prints the run', async () => {
    const done = await runCli(['import', 'people'], env);
    expect(done.stderr).not.toMatch(/audiencehub: /);
    expect(done.code).toBe(0);
    expect(done.stdout).toMatch(
      /^People\/people: succeeded \(run \d+\) — 2 read, 2 imported, 0 duplicate, 0 rejected in \d+\.\d s\n$/,
    );
  }, 60_000);

  it('exits 1 saying why when a run fails', async () => {
    const done = await runCli(['import', 'Broken', 'broken'], env);
    expect(done.code).toBe(1);
    expect(done.stdout).toMatch(/^Broken\/broken: failed/);
    expect(done.stderr).toMatch(
      /audiencehub: import of Broken\/broken failed: 2 of 2 rows read \(100%\) were rejected/,
    );
  }, 60_000);

  it('exits 1 for a source that does not exist, 2 for misuse', async () => {
    const missing = await runCli(['import', 'nope'], env);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('audiencehub: No source "nope".');
    const misuse = await runCli(['import'], env);
    expect(misuse.code).toBe(2);
    expect(misuse.stderr).toContain('import: name the source to import');
  }, 60_000);
});
