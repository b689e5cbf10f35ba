/**
 * The streams: `daily_user_events` (the Data API, when a property is configured) and `events`
 * (BigQuery export files, when `files` is), and which reader each goes to.
 */
import {
  ConfigError,
  type SourceDiscover,
  type SourceRead,
  type SourceStream,
} from 'audiencehub/sdk';
import type { GaConfig } from './client.ts';
import { readExportEvents } from './export-files.ts';
import { readDailyUserEvents } from './report.ts';

export const DAILY_USER_EVENTS = 'daily_user_events';
export const EXPORT_EVENTS = 'events';

export const dailyUserEventsStream = (config: GaConfig): SourceStream => ({
  name: DAILY_USER_EVENTS,
  description: `Events per user, day and event name from the Data API (runReport), the user being ${config.userIdDimension}. Days are read once settled: ${config.settleDays} whole days after they end.`,
  fields: [
    { name: 'user_id', type: 'string', description: `The value of ${config.userIdDimension}.` },
    { name: 'date', type: 'date', description: "The day, in the property's time zone." },
    { name: 'event_name', type: 'string' },
    { name: 'event_count', type: 'integer', description: 'Events of that name that day.' },
    {
      name: 'revenue',
      type: 'number',
      description:
        config.revenueMetric === 'none'
          ? 'Not read (revenueMetric: none): always null.'
          : `${config.revenueMetric} of those events, in the property's currency.`,
    },
  ],
  primaryKey: ['user_id', 'date', 'event_name'],
  modes: ['full_refresh', 'incremental'],
  cursorField: 'date',
});

export const exportEventsStream = (): SourceStream => ({
  name: EXPORT_EVENTS,
  description:
    'One record per event of GA4 BigQuery export files (NDJSON, gzipped or not), read in file name order; a read resumes where the last one stopped, inside a file too.',
  fields: [
    { name: 'event_id', type: 'string', description: 'Stable id derived from the event itself.' },
    { name: 'event_name', type: 'string' },
    { name: 'event_date', type: 'date', description: "event_date, in the property's time zone." },
    { name: 'event_time', type: 'datetime', description: 'event_timestamp as an ISO time (ms).' },
    { name: 'event_timestamp', type: 'integer', description: 'Microseconds since the epoch.' },
    { name: 'user_id', type: 'string', description: 'The user id the site set, if any.' },
    { name: 'user_pseudo_id', type: 'string', description: 'The device id (client id).' },
    { name: 'ga_session_id', type: 'integer' },
    { name: 'properties', type: 'json', description: 'event_params as { key: value }.' },
    { name: 'user_properties', type: 'json', description: 'user_properties as { key: value }.' },
    { name: 'revenue', type: 'number', description: 'ecommerce.purchase_revenue.' },
    { name: 'revenue_in_usd', type: 'number', description: 'ecommerce.purchase_revenue_in_usd.' },
    { name: 'value_in_usd', type: 'number', description: 'event_value_in_usd.' },
    { name: 'currency', type: 'string', description: 'The event parameter currency.' },
    { name: 'transaction_id', type: 'string' },
    { name: 'ecommerce', type: 'json' },
    { name: 'items', type: 'json' },
    { name: 'device', type: 'json' },
    { name: 'geo', type: 'json' },
    { name: 'traffic_source', type: 'json' },
    { name: 'platform', type: 'string' },
    { name: 'stream_id', type: 'string' },
  ],
  primaryKey: ['event_id'],
  modes: ['full_refresh', 'incremental'],
  // Reads resume by position in the files; new files hold later events.
  cursorField: 'event_time',
});

export const discover: SourceDiscover<GaConfig> = async ({ config }) => [
  ...(config.propertyId ? [dailyUserEventsStream(config)] : []),
  ...(config.files ? [exportEventsStream()] : []),
];

/** A cursor always means "go on after it", whatever the mode. */
export const read: SourceRead<GaConfig> = async function* ({ config, stream, cursor }, ctx) {
  if (stream.name === DAILY_USER_EVENTS) yield* readDailyUserEvents(config, cursor, ctx);
  else if (stream.name === EXPORT_EVENTS) yield* readExportEvents(config, cursor, ctx);
  else throw new ConfigError(`Google Analytics has no stream ${stream.name}`);
};
