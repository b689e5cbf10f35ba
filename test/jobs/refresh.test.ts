import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testConfig } from '../../src/config.ts';
import type { Database } from '../../src/db/index.ts';
import { refreshPause, startRefresh } from '../../src/jobs/worker.ts';
import { createLogger } from '../../src/log.ts';
import { driver, testDatabase } from '../support/db.ts';
import { send } from '../support/ingest.ts';
import { until } from '../support/wait.ts';

let database: Database;
beforeAll(async () => {
  database = await testDatabase();
});
afterAll(async () => {
  await database.close();
});

interface Round {
  msg: string;
  events: number;
  roundMs: number;
  restMs: number;
}

describe(`the refresh loop (${driver})`, () => {
  it('rests by the rule after each round that caught up: three times the round, within bounds', async () => {
    const lines: string[] = [];
    const log = createLogger('debug', {}, (line) => lines.push(line));
    const rounds = () =>
      lines.map((l) => JSON.parse(l) as Round).filter((r) => r.msg === 'refresh caught up');
    // An interval of 1 ms, so that every round that folds anything lasts longer than a third of it.
    const loop = startRefresh(database.db, log, { intervalMs: 1, maxIntervalMs: 60_000 });
    try {
      await send(database.db, testConfig(), [
        { type: 'track', event: 'Viewed', userId: 'rest-1' },
        { type: 'track', event: 'Viewed', userId: 'rest-2' },
      ]);
      const seen = await until(
        async () => rounds(),
        (r) => r.some((round) => round.events > 0),
      );
      const folding = seen.find((round) => round.events > 0);
      expect(folding).toBeDefined();
      expect(folding!.restMs).toBeCloseTo(3 * folding!.roundMs, 6);
      expect(folding!.restMs).toBeGreaterThan(1);
      for (const round of seen) {
        expect(round.restMs).toBe(refreshPause(round.roundMs, 1, 60_000));
      }
    } finally {
      await loop.stop();
    }
  });
});
