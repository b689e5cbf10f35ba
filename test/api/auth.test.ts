import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiToken, revokeApiToken } from '../../src/auth/credentials.ts';
import { driver } from '../support/db.ts';
import { harness, type Harness } from './support.ts';

describe(`API authentication and roles (${driver})`, () => {
  let h: Harness;
  beforeAll(async () => {
    h = await harness();
  });
  afterAll(() => h.close());

  it('answers /health without a token and without data', async () => {
    const res = await h.call('GET', '/health', { token: null });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'ok' });
  });

  it('refuses a request without a token with 401 and WWW-Authenticate: Bearer', async () => {
    const res = await h.call('GET', '/api/profiles', { token: null });
    expect(res.status).toBe(401);
    expect(res.headers.get('Content-Type')).toBe('application/problem+json');
    expect(res.headers.get('WWW-Authenticate')).toBe('Bearer realm="audiencehub"');
    expect(res.body).toMatchObject({
      status: 401,
      title: 'Unauthorized',
      instance: '/api/profiles',
    });
  });

  it('refuses an unknown token, and credentials of another scheme', async () => {
    const unknown = await h.call('GET', '/api/profiles', { token: 'aht_not-a-real-token' });
    expect(unknown.status).toBe(401);
    expect(unknown.headers.get('WWW-Authenticate')).toBe(
      'Bearer realm="audiencehub", error="invalid_token"',
    );
    expect(unknown.body.detail).toMatch(/unknown or has been revoked/);

    const basic = await h.call('GET', '/api/profiles', {
      token: null,
      headers: { Authorization: `Basic ${Buffer.from(`${h.tokens.admin}:`).toString('base64')}` },
    });
    expect(basic.status).toBe(401);
  });

  it('refuses a revoked token', async () => {
    const { token, summary } = await createApiToken(h.db, { name: 'short-lived', role: 'admin' });
    expect((await h.call('GET', '/api/profiles', { token })).status).toBe(200);
    await revokeApiToken(h.db, summary.id, { id: null, name: 'test' });
    const res = await h.call('GET', '/api/profiles', { token });
    expect(res.status).toBe(401);
    expect(res.headers.get('WWW-Authenticate')).toContain('Bearer');
  });

  it('lets every role read profiles and the OpenAPI document', async () => {
    for (const token of Object.values(h.tokens)) {
      expect((await h.call('GET', '/api/profiles', { token })).status).toBe(200);
      expect((await h.call('GET', '/api/openapi.json', { token })).status).toBe(200);
    }
  });

  it('answers 403 naming the role needed', async () => {
    const res = await h.call('GET', '/api/tokens', { token: h.tokens.marketer });
    expect(res.status).toBe(403);
    expect(res.headers.get('Content-Type')).toBe('application/problem+json');
    expect(res.body.detail).toBe(
      'This operation needs the admin role; this token has the marketer role.',
    );
    expect(res.body.requiredRoles).toEqual(['admin']);
  });

  it.each([
    ['GET', '/api/tokens', ['admin']],
    ['POST', '/api/tokens', ['admin']],
    ['DELETE', '/api/tokens/0190f5c2-8b1e-7a3c-9d4e-5f6a7b8c9d0e', ['admin']],
    ['GET', '/api/write-keys', ['admin']],
    ['POST', '/api/write-keys', ['admin']],
    ['DELETE', '/api/write-keys/0190f5c2-8b1e-7a3c-9d4e-5f6a7b8c9d0e', ['admin']],
    ['DELETE', '/api/profiles/0190f5c2-8b1e-7a3c-9d4e-5f6a7b8c9d0e', ['admin']],
    ['GET', '/api/audit', ['admin']],
    ['GET', '/api/ingest/rejections', ['admin', 'integrator']],
  ] as const)('%s %s is for %j only', async (method, path, allowed) => {
    for (const [role, token] of Object.entries(h.tokens)) {
      const res = await h.call(method, path, { token, body: method === 'POST' ? {} : undefined });
      if ((allowed as readonly string[]).includes(role)) {
        expect(res.status, `${role}`).not.toBe(403);
        expect(res.status, `${role}`).not.toBe(401);
      } else {
        expect(res.status, `${role}`).toBe(403);
        expect(res.body.requiredRoles).toEqual(allowed);
      }
    }
  });
});
