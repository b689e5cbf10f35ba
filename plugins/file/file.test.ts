import { spawn } from 'node:child_process';
import { appendFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  ConfigError,
  secretKeys,
  type PluginContext,
  type RowResult,
  type SyncInfo,
  type SyncRow,
} from 'audiencehub/sdk';
import file from './index.ts';
import type { FileConfig } from './client.ts';
import { csvCell, shouldRender, SMALL_SNAPSHOT_ROWS } from './sync.ts';

let dir: string;
let warnings: string[];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'audiencehub-file-'));
  warnings = [];
});
afterEach(() => rm(dir, { recursive: true, force: true }));

function context(signal = new AbortController().signal): PluginContext {
  const quiet = () => {};
  return {
    log: {
      debug: quiet,
      info: quiet,
      warn: (msg, data) => warnings.push(`${msg} ${JSON.stringify(data ?? {})}`),
      error: quiet,
    },
    signal,
    http: () => {
      throw new Error('the file destination makes no HTTP requests');
    },
  };
}

const configOf = (extra: Partial<FileConfig> = {}): FileConfig =>
  file.config.parse({ directory: dir, ...extra });

const SYNC: SyncInfo = {
  id: '3f2b9a10-0000-4000-8000-000000000001',
  segmentName: 'Loyal customers',
  mode: 'mirror',
  fields: ['email', 'first_name'],
};

const add = (id: string, fields: Record<string, unknown>): SyncRow => ({
  id,
  action: 'add',
  fields,
});
const update = (id: string, fields: Record<string, unknown>): SyncRow => ({
  id,
  action: 'update',
  fields,
});
const remove = (id: string, fields: Record<string, unknown>): SyncRow => ({
  id,
  action: 'remove',
  fields,
});
const person = (n: number) => ({ email: `p${n}@example.com`, first_name: `P${n}` });

/** A run as the engine makes it, with the batches given: prepare once, then each batch. */
async function run(config: FileConfig, sync: SyncInfo, batches: SyncRow[][]) {
  const ctx = context();
  await file.prepare!({ config, sync }, ctx);
  for (const batch of batches) {
    const results = await file.sync({ config, sync, batch }, ctx);
    expect(results).toEqual(batch.map((r) => ({ id: r.id, status: 'ok' })));
  }
}

/**
 * What the engine does with the plugin's limits: prepare once, batches of `limits.batchSize`,
 * at most `limits.concurrency` in flight, one result per row expected.
 */
async function runLikeEngine(config: FileConfig, sync: SyncInfo, rows: SyncRow[]) {
  const ctx = context();
  await file.prepare!({ config, sync }, ctx);
  const batches: SyncRow[][] = [];
  for (let i = 0; i < rows.length; i += file.limits.batchSize) {
    batches.push(rows.slice(i, i + file.limits.batchSize));
  }
  const results: RowResult[] = [];
  const worker = async () => {
    for (let batch = batches.shift(); batch; batch = batches.shift()) {
      const answer = await file.sync({ config, sync, batch }, ctx);
      expect(answer.map((r) => r.id)).toEqual(batch.map((r) => r.id));
      results.push(...answer);
    }
  };
  await Promise.all(Array.from({ length: file.limits.concurrency }, worker));
  return results;
}

const read = (name: string) => readFile(join(dir, name), 'utf8');
const csv = (...lines: string[]) => lines.map((l) => `${l}\r\n`).join('');

