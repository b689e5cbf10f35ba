import { createHash, randomBytes } from 'node:crypto';

/**
 * A new high-entropy secret such as `aht_3kZ…` (API token) or `ahw_9fQ…` (write key).
 * 32 random bytes make guessing hopeless, so a fast SHA-256 hash is the right way to store it.
 */
export function newSecret(prefix: 'aht' | 'ahw'): string {
  return `${prefix}_${randomBytes(32).toString('base64url')}`;
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** What listings show of a secret: enough to recognise it, far too little to use it. */
export function secretPrefix(secret: string): string {
  return secret.slice(0, 10);
}
