/**
 * Checks Mailchimp traffic against Mailchimp's own API description
 * (../shared/specs/mailchimp-marketing.json: OpenAPI 3.0.1, v3.0.76, swagger-codegen's conversion
 * of Mailchimp's spec/marketing.json) with ajv: a request's query parameters and JSON body, and
 * a response's status, content type and body, against the operation the path and method name.
 *
 * Turn it on for an emulator with `startMailchimpEmulator({ validate: true })` and assert that
 * `emulator.violations` is empty; or use `mailchimpSpec()` directly.
 *
 * How the document is read, and what is relaxed (each for a reason):
 * - component names contain spaces ("Add List Members"), which are not valid in a JSON pointer
 *   inside a URI; they are renamed (spaces and other characters to `_`) and every `$ref` rewritten.
 * - `merge_fields` values are declared `{"type":"object"}`: the converter's reading of Mailchimp's
 *   untyped values. Real values are strings, numbers or address objects, so any value is allowed.
 * - `date-time` also accepts "": Mailchimp sends `"timestamp_signup": ""` (and other unknown
 *   times) as empty strings, as recorded traffic shows.
 * - formats `float` and `Promo date-time` (non-standard) are not checked.
 * - strict objects (on by default): every object schema that lists `properties` and says nothing
 *   of `additionalProperties` is closed, so a request field the API does not know (a typo in a
 *   plugin) or a response field Mailchimp does not send (an emulator invention) is reported.
 *   Fields missing from the description are added by name: `tags` on a member to add (batch
 *   and POST) and `field` / `field_message` on batch-subscribe errors (both newer than 3.0.76),
 *   and `errors[{field, message}]` on the Problem Detail Document (documented on the errors page
 *   and present in recorded traffic, but absent from the schema).
 * - readOnly is not enforced on requests (Mailchimp ignores read-only fields it is sent).
 * - `_` in the query (the SDK's cache buster when `cache` is false) is allowed.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';

const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default;

export interface SpecViolation {
  method: string;
  /** The path as received, after `/3.0`. */
  path: string;
  where: 'request' | 'response';
  /** The spec's operationId, when the path and method matched one. */
  operation?: string;
  status?: number;
  errors: string[];
}

export interface SpecRequest {
  method: string;
  /** Path after `/3.0`, e.g. `/lists/abc/members`. */
  path: string;
  query: URLSearchParams;
  body: unknown;
}

export interface SpecResponse {
  method: string;
  path: string;
  status: number;
  contentType: string | undefined;
  body: unknown;
}

export interface MailchimpSpec {
  /** Violations of the request, or [] when it conforms. */
  checkRequest(request: SpecRequest): SpecViolation[];
  /** Violations of the response, or [] when it conforms. */
  checkResponse(response: SpecResponse): SpecViolation[];
}

export interface MailchimpSpecOptions {
  /** Close object schemas (see above). Default true. */
  strictObjects?: boolean;
  /** The spec file; found beside the repository by default (see `specFile`). */
  file?: string;
}

/**
 * The saved spec: AUDIENCEHUB_MAILCHIMP_SPEC when set, else the nearest `shared/specs` beside
 * the repository or one of its parents (the workplace keeps it at ../shared), else
 * /work/shared/specs.
 */
export function specFile(): string {
  if (process.env.AUDIENCEHUB_MAILCHIMP_SPEC) return process.env.AUDIENCEHUB_MAILCHIMP_SPEC;
  const candidates: string[] = [];
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    candidates.push(join(dir, '..', 'shared', 'specs', 'mailchimp-marketing.json'));
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  candidates.push('/work/shared/specs/mailchimp-marketing.json');
  return candidates.find((path) => existsSync(path)) ?? candidates.at(-1)!;
}

type Schema = Record<string, unknown>;

interface Parameter {
  name: string;
  in: 'path' | 'query' | 'header' | 'cookie';
  required?: boolean;
  schema?: Schema;
}

interface MediaType {
  schema?: Schema;
}

interface Operation {
  operationId?: string;
  parameters?: Parameter[];
  requestBody?: { required?: boolean; content?: Record<string, MediaType> };
  responses: Record<string, { content?: Record<string, MediaType> }>;
}

interface Template {
  pattern: RegExp;
  literals: number;
  item: Record<string, Operation>;
}

