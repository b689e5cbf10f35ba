import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rows } from '../../src/db/index.ts';
import { driver } from '../support/db.ts';
import { day, insertEvents, insertPerson, merge } from './fixtures.ts';
import { harness, type Harness } from './support.ts';

/** Every row, in every table of every schema, whose text contains one of `needles`. */
async function rowsContaining(h: Harness, needles: string[]) {
  const tables = await rows<{ schema: string; name: string }>(
    h.db,
    sql`select table_schema as schema, table_name as name from information_schema.tables
        where table_type = 'BASE TABLE'
          and table_schema not in ('pg_catalog', 'information_schema')`,
  );
  expect(tables.length).toBeGreaterThanOrEqual(10);
  const patterns = JSON.stringify(needles.map((n) => `%${n.toLowerCase()}%`));
  const found: { table: string; row: string }[] = [];
  for (const t of tables) {
    const table = sql`${sql.identifier(t.schema)}.${sql.identifier(t.name)}`;
    const hits = await rows<{ row: string }>(
      h.db,
      sql`select r::text as row from ${table} r
          where lower(r::text) like any(array(select json_array_elements_text(${patterns}::json)))`,
    );
    found.push(...hits.map((hit) => ({ table: t.name, row: hit.row })));
  }
  return found;
}

describe(`DELETE /api/profiles/{id}: erasure (${driver})`, () => {
  let h: Harness;
  let dave: string;
  let tombstone: string;
  let older: string;
  let erin: string;
  const personal = [
    'dave@example.com',
    'u-dave',
    'anon-dave',
    '+14155552671',
    'Dave Davidson',
    'dave-property-marker',
  ];

  beforeAll(async () => {
    h = await harness();
    dave = await insertPerson(h.db, {
      identities: [
        { type: 'email', value: 'dave@example.com' },
        { type: 'user_id', value: 'u-dave' },
        { type: 'phone', value: '+14155552671' },
      ],
      traits: [
        { key: 'name', value: 'Dave Davidson', source: 'crm' },
        { key: 'name', value: 'Dave Davidson', source: 'tracking' },
      ],
      events: [
        { name: 'Viewed', timestamp: day(1), properties: { note: 'dave-property-marker' } },
        { name: 'purchase', timestamp: day(2), revenue: 12 },
      ],
    });
    tombstone = await insertPerson(h.db, {
      kind: 'visitor',
      identities: [{ type: 'anonymous_id', value: 'anon-dave' }],
    });
    older = await insertPerson(h.db, { kind: 'visitor' });
    await merge(h.db, tombstone, older, day(3));
    await merge(h.db, dave, tombstone, day(4));
    // Dave is in a segment, and its history remembers the tombstone's time in it.
    const segmentId = '01a20b00-0000-7000-8000-000000000001';
    await h.db.execute(
      sql`insert into segment_members (segment_id, profile_id) values (${segmentId}, ${dave})`,
    );
    await h.db.execute(
      sql`insert into segment_membership_changes (segment_id, profile_id, entered)
          values (${segmentId}, ${tombstone}, true)`,
    );
    // Left behind on a tombstone, as if a merge had not moved them: erasure must find them.
    await insertEvents(h.db, tombstone, [{ name: 'Viewed', timestamp: day(5) }]);

    erin = await insertPerson(h.db, {
      identities: [{ type: 'email', value: 'erin@example.com' }],
      traits: [{ key: 'name', value: 'Erin' }],
      events: [{ name: 'Viewed', timestamp: day(1) }],
    });
    const erinsOld = await insertPerson(h.db, { kind: 'visitor' });
    await merge(h.db, erin, erinsOld, day(2));
  });
  afterAll(() => h.close());

  it('erases the whole person, asked by a tombstone id, in every table', async () => {
    // The scan sees the person everywhere before, so its silence after means something.
    const tablesHit = async (needles: string[]) =>
      [...new Set((await rowsContaining(h, needles)).map((hit) => hit.table))].sort();
    expect(await tablesHit(personal)).toEqual(['events', 'identities', 'profiles', 'traits']);
    expect(await tablesHit([dave, tombstone, older])).toEqual([
      'events',
      'identities',
      'merges',
      'profile_event_counts',
      'profiles',
      'segment_members',
      'segment_membership_changes',
      'traits',
    ]);

    const res = await h.call('DELETE', `/api/profiles/${older}`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      profileId: dave,
      deleted: {
        profiles: 3,
        identities: 4,
        traits: 2,
        events: 3,
        eventCounts: 2,
        merges: 2,
        segmentMemberships: 2,
      },
    });

    expect(await rowsContaining(h, personal)).toEqual([]);
    const byId = await rowsContaining(h, [dave, tombstone, older]);
    // The one trace left is the audit entry, which names the erased profile id and nothing else.
    expect(byId.map((hit) => hit.table)).toEqual(['audit_log']);
  });

  it('records one audit entry holding only the counts', async () => {
    const audit = await h.call('GET', '/api/audit?action=profile.erased');
    expect(audit.body.data).toEqual([
      {
        id: expect.any(Number),
        at: expect.any(String),
        actorId: expect.any(String),
        actorName: 'admin token',
        action: 'profile.erased',
        subjectType: 'profile',
        subjectId: dave,
        details: {
          profiles: 3,
          identities: 4,
          traits: 2,
          events: 3,
          eventCounts: 2,
          merges: 2,
          segmentMemberships: 2,
        },
      },
    ]);
  });

  it('leaves everyone else as they were', async () => {
    const res = await h.call('GET', `/api/profiles/${erin}`);
    expect(res.status).toBe(200);
    expect(res.body.identities).toHaveLength(1);
    expect(res.body.traits.bySource).toHaveLength(1);
    expect(res.body.events).toHaveLength(1);
    expect(res.body.merges).toHaveLength(1);
    expect(res.body.profile.computed.eventCounts).toHaveLength(1);
  });

  it('answers 404 for the erased person afterwards, by any of their ids', async () => {
    for (const id of [dave, tombstone, older]) {
      expect((await h.call('GET', `/api/profiles/${id}`)).status).toBe(404);
      expect((await h.call('DELETE', `/api/profiles/${id}`)).status).toBe(404);
    }
    const search = await h.call('GET', '/api/profiles?identity=email:dave@example.com');
    expect(search.body.data).toEqual([]);
  });

  it('is for admins only', async () => {
    for (const token of [h.tokens.marketer, h.tokens.integrator]) {
      const res = await h.call('DELETE', `/api/profiles/${erin}`, { token });
      expect(res.status).toBe(403);
    }
    expect((await h.call('GET', `/api/profiles/${erin}`)).status).toBe(200);
  });
});
