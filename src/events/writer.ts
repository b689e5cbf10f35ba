/**
 * Group commit for ingestion. Requests that arrive while a transaction is running are stored
 * together in the next one: within a process, batches never wait on each other's row locks,
 * a person seen in several batches is updated once, and one commit covers them all.
 */
import type { HubConfig } from '../config.ts';
import type { Db } from '../db/index.ts';
import { IdentityCache } from '../profiles/identity-cache.ts';
import { ingestMessages, type IngestResult } from './ingest.ts';
import type { PreparedMessage } from './message.ts';

export interface IngestWriter {
  /** Store messages; resolves once they are committed (or known duplicates). */
  write(messages: PreparedMessage[]): Promise<IngestResult>;
}

interface Pending {
  messages: PreparedMessage[];
  resolve(result: IngestResult): void;
  reject(error: unknown): void;
}

/**
 * @param maxMessages how many messages one transaction takes at most (the first request of a
 *   group is always taken whole).
 * @param writers transactions that may run at once: two keep PostgreSQL busy while the other
 *   commits; more would mostly wait on each other's row locks.
 * @param identities the identity cache every transaction, single or grouped, resolves through.
 *
 * @example
 * const writer = createIngestWriter(db, config);
 * const { accepted } = await writer.write(prepared);
 */
export function createIngestWriter(
  db: Db,
  config: HubConfig,
  {
    maxMessages = 2000,
    writers = 2,
    identities = new IdentityCache(),
  }: { maxMessages?: number; writers?: number; identities?: IdentityCache } = {},
): IngestWriter {
  const queue: Pending[] = [];
  const ingest = (messages: PreparedMessage[]) => ingestMessages(db, config, messages, identities);
  let active = 0;

  const settle = (p: Pending, run: () => Promise<IngestResult>) => run().then(p.resolve, p.reject);

  async function drain() {
    active++;
    while (queue.length > 0) {
      const group = [queue.shift()!];
      let size = group[0]!.messages.length;
      while (queue.length > 0 && size + queue[0]!.messages.length <= maxMessages) {
        size += queue[0]!.messages.length;
        group.push(queue.shift()!);
      }
      if (group.length === 1) {
        await settle(group[0]!, () => ingest(group[0]!.messages));
        continue;
      }
      try {
        const result = await ingest(group.flatMap((p) => p.messages));
        let offset = 0;
        for (const p of group) {
          const stored = result.stored.slice(offset, offset + p.messages.length);
          const accepted = stored.filter(Boolean).length;
          p.resolve({
            accepted,
            duplicates: p.messages.length - accepted,
            profileIds: result.profileIds.slice(offset, offset + p.messages.length),
            stored,
          });
          offset += p.messages.length;
        }
      } catch {
        // One request's failure must not fail the others: store each on its own.
        for (const p of group) await settle(p, () => ingest(p.messages));
      }
    }
    active--;
  }

  return {
    write(messages) {
      return new Promise<IngestResult>((resolve, reject) => {
        queue.push({ messages, resolve, reject });
        if (active < writers) void drain();
      });
    },
  };
}
