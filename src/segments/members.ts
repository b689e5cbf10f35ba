/**
 * The members of a segment: a page at a time for the API, all of them as CSV, and — for a
 * static segment without rules — replaced by an uploaded list of identifiers.
 */
import { z } from '@hono/zod-openapi';
import { sql, type SQL } from 'drizzle-orm';
import type { Principal } from '../auth/credentials.ts';
import { recordAudit } from '../audit.ts';
import { json, rows, type Db } from '../db/index.ts';
import { HubError } from '../errors.ts';
import { IDENTITY_TYPE, normaliseIdentity } from '../profiles/identity.ts';
import { reconcile, recordedRun, type SegmentRun } from './compute.ts';
import { getOwnSegment, getSegment } from './store.ts';

/** A profile as segment listings show it: enough to recognise the person. */
export interface ProfileCard {
  id: string;
  kind: 'customer' | 'visitor';
  /** The profile's email address (the first, when it has several), or null. */
  email: string | null;
  /** Up to {@link CARD_IDENTITIES} identities: email, phone and user id first. */
  identities: { type: string; value: string }[];
}

export interface SegmentMember extends Omit<ProfileCard, 'id'> {
  profileId: string;
  /** When the profile (last) entered the segment. */
  enteredAt: Date;
}

export const CARD_IDENTITIES = 5;

/** The identities shown on a card, most recognisable first; SQL over identities `i`. */
const IDENTITY_RANK = sql`case i.type when 'email' then 0 when 'phone' then 1
  when 'user_id' then 2 when 'anonymous_id' then 4 else 3 end`;

/** A card's email and identities, for the profile `${profileId}` (a column reference). */
const cardColumns = (profileId: SQL) => sql`
  (select min(i.value) from identities i where i.profile_id = ${profileId} and i.type = 'email')
    as email,
  (select coalesce(json_agg(json_build_object('type', c.type, 'value', c.value)
      order by c.rank, c.type, c.value), '[]'::json)
    from (select i.type, i.value, ${IDENTITY_RANK} as rank from identities i
          where i.profile_id = ${profileId}
          order by rank, i.type, i.value limit ${CARD_IDENTITIES}) c) as identities`;

interface CardRow {
  id: string;
  kind: ProfileCard['kind'];
  email: string | null;
  identities: { type: string; value: string }[] | string;
}

const toCard = (r: CardRow): ProfileCard => ({
  id: r.id,
  kind: r.kind,
  email: r.email,
  // PGlite answers json as text, postgres.js parses it.
  identities: typeof r.identities === 'string' ? JSON.parse(r.identities) : r.identities,
});

/**
 * The cards of the given profiles, in the order of `ids` (unknown ids are left out).
 *
 * @example
 * const [card] = await profileCards(db, [profileId]);
 */
export async function profileCards(db: Db, ids: readonly string[]): Promise<ProfileCard[]> {
  if (ids.length === 0) return [];
  const found = await rows<CardRow>(
    db,
    sql`select p.id, p.kind, ${cardColumns(sql`p.id`)}
        from profiles p
        where p.id in (select x::uuid from json_array_elements_text(${json(ids)}) as x)`,
  );
  const byId = new Map(found.map((r) => [r.id, toCard(r)]));
  return ids.flatMap((id) => byId.get(id) ?? []);
}

/**
 * A page of a segment's members, newest profiles first (profile ids are time-ordered);
 * `after` is the last profile id of the previous page. 404 when `principal` cannot see it.
 *
 * @example
 * const page = await listMembers(db, principal, segmentId, { limit: 50 });
 * const next = await listMembers(db, principal, segmentId, { limit: 50, after: page.next! });
 */
export async function listMembers(
  db: Db,
  principal: Principal,
  segmentId: string,
  options: { limit: number; after?: string },
): Promise<{ data: SegmentMember[]; next: string | null }> {
  await getSegment(db, principal, segmentId);
  const found = await memberRows(db, segmentId, options.limit + 1, options.after);
  const page = found.slice(0, options.limit);
  return {
    data: page.map((r) => {
      const { id, ...card } = toCard(r);
      return { profileId: id, ...card, enteredAt: new Date(r.entered_at) };
    }),
    next: found.length > options.limit ? page[page.length - 1]!.id : null,
  };
}

async function memberRows(db: Db, segmentId: string, limit: number, after?: string) {
  const from = after === undefined ? sql`` : sql`and m.profile_id < ${after}`;
  return rows<CardRow & { entered_at: string | Date }>(
    db,
    sql`select m.profile_id as id, p.kind, m.entered_at, ${cardColumns(sql`m.profile_id`)}
        from segment_members m join profiles p on p.id = m.profile_id
        where m.segment_id = ${segmentId} ${from}
        order by m.profile_id desc
        limit ${limit}`,
  );
}

