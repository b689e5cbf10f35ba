import { existsSync, readdirSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/api/app.ts';
import { Role, createApiToken } from '../../src/auth/credentials.ts';
import { testConfig } from '../../src/config.ts';
import type { Database } from '../../src/db/index.ts';
import { uploadFolder } from '../../src/imports/store.ts';
import { testDatabase } from '../support/db.ts';
import { folderSource, importDeps, tableSource } from '../imports/support.ts';
import { caller, type Answer } from './support.ts';

let database: Database;
let call: ReturnType<typeof caller>;
let app: ReturnType<typeof createApp>;
const tokens = {} as Record<Role, string>;
const logs: string[] = [];
const tables = tableSource();
const deps = importDeps([tables.connector, folderSource()], logs);
const SECRET = 'good';
const config = { database: 'erp', token: SECRET, checkpointEvery: 2 };

tables.tables.set('customers', {
  rows: [
    { id: '1', email: 'ada@example.com', name: 'Ada', since: '2020-01-05' },
    { id: '', email: '', name: '=HYPERLINK("http://evil")', since: '2020-02-05' },
    { id: '3', email: 'grace@example.com', name: 'Grace', since: 'soon' },
  ],
});

beforeAll(async () => {
  database = await testDatabase();
  app = createApp({
    db: database.db,
    config: testConfig({ maxUploadBytes: 4096 }),
    log: deps.log,
    imports: deps,
  });
  for (const role of Role.options) {
    tokens[role] = (await createApiToken(database.db, { name: `${role} token`, role })).token;
  }
  call = caller(app, tokens.admin);
});
afterAll(async () => {
  await database?.close();
});

const as = (role: Role) => ({ token: tokens[role] });
const mapping = {
  identities: { email: 'email', customer_id: 'id' },
  traits: { name: 'name', since: { field: 'since', type: 'date' } },
};

async function newSource(name: string, body: Record<string, unknown> = {}): Promise<Answer> {
  const answer = await call('POST', '/api/sources', {
    body: { name, connector: 'tables', config, ...body },
  });
  expect(answer.status).toBe(201);
  return answer;
}

describe('source connectors', () => {
  it('are listed to every role, secret fields write-only', async () => {
    const answer = await call('GET', '/api/source-connectors', as('integrator'));
    expect(answer.status).toBe(200);
    const byName = Object.fromEntries(answer.body.data.map((c: { name: string }) => [c.name, c]));
    expect(byName.tables).toMatchObject({
      title: 'In-memory tables',
      secrets: ['token'],
      uploads: false,
      limits: { requestsPerSecond: 100, concurrency: 2 },
    });
    expect(byName.tables.config.properties.token).toMatchObject({
      writeOnly: true,
      format: 'password',
    });
    expect(byName.folder.uploads).toBe(true);
  });
});

describe('sources', () => {
  it('are created by admins only, checked first, secrets sealed and never returned', async () => {
    const denied = await call('POST', '/api/sources', {
      ...as('marketer'),
      body: { name: 'ERP', connector: 'tables', config },
    });
    expect(denied.status).toBe(403);

    const invalid = await call('POST', '/api/sources', {
      body: { name: 'ERP', connector: 'tables', config: { token: 'x' } },
    });
    expect(invalid.status).toBe(400);
    expect(invalid.headers.get('content-type')).toMatch(/application\/problem\+json/);
    expect(invalid.body.errors).toEqual([
      { field: 'body.config.database', message: expect.any(String) },
    ]);

    const unknown = await call('POST', '/api/sources', {
      body: { name: 'ERP', connector: 'nope', config },
    });
    expect(unknown.status).toBe(400);
    expect(unknown.body.errors[0].field).toBe('body.connector');

    const refused = await call('POST', '/api/sources', {
      body: { name: 'ERP', connector: 'tables', config: { ...config, token: 'wrong-token-value' } },
    });
    expect(refused.status).toBe(422);
    expect(refused.body.type).toBe('urn:audiencehub:problem:source-check-failed');
    // The connector's reason repeats the token; the hub blanks it.
    expect(refused.text).not.toContain('wrong-token-value');
    expect(refused.body.detail).toContain('token ******** refused');

    const created = await newSource('ERP', {
      schedule: '0 3 * * *',
      expectedIntervalMinutes: 1500,
      alertWebhookUrl: 'https://hooks.example.com/services/T000/B000/XXXXSECRET',
      maxRejectShare: 0.2,
    });
    expect(created.body).toMatchObject({
      name: 'ERP',
      connector: 'tables',
      config: { database: 'erp', checkpointEvery: 2 },
      secrets: ['token'],
      uploads: false,
      schedule: '0 3 * * *',
      expectedIntervalMinutes: 1500,
      alertWebhookHost: 'hooks.example.com',
      maxRejectShare: 0.2,
      managedBy: null,
    });
    expect(created.body.nextRunAt).toMatch(/T03:00:00/);
    expect(created.text).not.toContain(SECRET === 'good' ? '"good"' : SECRET);
    expect(created.text).not.toContain('XXXXSECRET');

    const taken = await call('POST', '/api/sources', {
      body: { name: 'erp', connector: 'tables', config },
    });
    expect(taken.status).toBe(409);
    expect(taken.body.errors).toEqual([
      { field: 'body.name', message: 'a source named "erp" exists' },
    ]);

    for (const role of Role.options) {
      const listed = await call('GET', '/api/sources', as(role));
      expect(listed.status).toBe(200);
      expect(listed.body.data.map((s: { name: string }) => s.name)).toContain('ERP');
      expect(listed.text).not.toContain('XXXXSECRET');
    }
    const audit = await call('GET', '/api/audit?action=source.created');
    expect(audit.body.data[0]).toMatchObject({ subjectId: created.body.id });
    expect(logs.join('\n')).not.toContain('wrong-token-value');
    expect(logs.join('\n')).not.toContain('XXXXSECRET');
  });

  it('are changed by admins: a changed config is checked again, a left-out secret kept', async () => {
    const { body: source } = await newSource('CRM');
    const renamed = await call('PATCH', `/api/sources/${source.id}`, {
      body: { name: 'CRM 2', config: { checkpointEvery: 5 } },
    });
    expect(renamed.status).toBe(200);
    expect(renamed.body).toMatchObject({ name: 'CRM 2', config: { checkpointEvery: 5 } });
    const refused = await call('PATCH', `/api/sources/${source.id}`, {
      body: { config: { token: 'another-bad-one' } },
    });
    expect(refused.status).toBe(422);
    expect(refused.text).not.toContain('another-bad-one');
    const byMarketer = await call('PATCH', `/api/sources/${source.id}`, {
      ...as('marketer'),
      body: { name: 'x' },
    });
    expect(byMarketer.status).toBe(403);
    const badSchedule = await call('PATCH', `/api/sources/${source.id}`, {
      body: { schedule: 'every day' },
    });
    expect(badSchedule.status).toBe(400);
    expect(badSchedule.body.errors[0].field).toBe('body.schedule');
  });

  it('list their streams and take a mapping per stream, refusing a bad one with a 422 naming the field', async () => {
    const { body: source } = await newSource('Shop');
    const streams = await call('GET', `/api/sources/${source.id}/streams`, as('marketer'));
    expect(streams.status).toBe(200);
    expect(streams.body.data).toEqual([
      expect.objectContaining({ name: 'customers', mapping: null, enabled: false }),
    ]);

    const bad = await call('PUT', `/api/sources/${source.id}/streams/customers`, {
      body: {
        mapping: {
          identities: { email: 'email' },
          event: { name: 'x', timestamp: { field: 'since', format: 'DD.MM' } },
        },
      },
    });
    expect(bad.status).toBe(422);
    expect(bad.body.type).toBe('urn:audiencehub:problem:invalid-mapping');
    expect(bad.body.errors).toEqual([
      { field: 'body.mapping.event.timestamp.format', message: expect.stringMatching(/YYYY/) },
    ]);

    const unknownField = await call('PUT', `/api/sources/${source.id}/streams/customers`, {
      body: { mapping: { identities: { email: 'mail' } } },
    });
    expect(unknownField.status).toBe(422);
    expect(unknownField.body.errors).toEqual([
      {
        field: 'body.mapping.identities.email',
        message: '"mail" is not a field of stream customers',
      },
    ]);

    const missing = await call('PUT', `/api/sources/${source.id}/streams/orders`, {
      body: { mapping },
    });
    expect(missing.status).toBe(404);

    const byIntegrator = await call('PUT', `/api/sources/${source.id}/streams/customers`, {
      ...as('integrator'),
      body: { mapping },
    });
    expect(byIntegrator.status).toBe(403);

    const ok = await call('PUT', `/api/sources/${source.id}/streams/customers`, {
      body: { mapping },
    });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({
      name: 'customers',
      enabled: true,
      mapping: { ...mapping, traitSource: 'Shop', dropDuplicates: true },
    });
  });

  it('import on request, with run history, and rejects to read and download', async () => {
    const { body: source } = await newSource('Imports');
    await call('PUT', `/api/sources/${source.id}/streams/customers`, { body: { mapping } });
    const denied = await call('POST', `/api/sources/${source.id}/runs`, as('marketer'));
    expect(denied.status).toBe(403);

    // Two of three rows are bad: over the 10% limit, so the run fails and imports nothing.
    const run = await call('POST', `/api/sources/${source.id}/runs`, {
      ...as('integrator'),
      body: { stream: 'customers' },
    });
    expect(run.status).toBe(200);
    expect(run.body.data).toEqual([
      expect.objectContaining({
        stream: 'customers',
        status: 'failed',
        rowsRead: 3,
        rowsImported: 0,
        rowsRejected: 2,
        error: expect.stringMatching(/^2 of 3 rows read \(66.7%\) were rejected/),
      }),
    ]);
    await call('PATCH', `/api/sources/${source.id}`, { body: { maxRejectShare: 1 } });
    const again = await call('POST', `/api/sources/${source.id}/runs`, as('admin'));
    expect(again.body.data[0]).toMatchObject({ status: 'succeeded', rowsImported: 1 });

    const history = await call('GET', `/api/sources/${source.id}/runs?limit=1`, as('marketer'));
    expect(history.status).toBe(200);
    expect(history.body.data).toHaveLength(1);
    expect(history.body.data[0].id).toBe(again.body.data[0].id);
    expect(history.body.nextCursor).toEqual(expect.any(String));

    const byMarketer = await call('GET', `/api/sources/${source.id}/rejects`, as('marketer'));
    expect(byMarketer.status).toBe(403);
    const rejects = await call(
      'GET',
      `/api/sources/${source.id}/rejects?runId=${again.body.data[0].id}`,
      as('integrator'),
    );
    expect(rejects.status).toBe(200);
    expect(rejects.body.data).toEqual([
      expect.objectContaining({
        recordKey: 'line-2',
        field: 'email',
        reason: 'no identity: email is empty; id is empty',
        row: { id: '', email: '', name: '=HYPERLINK("http://evil")', since: '2020-02-05' },
      }),
      expect.objectContaining({
        recordKey: 'line-3',
        field: 'since',
        reason: 'since: "soon" is not a date (ISO 8601 expected)',
      }),
    ]);

    const csv = await call('GET', `/api/sources/${source.id}/rejects?format=csv`);
    expect(csv.status).toBe(200);
    expect(csv.headers.get('content-type')).toMatch(/text\/csv/);
    expect(csv.headers.get('content-disposition')).toMatch(/attachment; filename="rejects-/);
    const lines = csv.text.trim().split('\r\n');
    expect(lines[0]).toBe('run_id,stream,record_key,field,reason,rejected_at,id,email,name,since');
    // A formula in the data is defused.
    expect(lines[1]).toContain(`,"'=HYPERLINK(""http://evil"")",`);
    expect(lines).toHaveLength(3);
  });

  it('take uploaded files when their connector reads uploads', async () => {
    const created = await call('POST', '/api/sources', {
      body: { name: 'Uploads', connector: 'folder', config: {} },
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ uploads: true, config: {} });
    const id = created.body.id as string;
    const file = 'email,name\nada@example.com,Ada\ngrace@example.com,Grace\n';
    const res = await app.request(`/api/sources/${id}/files?name=people.csv`, {
      method: 'POST',
      body: gzipSync(file),
      headers: {
        authorization: `Bearer ${tokens.integrator}`,
        'content-type': 'text/csv',
        'content-encoding': 'gzip',
      },
    });
    expect(res.status).toBe(201);
    const sent = { body: await res.json() };
    expect(sent.body).toMatchObject({ name: 'people.csv.gz', streams: ['people'] });
    expect(readdirSync(uploadFolder(deps, id))).toEqual(['people.csv.gz']);

    const twice = await call('POST', `/api/sources/${id}/files?name=people.csv.gz`, {
      body: 'email,name\n',
      headers: { 'content-type': 'text/csv' },
    });
    expect(twice.status).toBe(409);
    expect(twice.body.type).toBe('urn:audiencehub:problem:file-exists');

    const refused = await call('POST', `/api/sources/${id}/files?name=broken.csv`, {
      body: 'just one column\nx\n',
      headers: { 'content-type': 'text/csv' },
    });
    expect(refused.status).toBe(422);
    expect(readdirSync(uploadFolder(deps, id))).toEqual(['people.csv.gz']);

    const large = await call('POST', `/api/sources/${id}/files?name=large.csv`, {
      body: `email,name\n${'x@example.com,X\n'.repeat(400)}`,
      headers: { 'content-type': 'text/csv' },
    });
    expect(large.status).toBe(413);
    expect(readdirSync(uploadFolder(deps, id))).toEqual(['people.csv.gz']);

    const badName = await call('POST', `/api/sources/${id}/files?name=../x.csv`, {
      body: 'a,b\n',
      headers: { 'content-type': 'text/csv' },
    });
    expect(badName.status).toBe(400);
    expect(badName.body.errors[0].field).toBe('name');

    await call('PUT', `/api/sources/${id}/streams/people`, {
      body: { mapping: { identities: { email: 'email' }, traits: { name: 'name' } } },
    });
    const run = await call('POST', `/api/sources/${id}/runs`);
    expect(run.body.data[0]).toMatchObject({ status: 'succeeded', rowsImported: 2 });

    const { body: tablesSource } = await newSource('Not files');
    const notUploadable = await call('POST', `/api/sources/${tablesSource.id}/files?name=a.csv`, {
      body: 'a,b\n1,2\n',
      headers: { 'content-type': 'text/csv' },
    });
    expect(notUploadable.status).toBe(409);
    expect(notUploadable.body.type).toBe('urn:audiencehub:problem:source-not-uploadable');

    const deleted = await call('DELETE', `/api/sources/${id}`);
    expect(deleted.status).toBe(204);
    expect(existsSync(uploadFolder(deps, id))).toBe(false);
    expect((await call('GET', `/api/sources/${id}`)).status).toBe(404);
    expect((await call('GET', `/api/sources/${id}/runs`)).status).toBe(404);
  });

  it('are deleted by admins only', async () => {
    const { body: source } = await newSource('Temporary');
    expect((await call('DELETE', `/api/sources/${source.id}`, as('integrator'))).status).toBe(403);
    expect((await call('DELETE', `/api/sources/${source.id}`)).status).toBe(204);
    const audit = await call('GET', '/api/audit?action=source.deleted');
    expect(audit.body.data[0]).toMatchObject({ subjectId: source.id });
  });

  it('answer 401 without a token', async () => {
    const answer = await call('GET', '/api/sources', { token: null });
    expect(answer.status).toBe(401);
  });
});
