import { describe, expect, it } from 'vitest';
import { uuidv7 } from '../src/ids.ts';

describe('uuidv7', () => {
  it('makes version 7 ids that carry their millisecond and sort in the order made', () => {
    // Later than any id made before in this process, so its own milliseconds are used.
    const at = Date.UTC(2030, 0, 1);
    // Past the 256 ids one draw of random bytes serves, so pool refills are crossed.
    const ids = Array.from({ length: 1000 }, (_, i) => uuidv7(at + Math.floor(i / 300)));
    for (const id of ids) {
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    }
    expect(parseInt(ids[0]!.replace(/-/g, '').slice(0, 12), 16)).toBe(at);
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('draws fresh random bits for every id', () => {
    const tails = Array.from({ length: 600 }, () => uuidv7().slice(19));
    expect(new Set(tails).size).toBe(tails.length);
  });
});
