/**
 * `check`: the server answers with these credentials, the schema exists and may be used, and
 * every configured stream resolves (its table exists, its query compiles, its key and cursor
 * columns are columns). Failures come back as a reason, never thrown, never with the password.
 */
import type { SourceCheck } from 'audiencehub/sdk';
import { failure, open, type PostgresConfig } from './client.ts';
import { assertSchema, plans } from './streams.ts';

export const check: SourceCheck<PostgresConfig> = async ({ config }, ctx) => {
  const db = open(config, ctx);
  try {
    await assertSchema(db, config);
    await plans(db, config, 'configured');
    return { ok: true };
  } catch (error) {
    return { ok: false, reason: failure(error, config, ctx.signal).message };
  } finally {
    await db.close();
  }
};
