/**
 * What every vendor emulator in test/emulators offers: a base URL to point the vendor's real SDK
 * at, a record of the requests it served, and switches for the failures a real service shows.
 * The conformance kit (src/sdk) drives plugins against emulators through this interface.
 * ./http-harness.ts serves the HTTP side of it for every emulator.
 */

/** A failure to inject into the next requests (all of them while `count` is undefined). */
export type Fault =
  /** Answer with this status and the vendor's own error body, e.g. 429 with Retry-After. */
  | { kind: 'status'; status: 429 | 500 | 502 | 503; count?: number; retryAfterSeconds?: number }
  /** Accept the request, then destroy the socket without answering. */
  | { kind: 'drop'; count?: number }
  /** Destroy the socket after the request was applied: the change happened, the answer is lost. */
  | { kind: 'drop-after-apply'; count?: number };

export interface RecordedRequest {
  method: string;
  /** Path and query as received. */
  path: string;
  status: number;
  /** When the request arrived (ms since the emulator started). */
  at: number;
}

export interface Emulator {
  /** The base URL to give the plugin or SDK (`baseUrl`). */
  url: string;
  /** Every request served, in order. */
  requests: RecordedRequest[];
  /** Delay every answer by this many milliseconds (0 by default). */
  setLatency(ms: number): void;
  inject(fault: Fault): void;
  /** Forget injected faults and latency (state is kept). */
  clearFaults(): void;
  close(): Promise<void>;
}
