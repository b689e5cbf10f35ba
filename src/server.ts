import { closeSync, openSync, readFileSync, mkdirSync, unlinkSync, writeSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createAdaptorServer } from '@hono/node-server';
import { createApp } from './api/app.ts';
import { applyConfig, describePlan } from './apply/apply.ts';
import { ConfigFileError, loadConfigDir } from './apply/load.ts';
import { enabledStreams } from './imports/store.ts';
import { bootstrapCredentials, type Bootstrap } from './auth/credentials.ts';
import type { HubConfig } from './config.ts';
import type { HubContext } from './context.ts';
import { errorCodes, openDatabase, type Database } from './db/index.ts';
import { postgresJsPatched } from './db/drivers/postgres.ts';
import { HubError } from './errors.ts';
import type { Logger } from './log.ts';
import { startWorker, type Worker } from './jobs/worker.ts';
import { applyHeapGrowth } from './memory.ts';
import { ensureEventCounts } from './profiles/fold.ts';
import { createSyncDeps } from './sync/deps.ts';
import type { SyncDeps } from './sync/engine.ts';

/** A running hub. */
export interface HubHandle {
  /** `http://localhost:PORT`, with the port actually bound (PORT=0 picks a free one). */
  url: string;
  port: number;
  context: HubContext;
  /** Stop accepting requests, let those in flight finish, then close the database. */
  close(): Promise<void>;
}

export interface StartOptions {
  /** Where the first-start secrets are printed; stdout by default. */
  print?: (text: string) => void;
  /**
   * Run the worker (background refresh and queued jobs) in this process too; true by default.
   * With false, the API only queues jobs for a separate `audiencehub worker`.
   */
  worker?: boolean;
}

/**
 * A failure the operator can act on, with a message that says what to fix.
 * The CLI prints `message` alone; `cause` keeps the original error for LOG_LEVEL=debug.
 */
export class StartupError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StartupError';
  }
}

/**
 * Open the database, apply migrations, create first-start credentials, and serve the API.
 *
 * @example
 * const hub = await startHub(loadConfig({ PORT: '0' }), createLogger());
 * await fetch(`${hub.url}/api/profiles`, { headers: { authorization: `Bearer ${token}` } });
 * await hub.close();
 */
export async function startHub(
  config: HubConfig,
  log: Logger,
  options: StartOptions = {},
): Promise<HubHandle> {
  const print = options.print ?? ((text: string) => process.stdout.write(text));
  applyHeapGrowth(config.heapGrowthPercent);
  const database = await openHubDatabase(config);
  if (database.driver === 'postgres' && !postgresJsPatched()) {
    log.warn(
      'postgres.js is not patched (installed with --ignore-scripts?): a lost database ' +
        'connection can stop the hub. Run `node scripts/patch-postgres.mjs` once.',
    );
  }
  try {
    if (await ensureEventCounts(database.db)) {
      log.warn('the per-event counts were lost in a database crash; rebuilt them from the events');
    }
  } catch (error) {
    await database.close().catch(() => {});
    throw new StartupError(`cannot rebuild the per-event counts: ${reason(error)}`, {
      cause: error,
    });
  }
  const runWorker = options.worker ?? true;
  let worker: Worker;
  let sync: SyncDeps;
  try {
    sync = await createSyncDeps(config, log);
  } catch (error) {
    await database.close().catch(() => {});
    throw new StartupError(`cannot load the destination plugins: ${reason(error)}`, {
      cause: error,
    });
  }
  try {
    worker = await startWorker(database, config, log, {
      runJobs: runWorker,
      refresh: runWorker,
      sync,
    });
  } catch (error) {
    await database.close().catch(() => {});
    throw new StartupError(`cannot start the job queue: ${reason(error)}`, { cause: error });
  }
  const context: HubContext = { db: database.db, config, log, jobs: worker.jobs, sync };
  const server = createAdaptorServer({ fetch: createApp(context).fetch }) as Server;
  try {
    // Bind first: a start that cannot listen creates no credentials, so the next one that
    // can still shows them.
    const port = await listen(server, config.port);
    const created = await bootstrapCredentials(database.db, {
      adminToken: config.initialAdminToken,
      writeKey: config.initialWriteKey,
    }).catch((error: unknown) => {
      if (error instanceof HubError) throw new StartupError(error.detail ?? error.message);
      throw error;
    });
    reportCredentials(config, created, log, print);
    if (config.configDir) await applyAtStart(context, config.configDir, log);
    const url = `http://localhost:${port}`;
    log.info(`listening on ${url}`, { url, data: describeDatabase(config) });

    let closing: Promise<void> | undefined;
    const close = () =>
      (closing ??= (async () => {
        await closeServer(server);
        await worker.stop();
        await database.close();
        log.info('stopped');
      })());
    return { url, port, context, close };
  } catch (error) {
    if (server.listening) await closeServer(server);
    await worker.stop().catch(() => {});
    await database.close().catch(() => {});
    throw error;
  }
}

