import { createHash } from 'node:crypto';
import { defineDestination } from 'audiencehub/sdk';
import { check, MailchimpConfig } from './client.ts';
import { fields } from './fields.ts';
import { MAX_MEMBERS, prepare, sync } from './sync.ts';

export default defineDestination<MailchimpConfig>({
  name: 'mailchimp',
  title: 'Mailchimp',
  description:
    "Keeps a segment's members in a Mailchimp audience, tagged, without ever re-subscribing anyone.",
  config: MailchimpConfig,
  limits: {
    // Mailchimp: 500 members per batch subscribe and per segment batch; 10 simultaneous
    // connections per API key (429 beyond), so 10 batches in flight for every sync on the key.
    // A batch makes its calls one after another: one connection each.
    batchSize: MAX_MEMBERS,
    concurrency: 10,
  },
  // Hashed: the key itself never sits in the engine's queue map.
  limitKey: (config) => createHash('sha256').update(config.apiKey).digest('hex'),
  // A mapped merge tag the audience lacks is created as a text merge field.
  acceptsNewFields: true,
  check,
  fields,
  prepare,
  sync,
});
