/**
 * What every benchmark shares: scratch databases, the commit measured, the machine.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { testConfig, type HubConfig } from '../src/config.ts';
import { applyHeapGrowth } from '../src/memory.ts';

export const DEFAULT_PG_URL =
  process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** A scratch place for one database: a new PostgreSQL database, or a PGlite folder. */
export interface Scratch {
  config: HubConfig;
  drop(): Promise<void>;
  /** Keep the database or folder, and close what was opened to make it. */
  keep(): Promise<void>;
}

/**
 * A scratch place for one database. The benchmark's process then runs as the hub's own processes
 * do, with the same heap growth (src/memory.ts), whether or not it starts a hub.
 */
export async function scratch(
  driver: 'pglite' | 'postgres',
  pgUrl: string,
  label: string,
): Promise<Scratch> {
  applyHeapGrowth(testConfig().heapGrowthPercent);
  const dataDir = mkdtempSync(join(tmpdir(), `audiencehub-bench-${label}-`));
  const removeDir = async () => rmSync(dataDir, { recursive: true, force: true });
  if (driver === 'pglite') {
    return { config: testConfig({ dataDir, port: 0 }), drop: removeDir, keep: async () => {} };
  }
  const name = `ah_bench_${label}_${randomBytes(4).toString('hex')}`;
  const admin = postgres(pgUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  const url = new URL(pgUrl);
  url.pathname = `/${name}`;
  return {
    config: testConfig({ dataDir, port: 0, databaseUrl: url.toString() }),
    async drop() {
      await admin.unsafe(`drop database if exists ${name} with (force)`);
      await admin.end();
      await removeDir();
    },
    keep: () => admin.end(),
  };
}

/** The commit measured, with `+dirty` when the work tree had changes. */
export function commit(): string | null {
  try {
    const git = (...args: string[]) => execFileSync('git', args, { encoding: 'utf8' }).trim();
    const head = git('rev-parse', '--short', 'HEAD');
    return git('status', '--porcelain', '--untracked-files=no') ? `${head}+dirty` : head;
  } catch {
    return null;
  }
}

export async function postgresVersion(
  driver: 'pglite' | 'postgres',
  pgUrl: string,
): Promise<string | null> {
  if (driver !== 'postgres') return null;
  const client = postgres(pgUrl, { max: 1, onnotice: () => {} });
  try {
    const [row] = await client`show server_version`;
    return String(row?.server_version ?? '');
  } finally {
    await client.end();
  }
}

/** The machine, for the record; other work on it skews the numbers, so the load is noted. */
export function machine(loadAverageAtStart: number, postgresServer: string | null) {
  return {
    nproc: cpus().length,
    memoryGb: Number((totalmem() / 2 ** 30).toFixed(1)),
    node: process.version,
    postgres: postgresServer,
    loadAverageAtStart,
  };
}

export const loadAverage = () => Number(loadavg()[0]!.toFixed(2));

/** Keep a result as bench/results/<name>-<driver>-<time>.json. */
export function saveResult(name: string, driver: string, summary: unknown): void {
  const dir = new URL('./results/', import.meta.url);
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    new URL(`${name}-${driver}-${Date.now()}.json`, dir),
    JSON.stringify(summary, null, 2) + '\n',
  );
}
