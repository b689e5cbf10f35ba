import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { applyConfig, describePlan, planConfig } from '../../src/apply/apply.ts';
import type { ConfigFileError } from '../../src/apply/load.ts';
import { loadConfigDir } from '../../src/apply/load.ts';
import { createApp } from '../../src/api/app.ts';
import { createApiToken } from '../../src/auth/credentials.ts';
import { testConfig } from '../../src/config.ts';
import type { HubContext } from '../../src/context.ts';
import { rows, type Database } from '../../src/db/index.ts';
import { secretBox } from '../../src/destinations/secrets.ts';
import { createLogger } from '../../src/log.ts';
import { sql } from 'drizzle-orm';
import { createRegistry } from '../../src/sync/registry.ts';
import filePlugin from '../../plugins/file/index.ts';
import { caller } from '../api/support.ts';
import { testDatabase } from '../support/db.ts';
import { memoryDestination } from '../support/destinations.ts';

let database: Database;
let ctx: HubContext;
let folder: string;
let exports: string;
const memory = memoryDestination();

beforeAll(async () => {
  database = await testDatabase();
  const registry = createRegistry();
  registry.register(filePlugin);
  registry.register(memory.plugin);
  ctx = {
    db: database.db,
    config: testConfig(),
    log: createLogger('error', {}, () => {}),
    sync: {
      registry,
      box: secretBox(Buffer.alloc(32, 7)),
      log: createLogger('error', {}, () => {}),
      queues: new Map(),
    },
  };
});
afterAll(async () => {
  await database.close();
});
beforeAll(() => {
  exports = mkdtempSync(join(tmpdir(), 'ah-exports-'));
  return () => rmSync(exports, { recursive: true, force: true });
});
beforeEach(() => {
  folder = mkdtempSync(join(tmpdir(), 'ah-config-'));
  return () => rmSync(folder, { recursive: true, force: true });
});

const write = (name: string, text: string) => writeFileSync(join(folder, name), text);
const env = { MEMORY_KEY: 'mk-secret-1234' };

const pipeline = (options: { minSpent?: number; autoSync?: boolean } = {}) => `
destinations:
  exports:
    plugin: file
    config:
      directory: ${exports}
      format: csv
segments:
  big-spenders:
    description: Spent a lot
    rules:
      computed: { name: total_spent, op: gte, value: ${options.minSpent ?? 100} }
  big-and-loyal:
    rules:
      all:
        - segment: { key: big-spenders }
        - computed: { name: purchase_count, op: gte, value: 2 }
  rfm-champions:
    template: rfm-champions
syncs:
  big-spenders-to-file:
    segment: big-spenders
    destination: exports
    mapping:
      - { from: "identity:email", to: email }
    autoSync: ${options.autoSync ?? false}
`;

