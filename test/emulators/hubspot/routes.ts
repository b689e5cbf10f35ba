/**
 * The endpoints the emulator serves, each with the scopes a private app needs for it
 * (https://developers.hubspot.com/docs/api/scopes) and whether it counts against the search
 * limit:
 * - `GET /crm/v3/objects/contacts` (`limit` ≤ 100, default 10; `after` from `paging.next.after`;
 *   `properties` comma-separated; `archived`), in id order;
 * - `GET /crm/v3/objects/contacts/{id}`;
 * - `POST /crm/v3/objects/contacts/search` (./search.ts);
 * - `GET /crm/v3/owners` (`limit` ≤ 500, default 100; `after`; `email`; `archived`) and
 *   `GET /crm/v3/owners/{ownerId}`;
 * - `GET /crm/v3/properties/contacts` and `GET /crm/v3/properties/contacts/{propertyName}`.
 */
import { errors } from './errors.ts';
import { renderContact, search } from './search.ts';
import {
  DEFAULT_PROPERTIES,
  iso,
  type ContactProperty,
  type HubSpotStore,
  type PropertyDefinition,
  type StoredOwner,
} from './store.ts';

export interface ApiRequest {
  method: string;
  /** The path's segments after `/crm/v3`, decoded. */
  segments: string[];
  query: URLSearchParams;
  body: unknown;
  /** The emulator's base URL, for `paging.next.link`. */
  baseUrl: string;
  maxSearchResults: number;
}

export interface ApiResponse {
  status: number;
  body: unknown;
}

export interface Route {
  /** Any one of these scopes lets a token call it. */
  scopes: string[];
  /** Counts against the search endpoints' per-second limit. */
  search: boolean;
  handle(store: HubSpotStore, request: ApiRequest): ApiResponse;
}

const CONTACTS_READ = 'crm.objects.contacts.read';
const OWNERS_READ = 'crm.objects.owners.read';
const SCHEMAS_READ = 'crm.schemas.contacts.read';
/** Every scope the emulator knows; a token given no scopes has all of them. */
export const ALL_SCOPES = [CONTACTS_READ, OWNERS_READ, SCHEMAS_READ];

const ok = (body: unknown): ApiResponse => ({ status: 200, body });

/** The route for a method and path, or the 404 / 405 HubSpot answers. */
export function route(method: string, segments: string[]): Route {
  const [a, b, c, d, ...rest] = segments;
  const candidates: Record<string, Route> = {};
  if (a === 'objects' && (b === 'contacts' || b === '0-1') && rest.length === 0) {
    if (c === undefined) candidates.GET = listContacts;
    else if (c === 'search' && d === undefined) candidates.POST = searchContacts;
    else if (d === undefined) candidates.GET = readContact(c);
  } else if (a === 'owners' && c === undefined) {
    candidates.GET = b === undefined || b === '' ? listOwners : readOwner(b);
  } else if (a === 'properties' && (b === 'contacts' || b === '0-1') && d === undefined) {
    candidates.GET = c === undefined ? listProperties : readProperty(c);
  }
  const found = candidates[method];
  if (found) return found;
  const allow = Object.keys(candidates);
  if (allow.length > 0) throw errors.methodNotAllowed(method, allow);
  throw errors.noRoute(method, `/crm/v3/${segments.join('/')}`);
}

function limitOf(query: URLSearchParams, fallback: number, max: number): number {
  const raw = query.get('limit');
  if (raw === null) return fallback;
  const limit = Number(raw);
  if (!Number.isInteger(limit) || limit < 1 || limit > max) {
    throw errors.validation(`limit must be an integer between 1 and ${max}; got ${raw}.`);
  }
  return limit;
}

/** `properties=a,b&properties=c`: the names asked for, unknown ones left out. */
function propertiesOf(store: HubSpotStore, query: URLSearchParams): ContactProperty[] {
  const asked = query.getAll('properties').flatMap((v) => v.split(',').map((s) => s.trim()));
  if (asked.length === 0) return DEFAULT_PROPERTIES;
  return asked.filter((name): name is ContactProperty =>
    store.properties.has(name as ContactProperty),
  );
}

/** The `after` of a listing: the next id to show, as HubSpot's cursors page by id. */
function afterOf(query: URLSearchParams): number {
  const raw = query.get('after');
  if (raw === null) return 0;
  if (!/^\d+$/.test(raw)) throw errors.validation(`after is not a valid paging cursor: ${raw}.`);
  return Number(raw);
}

