/**
 * Sending a batch: the engine's batch is cut into requests of `config.batchSize` rows, each
 * posted signed with its own idempotency key, and each answer turned into one result per row.
 */
import { randomUUID } from 'node:crypto';
import {
  ConfigError,
  VendorError,
  z,
  type DestinationSync,
  type HttpClient,
  type PluginContext,
  type RowResult,
  type SyncInfo,
  type SyncRow,
} from 'audiencehub/sdk';
import { deliver, endpoint, redact, webhookClient, type WebhookConfig } from './client.ts';

/**
 * The idempotency keys of a batch's requests. The engine retries a batch by calling `sync` again
 * with the same array, so keying on it keeps one key per request across those retries (and the
 * HTTP client resends the same headers on its own retries); a later run sends new arrays, new
 * keys. Weak, so nothing outlives the batch.
 */
const requestKeys = new WeakMap<SyncRow[], string[]>();

/** One entry of the per-row results a receiver may answer with (README.md, "Responses"). */
const RowAnswer = z.object({
  id: z.string(),
  status: z.enum(['ok', 'rejected', 'retry']),
  reason: z.string().optional(),
});

export const sync: DestinationSync<WebhookConfig> = async ({ config, sync, batch }, ctx) => {
  const http = webhookClient(config, ctx);
  const keys = requestKeys.get(batch) ?? [];
  requestKeys.set(batch, keys);
  const results: RowResult[] = [];
  for (let start = 0, n = 0; start < batch.length; start += config.batchSize, n++) {
    const rows = batch.slice(start, start + config.batchSize);
    const key = (keys[n] ??= randomUUID());
    results.push(...(await post(http, config, sync, rows, key, ctx)));
  }
  return results;
};

/**
 * One request. A TransientError (still failing after the client's retries) propagates, so the
 * engine retries the whole batch; requests that went through are then resent with their same
 * keys, for the receiver to drop.
 */
async function post(
  http: HttpClient,
  config: WebhookConfig,
  info: SyncInfo,
  rows: SyncRow[],
  key: string,
  ctx: PluginContext,
): Promise<RowResult[]> {
  try {
    const response = await deliver(http, config, {
      event: 'batch',
      idempotencyKey: key,
      body: {
        sync: { id: info.id, segment: info.segmentName, mode: info.mode },
        batchId: key,
        sentAt: new Date().toISOString(),
        rows: rows.map((r) => ({ id: r.id, action: r.action, fields: r.fields })),
      },
    });
    return perRow(rows, response.data, config, ctx);
  } catch (error) {
    if (!(error instanceof VendorError) || error.request.status < 400) throw error;
    const status = error.request.status;
    if (status === 404 || status === 405 || status === 410) {
      throw new ConfigError(`${error.message} — no webhook receiver at ${endpoint(config)}.`);
    }
    if (status === 413) {
      throw new ConfigError(
        `${error.message} — the receiver refused ${rows.length} rows as too large; lower batchSize.`,
      );
    }
    if (status === 415) throw new ConfigError(`${error.message} — the receiver refuses JSON.`);
    // 400, 409, 422…: the receiver refused what this request held. Its rows are recorded as
    // rejected with its words, and sent again when they change, like any refused row.
    return rows.map((r) => ({ id: r.id, status: 'rejected', reason: error.message }));
  }
}

/**
 * A 2xx answer may list rows it refused or could not take now: `{ results: [{ id, status,
 * reason }] }`. Rows it does not list were taken; entries naming no row of the request, or
 * malformed, are ignored and logged.
 */
function perRow(
  rows: SyncRow[],
  data: unknown,
  config: WebhookConfig,
  ctx: PluginContext,
): RowResult[] {
  const listed = (data as { results?: unknown } | null)?.results;
  const answers = new Map<string, z.infer<typeof RowAnswer>>();
  if (Array.isArray(listed)) {
    const ids = new Set(rows.map((r) => r.id));
    let ignored = 0;
    for (const entry of listed) {
      const parsed = RowAnswer.safeParse(entry);
      if (parsed.success && ids.has(parsed.data.id)) answers.set(parsed.data.id, parsed.data);
      else ignored++;
    }
    if (ignored > 0) {
      ctx.log.warn('webhook answer had results naming no row of the request', { ignored });
    }
  }
  return rows.map((row): RowResult => {
    const answer = answers.get(row.id);
    if (!answer || answer.status === 'ok') return { id: row.id, status: 'ok' };
    const reason = redact(answer.reason?.slice(0, 300) || 'refused by the receiver', config);
    return { id: row.id, status: answer.status, reason };
  });
}
