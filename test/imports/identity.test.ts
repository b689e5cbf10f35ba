import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import { testConfig } from '../../src/config.ts';
import { rows, type Database, type Db } from '../../src/db/index.ts';
import { runImport } from '../../src/imports/run.ts';
import { createSource, setStreamMapping } from '../../src/imports/store.ts';
import { foldAll } from '../../src/profiles/fold.ts';
import { driver, testDatabase } from '../support/db.ts';
import { admin, importDeps, tableSource } from './support.ts';

let database: Database;
let db: Db;
const config = testConfig({ traitSourcePriority: ['ERP', 'CRM'], defaultPhoneCountry: 'GB' });
const tables = tableSource();
const deps = importDeps([tables.connector]);

beforeAll(async () => {
  database = await testDatabase();
  db = database.db;
});
afterAll(async () => {
  await database?.close();
});

async function importOf(
  name: string,
  stream: string,
  data: Record<string, unknown>[],
  mapping: object,
) {
  tables.tables.set(stream, { rows: data });
  const source = await createSource(db, deps, admin, {
    name,
    connector: 'tables',
    config: { database: name, token: 'good' },
  });
  await setStreamMapping(db, deps, admin, source.id, stream, { mapping });
  const run = await runImport(db, deps, config, source.id, stream, 'manual');
  expect(run).toMatchObject({ status: 'succeeded', rowsRejected: 0 });
  return run;
}

describe(`identity resolution across sources (${driver})`, () => {
  it('makes one profile of a customer known to analytics, the CRM and the ERP', async () => {
    // Analytics knows the browser and, once signed in, the customer number.
    await importOf(
      'GA',
      'events',
      [
        { client_id: 'ga-123', user_id: 'C-42', event: 'page_view', ts: '2024-03-01T10:00:00Z' },
        { client_id: 'ga-123', user_id: '', event: 'page_view', ts: '2024-03-01T09:00:00Z' },
      ],
      {
        identities: { anonymous_id: 'client_id', customer_id: 'user_id' },
        event: { name: { field: 'event' }, timestamp: 'ts' },
      },
    );
    // The CRM knows the email address (written its own way) and the phone.
    await importOf(
      'CRM',
      'contacts',
      [{ hs_id: '9001', Email: ' JANE.DOE@Example.com', Phone: '07911 123456', name: 'Jane D.' }],
      {
        identities: { hubspot_id: 'hs_id', email: 'Email', phone: 'Phone' },
        traits: { name: 'name', lifecycle: 'hs_id' },
      },
    );
    const before = await liveWith('email', 'jane.doe@example.com');
    expect(before).not.toBe(await liveWith('customer_id', 'C-42'));

    // The ERP links the customer number to the email: the two profiles become one.
    await importOf(
      'ERP',
      'customers',
      [{ number: 'C-42', email: 'jane.doe@example.com', name: 'Jane Doe', city: 'Leeds' }],
      {
        identities: { customer_id: 'number', email: 'email' },
        traits: { name: 'name', city: 'city' },
      },
    );
    await foldAll(db);
    const profile = await liveWith('email', 'jane.doe@example.com');
    for (const [type, value] of [
      ['customer_id', 'C-42'],
      ['anonymous_id', 'ga-123'],
      ['hubspot_id', '9001'],
      ['phone', '+447911123456'],
    ]) {
      expect(await liveWith(type!, value!)).toBe(profile);
    }
    const [p] = await rows<{ kind: string; traits: Record<string, unknown>; event_count: number }>(
      db,
      sql`select kind, traits, event_count from profiles where id = ${profile}`,
    );
    // The ERP ranks first: its name wins; the CRM's other traits stay.
    expect(p).toEqual({
      kind: 'customer',
      traits: { name: 'Jane Doe', city: 'Leeds', lifecycle: '9001' },
      event_count: 2,
    });
    const [merges] = await rows<{ n: number }>(
      db,
      sql`select count(*)::int as n from merges where survivor_id = ${profile}`,
    );
    expect(merges!.n).toBe(1);
  });
});

/** The live profile holding an identity. */
async function liveWith(type: string, value: string): Promise<string | undefined> {
  const [row] = await rows<{ id: string }>(
    db,
    sql`select coalesce(p.merged_into, p.id) as id from identities i
        join profiles p on p.id = i.profile_id where i.type = ${type} and i.value = ${value}`,
  );
  return row?.id;
}