/**
 * Apply the config-as-code folder, then import the sources it created or changed. A problem in
 * the files stops the start (listing every one); a service failing while applying is logged and
 * the hub serves anyway, as the next start or `audiencehub apply` finishes the job.
 */
async function applyAtStart(ctx: HubContext, dir: string, log: Logger) {
  let result;
  try {
    result = await applyConfig(ctx, loadConfigDir(dir, process.env));
  } catch (error) {
    if (error instanceof ConfigFileError) {
      throw new StartupError(`config as code in ${dir}: ${error.message}`, { cause: error });
    }
    log.error('config as code could not be applied', { dir, error: reason(error) });
    return;
  }
  if (result.changes.length === 0) log.info(`config as code: ${describePlan(result)}`, { dir });
  else log.info(`config as code applied:\n${describePlan(result)}`, { dir });
  const request = ctx.jobs?.requestImportRun;
  if (!request) return;
  for (const sourceId of result.imported) {
    for (const stream of await enabledStreams(ctx.db, sourceId)) {
      await request(sourceId, stream, 'manual');
    }
  }
}

/**
 * Open and migrate the configured database, turning the usual operator mistakes (unreachable
 * server, bad URL, wrong password, a data directory in use) into a {@link StartupError}.
 */
export async function openHubDatabase(config: HubConfig): Promise<Database> {
  const where = describeDatabase(config);
  if (config.databaseUrl) checkDatabaseUrl(config.databaseUrl);
  const unlock = config.databaseUrl ? () => {} : lockDataDir(config.dataDir);
  let database: Database;
  try {
    database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  } catch (error) {
    unlock();
    throw new StartupError(`cannot open ${where}: ${reason(error)}`, { cause: error });
  }
  const opened = database;
  const closeOnce = async () => {
    try {
      await opened.close();
    } finally {
      unlock();
    }
  };
  try {
    await opened.migrate();
  } catch (error) {
    await closeOnce().catch(() => {});
    // postgres.js connects lazily, so an unreachable server shows up here, not at open.
    const verb = CONNECT_ERRORS.has(errorCode(error) ?? '') ? 'connect to' : 'migrate';
    throw new StartupError(`cannot ${verb} ${where}: ${reason(error)}`, { cause: error });
  }
  let closed: Promise<void> | undefined;
  return { ...opened, close: () => (closed ??= closeOnce()) };
}

/** Where the data lives, for logs: the PGlite folder, or PostgreSQL's host and database (never the password). */
export function describeDatabase(config: Pick<HubConfig, 'databaseUrl' | 'dataDir'>): string {
  if (!config.databaseUrl) return `PGlite in ${join(config.dataDir, 'pglite')}`;
  try {
    const url = new URL(config.databaseUrl);
    const user = url.username ? `${decodeURIComponent(url.username)}@` : '';
    return `PostgreSQL ${user}${url.hostname || 'localhost'}:${url.port || 5432}${url.pathname}`;
  } catch {
    return 'PostgreSQL (DATABASE_URL)';
  }
}

function checkDatabaseUrl(text: string) {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new StartupError(
      'DATABASE_URL is not a valid URL (expected postgres://user:password@host:5432/database)',
    );
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new StartupError(
      `DATABASE_URL must start with postgres:// or postgresql://, not ${url.protocol}//`,
    );
  }
}

