/**
 * Calendar days (`YYYY-MM-DD`) in the property's reporting time zone, and the settling rule:
 * GA4 keeps processing a day's events for 24–48 hours after it ends, so a day is read once it
 * has settled and never again by an incremental read.
 */

/** UTC−12, the last zone on Earth to start a day (POSIX names invert the sign). */
export const EARLIEST_ZONE = 'Etc/GMT+12';

/** Is `zone` an IANA time zone this runtime knows? */
export function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-CA', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** Is `day` a real calendar day written `YYYY-MM-DD`? */
export function isDay(day: string): boolean {
  return /^\d{4}-\d{2}-\d{2}$/.test(day) && addDays(day, 0) === day;
}

/** The calendar day of `now` in `zone`, e.g. `2024-05-10`. */
export function dayIn(zone: string, now = Date.now()): string {
  return new Intl.DateTimeFormat('en-CA', {
    timeZone: zone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
  }).format(new Date(now));
}

export function addDays(day: string, n: number): string {
  const d = new Date(`${day}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

/**
 * The last day that has settled: `settleDays` whole days have passed since it ended in `zone`.
 * With 2, on 10 May (any hour) the last settled day is 7 May, which ended at least 48 hours ago.
 */
export function lastSettledDay(zone: string, settleDays: number, now = Date.now()): string {
  return addDays(dayIn(zone, now), -(settleDays + 1));
}

/** GA4's `YYYYMMDD` as `YYYY-MM-DD`. */
export const fromCompactDay = (day: string): string =>
  `${day.slice(0, 4)}-${day.slice(4, 6)}-${day.slice(6, 8)}`;