/** Fields Mailchimp's API has gained since the saved 3.0.76 description. */
const ADDED_PROPERTIES: Record<string, Record<string, Schema>> = {
  'Add List Members': { tags: { type: 'array', items: { type: 'string' } } },
  'Add List Members_1': { tags: { type: 'array', items: { type: 'string' } } },
  // Validation failures carry `errors: [{field, message}]` (mailchimp.com/developer/marketing/docs/errors/).
  'Problem Detail Document': {
    errors: {
      type: 'array',
      items: {
        type: 'object',
        properties: { field: { type: 'string' }, message: { type: 'string' } },
      },
    },
  },
  'Batch update List members_errors': {
    field: { type: 'string' },
    field_message: { type: 'string' },
  },
};

const cache = new Map<string, MailchimpSpec>();

/** The spec checker, loaded once per process and option set. */
export function mailchimpSpec(options: MailchimpSpecOptions = {}): MailchimpSpec {
  const strict = options.strictObjects ?? true;
  const file = options.file ?? specFile();
  const key = `${file}:${strict}`;
  let spec = cache.get(key);
  if (!spec) cache.set(key, (spec = loadSpec(file, strict)));
  return spec;
}

const SCHEMA_PREFIX = '#/components/schemas/';

function loadSpec(file: string, strict: boolean): MailchimpSpec {
  const document = JSON.parse(readFileSync(file, 'utf8')) as {
    paths: Record<string, Record<string, Operation>>;
    components: { schemas: Record<string, Schema> };
  };
  const names = new Map<string, string>();
  const used = new Set<string>();
  for (const name of Object.keys(document.components.schemas)) {
    let safe = name.replace(/[^A-Za-z0-9_.-]/g, '_');
    while (used.has(safe)) safe += '_';
    used.add(safe);
    names.set(name, safe);
  }
  const refOf = (ref: string) => {
    const name = ref.startsWith(SCHEMA_PREFIX) ? ref.slice(SCHEMA_PREFIX.length) : undefined;
    const safe = name === undefined ? undefined : names.get(name);
    if (!safe) throw new Error(`unresolvable $ref ${ref} in ${file}`);
    return `mailchimp#/definitions/${safe}`;
  };
  const definitions: Record<string, unknown> = {};
  for (const [name, schema] of Object.entries(document.components.schemas)) {
    const extra = ADDED_PROPERTIES[name];
    const patched = extra
      ? { ...schema, properties: { ...(schema.properties as Schema), ...extra } }
      : schema;
    definitions[names.get(name)!] = convert(patched, refOf, strict, false);
  }

  const ajv = new Ajv({ strict: false, allErrors: true, validateSchema: false });
  addFormats(ajv);
  // Mailchimp sends "" for times it does not know.
  const dateTime = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$/i;
  ajv.addFormat('date-time', (value: string) => value === '' || dateTime.test(value));
  ajv.addFormat('float', true);
  ajv.addFormat('Promo date-time', true);
  ajv.addSchema({ $id: 'mailchimp', definitions });

  const templates: Template[] = Object.entries(document.paths)
    .map(([path, item]) => ({
      pattern: new RegExp(
        '^' +
          path
            .split('/')
            .map((part) =>
              /^\{.+\}$/.test(part) ? '[^/]+' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'),
            )
            .join('/') +
          '$',
      ),
      literals: path.split('/').filter((part) => part && !part.startsWith('{')).length,
      item,
    }))
    .sort((a, b) => b.literals - a.literals);

  const validators = new Map<string, ValidateFunction>();
  const validator = (id: string, schema: Schema): ValidateFunction => {
    let validate = validators.get(id);
    if (!validate) {
      validate = ajv.compile(convert(schema, refOf, strict, false));
      validators.set(id, validate);
    }
    return validate;
  };

  const find = (method: string, path: string) => {
    const template = templates.find((candidate) => candidate.pattern.test(path));
    const operation = template?.item[method.toLowerCase()];
    return { template, operation };
  };

  return {
    checkRequest({ method, path, query, body }) {
      const { template, operation } = find(method, path);
      const violation = (errors: string[]): SpecViolation[] =>
        errors.length
          ? [{ method, path, where: 'request', operation: operation?.operationId, errors }]
          : [];
      if (!template) return violation([`no path of the spec matches ${path}`]);
      if (!operation) return violation([`the spec has no ${method} for ${path}`]);
      const id = operation.operationId ?? `${method} ${path}`;
      const errors: string[] = [];
      const declared = new Map(
        (operation.parameters ?? []).filter((p) => p.in === 'query').map((p) => [p.name, p]),
      );
      for (const name of new Set(query.keys())) {
        if (name === '_') continue;
        const parameter = declared.get(name);
        if (!parameter) {
          errors.push(`query parameter ${name} is not in the spec`);
          continue;
        }
        const schema = parameter.schema ?? {};
        const value = coerce(query.get(name)!, schema);
        const validate = validator(`${id}:query:${name}`, schema);
        if (!validate(value)) errors.push(...describe(validate.errors, `query ${name}`));
      }
      for (const parameter of declared.values()) {
        if (parameter.required && !query.has(parameter.name)) {
          errors.push(`required query parameter ${parameter.name} is missing`);
        }
      }
      const content = operation.requestBody?.content;
      if (content) {
        const schema = content['application/json']?.schema;
        if (body === undefined) {
          if (operation.requestBody?.required) errors.push('the request body is missing');
        } else if (schema) {
          const validate = validator(`${id}:request`, schema);
          if (!validate(body)) errors.push(...describe(validate.errors, 'body'));
        }
      } else if (body !== undefined) {
        errors.push('the operation takes no request body');
      }
      return violation(errors);
    },

    checkResponse({ method, path, status, contentType, body }) {
      const { operation } = find(method, path);
      if (!operation) return []; // reported on the request
      const id = operation.operationId ?? `${method} ${path}`;
      const errors: string[] = [];
      const declared = operation.responses[String(status)];
      const response = declared ?? operation.responses.default;
      if (!response) errors.push(`status ${status} is not a response of the operation`);
      else if (!response.content || Object.keys(response.content).length === 0) {
        if (body !== undefined) errors.push(`status ${status} has no body in the spec`);
      } else {
        const mime = (contentType ?? '').split(';')[0]!.trim();
        const media = response.content[mime];
        if (!media) {
          errors.push(
            `content type ${mime || '(none)'} is not one of ${Object.keys(response.content).join(', ')}`,
          );
        } else if (media.schema) {
          // Error statuses are only described by `default` (the Problem Detail Document).
          if (!declared && status < 400) errors.push(`status ${status} is not a declared success`);
          const validate = validator(
            `${id}:response:${declared ? status : 'default'}`,
            media.schema,
          );
          if (!validate(body)) errors.push(...describe(validate.errors, 'body'));
        }
      }
      return errors.length
        ? [{ method, path, where: 'response', operation: operation.operationId, status, errors }]
        : [];
    },
  };
}

