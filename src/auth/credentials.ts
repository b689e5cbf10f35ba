import { and, desc, eq, isNull, sql } from 'drizzle-orm';
import { z } from 'zod';
import type { Db } from '../db/index.ts';
import { recordAudit, SYSTEM, type Actor } from '../audit.ts';
import { apiTokens, writeKeys } from '../db/schema.ts';
import { HubError, notFound } from '../errors.ts';
import { uuidv7 } from '../ids.ts';
import { hashSecret, newSecret, secretPrefix } from './secrets.ts';

/** The management API's roles. */
export const Role = z.enum(['admin', 'marketer', 'integrator']);
export type Role = z.infer<typeof Role>;

/** Who is calling the management API. */
export interface Principal {
  tokenId: string;
  name: string;
  role: Role;
}

/** A write key the tracking API accepted. */
export interface WriteKeyPrincipal {
  writeKeyId: string;
  name: string;
  source: string;
}

/** What listings show of a credential: never the secret, never its hash. */
export interface CredentialSummary {
  id: string;
  name: string;
  prefix: string;
  createdAt: Date;
  revokedAt: Date | null;
}
export interface ApiTokenSummary extends CredentialSummary {
  role: Role;
  lastUsedAt: Date | null;
}
export interface WriteKeySummary extends CredentialSummary {
  source: string;
}

/**
 * Create an API token. The secret is returned once, here; only its hash is stored.
 *
 * @example
 * const { token } = await createApiToken(db, { name: 'ci', role: 'integrator' }, actor);
 */
export async function createApiToken(
  db: Db,
  input: { name: string; role: Role; secret?: string },
  actor: Actor = SYSTEM,
): Promise<{ token: string; summary: ApiTokenSummary }> {
  const token = input.secret ?? newSecret('aht');
  const id = uuidv7();
  const [row] = await db
    .insert(apiTokens)
    .values({
      id,
      name: input.name,
      role: input.role,
      prefix: secretPrefix(token),
      hash: hashSecret(token),
      createdBy: actor.id,
    })
    .returning();
  await recordAudit(db, actor, 'api_token.created', 'api_token', id);
  return { token, summary: tokenSummary(row!) };
}

export async function listApiTokens(db: Db): Promise<ApiTokenSummary[]> {
  const rows = await db.select().from(apiTokens).orderBy(desc(apiTokens.id));
  return rows.map(tokenSummary);
}

export async function revokeApiToken(db: Db, id: string, actor: Actor): Promise<ApiTokenSummary> {
  const [row] = await db
    .update(apiTokens)
    .set({ revokedAt: sql`coalesce(${apiTokens.revokedAt}, now())` })
    .where(eq(apiTokens.id, id))
    .returning();
  if (!row) throw notFound('API token', id);
  await recordAudit(db, actor, 'api_token.revoked', 'api_token', id);
  return tokenSummary(row);
}

/** The principal for a bearer token, or null when it is unknown or revoked. */
export async function authenticateToken(db: Db, secret: string): Promise<Principal | null> {
  const [row] = await db
    .select({
      id: apiTokens.id,
      name: apiTokens.name,
      role: apiTokens.role,
      lastUsedAt: apiTokens.lastUsedAt,
    })
    .from(apiTokens)
    .where(and(eq(apiTokens.hash, hashSecret(secret)), isNull(apiTokens.revokedAt)));
  if (!row) return null;
  // Recording use to the minute is enough for "last used", and spares a write per request.
  if (!row.lastUsedAt || Date.now() - row.lastUsedAt.getTime() > 60_000) {
    await db
      .update(apiTokens)
      .set({ lastUsedAt: sql`now()` })
      .where(eq(apiTokens.id, row.id));
  }
  return { tokenId: row.id, name: row.name, role: row.role as Role };
}

/**
 * Create a tracking write key whose messages are recorded under `source`.
 *
 * @example
 * const { writeKey } = await createWriteKey(db, { name: 'website', source: 'web' }, actor);
 */
