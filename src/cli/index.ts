/**
 * The `audiencehub` command. Exit codes: 0 done, 1 failed (one line on stderr saying why),
 * 2 misuse (unknown command or flag).
 */
import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { createApiToken, Role } from '../auth/credentials.ts';
import { loadConfig, type HubConfig } from '../config.ts';
import { startWorker } from '../jobs/worker.ts';
import { applyHeapGrowth } from '../memory.ts';
import { applyFolder } from '../apply/cli.ts';
import { createImportDeps } from '../imports/deps.ts';
import { runImport, type ImportRun } from '../imports/run.ts';
import { enabledStreams, findSource } from '../imports/store.ts';
import { createSyncDeps } from '../sync/deps.ts';
import { createLogger, type Level, type Logger } from '../log.ts';
import {
  describeDatabase,
  openHubDatabase,
  startHub,
  StartupError,
  type HubHandle,
} from '../server.ts';

const LEVELS: Level[] = ['debug', 'info', 'warn', 'error'];

const USAGE = `Usage: audiencehub <command> [options]

Commands:
  start          Serve the API (tracking at /v1, management at /api) on PORT,
                 with the worker in the same process
                   --no-worker   serve only; a separate "audiencehub worker" does
                                 the background work (PostgreSQL only)
                   --config PATH apply this config-as-code folder first
                                 (AUDIENCEHUB_CONFIG_DIR; npm start uses config/)
  worker         Run only the worker: computed traits, segment computation
                 (incremental, scheduled and requested)
  migrate        Apply pending database migrations and exit
  import SOURCE [STREAM]
                 Import a source (by name or id) now, in the foreground: the
                 one stream, or every enabled stream with a mapping; exits 1
                 when a run fails, saying why
  apply PATH     Make the hub hold what the config-as-code folder (or file)
                 PATH declares: print the plan (create, change, delete),
                 then apply it; exits 1 listing every problem in the files
                   --plan        print the plan only
  token create   Create an API token and print it once
                   --role admin|marketer|integrator   (default admin)
                   --name NAME                        (default "created with the CLI")
  help           Show this help

Options:
  -h, --help       Show help
  -v, --version    Show the version

Configuration comes from the environment: PORT (default 3000),
AUDIENCEHUB_DATA_DIR (default ./data), DATABASE_URL (PostgreSQL instead of
the embedded database), AUDIENCEHUB_ADMIN_TOKEN and AUDIENCEHUB_WRITE_KEY
(first-start credentials), LOG_LEVEL (debug, info, warn, error).
See README.md for the full list.
`;

class UsageError extends Error {}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

function logLevel(env: NodeJS.ProcessEnv): Level {
  const level = (env.LOG_LEVEL || 'info').toLowerCase() as Level;
  if (!LEVELS.includes(level)) {
    throw new StartupError(`LOG_LEVEL: "${env.LOG_LEVEL}" is not one of ${LEVELS.join(', ')}`);
  }
  return level;
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** Parse a command's flags (always including --help); anything unknown is misuse. */
function flags(command: string, args: string[], options: Options = {}) {
  try {
    return parseArgs({
      args,
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    }).values as Record<string, string | boolean | undefined>;
  } catch (error) {
    throw new UsageError(`${command}: ${(error as Error).message}`);
  }
}

/**
 * Start something long-running and keep it until SIGINT or SIGTERM, then close it gracefully;
 * a second signal exits at once.
 */
async function untilSignal(log: Logger, open: () => Promise<{ close(): Promise<void> }>) {
  // Listen for signals before starting: until a listener exists, SIGINT kills the process on
  // the spot, which could cut PGlite off mid-write.
  let running: { close(): Promise<void> } | undefined;
  let stopping = false;
  const shutdown = (it: { close(): Promise<void> }) => {
    it.close().then(
      () => process.exit(0),
      (error: unknown) => {
        log.error('shutdown failed', { error: (error as Error).message });
        process.exit(1);
      },
    );
  };
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      // A second Ctrl-C means "now".
      process.exit(130);
    }
    stopping = true;
    log.info(`${signal} received, shutting down`);
    if (running) shutdown(running);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  try {
    running = await open();
  } catch (error) {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    throw error;
  }
  // A signal that came while starting.
  if (stopping) shutdown(running);
}

