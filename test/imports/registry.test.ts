import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineSource } from '../../src/sdk/source.ts';
import {
  createConnectorRegistry,
  createRegistry,
  loadConnectors,
  loadPlugins,
} from '../../src/sync/registry.ts';

const connector = (overrides: Record<string, unknown> = {}) => ({
  ...defineSource({
    name: 'acme-crm',
    title: 'Acme CRM',
    config: z.object({ url: z.string() }),
    limits: { requestsPerSecond: 4, concurrency: 2 },
    async check() {
      return { ok: true };
    },
    async discover() {
      return [];
    },
    async *read() {},
  }),
  ...overrides,
});

describe('the connector registry', () => {
  it('registers a well-formed connector and lists it by name', () => {
    const registry = createConnectorRegistry();
    const registered = registry.register(connector());
    expect(registry.get('acme-crm')).toBe(registered);
    expect(registry.list().map((c) => c.name)).toEqual(['acme-crm']);
  });

  it.each([
    [{ name: 'Acme_CRM' }, /"Acme_CRM" is not kebab-case/],
    [{ title: '' }, /connector "acme-crm": has no title/],
    [{ config: { type: 'object' } }, /config is not a zod schema/],
    [{ discover: undefined }, /has no discover\(\) method/],
    [{ read: 'yes' }, /has no read\(\) method/],
    [{ limits: { requestsPerSecond: 0 } }, /requestsPerSecond must be positive/],
    [{ limits: { concurrency: 1.5 } }, /concurrency must be a whole number/],
    [{ uploads: 'yes' }, /uploads must be true or false/],
  ])('refuses %o', (overrides, message) => {
    expect(() => createConnectorRegistry().register(connector(overrides), 'connectors/x')).toThrow(
      message,
    );
  });

  it('refuses a second connector with a taken name, naming where it came from', () => {
    const registry = createConnectorRegistry();
    registry.register(connector());
    expect(() => registry.register(connector(), 'package acme')).toThrow(
      'package acme: a connector named "acme-crm" is already registered',
    );
  });

  it('keeps destination plugins and connectors apart: a plugin is not a connector', () => {
    const plugin = {
      name: 'acme',
      title: 'Acme',
      config: z.object({}),
      limits: { batchSize: 10, concurrency: 1 },
      check: async () => ({ ok: true }),
      fields: async () => [],
      sync: async () => [],
    };
    expect(createRegistry().register(plugin).name).toBe('acme');
    expect(() => createConnectorRegistry().register(plugin, 'plugins/acme')).toThrow(
      'connector "acme": has no discover() method',
    );
  });

  it('loads connectors from a folder and from packages that declare one', async () => {
    const root = mkdtempSync(join(tmpdir(), 'ah-connectors-'));
    const source = `export default {
      name: 'NAME', title: 'T', config: { safeParse: () => ({ success: true }) },
      check: async () => ({ ok: true }), discover: async () => [], read: async function* () {},
    };\n`;
    mkdirSync(join(root, 'connectors', 'files'), { recursive: true });
    writeFileSync(join(root, 'connectors', 'files', 'index.js'), source.replace('NAME', 'files'));
    mkdirSync(join(root, 'connectors', 'empty-folder'));
    const pkg = join(root, 'node_modules', '@acme', 'erp');
    mkdirSync(join(pkg, 'dist'), { recursive: true });
    writeFileSync(
      join(pkg, 'package.json'),
      JSON.stringify({ name: '@acme/erp', audiencehub: { connector: './dist/entry.js' } }),
    );
    writeFileSync(join(pkg, 'dist', 'entry.js'), source.replace('NAME', 'acme-erp'));
    // A destination plugin package is not picked up as a connector.
    const other = join(root, 'node_modules', 'some-plugin');
    mkdirSync(other, { recursive: true });
    writeFileSync(
      join(other, 'package.json'),
      JSON.stringify({ name: 'some-plugin', audiencehub: { plugin: './index.js' } }),
    );

    const registry = createConnectorRegistry();
    const loaded = await loadConnectors(registry, {
      connectorsDir: join(root, 'connectors'),
      nodeModulesDir: join(root, 'node_modules'),
    });
    expect(loaded.map((c) => c.name)).toEqual(['files', 'acme-erp']);
    expect(registry.list().map((c) => c.name)).toEqual(['acme-erp', 'files']);
    // And the plugin loader still reads only `audiencehub.plugin`.
    const plugins = createRegistry();
    await expect(
      loadPlugins(plugins, { nodeModulesDir: join(root, 'node_modules') }),
    ).rejects.toThrow(/package some-plugin/);
  });

  it('names the package whose entry is not a connector', async () => {
    const root = mkdtempSync(join(tmpdir(), 'ah-connectors-'));
    const pkg = join(root, 'node_modules', 'broken');
    mkdirSync(pkg, { recursive: true });
    writeFileSync(
      join(pkg, 'package.json'),
      JSON.stringify({ name: 'broken', audiencehub: { connector: './index.js' } }),
    );
    writeFileSync(join(pkg, 'index.js'), 'export default 42;\n');
    await expect(
      loadConnectors(createConnectorRegistry(), { nodeModulesDir: join(root, 'node_modules') }),
    ).rejects.toThrow('package broken: does not export a connector object');
  });
});
