import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';

const BIN = fileURLToPath(new URL('../../bin/audiencehub.js', import.meta.url));

export type Env = Record<string, string | undefined>;

/** The test process's environment with `extra` applied; an undefined value removes a variable. */
function childEnv(extra: Env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: 'info', PORT: '0' };
  for (const key of Object.keys(env)) if (key.startsWith('AUDIENCEHUB_')) delete env[key];
  for (const [key, value] of Object.entries(extra)) {
    if (value === undefined) delete env[key];
    else env[key] = value;
  }
  return env;
}

export interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run `audiencehub ...args` to completion. */
export function runCli(args: string[], env: Env = {}): Promise<Finished> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: childEnv(env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A hub started with `audiencehub start` (or a worker), its output so far, and a way to stop it. */
export interface RunningHub {
  /** Where it listens (empty for a worker). */
  url: string;
  stdout(): string;
  stderr(): string;
  /** SIGTERM, then wait for the process to exit. */
  stop(signal?: NodeJS.Signals): Promise<Finished>;
}

/** Start `audiencehub start` and wait for its "listening on" line. */
export function startCli(env: Env, timeoutMs = 45_000, args: string[] = []): Promise<RunningHub> {
  return startLongRunning(
    ['start', ...args],
    /listening on (http:\/\/localhost:\d+)/,
    env,
    timeoutMs,
  );
}

/** Start `audiencehub worker` and wait for its "worker started" line. */
export function startWorkerCli(env: Env, timeoutMs = 45_000): Promise<RunningHub> {
  return startLongRunning(['worker'], /worker started()/, env, timeoutMs);
}

function startLongRunning(
  args: string[],
  ready: RegExp,
  env: Env,
  timeoutMs: number,
): Promise<RunningHub> {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: childEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const exited = new Promise<Finished>((resolve) =>
    child.on('close', (code) => resolve({ code, stdout, stderr })),
  );
  const running = (url: string): RunningHub => ({
    url,
    stdout: () => stdout,
    stderr: () => stderr,
    stop(signal = 'SIGTERM') {
      child.kill(signal);
      return exited;
    },
  });
  return new Promise((resolve, reject) => {
    let listening = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`no ${ready} line within ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
      const match = ready.exec(stderr);
      if (listening || !match) return;
      listening = true;
      clearTimeout(timer);
      // stdout (the credentials box) was written before this line, but on another pipe: give
      // it a moment to be read too.
      setTimeout(() => resolve(running(match[1]!)), 100);
    });
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(
        new Error(`audiencehub exited with ${code} before it was ready\n${stdout}\n${stderr}`),
      );
    });
  });
}

/**
 * Where one test's hub keeps its data: a temporary folder, plus a new empty database on the
 * PostgreSQL server when DATABASE_URL is set, so that every start there is a true first start.
 */
export interface Store {
  env: Env;
  drop(): Promise<void>;
}

export async function freshStore(): Promise<Store> {
  const dir = mkdtempSync(join(tmpdir(), 'audiencehub-cli-'));
  const url = process.env.DATABASE_URL;
  if (!url) {
    return {
      env: { AUDIENCEHUB_DATA_DIR: dir, DATABASE_URL: undefined },
      drop: async () => rmSync(dir, { recursive: true, force: true }),
    };
  }
  const name = `ah_cli_${randomBytes(6).toString('hex')}`;
  const admin = postgres(url, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  const target = new URL(url);
  target.pathname = `/${name}`;
  return {
    env: { AUDIENCEHUB_DATA_DIR: dir, DATABASE_URL: target.toString() },
    async drop() {
      await admin.unsafe(`drop database if exists ${name} with (force)`);
      await admin.end();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The secrets a first start printed, if it printed them. */
export function printedSecrets(stdout: string): { adminToken?: string; writeKey?: string } {
  return {
    adminToken: /Admin API token:\s+(\S+)/.exec(stdout)?.[1],
    writeKey: /Tracking write key:\s+(\S+)/.exec(stdout)?.[1],
  };
}
