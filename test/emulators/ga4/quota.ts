/**
 * A property's Data API quotas (PropertyQuota in the discovery document): tokens per day, per
 * hour and per project per hour, concurrent requests, server errors per project per hour and
 * potentially thresholded requests per hour. Tokens are counted over sliding windows (`hourMs`,
 * `dayMs`) so tests can shorten them. Google does not publish how many tokens a request costs
 * ("most requests consume fewer than 10 tokens"); the emulator's model is `tokenCost`.
 */
import { quotaExhausted, type Ga4ApiError, type QuotaName } from './errors.ts';

export interface Ga4Quota {
  tokensPerDay: number;
  tokensPerHour: number;
  tokensPerProjectPerHour: number;
  concurrentRequests: number;
  serverErrorsPerProjectPerHour: number;
  potentiallyThresholdedRequestsPerHour: number;
  /** The hourly window in ms (3,600,000 at Google). */
  hourMs: number;
  /** The daily window in ms (86,400,000 at Google). */
  dayMs: number;
}

/** A standard property's quotas (discovery `PropertyQuota`). */
export const STANDARD_QUOTA: Ga4Quota = {
  tokensPerDay: 200_000,
  tokensPerHour: 40_000,
  tokensPerProjectPerHour: 14_000,
  concurrentRequests: 10,
  serverErrorsPerProjectPerHour: 10,
  potentiallyThresholdedRequestsPerHour: 120,
  hourMs: 3_600_000,
  dayMs: 86_400_000,
};

/** An Analytics 360 property's quotas. */
export const ANALYTICS_360_QUOTA: Ga4Quota = {
  ...STANDARD_QUOTA,
  tokensPerDay: 2_000_000,
  tokensPerHour: 400_000,
  tokensPerProjectPerHour: 140_000,
  concurrentRequests: 50,
  serverErrorsPerProjectPerHour: 50,
};

/** What one report costs: the emulator charges 1 token plus 1 per 1,000 rows returned. */
export type TokenCost = (report: {
  rows: number;
  rowCount: number;
  days: number;
  dimensions: number;
  metrics: number;
}) => number;

export const defaultTokenCost: TokenCost = ({ rows }) => 1 + Math.ceil(rows / 1000);

interface QuotaStatus {
  consumed: number;
  remaining: number;
}

/** Amounts with their times; `sum` over the last `windowMs`. */
class Window {
  private items: Array<{ at: number; n: number }> = [];

  sum(now: number, windowMs: number): number {
    while (this.items.length > 0 && this.items[0]!.at <= now - windowMs) this.items.shift();
    return this.items.reduce((s, i) => s + i.n, 0);
  }

  add(now: number, n: number): void {
    if (n > 0) this.items.push({ at: now, n });
  }
}

/** One property's counters. */
export class PropertyQuotaState {
  private hour = new Window();
  private day = new Window();
  private projectHour = new Map<string, Window>();
  private serverErrors = new Map<string, Window>();
  inFlight = 0;

  constructor(public quota: Ga4Quota) {}

  private perProject(map: Map<string, Window>, project: string): Window {
    let w = map.get(project);
    if (!w) map.set(project, (w = new Window()));
    return w;
  }

  /**
   * The 429 a request gets before it runs, if a quota is spent: "If any quota for a property is
   * exhausted, all requests to that property will return Resource Exhausted errors."
   */
  refuse(project: string, now: number): Ga4ApiError | undefined {
    const q = this.quota;
    const spent: Array<[QuotaName, boolean]> = [
      ['tokensPerDay', this.day.sum(now, q.dayMs) >= q.tokensPerDay],
      ['tokensPerHour', this.hour.sum(now, q.hourMs) >= q.tokensPerHour],
      [
        'tokensPerProjectPerHour',
        this.perProject(this.projectHour, project).sum(now, q.hourMs) >= q.tokensPerProjectPerHour,
      ],
      // The request itself is already counted in flight.
      ['concurrentRequests', this.inFlight > q.concurrentRequests],
    ];
    const name = spent.find(([, out]) => out)?.[0];
    return name ? quotaExhausted(name) : undefined;
  }

  /** Charges a served request (a request may take the remainder below zero). */
  charge(project: string, tokens: number, now: number): void {
    this.hour.add(now, tokens);
    this.day.add(now, tokens);
    this.perProject(this.projectHour, project).add(now, tokens);
  }

  serverError(project: string, now: number): void {
    this.perProject(this.serverErrors, project).add(now, 1);
  }

  /** The PropertyQuota of a response, with what this request consumed. */
  status(project: string, tokens: number, now: number): Record<string, QuotaStatus> {
    const q = this.quota;
    const status = (consumed: number, limit: number, used: number): QuotaStatus => ({
      consumed,
      remaining: limit - used,
    });
    return {
      tokensPerDay: status(tokens, q.tokensPerDay, this.day.sum(now, q.dayMs)),
      tokensPerHour: status(tokens, q.tokensPerHour, this.hour.sum(now, q.hourMs)),
      concurrentRequests: status(0, q.concurrentRequests, this.inFlight - 1),
      serverErrorsPerProjectPerHour: status(
        0,
        q.serverErrorsPerProjectPerHour,
        this.perProject(this.serverErrors, project).sum(now, q.hourMs),
      ),
      potentiallyThresholdedRequestsPerHour: status(0, q.potentiallyThresholdedRequestsPerHour, 0),
      tokensPerProjectPerHour: status(
        tokens,
        q.tokensPerProjectPerHour,
        this.perProject(this.projectHour, project).sum(now, q.hourMs),
      ),
    };
  }

  /** Tokens used in the current windows (for tests). */
  used(project: string, now: number): { hour: number; day: number; projectHour: number } {
    return {
      hour: this.hour.sum(now, this.quota.hourMs),
      day: this.day.sum(now, this.quota.dayMs),
      projectHour: this.perProject(this.projectHour, project).sum(now, this.quota.hourMs),
    };
  }

  reset(): void {
    this.hour = new Window();
    this.day = new Window();
    this.projectHour.clear();
    this.serverErrors.clear();
  }
}