/** An OpenAPI schema as ajv reads it: refs rewritten, extensions dropped, relaxations applied. */
function convert(
  schema: unknown,
  refOf: (ref: string) => string,
  strict: boolean,
  inAllOf: boolean,
): Schema {
  if (Array.isArray(schema)) {
    return schema.map((item) => convert(item, refOf, strict, inAllOf)) as unknown as Schema;
  }
  if (typeof schema !== 'object' || schema === null) return schema as Schema;
  const source = schema as Schema;
  const out: Schema = {};
  for (const [key, value] of Object.entries(source)) {
    if (key === 'example' || key.startsWith('x-')) continue;
    if (key === '$ref' && typeof value === 'string') out.$ref = refOf(value);
    else if (key === 'properties' && typeof value === 'object' && value !== null) {
      const properties: Schema = {};
      for (const [name, property] of Object.entries(value as Schema)) {
        properties[name] =
          name === 'merge_fields'
            ? { ...convert(property, refOf, strict, false), additionalProperties: {} }
            : convert(property, refOf, strict, false);
      }
      out.properties = properties;
    } else if (key === 'allOf') out.allOf = convert(value, refOf, strict, true);
    else out[key] = convert(value, refOf, strict, false);
  }
  if (
    strict &&
    !inAllOf &&
    !source.allOf &&
    source.properties &&
    source.additionalProperties === undefined
  ) {
    out.additionalProperties = false;
  }
  return out;
}

/** A query string value as the parameter's schema types it (`form` style, not exploded for arrays). */
function coerce(value: string, schema: Schema): unknown {
  switch (schema.type) {
    case 'integer':
    case 'number':
      return value.trim() !== '' && Number.isFinite(Number(value)) ? Number(value) : value;
    case 'boolean':
      return value === 'true' ? true : value === 'false' ? false : value;
    case 'array':
      return value.split(',');
    default:
      return value;
  }
}

function describe(errors: ErrorObject[] | null | undefined, where: string): string[] {
  return (errors ?? []).map((error) => {
    const at = `${where}${error.instancePath}`;
    if (error.keyword === 'additionalProperties') {
      return `${at} has ${String(error.params.additionalProperty)}, which the spec does not define`;
    }
    return `${at} ${error.message ?? error.keyword}${
      error.keyword === 'enum' ? ` (${(error.params.allowedValues as unknown[]).join(', ')})` : ''
    }`;
  });
}