describe('config as code', () => {
  it('plans everything on a first apply, then nothing; a change plans only itself', async () => {
    write('pipeline.yaml', pipeline());
    const loaded = loadConfigDir(folder, env);
    const first = await planConfig(ctx, loaded);
    expect(first.changes.map((c) => `${c.action} ${c.kind} ${c.key}`).sort()).toEqual([
      'create destination exports',
      'create segment big-and-loyal',
      'create segment big-spenders',
      'create segment rfm-champions',
      'create sync big-spenders-to-file',
    ]);
    // Planning writes nothing.
    const [none] = await rows<{ n: number }>(ctx.db, sql`select count(*)::int as n from segments`);
    expect(none!.n).toBe(0);

    await applyConfig(ctx, loaded);
    const again = await planConfig(ctx, loadConfigDir(folder, env));
    expect(again.changes).toEqual([]);
    expect(describePlan(again)).toBe('Nothing to change: 5 objects as declared.');

    // The referencing segment points at the referenced one's id.
    const [loyal] = await rows<{ rules: { all: { segment?: { id: string } }[] } }>(
      ctx.db,
      sql`select rules from segments where managed_by = 'big-and-loyal'`,
    );
    const [big] = await rows<{ id: string }>(
      ctx.db,
      sql`select id from segments where managed_by = 'big-spenders'`,
    );
    expect(loyal!.rules.all[0]!.segment!.id).toBe(big!.id);

    write('pipeline.yaml', pipeline({ minSpent: 250 }));
    const changed = await planConfig(ctx, loadConfigDir(folder, env));
    expect(changed.changes).toEqual([
      { kind: 'segment', key: 'big-spenders', action: 'update', fields: ['rules'], id: big!.id },
    ]);
    await applyConfig(ctx, loadConfigDir(folder, env));
    expect((await planConfig(ctx, loadConfigDir(folder, env))).changes).toEqual([]);
  });

  it('edits a segment an auto-sync locks by turning the auto-sync off and on again', async () => {
    write('pipeline.yaml', pipeline({ minSpent: 250, autoSync: true }));
    await applyConfig(ctx, loadConfigDir(folder, env));
    const [sync] = await rows<{ auto_sync: boolean }>(
      ctx.db,
      sql`select auto_sync from syncs where managed_by = 'big-spenders-to-file'`,
    );
    expect(sync!.auto_sync).toBe(true);
    write('pipeline.yaml', pipeline({ minSpent: 300, autoSync: true }));
    const result = await applyConfig(ctx, loadConfigDir(folder, env));
    expect(result.changes.map((c) => `${c.action} ${c.kind} ${c.key}`)).toEqual([
      'update segment big-spenders',
    ]);
    const [after] = await rows<{ auto_sync: boolean; rules: { computed: { value: number } } }>(
      ctx.db,
      sql`select s.auto_sync, g.rules from syncs s join segments g on g.id = s.segment_id
          where s.managed_by = 'big-spenders-to-file'`,
    );
    expect(after).toEqual({
      auto_sync: true,
      rules: { computed: expect.objectContaining({ value: 300 }) },
    });
  });

  it('refuses API edits of managed objects, naming the config key', async () => {
    const { token } = await createApiToken(ctx.db, { name: 'marketer', role: 'admin' });
    const call = caller(createApp(ctx), token);
    const [segment] = await rows<{ id: string }>(
      ctx.db,
      sql`select id from segments where managed_by = 'rfm-champions'`,
    );
    const answer = await call('PATCH', `/api/segments/${segment!.id}`, {
      body: { description: 'edited by hand' },
    });
    expect(answer.status).toBe(409);
    expect(answer.body).toMatchObject({ managedBy: 'rfm-champions' });
    expect(answer.body.detail).toMatch(/config as code.*audiencehub apply/);
    expect((await call('DELETE', `/api/segments/${segment!.id}`)).status).toBe(409);
    const listed = await call('GET', `/api/segments/${segment!.id}`);
    expect(listed.body.managedBy).toBe('rfm-champions');

    const [destination] = await rows<{ id: string }>(
      ctx.db,
      sql`select id from destinations where managed_by = 'exports'`,
    );
    const renamed = await call('PATCH', `/api/destinations/${destination!.id}`, {
      body: { name: 'renamed' },
    });
    expect(renamed.status).toBe(409);
    expect(renamed.body.type).toMatch(/managed-by-config$/);
    const [sync] = await rows<{ id: string }>(
      ctx.db,
      sql`select id from syncs where managed_by = 'big-spenders-to-file'`,
    );
    const toggled = await call('PUT', `/api/syncs/${sync!.id}/auto-sync`, {
      body: { enabled: false },
    });
    expect(toggled.status).toBe(409);
    expect(toggled.body.managedBy).toBe('big-spenders-to-file');
    expect((await call('DELETE', `/api/syncs/${sync!.id}`)).status).toBe(409);
  });

  it('deletes what config made when its key is gone, and never touches what the API made', async () => {
    const { token } = await createApiToken(ctx.db, { name: 'marketer 2', role: 'marketer' });
    const call = caller(createApp(ctx), token);
    const own = await call('POST', '/api/segments', {
      body: {
        name: 'Made by hand',
        rules: { computed: { name: 'purchase_count', op: 'gte', value: 1 } },
      },
    });
    expect(own.status).toBe(201);
    write(
      'pipeline.yaml',
      pipeline({ minSpent: 300, autoSync: true }).replace(
        / {2}rfm-champions:\n {4}template: rfm-champions\n/,
        '',
      ),
    );
    const plan = await planConfig(ctx, loadConfigDir(folder, env));
    expect(plan.changes.map((c) => `${c.action} ${c.kind} ${c.key}`)).toEqual([
      'delete segment rfm-champions',
    ]);
    await applyConfig(ctx, loadConfigDir(folder, env));
    const names = await rows<{ name: string }>(
      ctx.db,
      sql`select name from segments order by name`,
    );
    expect(names.map((n) => n.name)).toEqual(['Made by hand', 'big-and-loyal', 'big-spenders']);

    // A config key whose name an API-made object has is a problem, not a take-over.
    write(
      'extra.yaml',
      'segments:\n  by-hand:\n    name: Made by hand\n    template: high-value\n',
    );
    await expect(planConfig(ctx, loadConfigDir(folder, env))).rejects.toThrow(
      /segments.by-hand.name: "Made by hand" is the name of segment .* made through the API/,
    );
  });
});

