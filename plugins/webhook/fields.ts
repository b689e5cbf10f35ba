/**
 * What can be mapped: anything. A webhook body is free-form JSON, so every mapping target is
 * sent under its own name. An empty list is how a plugin says so: the hub then accepts any field
 * name in a sync's mapping (src/sync/store.ts, checkMapping). Every row carries the profile id as
 * `id` besides its fields, so no field has to identify it.
 */
import type { DestinationFields } from 'audiencehub/sdk';
import type { WebhookConfig } from './client.ts';

export const fields: DestinationFields<WebhookConfig> = async () => [];
