/**
 * What the sync engine needs, built once per process: the plugins (the repository's `plugins/`
 * folder and installed plugin packages) and the secret box.
 */
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import type { HubConfig } from '../config.ts';
import { loadSecretKey, secretBox } from '../destinations/secrets.ts';
import type { Logger } from '../log.ts';
import type { SyncDeps } from './engine.ts';
import { createRegistry, loadPlugins } from './registry.ts';

/** The repository's own plugins. */
export const BUNDLED_PLUGINS = fileURLToPath(new URL('../../plugins/', import.meta.url));

/**
 * @example
 * const sync = await createSyncDeps(config, log);
 * sync.registry.list(); // file, webhook, mailchimp, google-sheets, …
 */
export async function createSyncDeps(config: HubConfig, log: Logger): Promise<SyncDeps> {
  const registry = createRegistry();
  const loaded = await loadPlugins(registry, {
    pluginsDir: BUNDLED_PLUGINS,
    nodeModulesDir: join(process.cwd(), 'node_modules'),
  });
  log.debug('destination plugins loaded', { plugins: loaded.map((p) => p.name) });
  const box = secretBox(loadSecretKey({ secretKey: config.secretKey, dataDir: config.dataDir }));
  return { registry, box, log, queues: new Map() };
}