// ---------------------------------------------------------------------------------------------
// CSV export

/** The export's columns, in order. */
export const CSV_COLUMNS = [
  'profile_id',
  'kind',
  'email',
  'phone',
  'user_id',
  'anonymous_id',
  'entered_at',
] as const;

/** Members read per statement while exporting. */
const EXPORT_PAGE = 2000;

/**
 * One CSV cell (RFC 4180): quoted when it holds a comma, a quote or a line break, quotes
 * doubled. A cell a spreadsheet would read as a formula (starting with = + - @, or a tab or
 * carriage return that some strip first) is prefixed with `'`, so opening an export never runs
 * what a profile's data says — https://owasp.org/www-community/attacks/CSV_Injection.
 * E.164 phone numbers start with `+`, so they are exported as `'+447700900123`.
 */
export function csvCell(value: string | null | undefined): string {
  if (value === null || value === undefined) return '';
  const safe = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",\r\n]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

/** One CSV record, CRLF-terminated as RFC 4180 writes them: `csvRow(['a', 'b,c'])` → `a,"b,c"\r\n`. */
export const csvRow = (cells: readonly (string | null | undefined)[]) =>
  `${cells.map(csvCell).join(',')}\r\n`;

interface ExportRow {
  profile_id: string;
  kind: string;
  entered_at: string | Date;
  email: string | null;
  phone: string | null;
  user_id: string | null;
  anonymous_id: string | null;
}

/**
 * A segment's members as CSV: checks that `principal` may see the segment (404 otherwise),
 * then yields the header and the members a page at a time, newest profiles first. Each page
 * is its own statement, so a long export holds no transaction open; members that enter or
 * leave while it runs may or may not be in it.
 *
 * @example
 * const { filename, lines } = await exportMembersCsv(db, principal, segmentId);
 * for await (const chunk of lines) out.write(chunk);
 */
export async function exportMembersCsv(
  db: Db,
  principal: Principal,
  segmentId: string,
): Promise<{ filename: string; lines: AsyncIterable<string> }> {
  const segment = await getSegment(db, principal, segmentId);
  const slug = segment.name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 60);
  return { filename: `segment-${slug || segment.id}.csv`, lines: exportLines(db, segmentId) };
}

async function* exportLines(db: Db, segmentId: string): AsyncGenerator<string> {
  yield csvRow(CSV_COLUMNS);
  let after: string | null = null;
  for (;;) {
    const from = after === null ? sql`` : sql`and m.profile_id < ${after}`;
    const page: ExportRow[] = await rows<ExportRow>(
      db,
      sql`select m.profile_id, p.kind, m.entered_at, i.email, i.phone, i.user_id, i.anonymous_id
          from segment_members m
          join profiles p on p.id = m.profile_id
          left join lateral (
            select min(value) filter (where type = 'email') as email,
                   min(value) filter (where type = 'phone') as phone,
                   min(value) filter (where type = 'user_id') as user_id,
                   min(value) filter (where type = 'anonymous_id') as anonymous_id
            from identities where profile_id = m.profile_id
          ) i on true
          where m.segment_id = ${segmentId} ${from}
          order by m.profile_id desc
          limit ${EXPORT_PAGE}`,
    );
    if (page.length === 0) return;
    yield page
      .map((r) =>
        csvRow([
          r.profile_id,
          r.kind,
          r.email,
          r.phone,
          r.user_id,
          r.anonymous_id,
          new Date(r.entered_at).toISOString(),
        ]),
      )
      .join('');
    if (page.length < EXPORT_PAGE) return;
    after = page[page.length - 1]!.profile_id;
  }
}

// ---------------------------------------------------------------------------------------------
// Upload

/** At most this many identifiers per upload: about 5 MB of JSON, one statement's worth. */
export const MAX_UPLOAD_IDENTIFIERS = 100_000;

/** One identifier: `{ type, value }`, or a plain string meaning an email address. */
export const UploadedIdentifier = z
  .union(
    [
      z.string().max(1000),
      z.strictObject({
        type: z.string().regex(IDENTITY_TYPE, 'an identity type: lower snake case, e.g. email'),
        value: z.union([z.string().max(1000), z.number()]),
      }),
    ],
    { error: 'expected an email address (string) or { "type": …, "value": … }' },
  )
  .openapi('UploadedIdentifier', {
    example: { type: 'user_id', value: 'u-1001' },
  });
