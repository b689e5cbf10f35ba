/**
 * The streams the connector offers. They are the same for every account, so `discover` asks
 * HubSpot nothing: custom contact properties are not read (README.md, "Known limits").
 */
import type { SourceDiscover, SourceStream } from 'audiencehub/sdk';
import type { HubSpotConfig } from './client.ts';

/** The contact properties read from HubSpot (their internal names). */
export const CONTACT_PROPERTIES = [
  'email',
  'firstname',
  'lastname',
  'phone',
  'lifecyclestage',
  'hs_analytics_source',
  'hubspot_owner_id',
  'createdate',
  'lastmodifieddate',
  'hs_object_id',
] as const;

export const CONTACTS: SourceStream = {
  name: 'contacts',
  description:
    'CRM contacts with their lifecycle stage, original source and owner, read by last modification.',
  fields: [
    { name: 'id', type: 'string', description: 'The record id (hs_object_id).' },
    { name: 'email', type: 'string' },
    { name: 'firstname', type: 'string' },
    { name: 'lastname', type: 'string' },
    { name: 'phone', type: 'string' },
    {
      name: 'lifecyclestage',
      type: 'string',
      description: "The stage's internal value, e.g. marketingqualifiedlead.",
    },
    {
      name: 'lifecyclestage_label',
      type: 'string',
      description: 'The stage as the account names it, e.g. Marketing Qualified Lead.',
    },
    {
      name: 'hs_analytics_source',
      type: 'string',
      description: 'Original source, internal value, e.g. ORGANIC_SEARCH.',
    },
    {
      name: 'hs_analytics_source_label',
      type: 'string',
      description: 'Original source as HubSpot labels it, e.g. Organic Search.',
    },
    { name: 'hubspot_owner_id', type: 'string', description: 'The contact owner (an owner id).' },
    { name: 'owner_email', type: 'string', description: "The owner's email." },
    { name: 'owner_name', type: 'string', description: "The owner's first and last name." },
    { name: 'createdate', type: 'datetime' },
    { name: 'lastmodifieddate', type: 'datetime', description: 'Moves with every change.' },
  ],
  primaryKey: ['id'],
  modes: ['full_refresh', 'incremental'],
  cursorField: 'lastmodifieddate',
};

export const OWNERS: SourceStream = {
  name: 'owners',
  description: "The account's owners (its users), deactivated ones included as archived.",
  fields: [
    { name: 'id', type: 'string', description: 'The owner id contacts refer to.' },
    { name: 'email', type: 'string' },
    { name: 'firstName', type: 'string' },
    { name: 'lastName', type: 'string' },
    { name: 'userId', type: 'integer' },
    { name: 'archived', type: 'boolean', description: "The owner's user was deactivated." },
    { name: 'createdAt', type: 'datetime' },
    { name: 'updatedAt', type: 'datetime' },
  ],
  primaryKey: ['id'],
  modes: ['full_refresh'],
};

export const discover: SourceDiscover<HubSpotConfig> = async () => [CONTACTS, OWNERS];
