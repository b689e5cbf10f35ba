/**
 * Destinations: configured plugin instances. An admin creates one with its credentials; the
 * plugin's `check` must pass before it is saved; secret fields are sealed and never come back
 * out through the API, a log or an error.
 */
import { z } from '@hono/zod-openapi';
import { sql } from 'drizzle-orm';
import type { Principal } from '../auth/credentials.ts';
import { refuseManaged, type ManagedWrite } from '../apply/managed.ts';
import { recordAudit } from '../audit.ts';
import { rows, type Db } from '../db/index.ts';
import { badRequest, HubError, notFound } from '../errors.ts';
import { uuidv7 } from '../ids.ts';
import type { Logger } from '../log.ts';
import { type DestinationField, type DestinationPlugin } from '../sdk/destination.ts';
import { ConfigError, TransientError, VendorError } from '../sdk/errors.ts';
import { pluginContext } from '../sync/engine.ts';
import type { PluginRegistry } from '../sync/registry.ts';
import {
  openConfig,
  parseConfig,
  redactSecrets,
  secretValues,
  splitSecrets,
} from './sealed-config.ts';
import type { SecretBox } from './secrets.ts';

export const CreateDestination = z
  .object({
    name: z.string().trim().min(1).max(100),
    plugin: z.string().min(1).max(50).openapi({ example: 'file' }),
    config: z.record(z.string(), z.unknown()).openapi({
      description: "The plugin's configuration; secret fields are stored encrypted.",
    }),
  })
  .openapi('CreateDestination');
export type CreateDestination = z.infer<typeof CreateDestination>;

export const UpdateDestination = z
  .object({
    name: z.string().trim().min(1).max(100).optional(),
    config: z
      .record(z.string(), z.unknown())
      .optional()
      .openapi({ description: 'Fields to change; a secret field left out keeps its value.' }),
  })
  .openapi('UpdateDestination');
export type UpdateDestination = z.infer<typeof UpdateDestination>;

export interface Destination {
  id: string;
  name: string;
  plugin: string;
  /** The config without its secrets. */
  config: Record<string, unknown>;
  /** Which secret fields are set (their values are never shown). */
  secrets: string[];
  createdAt: Date;
  updatedAt: Date;
  /** The config-as-code key when `audiencehub apply` manages it (the API then refuses edits). */
  managedBy: string | null;
}

export interface DestinationDeps {
  registry: PluginRegistry;
  box: SecretBox;
  log: Logger;
}

interface Row {
  id: string;
  name: string;
  plugin: string;
  config: Record<string, unknown>;
  secrets: string;
  created_at: string | Date;
  updated_at: string | Date;
  managed_by: string | null;
}

const toDestination = (r: Row, box: SecretBox): Destination => ({
  id: r.id,
  name: r.name,
  plugin: r.plugin,
  config: r.config,
  secrets: Object.keys(box.open<Record<string, unknown>>(r.secrets)).sort(),
  createdAt: new Date(r.created_at),
  updatedAt: new Date(r.updated_at),
  managedBy: r.managed_by ?? null,
});

const actor = (p: Principal) => ({ id: p.tokenId, name: p.name });

function pluginOf(registry: PluginRegistry, name: string): DestinationPlugin {
  const plugin = registry.get(name);
  if (!plugin) {
    const known = registry
      .list()
      .map((p) => p.name)
      .join(', ');
    throw badRequest(`There is no destination plugin "${name}" (installed: ${known || 'none'}).`, [
      { field: 'plugin', message: `unknown plugin; installed: ${known || 'none'}` },
    ]);
  }
  return plugin;
}

