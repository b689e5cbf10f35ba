import { createHash } from 'node:crypto';
import { parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js';

/** An identity type and its normalised value: unique across the hub, held by one profile. */
export interface IdentityKey {
  type: string;
  value: string;
}

/** The built-in identity types. Connectors may add their own (e.g. `hubspot_id`). */
export const IDENTITY = {
  userId: 'user_id',
  anonymousId: 'anonymous_id',
  email: 'email',
  phone: 'phone',
} as const;

/** Identity types are lower snake case, so `Email` and `email` cannot become two types. */
export const IDENTITY_TYPE = /^[a-z][a-z0-9_]{0,63}$/;

const EMAIL = /^[^\s@]+@[^\s@]+$/;

/** `Jane.Doe@Example.COM ` → `jane.doe@example.com`; null when it is not an address. */
export function normaliseEmail(raw: unknown): string | null {
  if (typeof raw !== 'string') return null;
  const email = raw.trim().toLowerCase();
  return EMAIL.test(email) && email.length <= 320 ? email : null;
}

/**
 * A phone number in E.164 (`+447700900123`); null when it cannot be read as a valid number.
 * Numbers without a country code are read in `defaultCountry` when one is configured.
 */
export function normalisePhone(raw: unknown, defaultCountry?: string): string | null {
  if (typeof raw !== 'string' && typeof raw !== 'number') return null;
  const parsed = parsePhoneNumberFromString(String(raw).trim(), {
    defaultCountry: defaultCountry as CountryCode | undefined,
  });
  return parsed?.isValid() ? parsed.number : null;
}

/** Ids are kept as given apart from surrounding white space; numbers become their decimal text. */
export function normaliseId(raw: unknown): string | null {
  if (typeof raw === 'number' && Number.isFinite(raw)) return String(raw);
  if (typeof raw !== 'string') return null;
  const id = raw.trim();
  return id.length > 0 && id.length <= 512 ? id : null;
}

/** Normalise a value for an identity type: emails and phones by their rules, others as ids. */
export function normaliseIdentity(
  type: string,
  raw: unknown,
  defaultCountry?: string,
): string | null {
  if (type === IDENTITY.email) return normaliseEmail(raw);
  if (type === IDENTITY.phone) return normalisePhone(raw, defaultCountry);
  return normaliseId(raw);
}

export const identityString = (k: IdentityKey) => `${k.type}:${k.value}`;

/**
 * A signed 64-bit advisory-lock key for an identity. A collision only makes two unrelated
 * identities wait for each other, never wrong.
 */
export function identityLockKey(k: IdentityKey): string {
  return createHash('sha256').update(identityString(k)).digest().readBigInt64BE(0).toString();
}
