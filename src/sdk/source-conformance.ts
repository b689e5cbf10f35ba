/**
 * The conformance kit for source connectors: the checks every connector must pass, run against
 * the connector and (for a networked service) its emulator. It reads the way the hub's imports
 * do — from a stored checkpoint, keeping records by their key — and checks what the hub relies
 * on:
 * - **check** accepts a working configuration and answers a broken one with a reason (never
 *   throwing, never quoting a secret);
 * - **discover** describes each stream: fields, a primary key and a cursor field (when it has
 *   them) made of its fields;
 * - **a full read** yields plain-JSON records, each with a key, and ends with a checkpoint;
 * - **resume**: a read started from a checkpoint in the middle yields exactly the records that
 *   followed it — no repeat, no gap;
 * - **faults**: a 429 and a dropped connection during a read change nothing in what it yields;
 * - **abort**: aborting the signal ends a read promptly;
 * - **incremental**: a read from the last checkpoint yields nothing while nothing changed, and
 *   the changed records once something did.
 */
import type { PluginContext } from './destination.ts';
import { createHttpClient } from './http.ts';
import type { FaultInjector, ConformanceCheck } from './conformance.ts';
import { secretKeys } from './destination.ts';
import type { Cursor, ReadMode, SourceConnector, SourceStream } from './source.ts';

export interface SourceConformanceTarget<C> {
  connector: SourceConnector<C>;
  config: C;
  /** A configuration the source refuses (a wrong password, a missing file). */
  badConfig?: C;
  /** The service's emulator; without one, the fault checks are skipped and reported so. */
  emulator?: FaultInjector;
  /** The stream to read (default: the first incremental stream, else the first). */
  stream?: string;
  /**
   * Add or change records at the source, so that a read from the last checkpoint finds them.
   * Without it, the incremental check only shows that an unchanged source yields nothing.
   */
  change?: () => Promise<void>;
  /** Longest a single read may take (default 60 s). */
  timeoutMs?: number;
}

export { type ConformanceCheck } from './conformance.ts';

interface Read {
  /** Each record's key and its data as JSON, in order. */
  records: { key: string; data: string }[];
  /** Each checkpoint, with how many records preceded it. */
  checkpoints: { cursor: Cursor; after: number }[];
  /** The last message was a checkpoint. */
  endsWithCheckpoint: boolean;
}

const silent = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * Run every check; resolves to one entry per check (none throws).
 *
 * @example
 * const report = await sourceConformance({ connector, config, emulator, change: addContact });
 * expect(report.filter((c) => !c.ok)).toEqual([]);
 */
