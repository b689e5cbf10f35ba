/**
 * The conformance kit: the checks every destination plugin must pass, run against the plugin
 * and (for a networked service) its emulator. It drives the plugin the way the sync engine does
 * — `prepare` once, then `sync` with batches, retrying what the plugin says to retry — and reads
 * back what the destination holds after each scenario:
 * - **idempotent re-runs**: the same rows sent twice leave the destination as sent once;
 * - **partial failure**: a row the destination refuses comes back `rejected` with a reason, and
 *   the rest of its batch is delivered;
 * - **rate limiting**: a 429 makes the call fail as transient (with the wait when the service
 *   said it), never as a configuration error, and the retry delivers;
 * - **removal**: a removed row is gone, the others untouched;
 * - **a dropped connection mid-batch**: the call fails as transient; sending the batch again
 *   leaves no duplicate.
 */
import type {
  DestinationPlugin,
  PluginContext,
  RowResult,
  SyncInfo,
  SyncRow,
} from './destination.ts';
import { ConfigError, TransientError } from './errors.ts';
import { createHttpClient } from './http.ts';

/** A fault switch, as the test emulators offer (test/emulators/types.ts). */
export interface FaultInjector {
  inject(
    fault:
      | {
          kind: 'status';
          status: 429 | 500 | 502 | 503;
          count?: number;
          retryAfterSeconds?: number;
        }
      | { kind: 'drop'; count?: number }
      | { kind: 'drop-after-apply'; count?: number },
  ): void;
  clearFaults(): void;
}

export interface ConformanceTarget<C> {
  plugin: DestinationPlugin<C>;
  config: C;
  /** The service's emulator; without one, the fault scenarios are skipped and reported so. */
  emulator?: FaultInjector;
  /** Mapped fields for person `n` (distinct people for distinct `n`). */
  row(n: number): Record<string, unknown>;
  /** Fields the destination refuses (an invalid email, say), if it refuses any. */
  rejectable?: Record<string, unknown>;
  /** What the destination holds now: one key per row it holds (email, profile id…), duplicates included. */
  read(): Promise<string[]>;
  /** The key `read` uses for the row built from `fields`. */
  keyOf(fields: Record<string, unknown>, id: string): string;
  /** The sync under test (defaults to a mirror sync named "conformance"). */
  sync?: Partial<SyncInfo>;
}

export interface ConformanceCheck {
  check: string;
  ok: boolean;
  detail: string;
}

const silent = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * Run every check; resolves to one entry per check (none throws).
 *
 * @example
 * const report = await destinationConformance({ plugin, config, emulator, row, read, keyOf });
 * expect(report.filter((c) => !c.ok)).toEqual([]);
 */
