/**
 * The Mailchimp emulator on its own thread, as the service would be on its own machine: the
 * benchmark's hub does not spend its event loop on the emulator's work (storing members,
 * rendering answers), which would otherwise delay the hub's own calls. The test helpers the
 * benchmark uses are forwarded as messages.
 */
import { isMainThread, parentPort, Worker } from 'node:worker_threads';
import {
  startMailchimpEmulator,
  type MailchimpEmulator,
} from '../../test/emulators/mailchimp/index.ts';

type Op = 'createList' | 'setLatency' | 'stats' | 'memberCount' | 'close';
interface Request {
  id: number;
  op: Op;
  args: unknown[];
}

export interface RemoteMailchimp {
  url: string;
  apiKey: string;
  createList(input: { name: string }): Promise<{ id: string }>;
  setLatency(ms: number): Promise<void>;
  /** Requests served so far, and the most in flight at once for one key. */
  stats(): Promise<{ requests: number; peakInFlight: number; refusedForConcurrency: number }>;
  memberCount(listId: string): Promise<number>;
  close(): Promise<void>;
}

/** Start the emulator in a worker thread. */
export async function startRemoteMailchimp(): Promise<RemoteMailchimp> {
  // A worker does not inherit the TypeScript loader: it registers it, then loads this file.
  const worker = new Worker(
    `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(import.meta.url)}); })`,
    { eval: true },
  );
  let next = 0;
  const waiting = new Map<number, { resolve(value: unknown): void; reject(e: Error): void }>();
  worker.on('message', (message: { id: number; result?: unknown; error?: string }) => {
    const pending = waiting.get(message.id);
    if (!pending) return;
    waiting.delete(message.id);
    if (message.error !== undefined) pending.reject(new Error(message.error));
    else pending.resolve(message.result);
  });
  const fail = (error: Error) => {
    for (const pending of waiting.values()) pending.reject(error);
    waiting.clear();
  };
  worker.on('error', fail);
  worker.on('exit', (code) => fail(new Error(`the emulator's thread exited (${code})`)));
  const call = <T>(op: Op, ...args: unknown[]) =>
    new Promise<T>((resolve, reject) => {
      const id = next++;
      waiting.set(id, { resolve: resolve as (value: unknown) => void, reject });
      worker.postMessage({ id, op, args } satisfies Request);
    });
  const info = await call<{ url: string; apiKey: string }>('stats');
  return {
    url: info.url,
    apiKey: info.apiKey,
    createList: (input) => call('createList', input),
    setLatency: (ms) => call('setLatency', ms),
    stats: () => call('stats'),
    memberCount: (listId) => call('memberCount', listId),
    async close() {
      await call('close');
      await worker.terminate();
    },
  };
}

async function serveInWorker() {
  const port = parentPort!;
  let emulator: MailchimpEmulator | undefined;
  const ready = startMailchimpEmulator({ validate: false }).then((started) => {
    emulator = started;
  });
  port.on('message', async ({ id, op, args }: Request) => {
    try {
      await ready;
      const mailchimp = emulator!;
      let result: unknown;
      if (op === 'createList') result = mailchimp.createList(args[0] as { name: string });
      else if (op === 'setLatency') mailchimp.setLatency(args[0] as number);
      else if (op === 'memberCount') result = mailchimp.memberCount(args[0] as string);
      else if (op === 'close') await mailchimp.close();
      else {
        result = {
          url: mailchimp.url,
          apiKey: mailchimp.apiKey,
          requests: mailchimp.requests.length,
          ...mailchimp.stats,
        };
      }
      port.postMessage({ id, result });
    } catch (error) {
      port.postMessage({ id, error: error instanceof Error ? error.message : String(error) });
    }
  });
}

if (!isMainThread) void serveInWorker();