const listContacts: Route = {
  scopes: [CONTACTS_READ],
  search: false,
  handle(store, { query, baseUrl }) {
    const limit = limitOf(query, 10, 100);
    const after = afterOf(query);
    const archived = query.get('archived') === 'true';
    const properties = propertiesOf(store, query);
    const all = [...store.contacts.values()]
      .filter((c) => c.archived === archived && Number(c.id) >= after)
      .sort((x, y) => Number(x.id) - Number(y.id));
    const page = all.slice(0, limit);
    const body: Record<string, unknown> = {
      results: page.map((c) => renderContact(c, properties)),
    };
    if (all.length > limit) {
      const next = String(Number(page.at(-1)!.id) + 1);
      const link = new URL(`${baseUrl}/crm/v3/objects/contacts`);
      link.searchParams.set('after', next);
      body.paging = { next: { after: next, link: link.toString() } };
    }
    return ok(body);
  },
};

const readContact = (id: string): Route => ({
  scopes: [CONTACTS_READ],
  search: false,
  handle(store, { query }) {
    const contact = store.contacts.get(id);
    const archived = query.get('archived') === 'true';
    if (!contact || contact.archived !== archived) {
      throw errors.notFound(`Object not found. objectId: ${id}`);
    }
    return ok(renderContact(contact, propertiesOf(store, query)));
  },
});

const searchContacts: Route = {
  scopes: [CONTACTS_READ],
  search: true,
  handle(store, { body, maxSearchResults }) {
    return ok(search(store, body, { maxResults: maxSearchResults }));
  },
};

function renderOwner(owner: StoredOwner): Record<string, unknown> {
  return {
    id: owner.id,
    email: owner.email,
    firstName: owner.firstName,
    lastName: owner.lastName,
    userId: owner.userId,
    createdAt: iso(owner.createdAt),
    updatedAt: iso(owner.updatedAt),
    archived: owner.archived,
  };
}

const listOwners: Route = {
  scopes: [OWNERS_READ],
  search: false,
  handle(store, { query, baseUrl }) {
    const limit = limitOf(query, 100, 500);
    const after = afterOf(query);
    const archived = query.get('archived') === 'true';
    const email = query.get('email')?.toLowerCase();
    const all = [...store.owners.values()]
      .filter(
        (o) =>
          o.archived === archived &&
          Number(o.id) >= after &&
          (email === undefined || o.email.toLowerCase() === email),
      )
      .sort((x, y) => Number(x.id) - Number(y.id));
    const page = all.slice(0, limit);
    const body: Record<string, unknown> = { results: page.map(renderOwner) };
    if (all.length > limit) {
      const next = String(Number(page.at(-1)!.id) + 1);
      const link = new URL(`${baseUrl}/crm/v3/owners/`);
      link.searchParams.set('after', next);
      body.paging = { next: { after: next, link: link.toString() } };
    }
    return ok(body);
  },
};

const readOwner = (id: string): Route => ({
  scopes: [OWNERS_READ],
  search: false,
  handle(store, { query }) {
    const owner = store.owners.get(id);
    const archived = query.get('archived') === 'true';
    if (!owner || owner.archived !== archived) {
      throw errors.notFound(`Owner not found. ownerId: ${id}`);
    }
    return ok(renderOwner(owner));
  },
});

function renderProperty(definition: PropertyDefinition): Record<string, unknown> {
  return {
    name: definition.name,
    label: definition.label,
    type: definition.type,
    fieldType: definition.fieldType,
    description: '',
    groupName: definition.groupName,
    options: definition.options,
    displayOrder: -1,
    calculated: false,
    externalOptions: false,
    hasUniqueValue: definition.name === 'hs_object_id',
    hidden: false,
    hubspotDefined: true,
    modificationMetadata: {
      archivable: false,
      readOnlyDefinition: true,
      readOnlyValue: definition.readOnlyValue,
    },
    formField: !definition.readOnlyValue,
    createdAt: '2019-08-06T02:41:52.000Z',
    updatedAt: '2019-08-06T02:41:52.000Z',
    archived: false,
  };
}

const PROPERTY_SCOPES = [SCHEMAS_READ, CONTACTS_READ];

const listProperties: Route = {
  scopes: PROPERTY_SCOPES,
  search: false,
  handle(store) {
    return ok({ results: [...store.properties.values()].map(renderProperty) });
  },
};

const readProperty = (name: string): Route => ({
  scopes: PROPERTY_SCOPES,
  search: false,
  handle(store) {
    const definition = store.properties.get(name as ContactProperty);
    if (!definition) throw errors.notFound(`Unable to find property ${name} for contacts.`);
    return ok(renderProperty(definition));
  },
});
