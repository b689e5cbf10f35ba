/**
 * `read`: which stream, which way. A contacts checkpoint is a position (incremental reads and
 * the end of a full read) or a listing in progress (a full read that stopped midway), and a
 * read resumes whichever it is given; `full_refresh` with anything else starts a new listing.
 */
import { ConfigError, type SourceRead } from 'audiencehub/sdk';
import { hubspot, type HubSpotConfig } from './client.ts';
import { contactsCursor, readAll, readChanges } from './contacts.ts';
import { readOwners } from './owners.ts';

export const read: SourceRead<HubSpotConfig> = async function* (
  { config, stream, cursor, mode },
  ctx,
) {
  const api = hubspot(config, ctx);
  if (stream.name === 'owners') {
    yield* readOwners(api, cursor);
    return;
  }
  if (stream.name !== 'contacts') {
    throw new ConfigError(`The HubSpot connector has no stream named ${stream.name}.`);
  }
  const from = contactsCursor(cursor);
  if ('listing' in from) yield* readAll(api, from.listing);
  else if (mode === 'full_refresh') yield* readAll(api, null);
  else yield* readChanges(api, from.position);
};
