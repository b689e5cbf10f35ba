import {
  ConfigError,
  defineDestination,
  secret,
  TransientError,
  z,
  type RowResult,
  type SyncRow,
} from '../../src/sdk/index.ts';

/**
 * A destination kept in memory: what it holds per email, every batch it received, and switches
 * for the ways real services fail.
 */
export function memoryDestination() {
  const held = new Map<string, Record<string, unknown>>();
  const batches: SyncRow[][] = [];
  const behaviour = {
    reject: new Set<string>(),
    transientFailures: 0,
    failAfterBatches: Infinity,
    configError: false,
  };
  const plugin = defineDestination({
    name: 'memory',
    title: 'Memory',
    config: z.object({ apiKey: secret(z.string().min(4)) }),
    limits: { batchSize: 3, concurrency: 2 }, // small, so that runs take several batches
    check: async () => ({ ok: true }),
    fields: async () => [
      { key: 'email', label: 'Email', type: 'string', required: true, identifier: true },
      { key: 'plan', label: 'Plan', type: 'string' },
      { key: 'spent', label: 'Spent', type: 'number' },
    ],
    sync: async ({ config, batch }) => {
      if (behaviour.configError) throw new ConfigError(`key ${config.apiKey} was revoked`);
      if (behaviour.transientFailures > 0) {
        behaviour.transientFailures--;
        throw new TransientError('busy', { retryAfterMs: 5 });
      }
      if (batches.length >= behaviour.failAfterBatches) throw new Error('worker killed');
      batches.push(batch);
      return batch.map((row): RowResult => {
        const email = String(row.fields.email);
        if (behaviour.reject.has(email)) {
          return { id: row.id, status: 'rejected', reason: `${email} is unsubscribed` };
        }
        if (row.action === 'remove') held.delete(email);
        else held.set(email, row.fields);
        return { id: row.id, status: 'ok' };
      });
    },
  });
  return { plugin, held, batches, behaviour };
}
