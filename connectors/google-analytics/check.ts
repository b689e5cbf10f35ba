/**
 * `check`: for a property, that the credentials may read it, that it has the user dimension and
 * the revenue metric (getMetadata), and that a report with them runs (one row, a token or two);
 * for export files, that there is at least one and its first event reads.
 */
import {
  ConfigError,
  type CheckResult,
  type PluginContext,
  type SourceCheck,
} from 'audiencehub/sdk';
import { call, propertyName, type GaConfig } from './client.ts';
import { parseExportLine, toEventRecord } from './export-events.ts';
import { listExportFiles } from './export-files.ts';
import { probeRequest } from './report.ts';
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { createGunzip } from 'node:zlib';

async function checkProperty(config: GaConfig, ctx: PluginContext): Promise<void> {
  const name = propertyName(config);
  const meta = await call(config, ctx, 'read the property metadata', (ga, options) =>
    ga.properties.getMetadata({ name: `${name}/metadata` }, options),
  );
  const dimensions = meta.dimensions ?? [];
  if (!dimensions.some((d) => d.apiName === config.userIdDimension)) {
    const custom = dimensions
      .map((d) => d.apiName ?? '')
      .filter((n) => /^custom(User|Event):/.test(n));
    throw new ConfigError(
      `userIdDimension: ${name} has no custom dimension ${config.userIdDimension} (it has ${custom.join(', ') || 'none'}). Register the user property as a custom dimension in Admin → Custom definitions.`,
    );
  }
  if (config.revenueMetric !== 'none') {
    const metric = meta.metrics?.find((m) => m.apiName === config.revenueMetric);
    if (!metric) {
      throw new ConfigError(`revenueMetric: ${name} has no metric ${config.revenueMetric}.`);
    }
    if (metric.blockedReasons?.includes('NO_REVENUE_METRICS')) {
      ctx.log.warn(
        `Google Analytics: revenue metrics are blocked for these credentials on ${name}; revenue will read 0.`,
      );
    }
  }
  await call(config, ctx, 'run a report', (ga, options) =>
    ga.properties.runReport({ property: name, requestBody: probeRequest(config) }, options),
  );
}

/** The first non-empty line of a file (gzipped or not), or undefined. */
async function firstLine(path: string, gzip: boolean): Promise<string | undefined> {
  const raw = createReadStream(path);
  const source = gzip ? raw.pipe(createGunzip()) : raw;
  if (gzip) raw.on('error', (e) => source.destroy(e));
  const lines = createInterface({ input: source, crlfDelay: Infinity });
  try {
    for await (const line of lines) if (line.trim() !== '') return line;
    return undefined;
  } finally {
    lines.close();
    raw.destroy();
    source.destroy();
  }
}

async function checkFiles(files: string): Promise<void> {
  const list = await listExportFiles(files);
  if (list.length === 0) {
    throw new ConfigError(`files: no .ndjson, .jsonl or .json file (gzipped or not) in ${files}`);
  }
  for (const file of list) {
    let line: string | undefined;
    try {
      line = await firstLine(file.path, file.gzip);
    } catch (error) {
      throw new ConfigError(
        `files: ${file.name} cannot be read (${(error as { code?: string }).code ?? (error as Error).message})`,
      );
    }
    if (line === undefined) continue;
    let parsed: unknown;
    try {
      parsed = parseExportLine(line);
    } catch {
      throw new ConfigError(`files: the first line of ${file.name} is not JSON`);
    }
    const result = toEventRecord(parsed);
    if ('error' in result) {
      throw new ConfigError(
        `files: the first line of ${file.name} is not a GA4 export event (${result.error})`,
      );
    }
    return;
  }
}

export const check: SourceCheck<GaConfig> = async ({ config }, ctx) => {
  try {
    if (config.propertyId) await checkProperty(config, ctx);
    if (config.files) await checkFiles(config.files);
    return { ok: true } satisfies CheckResult;
  } catch (error) {
    return { ok: false, reason: error instanceof Error ? error.message : String(error) };
  }
};
