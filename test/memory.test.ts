import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { heapGrowthFlag } from '../src/memory.ts';

const run = promisify(execFile);
const churn = fileURLToPath(new URL('./support/heap-churn.ts', import.meta.url));

/**
 * The largest heap a churning process reaches with the given growth percent. Its collector runs
 * on its own thread only: marking alongside on other threads lets a heap outgrow its limit by
 * however far the allocation gets before marking ends, which a busy machine stretches.
 */
async function peakHeap(percent: number): Promise<number> {
  const { stdout } = await run(process.execPath, [
    '--single-threaded-gc',
    '--import',
    'tsx',
    churn,
    String(percent),
  ]);
  return Number(stdout.trim());
}

describe('heap growth', () => {
  it('is 100% by default, and 0 leaves V8 its own rule', () => {
    expect(loadConfig({}).heapGrowthPercent).toBe(100);
    expect(loadConfig({ AUDIENCEHUB_HEAP_GROWTH_PERCENT: '0' }).heapGrowthPercent).toBe(0);
    expect(heapGrowthFlag(50, [])).toBe('--heap-growing-percent=50');
    expect(heapGrowthFlag(0, [])).toBeUndefined();
  });

  it("leaves a process's own flag alone, however it is spelled", () => {
    expect(heapGrowthFlag(50, ['--heap-growing-percent=20'])).toBeUndefined();
    expect(heapGrowthFlag(50, ['--heap_growing_percent=20'])).toBeUndefined();
    expect(heapGrowthFlag(50, ['--max-old-space-size=512'])).toBe('--heap-growing-percent=50');
  });

  it("keeps a churning process to a smaller heap than V8's own rule, set while it runs", async () => {
    const [own, limited] = await Promise.all([peakHeap(0), peakHeap(50)]);
    expect(own).toBeGreaterThan(0);
    expect(limited).toBeLessThan(own * 0.75);
  }, 60_000);
});

describe('the identity cache', () => {
  it('holds each entry in one piece, not as the strings it was joined from', async () => {
    const { stdout } = await run(process.execPath, [
      '--expose-gc',
      '--import',
      'tsx',
      fileURLToPath(new URL('./support/identity-cache-heap.ts', import.meta.url)),
    ]);
    // Bytes of heap per entry: about 130 (key, profile id, map slot); joined keys and ids built
    // from slices held about 330.
    expect(Number(stdout.trim())).toBeLessThan(200);
  });
});
