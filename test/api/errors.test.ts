import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver } from '../support/db.ts';
import { harness, type Harness } from './support.ts';

describe(`API errors as problem+json (${driver})`, () => {
  let h: Harness;
  beforeAll(async () => {
    h = await harness();
    // A handler that fails the way a driver does, with a personal value in the message.
    h.app.post('/api/fail', async () => {
      await h.db.execute(sql`select ${'jane.doe@example.com'}::uuid`);
      return new Response('unreachable');
    });
  });
  afterAll(() => h.close());

  it('names each failing query field', async () => {
    const res = await h.call('GET', '/api/profiles?limit=500&kind=robot');
    expect(res.status).toBe(400);
    expect(res.headers.get('Content-Type')).toBe('application/problem+json');
    expect(res.body).toEqual({
      type: 'urn:audiencehub:problem:validation',
      title: 'Invalid request',
      status: 400,
      detail: '2 fields are invalid.',
      instance: '/api/profiles',
      errors: [
        { field: 'limit', message: expect.any(String) },
        { field: 'kind', message: expect.any(String) },
      ],
    });
  });

  it('names body fields with a body. prefix', async () => {
    const res = await h.call('POST', '/api/tokens', { body: { name: 5, role: 'admin' } });
    expect(res.status).toBe(400);
    expect(res.body.errors).toEqual([{ field: 'body.name', message: expect.any(String) }]);
    expect(res.body.detail).toMatch(/^body\.name: /);
  });

  it('rejects a cursor it did not issue', async () => {
    const res = await h.call('GET', '/api/profiles?cursor=bm90LWEtY3Vyc29y');
    expect(res.status).toBe(400);
    expect(res.body.errors).toEqual([{ field: 'cursor', message: expect.any(String) }]);
  });

  it('answers malformed JSON with 400', async () => {
    const res = await h.call('POST', '/api/tokens', { body: '{"name": "x",' });
    expect(res.status).toBe(400);
    expect(res.headers.get('Content-Type')).toBe('application/problem+json');
    expect(res.body).toMatchObject({
      status: 400,
      detail: 'Malformed JSON in request body',
      instance: '/api/tokens',
    });
  });

  it('answers a body of another media type with 415', async () => {
    const res = await h.call('POST', '/api/tokens', {
      body: 'name=x',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    });
    expect(res.status).toBe(415);
    expect(res.headers.get('Content-Type')).toBe('application/problem+json');
  });

  it('answers unknown routes with 404 problem+json', async () => {
    for (const path of ['/nope', '/api/nope', '/v1/nope']) {
      const res = await h.call('GET', path);
      expect(res.status, path).toBe(404);
      expect(res.headers.get('Content-Type')).toBe('application/problem+json');
      expect(res.body).toMatchObject({ status: 404, instance: path });
    }
    // The management API does not tell strangers which routes exist.
    expect((await h.call('GET', '/api/nope', { token: null })).status).toBe(401);
  });

  it('answers 404 for a resource id that does not exist or is not an id', async () => {
    for (const id of ['0190f5c2-8b1e-7a3c-9d4e-5f6a7b8c9d0e', 'jane@example.com']) {
      const res = await h.call('GET', `/api/profiles/${id}`);
      expect(res.status).toBe(404);
      expect(res.body.instance).toBe(`/api/profiles/${id}`);
    }
  });

  it('answers an unexpected failure with a generic 500 and logs it redacted', async () => {
    h.logs.length = 0;
    const res = await h.call('POST', '/api/fail', {
      body: { password: 'body-secret-value' },
    });
    expect(res.status).toBe(500);
    expect(res.headers.get('Content-Type')).toBe('application/problem+json');
    expect(res.body).toEqual({
      type: 'urn:audiencehub:problem:internal',
      title: 'Internal Server Error',
      status: 500,
      detail: `An unexpected error occurred. It was logged with id ${res.body.errorId}.`,
      instance: '/api/fail',
      errorId: expect.any(String),
    });
    expect(res.text).not.toMatch(/jane|uuid|select|Failed/i);

    expect(h.logs).toHaveLength(1);
    const line = JSON.parse(h.logs[0]!);
    expect(line).toMatchObject({ level: 'error', errorId: res.body.errorId, path: '/api/fail' });
    expect(JSON.stringify(line.error)).toContain('22P02'); // invalid_text_representation
    expect(h.logs[0]).not.toContain('jane.doe');
    expect(h.logs[0]).not.toContain('body-secret-value');
    expect(h.logs[0]).not.toContain(h.tokens.admin);
  });
});