export async function sourceConformance<C>(
  target: SourceConformanceTarget<C>,
): Promise<ConformanceCheck[]> {
  const { connector, config } = target;
  const checks: ConformanceCheck[] = [];
  const controllers: AbortController[] = [];
  const context = (controller = new AbortController()): PluginContext => {
    controllers.push(controller);
    return {
      log: silent,
      signal: controller.signal,
      http: (options) =>
        createHttpClient({
          backoff: { baseMs: 50, maxMs: 2000 },
          ...options,
          signal: controller.signal,
        }),
    };
  };
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
  const secrets = [config, target.badConfig].flatMap((c) => secretValues(connector, c));

  await run('check accepts the configuration', async () => {
    const result = await connector.check({ config }, context());
    if (!result.ok) throw new Error(`check refused it: ${result.reason}`);
    return 'ok';
  });

  await run('check refuses a broken configuration', async () => {
    if (target.badConfig === undefined) return 'skipped: no broken configuration given';
    const result = await connector.check({ config: target.badConfig }, context());
    if (result.ok) throw new Error('check accepted it');
    if (!result.reason.trim()) throw new Error('check gave no reason');
    const leaked = secrets.find((s) => result.reason.includes(s));
    if (leaked !== undefined) throw new Error('the reason quotes a secret of the configuration');
    return `refused: ${result.reason}`;
  });

  let streams: SourceStream[] = [];
  await run('discover describes its streams', async () => {
    streams = await connector.discover({ config }, context());
    if (streams.length === 0) throw new Error('no stream');
    const names = streams.map((s) => s.name);
    const twice = names.filter((n, i) => names.indexOf(n) !== i);
    if (twice.length > 0) throw new Error(`streams named twice: ${twice.join(', ')}`);
    for (const stream of streams) describeProblems(stream);
    return names.join(', ');
  });
  const stream =
    streams.find((s) => s.name === target.stream) ??
    (target.stream === undefined
      ? (streams.find((s) => s.modes.includes('incremental')) ?? streams[0])
      : undefined);
  if (!stream) {
    checks.push({
      check: 'reads',
      ok: false,
      detail: target.stream ? `no stream named ${target.stream}` : 'nothing to read',
    });
    return checks;
  }
  const mode: ReadMode = stream.modes.includes('incremental') ? 'incremental' : 'full_refresh';
  const read = (cursor: Cursor | null, controller?: AbortController) =>
    readAll(connector, config, stream, cursor, mode, context(controller), target.timeoutMs);

  let full: Read | undefined;
  await run('a full read is complete and keyed', async () => {
    full = await read(null);
    if (full.records.length === 0) throw new Error('the read yielded no record');
    if (!full.endsWithCheckpoint) throw new Error('the read did not end with a checkpoint');
    if (stream.primaryKey.length > 0) {
      const keys = full.records.map((r) => r.key);
      const twice = keys.filter((k, i) => keys.indexOf(k) !== i);
      if (twice.length > 0)
        throw new Error(`primary keys read twice: ${twice.slice(0, 5).join(', ')}`);
    }
    return `${full.records.length} records, ${full.checkpoints.length} checkpoints from ${stream.name}`;
  });

  await run('a read resumed from a checkpoint repeats nothing and misses nothing', async () => {
    if (!full) throw new Error('no full read to resume');
    const middle = full.checkpoints.find((c) => c.after > 0 && c.after < full!.records.length);
    if (!middle) {
      throw new Error(
        'no checkpoint between records: give the source more records than one page, so a read checkpoints before its end',
      );
    }
    const resumed = await read(middle.cursor);
    const expected = full.records.slice(middle.after).map((r) => r.key);
    const got = resumed.records.map((r) => r.key);
    const missing = difference(expected, got);
    const extra = difference(got, expected);
    if (missing.length > 0)
      throw new Error(`missed after resuming: ${missing.slice(0, 5).join(', ')}`);
    if (extra.length > 0)
      throw new Error(`read again after resuming: ${extra.slice(0, 5).join(', ')}`);
    return `resumed after ${middle.after} records: ${got.length} more`;
  });

  const sameAsFull = async (fault: Parameters<FaultInjector['inject']>[0]) => {
    if (!full) throw new Error('no full read to compare with');
    target.emulator!.inject(fault);
    const again = await read(null);
    const missing = difference(
      full.records.map((r) => r.key),
      again.records.map((r) => r.key),
    );
    const extra = difference(
      again.records.map((r) => r.key),
      full.records.map((r) => r.key),
    );
    if (missing.length + extra.length > 0) {
      throw new Error(`${missing.length} records missing, ${extra.length} extra`);
    }
    return `the same ${again.records.length} records`;
  };
  await run('a 429 during a read changes nothing', async () => {
    if (!target.emulator) return 'skipped: no emulator';
    return sameAsFull({ kind: 'status', status: 429, count: 1, retryAfterSeconds: 1 });
  });
  await run('a dropped connection during a read changes nothing', async () => {
    if (!target.emulator) return 'skipped: no emulator';
    return sameAsFull({ kind: 'drop', count: 1 });
  });

  await run('aborting ends a read', async () => {
    const controller = new AbortController();
    let yielded = 0;
    const reading = readAll(connector, config, stream, null, mode, context(controller), 10_000, {
      first: () => controller.abort(),
      each: () => yielded++,
    }).then(
      () => 'ended',
      (error: unknown) => `ended with ${(error as Error).name}`,
    );
    const outcome = await Promise.race([
      reading,
      new Promise<string>((resolve) => setTimeout(() => resolve('still reading'), 5000).unref()),
    ]);
    if (outcome === 'still reading') throw new Error('the read went on for 5 s after the abort');
    // With more than one page to read, a connector that heeds the signal stops before the end.
    if (full && full.checkpoints.length > 2 && yielded >= full.records.length) {
      throw new Error(`all ${yielded} records were read despite the abort`);
    }
    return `${outcome} after ${yielded} records`;
  });

  await run('an incremental read yields only what changed', async () => {
    if (mode !== 'incremental') return `skipped: ${stream.name} is read in full each time`;
    if (!full) throw new Error('no full read');
    const last = full.checkpoints.at(-1)!.cursor;
    const quiet = await read(last);
    if (quiet.records.length > 0) {
      throw new Error(`nothing changed, yet ${quiet.records.length} records were read again`);
    }
    if (!target.change) return 'nothing changed: nothing read (no change to make was given)';
    await target.change();
    const after = await read(last);
    if (after.records.length === 0) throw new Error('the change was not read');
    const before = new Set(full.records.map((r) => `${r.key}\u0000${r.data}`));
    const unchanged = after.records.filter((r) => before.has(`${r.key}\u0000${r.data}`));
    if (unchanged.length > 0) {
      throw new Error(`${unchanged.length} unchanged records were read again`);
    }
    return `nothing read while unchanged; ${after.records.length} changed records after the change`;
  });

  for (const controller of controllers) controller.abort();
  return checks;
}

