/**
 * The senders of the ingestion benchmark: `concurrency` loops posting batches to the hub's
 * `POST /v1/batch`, each sending its next batch as soon as the previous one is answered.
 * Run in a child process of the benchmark (so the hub's process holds only the hub), or in
 * the benchmark's own process with --senders-in-process.
 */
import http from 'node:http';
import { createTraffic, type Traffic, type TrafficOptions } from './generate.ts';

/** Hand out batch numbers to `concurrency` loops until every batch is done. */
export async function runSenders(
  traffic: Traffic,
  concurrency: number,
  send: (i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failed: unknown;
  const loop = async () => {
    while (failed === undefined && next < traffic.batches) {
      const i = next++;
      try {
        await send(i);
      } catch (error) {
        failed ??= error;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  if (failed !== undefined) throw failed;
}

export interface SenderStats {
  /** Time spent building and serialising batches. */
  clientSeconds: number;
  /** The largest request body, in bytes. */
  largest: number;
}

/**
 * A sender posting batch `i` of `traffic` to the hub, and what it spent. It uses `node:http`
 * with kept-alive connections rather than `fetch`, which costs it twice the CPU per request:
 * the senders share the machine with the hub they measure.
 */
export function batchSender(traffic: Traffic, url: string, auth: string) {
  const stats: SenderStats = { clientSeconds: 0, largest: 0 };
  const agent = new http.Agent({ keepAlive: true });
  const post = (body: string) =>
    new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = http.request(
        `${url}/v1/batch`,
        {
          method: 'POST',
          agent,
          headers: {
            authorization: auth,
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
          );
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  const send = async (i: number) => {
    const t0 = performance.now();
    const body = JSON.stringify({ batch: traffic.batch(i), sentAt: new Date().toISOString() });
    stats.clientSeconds += (performance.now() - t0) / 1000;
    stats.largest = Math.max(stats.largest, body.length);
    const { status, text } = await post(body);
    if (status !== 200) throw new Error(`batch ${i}: HTTP ${status} ${text.slice(0, 500)}`);
  };
  return { send, stats, close: () => agent.destroy() };
}

/** What the benchmark tells a sender process. */
export interface SenderJob {
  traffic: TrafficOptions;
  concurrency: number;
  url: string;
  auth: string;
}

/** What a sender process answers: its stats and CPU time, or the error that stopped it. */
export type SenderReport =
  (SenderStats & { cpuSeconds: number; peakRssMb: number }) | { error: string };

// As a child process: wait for the job, say ready, wait for 'go', send, report, exit.
if (process.send && process.argv.includes('--bench-sender')) {
  process.once('message', (job: SenderJob) => {
    const traffic = createTraffic(job.traffic);
    const { send, stats } = batchSender(traffic, job.url, job.auth);
    process.once('message', () => {
      const cpu = process.cpuUsage();
      runSenders(traffic, job.concurrency, send).then(
        () => {
          const { user, system } = process.cpuUsage(cpu);
          const report: SenderReport = {
            ...stats,
            cpuSeconds: (user + system) / 1e6,
            peakRssMb: process.resourceUsage().maxRSS / 1024,
          };
          process.send!(report, () => process.exit(0));
        },
        (error: unknown) => {
          const report: SenderReport = {
            error: error instanceof Error ? error.message : String(error),
          };
          process.send!(report, () => process.exit(1));
        },
      );
    });
    process.send!('ready');
  });
}
