import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ingestRejections } from '../../src/db/schema.ts';
import { driver } from '../support/db.ts';
import { allPages, harness, type Harness } from './support.ts';

describe(`GET /api/ingest/rejections and /api/audit (${driver})`, () => {
  let h: Harness;
  beforeAll(async () => {
    h = await harness();
    for (let i = 0; i < 5; i++) {
      await h.db.insert(ingestRejections).values({
        messageId: `msg-${i}`,
        batchIndex: i,
        reason: `batch[${i}].userId: a message needs a userId or an anonymousId`,
        errors: [
          { field: `batch[${i}].userId`, message: 'a message needs a userId or an anonymousId' },
        ],
      });
    }
  });
  afterAll(() => h.close());

  it('pages through rejections, newest first', async () => {
    const pages = await allPages<{ messageId: string }>(
      h,
      '/api/ingest/rejections?limit=2',
      h.tokens.integrator,
    );
    expect(pages.map((p) => p.length)).toEqual([2, 2, 1]);
    const all = pages.flat();
    expect(all.map((r) => r.messageId)).toEqual(['msg-4', 'msg-3', 'msg-2', 'msg-1', 'msg-0']);
    expect(all[0]).toEqual({
      id: expect.any(Number),
      writeKeyId: null,
      messageId: 'msg-4',
      batchIndex: 4,
      reason: expect.stringContaining('userId'),
      errors: [{ field: 'batch[4].userId', message: expect.any(String) }],
      receivedAt: expect.stringMatching(/Z$/),
    });
  });

  it('pages through the audit log, newest first, and filters it', async () => {
    for (const name of ['one', 'two', 'three']) {
      await h.call('POST', '/api/write-keys', { body: { name } });
    }
    const pages = await allPages<{ id: number; action: string }>(h, '/api/audit?limit=2');
    const entries = pages.flat();
    // Three tokens made by the harness, then three write keys.
    expect(entries.map((e) => e.action)).toEqual([
      'write_key.created',
      'write_key.created',
      'write_key.created',
      'api_token.created',
      'api_token.created',
      'api_token.created',
    ]);
    expect(pages.map((p) => p.length)).toEqual([2, 2, 2]);
    expect(entries.map((e) => e.id)).toEqual([...entries.map((e) => e.id)].sort((a, b) => b - a));

    const filtered = await h.call('GET', '/api/audit?action=write_key.created&limit=200');
    expect(filtered.body.data).toHaveLength(3);
    expect(filtered.body.data[0]).toMatchObject({
      actorName: 'admin token',
      subjectType: 'write_key',
    });
    expect(filtered.body.nextCursor).toBeNull();
  });

  it('validates paging parameters', async () => {
    for (const query of ['limit=0', 'limit=201', 'limit=ten', 'cursor=abc']) {
      const res = await h.call('GET', `/api/audit?${query}`);
      expect(res.status, query).toBe(400);
      expect(res.body.errors[0].field).toBe(query.split('=')[0]);
    }
  });
});
