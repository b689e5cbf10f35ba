/**
 * The first five minutes: `npm start` (`start --config config`) on a fresh machine comes up with
 * the example pipeline — the CSV sample imported into profiles, segments with sizes, and a
 * segment synced to a file — within a minute, with no account anywhere.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { freshStore, startCli, type RunningHub, type Store } from './cli.ts';
import { until } from '../support/wait.ts';

const driver = process.env.DATABASE_URL ? 'postgres' : 'pglite';
const ADMIN = 'aht_first_run_test_admin_token_0123456789';

/** The sample's distinct customers, counted from the file itself. */
function sampleCustomers(): number {
  const text = gunzipSync(readFileSync('config/data/online-retail-sample.csv.gz')).toString();
  const ids = new Set<string>();
  for (const line of text.split('\n').slice(1)) {
    const id = /,(\d+),[^,]*$/.exec(line)?.[1];
    if (id) ids.add(id);
  }
  return ids.size;
}

describe(`the first run (${driver})`, () => {
  let store: Store;
  let hub: RunningHub | undefined;
  const exports = mkdtempSync(join(tmpdir(), 'ah-first-run-'));
  afterAll(async () => {
    await hub?.stop();
    await store?.drop();
    rmSync(exports, { recursive: true, force: true });
  });

  it('comes up with profiles, segments with sizes and a synced file within a minute', async () => {
    store = await freshStore();
    hub = await startCli(
      { ...store.env, AUDIENCEHUB_ADMIN_TOKEN: ADMIN, AUDIENCEHUB_EXPORT_DIR: exports },
      60_000,
      ['--config', 'config'],
    );
    const get = async (path: string) => {
      const answer = await fetch(`${hub!.url}${path}`, {
        headers: { authorization: `Bearer ${ADMIN}` },
      });
      return (await answer.json()) as any; // eslint-disable-line @typescript-eslint/no-explicit-any
    };
    const customers = sampleCustomers();
    const sources = await until(
      async () => (await get('/api/sources')).data as { id: string; name: string }[],
      (list) => list.length > 0,
      30_000,
      500,
    );
    expect(sources.map((s) => s.name)).toEqual(['Online Retail (sample)']);
    const runs = await until(
      async () =>
        (await get(`/api/sources/${sources[0]!.id}/runs`)).data as {
          status: string;
          rowsRejected: number;
        }[],
      (list) => list.some((r) => r.status !== 'running'),
      60_000,
      500,
    );
    expect(runs[0]).toMatchObject({ status: 'succeeded' });
    expect(runs[0]!.rowsRejected).toBeGreaterThan(0); // the rows without a CustomerID

    // Once the import is in, the segments settle, and the auto-synced file follows: one line
    // per member of "High value" under a header.
    const file = join(exports, 'high-value.csv');
    const lines = () => {
      try {
        return readFileSync(file, 'utf8').trim().split('\n').length - 1;
      } catch {
        return -1;
      }
    };
    const settled = await until(
      async () => {
        const list = (await get('/api/segments?limit=100')).data as {
          name: string;
          size: number;
        }[];
        return { size: list.find((s) => s.name === 'High value')?.size ?? 0, lines: lines() };
      },
      (v) => v.size > 0 && v.lines === v.size,
      60_000,
      500,
    );
    expect(settled.lines).toBe(settled.size);
    expect(settled.size).toBeGreaterThan(0);
    expect(settled.size).toBeLessThanOrEqual(customers);
    // RFM scores are computed after the import brought purchases, and the RFM segments follow.
    const champions = await until(
      async () =>
        ((await get('/api/segments?limit=100')).data as { name: string; size: number }[]).find(
          (s) => s.name === 'RFM: Champions',
        )?.size ?? 0,
      (size) => size > 0,
      60_000,
      500,
    );
    expect(champions).toBeGreaterThan(0);
    const profiles = (await get('/api/profiles?limit=100&kind=customer')).data as unknown[];
    expect(profiles.length).toBe(100);
  }, 150_000);
});
