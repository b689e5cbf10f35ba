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
 * A destination kept in memory: what it holds per email, the record id it gave each (handed to
 * the engine as the row's `state`), every batch it received, the syncs it prepared, and switches
 * for the ways real services fail.
 */
export function memoryDestination() {
  const held = new Map<string, Record<string, unknown>>();
  /** Email → the record id the destination gave it, as a vendor would. */
  const records = new Map<string, string>();
  let lastRecord = 0;
  const batches: SyncRow[][] = [];
  /** The sync id of every `prepare` call that succeeded, in order. */
  const prepared: string[] = [];
  const behaviour = {
    reject: new Set<string>(),
    transientFailures: 0,
    /** The wait the service asks for with each transient failure. */
    retryAfterMs: 5,
    failAfterBatches: Infinity,
    configError: false,
    /** `prepare` calls to fail transiently before one succeeds. */
    prepareTransientFailures: 0,
    prepareConfigError: false,
    /** Confirm rows without a `state` (the ledger then keeps the state it had). */
    omitState: false,
    /** While set, every batch waits for it: a run in progress. */
    gate: null as Promise<void> | null,
    /** Set once a batch reached the gate. */
    waiting: false,
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
    prepare: async ({ config, sync }) => {
      if (behaviour.prepareConfigError) {
        throw new ConfigError(`key ${config.apiKey} may not write to this list`);
      }
      if (behaviour.prepareTransientFailures > 0) {
        behaviour.prepareTransientFailures--;
        throw new TransientError('busy', { retryAfterMs: behaviour.retryAfterMs });
      }
      prepared.push(sync.id);
    },
    sync: async ({ config, batch }) => {
      if (behaviour.gate) {
        behaviour.waiting = true;
        await behaviour.gate;
      }
      if (behaviour.configError) throw new ConfigError(`key ${config.apiKey} was revoked`);
      if (behaviour.transientFailures > 0) {
        behaviour.transientFailures--;
        throw new TransientError('busy', { retryAfterMs: behaviour.retryAfterMs });
      }
      if (batches.length >= behaviour.failAfterBatches) throw new Error('worker killed');
      batches.push(batch);
      return batch.map((row): RowResult => {
        const email = String(row.fields.email);
        if (behaviour.reject.has(email)) {
          return { id: row.id, status: 'rejected', reason: `${email} is unsubscribed` };
        }
        if (row.action === 'remove') {
          held.delete(email);
          records.delete(email);
          return { id: row.id, status: 'ok' };
        }
        // An update of a record that is not there (emptied by hand) creates it: an upsert.
        held.set(email, row.fields);
        let recordId = records.get(email);
        if (!recordId) records.set(email, (recordId = `rec-${++lastRecord}`));
        if (behaviour.omitState) return { id: row.id, status: 'ok' };
        const updates = row.action === 'update' ? Number(row.state?.updates ?? 0) + 1 : 0;
        return { id: row.id, status: 'ok', state: { recordId, updates } };
      });
    },
  });
  /** Lose everything, as when a person deletes the list at the destination. */
  const empty = () => {
    held.clear();
    records.clear();
  };
  return { plugin, held, records, batches, prepared, behaviour, empty };
}