export async function destinationConformance<C>(
  target: ConformanceTarget<C>,
): Promise<ConformanceCheck[]> {
  const controller = new AbortController();
  const ctx: PluginContext = {
    log: silent,
    signal: controller.signal,
    http: (options) => createHttpClient({ ...options, signal: controller.signal }),
  };
  const fields = Object.keys(target.row(0));
  const info: SyncInfo = {
    id: 'conformance',
    segmentName: 'conformance',
    mode: 'mirror',
    fields,
    ...target.sync,
  };
  const rows = (from: number, count: number, action: SyncRow['action'] = 'add'): SyncRow[] =>
    Array.from({ length: count }, (_, i) => ({
      id: `p-${from + i}`,
      action,
      fields: target.row(from + i),
    }));
  const batchSize = Math.min(target.plugin.limits.batchSize, 50);
  /** Send rows as the engine would: in batches, each retried while the plugin says transient. */
  const deliver = async (all: SyncRow[], attempts = 5): Promise<RowResult[]> => {
    const results: RowResult[] = [];
    for (let i = 0; i < all.length; i += batchSize) {
      let batch = all.slice(i, i + batchSize);
      for (let attempt = 1; batch.length > 0; attempt++) {
        try {
          const answered = await target.plugin.sync(
            { config: target.config, sync: info, batch },
            ctx,
          );
          const again = new Set(answered.filter((r) => r.status === 'retry').map((r) => r.id));
          results.push(...answered.filter((r) => r.status !== 'retry'));
          batch = batch.filter((r) => again.has(r.id));
          if (batch.length > 0 && attempt >= attempts) {
            results.push(...answered.filter((r) => r.status === 'retry'));
            break;
          }
        } catch (error) {
          if (!(error instanceof TransientError) || attempt >= attempts) throw error;
          await new Promise((resolve) =>
            setTimeout(resolve, Math.min(error.retryAfterMs ?? 50, 2000)),
          );
        }
      }
    }
    return results;
  };
  const checks: ConformanceCheck[] = [];
  const run = async (check: string, body: () => Promise<string>) => {
    try {
      checks.push({ check, ok: true, detail: await body() });
    } catch (error) {
      checks.push({
        check,
        ok: false,
        detail: error instanceof Error ? error.message : String(error),
      });
    } finally {
      target.emulator?.clearFaults();
    }
  };
  const expectHeld = async (ids: { n: number; present: boolean }[]) => {
    const keys = await target.read();
    const held = new Set(keys);
    const twice = keys.filter((k, i) => keys.indexOf(k) !== i);
    if (twice.length > 0) throw new Error(`held twice: ${[...new Set(twice)].join(', ')}`);
    for (const { n, present } of ids) {
      const key = target.keyOf(target.row(n), `p-${n}`);
      if (held.has(key) !== present) {
        throw new Error(`${key} is ${present ? 'missing from' : 'still at'} the destination`);
      }
    }
    return held;
  };

  await run('prepare is idempotent', async () => {
    await target.plugin.prepare?.({ config: target.config, sync: info }, ctx);
    await target.plugin.prepare?.({ config: target.config, sync: info }, ctx);
    return 'prepare ran twice';
  });

  await run('idempotent re-runs', async () => {
    const batch = rows(0, 5);
    const first = await deliver(batch);
    const second = await deliver(batch);
    for (const result of [...first, ...second]) {
      if (result.status !== 'ok') throw new Error(`row ${result.id}: ${result.status}`);
    }
    const held = await expectHeld([0, 1, 2, 3, 4].map((n) => ({ n, present: true })));
    const keys = [0, 1, 2, 3, 4].map((n) => target.keyOf(target.row(n), `p-${n}`));
    if (new Set(keys).size !== 5) throw new Error('rows map to the same key');
    return `${held.size} rows held after sending 5 twice`;
  });

  await run('partial failure', async () => {
    if (!target.rejectable) return 'skipped: this destination refuses no rows';
    const batch = [
      ...rows(10, 2),
      { id: 'p-bad', action: 'add' as const, fields: target.rejectable },
    ];
    const results = await deliver(batch);
    const bad = results.find((r) => r.id === 'p-bad');
    if (bad?.status !== 'rejected' || !bad.reason) {
      throw new Error(`the refused row came back ${JSON.stringify(bad)}`);
    }
    if (results.filter((r) => r.id !== 'p-bad').some((r) => r.status !== 'ok')) {
      throw new Error('the rest of the batch was not delivered');
    }
    await expectHeld([10, 11].map((n) => ({ n, present: true })));
    return `refused: ${bad.reason}`;
  });

  await run('rate limiting', async () => {
    if (!target.emulator) return 'skipped: no emulator';
    target.emulator.inject({ kind: 'status', status: 429, count: 1, retryAfterSeconds: 1 });
    try {
      const answered = await target.plugin.sync(
        { config: target.config, sync: info, batch: rows(20, 2) },
        ctx,
      );
      // A plugin may also answer the rows as `retry`.
      if (!answered.every((r) => r.status === 'retry' || r.status === 'ok')) {
        throw new Error('a 429 was reported as a row failure');
      }
    } catch (error) {
      if (error instanceof ConfigError) {
        throw new Error(`a 429 became a configuration error: ${error.message}`, { cause: error });
      }
      if (!(error instanceof TransientError)) throw error;
    }
    await deliver(rows(20, 2));
    await expectHeld([20, 21].map((n) => ({ n, present: true })));
    return 'retried after the 429';
  });

  await run('removal', async () => {
    await deliver(rows(30, 3));
    const results = await deliver([{ id: 'p-31', action: 'remove', fields: target.row(31) }]);
    if (results.some((r) => r.status !== 'ok')) throw new Error('the removal was not confirmed');
    await expectHeld([
      { n: 30, present: true },
      { n: 31, present: false },
      { n: 32, present: true },
    ]);
    return 'removed one of three';
  });

  await run('a dropped connection mid-batch', async () => {
    if (!target.emulator) return 'skipped: no emulator';
    target.emulator.inject({ kind: 'drop-after-apply', count: 1 });
    const batch = rows(40, 4);
    try {
      await target.plugin.sync({ config: target.config, sync: info, batch }, ctx);
    } catch (error) {
      if (!(error instanceof TransientError)) {
        throw new Error(`a dropped connection was not transient: ${(error as Error).message}`, {
          cause: error,
        });
      }
    }
    target.emulator.clearFaults();
    const results = await deliver(batch);
    if (results.some((r) => r.status !== 'ok'))
      throw new Error('the re-sent batch was not confirmed');
    await expectHeld([40, 41, 42, 43].map((n) => ({ n, present: true })));
    return 're-sent after the drop, no duplicate';
  });

  controller.abort();
  return checks;
}
