/**
 * Reading config as code: every `*.yaml`, `*.yml` and `*.json` file of a folder, each declaring
 * any of `sources`, `segments`, `destinations` and `syncs` as maps from a key to a definition.
 * Keys are unique across the folder; they are how `apply` recognises an object it made before.
 *
 * Values may reference the environment as `${NAME}`, or `${NAME:-default}` for a value used
 * when the variable is unset or empty (`$${` writes a literal `${`); a secret
 * field of a plugin or connector must be nothing but such a reference, so no credential is ever
 * written in a file.
 *
 * @example
 * const config = loadConfigDir('config', process.env); // throws ConfigFileError listing every problem
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join, relative } from 'node:path';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { z } from 'zod';

/** A key: lower case letters, digits and dashes, like a file name. */
export const Key = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'keys use lower case letters, digits and dashes');

const Name = z.string().trim().min(1).max(100);
const Cron = z.string().trim().min(1).max(100);

export const SegmentSpec = z
  .object({
    /** Shown in the API and UI (default: the key). */
    name: Name.optional(),
    description: z.string().max(2000).default(''),
    type: z.enum(['dynamic', 'static']).default('dynamic'),
    /** Config-managed segments are shared unless said otherwise: they are there to be synced. */
    visibility: z.enum(['private', 'shared']).default('shared'),
    /** A built-in template's key (GET /api/segments/templates); its rules unless `rules` is given. */
    template: z.string().min(1).max(100).optional(),
    rules: z.unknown().optional(),
    schedule: Cron.nullable().default(null),
  })
  .strict()
  .refine((s) => s.rules !== undefined || s.template !== undefined, {
    message: 'a segment needs rules or a template',
    path: ['rules'],
  });
export type SegmentSpec = z.infer<typeof SegmentSpec>;

export const DestinationSpec = z
  .object({
    name: Name.optional(),
    plugin: z.string().min(1).max(50),
    config: z.record(z.string(), z.unknown()).default({}),
  })
  .strict();
export type DestinationSpec = z.infer<typeof DestinationSpec>;

export const SyncSpec = z
  .object({
    /** The key of a segment in this config. */
    segment: Key,
    /** The key of a destination in this config. */
    destination: Key,
    mode: z.enum(['mirror', 'upsert']).default('mirror'),
    mapping: z.array(z.object({ from: z.string(), to: z.string() }).strict()).min(1),
    schedule: Cron.nullable().default(null),
    autoSync: z.boolean().default(false),
  })
  .strict();
export type SyncSpec = z.infer<typeof SyncSpec>;

export const SourceSpec = z
  .object({
    name: Name.optional(),
    connector: z.string().min(1).max(50),
    config: z.record(z.string(), z.unknown()).default({}),
    schedule: Cron.nullable().default(null),
    /** Alert when no run has succeeded for this long, e.g. `25h`, `90m`, `2d`. */
    expectedInterval: z
      .string()
      .regex(/^\d+[mhd]$/, 'a number and m, h or d, e.g. 25h')
      .nullable()
      .default(null),
    alertWebhook: z.url().nullable().default(null),
    /** The share of rejected rows (0–1) above which a run fails. */
    maxRejectShare: z.number().min(0).max(1).optional(),
    /** Per stream: its mapping onto profiles and events (docs/imports.md). */
    streams: z
      .record(
        z.string().min(1),
        z.object({ mapping: z.unknown(), enabled: z.boolean().default(true) }).strict(),
      )
      .default({}),
  })
  .strict();
export type SourceSpec = z.infer<typeof SourceSpec>;

export const ConfigDocument = z
  .object({
    sources: z.record(z.string(), SourceSpec).optional(),
    segments: z.record(z.string(), SegmentSpec).optional(),
    destinations: z.record(z.string(), DestinationSpec).optional(),
    syncs: z.record(z.string(), SyncSpec).optional(),
  })
  .strict();

export const KINDS = ['sources', 'destinations', 'segments', 'syncs'] as const;
export type Kind = (typeof KINDS)[number];

/** One declared object, with where it was declared. */
export interface Declared<T> {
  key: string;
  spec: T;
  /** `config/pipeline.yaml`, for messages. */
  file: string;
}

export interface LoadedConfig {
  dir: string;
  files: string[];
  sources: Declared<SourceSpec>[];
  segments: Declared<SegmentSpec>[];
  destinations: Declared<DestinationSpec>[];
  syncs: Declared<SyncSpec>[];
}

/** Everything wrong with a config folder, each problem with its file and path. */
export class ConfigFileError extends Error {
  constructor(readonly problems: string[]) {
    super(
      problems.length === 1
        ? problems[0]!
        : `${problems.length} problems:\n${problems.map((p) => `  - ${p}`).join('\n')}`,
    );
    this.name = 'ConfigFileError';
  }
}

const REFERENCE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;
/** A value that is one environment reference and nothing else. */
export const isReference = (value: unknown) =>
  typeof value === 'string' && /^\$\{[A-Za-z_][A-Za-z0-9_]*\}$/.test(value);

/**
 * Read and check a config folder (or a single file). References to the environment are
 * resolved; a missing variable is a problem naming the file and the path.
 */