function describeProblems(stream: SourceStream) {
  const where = `stream ${stream.name}`;
  if (!stream.name.trim()) throw new Error('a stream has no name');
  if (stream.fields.length === 0) throw new Error(`${where} has no fields`);
  const names = stream.fields.map((f) => f.name);
  const twice = names.filter((n, i) => names.indexOf(n) !== i);
  if (twice.length > 0) throw new Error(`${where} names fields twice: ${twice.join(', ')}`);
  const unknown = stream.primaryKey.filter((k) => !names.includes(k));
  if (unknown.length > 0)
    throw new Error(`${where}: primary key ${unknown.join(', ')} is not a field`);
  if (stream.modes.length === 0) throw new Error(`${where} has no read mode`);
  // An incremental stream's cursor may be a field of its records, or a position of its own.
  if (stream.cursorField !== undefined && !names.includes(stream.cursorField)) {
    throw new Error(`${where}: cursor field ${stream.cursorField} is not a field`);
  }
}

/** Read a stream to its end, as the hub does, with a time limit. */
async function readAll<C>(
  connector: SourceConnector<C>,
  config: C,
  stream: SourceStream,
  cursor: Cursor | null,
  mode: ReadMode,
  ctx: PluginContext,
  timeoutMs = 60_000,
  on?: { first?: () => void; each?: () => void },
): Promise<Read> {
  const result: Read = { records: [], checkpoints: [], endsWithCheckpoint: false };
  const deadline = Date.now() + timeoutMs;
  for await (const message of connector.read({ config, stream, cursor, mode }, ctx)) {
    if (Date.now() > deadline) throw new Error(`the read took over ${timeoutMs} ms`);
    if (message.type === 'checkpoint') {
      assertJson(message.cursor, 'a checkpoint cursor');
      result.checkpoints.push({ cursor: message.cursor, after: result.records.length });
      result.endsWithCheckpoint = true;
      continue;
    }
    assertJson(message.data, 'a record');
    const key = recordKey(stream, message.data, message.key);
    if (key === undefined) {
      throw new Error(
        `a record of ${stream.name} has neither its primary key (${stream.primaryKey.join(', ') || 'none'}) nor a key`,
      );
    }
    if (result.records.length === 0) on?.first?.();
    on?.each?.();
    result.records.push({ key, data: JSON.stringify(message.data) });
    result.endsWithCheckpoint = false;
  }
  return result;
}

/** A record's identity, as the hub derives it. */
export function recordKey(
  stream: Pick<SourceStream, 'primaryKey'>,
  data: Record<string, unknown>,
  key?: string,
): string | undefined {
  if (stream.primaryKey.length > 0) {
    const values = stream.primaryKey.map((field) => data[field]);
    if (values.every((v) => v !== undefined && v !== null && v !== ''))
      return JSON.stringify(values);
  }
  return key === undefined || key === '' ? undefined : key;
}

/** Only what JSON carries: no Date, BigInt, Buffer, undefined or functions. */
function assertJson(value: unknown, what: string, path = ''): void {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return;
  if (typeof value === 'number') {
    if (!Number.isFinite(value))
      throw new Error(`${what} holds a non-finite number at ${path || '.'}`);
    return;
  }
  if (Array.isArray(value)) {
    value.forEach((item, i) => assertJson(item, what, `${path}[${i}]`));
    return;
  }
  if (typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    for (const [k, v] of Object.entries(value)) assertJson(v, what, path ? `${path}.${k}` : k);
    return;
  }
  const kind = value instanceof Object ? value.constructor.name : typeof value;
  throw new Error(
    `${what} holds a ${kind} at ${path || '.'}: only plain JSON values may be yielded`,
  );
}

/** Items of `a` not matched by an item of `b`, counting repeats. */
function difference(a: string[], b: string[]): string[] {
  const left = new Map<string, number>();
  for (const k of b) left.set(k, (left.get(k) ?? 0) + 1);
  const out: string[] = [];
  for (const k of a) {
    const n = left.get(k) ?? 0;
    if (n > 0) left.set(k, n - 1);
    else out.push(k);
  }
  return out;
}

/** The string values of the configuration's secret fields. */
function secretValues<C>(connector: SourceConnector<C>, config: C | undefined): string[] {
  if (!config || typeof config !== 'object') return [];
  const values: string[] = [];
  for (const key of secretKeys(connector.config)) {
    const value = (config as Record<string, unknown>)[key];
    if (typeof value === 'string' && value.length >= 4) values.push(value);
    else if (value && typeof value === 'object') {
      for (const inner of Object.values(value)) {
        if (typeof inner === 'string' && inner.length >= 8) values.push(inner);
      }
    }
  }
  return values;
}
