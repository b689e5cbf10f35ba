/**
 * The registries of extensions, by name, each checked when it is registered: destination
 * plugins and source connectors. One loader finds both, in the repository's own folder
 * (`plugins/<name>/index.ts`, `connectors/<name>/index.ts`) and in installed packages that
 * declare themselves in their package.json: `"audiencehub": { "plugin": "./entry" }` for a
 * destination plugin, `"audiencehub": { "connector": "./entry" }` for a source connector.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { DestinationPlugin } from '../sdk/destination.ts';
import type { SourceConnector } from '../sdk/source.ts';

/** Extensions of one kind, by name. */
export interface Registry<T extends { name: string }> {
  /** Check `candidate` and add it; `origin` (where it came from) names it in errors. */
  register(candidate: unknown, origin?: string): T;
  get(name: string): T | undefined;
  /** Every one, by name. */
  list(): T[];
}

/** Destination plugins. */
export type PluginRegistry = Registry<DestinationPlugin>;
/** Source connectors. */
export type ConnectorRegistry = Registry<SourceConnector>;

const NAME = /^[a-z][a-z0-9-]{1,48}[a-z0-9]$/;

/** Why a plugin or connector cannot be registered: names it (or where it came from) and the fault. */
export class PluginError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PluginError';
  }
}

/** What differs between the kinds: what they are called, where they are found, what they need. */
interface Kind {
  /** `plugin` or `connector`, for messages. */
  noun: string;
  /** The package.json key under `audiencehub` naming a package's entry. */
  manifestKey: 'plugin' | 'connector';
  /** The methods every one must have. */
  methods: readonly string[];
  /** Methods it may have. */
  optionalMethods: readonly string[];
  /** Checks beyond the common ones; throws through `problem`. */
  validate(candidate: Record<string, unknown>, problem: (what: string) => PluginError): void;
}

const DESTINATION: Kind = {
  noun: 'plugin',
  manifestKey: 'plugin',
  methods: ['check', 'fields', 'sync'],
  optionalMethods: ['prepare', 'finish', 'limitKey'],
  validate(p, problem) {
    const limits = p.limits as DestinationPlugin['limits'] | undefined;
    if (!limits || !isCount(limits.batchSize) || !isCount(limits.concurrency)) {
      throw problem('limits need a whole batchSize and concurrency of at least 1');
    }
    if (limits.callsPerSecond !== undefined && !(limits.callsPerSecond > 0)) {
      throw problem('limits.callsPerSecond must be positive');
    }
  },
};

const SOURCE: Kind = {
  noun: 'connector',
  manifestKey: 'connector',
  methods: ['check', 'discover', 'read'],
  optionalMethods: [],
  validate(c, problem) {
    const limits = c.limits as SourceConnector['limits'];
    if (limits !== undefined) {
      if (typeof limits !== 'object' || limits === null) throw problem('limits is not an object');
      if (limits.requestsPerSecond !== undefined && !(limits.requestsPerSecond > 0)) {
        throw problem('limits.requestsPerSecond must be positive');
      }
      if (limits.concurrency !== undefined && !isCount(limits.concurrency)) {
        throw problem('limits.concurrency must be a whole number of at least 1');
      }
    }
    if (c.uploads !== undefined && typeof c.uploads !== 'boolean') {
      throw problem('uploads must be true or false');
    }
  },
};

function createKindRegistry<T extends { name: string }>(kind: Kind): Registry<T> {
  const entries = new Map<string, T>();
  return {
    register(candidate, origin = `a ${kind.noun}`) {
      const entry = validate<T>(kind, candidate, origin);
      const existing = entries.get(entry.name);
      if (existing && existing !== entry) {
        throw new PluginError(
          `${origin}: a ${kind.noun} named "${entry.name}" is already registered`,
        );
      }
      entries.set(entry.name, entry);
      return entry;
    },
    get: (name) => entries.get(name),
    list: () => [...entries.values()].sort((a, b) => a.name.localeCompare(b.name)),
  };
}

/**
 * An empty registry of destination plugins.
 *
 * @example
 * const registry = createRegistry();
 * registry.register(filePlugin);
 * registry.get('file');
 */
export function createRegistry(): PluginRegistry {
  return createKindRegistry(DESTINATION);
}

/**
 * An empty registry of source connectors.
 *
 * @example
 * const connectors = createConnectorRegistry();
 * connectors.register(csvConnector);
 * connectors.get('csv');
 */
export function createConnectorRegistry(): ConnectorRegistry {
  return createKindRegistry(SOURCE);
}

