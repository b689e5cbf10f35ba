/**
 * Who is calling: an OAuth access token, or a service account's self-signed JWT — what
 * googleapis sends for a service account key when the client is built with
 * `useJWTAccessWithScope` (Google's "service account authorization without OAuth"): an RS256
 * JWT signed with the key, `iss` = `sub` = the account's email, and either a `scope` claim or
 * `aud` = the service's URL. The emulator verifies the signature with the public key it was
 * given, the expiry and the scope, so nothing is ever sent to Google's token endpoint.
 */
import { createPublicKey, createVerify, type KeyObject } from 'node:crypto';
import {
  apiKeyRefused,
  insufficientScopes,
  invalidCredentials,
  missingCredentials,
  type Ga4ApiError,
} from './errors.ts';

const SCOPES = new Set([
  'https://www.googleapis.com/auth/analytics.readonly',
  'https://www.googleapis.com/auth/analytics',
]);
const AUDIENCE = 'https://analyticsdata.googleapis.com/';

export interface ServiceAccount {
  clientEmail: string;
  /** The public half of the account's key (PEM or KeyObject). */
  publicKey: string | KeyObject;
  /** `private_key_id` of the key file; when set, the JWT's `kid` must match. */
  keyId?: string;
}

export interface Principal {
  /** The access token, or the service account's email: what a property's access list holds. */
  id: string;
  /** The Cloud project the caller belongs to (per-project quotas). */
  project: string;
}

export interface Credentials {
  /** Accepted OAuth tokens and their projects; any non-empty token when undefined. */
  tokens?: Map<string, string>;
  serviceAccounts: Map<string, ServiceAccount>;
  revoked: Set<string>;
  now: () => number;
}

/** The project of a caller without one: a fixed number, as in Google's error metadata. */
export const DEFAULT_PROJECT = '123456789012';

const b64json = (part: string): Record<string, unknown> | undefined => {
  try {
    const v = JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as unknown;
    return v && typeof v === 'object' ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
};

function verifyJwt(
  token: string,
  credentials: Credentials,
  method: string,
): Principal | Ga4ApiError {
  const [h, p, s] = token.split('.');
  const header = b64json(h!);
  const claims = b64json(p!);
  if (!header || !claims || header.alg !== 'RS256' || typeof claims.iss !== 'string') {
    return invalidCredentials(method);
  }
  const account = credentials.serviceAccounts.get(claims.iss);
  if (!account || credentials.revoked.has(claims.iss) || claims.sub !== claims.iss) {
    return invalidCredentials(method);
  }
  if (account.keyId !== undefined && header.kid !== account.keyId)
    return invalidCredentials(method);
  const verifier = createVerify('RSA-SHA256');
  verifier.update(`${h}.${p}`);
  let good: boolean;
  try {
    const key =
      typeof account.publicKey !== 'string' && account.publicKey.type === 'public'
        ? account.publicKey
        : createPublicKey(account.publicKey);
    good = verifier.verify(key, Buffer.from(s!, 'base64url'));
  } catch {
    good = false;
  }
  const now = credentials.now() / 1000;
  if (!good || typeof claims.exp !== 'number' || claims.exp < now)
    return invalidCredentials(method);
  if (typeof claims.iat !== 'number' || claims.exp - claims.iat > 3600) {
    return invalidCredentials(method);
  }
  if (typeof claims.scope === 'string') {
    if (!claims.scope.split(' ').some((x) => SCOPES.has(x))) return insufficientScopes(method);
  } else if (claims.aud !== AUDIENCE) {
    return invalidCredentials(method);
  }
  const project = /@([^.]+)\.iam\.gserviceaccount\.com$/.exec(claims.iss)?.[1] ?? DEFAULT_PROJECT;
  return { id: claims.iss, project };
}

/**
 * The caller of a request, or the error Google answers: 401 without credentials, with an API
 * key, or with a token it does not accept; 403 for a token without an Analytics scope.
 */
export function authenticate(
  authorization: string | undefined,
  query: URLSearchParams,
  credentials: Credentials,
  method: string,
): Principal | Ga4ApiError {
  const token =
    (authorization?.startsWith('Bearer ') ? authorization.slice(7) : undefined) ??
    query.get('access_token') ??
    query.get('oauth_token') ??
    undefined;
  if (token === undefined) {
    return query.has('key') ? apiKeyRefused(method) : missingCredentials(method);
  }
  if (token.split('.').length === 3 && token.startsWith('eyJ')) {
    return verifyJwt(token, credentials, method);
  }
  if (token === '' || credentials.revoked.has(token)) return invalidCredentials(method);
  if (credentials.tokens && !credentials.tokens.has(token)) return invalidCredentials(method);
  return { id: token, project: credentials.tokens?.get(token) ?? DEFAULT_PROJECT };
}
