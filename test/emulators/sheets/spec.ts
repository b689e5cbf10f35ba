/**
 * Checks HTTP traffic against a Google discovery document (specs/sheets-v4.discovery.json):
 * which method a request is (HTTP verb + path template), its path and query parameters, and
 * its body and response against the method's schemas, with ajv.
 *
 * Discovery schemas are JSON-Schema-like, not JSON Schema. The conversion:
 * - `$ref: "Name"` → `#/definitions/Name`; `type: "any"` → no constraint;
 * - `format: int32` / `uint32` → integer bounds; `int64` / `uint64` (strings in discovery) →
 *   a decimal string or an integer; `google-datetime` → `date-time`, `date` → `date`,
 *   `google-duration` → `^-?\d+(\.\d+)?s$`; `byte` and `google-fieldmask` → any string;
 *   `double` / `float` → number;
 * - objects with `properties` get `additionalProperties: false`: discovery leaves them open,
 *   but the API answers an unknown field with 400 "Invalid JSON payload received. Unknown
 *   name …", so an unknown field is a violation;
 * - `Request` (one batchUpdate request) must set exactly one kind, as the API requires.
 * Relaxed against the API (documented, not checked): `null` is accepted for any message field
 * (proto3 JSON reads it as the default); `readOnly` fields are accepted in requests (the API
 * ignores them). Stricter than the API: field names must be lowerCamelCase and enums names
 * (proto3 JSON also takes snake_case names and enum numbers; googleapis sends neither).
 */
import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { sharedFile } from '../../support/datasets.ts';

interface DiscoveryParameter {
  type: string;
  location: 'path' | 'query';
  required?: boolean;
  repeated?: boolean;
  enum?: string[];
  format?: string;
}

interface DiscoveryMethod {
  id: string;
  httpMethod: string;
  path: string;
  flatPath?: string;
  parameters?: Record<string, DiscoveryParameter>;
  request?: { $ref: string };
  response?: { $ref: string };
}

interface DiscoveryResource {
  methods?: Record<string, DiscoveryMethod>;
  resources?: Record<string, DiscoveryResource>;
}

interface DiscoverySchema {
  $ref?: string;
  type?: string;
  format?: string;
  enum?: string[];
  items?: DiscoverySchema;
  properties?: Record<string, DiscoverySchema>;
  additionalProperties?: DiscoverySchema;
}

export interface DiscoveryDocument extends DiscoveryResource {
  servicePath: string;
  parameters: Record<string, DiscoveryParameter>;
  schemas: Record<string, DiscoverySchema>;
}

/** One way a request or response departs from the discovery document. */
export interface SpecViolation {
  /** The discovery method id (`sheets.spreadsheets.values.update`), when the route matched. */
  operation?: string;
  /** `PUT /v4/spreadsheets/…` */
  request: string;
  where: 'route' | 'path' | 'query' | 'body' | 'response';
  message: string;
}

export interface SpecMatch {
  method: DiscoveryMethod;
  /** Path parameters, percent-decoded. */
  params: Record<string, string>;
}

interface Route {
  method: DiscoveryMethod;
  pattern: RegExp;
  names: string[];
  literal: number;
}

/**
 * The discovery document of the Sheets API: under AUDIENCEHUB_SPECS when set, else in the
 * nearest `shared/specs` beside the repository or one of its parents, else /work/shared/specs.
 */
export function sheetsDiscoveryFile(): string {
  const name = 'sheets-v4.discovery.json';
  const { found, candidates } = sharedFile('specs', name, 'AUDIENCEHUB_SPECS');
  if (found) return found;
  throw new Error(`${name} not found (looked in ${candidates.join(', ')}); set AUDIENCEHUB_SPECS`);
}

const loaded = new Map<string, DiscoverySpec>();

/**
 * A discovery document ready to check traffic; loaded and compiled once per file.
 *
 * @example
 * const spec = DiscoverySpec.load();
 * const { operation, violations } = spec.checkRequest('PUT', '/v4/spreadsheets/x/values/A1?valueInputOption=RAW', { values: [[1]] });
 */
export class DiscoverySpec {
  private routes: Route[] = [];
  private ajv: Ajv;
  private validators = new Map<string, ValidateFunction>();

