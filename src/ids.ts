import { randomBytes } from 'node:crypto';

let lastMs = 0;
let seq = 0;
/** Random bytes drawn 4 KB at a time: one call for 256 ids instead of one each. */
let pool = Buffer.alloc(0);
let offset = 0;
const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');
/** Where an id's text is written before it becomes a string. */
const text = Buffer.alloc(36);

/**
 * A UUID version 7 (RFC 9562): time-ordered, so ids sort by creation and make good cursors
 * and index keys. A 12-bit counter keeps ids made within one millisecond in order.
 */
export function uuidv7(now = Date.now()): string {
  if (now <= lastMs) {
    seq = (seq + 1) & 0xfff;
    if (seq === 0) lastMs++;
    now = lastMs;
  } else {
    lastMs = now;
    seq = 0;
  }
  if (offset + 16 > pool.length) {
    pool = randomBytes(4096);
    offset = 0;
  }
  const bytes = pool.subarray(offset, (offset += 16));
  bytes.writeUIntBE(now, 0, 6);
  bytes[6] = 0x70 | (seq >> 8);
  bytes[7] = seq & 0xff;
  bytes[8] = 0x80 | (bytes[8]! & 0x3f);
  // Written out in one piece: joined from slices, the id would be a tree of a dozen strings,
  // several times the size of its 36 characters, for as long as it is kept (the identity cache
  // keeps one per person).
  let at = 0;
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) text[at++] = 0x2d;
    text[at++] = HEX_DIGITS[bytes[i]! >> 4]!;
    text[at++] = HEX_DIGITS[bytes[i]! & 0xf]!;
  }
  return text.toString('latin1');
}
