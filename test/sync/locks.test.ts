import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sql } from 'drizzle-orm';
import type { Principal } from '../../src/auth/credentials.ts';
import { rows, type Database, type Db } from '../../src/db/index.ts';
import { secretBox } from '../../src/destinations/secrets.ts';
import { createDestination, getDestination } from '../../src/destinations/store.ts';
import { uuidv7 } from '../../src/ids.ts';
import { silentLogger } from '../../src/log.ts';
import { createSegment, deleteSegment, updateSegment } from '../../src/segments/store.ts';
import { defineDestination, secret, z } from '../../src/sdk/index.ts';
import type { SyncDeps } from '../../src/sync/engine.ts';
import { createRegistry } from '../../src/sync/registry.ts';
import { createSync, setAutoSync } from '../../src/sync/store.ts';
import { driver, testDatabase } from '../support/db.ts';

const plugin = defineDestination({
  name: 'nowhere',
  title: 'Nowhere',
  config: z.object({ token: secret(z.string().min(8)), region: z.enum(['eu', 'us']) }),
  limits: { batchSize: 100, concurrency: 1 },
  check: async ({ config }) =>
    config.token.startsWith('good')
      ? { ok: true }
      : { ok: false, reason: `token ${config.token} was refused` },
  fields: async () => [{ key: 'email', label: 'Email', type: 'string', required: true }],
  sync: async ({ batch }) => batch.map((r) => ({ id: r.id, status: 'ok' as const })),
});

let database: Database;
let db: Db;
let deps: SyncDeps;
const admin: Principal = { tokenId: uuidv7(), name: 'admin', role: 'admin' };
const marketer: Principal = { tokenId: uuidv7(), name: 'marketer', role: 'marketer' };
const limits = { maxPerOwner: 50 };

beforeAll(async () => {
  database = await testDatabase();
  db = database.db;
  const registry = createRegistry();
  registry.register(plugin);
  deps = { registry, box: secretBox(randomBytes(32)), log: silentLogger };
});
afterAll(() => database.close());
beforeEach(async () => {
  await db.execute(sql`truncate segments, destinations, syncs, audit_log`);
});

const rules = (value: string) => ({ trait: { name: 'plan', op: 'eq', value } });
const shared = (name: string, r: unknown = rules('pro')) =>
  createSegment(
    db,
    marketer,
    { name, description: '', type: 'dynamic', visibility: 'shared', rules: r },
    limits,
  );
const destination = () =>
  createDestination(db, deps, admin, {
    name: `d-${uuidv7()}`,
    plugin: 'nowhere',
    config: { token: 'good-token-1234', region: 'eu' },
  });
const syncOf = async (segmentId: string) =>
  createSync(db, deps, admin, {
    segmentId,
    destinationId: (await destination()).id,
    mode: 'mirror',
    mapping: [{ from: 'identity:email', to: 'email' }],
  });

describe(`destinations (${driver})`, () => {
  it('keeps secrets sealed at rest and never returns them', async () => {
    const created = await destination();
    expect(created.config).toEqual({ region: 'eu' });
    expect(created.secrets).toEqual(['token']);
    expect(JSON.stringify(await getDestination(db, deps, created.id))).not.toContain('good-token');
    const [raw] = await rows<Record<string, unknown>>(
      db,
      sql`select * from destinations where id = ${created.id}`,
    );
    expect(JSON.stringify(raw)).not.toContain('good-token-1234');
    expect(String(raw!.secrets)).toMatch(/^v1\./);
  });

  it("refuses a config that does not fit, naming the field, and one the plugin's check refuses", async () => {
    await expect(
      createDestination(db, deps, admin, {
        name: 'x',
        plugin: 'nowhere',
        config: { token: 'good-token-1234', region: 'mars' },
      }),
    ).rejects.toMatchObject({ status: 400, errors: [{ field: 'config.region' }] });
    const refused = await createDestination(db, deps, admin, {
      name: 'y',
      plugin: 'nowhere',
      config: { token: 'bad-token-5678', region: 'eu' },
    }).catch((e: unknown) => e);
    expect(refused).toMatchObject({ status: 422, code: 'destination-check-failed' });
    expect((refused as Error).message).toContain('token ******** was refused');
    expect(JSON.stringify(refused)).not.toContain('bad-token-5678');
    await expect(
      createDestination(db, deps, admin, { name: 'z', plugin: 'carrier-pigeon', config: {} }),
    ).rejects.toMatchObject({ status: 400, errors: [{ field: 'plugin' }] });
  });
});

