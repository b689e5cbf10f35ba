/**
 * A plugin's or connector's configuration at rest: validated against its schema, split into the
 * open part (stored as JSON) and the secret fields (sealed with the hub's secret box), opened
 * again only in memory, and every secret value kept out of the messages that might repeat it.
 */
import type { z } from 'zod';
import { badRequest } from '../errors.ts';
import { secretKeys } from '../sdk/destination.ts';
import { ConfigError } from '../sdk/errors.ts';
import type { SecretBox } from './secrets.ts';

/**
 * Validate a full configuration; a 400 naming `config.<field>` for each problem.
 *
 * @example
 * const valid = parseConfig(connector.config, 'the CSV files connector', { path: './data' });
 */
export function parseConfig(
  schema: z.ZodType,
  title: string,
  config: Record<string, unknown>,
): Record<string, unknown> {
  const parsed = schema.safeParse(config);
  if (!parsed.success) {
    throw badRequest(
      `The configuration does not fit ${title}.`,
      parsed.error.issues.map((i) => ({
        field: ['config', ...i.path.map(String)].join('.'),
        message: i.message,
      })),
    );
  }
  return parsed.data as Record<string, unknown>;
}

/** The open fields and the secret ones (to seal) of a configuration. */
export function splitSecrets(schema: z.ZodType, config: Record<string, unknown>) {
  const secret = new Set(secretKeys(schema));
  const open: Record<string, unknown> = {};
  const sealed: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(config)) {
    if (v === undefined) continue;
    (secret.has(k) ? sealed : open)[k] = v;
  }
  return { open, sealed };
}

/**
 * A stored configuration opened in memory: its open part with its secret fields unsealed over it.
 *
 * @example
 * const { config, secrets } = openConfig(box, row.config, row.secrets);
 */
export function openConfig(box: SecretBox, open: Record<string, unknown>, sealed: string) {
  const secrets = box.open<Record<string, unknown>>(sealed);
  return { config: { ...open, ...secrets }, secrets };
}

/**
 * Validate a stored configuration before a run uses it; a ConfigError listing each problem when
 * it no longer fits (the schema changed, or it was edited outside the API).
 *
 * @example
 * parseStoredConfig(plugin.config, config, `The destination's configuration no longer fits the ${plugin.title} plugin`);
 */
export function parseStoredConfig(
  schema: z.ZodType,
  config: Record<string, unknown>,
  misfit: string,
): unknown {
  const parsed = schema.safeParse(config);
  if (!parsed.success) {
    throw new ConfigError(
      `${misfit}: ${parsed.error.issues
        .map((i) => `${i.path.join('.') || '(config)'}: ${i.message}`)
        .join('; ')}`,
    );
  }
  return parsed.data;
}

/** Every string inside the secret fields (records of headers included), to blank out. */
export function secretValues(sealed: Record<string, unknown>): string[] {
  return (JSON.stringify(sealed).match(/"(?:[^"\\]|\\.)*"/g) ?? [])
    .map((quoted) => JSON.parse(quoted) as string)
    .filter((v) => v.length >= 4 && !Object.hasOwn(sealed, v));
}

/**
 * Blank every secret value out of a message before it is stored, logged or answered.
 *
 * @example
 * redactSecrets('key sk-live-9f8e7d was revoked', ['sk-live-9f8e7d']); // 'key ******** was revoked'
 */
export const redactSecrets = (message: string, secrets: string[]) =>
  secrets.reduce((text, s) => text.split(s).join('********'), message).slice(0, 1000);
