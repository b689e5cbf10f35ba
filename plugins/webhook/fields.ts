/**
 * What can be mapped: anything. A webhook body is free-form JSON, so every mapping target is
 * sent under its own name; the list below is only what the mapping screen suggests first.
 * None is required and none is the identifier: every row carries the profile id as `id`.
 */
import type { DestinationField, DestinationFields } from 'audiencehub/sdk';
import type { WebhookConfig } from './client.ts';

export const SUGGESTED_FIELDS: DestinationField[] = [
  { key: 'email', label: 'Email address', type: 'string' },
  { key: 'phone', label: 'Phone number', type: 'string' },
  { key: 'user_id', label: 'User id', type: 'string' },
  { key: 'first_name', label: 'First name', type: 'string' },
  { key: 'last_name', label: 'Last name', type: 'string' },
];

export const fields: DestinationFields<WebhookConfig> = async () => SUGGESTED_FIELDS;