describe('file destination', () => {
  it('writes the segment as CSV: a header of the mapped fields, RFC 4180 quoting, formulas defused', async () => {
    const sync = { ...SYNC, fields: ['email', 'note', 'phone', 'spent', 'vip', 'tags', 'missing'] };
    await run(configOf(), sync, [
      [
        add('p1', {
          email: 'ada@example.com',
          note: 'says "hi", then\nleaves',
          phone: '+447700900123',
          spent: -12.5,
          vip: true,
          tags: ['a', 'b'],
        }),
        add('p2', { email: '=HYPERLINK("http://x","y")', note: '@SUM(A1)', phone: null, spent: 0 }),
        add('p3', { email: '-2+3', note: '\tcmd', spent: 1e21 }),
      ],
    ]);
    expect(await read('loyal-customers.csv')).toBe(
      csv(
        'email,note,phone,spent,vip,tags,missing',
        `ada@example.com,"says ""hi"", then\nleaves",'+447700900123,-12.5,true,"[""a"",""b""]",`,
        `"'=HYPERLINK(""http://x"",""y"")",'@SUM(A1),,0,,,`,
        `'-2+3,'\tcmd,,1e+21,,,`,
      ),
    );
    expect(csvCell('plain')).toBe('plain');
    expect(csvCell('a\rb')).toBe('"a\rb"');
  });

  it('writes JSON Lines: one object per member, fields in mapping order, null where missing', async () => {
    await run(configOf({ format: 'jsonl' }), SYNC, [
      [
        add('p2', { first_name: 'Bo', email: 'bo@example.com', extra: 1 }),
        add('p1', { email: 'a@b.c' }),
      ],
    ]);
    expect(await read('loyal-customers.jsonl')).toBe(
      '{"email":"a@b.c","first_name":null}\n{"email":"bo@example.com","first_name":"Bo"}\n',
    );
  });

  it('mirrors the segment across batches and runs: adds, updates and removes', async () => {
    const config = configOf();
    await run(config, SYNC, [[1, 2, 3].map((n) => add(`p${n}`, person(n)))]);
    expect(await read('loyal-customers.csv')).toBe(
      csv('email,first_name', 'p1@example.com,P1', 'p2@example.com,P2', 'p3@example.com,P3'),
    );

    const ctx = context();
    await file.prepare!({ config, sync: SYNC }, ctx);
    await file.sync(
      {
        config,
        sync: SYNC,
        batch: [
          update('p2', { email: 'p2@new.example', first_name: 'Pat' }),
          remove('p3', person(3)),
        ],
      },
      ctx,
    );
    // Each batch shows as soon as it is confirmed.
    expect(await read('loyal-customers.csv')).toBe(
      csv('email,first_name', 'p1@example.com,P1', 'p2@new.example,Pat'),
    );
    await file.sync(
      { config, sync: SYNC, batch: [add('p0', person(0)), remove('p1', person(1))] },
      ctx,
    );
    expect(await read('loyal-customers.csv')).toBe(
      csv('email,first_name', 'p0@example.com,P0', 'p2@new.example,Pat'),
    );

    // A run with nothing to send leaves the file as it is; so does a batch sent twice.
    await run(config, SYNC, [[add('p0', person(0)), remove('p9', person(9))]]);
    await run(config, SYNC, []);
    expect(await read('loyal-customers.csv')).toBe(
      csv('email,first_name', 'p0@example.com,P0', 'p2@new.example,Pat'),
    );
    expect((await readdir(dir)).sort()).toEqual(['.audiencehub', 'loyal-customers.csv']);
  });

  it('in upsert mode keeps everyone ever sent', async () => {
    const sync = { ...SYNC, mode: 'upsert' as const };
    await run(configOf(), sync, [[add('p1', person(1)), add('p2', person(2))]]);
    await run(configOf(), sync, [
      [update('p1', { ...person(1), first_name: 'Uno' }), add('p3', person(3))],
    ]);
    expect(await read('loyal-customers.csv')).toBe(
      csv('email,first_name', 'p1@example.com,Uno', 'p2@example.com,P2', 'p3@example.com,P3'),
    );
  });

  it('renders a large file only when cheap during a run, and catches up in the next prepare', async () => {
    expect(shouldRender({ stateRows: 0, pendingRows: 1 })).toBe(true);
    expect(shouldRender({ stateRows: SMALL_SNAPSHOT_ROWS - 1, pendingRows: 1 })).toBe(true);
    expect(shouldRender({ stateRows: 1_000_000, pendingRows: 5_000 })).toBe(false);
    expect(shouldRender({ stateRows: 1_000_000, pendingRows: 250_000 })).toBe(true);

    const config = configOf({ format: 'jsonl' });
    const rows = Array.from({ length: 60_000 }, (_, i) =>
      add(`p${String(i).padStart(6, '0')}`, { email: `p${i}@example.com` }),
    );
    const results = await runLikeEngine(config, SYNC, rows);
    expect(results).toHaveLength(60_000);
    const lines = async () => (await read('loyal-customers.jsonl')).split('\n').length - 1;
    // 50,000 rows are within the small size (rendered after each batch); the next two batches
    // (10,000 rows) are a fifth of that: journaled, confirmed, shown by the next render.
    expect(await lines()).toBe(50_000);

    await runLikeEngine(config, SYNC, [update('p000000', { email: 'changed@example.com' })]);
    expect(await lines()).toBe(60_000);
    await file.prepare!({ config, sync: SYNC }, context());
    const text = await read('loyal-customers.jsonl');
    expect(text.split('\n', 1)[0]).toBe('{"email":"changed@example.com","first_name":null}');
    expect(text.split('\n').length - 1).toBe(60_000);
  });

  describe('after a crash', () => {
    const stateDir = () => join(dir, '.audiencehub', SYNC.id);

    it('drops a half-written journal line and leftover temp files, and renders a correct file', async () => {
      const config = configOf();
      await run(config, SYNC, [[add('p1', person(1)), add('p2', person(2))]]);
      // A crash mid-append (the batch was never confirmed) and mid-render.
      await appendFile(
        join(stateDir(), 'journal.jsonl'),
        '{"seq":2,"rows":[["p3","add",{"email":"p3@',
      );
      await writeFile(join(stateDir(), 'state.jsonl.tmp'), '{"v":1,"seq":9');
      await writeFile(join(stateDir(), 'snapshot.tmp'), 'email,first_name\r\np9@exa');

      // The engine sends the unconfirmed batch again.
      await run(config, SYNC, [[add('p3', person(3))]]);
      expect(await read('loyal-customers.csv')).toBe(
        csv('email,first_name', 'p1@example.com,P1', 'p2@example.com,P2', 'p3@example.com,P3'),
      );
      expect((await readdir(stateDir())).sort()).toEqual([
        'journal.jsonl',
        'meta.json',
        'state.jsonl',
      ]);
      expect(warnings.join('\n')).toMatch(/cut an unfinished batch off the journal/);
    });

    it('skips journal lines already folded into the state (a crash before the journal was emptied)', async () => {
      const config = configOf();
      await run(config, SYNC, [[add('p1', person(1))], [add('p2', person(2))]]);
      // The state now holds batches 1 and 2; as if the journal had not been emptied after it.
      await writeFile(
        join(stateDir(), 'journal.jsonl'),
        '{"seq":1,"rows":[["p1","add",{"email":"stale"}]]}\n{"seq":2,"rows":[["p2","remove",{}]]}\n',
      );
      await run(config, SYNC, [[add('p3', person(3))]]);
      expect(await read('loyal-customers.csv')).toBe(
        csv('email,first_name', 'p1@example.com,P1', 'p2@example.com,P2', 'p3@example.com,P3'),
      );
    });

    it('killed at random points, it only ever shows whole files and loses no confirmed batch', async () => {
      const config = configOf();
      const sync = { ...SYNC, fields: ['email', 'round'] };
      let next = 0;
      let reads = 0;
      for (let crash = 0; crash < 3; crash++) {
        const child = spawn(
          process.execPath,
          ['--import', 'tsx', '--input-type=module', '-e', childScript(config, sync, next)],
          { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'inherit'] },
        );
        let acked = next - 1;
        child.stdout.setEncoding('utf8');
        child.stdout.on('data', (chunk: string) => {
          for (const m of chunk.matchAll(/acked (\d+)/g)) acked = Number(m[1]);
        });
        // Read the file while it is being written: always whole, never a torn line.
        const deadline = Date.now() + 1_500 + Math.random() * 1_000;
        while (Date.now() < deadline || acked < next + 2) {
          const text = await readFile(join(dir, 'loyal-customers.csv'), 'utf8').catch(() => null);
          if (text !== null) {
            expect(text.startsWith('email,round\r\n')).toBe(true);
            expect(text.endsWith('\r\n')).toBe(true);
            expect(
              text
                .split('\r\n')
                .every((l) => l === '' || /^[^,]+,\d+$/.test(l) || l === 'email,round'),
            ).toBe(true);
            reads++;
          }
          await new Promise((resolve) => setTimeout(resolve, 5));
          if (child.exitCode !== null) break;
        }
        child.kill('SIGKILL');
        await new Promise((resolve) => child.once('close', resolve));
        expect(acked).toBeGreaterThanOrEqual(next);
        // The engine resends what was not confirmed: the next run starts after the last ack.
        next = acked + 1;
      }
      await file.prepare!({ config, sync }, context());
      const shown = await read('loyal-customers.csv');
      // Batch `next` may have been journaled before the kill without its answer getting back.
      const expected = [modelCsv(next), modelCsv(next + 1)];
      expect(expected).toContain(shown);
      expect(reads).toBeGreaterThan(10);
    }, 60_000);
  });

  describe('the file name', () => {
    it('follows the template, and moves when the segment is renamed', async () => {
      const config = configOf({ fileName: 'export-{segment}-{sync}' });
      await run(config, SYNC, [[add('p1', person(1))]]);
      const first = `export-loyal-customers-${SYNC.id}.csv`;
      expect((await readdir(dir)).sort()).toEqual(['.audiencehub', first]);

      await run(config, { ...SYNC, segmentName: 'Loyal Customers (EU) — Q3' }, []);
      const second = `export-loyal-customers-eu-q3-${SYNC.id}.csv`;
      expect((await readdir(dir)).sort()).toEqual(['.audiencehub', second]);
      expect(await read(second)).toBe(csv('email,first_name', 'p1@example.com,P1'));
    });

    it('changes columns when the mapping does', async () => {
      await run(configOf(), SYNC, [[add('p1', { ...person(1), city: 'Oslo' })]]);
      await run(configOf(), { ...SYNC, fields: ['city', 'email'] }, []);
      expect(await read('loyal-customers.csv')).toBe(csv('city,email', 'Oslo,p1@example.com'));
    });

    it('is refused to a second sync while the first writes it, naming that sync', async () => {
      await run(configOf(), SYNC, [[add('p1', person(1))]]);
      const other = { ...SYNC, id: '3f2b9a10-0000-4000-8000-000000000002' };
      const error = await file.prepare!({ config: configOf(), sync: other }, context()).catch(
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toMatch(
        new RegExp(`loyal-customers.csv in .* is written by another sync \\(${SYNC.id}\\)`),
      );
      // The first keeps writing it; the second writes another name.
      await run(configOf(), SYNC, [[add('p2', person(2))]]);
      await run(configOf({ fileName: '{segment}-copy' }), other, [[add('p7', person(7))]]);
      expect(await read('loyal-customers.csv')).toBe(
        csv('email,first_name', 'p1@example.com,P1', 'p2@example.com,P2'),
      );
      expect(await read('loyal-customers-copy.csv')).toBe(
        csv('email,first_name', 'p7@example.com,P7'),
      );
    });
  });

  describe('check', () => {
    it('passes for a writable folder, creating it if needed, and leaves nothing behind', async () => {
      const nested = join(dir, 'exports', 'daily');
      expect(await file.check({ config: configOf({ directory: nested }) }, context())).toEqual({
        ok: true,
      });
      expect(await readdir(join(nested, '.audiencehub'))).toEqual([]);
    });

    it('says why a folder cannot be used', async () => {
      await writeFile(join(dir, 'taken'), 'a file');
      expect(
        await file.check({ config: configOf({ directory: join(dir, 'taken') }) }, context()),
      ).toEqual({
        ok: false,
        reason: `${join(dir, 'taken')} is a file, not a folder.`,
      });
      expect(
        await file.check(
          { config: configOf({ directory: join(dir, 'taken', 'below') }) },
          context(),
        ),
      ).toEqual({
        ok: false,
        reason: `${join(dir, 'taken', 'below')}, or a folder above it, is a file, not a folder.`,
      });
    });

    it('makes a run fail with a ConfigError when the folder cannot be written', async () => {
      await writeFile(join(dir, 'taken'), 'a file');
      const error = await file.prepare!(
        { config: configOf({ directory: join(dir, 'taken') }), sync: SYNC },
        context(),
      ).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toMatch(/is a file, not a folder/);
    });
  });

  it('has a config with nothing secret, refuses file names that are paths or hidden, and takes any field', async () => {
    expect(secretKeys(file.config)).toEqual([]);
    expect(configOf()).toEqual({ directory: dir, format: 'csv', fileName: '{segment}' });
    for (const fileName of ['../x', 'a/b', '.hidden', '{segment}-{date}']) {
      expect(file.config.safeParse({ directory: dir, fileName }).success).toBe(false);
    }
    // No list: any field name may be mapped.
    expect(await file.fields({ config: configOf() }, context())).toEqual([]);
  });
});

