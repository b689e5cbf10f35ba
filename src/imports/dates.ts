/**
 * Reading dates and times out of source rows: ISO 8601 by default, or a pattern such as
 * `YYYY-MM-DD HH:mm:ss` or `DD/MM/YYYY`, read in a time zone (UTC unless said otherwise) when the
 * text carries no offset of its own; `unix` and `unix_ms` for epoch numbers.
 */

/** The tokens a pattern may use; anything else is matched literally. */
const TOKENS: Record<string, { pattern: string; part: keyof Parts }> = {
  YYYY: { pattern: '(\\d{4})', part: 'year' },
  MM: { pattern: '(\\d{2})', part: 'month' },
  M: { pattern: '(\\d{1,2})', part: 'month' },
  DD: { pattern: '(\\d{2})', part: 'day' },
  D: { pattern: '(\\d{1,2})', part: 'day' },
  HH: { pattern: '(\\d{2})', part: 'hour' },
  H: { pattern: '(\\d{1,2})', part: 'hour' },
  mm: { pattern: '(\\d{2})', part: 'minute' },
  ss: { pattern: '(\\d{2})', part: 'second' },
  SSS: { pattern: '(\\d{1,6})', part: 'fraction' },
  Z: { pattern: '(Z|[+-]\\d{2}:?\\d{2})', part: 'offset' },
};
const TOKEN = /YYYY|SSS|MM|DD|HH|mm|ss|M|D|H|Z/g;

interface Parts {
  year: string;
  month: string;
  day: string;
  hour: string;
  minute: string;
  second: string;
  fraction: string;
  offset: string;
}

/** A compiled reader: text (or a number, for the epoch formats) → Date, or null when it does not fit. */
export type DateReader = (value: unknown) => Date | null;

/**
 * Why a format or a time zone cannot be used, or null when it can.
 *
 * @example
 * dateFormatProblem('YYYY-MM-DD HH:mm:ss'); // null
 * dateFormatProblem('DD.MM'); // 'the format needs YYYY, MM (or M) and DD (or D)'
 */
export function dateFormatProblem(format: string): string | null {
  if (format === 'unix' || format === 'unix_ms' || format === 'iso') return null;
  const tokens: string[] = format.match(TOKEN) ?? [];
  const has = (...names: string[]) => names.some((n) => tokens.includes(n));
  if (!has('YYYY') || !has('MM', 'M') || !has('DD', 'D')) {
    return 'the format needs YYYY, MM (or M) and DD (or D)';
  }
  const parts = tokens.map((t) => TOKENS[t]!.part);
  const twice = parts.find((p, i) => parts.indexOf(p) !== i);
  if (twice) return `the format gives the ${twice} twice`;
  return null;
}

/** Why a time zone cannot be used (not an IANA name such as `Europe/London`), or null. */
export function timeZoneProblem(timeZone: string): string | null {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone });
    return null;
  } catch {
    return `"${timeZone}" is not a time zone (use an IANA name such as Europe/London)`;
  }
}

const ISO =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$/i;

/**
 * A reader for `format` (ISO 8601 when absent) in `timeZone` (UTC when absent).
 *
 * @example
 * const read = dateReader('YYYY-MM-DD HH:mm:ss', 'Europe/London');
 * read('2011-06-01 09:30:00'); // 2011-06-01T08:30:00.000Z (BST)
 */