  static load(file = sheetsDiscoveryFile()): DiscoverySpec {
    let spec = loaded.get(file);
    if (!spec) {
      spec = new DiscoverySpec(JSON.parse(readFileSync(file, 'utf8')) as DiscoveryDocument);
      loaded.set(file, spec);
    }
    return spec;
  }

  constructor(readonly doc: DiscoveryDocument) {
    const visit = (r: DiscoveryResource): void => {
      for (const m of Object.values(r.methods ?? {})) this.routes.push(route(doc, m));
      for (const child of Object.values(r.resources ?? {})) visit(child);
    };
    visit(doc);
    // Most literal text first, so `…/values:batchGet` wins over `…/values/{range}`.
    this.routes.sort((a, b) => b.literal - a.literal);
    this.ajv = new Ajv({ allErrors: true, strict: false });
    addFormats.default(this.ajv);
    const definitions: Record<string, unknown> = {};
    for (const [name, s] of Object.entries(doc.schemas)) definitions[name] = toJsonSchema(s);
    const request = definitions.Request as { minProperties?: number; maxProperties?: number };
    if (request) Object.assign(request, { minProperties: 1, maxProperties: 1 });
    this.ajv.addSchema({ $id: 'discovery', definitions });
  }

  /** The discovery method a request is, by HTTP verb and path (`/v4/spreadsheets/…`). */
  match(httpMethod: string, pathname: string): SpecMatch | undefined {
    for (const r of this.routes) {
      if (r.method.httpMethod !== httpMethod) continue;
      const m = r.pattern.exec(pathname);
      if (!m) continue;
      const params: Record<string, string> = {};
      try {
        r.names.forEach((n, i) => (params[n] = decodeURIComponent(m[i + 1]!)));
      } catch {
        continue;
      }
      return { method: r.method, params };
    }
    return undefined;
  }

  /** Checks a request: route, parameters, body. `body` is the parsed JSON, or undefined. */
  checkRequest(
    httpMethod: string,
    pathAndQuery: string,
    body: unknown,
  ): { operation?: string; violations: SpecViolation[] } {
    const url = new URL(pathAndQuery, 'http://x');
    const request = `${httpMethod} ${url.pathname}`;
    const found = this.match(httpMethod, url.pathname);
    if (!found) {
      return {
        violations: [
          { request, where: 'route', message: 'no discovery method has this verb and path' },
        ],
      };
    }
    const { method, params } = found;
    const operation = method.id;
    const violations: SpecViolation[] = [];
    const add = (where: SpecViolation['where'], message: string): void => {
      violations.push({ operation, request, where, message });
    };
    for (const [name, p] of Object.entries(method.parameters ?? {})) {
      if (p.location === 'path' && p.required && !params[name]) add('path', `${name} is required`);
      if (p.location === 'query' && p.required && !url.searchParams.has(name)) {
        add('query', `${name} is required`);
      }
    }
    for (const name of new Set(url.searchParams.keys())) {
      const p = method.parameters?.[name] ?? this.doc.parameters[name];
      if (!p || p.location !== 'query') {
        add('query', `unknown query parameter ${name}`);
        continue;
      }
      const values = url.searchParams.getAll(name);
      if (values.length > 1 && !p.repeated)
        add('query', `${name} is not repeated but given ${values.length} times`);
      for (const v of values) {
        const problem = checkParameter(p, v);
        if (problem) add('query', `${name}=${JSON.stringify(v)}: ${problem}`);
      }
    }
    if (body !== undefined) {
      if (!method.request) add('body', `${operation} takes no request body`);
      else for (const m of this.validate(method.request.$ref, body)) add('body', m);
    }
    return { operation, violations };
  }

  /** Checks a 2xx response body against the method's response schema. */
  checkResponse(operation: string, request: string, body: unknown): SpecViolation[] {
    const method = this.routes.find((r) => r.method.id === operation)?.method;
    if (!method?.response) return [];
    return this.validate(method.response.$ref, body).map((message) => ({
      operation,
      request,
      where: 'response' as const,
      message,
    }));
  }