/** The rows of batch `b` of the crash test: 200 new members, 40 updated, 20 removed. */
function batchOf(
  b: number,
): { id: string; action: 'add' | 'update' | 'remove'; fields: { email: string; round: number } }[] {
  const id = (n: number) => `p${String(n).padStart(7, '0')}`;
  const rows = [];
  for (let i = 0; i < 200; i++)
    rows.push({
      id: id(b * 200 + i),
      action: 'add' as const,
      fields: { email: `${id(b * 200 + i)}@x.io`, round: b },
    });
  if (b >= 1)
    for (let i = 0; i < 40; i++)
      rows.push({
        id: id((b - 1) * 200 + i),
        action: 'update' as const,
        fields: { email: `${id((b - 1) * 200 + i)}@x.io`, round: b },
      });
  if (b >= 2)
    for (let i = 100; i < 120; i++)
      rows.push({
        id: id((b - 2) * 200 + i),
        action: 'remove' as const,
        fields: { email: `${id((b - 2) * 200 + i)}@x.io`, round: b - 2 },
      });
  return rows;
}

/** The CSV after batches 0 … count-1. */
function modelCsv(count: number): string {
  const members = new Map<string, { email: string; round: number }>();
  for (let b = 0; b < count; b++) {
    for (const row of batchOf(b)) {
      if (row.action === 'remove') members.delete(row.id);
      else members.set(row.id, row.fields);
    }
  }
  const ids = [...members.keys()].sort();
  return csv(
    'email,round',
    ...ids.map((id) => `${members.get(id)!.email},${members.get(id)!.round}`),
  );
}

/** A worker process running the plugin from batch `from` on, printing each confirmed batch. */
function childScript(config: FileConfig, sync: SyncInfo, from: number): string {
  return `
    import file from ${JSON.stringify(new URL('./index.ts', import.meta.url).pathname)};
    const batchOf = ${batchOf.toString()};
    const config = ${JSON.stringify(config)};
    const sync = ${JSON.stringify(sync)};
    const quiet = () => {};
    const ctx = { log: { debug: quiet, info: quiet, warn: quiet, error: quiet }, signal: new AbortController().signal, http: () => { throw new Error('no'); } };
    await file.prepare({ config, sync }, ctx);
    for (let b = ${from}; b < 10000; b++) {
      await file.sync({ config, sync, batch: batchOf(b) }, ctx);
      process.stdout.write('acked ' + b + '\\n');
    }`;
}
