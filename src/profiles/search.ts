import { and, asc, desc, eq, isNull, lt, or, sql, type SQL } from 'drizzle-orm';
import { uuidArray, type Db } from '../db/index.ts';
import { identities, profiles } from '../db/schema.ts';
import { normaliseIdentity, type IdentityKey } from './identity.ts';

/** `customer` once an identifying identity is known, `visitor` before. */
export type ProfileKind = 'customer' | 'visitor';

export interface ProfileSearch {
  limit: number;
  /** The id of the last profile of the previous page. */
  after?: string;
  /** Only the profile holding this identity; the value is normalised like stored ones. */
  identity?: IdentityKey;
  /** Profiles with an identity value starting with this text, ignoring case. */
  q?: string;
  /** Resolved trait equalities, all of which must hold. */
  traits?: Record<string, string>;
  kind?: ProfileKind;
  /** For reading phone numbers written without a country code. */
  defaultPhoneCountry?: string;
}

export interface ProfileSummary {
  id: string;
  kind: ProfileKind;
  createdAt: Date;
  updatedAt: Date;
  lastSeenAt: Date | null;
  eventCount: number;
  traits: Record<string, unknown>;
  identities: { type: string; value: string }[];
}

/**
 * Live profiles, newest first (ids are uuidv7, so id order is creation order), matching every
 * filter given.
 *
 * @example
 * const page = await searchProfiles(db, { limit: 50, traits: { plan: 'pro' } });
 * const more = page.next && (await searchProfiles(db, { limit: 50, after: page.next }));
 */
export async function searchProfiles(
  db: Db,
  input: ProfileSearch,
): Promise<{ data: ProfileSummary[]; next: string | null }> {
  const where: (SQL | undefined)[] = [isNull(profiles.mergedInto)];
  if (input.after) where.push(lt(profiles.id, input.after));
  if (input.kind) where.push(eq(profiles.kind, input.kind));
  if (input.identity) {
    const { type } = input.identity;
    const value = normaliseIdentity(type, input.identity.value, input.defaultPhoneCountry);
    if (value === null) return { data: [], next: null };
    where.push(
      sql`${profiles.id} in (select ${identities.profileId} from ${identities}
        where ${identities.type} = ${type} and ${identities.value} = ${value})`,
    );
  }
  if (input.q) {
    where.push(
      // Matches the identities_value_prefix_idx expression, so the index finds the candidates.
      sql`${profiles.id} in (select ${identities.profileId} from ${identities}
        where lower(${identities.value}) like ${escapeLike(input.q.toLowerCase()) + '%'})`,
    );
  }
  for (const [key, text] of Object.entries(input.traits ?? {})) {
    // `@>` uses the GIN index; `trait.age=42` also matches the number 42.
    const contains = (v: unknown) =>
      sql`${profiles.traits} @> ${JSON.stringify({ [key]: v })}::jsonb`;
    where.push(or(...traitValues(text).map(contains)));
  }

  const rows = await db
    .select()
    .from(profiles)
    .where(and(...where))
    .orderBy(desc(profiles.id))
    .limit(input.limit + 1);
  const page = rows.slice(0, input.limit);
  const held = page.length
    ? await db
        .select({ profileId: identities.profileId, type: identities.type, value: identities.value })
        .from(identities)
        .where(sql`${identities.profileId} = any(${uuidArray(page.map((p) => p.id))})`)
        .orderBy(asc(identities.type), asc(identities.value))
    : [];

  return {
    data: page.map((p) => ({
      id: p.id,
      kind: p.kind as ProfileKind,
      createdAt: p.createdAt,
      updatedAt: p.updatedAt,
      lastSeenAt: p.lastSeenAt,
      eventCount: p.eventCount,
      traits: p.traits,
      identities: held
        .filter((i) => i.profileId === p.id)
        .map((i) => ({ type: i.type, value: i.value })),
    })),
    next: rows.length > input.limit ? page[page.length - 1]!.id : null,
  };
}

/** A query-string value as the JSON values it may stand for. */
function traitValues(text: string): unknown[] {
  const values: unknown[] = [text];
  if (/^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(text) && Number.isFinite(Number(text))) {
    values.push(Number(text));
  }
  if (text === 'true' || text === 'false') values.push(text === 'true');
  if (text === 'null') values.push(null);
  return values;
}

const escapeLike = (text: string) => text.replace(/[\\%_]/g, '\\$&');
