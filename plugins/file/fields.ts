/**
 * What can be mapped: anything. Each mapped field becomes a column (CSV) or a key (JSONL) under
 * its own name, in mapping order. An empty list is how a plugin says so: the hub then accepts any
 * field name in a sync's mapping (src/sync/store.ts, checkMapping). Map `profile:id` to a field
 * too if the file should carry a key for each row.
 */
import type { DestinationFields } from 'audiencehub/sdk';
import type { FileConfig } from './client.ts';

export const fields: DestinationFields<FileConfig> = async () => [];