const start = (withWorker: boolean) => (config: HubConfig, log: Logger) =>
  untilSignal(log, async (): Promise<HubHandle> => {
    if (!withWorker && !config.databaseUrl) {
      throw new StartupError(
        'start --no-worker needs DATABASE_URL: the embedded database serves one process, ' +
          'so its worker must run inside the hub.',
      );
    }
    return startHub(config, log, { worker: withWorker });
  });

/** Only the worker, on the configured database. */
const worker = (config: HubConfig, log: Logger) =>
  untilSignal(log, async () => {
    const database = await openHubDatabase(config);
    try {
      const running = await startWorker(database, config, log, {
        sync: await createSyncDeps(config, log),
      });
      log.info('worker started', { data: describeDatabase(config) });
      return {
        async close() {
          await running.stop();
          await database.close();
          log.info('stopped');
        },
      };
    } catch (error) {
      await database.close().catch(() => {});
      throw error;
    }
  });

async function migrate(config: HubConfig, log: Logger): Promise<void> {
  const database = await openHubDatabase(config);
  await database.close();
  log.info('migrations applied', { data: describeDatabase(config) });
}

/**
 * A new API token straight in the database, for when no admin token is at hand (the
 * first-start one was lost). With the embedded database the hub must be stopped first.
 */
async function tokenCreate(config: HubConfig, role: Role, name: string): Promise<void> {
  const database = await openHubDatabase(config);
  try {
    const { token, summary } = await createApiToken(
      database.db,
      { name, role },
      { id: null, name: 'cli' },
    );
    process.stdout.write(
      `${role} API token "${summary.name}" (id ${summary.id}):\n${token}\n` +
        'Store it now: it is not shown again.\n',
    );
  } finally {
    await database.close();
  }
}

/**
 * Import a source's streams now, one after the other, printing each run; a failed run makes the
 * command fail. Ctrl-C stops the run in progress (it resumes from its last checkpoint next time).
 */
/** `apply PATH`: plan and apply config as code, with imports and computations inline. */
async function applyNow(
  config: HubConfig,
  log: Logger,
  path: string,
  planOnly: boolean,
  env: NodeJS.ProcessEnv,
): Promise<void> {
  const database = await openHubDatabase(config);
  try {
    const sync = await createSyncDeps(config, log);
    const imports = await createImportDeps(config, log, sync.box);
    const ctx = { db: database.db, config, log, sync, imports };
    await applyFolder(ctx, path, { planOnly, env }, (text) => process.stdout.write(text));
  } finally {
    await database.close();
  }
}

async function importNow(
  config: HubConfig,
  log: Logger,
  sourceName: string,
  stream: string | undefined,
): Promise<void> {
  const database = await openHubDatabase(config);
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    const deps = await createImportDeps(config, log);
    const source = await findSource(database.db, deps, sourceName);
    const streams = stream ? [stream] : await enabledStreams(database.db, source.id);
    if (streams.length === 0) {
      throw new Error(
        `source "${source.name}" has no enabled stream with a mapping: set one with PUT /api/sources/${source.id}/streams/<stream>`,
      );
    }
    const failed: ImportRun[] = [];
    for (const name of streams) {
      if (controller.signal.aborted) break;
      const run = await runImport(database.db, deps, config, source.id, name, 'cli', {
        signal: controller.signal,
      });
      process.stdout.write(`${describeRun(source.name, run)}\n`);
      if (run.status === 'failed') failed.push(run);
    }
    if (failed.length > 0) {
      throw new Error(
        failed.map((r) => `import of ${source.name}/${r.stream} failed: ${r.error}`).join('\n'),
      );
    }
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    await database.close();
  }
}

const describeRun = (source: string, r: ImportRun) =>
  `${source}/${r.stream}: ${r.status} (run ${r.id}) — ${r.rowsRead} read, ${r.rowsImported} imported, ` +
  `${r.rowsDuplicate} duplicate, ${r.rowsRejected} rejected in ${((r.durationMs ?? 0) / 1000).toFixed(1)} s`;

/** Everything that needs the configuration: a logger and the parsed environment first. */
async function withConfig(
  env: NodeJS.ProcessEnv,
  run: (config: HubConfig, log: Logger) => Promise<void>,
) {
  const log = createLogger(logLevel(env));
  const config = configFrom(env);
  // Every command works on the hub's data the way the hub does, with the same heap growth.
  applyHeapGrowth(config.heapGrowthPercent);
  await run(config, log);
}

