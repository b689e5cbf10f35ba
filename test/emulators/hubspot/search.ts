/**
 * `POST /crm/v3/objects/contacts/search` as HubSpot documents it
 * (https://developers.hubspot.com/docs/api/crm/search):
 * - `filterGroups` are ORed, the `filters` of a group ANDed; at most 5 groups of at most 6
 *   filters, 18 filters in all. Operators `EQ NEQ LT LTE GT GTE BETWEEN IN NOT_IN HAS_PROPERTY
 *   NOT_HAS_PROPERTY CONTAINS_TOKEN NOT_CONTAINS_TOKEN`; `highValue` goes with BETWEEN, `values`
 *   with IN / NOT_IN. Datetime values are epoch milliseconds (the docs' example) or ISO dates.
 * - "Only one sorting rule can be applied to any search": more than one is refused here.
 *   Records that tie on the sort come back in no particular order (here: a fixed shuffle, so
 *   that a client relying on any order among ties is caught).
 * - `limit` 10 by default, at most 200; `after` is an integer offset, answered as
 *   `paging.next.after`. "The search endpoints are limited to 10,000 total results for any given
 *   query. Attempting to page beyond 10,000 will result in a 400 error." (`maxResults` here.)
 * - `query` looks for a word in the default searchable properties.
 * The answer is `{ total, results, paging? }`; each result `{ id, properties, createdAt,
 * updatedAt, archived }`, with the asked-for properties (null when empty) plus `createdate`,
 * `hs_object_id` and `lastmodifieddate`. Wording of the 400 messages is ours.
 */
import { errors } from './errors.ts';
import {
  ALWAYS_RETURNED,
  DEFAULT_PROPERTIES,
  type ContactProperty,
  type HubSpotStore,
  type PropertyDefinition,
  type StoredContact,
} from './store.ts';

const OPERATORS = new Set([
  'EQ',
  'NEQ',
  'LT',
  'LTE',
  'GT',
  'GTE',
  'BETWEEN',
  'IN',
  'NOT_IN',
  'HAS_PROPERTY',
  'NOT_HAS_PROPERTY',
  'CONTAINS_TOKEN',
  'NOT_CONTAINS_TOKEN',
]);

export const MAX_SEARCH_LIMIT = 200;
const MAX_GROUPS = 5;
const MAX_FILTERS_PER_GROUP = 6;
const MAX_FILTERS = 18;
const SEARCHABLE: ContactProperty[] = ['firstname', 'lastname', 'email', 'phone', 'company'];

interface Filter {
  propertyName: string;
  operator: string;
  value?: unknown;
  highValue?: unknown;
  values?: unknown[];
}

export interface SearchAnswer {
  total: number;
  results: Record<string, unknown>[];
  paging?: { next: { after: string } };
}

type Comparable = number | string;

/** Runs one search request against the store; throws a HubSpotError for a refused request. */
export function search(
  store: HubSpotStore,
  body: unknown,
  options: { maxResults: number },
): SearchAnswer {
  if (body !== undefined && (typeof body !== 'object' || body === null || Array.isArray(body))) {
    throw errors.validation('The request body must be a JSON object.');
  }
  const request = (body ?? {}) as Record<string, unknown>;
  const groups = filterGroups(store, request.filterGroups);
  const sort = sortRule(store, request.sorts);
  const limit = integer(request.limit, 'limit', 10);
  if (limit < 1 || limit > MAX_SEARCH_LIMIT) {
    throw errors.validation(`limit must be between 1 and ${MAX_SEARCH_LIMIT}; got ${limit}.`);
  }
  const after = integer(request.after, 'after', 0);
  if (after < 0) throw errors.validation(`after must not be negative; got ${after}.`);
  if (after >= options.maxResults) {
    throw errors.validation(
      `Cannot page beyond ${options.maxResults} results for one search query (after: ${after}).`,
    );
  }
  const properties = propertyList(store, request.properties);
  const words =
    typeof request.query === 'string'
      ? request.query.toLowerCase().split(/\s+/).filter(Boolean)
      : [];

  const matching = [...store.contacts.values()].filter(
    (contact) =>
      !contact.archived &&
      (groups.length === 0 || groups.some((group) => group.every((test) => test(contact)))) &&
      words.every((word) =>
        SEARCHABLE.some((name) => contact.properties[name]?.toLowerCase().includes(word)),
      ),
  );
  matching.sort(sort);
  const end = Math.min(after + limit, matching.length, options.maxResults);
  const answer: SearchAnswer = {
    total: matching.length,
    results: matching.slice(after, end).map((contact) => renderContact(contact, properties)),
  };
  // The next page is offered even when it lies past the ceiling: asking for it is the 400.
  if (end < matching.length) answer.paging = { next: { after: String(end) } };
  return answer;
}

