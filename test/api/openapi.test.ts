import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { driver } from '../support/db.ts';
import { harness, type Harness } from './support.ts';

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

describe(`OpenAPI document and docs page (${driver})`, () => {
  let h: Harness;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a JSON document
  let doc: any;
  beforeAll(async () => {
    h = await harness();
    doc = (await h.call('GET', '/api/openapi.json', { token: h.tokens.marketer })).body;
  });
  afterAll(() => h.close());

  const operations = () =>
    Object.entries(doc.paths).flatMap(([path, item]) =>
      METHODS.filter((m) => (item as Record<string, unknown>)[m]).map((m) => `${m} ${path}`),
    );

  it('requires a token', async () => {
    const res = await h.call('GET', '/api/openapi.json', { token: null });
    expect(res.status).toBe(401);
  });

  it('is OpenAPI 3.1 with bearer and basic security schemes', () => {
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.info.title).toBe('audiencehub');
    expect(doc.components.securitySchemes).toEqual({
      bearer: expect.objectContaining({ type: 'http', scheme: 'bearer' }),
      basic: expect.objectContaining({ type: 'http', scheme: 'basic' }),
    });
  });

  it('documents every route the app serves', () => {
    const served = h.app.routes
      .filter((r) => r.method !== 'ALL')
      .map((r) => `${r.method.toLowerCase()} ${r.path.replace(/:(\w+)/g, '{$1}')}`);
    expect(served.length).toBeGreaterThan(10);
    for (const route of served) expect(operations()).toContain(route);
  });

  it('lists the whole API, the tracking API with basic auth', () => {
    expect(operations().sort()).toEqual(
      [
        'get /health',
        'get /api/docs',
        'get /api/openapi.json',
        'get /api/tokens',
        'post /api/tokens',
        'delete /api/tokens/{id}',
        'get /api/write-keys',
        'post /api/write-keys',
        'delete /api/write-keys/{id}',
        'get /api/profiles',
        'get /api/profiles/{id}',
        'delete /api/profiles/{id}',
        'get /api/ingest/rejections',
        'get /api/audit',
        'get /api/segments',
        'post /api/segments',
        'post /api/segments/preview',
        'get /api/segments/templates',
        'get /api/segments/overlap',
        'get /api/segments/{id}',
        'patch /api/segments/{id}',
        'delete /api/segments/{id}',
        'post /api/segments/{id}/compute',
        'get /api/segments/{id}/members',
        'put /api/segments/{id}/members',
        'get /api/segments/{id}/runs',
        'get /api/segments/{id}/history',
        'get /api/segments/{id}/stats',
        'get /api/destination-plugins',
        'get /api/destinations',
        'post /api/destinations',
        'get /api/destinations/{id}',
        'get /api/destinations/{id}/fields',
        'patch /api/destinations/{id}',
        'delete /api/destinations/{id}',
        'get /api/source-connectors',
        'get /api/sources',
        'post /api/sources',
        'get /api/sources/{id}',
        'patch /api/sources/{id}',
        'delete /api/sources/{id}',
        'get /api/sources/{id}/streams',
        'put /api/sources/{id}/streams/{stream}',
        'post /api/sources/{id}/runs',
        'get /api/sources/{id}/runs',
        'get /api/sources/{id}/rejects',
        'post /api/sources/{id}/files',
        'get /api/syncs',
        'post /api/syncs',
        'get /api/syncs/{id}',
        'patch /api/syncs/{id}',
        'delete /api/syncs/{id}',
        'post /api/syncs/{id}/resync',
        'post /api/syncs/{id}/retry-rejected',
        'post /api/syncs/{id}/run',
        'post /api/syncs/{id}/plan',
        'put /api/syncs/{id}/auto-sync',
        'get /api/syncs/{id}/runs',
        'get /api/syncs/{id}/runs/{runId}/errors',
        'get /api/syncs/{id}/errors',
        ...['track', 'identify', 'page', 'screen', 'alias', 'group', 'batch', 'import'].map(
          (t) => `post /v1/${t}`,
        ),
      ].sort(),
    );
    for (const t of ['track', 'batch']) {
      expect(doc.paths[`/v1/${t}`].post.security).toEqual([{ basic: [] }]);
    }
    expect(doc.paths['/v1/track'].post.requestBody.content['application/json'].schema).toEqual({
      $ref: '#/components/schemas/TrackMessage',
    });
    expect(doc.components.schemas.TrackMessage.required).toContain('event');
  });

  it('describes operations from the zod schemas the routes validate with', () => {
    const list = doc.paths['/api/profiles'].get;
    expect(list.security).toEqual([{ bearer: [] }]);
    expect(list.parameters.map((p: { name: string }) => p.name)).toEqual(
      expect.arrayContaining(['limit', 'cursor', 'identity', 'q', 'kind']),
    );
    expect(list.parameters.find((p: { name: string }) => p.name === 'limit').schema).toMatchObject({
      type: 'integer',
      minimum: 1,
      maximum: 200,
      default: 50,
    });
    expect(list.responses['200'].content['application/json'].schema.$ref).toBe(
      '#/components/schemas/ProfilePage',
    );
    expect(list.responses['400'].content['application/problem+json'].schema.$ref).toBe(
      '#/components/schemas/Problem',
    );
    expect(doc.components.schemas.CreateApiToken.properties.role.enum).toEqual([
      'admin',
      'marketer',
      'integrator',
    ]);
    expect(doc.paths['/api/tokens'].post.description).toBe('Role: admin.');
  });

  it('serves every documented /api operation behind a token, but the docs page', async () => {
    for (const op of operations()) {
      const [method, path] = op.split(' ') as [string, string];
      if (!path.startsWith('/api/')) continue;
      const url = path.replace('{id}', '0190f5c2-8b1e-7a3c-9d4e-5f6a7b8c9d0e');
      const res = await h.call(method.toUpperCase(), url, { token: null });
      expect(res.status, op).toBe(path === '/api/docs' ? 200 : 401);
    }
  });

  it('serves a self-contained docs page whose script the CSP allows', async () => {
    const res = await h.call('GET', '/api/docs', { token: null });
    expect(res.status).toBe(200);
    expect(res.headers.get('Content-Type')).toMatch(/^text\/html/);
    const page = res.text;
    expect(page).not.toMatch(/https?:\/\//); // no CDN, no external asset
    expect(page).not.toMatch(/<(link|img|iframe)\b|\ssrc=/);
    expect(page).toContain("fetch('openapi.json'");
    expect(page).toContain('sessionStorage');

    const csp = res.headers.get('Content-Security-Policy')!;
    const script = /<script>([\s\S]*)<\/script>/.exec(page)![1]!;
    const style = /<style>([\s\S]*)<\/style>/.exec(page)![1]!;
    const hash = (text: string) => createHash('sha256').update(text).digest('base64');
    expect(csp).toContain(`script-src 'sha256-${hash(script)}'`);
    expect(csp).toContain(`style-src 'sha256-${hash(style)}'`);
    expect(csp).toContain("connect-src 'self'");
    expect(() => new Function(script)).not.toThrow();
  });
});
