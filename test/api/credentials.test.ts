import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authenticateWriteKey } from '../../src/auth/credentials.ts';
import { hashSecret } from '../../src/auth/secrets.ts';
import { driver } from '../support/db.ts';
import { harness, type Harness } from './support.ts';

describe(`API tokens and write keys (${driver})`, () => {
  let h: Harness;
  beforeAll(async () => {
    h = await harness();
  });
  afterAll(() => h.close());

  it('creates a token whose secret is shown once, and which works at once', async () => {
    const created = await h.call('POST', '/api/tokens', { body: { name: 'ci', role: 'marketer' } });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ name: 'ci', role: 'marketer', revokedAt: null });
    expect(created.body.token).toMatch(/^aht_/);
    expect(created.body.warning).toMatch(/not shown again/);
    expect(created.body.prefix).toBe(created.body.token.slice(0, 10));
    expect(created.body.hash).toBeUndefined();
    expect(new Date(created.body.createdAt).toISOString()).toBe(created.body.createdAt);

    const token = created.body.token as string;
    expect((await h.call('GET', '/api/profiles', { token })).status).toBe(200);
    expect((await h.call('GET', '/api/tokens', { token })).status).toBe(403);

    const list = await h.call('GET', '/api/tokens');
    expect(list.status).toBe(200);
    const listed = list.body.data.find((t: { id: string }) => t.id === created.body.id);
    expect(listed).toEqual({
      id: created.body.id,
      name: 'ci',
      role: 'marketer',
      prefix: created.body.prefix,
      createdAt: created.body.createdAt,
      lastUsedAt: expect.any(String),
      revokedAt: null,
    });
    for (const t of Object.values(h.tokens)) expect(list.text).not.toContain(t);
    expect(list.text).not.toContain(token);
    expect(list.text).not.toContain(hashSecret(token));
  });

  it('revokes a token, which then stops working', async () => {
    const created = await h.call('POST', '/api/tokens', { body: { name: 'old', role: 'admin' } });
    const token = created.body.token as string;
    const revoked = await h.call('DELETE', `/api/tokens/${created.body.id}`);
    expect(revoked.status).toBe(200);
    expect(revoked.body.id).toBe(created.body.id);
    expect(revoked.body.revokedAt).toEqual(expect.any(String));
    expect(revoked.body.token).toBeUndefined();
    expect((await h.call('GET', '/api/profiles', { token })).status).toBe(401);

    const listed = (await h.call('GET', '/api/tokens')).body.data.find(
      (t: { id: string }) => t.id === created.body.id,
    );
    expect(listed.revokedAt).toBe(revoked.body.revokedAt);

    const audit = await h.call('GET', '/api/audit?action=api_token.revoked');
    expect(audit.body.data[0]).toMatchObject({
      actorName: 'admin token',
      subjectType: 'api_token',
      subjectId: created.body.id,
    });
  });

  it('answers 404 for a token that does not exist, uuid or not', async () => {
    const missing = await h.call('DELETE', '/api/tokens/0190f5c2-8b1e-7a3c-9d4e-5f6a7b8c9d0e');
    expect(missing.status).toBe(404);
    expect(missing.headers.get('Content-Type')).toBe('application/problem+json');
    expect((await h.call('DELETE', '/api/tokens/not-an-id')).status).toBe(404);
  });

  it('validates a new token: name and role are required', async () => {
    const res = await h.call('POST', '/api/tokens', { body: { name: 'x', role: 'owner' } });
    expect(res.status).toBe(400);
    expect(res.body.errors).toEqual([{ field: 'body.role', message: expect.any(String) }]);
    const empty = await h.call('POST', '/api/tokens', { body: { name: '   ', role: 'admin' } });
    expect(empty.body.errors.map((e: { field: string }) => e.field)).toEqual(['body.name']);
  });

  it('creates write keys, by default for the tracking source, never listing secrets', async () => {
    const plain = await h.call('POST', '/api/write-keys', { body: { name: 'website' } });
    expect(plain.status).toBe(201);
    expect(plain.body).toMatchObject({ name: 'website', source: 'tracking', revokedAt: null });
    expect(plain.body.writeKey).toMatch(/^ahw_/);
    expect(plain.body.warning).toMatch(/not shown again/);

    const app = await h.call('POST', '/api/write-keys', { body: { name: 'app', source: 'ios' } });
    expect(app.body.source).toBe('ios');
    expect(await authenticateWriteKey(h.db, app.body.writeKey)).toMatchObject({ source: 'ios' });

    const list = await h.call('GET', '/api/write-keys');
    expect(list.body.data.map((k: { id: string }) => k.id)).toEqual([app.body.id, plain.body.id]);
    for (const key of [plain.body.writeKey, app.body.writeKey]) {
      expect(list.text).not.toContain(key);
      expect(list.text).not.toContain(hashSecret(key));
    }
    expect(Object.keys(list.body.data[0]).sort()).toEqual(
      ['createdAt', 'id', 'name', 'prefix', 'revokedAt', 'source'].sort(),
    );
  });

  it('revokes a write key, which the tracking API then refuses', async () => {
    const created = await h.call('POST', '/api/write-keys', { body: { name: 'gone' } });
    expect(await authenticateWriteKey(h.db, created.body.writeKey)).not.toBeNull();
    const revoked = await h.call('DELETE', `/api/write-keys/${created.body.id}`);
    expect(revoked.status).toBe(200);
    expect(revoked.body.revokedAt).toEqual(expect.any(String));
    expect(await authenticateWriteKey(h.db, created.body.writeKey)).toBeNull();
    expect(
      (await h.call('DELETE', '/api/write-keys/0190f5c2-8b1e-7a3c-9d4e-5f6a7b8c9d0e')).status,
    ).toBe(404);
  });

  it('validates a write key source', async () => {
    const res = await h.call('POST', '/api/write-keys', { body: { name: 'x', source: 'a,b' } });
    expect(res.status).toBe(400);
    expect(res.body.errors[0].field).toBe('body.source');
  });
});