/** A contact as the v3 object endpoints answer it. */
export function renderContact(
  contact: StoredContact,
  properties: ContactProperty[],
): Record<string, unknown> {
  const values: Record<string, string | null> = {};
  for (const name of new Set([...properties, ...ALWAYS_RETURNED])) {
    values[name] = contact.properties[name] ?? null;
  }
  const rendered: Record<string, unknown> = {
    id: contact.id,
    properties: values,
    createdAt: new Date(contact.createdAt).toISOString(),
    updatedAt: new Date(contact.updatedAt).toISOString(),
    archived: contact.archived,
  };
  if (contact.archivedAt !== undefined) {
    rendered.archivedAt = new Date(contact.archivedAt).toISOString();
  }
  return rendered;
}

function propertyList(store: HubSpotStore, value: unknown): ContactProperty[] {
  if (value === undefined || value === null) return DEFAULT_PROPERTIES;
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string')) {
    throw errors.validation('properties must be an array of property names.');
  }
  // Unknown names are left out of the answer, not refused.
  return (value as string[]).filter((name): name is ContactProperty =>
    store.properties.has(name as ContactProperty),
  );
}

function integer(value: unknown, field: string, fallback: number): number {
  if (value === undefined || value === null) return fallback;
  const number = typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : value;
  if (typeof number !== 'number' || !Number.isInteger(number)) {
    throw errors.validation(`${field} must be an integer; got ${JSON.stringify(value)}.`);
  }
  return number;
}

function definitionOf(store: HubSpotStore, name: unknown, where: string): PropertyDefinition {
  const definition =
    typeof name === 'string' ? store.properties.get(name as ContactProperty) : undefined;
  if (!definition) {
    throw errors.validation(`${where}: unknown property ${JSON.stringify(name)} for contacts.`, {
      propertyName: [String(name)],
    });
  }
  return definition;
}

/** A property value in the order HubSpot compares it: numbers and datetimes as numbers. */
function comparable(definition: PropertyDefinition, raw: string): Comparable | undefined {
  if (definition.type === 'number') {
    const n = Number(raw);
    return Number.isNaN(n) ? undefined : n;
  }
  if (definition.type === 'datetime') {
    const ms = /^-?\d+$/.test(raw) ? Number(raw) : Date.parse(raw);
    return Number.isNaN(ms) ? undefined : ms;
  }
  // String comparisons do not depend on case (an email matches however it was typed).
  return definition.type === 'string' ? raw.toLowerCase() : raw;
}

function filterValue(definition: PropertyDefinition, value: unknown, field: string): Comparable {
  if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') {
    throw errors.validation(`${field} is required for this operator on ${definition.name}.`);
  }
  const parsed = comparable(definition, String(value));
  if (parsed === undefined) {
    throw errors.validation(
      `${field} ${JSON.stringify(value)} is not a valid ${definition.type} for ${definition.name}.`,
    );
  }
  return parsed;
}

type Test = (contact: StoredContact) => boolean;

function filterGroups(store: HubSpotStore, value: unknown): Test[][] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw errors.validation('filterGroups must be an array.');
  if (value.length > MAX_GROUPS) {
    throw errors.validation(`At most ${MAX_GROUPS} filterGroups are allowed; got ${value.length}.`);
  }
  let count = 0;
  const groups = value.map((group: unknown) => {
    const filters = (group as { filters?: unknown })?.filters;
    if (!Array.isArray(filters)) throw errors.validation('Each filter group needs filters.');
    if (filters.length > MAX_FILTERS_PER_GROUP) {
      throw errors.validation(`At most ${MAX_FILTERS_PER_GROUP} filters are allowed per group.`);
    }
    count += filters.length;
    return filters.map((filter: unknown) => compile(store, filter as Filter));
  });
  if (count > MAX_FILTERS) {
    throw errors.validation(`At most ${MAX_FILTERS} filters are allowed in all; got ${count}.`);
  }
  return groups;
}