/** Validate a full config against the plugin, then run its check; errors name `config.<field>`. */
async function validate(
  deps: DestinationDeps,
  plugin: DestinationPlugin,
  config: Record<string, unknown>,
): Promise<Record<string, unknown>> {
  const valid = parseConfig(plugin.config, `the ${plugin.title} plugin`, config);
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 30_000);
  let outcome;
  try {
    outcome = await plugin.check(
      { config: valid },
      pluginContext(deps.log.child({ plugin: plugin.name }), controller.signal),
    );
  } catch (error) {
    const reason =
      error instanceof ConfigError ||
      error instanceof TransientError ||
      error instanceof VendorError
        ? error.message
        : 'the check failed unexpectedly';
    outcome = { ok: false as const, reason };
  } finally {
    clearTimeout(timer);
  }
  if (!outcome.ok) {
    const reason = redactSecrets(
      outcome.reason,
      secretValues(splitSecrets(plugin.config, valid).sealed),
    );
    throw new HubError(
      422,
      'destination-check-failed',
      'Destination check failed',
      `${plugin.title} refused this configuration: ${reason}`,
      [{ field: 'config', message: reason }],
    );
  }
  return valid;
}

/**
 * Create a destination after its plugin's check passed.
 *
 * @example
 * await createDestination(db, deps, admin, { name: 'Exports', plugin: 'file', config: { directory: './exports' } });
 */
export async function createDestination(
  db: Db,
  deps: DestinationDeps,
  principal: Principal,
  input: CreateDestination,
): Promise<Destination> {
  const plugin = pluginOf(deps.registry, input.plugin);
  const valid = await validate(deps, plugin, input.config);
  const { open, sealed } = splitSecrets(plugin.config, valid);
  const id = uuidv7();
  try {
    const [row] = await rows<Row>(
      db,
      sql`insert into destinations (id, name, plugin, config, secrets, created_by)
          values (${id}, ${input.name}, ${plugin.name}, ${JSON.stringify(open)}::jsonb,
            ${deps.box.seal(sealed)}, ${principal.tokenId})
          returning *`,
    );
    await recordAudit(db, actor(principal), 'destination.created', 'destination', id, {
      plugin: plugin.name,
    });
    return toDestination(row!, deps.box);
  } catch (error) {
    if ((error as { cause?: { code?: string } }).cause?.code === '23505') {
      throw new HubError(409, 'destination-name-taken', 'Destination name taken', undefined, [
        { field: 'name', message: `a destination named "${input.name}" exists` },
      ]);
    }
    throw error;
  }
}

export async function listDestinations(db: Db, deps: DestinationDeps): Promise<Destination[]> {
  const found = await rows<Row>(db, sql`select * from destinations order by lower(name), id`);
  return found.map((r) => toDestination(r, deps.box));
}

export async function getDestination(db: Db, deps: DestinationDeps, id: string) {
  const [row] = await rows<Row>(db, sql`select * from destinations where id = ${id}`);
  if (!row) throw notFound('Destination', id);
  return toDestination(row, deps.box);
}

/** Change a destination; a changed config is checked again. Secrets left out are kept. */
export async function updateDestination(
  db: Db,
  deps: DestinationDeps,
  principal: Principal,
  id: string,
  input: UpdateDestination,
  options: ManagedWrite = {},
): Promise<Destination> {
  const [row] = await rows<Row>(db, sql`select * from destinations where id = ${id}`);
  if (!row) throw notFound('Destination', id);
  refuseManaged('destination', row.managed_by, options);
  const plugin = pluginOf(deps.registry, row.plugin);
  let config = row.config;
  let secrets = row.secrets;
  if (input.config) {
    const merged = { ...openConfig(deps.box, row.config, row.secrets).config, ...input.config };
    const valid = await validate(deps, plugin, merged);
    const parts = splitSecrets(plugin.config, valid);
    config = parts.open;
    secrets = deps.box.seal(parts.sealed);
  }
  const [updated] = await rows<Row>(
    db,
    sql`update destinations set name = ${input.name ?? row.name},
          config = ${JSON.stringify(config)}::jsonb, secrets = ${secrets}, updated_at = now()
        where id = ${id} returning *`,
  );
  await recordAudit(db, actor(principal), 'destination.updated', 'destination', id, {
    fields: Object.keys(input.config ?? {}).sort(),
  });
  return toDestination(updated!, deps.box);
}