describe(`segment locks (${driver})`, () => {
  it('refuses to sync a private segment, and to make a synced one private', async () => {
    const privateOne = await createSegment(
      db,
      marketer,
      { name: 'mine', description: '', type: 'dynamic', visibility: 'private', rules: rules('x') },
      limits,
    );
    await expect(syncOf(privateOne.id)).rejects.toMatchObject({
      status: 409,
      errors: [{ field: 'segmentId' }],
    });
    const s = await shared('synced');
    await syncOf(s.id);
    await expect(
      updateSegment(db, marketer, s.id, { visibility: 'private' }),
    ).rejects.toMatchObject({ status: 409, code: 'segment-synced' });
  });

  it('locks a segment, and the segments it is made of, while auto-sync is on', async () => {
    const base = await shared('base');
    const top = await shared('top', { all: [{ segment: { id: base.id } }, rules('pro')] });
    const sync = await syncOf(top.id);
    // Off: edits go through.
    await updateSegment(db, marketer, base.id, { rules: rules('team') });

    await expect(setAutoSync(db, marketer, sync.id, true)).rejects.toMatchObject({ status: 403 });
    await setAutoSync(db, admin, sync.id, true);
    for (const id of [top.id, base.id]) {
      const refused = await updateSegment(db, marketer, id, { rules: rules('free') }).catch(
        (e: unknown) => e,
      );
      expect(refused).toMatchObject({ status: 409, code: 'segment-locked' });
      expect((refused as Error).message).toContain(`sync ${sync.id}`);
      await expect(deleteSegment(db, marketer, id)).rejects.toMatchObject({ status: 409 });
    }
    // A name is not a rule: it may change.
    await expect(updateSegment(db, marketer, base.id, { name: 'base 2' })).resolves.toBeTruthy();

    await setAutoSync(db, admin, sync.id, false);
    await expect(
      updateSegment(db, marketer, base.id, { rules: rules('free') }),
    ).resolves.toMatchObject({ recompute: true });
    const audit = await rows<{ action: string }>(
      db,
      sql`select action from audit_log where subject_type = 'sync' order by id`,
    );
    expect(audit.map((a) => a.action)).toEqual([
      'sync.created',
      'sync.auto_sync_on',
      'sync.auto_sync_off',
    ]);
  });

  it('never lets an edit and a concurrent toggle both succeed', async () => {
    for (let round = 0; round < 8; round++) {
      await db.execute(sql`truncate segments, destinations, syncs, audit_log`);
      const s = await shared(`race-${round}`);
      const sync = await syncOf(s.id);
      const [edit, toggle] = await Promise.allSettled([
        updateSegment(db, marketer, s.id, { rules: rules(`v${round}`) }),
        setAutoSync(db, admin, sync.id, true),
      ]);
      expect(toggle.status).toBe('fulfilled');
      if (edit.status === 'rejected') {
        expect(edit.reason).toMatchObject({ status: 409, code: 'segment-locked' });
        continue;
      }
      // Both went through: then the edit must have committed before auto-sync was turned on.
      const order = await rows<{ action: string }>(
        db,
        sql`select action from audit_log
            where action in ('segment.updated', 'sync.auto_sync_on') order by id`,
      );
      expect(order.map((o) => o.action)).toEqual(['segment.updated', 'sync.auto_sync_on']);
    }
  });
});
