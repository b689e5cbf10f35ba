import type { MiddlewareHandler } from 'hono';
import { authenticateToken, type Principal, type Role } from '../auth/credentials.ts';
import type { HubContext } from '../context.ts';
import { HubError } from '../errors.ts';

/** What the management API's handlers see: the caller, set by {@link requireToken}. */
export interface ApiEnv {
  Variables: { principal: Principal };
}

/** OpenAPI `security` for operations that take an API token. */
export const bearerSecurity = [{ bearer: [] }];

/**
 * Authenticate `Authorization: Bearer <token>`. A missing, unknown or revoked token is a 401
 * carrying `WWW-Authenticate: Bearer` (RFC 6750), with `error="invalid_token"` when a token
 * was sent but is not valid.
 */
export function requireToken(ctx: HubContext): MiddlewareHandler<ApiEnv> {
  return async (c, next) => {
    const match = /^Bearer +(\S+) *$/i.exec(c.req.header('Authorization') ?? '');
    const principal = match ? await authenticateToken(ctx.db, match[1]!) : null;
    if (!principal) {
      c.header(
        'WWW-Authenticate',
        match ? 'Bearer realm="audiencehub", error="invalid_token"' : 'Bearer realm="audiencehub"',
      );
      throw new HubError(
        401,
        'unauthorized',
        'Unauthorized',
        match
          ? 'The API token is unknown or has been revoked.'
          : 'Send an API token in the Authorization header: Bearer <token>.',
      );
    }
    c.set('principal', principal);
    await next();
  };
}

/** Let only tokens with one of `roles` through; others get a 403 naming the roles needed. */
export function requireRole(...roles: Role[]): MiddlewareHandler<ApiEnv> {
  return async (c, next) => {
    const { role } = c.get('principal');
    if (!roles.includes(role)) {
      throw new HubError(
        403,
        'forbidden',
        'Forbidden',
        `This operation needs the ${roles.join(' or ')} role; this token has the ${role} role.`,
        undefined,
        { requiredRoles: roles },
      );
    }
    await next();
  };
}

/** The audit log's actor for a caller. */
export const actorOf = (principal: Principal) => ({
  id: principal.tokenId,
  name: principal.name,
});

/** The roles sentence each operation's OpenAPI description starts with. */
export const rolesNote = (...roles: Role[]) =>
  roles.length === 3 ? 'Any role.' : `Role: ${roles.join(' or ')}.`;
