import { randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/api/app.ts';
import { testConfig } from '../../src/config.ts';
import { secretBox } from '../../src/destinations/secrets.ts';
import { createLogger } from '../../src/log.ts';
import {
  ConfigError,
  defineDestination,
  secret,
  TransientError,
  z,
  type RowResult,
} from '../../src/sdk/index.ts';
import type { SyncDeps } from '../../src/sync/engine.ts';
import { createRegistry } from '../../src/sync/registry.ts';
import { driver } from '../support/db.ts';
import { caller, harness, type Answer, type Harness } from './support.ts';

const API_KEY = 'vault-key-5b1e9c0d7a';
const REFUSED_KEY = 'vault-key-refused-77e1';

/**
 * A plugin with a secret field whose check refuses one key, repeating it (to see it blanked),
 * and whose `fields` can be made to fail the ways a service does.
 */
function vaultPlugin() {
  const checked: Record<string, unknown>[] = [];
  /** The configs `fields` was called with. */
  const asked: Record<string, unknown>[] = [];
  const behaviour = { fields: null as null | 'config' | 'transient' | 'crash' };
  const plugin = defineDestination({
    name: 'vault',
    title: 'Vault CRM',
    description: 'An in-memory CRM for tests.',
    config: z.object({
      account: z.string().min(3),
      apiKey: secret(z.string().min(8)),
      region: z.enum(['eu', 'us']).default('eu'),
      headers: secret(z.record(z.string(), z.string())).optional(),
    }),
    limits: { batchSize: 50, concurrency: 2 }, // small, like a modest CRM
    check: async ({ config }) => {
      checked.push(config);
      return config.apiKey === REFUSED_KEY
        ? { ok: false, reason: `the key ${config.apiKey} was revoked` }
        : { ok: true };
    },
    fields: async ({ config }) => {
      asked.push(config);
      if (behaviour.fields === 'config') {
        throw new ConfigError(`the key ${config.apiKey} may not read fields`);
      }
      if (behaviour.fields === 'transient') {
        throw new TransientError('Vault CRM answered 429', { retryAfterMs: 30_000 });
      }
      if (behaviour.fields === 'crash') throw new Error(`cannot parse ${config.apiKey}`);
      return [{ key: 'email', label: 'Email', type: 'string', required: true, identifier: true }];
    },
    sync: async ({ batch }) => batch.map((r): RowResult => ({ id: r.id, status: 'ok' })),
  });
  return { plugin, checked, asked, behaviour };
}

describe(`Destinations API (${driver})`, () => {
  let h: Harness;
  let vault: ReturnType<typeof vaultPlugin>;
  let app: ReturnType<typeof createApp>;
  const logs: string[] = [];
  /** Every answer of the app with destinations, to search for the secret at the end. */
  const seen: Answer[] = [];

  beforeAll(async () => {
    h = await harness();
    vault = vaultPlugin();
    const registry = createRegistry();
    registry.register(vault.plugin);
    const log = createLogger('debug', {}, (line) => logs.push(line));
    const sync: SyncDeps = { registry, box: secretBox(randomBytes(32)), log };
    app = createApp({ db: h.db, config: testConfig(), log, sync });
  });
  afterAll(() => h.close());

  const call = async (
    method: string,
    path: string,
    options: { token?: string; body?: unknown } = {},
  ): Promise<Answer> => {
    // Every answer is kept, to search them all for secrets.
    const answer = await caller(app, h.tokens.admin)(method, path, options);
    seen.push(answer);
    return answer;
  };
  const fields = (answer: Answer) => answer.body.errors.map((e: { field: string }) => e.field);
  const create = (body: Record<string, unknown>, token?: string) =>
    call('POST', '/api/destinations', { token, body });
  const valid = (name: string) => ({
    name,
    plugin: 'vault',
    config: { account: 'acme', apiKey: API_KEY },
  });

  it('lists the installed plugins with their config schema, secret fields write-only', async () => {
    for (const token of [h.tokens.admin, h.tokens.marketer]) {
      const res = await call('GET', '/api/destination-plugins', { token });
      expect(res.status, res.text).toBe(200);
      expect(res.body.data).toEqual([
        {
          name: 'vault',
          title: 'Vault CRM',
          description: 'An in-memory CRM for tests.',
          secrets: ['apiKey', 'headers'],
          limits: { batchSize: 50, concurrency: 2 },
          config: {
            type: 'object',
            properties: {
              account: { type: 'string', minLength: 3 },
              apiKey: { type: 'string', minLength: 8, writeOnly: true, format: 'password' },
              region: { type: 'string', enum: ['eu', 'us'], default: 'eu' },
              // `format` speaks only of strings: a secret map is write-only, no more.
              headers: {
                type: 'object',
                propertyNames: { type: 'string' },
                additionalProperties: { type: 'string' },
                writeOnly: true,
              },
            },
            required: ['account', 'apiKey'],
          },
        },
      ]);
    }
    const integrator = await call('GET', '/api/destination-plugins', {
      token: h.tokens.integrator,
    });
    expect(integrator.status).toBe(403);
  });

  it('lets only admins create; the answer names the secret fields set, never their values', async () => {
    for (const token of [h.tokens.marketer, h.tokens.integrator]) {
      const refused = await create(valid('Not mine to make'), token);
      expect(refused.status).toBe(403);
      expect(refused.body.detail).toMatch(/needs the admin role; this token has the \w+ role/);
    }
    const res = await create(valid('Vault EU'));
    expect(res.status, res.text).toBe(201);
    expect(res.body).toEqual({
      id: expect.any(String),
      name: 'Vault EU',
      plugin: 'vault',
      config: { account: 'acme', region: 'eu' },
      secrets: ['apiKey'],
      createdAt: expect.any(String),
      updatedAt: expect.any(String),
      managedBy: null,
    });
    expect(vault.checked.at(-1)).toEqual({ account: 'acme', apiKey: API_KEY, region: 'eu' });
  });

  it('answers 400 naming body fields, down into body.config.<field>', async () => {
    const bad = await create({
      name: 'Bad config',
      plugin: 'vault',
      config: { account: 'ac', apiKey: 'short', region: 'asia' },
    });
    expect(bad.status).toBe(400);
    expect(fields(bad).sort()).toEqual([
      'body.config.account',
      'body.config.apiKey',
      'body.config.region',
    ]);
    const missing = await create({ name: 'Missing', plugin: 'vault', config: {} });
    expect(missing.status).toBe(400);
    expect(fields(missing).sort()).toEqual(['body.config.account', 'body.config.apiKey']);

    const unknown = await create({ name: 'Nope', plugin: 'nope', config: {} });
    expect(unknown.status).toBe(400);
    expect(unknown.body.errors).toEqual([
      { field: 'body.plugin', message: 'unknown plugin; installed: vault' },
    ]);
    const shape = await create({ name: '', plugin: 'vault' });
    expect(shape.status).toBe(400);
    expect(fields(shape).sort()).toEqual(['body.config', 'body.name']);
  });

  it("answers 422 when the plugin's check refuses, without repeating the secret", async () => {
    const res = await create({
      name: 'Revoked',
      plugin: 'vault',
      config: { account: 'acme', apiKey: REFUSED_KEY },
    });
    expect(res.status).toBe(422);
    expect(res.body).toMatchObject({
      type: 'urn:audiencehub:problem:destination-check-failed',
      errors: [{ field: 'body.config', message: 'the key ******** was revoked' }],
    });
    expect(res.text).not.toContain(REFUSED_KEY);
    const list = await call('GET', '/api/destinations');
    expect(list.body.data.map((d: { name: string }) => d.name)).not.toContain('Revoked');
  });

  it('answers 409 naming body.name when the name is taken, in any case', async () => {
    const res = await create(valid('VAULT eu'));
    expect(res.status).toBe(409);
    expect(res.body).toMatchObject({
      type: 'urn:audiencehub:problem:destination-name-taken',
      errors: [{ field: 'body.name', message: expect.stringContaining('exists') }],
    });
  });

  it('lets admins and marketers list and read; integrators get 403', async () => {
    const created = await create({
      ...valid('Vault US'),
      config: { ...valid('').config, region: 'us' },
    });
    expect(created.status, created.text).toBe(201);
    const list = await call('GET', '/api/destinations', { token: h.tokens.marketer });
    expect(list.status).toBe(200);
    expect(list.body.data.map((d: { name: string }) => d.name)).toEqual(['Vault EU', 'Vault US']);
    const read = await call('GET', `/api/destinations/${created.body.id}`, {
      token: h.tokens.marketer,
    });
    expect(read.status).toBe(200);
    expect(read.body).toEqual(created.body);
    for (const path of ['/api/destinations', `/api/destinations/${created.body.id}`]) {
      expect((await call('GET', path, { token: h.tokens.integrator })).status).toBe(403);
    }
    expect(
      (await call('GET', '/api/destinations/0190f5c2-8b1e-7a3c-9d4e-5f6a7b8c9d0e')).status,
    ).toBe(404);
    expect((await call('GET', '/api/destinations/not-an-id')).status).toBe(404);
  });

  it('changes a destination (admins only), keeping a secret left out, checking again', async () => {
    const [eu] = (await call('GET', '/api/destinations')).body.data;
    const path = `/api/destinations/${eu.id}`;
    const marketer = await call('PATCH', path, { token: h.tokens.marketer, body: { name: 'X' } });
    expect(marketer.status).toBe(403);

    const renamed = await call('PATCH', path, {
      body: { name: 'Vault Europe', config: { region: 'us' } },
    });
    expect(renamed.status, renamed.text).toBe(200);
    expect(renamed.body).toMatchObject({
      name: 'Vault Europe',
      config: { account: 'acme', region: 'us' },
      secrets: ['apiKey'],
    });
    // The plugin checked the merged config: the stored key was kept.
    expect(vault.checked.at(-1)).toEqual({ account: 'acme', apiKey: API_KEY, region: 'us' });

    const refused = await call('PATCH', path, { body: { config: { apiKey: REFUSED_KEY } } });
    expect(refused.status).toBe(422);
    expect(refused.body.errors).toEqual([{ field: 'body.config', message: expect.any(String) }]);
    const invalid = await call('PATCH', path, { body: { config: { account: 'x' } } });
    expect(invalid.status).toBe(400);
    expect(fields(invalid)).toEqual(['body.config.account']);
    const shape = await call('PATCH', path, { body: { name: 42 } });
    expect(fields(shape)).toEqual(['body.name']);

    // Nothing refused was saved.
    const read = await call('GET', path);
    expect(read.body).toMatchObject({ name: 'Vault Europe', config: { region: 'us' } });
    expect(
      (
        await call('PATCH', '/api/destinations/0190f5c2-8b1e-7a3c-9d4e-5f6a7b8c9d0e', {
          body: { name: 'Ghost' },
        })
      ).status,
    ).toBe(404);
  });

  it("lists a destination's fields, asking its plugin with the stored config", async () => {
    const [eu] = (await call('GET', '/api/destinations')).body.data;
    const path = `/api/destinations/${eu.id}/fields`;
    for (const token of [h.tokens.admin, h.tokens.marketer]) {
      const res = await call('GET', path, { token });
      expect(res.status, res.text).toBe(200);
      expect(res.body).toEqual({
        data: [{ key: 'email', label: 'Email', type: 'string', required: true, identifier: true }],
        acceptsNewFields: false,
      });
    }
    // The secret was opened for the call, in memory only.
    expect(vault.asked.at(-1)).toEqual({ account: 'acme', apiKey: API_KEY, region: 'us' });
    expect((await call('GET', path, { token: h.tokens.integrator })).status).toBe(403);
    const none = '0190f5c2-8b1e-7a3c-9d4e-5f6a7b8c9d0e';
    expect((await call('GET', `/api/destinations/${none}/fields`)).status).toBe(404);
  });

  it('answers a problem when the plugin cannot list its fields, never with the secret', async () => {
    const [eu] = (await call('GET', '/api/destinations')).body.data;
    const path = `/api/destinations/${eu.id}/fields`;
    try {
      vault.behaviour.fields = 'config';
      const refused = await call('GET', path, { token: h.tokens.marketer });
      expect(refused.status).toBe(422);
      expect(refused.body).toMatchObject({
        type: 'urn:audiencehub:problem:destination-fields-failed',
        detail: 'Vault CRM could not list its fields: the key ******** may not read fields',
      });
      vault.behaviour.fields = 'transient';
      const busy = await call('GET', path);
      expect(busy.status).toBe(503);
      expect(busy.body).toMatchObject({
        type: 'urn:audiencehub:problem:destination-unavailable',
        detail: 'Vault CRM is busy or out of reach: Vault CRM answered 429. Try again later.',
        retryAfterSeconds: 30,
      });
      vault.behaviour.fields = 'crash';
      const crashed = await call('GET', path);
      expect(crashed.status).toBe(502);
      expect(crashed.body.detail).toBe(
        'Vault CRM could not list its fields: the plugin failed unexpectedly (logged)',
      );
      expect(logs.some((l) => l.includes('cannot parse ********'))).toBe(true);
    } finally {
      vault.behaviour.fields = null;
    }

    // A stored config the plugin no longer takes is named by its fields, not its values.
    await h.db.execute(
      sql`update destinations set config = config || '{"account": "x"}'::jsonb where id = ${eu.id}`,
    );
    try {
      const stale = await call('GET', path);
      expect(stale.status).toBe(409);
      expect(stale.body).toMatchObject({
        type: 'urn:audiencehub:problem:destination-misconfigured',
        detail: expect.stringContaining('(account)'),
      });
    } finally {
      await h.db.execute(
        sql`update destinations set config = config || '{"account": "acme"}'::jsonb
            where id = ${eu.id}`,
      );
    }
  });

  it('refuses to delete a destination in use (409 naming the syncs), then deletes it', async () => {
    const destination = (await create(valid('In use'))).body;
    const segment = await call('POST', '/api/segments', {
      token: h.tokens.marketer,
      body: {
        name: 'Everyone with a plan',
        visibility: 'shared',
        rules: { trait: { name: 'plan', op: 'exists' } },
      },
    });
    expect(segment.status, segment.text).toBe(201);
    const sync = await call('POST', '/api/syncs', {
      token: h.tokens.marketer,
      body: {
        segmentId: segment.body.id,
        destinationId: destination.id,
        mapping: [{ from: 'identity:email', to: 'email' }],
      },
    });
    expect(sync.status, sync.text).toBe(201);

    const path = `/api/destinations/${destination.id}`;
    expect((await call('DELETE', path, { token: h.tokens.marketer })).status).toBe(403);
    const inUse = await call('DELETE', path);
    expect(inUse.status).toBe(409);
    expect(inUse.body).toMatchObject({
      type: 'urn:audiencehub:problem:destination-in-use',
      syncs: [sync.body.id],
    });
    expect(inUse.body.detail).toContain(sync.body.id);

    expect((await call('DELETE', `/api/syncs/${sync.body.id}`)).status).toBe(204);
    expect((await call('DELETE', path)).status).toBe(204);
    expect((await call('GET', path)).status).toBe(404);
    expect((await call('DELETE', path)).status).toBe(404);
  });

  it('audit-logs every destination change', async () => {
    const res = await call('GET', '/api/audit?limit=200');
    expect(res.status).toBe(200);
    const actions = res.body.data
      .filter((e: { subjectType: string }) => e.subjectType === 'destination')
      .map((e: { action: string }) => e.action);
    expect(actions.filter((a: string) => a === 'destination.created')).toHaveLength(3);
    expect(actions).toContain('destination.updated');
    expect(actions).toContain('destination.deleted');
  });

  it('never shows a secret: in no answer, the audit log or the server log', () => {
    expect(seen.length).toBeGreaterThan(30);
    for (const answer of seen) {
      expect(answer.text).not.toContain(API_KEY);
      expect(answer.text).not.toContain(REFUSED_KEY);
    }
    for (const line of logs) {
      expect(line).not.toContain(API_KEY);
      expect(line).not.toContain(REFUSED_KEY);
    }
  });

  it('answers 503 on a hub started without destination plugins', async () => {
    const res = await h.call('GET', '/api/destinations');
    expect(res.status).toBe(503);
    expect(res.body.type).toBe('urn:audiencehub:problem:destinations-unavailable');
    expect((await h.call('GET', '/api/destination-plugins')).status).toBe(503);
  });
});
