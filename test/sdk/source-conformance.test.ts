import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  defineSource,
  secret,
  sourceConformance,
  z,
  type SourceMessage,
} from '../../src/sdk/index.ts';

const Config = z.object({ token: secret(z.string()), pageSize: z.number().default(3) });
type Config = z.infer<typeof Config>;

interface Contact {
  id: number;
  email: string;
  updated: number;
}

/**
 * An in-memory CRM: contacts read in pages ordered by (updated, id), a checkpoint after each
 * page. `flaws` breaks the contract in the ways the kit must catch.
 */
function memorySource(
  flaws: {
    resumeRepeats?: boolean;
    noFinalCheckpoint?: boolean;
    dates?: boolean;
    ignoresAbort?: boolean;
  } = {},
) {
  const contacts: Contact[] = Array.from({ length: 10 }, (_, i) => ({
    id: i + 1,
    email: `c${i + 1}@example.com`,
    updated: 100 + i,
  }));
  const connector = defineSource<Config>({
    name: 'memory-crm',
    title: 'Memory CRM',
    config: Config,
    async check({ config }) {
      return config.token === 'good-token'
        ? { ok: true }
        : { ok: false, reason: 'the token was refused (401)' };
    },
    async discover() {
      return [
        {
          name: 'contacts',
          fields: [
            { name: 'id', type: 'integer' },
            { name: 'email', type: 'string' },
            { name: 'updated', type: 'integer' },
          ],
          primaryKey: ['id'],
          modes: ['full_refresh', 'incremental'],
          cursorField: 'updated',
        },
      ];
    },
    async *read({ config, cursor }, ctx): AsyncGenerator<SourceMessage> {
      if (config.token !== 'good-token') throw new ConfigError('the token was refused');
      const after = (cursor as [number, number] | null) ?? [-1, -1];
      const sorted = [...contacts].sort((a, b) => a.updated - b.updated || a.id - b.id);
      let rest = sorted.filter(
        (c) => c.updated > after[0] || (c.updated === after[0] && c.id > after[1]),
      );
      if (flaws.resumeRepeats && cursor) rest = sorted.filter((c) => c.updated >= after[0] - 1);
      let last = after;
      while (rest.length > 0) {
        if (ctx.signal.aborted && !flaws.ignoresAbort) return;
        const page = rest.splice(0, config.pageSize);
        for (const c of page) {
          yield {
            type: 'record',
            data: flaws.dates ? { ...c, seen: new Date() } : { ...c },
          } as SourceMessage;
        }
        last = [page.at(-1)!.updated, page.at(-1)!.id];
        if (rest.length > 0 || !flaws.noFinalCheckpoint) yield { type: 'checkpoint', cursor: last };
      }
      if (rest.length === 0 && last === after) yield { type: 'checkpoint', cursor: last };
    },
  });
  return { connector, contacts };
}

const failed = (report: { check: string; ok: boolean }[]) =>
  report.filter((c) => !c.ok).map((c) => c.check);

describe('the source conformance kit', () => {
  it('passes a connector that keeps the contract', async () => {
    const { connector, contacts } = memorySource();
    const report = await sourceConformance({
      connector,
      config: { token: 'good-token', pageSize: 3 },
      badConfig: { token: 'wrong-token', pageSize: 3 },
      change: async () => {
        contacts[0]!.updated = 500;
        contacts.push({ id: 11, email: 'c11@example.com', updated: 501 });
      },
    });
    expect(failed(report)).toEqual([]);
    expect(report.map((c) => c.check)).toEqual([
      'check accepts the configuration',
      'check refuses a broken configuration',
      'discover describes its streams',
      'a full read is complete and keyed',
      'a read resumed from a checkpoint repeats nothing and misses nothing',
      'a 429 during a read changes nothing',
      'a dropped connection during a read changes nothing',
      'aborting ends a read',
      'an incremental read yields only what changed',
    ]);
    // Without an emulator the fault checks say they were skipped, not that they passed.
    expect(report.find((c) => c.check.startsWith('a 429'))!.detail).toMatch(/^skipped/);
    expect(report.at(-1)!.detail).toMatch(/2 changed records/);
  });

  it('catches a resume that reads records again', async () => {
    const report = await sourceConformance({
      connector: memorySource({ resumeRepeats: true }).connector,
      config: { token: 'good-token', pageSize: 3 },
    });
    expect(failed(report)).toContain(
      'a read resumed from a checkpoint repeats nothing and misses nothing',
    );
  });

  it('catches a read that does not end with a checkpoint, and values that are not JSON', async () => {
    const noEnd = await sourceConformance({
      connector: memorySource({ noFinalCheckpoint: true }).connector,
      config: { token: 'good-token', pageSize: 3 },
    });
    expect(noEnd.find((c) => c.check === 'a full read is complete and keyed')!.detail).toMatch(
      /did not end with a checkpoint/,
    );
    const dates = await sourceConformance({
      connector: memorySource({ dates: true }).connector,
      config: { token: 'good-token', pageSize: 3 },
    });
    expect(dates.find((c) => c.check === 'a full read is complete and keyed')!.detail).toMatch(
      /Date at seen/,
    );
  });

  it('catches a read that ignores the abort signal', async () => {
    const report = await sourceConformance({
      connector: memorySource({ ignoresAbort: true }).connector,
      config: { token: 'good-token', pageSize: 3 },
    });
    expect(report.find((c) => c.check === 'aborting ends a read')).toMatchObject({
      ok: false,
      detail: expect.stringMatching(/despite the abort/),
    });
  });

  it('catches a check that quotes the secret it refused', async () => {
    const { connector } = memorySource();
    const leaky = {
      ...connector,
      check: async ({ config }: { config: Config }) => ({
        ok: false as const,
        reason: `token ${config.token} is wrong`,
      }),
    };
    const report = await sourceConformance({
      connector: leaky,
      config: { token: 'good-token', pageSize: 3 },
      badConfig: { token: 'wrong-token', pageSize: 3 },
    });
    expect(report.find((c) => c.check === 'check refuses a broken configuration')).toMatchObject({
      ok: false,
      detail: 'the reason quotes a secret of the configuration',
    });
  });
});
