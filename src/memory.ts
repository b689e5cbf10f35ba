/**
 * How far V8 lets the heap grow past what a full collection left alive before it collects
 * again. On a machine with more than a gigabyte for the heap, V8's own rule allows up to four
 * times the live size. The hub keeps little alive (a few tens of megabytes) but allocates about
 * 10 KB per event it takes in, so under load that rule holds three times the live heap in
 * garbage, and the process's resident memory follows. A smaller factor costs a few more full
 * collections, each short because little is alive.
 */
import { setFlagsFromString } from 'node:v8';

const FLAG = 'heap-growing-percent';

/**
 * The V8 flag to set for `percent` (0 leaves V8's own rule), or nothing when the process was
 * started with its own (`node --heap-growing-percent=…`; Node refuses it in NODE_OPTIONS), which
 * wins.
 */
export function heapGrowthFlag(
  percent: number,
  execArgv: readonly string[] = process.execArgv,
): string | undefined {
  if (percent <= 0) return undefined;
  const named = (arg: string) => arg.replace(/^--/, '').replaceAll('_', '-').startsWith(FLAG);
  if (execArgv.some(named)) return undefined;
  return `--${FLAG}=${percent}`;
}

/** Set the heap's growth for this process (see above); returns the flag set, if any. */
export function applyHeapGrowth(percent: number): string | undefined {
  const flag = heapGrowthFlag(percent);
  if (flag) setFlagsFromString(flag);
  return flag;
}
