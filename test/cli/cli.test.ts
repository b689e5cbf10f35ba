import { createServer, type Server } from 'node:net';
import { sql } from 'drizzle-orm';
import postgres from 'postgres';
import { afterEach, describe, expect, it } from 'vitest';
import { testConfig } from '../../src/config.ts';
import { rows } from '../../src/db/index.ts';
import { uuidv7 } from '../../src/ids.ts';
import { computeSegment } from '../../src/segments/compute.ts';
import { createSegment } from '../../src/segments/store.ts';
import { openHubDatabase } from '../../src/server.ts';
import { send } from '../support/ingest.ts';
import { until } from '../support/wait.ts';
import {
  freshStore,
  printedSecrets,
  runCli,
  startCli,
  startWorkerCli,
  type RunningHub,
  type Store,
} from './cli.ts';

const driver = process.env.DATABASE_URL ? 'postgres' : 'pglite';
const TIMEOUT = 120_000;

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const basic = (writeKey: string) => ({
  authorization: `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`,
  'content-type': 'application/json',
});

describe(`audiencehub CLI (${driver})`, () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  async function store(): Promise<Store> {
    const s = await freshStore();
    cleanups.push(() => s.drop());
    return s;
  }
  async function start(env: Store['env']): Promise<RunningHub> {
    const hub = await startCli(env);
    cleanups.push(() => hub.stop());
    return hub;
  }

  it('prints its version and help', async () => {
    const version = await runCli(['--version']);
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    const help = await runCli(['help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('start');
    expect(help.stdout).toContain('migrate');
  });

  it('answers an unknown command or flag with exit code 2 and a message', async () => {
    const unknown = await runCli(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    const flag = await runCli(['start', '--no-such-flag']);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toContain('--no-such-flag');
  });

  it(
    'migrates and exits 0',
    async () => {
      const s = await store();
      const first = await runCli(['migrate'], s.env);
      expect(first.stderr).toContain('migrations applied');
      expect(first.code).toBe(0);
      // Nothing pending the second time; still fine.
      expect((await runCli(['migrate'], s.env)).code).toBe(0);
    },
    TIMEOUT,
  );

  it(
    'creates and prints credentials once, and keeps its data across restarts',
    async () => {
      const s = await store();
      const first = await start(s.env);
      const { adminToken, writeKey } = printedSecrets(first.stdout());
      expect(adminToken).toMatch(/^aht_/);
      expect(writeKey).toMatch(/^ahw_/);
      expect(first.stdout()).toContain('not shown again');

      const ok = await fetch(`${first.url}/api/profiles`, { headers: bearer(adminToken!) });
      expect(ok.status).toBe(200);
      const anonymous = await fetch(`${first.url}/api/profiles`);
      expect(anonymous.status).toBe(401);
      const stopped = await first.stop();
      expect(stopped.code).toBe(0);

      const second = await start(s.env);
      expect(second.stdout()).not.toContain('Admin API token');
      expect(printedSecrets(second.stdout())).toEqual({});
      const again = await fetch(`${second.url}/api/profiles`, { headers: bearer(adminToken!) });
      expect(again.status).toBe(200);
    },
    TIMEOUT,
  );

  it(
    'takes first-start credentials from the environment without printing them',
    async () => {
      const s = await store();
      const adminToken = 'aht_from_the_environment_0123456789';
      const writeKey = 'ahw_from_the_environment_0123456789';
      const hub = await start({
        ...s.env,
        AUDIENCEHUB_ADMIN_TOKEN: adminToken,
        AUDIENCEHUB_WRITE_KEY: writeKey,
      });
      const output = hub.stdout() + hub.stderr();
      expect(output).not.toContain(adminToken);
      expect(output).not.toContain(writeKey);
      expect(hub.stderr()).toContain('taken from AUDIENCEHUB_ADMIN_TOKEN');
      expect(hub.stderr()).toContain('taken from AUDIENCEHUB_WRITE_KEY');
      const ok = await fetch(`${hub.url}/api/profiles`, { headers: bearer(adminToken) });
      expect(ok.status).toBe(200);
    },
    TIMEOUT,
  );

  it(
    'ingests an event and reads the profile back, as the README shows',
    async () => {
      const s = await store();
      const hub = await start(s.env);
      const { adminToken, writeKey } = printedSecrets(hub.stdout());
      const tracked = await fetch(`${hub.url}/v1/track`, {
        method: 'POST',
        headers: basic(writeKey!),
        body: JSON.stringify({
          userId: 'u-1001',
          event: 'Order Completed',
          properties: { revenue: 42.5, currency: 'EUR' },
          context: { traits: { email: 'Ada@Example.com' } },
        }),
      });
      expect(tracked.status).toBe(200);
      await hub.stop();

      const again = await start(s.env);
      const res = await fetch(
        `${again.url}/api/profiles?identity=${encodeURIComponent('email:ada@example.com')}`,
        { headers: bearer(adminToken!) },
      );
      expect(res.status).toBe(200);
      expect(JSON.stringify(await res.json())).toContain('ada@example.com');
    },
    TIMEOUT,
  );

  it(
    'creates an API token from the command line when the hub is stopped',
    async () => {
      const s = await store();
      await (await start(s.env)).stop();
      const created = await runCli(
        ['token', 'create', '--role', 'marketer', '--name', 'ops'],
        s.env,
      );
      expect(created.code).toBe(0);
      const token = /^(aht_\S+)$/m.exec(created.stdout)?.[1];
      expect(token).toBeDefined();
      expect(created.stdout).toContain('marketer API token "ops"');

      const hub = await start(s.env);
      const res = await fetch(`${hub.url}/api/profiles`, { headers: bearer(token!) });
      expect(res.status).toBe(200);
      // A marketer may read profiles but not manage tokens.
      expect((await fetch(`${hub.url}/api/tokens`, { headers: bearer(token!) })).status).toBe(403);

      const bad = await runCli(['token', 'create', '--role', 'owner'], s.env);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain('--role must be one of admin, marketer, integrator');
    },
    TIMEOUT,
  );

  it(
    'rebuilds the per-event counts a crash emptied, and only then',
    async () => {
      const s = await store();
      const env = {
        ...s.env,
        AUDIENCEHUB_ADMIN_TOKEN: 'aht_crash_test_admin_token_0123456789',
        AUDIENCEHUB_WRITE_KEY: 'ahw_crash_test_write_key_0123456789',
      };
      const admin = bearer(env.AUDIENCEHUB_ADMIN_TOKEN);
      const eventCounts = async (hub: RunningHub) => {
        const page = await fetch(`${hub.url}/api/profiles?identity=user_id:u-crash`, {
          headers: admin,
        }).then((r) => r.json() as Promise<{ data: { id: string }[] }>);
        if (page.data.length === 0) return {};
        const view = await fetch(`${hub.url}/api/profiles/${page.data[0]!.id}`, {
          headers: admin,
        }).then(
          (r) =>
            r.json() as Promise<{
              profile: { computed: { eventCounts: { name: string; count: number }[] } };
            }>,
        );
        return Object.fromEntries(view.profile.computed.eventCounts.map((c) => [c.name, c.count]));
      };
      const expected = { 'Order Completed': 3, Viewed: 1 };

      const first = await startCli(env);
      const sent = await fetch(`${first.url}/v1/batch`, {
        method: 'POST',
        headers: basic(env.AUDIENCEHUB_WRITE_KEY),
        body: JSON.stringify({
          batch: ['Order Completed', 'Viewed', 'Order Completed', 'Order Completed'].map(
            (event) => ({ type: 'track', userId: 'u-crash', event }),
          ),
        }),
      });
      expect(sent.status).toBe(200);
      expect(
        await until(
          () => eventCounts(first),
          (c) => c.Viewed === 1,
        ),
      ).toEqual(expected);
      // Killed: on PGlite the database goes down with the hub, and its recovery empties the
      // unlogged counts. A PostgreSQL server's crash does the same, which a test cannot cause:
      // there, the counts are emptied as its recovery would.
      await first.stop('SIGKILL');
      if (driver === 'postgres') {
        const server = postgres(s.env.DATABASE_URL!, { max: 1, onnotice: () => {} });
        await server`delete from profile_event_counts`;
        await server`delete from profile_event_counts_ready`;
        await server.end();
      }

      const second = await startCli(env);
      expect(second.stderr()).toContain('per-event counts were lost in a database crash');
      expect(await eventCounts(second)).toEqual(expected);
      expect((await second.stop('SIGINT')).code).toBe(0);

      // A clean stop keeps them.
      const third = await start(env);
      expect(third.stderr()).not.toContain('lost in a database crash');
      expect(await eventCounts(third)).toEqual(expected);
    },
    TIMEOUT,
  );

  it(
    'stops cleanly on SIGINT',
    async () => {
      const s = await store();
      const hub = await startCli(s.env);
      const done = await hub.stop('SIGINT');
      expect(done.code).toBe(0);
      expect(done.stderr).toContain('stopped');
    },
    TIMEOUT,
  );

  it(
    'fails to start with one clear line when the port is taken',
    async () => {
      const s = await store();
      const blocker: Server = createServer();
      await new Promise<void>((resolve) => blocker.listen(0, resolve));
      cleanups.push(() => new Promise((resolve) => blocker.close(resolve)));
      const port = (blocker.address() as { port: number }).port;
      const run = await runCli(['start'], { ...s.env, PORT: String(port) });
      expect(run.code).toBe(1);
      expect(run.stderr).toContain(`port ${port} is already in use`);
      expect(run.stderr).not.toMatch(/\n\s+at /);
      // Nothing was created, so the first start that can listen still shows the credentials.
      expect(printedSecrets(run.stdout)).toEqual({});
      const next = await start(s.env);
      expect(printedSecrets(next.stdout()).adminToken).toMatch(/^aht_/);
    },
    TIMEOUT,
  );

  it('rejects bad configuration with exit code 1 and no stack trace', async () => {
    const port = await runCli(['start'], { PORT: 'eighty' });
    expect(port.code).toBe(1);
    expect(port.stderr.trim()).toBe('audiencehub: PORT: "eighty" is not a port number');

    const url = await runCli(['start'], { DATABASE_URL: 'not a url' });
    expect(url.code).toBe(1);
    expect(url.stderr).toContain('DATABASE_URL is not a valid URL');

    const level = await runCli(['start'], { LOG_LEVEL: 'chatty' });
    expect(level.code).toBe(1);
    expect(level.stderr).toContain('LOG_LEVEL');

    const interval = await runCli(['start'], { AUDIENCEHUB_FOLD_INTERVAL_MS: '0.5' });
    expect(interval.code).toBe(1);
    expect(interval.stderr.trim()).toBe(
      'audiencehub: AUDIENCEHUB_FOLD_INTERVAL_MS: "0.5" is not a positive whole number',
    );

    const growth = await runCli(['start'], { AUDIENCEHUB_HEAP_GROWTH_PERCENT: '-5' });
    expect(growth.code).toBe(1);
    expect(growth.stderr.trim()).toBe(
      'audiencehub: AUDIENCEHUB_HEAP_GROWTH_PERCENT: "-5" is not a whole number (0 or more)',
    );

    const cron = await runCli(['start'], { AUDIENCEHUB_RFM_SCHEDULE: 'nightly' });
    expect(cron.code).toBe(1);
    expect(cron.stderr).toContain('AUDIENCEHUB_RFM_SCHEDULE: "nightly" is not a cron expression');
  });

  it(
    'runs the worker alone: it folds stored events and brings segments up to date',
    async () => {
      const s = await store();
      const config = testConfig({
        dataDir: s.env.AUDIENCEHUB_DATA_DIR!,
        databaseUrl: s.env.DATABASE_URL,
      });
      // Data stored and a segment defined while no worker runs.
      let database = await openHubDatabase(config);
      const owner = { tokenId: uuidv7(), name: 'cli', role: 'admin' as const };
      const segment = await createSegment(
        database.db,
        owner,
        {
          name: 'buyers',
          description: '',
          type: 'dynamic',
          visibility: 'shared',
          rules: { computed: { name: 'purchase_count', op: 'gte', value: 1 } },
        },
        { maxPerOwner: 5 },
      );
      await computeSegment(database.db, segment.id, 'create');
      await send(database.db, config, [
        { type: 'track', userId: 'w', event: 'purchase', properties: { value: 5 } },
      ]);
      await database.close();

      const worker = await startWorkerCli(s.env);
      // Two refresh intervals are plenty; give a slow machine ten times that.
      await new Promise((resolve) => setTimeout(resolve, 2500));
      const done = await worker.stop('SIGTERM');
      expect(done.code).toBe(0);
      expect(done.stderr).toContain('stopped');

      database = await openHubDatabase(config);
      try {
        const [row] = await rows<{ purchase_count: number; members: number }>(
          database.db,
          sql`select p.purchase_count,
                (select count(*)::int from segment_members m where m.profile_id = p.id) as members
              from profiles p join identities i on i.profile_id = p.id and i.value = 'w'`,
        );
        expect(row).toEqual({ purchase_count: 1, members: 1 });
      } finally {
        await database.close();
      }
    },
    TIMEOUT,
  );

  it('refuses start --no-worker on the embedded database, and unknown flags', async () => {
    const embedded = await runCli(['start', '--no-worker'], { DATABASE_URL: undefined });
    expect(embedded.code).toBe(1);
    expect(embedded.stderr).toContain('start --no-worker needs DATABASE_URL');
    const unknown = await runCli(['worker', '--now'], {});
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('worker: Unknown option');
  });

  it(
    'refuses a first-start secret that is too short',
    async () => {
      const s = await store();
      const run = await runCli(['start'], { ...s.env, AUDIENCEHUB_ADMIN_TOKEN: 'hunter2' });
      expect(run.code).toBe(1);
      expect(run.stderr.trim()).toBe(
        'audiencehub: AUDIENCEHUB_ADMIN_TOKEN must be at least 24 characters (e.g. aht_ followed by random characters).',
      );
    },
    TIMEOUT,
  );

  it(
    'names an unreachable PostgreSQL without showing its password',
    async () => {
      // Port 1 on loopback: nothing listens there, so the connection is refused at once.
      const run = await runCli(['migrate'], {
        DATABASE_URL: 'postgres://hub:s3cret-pw@127.0.0.1:1/audiencehub',
      });
      expect(run.code).toBe(1);
      expect(run.stderr).toContain('PostgreSQL hub@127.0.0.1:1/audiencehub');
      expect(run.stderr).not.toContain('s3cret-pw');
      expect(run.stderr.trim().split('\n')).toHaveLength(1);
    },
    TIMEOUT,
  );

  it(
    'refuses a second hub on the same PGlite data directory',
    async () => {
      // Always on PGlite, whichever database the rest of the run uses: the lock is PGlite's.
      const s = await store();
      const env = { ...s.env, DATABASE_URL: undefined };
      const first = await start(env);
      const second = await runCli(['start'], env);
      expect(second.code).toBe(1);
      expect(second.stderr).toContain('in use by another audiencehub process');
      expect((await first.stop()).code).toBe(0);
      // The lock is released on a clean stop.
      const third = await start(env);
      expect(third.url).toMatch(/^http:/);
    },
    TIMEOUT,
  );
});
