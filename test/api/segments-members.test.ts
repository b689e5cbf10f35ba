import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiToken } from '../../src/auth/credentials.ts';
import { rows } from '../../src/db/index.ts';
import { csvCell } from '../../src/segments/members.ts';
import { driver } from '../support/db.ts';
import { insertPerson } from './fixtures.ts';
import { allPages, harness, type Harness } from './support.ts';

describe(`Segments API: members, CSV export and uploaded lists (${driver})`, () => {
  let h: Harness;
  let other: string;
  const p: Record<string, string> = {};
  let vips: string;

  beforeAll(async () => {
    h = await harness();
    other = (await createApiToken(h.db, { name: 'other marketer', role: 'marketer' })).token;
    p.jane = await insertPerson(h.db, {
      identities: [
        { type: 'email', value: 'jane@example.com' },
        { type: 'user_id', value: 'u-1' },
        { type: 'phone', value: '+442071838750' },
        { type: 'anonymous_id', value: 'anon-1' },
      ],
      traits: [{ key: 'vip', value: true }],
    });
    p.tricky = await insertPerson(h.db, {
      identities: [
        { type: 'email', value: 'o"neil,x@example.com' },
        { type: 'user_id', value: '=HYPERLINK("http://evil.example")' },
      ],
      traits: [{ key: 'vip', value: true }],
    });
    p.formula = await insertPerson(h.db, {
      kind: 'visitor',
      identities: [
        { type: 'user_id', value: '@SUM(A1:A2)' },
        { type: 'anonymous_id', value: '-2+3' },
      ],
      traits: [{ key: 'vip', value: true }],
    });
    for (let i = 0; i < 4; i++) {
      p[`plain${i}`] = await insertPerson(h.db, {
        identities: [{ type: 'email', value: `plain${i}@example.com` }],
        traits: [{ key: 'vip', value: true }],
      });
    }
    p.outsider = await insertPerson(h.db, {
      identities: [{ type: 'email', value: 'outsider@example.com' }],
    });
    const res = await h.call('POST', '/api/segments', {
      token: h.tokens.marketer,
      body: {
        name: 'VIPs, "the best" ones',
        visibility: 'shared',
        rules: { trait: { name: 'vip', op: 'eq', value: true } },
      },
    });
    expect(res.status, res.text).toBe(201);
    vips = res.body.id;
  });
  afterAll(() => h.close());

  it('pages through the members, newest profiles first, with their identities', async () => {
    const pages = await allPages<{ profileId: string }>(
      h,
      `/api/segments/${vips}/members?limit=3`,
      h.tokens.integrator,
    );
    expect(pages.map((page) => page.length)).toEqual([3, 3, 1]);
    const inOrder = [p.plain3, p.plain2, p.plain1, p.plain0, p.formula, p.tricky, p.jane];
    expect(pages.flat().map((m) => m.profileId)).toEqual(inOrder);

    const last = pages[2]![0] as Record<string, unknown>;
    expect(last).toEqual({
      profileId: p.jane,
      kind: 'customer',
      email: 'jane@example.com',
      identities: [
        { type: 'email', value: 'jane@example.com' },
        { type: 'phone', value: '+442071838750' },
        { type: 'user_id', value: 'u-1' },
        { type: 'anonymous_id', value: 'anon-1' },
      ],
      enteredAt: expect.any(String),
    });
    expect(Date.now() - Date.parse(last.enteredAt as string)).toBeLessThan(60_000);

    const bad = await h.call('GET', `/api/segments/${vips}/members?cursor=nope`);
    expect(bad.status).toBe(400);
    expect(bad.body.errors[0].field).toBe('cursor');
  });

  const csvLines = (text: string) => text.split('\r\n').slice(0, -1);

  it('exports every member as CSV, quoted and safe to open in a spreadsheet', async () => {
    const res = await h.call('GET', `/api/segments/${vips}/members?format=csv`, {
      token: h.tokens.integrator,
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('Content-Type')).toBe('text/csv; charset=utf-8');
    expect(res.headers.get('Content-Disposition')).toBe(
      'attachment; filename="segment-vips-the-best-ones.csv"',
    );
    expect(res.text.endsWith('\r\n')).toBe(true);
    const lines = csvLines(res.text);
    expect(lines).toHaveLength(8);
    expect(lines[0]).toBe('profile_id,kind,email,phone,user_id,anonymous_id,entered_at');
    const byId = new Map(lines.slice(1).map((l) => [l.slice(0, 36), l]));
    const at = (line: string) => line.slice(line.lastIndexOf(',') + 1);
    const jane = byId.get(p.jane!)!;
    expect(jane).toBe(`${p.jane},customer,jane@example.com,'+442071838750,u-1,anon-1,${at(jane)}`);
    expect(new Date(at(jane)).toISOString()).toBe(at(jane));
    const tricky = byId.get(p.tricky!)!;
    expect(tricky).toBe(
      `${p.tricky},customer,"o""neil,x@example.com",,"'=HYPERLINK(""http://evil.example"")",,${at(tricky)}`,
    );
    const formula = byId.get(p.formula!)!;
    expect(formula).toBe(`${p.formula},visitor,,,'@SUM(A1:A2),'-2+3,${at(formula)}`);
    expect(lines.slice(1).map((l) => l.slice(0, 36))).toEqual([
      p.plain3,
      p.plain2,
      p.plain1,
      p.plain0,
      p.formula,
      p.tricky,
      p.jane,
    ]);
  });

  it('exports CSV for Accept: text/csv, and more members than one statement reads', async () => {
    for (let i = 0; i < 2100; i += 700) {
      await h.db.execute(
        sql`insert into profiles (id, kind, traits)
            select gen_random_uuid(), 'visitor', '{"bulk": true}'::jsonb
            from generate_series(1, 700)`,
      );
    }
    const bulk = await h.call('POST', '/api/segments', {
      token: h.tokens.marketer,
      body: { name: 'Bulk', rules: { trait: { name: 'bulk', op: 'eq', value: true } } },
    });
    expect(bulk.body.size).toBe(2100);
    const res = await h.call('GET', `/api/segments/${bulk.body.id}/members`, {
      token: h.tokens.marketer,
      headers: { Accept: 'text/csv' },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('Content-Type')).toMatch(/^text\/csv/);
    const lines = csvLines(res.text);
    expect(lines).toHaveLength(2101);
    const ids = lines.slice(1).map((l) => l.split(',')[0]!);
    expect(new Set(ids).size).toBe(2100);
    expect([...ids].sort().reverse()).toEqual(ids);
    const stored = await rows<{ id: string }>(
      h.db,
      sql`select profile_id as id from segment_members where segment_id = ${bulk.body.id}`,
    );
    expect(new Set(ids)).toEqual(new Set(stored.map((r) => r.id)));
    // JSON stays the default, and `format=json` wins over the Accept header.
    const json = await h.call('GET', `/api/segments/${bulk.body.id}/members?format=json&limit=1`, {
      headers: { Accept: 'text/csv' },
    });
    expect(json.body.data).toHaveLength(1);
  });

  it('quotes CSV cells as RFC 4180 says and defuses formulas', () => {
    expect(csvCell('plain')).toBe('plain');
    expect(csvCell(null)).toBe('');
    expect(csvCell('a,b')).toBe('"a,b"');
    expect(csvCell('say "hi"')).toBe('"say ""hi"""');
    expect(csvCell('two\nlines')).toBe('"two\nlines"');
    expect(csvCell('=1+2')).toBe("'=1+2");
    expect(csvCell('+1')).toBe("'+1");
    expect(csvCell('-1')).toBe("'-1");
    expect(csvCell('@x')).toBe("'@x");
    expect(csvCell('\t=1')).toBe("'\t=1");
    expect(csvCell('=A1,"x"')).toBe(`"'=A1,""x"""`);
    expect(csvCell('a=b')).toBe('a=b');
  });

  it('replaces an uploaded list, reporting the identifiers that matched no one', async () => {
    const list = await h.call('POST', '/api/segments', {
      token: h.tokens.marketer,
      body: { name: 'Fair visitors', type: 'static', visibility: 'shared' },
    });
    expect(list.status).toBe(201);
    const path = `/api/segments/${list.body.id}/members`;
    const res = await h.call('PUT', path, {
      token: h.tokens.marketer,
      body: {
        identifiers: [
          ' JANE@Example.com ',
          { type: 'user_id', value: '@SUM(A1:A2)' },
          'not an email',
          'nobody@example.com',
          { type: 'phone', value: '+44 20 7183 8750' }, // jane again, written differently
          { type: 'user_id', value: 42 },
          { type: 'email', value: 'plain0@example.com' },
        ],
      },
    });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toMatchObject({
      received: 7,
      matched: 4,
      size: 3,
      run: { trigger: 'upload', kind: 'full', status: 'succeeded', size: 3, entered: 3, exited: 0 },
      unmatched: [
        { index: 2, type: 'email', value: 'not an email', reason: 'invalid' },
        { index: 3, type: 'email', value: 'nobody@example.com', reason: 'not_found' },
        { index: 5, type: 'user_id', value: '42', reason: 'not_found' },
      ],
    });
    const members = await h.call('GET', path);
    expect(members.body.data.map((m: { profileId: string }) => m.profileId)).toEqual([
      p.plain0,
      p.formula,
      p.jane,
    ]);

    // A new list replaces the old one: entries and exits are recorded under the new run.
    const again = await h.call('PUT', path, {
      token: h.tokens.admin,
      body: { identifiers: ['jane@example.com', 'plain1@example.com'] },
    });
    expect(again.body).toMatchObject({
      matched: 2,
      size: 2,
      unmatched: [],
      run: { trigger: 'upload', entered: 1, exited: 2 },
    });
    const history = await h.call('GET', `/api/segments/${list.body.id}/history`);
    const byRun = history.body.data.filter((c: { runId: number }) => c.runId === again.body.run.id);
    expect(
      byRun.map((c: { profileId: string; change: string }) => `${c.change} ${c.profileId}`).sort(),
    ).toEqual([`entered ${p.plain1}`, `exited ${p.formula}`, `exited ${p.plain0}`].sort());
    const read = await h.call('GET', `/api/segments/${list.body.id}`);
    expect(read.body).toMatchObject({ size: 2, rules: null });
    expect(read.body.lastComputedAt).not.toBeNull();

    const emptied = await h.call('PUT', path, {
      token: h.tokens.marketer,
      body: { identifiers: [] },
    });
    expect(emptied.body).toMatchObject({ size: 0, run: { entered: 0, exited: 2 } });
  });

  it('uploads only to a static segment without rules, by its owner or an admin', async () => {
    const body = { identifiers: ['jane@example.com'] };
    const computed = await h.call('PUT', `/api/segments/${vips}/members`, {
      token: h.tokens.marketer,
      body,
    });
    expect(computed.status).toBe(409);
    expect(computed.body.type).toBe('urn:audiencehub:problem:segment-not-uploadable');

    const list = await h.call('POST', '/api/segments', {
      token: h.tokens.marketer,
      body: { name: 'Shared list', type: 'static', visibility: 'shared' },
    });
    const path = `/api/segments/${list.body.id}/members`;
    expect((await h.call('PUT', path, { token: other, body })).status).toBe(403);
    expect((await h.call('PUT', path, { token: h.tokens.integrator, body })).status).toBe(403);
    const runs = await rows<{ n: number }>(
      h.db,
      sql`select count(*)::int as n from segment_runs where segment_id = ${list.body.id}`,
    );
    expect(runs[0]!.n).toBe(0);

    const malformed = await h.call('PUT', path, {
      token: h.tokens.marketer,
      body: { identifiers: ['a@example.com', { type: 'Email', value: 'b@example.com' }] },
    });
    expect(malformed.status).toBe(400);
    expect(malformed.body.errors[0].field).toMatch(/^body\.identifiers\[1\]/);
  });

  it('refuses more than 100,000 identifiers in one upload', async () => {
    const list = await h.call('POST', '/api/segments', {
      token: h.tokens.marketer,
      body: { name: 'Too long', type: 'static' },
    });
    const identifiers = Array.from({ length: 100_001 }, (_, i) => `p${i}@example.com`);
    const res = await h.call('PUT', `/api/segments/${list.body.id}/members`, {
      token: h.tokens.marketer,
      body: { identifiers },
    });
    expect(res.status).toBe(400);
    expect(res.body.errors).toEqual([{ field: 'body.identifiers', message: expect.any(String) }]);
  });

  it('matches a large upload in one statement', async () => {
    const list = await h.call('POST', '/api/segments', {
      token: h.tokens.marketer,
      body: { name: 'Large upload', type: 'static' },
    });
    const identifiers = Array.from({ length: 20_000 }, (_, i) => `nobody${i}@example.com`);
    identifiers[12_345] = 'plain2@example.com';
    const res = await h.call('PUT', `/api/segments/${list.body.id}/members`, {
      token: h.tokens.marketer,
      body: { identifiers },
    });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toMatchObject({ received: 20_000, matched: 1, size: 1 });
    expect(res.body.unmatched).toHaveLength(19_999);
    expect(res.body.unmatched.some((u: { index: number }) => u.index === 12_345)).toBe(false);
  });
});