export type UploadedIdentifier = z.infer<typeof UploadedIdentifier>;

export const MemberUpload = z
  .object({
    identifiers: z
      .array(UploadedIdentifier)
      .max(MAX_UPLOAD_IDENTIFIERS)
      .openapi({
        description: `The new members, at most ${MAX_UPLOAD_IDENTIFIERS.toLocaleString('en')}. An empty list empties the segment.`,
        example: ['jane@example.com', { type: 'user_id', value: 'u-1001' }],
      }),
  })
  .openapi('SegmentMemberUpload');
export type MemberUpload = z.infer<typeof MemberUpload>;

export interface UnmatchedIdentifier {
  /** Its position in the uploaded list. */
  index: number;
  type: string;
  /** As uploaded (numbers as their text). */
  value: string;
  /** `invalid`: not a valid value of its type; `not_found`: no profile holds it. */
  reason: 'invalid' | 'not_found';
}

export interface UploadResult {
  run: SegmentRun;
  received: number;
  /** Identifiers that matched a profile. */
  matched: number;
  /** Distinct profiles now in the segment. */
  size: number;
  unmatched: UnmatchedIdentifier[];
}

/**
 * Replace the members of a static segment without rules by the profiles holding the given
 * identifiers, in one transaction that records each entry and exit under a `segment_runs`
 * row with trigger `upload`. Identifiers are normalised as ingestion stores them (emails
 * lower-cased, phones to E.164); those that are invalid or held by no profile are reported
 * with their index and do not fail the upload. Only the owner or an admin may upload (403).
 *
 * @example
 * const result = await uploadMembers(db, principal, segmentId, {
 *   identifiers: ['jane@example.com', { type: 'user_id', value: 'u-1001' }],
 * });
 * result.unmatched; // [{ index: 1, type: 'user_id', value: 'u-1001', reason: 'not_found' }]
 */
export async function uploadMembers(
  db: Db,
  principal: Principal,
  segmentId: string,
  input: MemberUpload,
  options: { defaultPhoneCountry?: string } = {},
): Promise<UploadResult> {
  const segment = await getOwnSegment(db, principal, segmentId);
  if (segment.type !== 'static' || segment.rules !== null) {
    throw notUploadable();
  }
  const unmatched: UnmatchedIdentifier[] = [];
  const wanted: { i: number; t: string; v: string }[] = [];
  input.identifiers.forEach((raw, index) => {
    const type = typeof raw === 'string' ? 'email' : raw.type;
    const given = typeof raw === 'string' ? raw : raw.value;
    const value = normaliseIdentity(type, given, options.defaultPhoneCountry);
    if (value === null) {
      unmatched.push({ index, type, value: String(given), reason: 'invalid' });
    } else {
      wanted.push({ i: index, t: type, v: value });
    }
  });

  const missing = new Set<number>();
  const run = await recordedRun(db, segmentId, 'upload', async (tx, locked, runId) => {
    // Changed into something else since it was read above.
    if (locked.type !== 'static' || locked.rules !== null) throw notUploadable();
    const matches = await rows<{ i: number; profile_id: string | null }>(
      tx,
      sql`select w.i, i.profile_id
          from json_to_recordset(${json(wanted)}) as w(i int, t text, v text)
          left join identities i on i.type = w.t and i.value = w.v`,
    );
    missing.clear();
    const profileIds = new Set<string>();
    for (const m of matches) {
      if (m.profile_id === null) missing.add(m.i);
      else profileIds.add(m.profile_id);
    }
    const target = sql`select distinct x::uuid as profile_id
      from json_array_elements_text(${json([...profileIds])}) as x`;
    const changed = await reconcile(tx, segmentId, runId, target, null);
    await recordAudit(
      tx,
      { id: principal.tokenId, name: principal.name },
      'segment.members_uploaded',
      'segment',
      segmentId,
      { received: input.identifiers.length, size: profileIds.size },
    );
    return changed;
  });
  for (const w of wanted) {
    if (missing.has(w.i)) {
      const given = input.identifiers[w.i]!;
      const value = typeof given === 'string' ? given : String(given.value);
      unmatched.push({ index: w.i, type: w.t, value, reason: 'not_found' });
    }
  }
  unmatched.sort((a, b) => a.index - b.index);
  return {
    run,
    received: input.identifiers.length,
    matched: input.identifiers.length - unmatched.length,
    size: run.size!,
    unmatched,
  };
}

const notUploadable = () =>
  new HubError(
    409,
    'segment-not-uploadable',
    'Segment is not an uploaded list',
    'Only a static segment without rules takes an uploaded list of members; this one is computed from its rules.',
  );
