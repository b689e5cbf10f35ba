/**
 * Secrets at rest: destination credentials are encrypted with AES-256-GCM under one key, taken
 * from AUDIENCEHUB_SECRET_KEY (32 bytes, base64) or, when that is unset, generated on first use
 * into `<data dir>/secret.key` with owner-only permissions. Several hub processes on PostgreSQL
 * must share the key: set AUDIENCEHUB_SECRET_KEY for them.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HubError } from '../errors.ts';

const ALGORITHM = 'aes-256-gcm';
/** Stored texts start with the format version, so the scheme can change without guessing. */
const VERSION = 'v1';

/** Encrypts and decrypts JSON values; the key never leaves it. */
export interface SecretBox {
  seal(value: unknown): string;
  open<T = unknown>(sealed: string): T;
}

/**
 * A box over a 32-byte key.
 *
 * @example
 * const box = secretBox(loadSecretKey(config));
 * const sealed = box.seal({ apiKey }); // store this
 * box.open<{ apiKey: string }>(sealed).apiKey;
 */
export function secretBox(key: Buffer): SecretBox {
  if (key.length !== 32) throw new Error('the secret key must be 32 bytes');
  return {
    seal(value) {
      const iv = randomBytes(12);
      const cipher = createCipheriv(ALGORITHM, key, iv);
      const body = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final()]);
      const tag = cipher.getAuthTag();
      return [VERSION, iv.toString('base64'), tag.toString('base64'), body.toString('base64')].join(
        '.',
      );
    },
    open<T>(sealed: string): T {
      const [version, iv, tag, body] = sealed.split('.');
      if (version !== VERSION || !iv || !tag || body === undefined) {
        throw unreadable('it is not in a format this hub knows');
      }
      try {
        const decipher = createDecipheriv(ALGORITHM, key, Buffer.from(iv, 'base64'));
        decipher.setAuthTag(Buffer.from(tag, 'base64'));
        const text = Buffer.concat([
          decipher.update(Buffer.from(body, 'base64')),
          decipher.final(),
        ]).toString('utf8');
        return JSON.parse(text) as T;
      } catch {
        throw unreadable('the secret key is not the one they were stored with');
      }
    },
  };
}

const unreadable = (why: string) =>
  new HubError(
    500,
    'secrets-unreadable',
    'Stored credentials cannot be read',
    `Stored credentials cannot be decrypted: ${why}. Check AUDIENCEHUB_SECRET_KEY.`,
  );

/**
 * The key: AUDIENCEHUB_SECRET_KEY when given (base64 of 32 bytes), else the one in the data
 * directory, created (mode 0600) when missing.
 */
export function loadSecretKey(options: { secretKey?: string; dataDir: string }): Buffer {
  if (options.secretKey) {
    const key = Buffer.from(options.secretKey, 'base64');
    if (key.length !== 32) {
      throw new Error(
        'AUDIENCEHUB_SECRET_KEY must be 32 random bytes in base64 (e.g. `openssl rand -base64 32`)',
      );
    }
    return key;
  }
  const file = join(options.dataDir, 'secret.key');
  if (!existsSync(file)) {
    mkdirSync(options.dataDir, { recursive: true });
    // `wx`: never overwrite a key another process wrote meanwhile.
    try {
      writeFileSync(file, randomBytes(32).toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
    } catch (error) {
      if ((error as { code?: string }).code !== 'EEXIST') throw error;
    }
  }
  chmodSync(file, 0o600);
  const key = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64');
  if (key.length !== 32) throw new Error(`${file} does not hold a 32-byte key`);
  return key;
}
