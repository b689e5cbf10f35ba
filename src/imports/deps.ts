/**
 * What imports need, built once per process: the source connectors (the repository's
 * `connectors/` folder and installed connector packages), the secret box shared with
 * destinations, and per-source request limiters.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { HubConfig } from '../config.ts';
import { loadSecretKey, secretBox, type SecretBox } from '../destinations/secrets.ts';
import { HubError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { RequestLimiter } from '../sdk/http.ts';
import {
  createConnectorRegistry,
  loadConnectors,
  type ConnectorRegistry,
} from '../sync/registry.ts';

export interface ImportDeps {
  connectors: ConnectorRegistry;
  /** The destinations' box: one key seals every credential of the hub. */
  box: SecretBox;
  log: Logger;
  /** Where uploaded files go: `<dataDir>/uploads/<sourceId>/`. */
  uploadsDir: string;
  /** One limiter per source, so its connector's limits hold across the runs of this process. */
  limiters?: Map<string, RequestLimiter>;
  /** Sends alert webhooks; the global fetch by default. */
  fetch?: typeof fetch;
}

/** The repository's own connectors. */
export const BUNDLED_CONNECTORS = fileURLToPath(new URL('../../connectors/', import.meta.url));

/**
 * Load the connectors and the secret key.
 *
 * @example
 * const imports = await createImportDeps(config, log);
 * imports.connectors.list(); // csv, postgres, hubspot, google-analytics, …
 */
export async function createImportDeps(
  config: HubConfig,
  log: Logger,
  box?: SecretBox,
): Promise<ImportDeps> {
  const connectors = createConnectorRegistry();
  const loaded = await loadConnectors(connectors, {
    connectorsDir: BUNDLED_CONNECTORS,
    nodeModulesDir: join(process.cwd(), 'node_modules'),
  });
  log.debug('source connectors loaded', { connectors: loaded.map((c) => c.name) });
  return {
    connectors,
    box: box ?? secretBox(loadSecretKey({ secretKey: config.secretKey, dataDir: config.dataDir })),
    log,
    uploadsDir: uploadsDir(config),
    limiters: new Map(),
  };
}

/** `<dataDir>/uploads`. */
export const uploadsDir = (config: HubConfig) => join(config.dataDir, 'uploads');

const derived = new WeakMap<object, Promise<ImportDeps>>();

/**
 * The import deps of a hub: the ones it was given, else built once from its destination deps
 * (same secret box and log) with the bundled and installed connectors; a 503 when it has
 * neither (started without a secret key).
 */
export function importDepsOf(ctx: {
  imports?: ImportDeps;
  sync?: { box: SecretBox; log: Logger };
  config: HubConfig;
}): Promise<ImportDeps> {
  if (ctx.imports) return Promise.resolve(ctx.imports);
  const sync = ctx.sync;
  if (!sync) {
    return Promise.reject(
      new HubError(
        503,
        'sources-unavailable',
        'Sources unavailable',
        'This hub was started without connectors and a secret key, so sources and imports are unavailable.',
      ),
    );
  }
  let deps = derived.get(sync);
  if (!deps) {
    deps = createImportDeps(ctx.config, sync.log, sync.box);
    // A failed load is tried again on the next call rather than remembered.
    deps.catch(() => derived.delete(sync));
    derived.set(sync, deps);
  }
  return deps;
}