describe('config files', () => {
  it('lists every problem with its file and path, and writes nothing', async () => {
    write(
      'a.yaml',
      `
destinations:
  vault:
    plugin: memory
    config:
      apiKey: written-in-clear
  nowhere:
    plugin: no-such-plugin
segments:
  Bad Key:
    template: high-value
  no-rules: {}
syncs:
  s1:
    segment: missing
    destination: vault
    mapping: [{ from: "identity:email", to: email }]
    extra: 1
`,
    );
    write('b.json', '{"segments": {"dup": {"template": "high-value"}}}');
    write('c.yaml', 'segments:\n  dup:\n    template: new-paying\n    schedule: "${UNSET_VAR}"\n');
    let problems: string[] = [];
    try {
      await planConfig(ctx, loadConfigDir(folder, env));
    } catch (error) {
      problems = (error as ConfigFileError).problems;
    }
    expect(problems.join('\n')).toMatch(/a\.yaml: segments\.Bad Key: keys use lower case/);
    expect(problems.join('\n')).toMatch(
      /a\.yaml: segments\.no-rules\.rules: a segment needs rules or a template/,
    );
    expect(problems.join('\n')).toMatch(/a\.yaml: syncs\.s1: Unrecognized key: "extra"/);
    expect(problems.join('\n')).toMatch(/c\.yaml: segments\.dup is declared in .*b\.json too/);
    // Files with schema problems are reported whole before anything else is looked at.
    write(
      'a.yaml',
      `
destinations:
  vault:
    plugin: memory
    config:
      apiKey: written-in-clear
  nowhere:
    plugin: no-such-plugin
syncs:
  s1:
    segment: missing
    destination: vault
    mapping: [{ from: "identity:email", to: email }]
`,
    );
    rmSync(join(folder, 'b.json'));
    try {
      await planConfig(ctx, loadConfigDir(folder, env));
      problems = [];
    } catch (error) {
      problems = (error as ConfigFileError).problems;
    }
    const all = problems.join('\n');
    expect(all).toMatch(
      /c\.yaml: segments\.dup\.schedule: the environment variable UNSET_VAR is not set/,
    );
    expect(all).toMatch(/syncs\.s1\.segment: no segment "missing" in this config/);
    const [count] = await rows<{ n: number }>(
      ctx.db,
      sql`select count(*)::int as n from destinations where name in ('vault', 'nowhere')`,
    );
    expect(count!.n).toBe(0);

    rmSync(join(folder, 'c.yaml'));
    write(
      'a.yaml',
      'destinations:\n  vault:\n    plugin: memory\n    config:\n      apiKey: written-in-clear\n  nowhere:\n    plugin: no-such-plugin\n',
    );
    const planned = await planConfig(ctx, loadConfigDir(folder, env)).catch((e: ConfigFileError) =>
      e.problems.join('\n'),
    );
    expect(planned).toMatch(
      /destinations\.vault\.config\.apiKey is a secret: write it as an environment reference such as \$\{API_KEY\}/,
    );
    expect(planned).not.toMatch(/written-in-clear/);
    expect(planned).toMatch(/destinations\.nowhere\.plugin: no plugin "no-such-plugin"/);
  });

  it('takes secrets from the environment, and notices when they change', async () => {
    write(
      'a.yaml',
      'destinations:\n  vault:\n    plugin: memory\n    config:\n      apiKey: ${MEMORY_KEY}\n',
    );
    await applyConfig(ctx, loadConfigDir(folder, env));
    const [row] = await rows<{ config: unknown; secrets: string }>(
      ctx.db,
      sql`select config, secrets from destinations where managed_by = 'vault'`,
    );
    expect(JSON.stringify(row)).not.toContain(env.MEMORY_KEY);
    expect(ctx.sync!.box.open<{ apiKey: string }>(row!.secrets).apiKey).toBe(env.MEMORY_KEY);
    expect((await planConfig(ctx, loadConfigDir(folder, env))).changes).toEqual([]);
    const rotated = await planConfig(ctx, loadConfigDir(folder, { MEMORY_KEY: 'mk-rotated-5678' }));
    expect(rotated.changes).toEqual([
      expect.objectContaining({
        kind: 'destination',
        key: 'vault',
        action: 'update',
        fields: ['config'],
      }),
    ]);
  });
});

