import { defineDestination } from 'audiencehub/sdk';
import { check, SheetsConfig } from './client.ts';
import { fields } from './fields.ts';
import { prepare, sync } from './sync.ts';

export default defineDestination<SheetsConfig>({
  name: 'google-sheets',
  title: 'Google Sheets',
  description:
    'Keeps a tab of a Google spreadsheet equal to a segment: one row per member, one column per mapped field.',
  config: SheetsConfig,
  limits: {
    // Rows per call: one call makes one read and, once 2 MB bodies are packed, a few writes;
    // 5,000 rows of ten short fields fit in one or two requests.
    batchSize: 5000,
    // One writer per spreadsheet (limitKey): row positions must not move under another batch,
    // and the 10M-cell check counts every tab. Sheets allows 60 write requests a minute per
    // user; a 429 waits the minute out (config.quotaWaitMs) rather than pacing calls, since a
    // call makes a varying number of requests.
    concurrency: 1,
  },
  limitKey: (config) => config.spreadsheetId,
  check,
  fields,
  prepare,
  sync,
});