/**
 * PGlite is one process's database: two hubs opening the same folder would corrupt it, so
 * the first one writes its pid into a lock file and the others refuse to start.
 */
function lockDataDir(dataDir: string): () => void {
  mkdirSync(dataDir, { recursive: true });
  const path = join(dataDir, 'pglite.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => {
        try {
          unlinkSync(path);
        } catch {
          // Already gone: nothing to release.
        }
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const pid = Number(readFileSync(path, 'utf8').trim());
      if (pid && pid !== process.pid && isAlive(pid)) {
        throw new StartupError(
          `the data directory ${dataDir} is in use by another audiencehub process (pid ${pid}); ` +
            `stop it first, or delete ${path} if no such process is running`,
        );
      }
      // Left behind by a process that died without cleaning up.
      unlinkSync(path);
    }
  }
  throw new StartupError(`cannot lock the data directory ${dataDir}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function listen(server: Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      server.off('listening', onListening);
      if (error.code === 'EADDRINUSE') {
        reject(
          new StartupError(
            `port ${port} is already in use; set PORT to another port (PORT=0 picks a free one)`,
            { cause: error },
          ),
        );
      } else if (error.code === 'EACCES') {
        reject(new StartupError(`not allowed to listen on port ${port}`, { cause: error }));
      } else {
        reject(error);
      }
    };
    const onListening = () => {
      server.off('error', onError);
      resolve((server.address() as AddressInfo).port);
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(port);
  });
}

/** Requests in flight get this long to finish once shutdown starts. */
const DRAIN_MS = 10_000;

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => server.closeAllConnections(), DRAIN_MS);
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    server.closeIdleConnections();
  });
}

function reportCredentials(
  config: HubConfig,
  created: Bootstrap,
  log: Logger,
  print: (text: string) => void,
) {
  const shown: [string, string][] = [];
  for (const [label, value, given, envName] of [
    ['Admin API token', created.adminToken, config.initialAdminToken, 'AUDIENCEHUB_ADMIN_TOKEN'],
    ['Tracking write key', created.writeKey, config.initialWriteKey, 'AUDIENCEHUB_WRITE_KEY'],
  ] as const) {
    if (value === undefined) {
      if (given !== undefined) {
        log.warn(`${envName} is ignored: credentials were created on an earlier start`);
      }
    } else if (given !== undefined) {
      log.info(`${label.toLowerCase()} taken from ${envName}`);
    } else {
      shown.push([label, value]);
    }
  }
  if (shown.length > 0) print(credentialsBox(shown));
}

/** The once-only block that shows first-start secrets. */
export function credentialsBox(lines: [string, string][]): string {
  const width = Math.max(...lines.map(([label]) => label.length)) + 1;
  const body = [
    'audiencehub: first start, credentials created',
    '',
    ...lines.map(([label, value]) => `${(label + ':').padEnd(width)} ${value}`),
    '',
    'Store them now: they are not shown again (only their hashes are kept).',
  ];
  const inner = Math.max(...body.map((line) => line.length)) + 2;
  const bar = '─'.repeat(inner);
  return [`┌${bar}┐`, ...body.map((line) => `│ ${line.padEnd(inner - 2)} │`), `└${bar}┘`, ''].join(
    '\n',
  );
}

/** Network failures, bad credentials, a missing database. */
const CONNECT_ERRORS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'CONNECT_TIMEOUT',
  '28P01',
  '28000',
  '3D000',
]);

const errorCode = (error: unknown): string | undefined => errorCodes(error).next().value;

/** The innermost useful message of a driver error (drizzle wraps the driver's in `cause`). */
function reason(error: unknown): string {
  const messages: string[] = [];
  let e: unknown = error;
  for (let i = 0; i < 5 && e; i++) {
    if (e instanceof AggregateError && e.errors.length > 0) e = e.errors[0];
    const message = e instanceof Error ? e.message : String(e);
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && !message.includes(code)) messages.push(`${message} (${code})`);
    else messages.push(message);
    e = (e as { cause?: unknown }).cause;
  }
  // "Failed query: …" repeats the SQL; the driver's own message is the one to show.
  return messages.filter((m) => m && !m.startsWith('Failed query')).pop() ?? messages[0] ?? '';
}
