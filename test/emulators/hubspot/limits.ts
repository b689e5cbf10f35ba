/**
 * HubSpot's request limits for a private app (https://developers.hubspot.com/docs/api/usage-details):
 * - the CRM search endpoints: four requests per second per token (the `SECONDLY` policy;
 *   HubSpot's changelog "CRM Search API Rate Limit Increase" raised it from one to four; the
 *   current guide says five per account — the emulator keeps the lower number);
 * - every endpoint: a burst limit per app over a rolling ten seconds (`TEN_SECONDLY_ROLLING`;
 *   100 on Free and Starter accounts, 190 on Professional and Enterprise).
 * The emulator counts the requests of the last window (a sliding window), so a client that
 * waits out the Retry-After it sends always gets through. A refused request is not counted.
 */

/** Arrival times within a window; amortised O(1) per request. */
export class SlidingWindow {
  private times: number[] = [];
  private head = 0;

  constructor(
    readonly limit: number,
    readonly windowMs: number,
  ) {}

  /**
   * Counts a request arriving at `now`, or answers how many whole seconds until the window has
   * room (then the request is not counted).
   */
  take(now: number): { ok: true } | { ok: false; retryAfterSeconds: number } {
    while (this.head < this.times.length && this.times[this.head]! <= now - this.windowMs) {
      this.head++;
    }
    if (this.head > 1024 && this.head * 2 > this.times.length) {
      this.times = this.times.slice(this.head);
      this.head = 0;
    }
    if (this.times.length - this.head >= this.limit) {
      const freesAt = this.times[this.head]! + this.windowMs;
      return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((freesAt - now) / 1000)) };
    }
    this.times.push(now);
    return { ok: true };
  }

  /** Requests counted in the window ending at `now`. */
  count(now: number): number {
    return this.times.filter((t) => t > now - this.windowMs).length;
  }

  reset(): void {
    this.times = [];
    this.head = 0;
  }
}