function compile(store: HubSpotStore, filter: Filter): Test {
  const definition = definitionOf(store, filter?.propertyName, 'filter');
  const name = definition.name;
  const operator = filter.operator;
  if (typeof operator !== 'string' || !OPERATORS.has(operator)) {
    throw errors.validation(`Unknown filter operator ${JSON.stringify(operator)}.`);
  }
  const read = (contact: StoredContact) => {
    const raw = contact.properties[name];
    return raw === undefined ? undefined : comparable(definition, raw);
  };
  if (operator === 'HAS_PROPERTY') return (c) => c.properties[name] !== undefined;
  if (operator === 'NOT_HAS_PROPERTY') return (c) => c.properties[name] === undefined;
  if (operator === 'IN' || operator === 'NOT_IN') {
    if (!Array.isArray(filter.values) || filter.values.length === 0) {
      throw errors.validation(`${operator} needs values on ${name}.`);
    }
    const set = new Set(filter.values.map((v) => filterValue(definition, v, 'values')));
    return operator === 'IN'
      ? (c) => {
          const v = read(c);
          return v !== undefined && set.has(v);
        }
      : (c) => {
          const v = read(c);
          return v === undefined || !set.has(v);
        };
  }
  if (operator === 'CONTAINS_TOKEN' || operator === 'NOT_CONTAINS_TOKEN') {
    const token = String(filter.value ?? '').toLowerCase();
    // `*` stands for any run of characters, as in HubSpot's token search.
    const pattern = new RegExp(
      `^${token
        .split('*')
        .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
        .join('.*')}$`,
    );
    const has = (c: StoredContact) =>
      (c.properties[name] ?? '')
        .toLowerCase()
        .split(/[\s@.,;]+/)
        .some((t) => pattern.test(t)) || pattern.test((c.properties[name] ?? '').toLowerCase());
    return operator === 'CONTAINS_TOKEN' ? has : (c) => !has(c);
  }
  const value = filterValue(definition, filter.value, 'value');
  if (operator === 'BETWEEN') {
    const high = filterValue(definition, filter.highValue, 'highValue');
    return (c) => {
      const v = read(c);
      return v !== undefined && v >= value && v <= high;
    };
  }
  if (operator === 'NEQ') return (c) => read(c) !== value;
  return (c) => {
    const v = read(c);
    if (v === undefined) return false;
    switch (operator) {
      case 'EQ':
        return v === value;
      case 'LT':
        return v < value;
      case 'LTE':
        return v <= value;
      case 'GT':
        return v > value;
      default:
        return v >= value;
    }
  };
}

/**
 * A fixed shuffle of ids: the order ties come back in. Deterministic, so a failing test fails
 * every time, and unrelated to id order.
 */
function tieKey(id: string): number {
  let h = 2166136261;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 16777619);
  return h >>> 0;
}

function sortRule(
  store: HubSpotStore,
  value: unknown,
): (a: StoredContact, b: StoredContact) => number {
  let name: ContactProperty = 'createdate';
  let direction = 1;
  if (value !== undefined && value !== null) {
    if (!Array.isArray(value)) throw errors.validation('sorts must be an array.');
    if (value.length > 1) {
      throw errors.validation('Only one sorting rule can be applied to any search.');
    }
    const rule = value[0] as { propertyName?: unknown; direction?: unknown } | string | undefined;
    if (rule !== undefined) {
      // A bare property name sorts ascending, as HubSpot's older examples send it.
      const propertyName = typeof rule === 'string' ? rule : rule.propertyName;
      name = definitionOf(store, propertyName, 'sort').name;
      const dir = typeof rule === 'string' ? 'ASCENDING' : (rule.direction ?? 'ASCENDING');
      if (dir !== 'ASCENDING' && dir !== 'DESCENDING') {
        throw errors.validation(
          `Sort direction must be ASCENDING or DESCENDING; got ${String(dir)}.`,
        );
      }
      direction = dir === 'ASCENDING' ? 1 : -1;
    }
  }
  const definition = store.properties.get(name)!;
  const key = (c: StoredContact) => {
    const raw = c.properties[name];
    return raw === undefined ? undefined : comparable(definition, raw);
  };
  return (a, b) => {
    const x = key(a);
    const y = key(b);
    if (x !== y) {
      // Records without a value come last either way.
      if (x === undefined) return 1;
      if (y === undefined) return -1;
      return (x < y ? -1 : 1) * direction;
    }
    return tieKey(a.id) - tieKey(b.id);
  };
}
