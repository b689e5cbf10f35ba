/**
 * The plugin registry: destination plugins by name, each checked when it is registered, loaded
 * from the repository's `plugins/` folder and from installed packages that declare themselves
 * audiencehub plugins (`"audiencehub": { "plugin": "./path/to/entry" }` in their package.json).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { DestinationPlugin } from '../sdk/destination.ts';

export interface PluginRegistry {
  register(plugin: unknown, origin?: string): DestinationPlugin;
  get(name: string): DestinationPlugin | undefined;
  list(): DestinationPlugin[];
}

const NAME = /^[a-z][a-z0-9-]{1,48}[a-z0-9]$/;

/** Why a plugin cannot be registered: names the plugin (or where it came from) and the fault. */
export class PluginError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PluginError';
  }
}

/**
 * An empty registry.
 *
 * @example
 * const registry = createRegistry();
 * registry.register(filePlugin);
 * registry.get('file');
 */
export function createRegistry(): PluginRegistry {
  const plugins = new Map<string, DestinationPlugin>();
  return {
    register(candidate, origin = 'a plugin') {
      const plugin = validate(candidate, origin);
      const existing = plugins.get(plugin.name);
      if (existing && existing !== plugin) {
        throw new PluginError(`${origin}: a plugin named "${plugin.name}" is already registered`);
      }
      plugins.set(plugin.name, plugin);
      return plugin;
    },
    get: (name) => plugins.get(name),
    list: () => [...plugins.values()].sort((a, b) => a.name.localeCompare(b.name)),
  };
}

function validate(candidate: unknown, origin: string): DestinationPlugin {
  const p = candidate as Partial<DestinationPlugin> | null;
  const fault = (what: string) => new PluginError(`${origin}: ${what}`);
  if (!p || typeof p !== 'object') throw fault('does not export a plugin object');
  const label = typeof p.name === 'string' ? `plugin "${p.name}"` : origin;
  const problem = (what: string) => new PluginError(`${label}: ${what}`);
  if (typeof p.name !== 'string' || !NAME.test(p.name)) {
    throw fault(`its name ${JSON.stringify(p.name)} is not kebab-case (e.g. "google-sheets")`);
  }
  if (typeof p.title !== 'string' || p.title.trim() === '') throw problem('has no title');
  if (!p.config || typeof (p.config as { safeParse?: unknown }).safeParse !== 'function') {
    throw problem('config is not a zod schema');
  }
  const limits = p.limits;
  if (!limits || !isCount(limits.batchSize) || !isCount(limits.concurrency)) {
    throw problem('limits need a whole batchSize and concurrency of at least 1');
  }
  if (limits.callsPerSecond !== undefined && !(limits.callsPerSecond > 0)) {
    throw problem('limits.callsPerSecond must be positive');
  }
  for (const method of ['check', 'fields', 'sync'] as const) {
    if (typeof p[method] !== 'function') throw problem(`has no ${method}() method`);
  }
  for (const optional of ['prepare', 'finish'] as const) {
    if (p[optional] !== undefined && typeof p[optional] !== 'function') {
      throw problem(`${optional} is not a function`);
    }
  }
  if (p.limitKey !== undefined && typeof p.limitKey !== 'function') {
    throw problem('limitKey is not a function');
  }
  return p as DestinationPlugin;
}

const isCount = (n: unknown) => Number.isInteger(n) && (n as number) >= 1;

/**
 * Register every plugin found: each folder of `pluginsDir` with an `index.ts` (or `index.js`)
 * whose default export is a plugin, then every package in `nodeModulesDir` whose package.json
 * has `audiencehub.plugin`.
 */
export async function loadPlugins(
  registry: PluginRegistry,
  options: { pluginsDir?: string; nodeModulesDir?: string },
): Promise<DestinationPlugin[]> {
  const loaded: DestinationPlugin[] = [];
  const load = async (file: string, origin: string) => {
    const module = (await import(pathToFileURL(file).href)) as { default?: unknown };
    loaded.push(registry.register(module.default, origin));
  };
  if (options.pluginsDir && existsSync(options.pluginsDir)) {
    for (const entry of readdirSync(options.pluginsDir, { withFileTypes: true })) {
      if (!entry.isDirectory()) continue;
      const dir = join(options.pluginsDir, entry.name);
      const index = ['index.ts', 'index.js'].map((f) => join(dir, f)).find(existsSync);
      if (index) await load(index, `plugins/${entry.name}`);
    }
  }
  if (options.nodeModulesDir && existsSync(options.nodeModulesDir)) {
    for (const dir of packageDirs(options.nodeModulesDir)) {
      const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
        name?: string;
        audiencehub?: { plugin?: string };
      };
      const entry = manifest.audiencehub?.plugin;
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