export function loadConfigDir(path: string, env: NodeJS.ProcessEnv): LoadedConfig {
  const problems: string[] = [];
  const files = configFiles(path);
  const loaded: LoadedConfig = {
    dir: path,
    files,
    sources: [],
    segments: [],
    destinations: [],
    syncs: [],
  };
  const seen = new Map<string, string>();
  for (const file of files) {
    const shown = relative(process.cwd(), file) || file;
    let document: unknown;
    try {
      const text = readFileSync(file, 'utf8');
      document = extname(file) === '.json' ? JSON.parse(text) : parseYaml(text);
    } catch (error) {
      const where = error instanceof YAMLParseError ? ` (line ${error.linePos?.[0].line})` : '';
      problems.push(`${shown}${where}: ${(error as Error).message.split('\n')[0]}`);
      continue;
    }
    if (document === null || document === undefined) continue;
    for (const kind of KINDS) {
      const declared = (document as Record<string, unknown>)[kind];
      if (!declared || typeof declared !== 'object') continue;
      for (const key of Object.keys(declared).filter((k) => !Key.safeParse(k).success)) {
        problems.push(`${shown}: ${kind}.${key}: keys use lower case letters, digits and dashes`);
      }
    }
    const parsed = ConfigDocument.safeParse(document);
    if (!parsed.success) {
      for (const issue of parsed.error.issues) {
        problems.push(`${shown}: ${issue.path.join('.') || '(top level)'}: ${issue.message}`);
      }
      continue;
    }
    for (const kind of KINDS) {
      for (const [key, spec] of Object.entries(parsed.data[kind] ?? {})) {
        const id = `${kind}.${key}`;
        if (!Key.safeParse(key).success) continue;
        const other = seen.get(id);
        if (other) {
          problems.push(`${shown}: ${id} is declared in ${other} too`);
          continue;
        }
        seen.set(id, shown);
        const resolved = resolveReferences(spec, env, `${shown}: ${id}`, problems);
        (loaded[kind] as Declared<unknown>[]).push({ key, spec: resolved, file: shown });
      }
    }
  }
  for (const sync of loaded.syncs) {
    const where = `${sync.file}: syncs.${sync.key}`;
    if (!loaded.segments.some((s) => s.key === sync.spec.segment)) {
      problems.push(`${where}.segment: no segment "${sync.spec.segment}" in this config`);
    }
    if (!loaded.destinations.some((d) => d.key === sync.spec.destination)) {
      problems.push(
        `${where}.destination: no destination "${sync.spec.destination}" in this config`,
      );
    }
  }
  if (problems.length > 0) throw new ConfigFileError(problems);
  return loaded;
}

/** The config files of a folder, sorted; a file path stands for itself. */
function configFiles(path: string): string[] {
  let stat;
  try {
    stat = statSync(path);
  } catch {
    throw new ConfigFileError([`${path}: no such file or folder`]);
  }
  if (stat.isFile()) return [path];
  return readdirSync(path)
    .filter((name) => ['.yaml', '.yml', '.json'].includes(extname(name)) && !name.startsWith('.'))
    .sort()
    .map((name) => join(path, name));
}

/**
 * Replace `${NAME}` in every string by the variable's value. Secret fields are checked later,
 * against the raw text, by `checkSecretReferences`; here the raw text is kept alongside.
 */
function resolveReferences<T>(
  value: T,
  env: NodeJS.ProcessEnv,
  where: string,
  problems: string[],
): T {
  const walk = (v: unknown, path: string): unknown => {
    if (typeof v === 'string') {
      return v
        .replace(
          REFERENCE,
          (whole, name: string, fallback: string | undefined, offset: number, text: string) => {
            if (offset > 0 && text[offset - 1] === '$') return whole;
            const found = env[name] || fallback;
            if (found === undefined) {
              problems.push(`${where}${path}: the environment variable ${name} is not set`);
              return '';
            }
            return found;
          },
        )
        .replaceAll('$${', '${');
    }
    if (Array.isArray(v)) return v.map((item, i) => walk(item, `${path}[${i}]`));
    if (v && typeof v === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, item] of Object.entries(v)) out[k] = walk(item, `${path}.${k}`);
      // The raw text of each string, so secret fields can be checked to be references.
      Object.defineProperty(out, RAW, { value: v, enumerable: false });
      return out;
    }
    return v;
  };
  return walk(value, '') as T;
}

const RAW = Symbol('raw');

/**
 * Problems with the secret fields of a plugin's or connector's config: each must be written as
 * an environment reference, never as the value itself.
 */
export function secretProblems(
  config: Record<string, unknown>,
  secretKeys: string[],
  where: string,
): string[] {
  const raw = ((config as Record<symbol, unknown>)[RAW] ?? {}) as Record<string, unknown>;
  return secretKeys
    .filter((key) => key in raw && !isReference(raw[key]))
    .map(
      (key) =>
        `${where}.config.${key} is a secret: write it as an environment reference such as \${${envName(key)}}, never the value`,
    );
}

const envName = (key: string) =>
  key
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .replace(/[^A-Za-z0-9]+/g, '_')
    .toUpperCase();
