import { defineDestination } from 'audiencehub/sdk';
import { check, FileConfig } from './client.ts';
import { fields } from './fields.ts';
import { prepare, sync } from './sync.ts';

export default defineDestination<FileConfig>({
  name: 'file',
  title: 'File (CSV or JSONL)',
  description:
    "Keeps a CSV or JSON Lines file of the segment's members in a folder: no account needed.",
  config: FileConfig,
  limits: {
    // A batch costs one journal append and one fsync, whatever its size: large batches mean
    // fewer fsyncs and fewer renders. 5,000 rows of a few fields are about 0.5 MB of journal.
    batchSize: 5_000,
    // One writer per sync: batches are appended to its journal and renders replace its files in
    // turn; two at once would race on the rename. Syncs have their own files, so different syncs
    // still write in parallel (the limit key is the sync).
    concurrency: 1,
  },
  check,
  fields,
  prepare,
  sync,
  // What prepare does on the next run (render the file from its journal), done at once instead.
  finish: prepare,
});
