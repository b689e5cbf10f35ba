/**
 * One person, three systems: a newsletter export (the `csv` connector), the ERP's customer table
 * (the `postgres` connector on the machine's PostgreSQL, loaded with Pagila) and the CRM's
 * contacts (the `hubspot` connector against its emulator, seeded with Pagila's emails). Imported
 * through the real connectors, they become one profile holding every system's identity and
 * traits.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createErpDatabase, type ErpDatabase } from '../../connectors/postgres/test-fixtures.ts';
import { testConfig } from '../../src/config.ts';
import { rows, type Database } from '../../src/db/index.ts';
import { secretBox } from '../../src/destinations/secrets.ts';
import { createImportDeps, type ImportDeps } from '../../src/imports/deps.ts';
import { runImport } from '../../src/imports/run.ts';
import { createSource, setStreamMapping } from '../../src/imports/store.ts';
import { uuidv7 } from '../../src/ids.ts';
import { createLogger } from '../../src/log.ts';
import { foldAll } from '../../src/profiles/fold.ts';
import {
  pagilaCustomers,
  seedAccount,
  startHubSpotEmulator,
  type HubSpotEmulator,
} from '../emulators/hubspot/index.ts';
import { driver, testDatabase } from '../support/db.ts';

const admin = { tokenId: uuidv7(), name: 'admin', role: 'admin' as const };
const config = testConfig();

describe(`one person from a file, the ERP and the CRM (${driver})`, () => {
  let database: Database;
  let deps: ImportDeps;
  let erp: ErpDatabase;
  let hubspot: HubSpotEmulator;
  const files = mkdtempSync(join(tmpdir(), 'ah-cross-source-'));

  beforeAll(async () => {
    database = await testDatabase();
    deps = await createImportDeps(
      testConfig({ dataDir: files }),
      createLogger('error', {}, () => {}),
      secretBox(randomBytes(32)),
    );
    erp = await createErpDatabase();
    hubspot = await startHubSpotEmulator();
    seedAccount(hubspot, { contacts: 12, fromPagila: 8 });
  }, 120_000);
  afterAll(async () => {
    await hubspot?.close();
    await erp?.drop();
    await database?.close();
    rmSync(files, { recursive: true, force: true });
  });

  async function importStream(
    name: string,
    connector: string,
    sourceConfig: Record<string, unknown>,
    stream: string,
    mapping: Record<string, unknown>,
  ) {
    const { db } = database;
    const source = await createSource(db, deps, admin, { name, connector, config: sourceConfig });
    await setStreamMapping(db, deps, admin, source.id, stream, { mapping });
    const run = await runImport(db, deps, config, source.id, stream, 'manual');
    expect(run).toMatchObject({ status: 'succeeded', rowsRejected: 0 });
    return run;
  }

  it('merges the three into one profile with every identity and trait', async () => {
    const { db } = database;
    const [person] = pagilaCustomers();
    // The export writes the address its own way: upper case, padded.
    writeFileSync(
      join(files, 'newsletter.csv'),
      `Email,Subscribed\n  ${person!.email.toUpperCase()} ,yes\nsomeone.else@example.com,no\n`,
    );
    await importStream(
      'Newsletter export',
      'csv',
      { path: join(files, 'newsletter.csv') },
      'newsletter',
      {
        identities: { email: 'Email' },
        traits: { newsletter: 'Subscribed' },
      },
    );
    const erpRun = await importStream(
      'ERP',
      'postgres',
      { ...erp.connection, schema: 'public' },
      'customer',
      {
        identities: { email: 'email', erp_customer_id: 'customer_id' },
        traits: { first_name: 'first_name', last_name: 'last_name' },
      },
    );
    expect(erpRun.rowsRead).toBe(pagilaCustomers().length);
    await importStream(
      'CRM',
      'hubspot',
      { baseUrl: hubspot.url, accessToken: hubspot.token },
      'contacts',
      {
        identities: { email: 'email', hubspot_id: 'id' },
        traits: { lifecycle_stage: 'lifecyclestage', crm_owner: 'owner_email' },
      },
    );
    await foldAll(db);

    const holders = await rows<{ profile_id: string }>(
      db,
      sql`select distinct i.profile_id from identities i join profiles p on p.id = i.profile_id
          where p.merged_into is null and (
            (i.type = 'email' and i.value = ${person!.email.toLowerCase()})
            or (i.type = 'erp_customer_id' and i.value = ${String(person!.customerId)}))`,
    );
    expect(holders).toHaveLength(1);
    const profileId = holders[0]!.profile_id;
    const identities = await rows<{ type: string; source: string }>(
      db,
      sql`select type, source from identities where profile_id = ${profileId} order by type`,
    );
    expect(identities.map((i) => i.type)).toEqual(['email', 'erp_customer_id', 'hubspot_id']);
    const [profile] = await rows<{ kind: string; traits: Record<string, unknown> }>(
      db,
      sql`select kind, traits from profiles where id = ${profileId}`,
    );
    expect(profile!.kind).toBe('customer');
    expect(profile!.traits).toMatchObject({
      newsletter: 'yes',
      first_name: person!.firstName,
      last_name: person!.lastName,
      lifecycle_stage: expect.any(String),
    });
    // Each system's traits are kept under its own source.
    const sources = await rows<{ source: string }>(
      db,
      sql`select distinct source from traits where profile_id = ${profileId} order by source`,
    );
    expect(sources.map((s) => s.source)).toEqual(['CRM', 'ERP', 'Newsletter export']);
    // Every Pagila customer is one profile; the CRM's own contacts and the file's other
    // address add theirs.
    const [live] = await rows<{ n: number }>(
      db,
      sql`select count(*)::int as n from profiles where merged_into is null`,
    );
    expect(live!.n).toBe(pagilaCustomers().length + (12 - 8) + 1);
  }, 120_000);
});
