import { defineSource } from 'audiencehub/sdk';
import { check, HubSpotConfig } from './client.ts';
import { read } from './read.ts';
import { discover } from './streams.ts';

export default defineSource<HubSpotConfig>({
  name: 'hubspot',
  title: 'HubSpot',
  description:
    'Reads CRM contacts, with their lifecycle stage, original source and owner, and owners through the CRM v3 API, incrementally by last modification.',
  config: HubSpotConfig,
  limits: {
    // HubSpot: the CRM search endpoints take four requests a second per token, and a contacts
    // read is mostly searches (https://developers.hubspot.com/docs/api/usage-details). The hub
    // paces every request to it; the connector never waits on its own.
    requestsPerSecond: 4,
  },
  check,
  discover,
  read,
});