  /** Validates a value against a named schema; returns readable messages. */
  validate(schema: string, value: unknown): string[] {
    let fn = this.validators.get(schema);
    if (!fn) {
      const compiled = this.ajv.getSchema(`discovery#/definitions/${schema}`);
      if (!compiled) return [`no schema ${schema} in the discovery document`];
      fn = compiled;
      this.validators.set(schema, fn);
    }
    if (fn(value)) return [];
    // A nullable field is `anyOf: [schema, null]`: report the schema's own complaint only.
    const noise = (e: ErrorObject): boolean =>
      e.keyword === 'anyOf' ||
      (e.keyword === 'type' && (e.params as { type?: string }).type === 'null');
    return (fn.errors ?? []).filter((e) => !noise(e)).map((e) => describe(schema, e));
  }
}

function describe(schema: string, e: ErrorObject): string {
  const at = `${schema}${e.instancePath.replaceAll('/', '.')}`;
  if (e.keyword === 'additionalProperties') {
    return `${at}: unknown field "${(e.params as { additionalProperty: string }).additionalProperty}"`;
  }
  return `${at}: ${e.message ?? e.keyword}`;
}

function route(doc: DiscoveryDocument, m: DiscoveryMethod): Route {
  const template = `/${doc.servicePath}${m.flatPath ?? m.path}`;
  const names: string[] = [];
  let literal = 0;
  let source = '^';
  for (const part of template.split(/(\{\+?[^}]+\})/)) {
    const p = /^\{(\+?)([^}]+)\}$/.exec(part);
    if (p) {
      names.push(p[2]!);
      source += p[1] ? '(.+)' : '([^/]+)';
    } else {
      literal += part.length;
      source += part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    }
  }
  return { method: m, pattern: new RegExp(`${source}$`), names, literal };
}

function checkParameter(p: DiscoveryParameter, v: string): string | undefined {
  if (p.enum && !p.enum.includes(v)) return `not one of ${p.enum.join(', ')}`;
  if (p.type === 'boolean' && v !== 'true' && v !== 'false') return 'not a boolean';
  if (p.type === 'integer') {
    if (!/^-?\d+$/.test(v)) return 'not an integer';
    const n = Number(v);
    if (p.format === 'int32' && (n < -(2 ** 31) || n >= 2 ** 31)) return 'outside int32';
  }
  return undefined;
}

function nullable(schema: Record<string, unknown>): Record<string, unknown> {
  return { anyOf: [schema, { type: 'null' }] };
}

/** A discovery schema as JSON Schema (see the module comment for what changes). */
export function toJsonSchema(s: DiscoverySchema): Record<string, unknown> {
  if (s.$ref) return { $ref: `discovery#/definitions/${s.$ref}` };
  switch (s.type) {
    case 'object': {
      const out: Record<string, unknown> = { type: 'object' };
      if (s.properties) {
        const props: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(s.properties)) props[k] = nullable(toJsonSchema(v));
        out.properties = props;
        out.additionalProperties = s.additionalProperties
          ? toJsonSchema(s.additionalProperties)
          : false;
      } else if (s.additionalProperties) {
        out.additionalProperties = toJsonSchema(s.additionalProperties);
      }
      return out;
    }
    case 'array':
      return { type: 'array', items: s.items ? toJsonSchema(s.items) : {} };
    case 'string':
      if (s.format === 'int64' || s.format === 'uint64') {
        return { anyOf: [{ type: 'string', pattern: '^-?[0-9]+$' }, { type: 'integer' }] };
      }
      if (s.enum) return { type: 'string', enum: s.enum };
      if (s.format === 'google-datetime') return { type: 'string', format: 'date-time' };
      if (s.format === 'date') return { type: 'string', format: 'date' };
      if (s.format === 'google-duration') return { type: 'string', pattern: '^-?\\d+(\\.\\d+)?s$' };
      return { type: 'string' };
    case 'integer':
      if (s.format === 'int32')
        return { type: 'integer', minimum: -(2 ** 31), maximum: 2 ** 31 - 1 };
      if (s.format === 'uint32') return { type: 'integer', minimum: 0, maximum: 2 ** 32 - 1 };
      return { type: 'integer' };
    case 'number':
      return { type: 'number' };
    case 'boolean':
      return { type: 'boolean' };
    default:
      return {};
  }
}