/** Delete a destination no sync uses (409 naming the syncs otherwise). */
export async function deleteDestination(
  db: Db,
  principal: Principal,
  id: string,
  options: ManagedWrite = {},
): Promise<void> {
  await db.transaction(async (tx) => {
    const [row] = await rows<{ id: string; managed_by: string | null }>(
      tx,
      sql`select id, managed_by from destinations where id = ${id} for update`,
    );
    if (!row) throw notFound('Destination', id);
    refuseManaged('destination', row.managed_by, options);
    const used = await rows<{ id: string }>(
      tx,
      sql`select id from syncs where destination_id = ${id} order by id`,
    );
    if (used.length > 0) {
      throw new HubError(
        409,
        'destination-in-use',
        'Destination in use',
        `Syncs use this destination: ${used.map((s) => s.id).join(', ')}. Delete them first.`,
        undefined,
        { syncs: used.map((s) => s.id) },
      );
    }
    await tx.execute(sql`delete from destinations where id = ${id}`);
    await recordAudit(tx, actor(principal), 'destination.deleted', 'destination', id, {});
  });
}

/** What a destination offers to map: its plugin's fields, and whether it takes others. */
export interface DestinationFields {
  /** The fields rows may carry; empty: any field name. */
  fields: DestinationField[];
  /** Mappings may name fields not listed yet: the plugin creates them. */
  acceptsNewFields: boolean;
}

/**
 * Ask a destination's plugin which fields it offers, with its stored config (secrets opened
 * only in memory). A plugin that fails answers a problem with its message, secrets blanked:
 * 422 `destination-fields-failed` (a ConfigError), 503 `destination-unavailable` (the service is
 * busy or out of reach), 502 `destination-fields-failed` (anything else).
 *
 * @example
 * const { fields } = await destinationFields(db, deps, destinationId);
 * // [{ key: 'email', label: 'Email', type: 'string', required: true, identifier: true }, …]
 */
export async function destinationFields(
  db: Db,
  deps: DestinationDeps,
  id: string,
): Promise<DestinationFields> {
  const [row] = await rows<Row>(db, sql`select * from destinations where id = ${id}`);
  if (!row) throw notFound('Destination', id);
  const plugin = deps.registry.get(row.plugin);
  if (!plugin) {
    throw misconfigured(`The destination's plugin "${row.plugin}" is not installed.`);
  }
  const { config, secrets } = openConfig(deps.box, row.config, row.secrets);
  const parsed = plugin.config.safeParse(config);
  if (!parsed.success) {
    // Paths and messages only: an issue may quote the value it refused.
    const paths = parsed.error.issues.map((i) => i.path.join('.') || '(config)');
    throw misconfigured(
      `The destination's stored configuration no longer fits the ${plugin.title} plugin (${paths.join(', ')}): change it.`,
    );
  }
  const hidden = secretValues(secrets);
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 30_000);
  try {
    const fields = await plugin.fields(
      { config: parsed.data },
      pluginContext(deps.log.child({ destinationId: id, plugin: plugin.name }), controller.signal),
    );
    return { fields, acceptsNewFields: plugin.acceptsNewFields === true };
  } catch (error) {
    const message = error instanceof Error ? redactSecrets(error.message, hidden) : '';
    if (error instanceof ConfigError) {
      throw new HubError(
        422,
        'destination-fields-failed',
        'Destination fields unavailable',
        `${plugin.title} could not list its fields: ${message}`,
      );
    }
    if (error instanceof TransientError) {
      throw new HubError(
        503,
        'destination-unavailable',
        'Destination unavailable',
        `${plugin.title} is busy or out of reach: ${message}. Try again later.`,
        undefined,
        error.retryAfterMs === undefined
          ? undefined
          : { retryAfterSeconds: Math.ceil(error.retryAfterMs / 1000) },
      );
    }
    const known = error instanceof VendorError;
    deps.log.warn('destination fields failed', {
      destinationId: id,
      plugin: plugin.name,
      error: known ? message : redactSecrets(String(error), hidden),
    });
    throw new HubError(
      502,
      'destination-fields-failed',
      'Destination fields unavailable',
      `${plugin.title} could not list its fields: ${known ? message : 'the plugin failed unexpectedly (logged)'}`,
    );
  } finally {
    clearTimeout(timer);
  }
}

const misconfigured = (detail: string) =>
  new HubError(409, 'destination-misconfigured', 'Destination misconfigured', detail);
