/**
 * Group commit for ingestion. Requests that arrive while a transaction is running are stored
 * together in the next one: within a process, batches never wait on each other's row locks,
 * a person seen in several batches is updated once, and one commit covers them all.
 *
 * Messages are shared out by person among a few writers, each running one transaction at a
 * time: two transactions that both meet a new person would otherwise both need the lock on
 * that person's identities, and the second would wait for the first to commit. A request
 * whose messages went to several writers is answered once all of them have stored theirs.
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
 * @param writers transactions that may run at once, each for its own share of the people:
 *   two keep PostgreSQL busy while the other commits.
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
  const ingest = (messages: PreparedMessage[]) => ingestMessages(db, config, messages, identities);
  const settle = (p: Pending, run: () => Promise<IngestResult>) => run().then(p.resolve, p.reject);

  /** One writer: a queue, drained by one transaction at a time. */
  function writer() {
    const queue: Pending[] = [];
    let active = false;

    async function drain() {
      active = true;
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
      active = false;
    }

    return (messages: PreparedMessage[]) =>
      new Promise<IngestResult>((resolve, reject) => {
        queue.push({ messages, resolve, reject });
        if (!active) void drain();
      });
  }

  const shares = Array.from({ length: Math.max(1, writers) }, writer);
  if (shares.length === 1) return { write: (messages) => shares[0]!(messages) };

  return {
    async write(messages) {
      // Each message goes to the writer of its first identity: a person's messages usually
      // name the same first identity (the user id when there is one), so they meet in one.
      const parts = shares.map(() => ({ messages: [] as PreparedMessage[], at: [] as number[] }));
      messages.forEach((m, i) => {
        const first = m.identities[0];
        const part = parts[first ? shareOf(first.type, first.value, parts.length) : 0]!;
        part.messages.push(m);
        part.at.push(i);
      });
      const used = parts.filter((p) => p.messages.length > 0);
      const results = await Promise.all(used.map((p) => shares[parts.indexOf(p)]!(p.messages)));
      const profileIds = new Array<string>(messages.length);
      const stored = new Array<boolean>(messages.length);
      let accepted = 0;
      used.forEach((p, k) => {
        const result = results[k]!;
        accepted += result.accepted;
        p.at.forEach((i, j) => {
          profileIds[i] = result.profileIds[j]!;
          stored[i] = result.stored[j]!;
        });
      });
      return { accepted, duplicates: messages.length - accepted, profileIds, stored };
    },
  };
}

/** FNV-1a over an identity's type and value (without joining them), into `n` shares. */
function shareOf(type: string, value: string, n: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < type.length; i++) h = Math.imul(h ^ type.charCodeAt(i), 0x01000193);
  h = Math.imul(h ^ 0x3a, 0x01000193);
  for (let i = 0; i < value.length; i++) h = Math.imul(h ^ value.charCodeAt(i), 0x01000193);
  return (h >>> 0) % n;
}