export async function createWriteKey(
  db: Db,
  input: { name: string; source?: string; secret?: string },
  actor: Actor = SYSTEM,
): Promise<{ writeKey: string; summary: WriteKeySummary }> {
  const writeKey = input.secret ?? newSecret('ahw');
  const id = uuidv7();
  const [row] = await db
    .insert(writeKeys)
    .values({
      id,
      name: input.name,
      source: input.source ?? 'tracking',
      prefix: secretPrefix(writeKey),
      hash: hashSecret(writeKey),
      createdBy: actor.id,
    })
    .returning();
  await recordAudit(db, actor, 'write_key.created', 'write_key', id);
  return { writeKey, summary: writeKeySummary(row!) };
}

export async function listWriteKeys(db: Db): Promise<WriteKeySummary[]> {
  const rows = await db.select().from(writeKeys).orderBy(desc(writeKeys.id));
  return rows.map(writeKeySummary);
}

export async function revokeWriteKey(db: Db, id: string, actor: Actor): Promise<WriteKeySummary> {
  const [row] = await db
    .update(writeKeys)
    .set({ revokedAt: sql`coalesce(${writeKeys.revokedAt}, now())` })
    .where(eq(writeKeys.id, id))
    .returning();
  if (!row) throw notFound('Write key', id);
  await recordAudit(db, actor, 'write_key.revoked', 'write_key', id);
  return writeKeySummary(row);
}

/** The write key's principal, or null when it is unknown or revoked. */
export async function authenticateWriteKey(
  db: Db,
  secret: string,
): Promise<WriteKeyPrincipal | null> {
  // Run for every tracking request: kept prepared, so it costs one round trip (see preparedRows).
  const [row] = await db
    .select({ id: writeKeys.id, name: writeKeys.name, source: writeKeys.source })
    .from(writeKeys)
    .where(and(eq(writeKeys.hash, hashSecret(secret)), isNull(writeKeys.revokedAt)))
    .prepare('write_key_by_hash')
    .execute();
  return row ? { writeKeyId: row.id, name: row.name, source: row.source } : null;
}

/** What first start created; the secrets are shown once and never again. */
export interface Bootstrap {
  adminToken?: string;
  writeKey?: string;
}

/**
 * On first start (no token, no write key yet) create an admin token and a write key, using
 * the given secrets when the operator supplied them. Later starts create nothing.
 */
export async function bootstrapCredentials(
  db: Db,
  given: { adminToken?: string; writeKey?: string } = {},
): Promise<Bootstrap> {
  for (const [name, value, prefix] of [
    ['AUDIENCEHUB_ADMIN_TOKEN', given.adminToken, 'aht_'],
    ['AUDIENCEHUB_WRITE_KEY', given.writeKey, 'ahw_'],
  ] as const) {
    if (value !== undefined && value.length < 24) {
      throw new HubError(
        400,
        'weak-secret',
        'Secret too short',
        `${name} must be at least 24 characters (e.g. ${prefix} followed by random characters).`,
      );
    }
  }
  return db.transaction(async (tx) => {
    // Serialise concurrent first starts of several processes on one database.
    await tx.execute(sql`select pg_advisory_xact_lock(7146513220114082)`);
    const out: Bootstrap = {};
    const [tokens] = await tx.select({ n: sql<number>`count(*)::int` }).from(apiTokens);
    if (tokens!.n === 0) {
      out.adminToken = (
        await createApiToken(tx as unknown as Db, {
          name: 'admin (first start)',
          role: 'admin',
          secret: given.adminToken,
        })
      ).token;
    }
    const [keys] = await tx.select({ n: sql<number>`count(*)::int` }).from(writeKeys);
    if (keys!.n === 0) {
      out.writeKey = (
        await createWriteKey(tx as unknown as Db, {
          name: 'default (first start)',
          secret: given.writeKey,
        })
      ).writeKey;
    }
    return out;
  });
}

function tokenSummary(row: typeof apiTokens.$inferSelect): ApiTokenSummary {
  return {
    id: row.id,
    name: row.name,
    role: row.role as Role,
    prefix: row.prefix,
    createdAt: row.createdAt,
    lastUsedAt: row.lastUsedAt,
    revokedAt: row.revokedAt,
  };
}

function writeKeySummary(row: typeof writeKeys.$inferSelect): WriteKeySummary {
  return {
    id: row.id,
    name: row.name,
    source: row.source,
    prefix: row.prefix,
    createdAt: row.createdAt,
    revokedAt: row.revokedAt,
  };
}
