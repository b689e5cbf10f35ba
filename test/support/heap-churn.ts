/**
 * A process that allocates the way the hub does under load: a steady live set, and batches of
 * short-lived objects that each outlive a few young collections. Prints the largest V8 heap it
 * reached, in bytes. Argument: the heap growth percent to apply (0: V8's own rule).
 */
import { applyHeapGrowth } from '../../src/memory.ts';

applyHeapGrowth(Number(process.argv[2] ?? 0));
const live: unknown[] = [];
for (let i = 0; i < 300_000; i++) live.push({ key: `profile-${i}`, at: [i, i + 1] });
const inFlight: unknown[][] = new Array(40);
let peak = 0;
for (let round = 0; round < 4_000; round++) {
  const batch: unknown[] = [];
  for (let i = 0; i < 2_000; i++) batch.push({ messageId: `m-${round}-${i}`, at: [i, round] });
  inFlight[round % inFlight.length] = batch;
  if (round % 20 === 0) peak = Math.max(peak, process.memoryUsage().heapTotal);
}
process.stdout.write(`${peak}\n`);
