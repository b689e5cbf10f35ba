/**
 * Fills an identity cache the way ingestion does, and prints the bytes of V8 heap it holds per
 * entry. Keys are joined from an identity's type and a value parsed from a request; profile ids
 * are made by the hub. Run with --expose-gc.
 */
import { uuidv7 } from '../../src/ids.ts';
import { identityString } from '../../src/profiles/identity.ts';
import { IdentityCache } from '../../src/profiles/identity-cache.ts';

const gc = (globalThis as { gc?: () => void }).gc!;

/** Batches of 500 people, each with a user id and a device, as the requests bring them. */
function fill(cache: IdentityCache, people: number) {
  const requests = JSON.parse(
    JSON.stringify(
      Array.from({ length: people }, (_, i) => ({
        userId: `user_${String(i).padStart(7, '0')}`,
        anonymousId: `f0cf8b70-f368-4a1d-82fe-${String(i).padStart(12, '0')}`,
      })),
    ),
  ) as { userId: string; anonymousId: string }[];
  for (let i = 0; i < people; i += 500) {
    const learned = new Map<string, string>();
    for (const { userId, anonymousId } of requests.slice(i, i + 500)) {
      const profile = uuidv7();
      learned.set(identityString({ type: 'user_id', value: userId }), profile);
      learned.set(identityString({ type: 'anonymous_id', value: anonymousId }), profile);
    }
    cache.committed({ epoch: 0, checked: true, learned, losers: new Set() });
  }
}

gc();
const before = process.memoryUsage().heapUsed;
const cache = new IdentityCache();
fill(cache, 20_000);
gc();
const held = process.memoryUsage().heapUsed - before;
process.stdout.write(`${Math.round(held / cache.size)}\n`);