function validate<T>(kind: Kind, candidate: unknown, origin: string): T {
  const p = candidate as Record<string, unknown> | null;
  const fault = (what: string) => new PluginError(`${origin}: ${what}`);
  if (!p || typeof p !== 'object') throw fault(`does not export a ${kind.noun} object`);
  const label = typeof p.name === 'string' ? `${kind.noun} "${p.name}"` : origin;
  const problem = (what: string) => new PluginError(`${label}: ${what}`);
  if (typeof p.name !== 'string' || !NAME.test(p.name)) {
    throw fault(`its name ${JSON.stringify(p.name)} is not kebab-case (e.g. "google-sheets")`);
  }
  if (typeof p.title !== 'string' || p.title.trim() === '') throw problem('has no title');
  if (!p.config || typeof (p.config as { safeParse?: unknown }).safeParse !== 'function') {
    throw problem('config is not a zod schema');
  }
  for (const method of kind.methods) {
    if (typeof p[method] !== 'function') throw problem(`has no ${method}() method`);
  }
  for (const optional of kind.optionalMethods) {
    if (p[optional] !== undefined && typeof p[optional] !== 'function') {
      throw problem(`${optional} is not a function`);
    }
  }
  kind.validate(p, problem);
  return p as T;
}

const isCount = (n: unknown) => Number.isInteger(n) && (n as number) >= 1;

/**
 * Register every destination plugin found: each folder of `pluginsDir` with an `index.ts` (or
 * `index.js`) whose default export is a plugin, then every package in `nodeModulesDir` whose
 * package.json has `audiencehub.plugin`.
 */
export async function loadPlugins(
  registry: PluginRegistry,
  options: { pluginsDir?: string; nodeModulesDir?: string },
): Promise<DestinationPlugin[]> {
  return loadInto(registry, DESTINATION, options.pluginsDir, 'plugins', options.nodeModulesDir);
}

/**
 * Register every source connector found: each folder of `connectorsDir` with an `index.ts` (or
 * `index.js`) whose default export is a connector, then every package in `nodeModulesDir`
 * whose package.json has `audiencehub.connector`.
 *
 * @example
 * const connectors = createConnectorRegistry();
 * await loadConnectors(connectors, { connectorsDir: './connectors', nodeModulesDir: './node_modules' });
 */
export async function loadConnectors(
  registry: ConnectorRegistry,
  options: { connectorsDir?: string; nodeModulesDir?: string },
): Promise<SourceConnector[]> {
  return loadInto(registry, SOURCE, options.connectorsDir, 'connectors', options.nodeModulesDir);
}

async function loadInto<T extends { name: string }>(
  registry: Registry<T>,
  kind: Kind,
  folder: string | undefined,
  folderName: string,
  nodeModulesDir: string | undefined,
): Promise<T[]> {
  const loaded: T[] = [];
  const load = async (file: string, origin: string) => {
    let module: { default?: unknown };
    try {
      module = (await import(pathToFileURL(file).href)) as { default?: unknown };
    } catch (error) {
      throw new PluginError(
        `${origin}: cannot be loaded: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`,
      );
    }
    loaded.push(registry.register(module.default, origin));
  };
  if (folder && existsSync(folder)) {
    for (const entry of readdirSync(folder, { withFileTypes: true })) {
      if (!entry.isDirectory()) continue;
      const dir = join(folder, entry.name);
      const index = ['index.ts', 'index.js'].map((f) => join(dir, f)).find(existsSync);
      if (index) await load(index, `${folderName}/${entry.name}`);
    }
  }
  if (nodeModulesDir && existsSync(nodeModulesDir)) {
    for (const dir of packageDirs(nodeModulesDir)) {
      const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
        name?: string;
        audiencehub?: Partial<Record<Kind['manifestKey'], string>>;
      };
      const entry = manifest.audiencehub?.[kind.manifestKey];
      if (typeof entry === 'string') await load(resolve(dir, entry), `package ${manifest.name}`);
    }
  }
  return loaded;
}

/** Package folders in node_modules, scoped ones included. */
function packageDirs(nodeModules: string): string[] {
  const dirs: string[] = [];
  for (const entry of readdirSync(nodeModules, { withFileTypes: true })) {
    if (!entry.isDirectory() || entry.name.startsWith('.')) continue;
    const dir = join(nodeModules, entry.name);
    if (entry.name.startsWith('@')) {
      for (const scoped of readdirSync(dir, { withFileTypes: true })) {
        if (scoped.isDirectory() && existsSync(join(dir, scoped.name, 'package.json'))) {
          dirs.push(join(dir, scoped.name));
        }
      }
    } else if (existsSync(join(dir, 'package.json'))) {
      dirs.push(dir);
    }
  }
  return dirs;
}