export function dateReader(format?: string, timeZone?: string): DateReader {
  const zone = timeZone && timeZone.toUpperCase() !== 'UTC' ? timeZone : undefined;
  const local = zone ? zonedTime(zone) : utcTime;
  if (format === 'unix' || format === 'unix_ms') {
    const scale = format === 'unix' ? 1000 : 1;
    return (value) => {
      const n =
        typeof value === 'number'
          ? value
          : typeof value === 'string' && /^\s*-?\d+(\.\d+)?\s*$/.test(value)
            ? Number(value)
            : NaN;
      if (!Number.isFinite(n)) return null;
      const d = new Date(Math.round(n * scale));
      return Number.isNaN(d.getTime()) ? null : d;
    };
  }
  if (!format || format === 'iso') {
    return (value) => {
      if (typeof value !== 'string') return null;
      const m = ISO.exec(value.trim());
      if (!m) return null;
      return build(
        {
          year: m[1]!,
          month: m[2]!,
          day: m[3]!,
          hour: m[4] ?? '0',
          minute: m[5] ?? '0',
          second: m[6] ?? '0',
          fraction: m[7] ?? '',
          offset: m[8] ?? '',
        },
        local,
      );
    };
  }
  const order: (keyof Parts)[] = [];
  let source = '';
  let last = 0;
  for (const match of format.matchAll(TOKEN)) {
    source += escape(format.slice(last, match.index));
    const token = TOKENS[match[0]]!;
    source += token.pattern;
    order.push(token.part);
    last = match.index + match[0].length;
  }
  source += escape(format.slice(last));
  const regex = new RegExp(`^${source}$`);
  return (value) => {
    if (typeof value !== 'string') return null;
    const m = regex.exec(value.trim());
    if (!m) return null;
    const parts: Parts = {
      year: '',
      month: '',
      day: '',
      hour: '0',
      minute: '0',
      second: '0',
      fraction: '',
      offset: '',
    };
    order.forEach((part, i) => (parts[part] = m[i + 1]!));
    return build(parts, local);
  };
}

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Milliseconds since the epoch of a wall-clock time, or NaN when there is no such time. */
type LocalTime = (year: number, month: number, day: number, ms: number) => number;

function build(p: Parts, local: LocalTime): Date | null {
  const year = Number(p.year);
  const month = Number(p.month);
  const day = Number(p.day);
  const hour = Number(p.hour);
  const minute = Number(p.minute);
  const second = Number(p.second);
  if (month < 1 || month > 12 || day < 1 || day > daysIn(year, month)) return null;
  if (hour > 23 || minute > 59 || second > 59) return null;
  const ms = Math.round(Number(`0.${p.fraction || '0'}`) * 1000);
  const time = ((hour * 60 + minute) * 60 + second) * 1000 + ms;
  let epoch: number;
  if (p.offset) {
    epoch = utcTime(year, month, day, time) - offsetMs(p.offset);
  } else {
    epoch = local(year, month, day, time);
  }
  return Number.isNaN(epoch) ? null : new Date(epoch);
}

const daysIn = (year: number, month: number) => new Date(Date.UTC(year, month, 0)).getUTCDate();

function offsetMs(offset: string): number {
  if (offset.toUpperCase() === 'Z') return 0;
  const sign = offset.startsWith('-') ? -1 : 1;
  const digits = offset.slice(1).replace(':', '');
  return sign * (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2, 4) || '0')) * 60_000;
}

function utcTime(year: number, month: number, day: number, ms: number): number {
  // Date.UTC maps years 0–99 to 1900–1999: set the year apart.
  const d = new Date(Date.UTC(2000, month - 1, day) + ms);
  d.setUTCFullYear(year);
  return d.getTime();
}

/**
 * Wall-clock time in an IANA zone → epoch. The zone's offset is looked up with Intl once per
 * quarter hour of time (rows of one file cluster), so a large import pays for few lookups.
 */
function zonedTime(timeZone: string): LocalTime {
  const format = new Intl.DateTimeFormat('en-US', {
    timeZone,
    hourCycle: 'h23',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    hour: 'numeric',
    minute: 'numeric',
    second: 'numeric',
  });
  const cache = new Map<number, number>();
  const offsetAt = (epoch: number): number => {
    // Offsets change on quarter hours (Newfoundland's at :30 UTC).
    const slot = Math.floor(epoch / 900_000);
    let offset = cache.get(slot);
    if (offset === undefined) {
      const at = slot * 900_000;
      const parts = Object.fromEntries(
        format.formatToParts(new Date(at)).map((p) => [p.type, p.value]),
      ) as Record<string, string>;
      const wall = utcTime(
        Number(parts.year),
        Number(parts.month),
        Number(parts.day),
        ((Number(parts.hour) * 60 + Number(parts.minute)) * 60 + Number(parts.second)) * 1000,
      );
      offset = wall - at;
      if (cache.size > 10_000) cache.clear();
      cache.set(slot, offset);
    }
    return offset;
  };
  return (year, month, day, ms) => {
    const wall = utcTime(year, month, day, ms);
    // The offset at the guess, then at the corrected instant: right on both sides of a change
    // (a time skipped by a spring-forward resolves to the later offset).
    const first = wall - offsetAt(wall);
    return wall - offsetAt(first);
  };
}
