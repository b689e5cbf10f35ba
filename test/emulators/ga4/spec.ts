/**
 * The Analytics Data API's discovery document (specs/analyticsdata-v1beta.discovery.json),
 * checked with the generic discovery checker the Sheets emulator uses: routes by verb and path,
 * query parameters, request bodies and 2xx responses against the method's schemas (unknown
 * fields are violations: the API answers them with 400 "Unknown name").
 *
 * The Data API's paths are reserved expansions (`v1beta/{+property}:runReport`, the parameter
 * holding `properties/123`), which the checker matches by `flatPath`
 * (`v1beta/properties/{propertiesId}:runReport`). So each method's `{+…}` path parameter is
 * replaced by the flatPath's own parameters before the document is handed to it.
 */
import { readFileSync } from 'node:fs';
import { DiscoverySpec, type DiscoveryDocument } from '../sheets/spec.ts';
import { sharedFile } from '../../support/datasets.ts';

export { DiscoverySpec, type SpecViolation } from '../sheets/spec.ts';

const NAME = 'analyticsdata-v1beta.discovery.json';

/**
 * Where the discovery document is: under AUDIENCEHUB_SPECS when set, else in the nearest
 * `shared/specs` beside the repository or one of its parents, else /work/shared/specs.
 */
export function analyticsDataDiscoveryFile(): string {
  const { found, candidates } = sharedFile('specs', NAME, 'AUDIENCEHUB_SPECS');
  if (found) return found;
  throw new Error(`${NAME} not found (looked in ${candidates.join(', ')}); set AUDIENCEHUB_SPECS`);
}

interface Method {
  path: string;
  flatPath?: string;
  parameters?: Record<string, { location: string; type: string; required?: boolean }>;
}
interface Resource {
  methods?: Record<string, Method>;
  resources?: Record<string, Resource>;
}

/** Path parameters as the flatPath names them (see the module comment). */
function flatten(resource: Resource): void {
  for (const m of Object.values(resource.methods ?? {})) {
    if (!m.flatPath) continue;
    const parameters = Object.fromEntries(
      Object.entries(m.parameters ?? {}).filter(([, p]) => p.location !== 'path'),
    );
    for (const [, name] of m.flatPath.matchAll(/\{([^}+]+)\}/g)) {
      parameters[name!] = { location: 'path', type: 'string', required: true };
    }
    m.parameters = parameters;
    m.path = m.flatPath;
  }
  for (const child of Object.values(resource.resources ?? {})) flatten(child);
}

const loaded = new Map<string, DiscoverySpec>();

/** The Analytics Data API v1beta discovery document, loaded once per file. */
export function analyticsDataSpec(file = analyticsDataDiscoveryFile()): DiscoverySpec {
  let spec = loaded.get(file);
  if (!spec) {
    const doc = JSON.parse(readFileSync(file, 'utf8')) as DiscoveryDocument;
    flatten(doc as unknown as Resource);
    spec = new DiscoverySpec(doc);
    loaded.set(file, spec);
  }
  return spec;
}
