/**
 * The Google Sheets destination and the Google Analytics source load only their own API of
 * googleapis. Its index builds every Google API there is (about 100 MB), and a hub loads every
 * installed plugin at start, whether or not a destination uses it.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));

/** The googleapis files a fresh process has loaded after importing `modules`. */
async function googleapisLoadedBy(modules: string[]): Promise<string[]> {
  const script = `
    const { createRequire } = await import('node:module');
    for (const m of ${JSON.stringify(modules)}) await import(m);
    const cache = createRequire(import.meta.url).cache;
    const root = '/node_modules/googleapis/';
    const loaded = Object.keys(cache).filter((f) => f.includes(root));
    console.log(JSON.stringify(loaded.map((f) => f.slice(f.indexOf(root) + root.length))));`;
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '-e', script],
    { cwd: root },
  );
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as string[];
}

describe('the Google plugins', () => {
  it('load their own API of googleapis, not its index of every API', async () => {
    const loaded = await googleapisLoadedBy([
      './plugins/google-sheets/index.ts',
      './connectors/google-analytics/index.ts',
    ]);
    expect(loaded).toContain('build/src/apis/sheets/v4.js');
    expect(loaded).toContain('build/src/apis/analyticsdata/v1beta.js');
    expect(loaded).not.toContain('build/src/index.js');
    // The index would bring in some 300 APIs; the two plugins need two (and their versions).
    expect(new Set(loaded.map((f) => f.split('/')[3])).size).toBeLessThanOrEqual(3);
  }, 60_000);
});
