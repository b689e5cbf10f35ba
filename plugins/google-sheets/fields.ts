/**
 * What can be mapped: anything. A sheet is free-form, so every mapping target becomes a column,
 * in mapping order, after the `profile_id` key column. An empty list is how a plugin says so:
 * the hub then accepts any field name in a sync's mapping (src/sync/store.ts, checkMapping). No
 * call to Google is needed, so a mapping can be edited while the spreadsheet is unreachable.
 */
import type { DestinationFields } from 'audiencehub/sdk';
import type { SheetsConfig } from './client.ts';

export const fields: DestinationFields<SheetsConfig> = async () => [];
