import { describe, expect, it } from 'vitest';
import {
  defineDestination,
  destinationConformance,
  secret,
  z,
  type RowResult,
} from '../../src/sdk/index.ts';
import { memoryDestination } from '../support/destinations.ts';

const row = (n: number) => ({ email: `p${n}@example.com`, plan: 'pro', spent: n });

describe('the conformance kit', () => {
  it('passes a destination that behaves', async () => {
    const memory = memoryDestination();
    memory.behaviour.reject.add('bad@example.com');
    const report = await destinationConformance({
      plugin: memory.plugin,
      config: { apiKey: 'sk-test-1' },
      row,
      rejectable: { email: 'bad@example.com', plan: 'pro', spent: 0 },
      read: async () => [...memory.held.keys()],
      keyOf: (fields) => String(fields.email),
    });
    expect(report.filter((c) => !c.ok)).toEqual([]);
    expect(report.map((c) => c.check)).toEqual([
      'prepare is idempotent',
      'idempotent re-runs',
      'partial failure',
      'rate limiting',
      'removal',
      'a dropped connection mid-batch',
    ]);
    // Without an emulator the fault scenarios say they were skipped, not that they passed.
    expect(report.find((c) => c.check === 'rate limiting')!.detail).toMatch(/^skipped/);
  });

  it('catches a destination that duplicates rows and fails a whole batch for one bad row', async () => {
    const held: string[] = [];
    const careless = defineDestination({
      name: 'careless',
      title: 'Careless',
      config: z.object({ apiKey: secret(z.string()) }),
      limits: { batchSize: 10, concurrency: 1 },
      check: async () => ({ ok: true }),
      fields: async () => [],
      sync: async ({ batch }) => {
        if (batch.some((r) => r.fields.email === 'bad@example.com')) {
          return batch.map((r): RowResult => ({
            id: r.id,
            status: 'rejected',
            reason: 'bad batch',
          }));
        }
        for (const r of batch) {
          if (r.action === 'remove') held.splice(held.indexOf(String(r.fields.email)), 1);
          else held.push(String(r.fields.email)); // appends again on every re-send
        }
        return batch.map((r): RowResult => ({ id: r.id, status: 'ok' }));
      },
    });
    const report = await destinationConformance({
      plugin: careless,
      config: { apiKey: 'x' },
      row,
      rejectable: { email: 'bad@example.com', plan: 'pro', spent: 0 },
      read: async () => [...held],
      keyOf: (fields) => String(fields.email),
    });
    const failed = Object.fromEntries(report.filter((c) => !c.ok).map((c) => [c.check, c.detail]));
    expect(failed['idempotent re-runs']).toMatch(/held twice: p0@example.com/);
    expect(failed['partial failure']).toBe('the rest of the batch was not delivered');
  });
});