/**
 * Run the CLI with `argv` (without node and the script); resolves to the exit code.
 *
 * @example
 * process.exitCode = await main(process.argv.slice(2));
 */
export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const [command, ...rest] = argv;
  const debug = (env.LOG_LEVEL ?? '').toLowerCase() === 'debug';
  try {
    switch (command) {
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        return 0;
      case '--version':
      case '-v':
        process.stdout.write(`${version()}\n`);
        return 0;
      case 'start':
      case 'worker':
      case 'migrate': {
        const values = flags(
          command,
          rest,
          command === 'start'
            ? { 'no-worker': { type: 'boolean' }, config: { type: 'string' } }
            : {},
        );
        if (values.help) {
          process.stdout.write(USAGE);
          return 0;
        }
        // `start` and `worker` keep the process alive until a signal stops them.
        const run =
          command === 'start'
            ? start(!values['no-worker'])
            : command === 'worker'
              ? worker
              : migrate;
        const configDir = typeof values.config === 'string' ? values.config : undefined;
        await withConfig(env, (config, log) =>
          run(configDir ? { ...config, configDir } : config, log),
        );
        return 0;
      }
      case 'import': {
        let parsed;
        try {
          parsed = parseArgs({
            args: rest,
            options: { help: { type: 'boolean', short: 'h' } },
            strict: true,
            allowPositionals: true,
          });
        } catch (error) {
          throw new UsageError(`import: ${(error as Error).message}`);
        }
        if (parsed.values.help) {
          process.stdout.write(USAGE);
          return 0;
        }
        const [source, stream, ...extra] = parsed.positionals;
        if (!source) throw new UsageError('import: name the source to import');
        if (extra.length > 0) throw new UsageError(`import: unexpected "${extra[0]}"`);
        await withConfig(env, (config, log) => importNow(config, log, source, stream));
        return 0;
      }
      case 'apply': {
        let parsed;
        try {
          parsed = parseArgs({
            args: rest,
            options: { help: { type: 'boolean', short: 'h' }, plan: { type: 'boolean' } },
            strict: true,
            allowPositionals: true,
          });
        } catch (error) {
          throw new UsageError(`apply: ${(error as Error).message}`);
        }
        if (parsed.values.help) {
          process.stdout.write(USAGE);
          return 0;
        }
        const [path, ...extra] = parsed.positionals;
        if (!path) throw new UsageError('apply: name the config folder, e.g. "apply config"');
        if (extra.length > 0) throw new UsageError(`apply: unexpected "${extra[0]}"`);
        await withConfig(env, (config, log) =>
          applyNow(config, log, path, parsed.values.plan === true, env),
        );
        return 0;
      }
      case 'token': {
        const [sub, ...args] = rest;
        if (sub !== 'create') {
          throw new UsageError(
            sub === undefined
              ? 'token: say what to do ("token create")'
              : `token: unknown command "${sub}"`,
          );
        }
        const values = flags('token create', args, {
          role: { type: 'string', default: 'admin' },
          name: { type: 'string', default: 'created with the CLI' },
        });
        if (values.help) {
          process.stdout.write(USAGE);
          return 0;
        }
        const role = Role.safeParse(values.role);
        if (!role.success) {
          throw new UsageError(`token create: --role must be one of ${Role.options.join(', ')}`);
        }
        await withConfig(env, (config) => tokenCreate(config, role.data, String(values.name)));
        return 0;
      }
      default:
        throw new UsageError(
          command.startsWith('-') ? `unknown option "${command}"` : `unknown command "${command}"`,
        );
    }
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`audiencehub: ${error.message}\nRun "audiencehub help" for usage.\n`);
      return 2;
    }
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`audiencehub: ${message}\n`);
    if (debug && error instanceof Error) {
      process.stderr.write(`${error.stack}\n`);
      const cause = error.cause;
      if (cause) process.stderr.write(`caused by: ${(cause as Error).stack ?? String(cause)}\n`);
    }
    return 1;
  }
}

/** loadConfig throws plain Errors naming the variable; they are the operator's to fix. */
function configFrom(env: NodeJS.ProcessEnv): HubConfig {
  try {
    return loadConfig(env);
  } catch (error) {
    throw new StartupError((error as Error).message, { cause: error });
  }
}
