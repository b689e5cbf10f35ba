import { defineSource } from 'audiencehub/sdk';
import { check } from './check.ts';
import { GaConfig } from './client.ts';
import { discover, read } from './streams.ts';

export default defineSource<GaConfig>({
  name: 'google-analytics',
  title: 'Google Analytics 4',
  description:
    'Events per user and day from the GA4 Data API (a user-scoped custom dimension), and per-event history from GA4 BigQuery export files.',
  config: GaConfig,
  limits: {
    // GA4 allows 10 concurrent Data API requests per standard property, shared with the
    // property's dashboards; a read sends one at a time, so two reads leave eight for them.
    concurrency: 2,
  },
  check,
  discover,
  read,
});
