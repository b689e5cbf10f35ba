/**
 * What can be mapped: anything. Each mapped field becomes a column (CSV) or a key (JSONL) under
 * its own name, in mapping order; the list below is only what the mapping screen suggests first.
 * Map `profile:id` to a field too if the file should carry a key for each row.
 */
import type { DestinationField, DestinationFields } from 'audiencehub/sdk';
import type { FileConfig } from './client.ts';

export const SUGGESTED_FIELDS: DestinationField[] = [
  { key: 'email', label: 'Email address', type: 'string' },
  { key: 'phone', label: 'Phone number', type: 'string' },
  { key: 'first_name', label: 'First name', type: 'string' },
  { key: 'last_name', label: 'Last name', type: 'string' },
  { key: 'profile_id', label: 'Profile id', type: 'string' },
];

export const fields: DestinationFields<FileConfig> = async () => SUGGESTED_FIELDS;
