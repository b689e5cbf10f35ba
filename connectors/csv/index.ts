import { defineSource } from 'audiencehub/sdk';
import { CsvConfig } from './client.ts';
import { check, discover, read } from './streams.ts';

export default defineSource<CsvConfig>({
  name: 'csv',
  title: 'CSV files',
  description:
    'Reads CSV files (gzip too) from a file, a folder or uploads, one stream per file; any size, a chunk at a time.',
  config: CsvConfig,
  // Files uploaded to the hub land in a folder this connector reads (`path`).
  uploads: true,
  check,
  discover,
  read,
});
