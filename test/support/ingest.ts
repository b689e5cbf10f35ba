import { sql } from 'drizzle-orm';
import type { HubConfig } from '../../src/config.ts';
import { rows, type Db } from '../../src/db/index.ts';
import { ingestMessages } from '../../src/events/ingest.ts';
import { parseMessage } from '../../src/events/message.ts';
import { foldAll } from '../../src/profiles/fold.ts';

/** Validate and store raw Segment messages as `source` would send them; throws on invalid ones. */
export async function send(
  db: Db,
  config: HubConfig,
  messages: Record<string, unknown>[],
  source = 'web',
) {
  const prepared = messages.map((raw, i) => {
    const parsed = parseMessage(raw, { source, receivedAt: new Date(), config, prefix: `[${i}]` });
    if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
    return parsed.message;
  });
  return ingestMessages(db, config, prepared);
}

/** The live profile holding an identity, or undefined. */
export async function profileOf(db: Db, type: string, value: string) {
  const [row] = await rows<{ id: string }>(
    db,
    sql`select profile_id as id from identities where type = ${type} and value = ${value}`,
  );
  return row?.id;
}

/**
 * The live profiles, once every committed event is folded into their computed traits (what the
 * hub's background fold does within a second of the data arriving).
 */
export async function liveProfiles(db: Db) {
  await foldAll(db);
  return rows<{
    id: string;
    kind: string;
    traits: Record<string, unknown>;
    event_count: number;
    purchase_count: number;
    total_spent: string;
    first_seen_at: Date;
    last_seen_at: Date;
    last_purchase_at: Date | null;
  }>(db, sql`select * from profiles where merged_into is null order by id`);
}

export async function count(db: Db, table: string, where = sql`true`) {
  const [row] = await rows<{ n: number }>(
    db,
    sql`select count(*)::int as n from ${sql.identifier(table)} where ${where}`,
  );
  return row!.n;
}
