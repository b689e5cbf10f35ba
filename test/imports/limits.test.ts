import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testConfig } from '../../src/config.ts';
import type { Database } from '../../src/db/index.ts';
import { runImport } from '../../src/imports/run.ts';
import { connectorContext, createSource, setStreamMapping } from '../../src/imports/store.ts';
import { silentLogger } from '../../src/log.ts';
import { defineSource, z } from '../../src/sdk/index.ts';
import { driver, testDatabase } from '../support/db.ts';
import { admin, importDeps } from './support.ts';

/**
 * A service on 127.0.0.1 that answers after 250 ms and notes when each request came: slower than
 * the limiter spaces starts (100 ms at 10 a second), so the concurrency limit is what binds.
 */
let server: Server;
let baseUrl: string;
let inFlight = 0;
let maxInFlight = 0;
let started: number[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    started.push(Date.now());
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    setTimeout(() => {
      inFlight--;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ email: `p${req.url!.split('/').pop()}@example.com` }));
    }, 250);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

const reset = () => {
  inFlight = 0;
  maxInFlight = 0;
  started = [];
};

/** Fetches `count` contacts at once, the way a connector pages a vendor API in parallel. */
const fetching = defineSource({
  name: 'fetching',
  title: 'Fetching',
  config: z.object({ baseUrl: z.string(), count: z.number().int() }),
  limits: { requestsPerSecond: 10, concurrency: 2 }, // the test service's declared limits
  async check() {
    return { ok: true };
  },
  async discover() {
    return [
      {
        name: 'contacts',
        fields: [{ name: 'email', type: 'string' as const }],
        primaryKey: ['email'],
        modes: ['full_refresh' as const],
      },
    ];
  },
  async *read({ config }, ctx) {
    const http = ctx.http({ baseUrl: config.baseUrl, vendor: 'Test' });
    const answers = await Promise.all(
      Array.from({ length: config.count }, (_, i) =>
        http.request<{ email: string }>({ method: 'GET', path: `/contacts/${i}` }),
      ),
    );
    for (const a of answers) yield { type: 'record' as const, data: a.data };
    yield { type: 'checkpoint' as const, cursor: null };
  },
});

describe(`a connector's declared limits (${driver})`, () => {
  it('hold for every request of an import run', async () => {
    const database: Database = await testDatabase();
    try {
      const deps = importDeps([fetching]);
      const source = await createSource(database.db, deps, admin, {
        name: 'Fetching',
        connector: 'fetching',
        config: { baseUrl, count: 12 },
      });
      await setStreamMapping(database.db, deps, admin, source.id, 'contacts', {
        mapping: { identities: { email: 'email' } },
      });
      reset();
      const run = await runImport(database.db, deps, testConfig(), source.id, 'contacts', 'manual');
      expect(run).toMatchObject({ status: 'succeeded', rowsImported: 12 });
      expect(maxInFlight).toBe(2);
      // 10 a second: the 11th request starts a second after the first at the earliest.
      expect(started[10]! - started[0]!).toBeGreaterThanOrEqual(999);
    } finally {
      await database.close();
    }
  });

  it('are shared by every call for one source, and apart for another', async () => {
    const deps = importDeps([fetching]);
    const signal = new AbortController().signal;
    const burst = (sourceId: string) => {
      const http = connectorContext(deps, sourceId, fetching, silentLogger, signal).http({
        baseUrl,
        vendor: 'Test',
      });
      return Array.from({ length: 3 }, () => http.request({ method: 'GET', path: '/x' }));
    };
    reset();
    await Promise.all([...burst('a'), ...burst('a')]);
    expect(maxInFlight).toBe(2);
    reset();
    await Promise.all([...burst('a'), ...burst('b')]);
    expect(maxInFlight).toBe(4);
  });
});
