import { sql } from 'drizzle-orm';
import { json, type Db } from '../../src/db/index.ts';

/** An event stored directly, as ingestion would have stored it for `profile`. */
export interface EventSpec {
  profile: string;
  at: Date | string;
  name: string | null;
  type?: string;
  properties?: Record<string, unknown>;
  revenue?: number | null;
}

let seq = 0;

/** Store events without going through resolution (each with a fresh message id). */
export async function insertEvents(db: Db, list: EventSpec[]): Promise<void> {
  const data = list.map((e) => ({
    profile_id: e.profile,
    message_id: `m-${++seq}`,
    type: e.type ?? 'track',
    name: e.name,
    properties: e.properties ?? {},
    revenue: e.revenue ?? null,
    ts: e.at instanceof Date ? e.at.toISOString() : e.at,
  }));
  await db.execute(
    sql`insert into events (profile_id, source, message_id, type, name, properties, revenue,
          "timestamp", received_at)
        select profile_id, 'test', message_id, type, name, properties, revenue, ts, now()
        from json_to_recordset(${json(data)}) as r(profile_id uuid, message_id text, type text,
          name text, properties jsonb, revenue numeric, ts timestamptz)`,
  );
}
