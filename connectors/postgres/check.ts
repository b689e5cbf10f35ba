/**
 * `check`: the server answers with these credentials, the schema exists and may be used, and
 * every configured stream resolves (its table exists, its query compiles, its key and cursor
 * columns are columns). Failures come back as a reason, never thrown, never with the password.
 */
import type { SourceCheck } from 'audiencehub/sdk';
import { failure, open, type PostgresConfig } from './client.ts';
import { plans } from './streams.ts';

export const check: SourceCheck<PostgresConfig> = async ({ config }, ctx) => {
  const db = open(config, ctx);
  try {
    const [schema] = await db.select(
      `select has_schema_privilege(n.oid, 'USAGE') as usable from pg_catalog.pg_namespace n
       where n.nspname = $1`,
      [config.schema],
    );
    if (!schema) {
      return {
        ok: false,
        reason: `Schema "${config.schema}" does not exist in database "${config.database}".`,
      };
    }
    if (schema.usable !== 't') {
      return {
        ok: false,
        reason: `User "${config.user}" may not use schema "${config.schema}": grant it USAGE on the schema.`,
      };
    }
    await plans(db, config, 'configured');
    return { ok: true };
  } catch (error) {
    return { ok: false, reason: failure(error, config, ctx.signal).message };
  } finally {
    await db.close();
  }
};
