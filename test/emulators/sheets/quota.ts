/**
 * Sheets' per-minute quotas (https://developers.google.com/workspace/sheets/api/limits): read
 * and write requests, each per user and per project. Google documents that the quotas "are
 * refilled every minute"; the emulator counts the requests of the last `windowMs` (a sliding
 * window), so a client that waits out a full window after a 429 always succeeds.
 */
import { quotaExceeded, type QuotaKind, type SheetsApiError } from './errors.ts';

export interface SheetsQuota {
  /** Write requests per window per user (60 at Google). */
  writesPerUser: number;
  /** Write requests per window per project (300 at Google). */
  writesPerProject: number;
  /** Read requests per window per user (60 at Google). */
  readsPerUser: number;
  /** Read requests per window per project (300 at Google). */
  readsPerProject: number;
  /** The window in milliseconds (60,000 at Google); shorten it so tests need not wait a minute. */
  windowMs: number;
}

export const GOOGLE_QUOTA: SheetsQuota = {
  writesPerUser: 60,
  writesPerProject: 300,
  readsPerUser: 60,
  readsPerProject: 300,
  windowMs: 60_000,
};

/** Arrival times within the window; amortised O(1) per request. */
class Window {
  private times: number[] = [];
  private head = 0;

  count(now: number, windowMs: number): number {
    while (this.head < this.times.length && this.times[this.head]! <= now - windowMs) this.head++;
    if (this.head > 1024 && this.head * 2 > this.times.length) {
      this.times = this.times.slice(this.head);
      this.head = 0;
    }
    return this.times.length - this.head;
  }

  add(now: number): void {
    this.times.push(now);
  }
}

export class QuotaCounter {
  private windows = new Map<string, Window>();

  constructor(public quota: SheetsQuota) {}

  private window(key: string): Window {
    let w = this.windows.get(key);
    if (!w) this.windows.set(key, (w = new Window()));
    return w;
  }

  /** Counts one request, or returns the 429 it gets (then it is not counted). */
  take(kind: QuotaKind, user: string, now: number): SheetsApiError | undefined {
    const q = this.quota;
    const perUser = kind === 'Write' ? q.writesPerUser : q.readsPerUser;
    const perProject = kind === 'Write' ? q.writesPerProject : q.readsPerProject;
    const mine = this.window(`${kind}:user:${user}`);
    const all = this.window(`${kind}:project`);
    if (mine.count(now, q.windowMs) >= perUser) return quotaExceeded(kind, 'user', perUser);
    if (all.count(now, q.windowMs) >= perProject) return quotaExceeded(kind, 'project', perProject);
    mine.add(now);
    all.add(now);
    return undefined;
  }

  reset(): void {
    this.windows.clear();
  }
}