describe('config as code: sources', () => {
  it('creates a source with its stream mapping, plans nothing after, and refuses API edits', async () => {
    const data = mkdtempSync(join(tmpdir(), 'ah-config-csv-'));
    writeFileSync(join(data, 'people.csv'), 'Email,Country\nann@example.com,France\n');
    const source = (country: string) => `
sources:
  people-file:
    name: People file
    connector: csv
    config: { path: ${join(data, 'people.csv')} }
    expectedInterval: 25h
    streams:
      people:
        mapping:
          identities: { email: Email }
          traits: { ${country}: Country }
`;
    write('sources.yaml', source('country'));
    // The other suites' objects are gone from the folder: this apply deletes them too.
    const plan = await planConfig(ctx, loadConfigDir(folder, env));
    expect(plan.changes.filter((c) => c.action !== 'delete')).toEqual([
      { kind: 'source', key: 'people-file', action: 'create' },
    ]);
    const result = await applyConfig(ctx, loadConfigDir(folder, env));
    expect(result.imported).toHaveLength(1);
    const [stream] = await rows<{ mapping: { traits: unknown; traitSource: string } }>(
      ctx.db,
      sql`select st.mapping from import_streams st join sources s on s.id = st.source_id
          where s.managed_by = 'people-file' and st.stream = 'people'`,
    );
    expect(stream!.mapping).toMatchObject({
      traits: { country: 'Country' },
      traitSource: 'People file',
    });
    const [row] = await rows<{ expected_interval_minutes: number }>(
      ctx.db,
      sql`select expected_interval_minutes from sources where managed_by = 'people-file'`,
    );
    expect(row!.expected_interval_minutes).toBe(25 * 60);
    expect((await planConfig(ctx, loadConfigDir(folder, env))).changes).toEqual([]);

    write('sources.yaml', source('home_country'));
    const changed = await planConfig(ctx, loadConfigDir(folder, env));
    expect(changed.changes).toEqual([
      expect.objectContaining({
        kind: 'source',
        key: 'people-file',
        action: 'update',
        fields: ['streams'],
      }),
    ]);
    await applyConfig(ctx, loadConfigDir(folder, env));
    expect((await planConfig(ctx, loadConfigDir(folder, env))).changes).toEqual([]);

    const { token } = await createApiToken(ctx.db, { name: 'admin 3', role: 'admin' });
    const call = caller(createApp(ctx), token);
    const id = result.imported[0]!;
    const edit = await call('PATCH', `/api/sources/${id}`, { body: { schedule: '0 * * * *' } });
    expect(edit.status).toBe(409);
    expect(edit.body.managedBy).toBe('people-file');

    rmSync(join(folder, 'sources.yaml'));
    const gone = await planConfig(ctx, loadConfigDir(folder, env));
    expect(gone.changes).toEqual([expect.objectContaining({ kind: 'source', action: 'delete' })]);
    rmSync(data, { recursive: true, force: true });
  });
});
