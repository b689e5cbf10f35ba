import { defineDestination } from 'audiencehub/sdk';
import { check, MAX_BATCH, WebhookConfig } from './client.ts';
import { fields } from './fields.ts';
import { sync } from './sync.ts';

export default defineDestination<WebhookConfig>({
  name: 'webhook',
  title: 'Webhook',
  description: 'Posts each batch of changes as signed JSON to a URL of yours.',
  config: WebhookConfig,
  limits: {
    // nginx refuses bodies over 1 MB by default (client_max_body_size); 500 rows leave about
    // 2 KB a row. config.batchSize lowers it for receivers that take less.
    batchSize: MAX_BATCH,
    // The receiver is unknown: a few requests in flight keep throughput without flooding a small
    // server. Shared by every sync posting to the same origin (limitKey).
    concurrency: 4,
  },
  limitKey: (config) => new URL(config.url).origin,
  check,
  fields,
  sync,
});
