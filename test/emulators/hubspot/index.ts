/**
 * A stateful HubSpot CRM API v3 emulator on 127.0.0.1: contacts, owners and contact property
 * definitions of one account, read through the endpoints in ./routes.ts with HubSpot's paging,
 * its search rules and 10,000-result ceiling (./search.ts), private app tokens and their scopes,
 * its rate limits (./limits.ts) and error bodies (./errors.ts), and the faults of `Emulator`.
 * Tests change the account as people in HubSpot would: every write moves the contact's
 * `lastmodifieddate`.
 *
 * @example
 * const hubspot = await startHubSpotEmulator({ maxSearchResults: 50 });
 * const owner = hubspot.addOwner({ email: 'ana@example.com', firstName: 'Ana' });
 * const { id } = hubspot.createContact({ email: 'mary@example.com', hubspot_owner_id: owner.id });
 * // GET {hubspot.url}/crm/v3/objects/contacts with `Authorization: Bearer ${hubspot.token}`
 * hubspot.updateContact(id, { lifecyclestage: 'customer' }); // lastmodifieddate moves
 * await hubspot.close();
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { startHttpEmulator, type Exchange } from '../http-harness.ts';
import type { Emulator, RecordedRequest } from '../types.ts';
import { errors, HubSpotError } from './errors.ts';
import { SlidingWindow } from './limits.ts';
import { ALL_SCOPES, route, type ApiResponse, type Route } from './routes.ts';
import {
  HubSpotStore,
  iso,
  type ContactInput,
  type ContactProperty,
  type StoredContact,
  type StoredOwner,
} from './store.ts';

export { ANALYTICS_SOURCES, LIFECYCLE_STAGES, type ContactInput } from './store.ts';
export { pagilaCustomers, seedAccount, type PagilaCustomer, type SeedOptions } from './seed.ts';

export interface HubSpotEmulatorOptions {
  /**
   * Private app access tokens that authenticate, each with its scopes (all the emulator knows
   * when a bare token is given). Default: one token, `pat-na1-emulator`.
   */
  tokens?: (string | { token: string; scopes: string[] })[];
  /** Search requests per second per token before 429 `SECONDLY` (HubSpot: 4). */
  searchRequestsPerSecond?: number;
  /** Requests per rolling ten seconds per token before 429 `TEN_SECONDLY_ROLLING` (100). */
  requestsPerTenSeconds?: number;
  /** Results one search query can page through (HubSpot: 10,000); lower it in tests. */
  maxSearchResults?: number;
  /** The clock writes are dated by (epoch ms); `Date.now` by default. */
  now?: () => number;
  /** Port on 127.0.0.1; 0 (any free port) by default. */
  port?: number;
}

/** A request as served, with its JSON body (searches carry their query in it). */
export interface HubSpotRequest extends RecordedRequest {
  body?: unknown;
}

/** A contact as the emulator holds it, for assertions. */
export interface ContactView {
  id: string;
  properties: Partial<Record<ContactProperty, string>>;
  createdAt: string;
  updatedAt: string;
  archived: boolean;
}

export interface OwnerView {
  id: string;
  email: string;
  firstName: string;
  lastName: string;
  userId: number;
  archived: boolean;
}

export interface HubSpotEmulator extends Emulator {
  /** The API's base URL (`https://api.hubapi.com` at HubSpot): `http://127.0.0.1:<port>`. */
  url: string;
  /** The first token. */
  token: string;
  requests: HubSpotRequest[];
  /** Requests refused by each limit, and the most search requests seen in one second. */
  stats: {
    refusedBySearchLimit: number;
    refusedByBurstLimit: number;
    peakSearchesPerSecond: number;
  };

  /** Creates a contact dated `at` (now by default). */
  createContact(input: ContactInput, options?: { at?: Date | number }): ContactView;
  /** Writes properties (null clears one); `lastmodifieddate` moves to `at` (now by default). */
  updateContact(id: string, input: ContactInput, options?: { at?: Date | number }): ContactView;
  /** Deletes a contact in HubSpot: it is archived and leaves searches and listings. */
  archiveContact(id: string): void;
  contact(id: string): ContactView | undefined;
  /** Contacts not archived, in id order. */
  contacts(): ContactView[];
  addOwner(owner: {
    email: string;
    firstName?: string;
    lastName?: string;
    archived?: boolean;
  }): OwnerView;
  /** Deactivates the owner's user: the owner is listed only with `archived=true`. */
  archiveOwner(id: string): void;
  owners(): OwnerView[];
  /** Adds an option to an enumeration property, e.g. a custom lifecycle stage. */
  addPropertyOption(property: ContactProperty, value: string, label: string): void;
}

const API = '/crm/v3';

/**
 * Starts the emulator on 127.0.0.1.
 *
 * @example
 * const hubspot = await startHubSpotEmulator({ tokens: ['pat-na1-a', { token: 'pat-na1-b', scopes: [] }] });
 */
export async function startHubSpotEmulator(
  options: HubSpotEmulatorOptions = {},
): Promise<HubSpotEmulator> {
  const tokens = new Map<string, string[]>();
  for (const entry of options.tokens ?? ['pat-na1-emulator']) {
    if (typeof entry === 'string') tokens.set(entry, ALL_SCOPES);
    else tokens.set(entry.token, entry.scopes);
  }
  const now = options.now ?? Date.now;
  const maxSearchResults = options.maxSearchResults ?? 10_000;
  const searchLimit = options.searchRequestsPerSecond ?? 4;
  const burstLimit = options.requestsPerTenSeconds ?? 100;
  const store = new HubSpotStore();
  const searchWindows = new Map<string, SlidingWindow>();
  const burstWindows = new Map<string, SlidingWindow>();
  const searchSeconds = new Map<number, number>();
  const stats = { refusedBySearchLimit: 0, refusedByBurstLimit: 0, peakSearchesPerSecond: 0 };
  let baseUrl = '';

  const windowOf = (map: Map<string, SlidingWindow>, token: string, limit: number, ms: number) => {
    let window = map.get(token);
    if (!window) map.set(token, (window = new SlidingWindow(limit, ms)));
    return window;
  };

  function send(
    res: ServerResponse,
    record: RecordedRequest,
    answer: ApiResponse | HubSpotError,
    correlationId: string,
    extraHeaders: Record<string, string> = {},
  ): void {
    const error = answer instanceof HubSpotError ? answer : undefined;
    const status = error ? error.status : (answer as ApiResponse).status;
    const body = error ? error.body(correlationId) : (answer as ApiResponse).body;
    const text = JSON.stringify(body);
    record.status = status;
    res.writeHead(status, {
      'Content-Type': 'application/json;charset=utf-8',
      'Content-Length': String(Buffer.byteLength(text)),
      'X-HubSpot-Correlation-Id': correlationId,
      ...extraHeaders,
      ...error?.headers,
    });
    res.end(text);
  }

  function authenticate(req: IncomingMessage): { token: string; scopes: string[] } | HubSpotError {
    const [scheme, credentials] = (req.headers.authorization ?? '').split(' ', 2);
    const scopes = credentials ? tokens.get(credentials) : undefined;
    if (scheme?.toLowerCase() !== 'bearer' || !credentials || !scopes) {
      return errors.invalidAuthentication();
    }
    return { token: credentials, scopes };
  }

  /** Counts the request against the token's limits, or answers the 429 it gets. */
  function limit(token: string, found: Route, at: number): HubSpotError | undefined {
    const burst = windowOf(burstWindows, token, burstLimit, 10_000).take(at);
    if (!burst.ok) {
      stats.refusedByBurstLimit++;
      return errors.tenSecondlyLimit(burst.retryAfterSeconds);
    }
    if (!found.search) return undefined;
    const secondly = windowOf(searchWindows, token, searchLimit, 1_000).take(at);
    if (!secondly.ok) {
      stats.refusedBySearchLimit++;
      return errors.secondlyLimit(secondly.retryAfterSeconds);
    }
    const second = Math.floor(at / 1000);
    const inSecond = (searchSeconds.get(second) ?? 0) + 1;
    searchSeconds.set(second, inSecond);
    stats.peakSearchesPerSecond = Math.max(stats.peakSearchesPerSecond, inSecond);
    return undefined;
  }

  async function serve({
    req,
    res,
    record,
    url,
    body: raw,
    delay,
    takeFault,
  }: Exchange<HubSpotRequest>): Promise<void> {
    const correlationId = randomUUID();
    const method = (req.method ?? 'GET').toUpperCase();
    const answer = async (reply: ApiResponse | HubSpotError, headers?: Record<string, string>) => {
      await delay();
      send(res, record, reply, correlationId, headers);
    };

    const text = raw.toString('utf8');
    let body: unknown;
    let badJson = false;
    if (text.trim() !== '') {
      try {
        body = JSON.parse(text);
        record.body = body;
      } catch {
        badJson = true;
      }
    }

    const auth = authenticate(req);
    if (auth instanceof HubSpotError) return answer(auth);
    let found: Route;
    try {
      if (url.pathname !== API && !url.pathname.startsWith(`${API}/`)) {
        throw errors.noRoute(method, url.pathname);
      }
      const segments = url.pathname.slice(API.length).split('/').filter(Boolean).map(decode);
      found = route(method, segments);
      if (!found.scopes.some((scope) => auth.scopes.includes(scope))) {
        throw errors.missingScopes(found.scopes.slice(0, 1));
      }
    } catch (error) {
      if (!(error instanceof HubSpotError)) throw error;
      return answer(error);
    }
    const at = Date.now();
    const refused = limit(auth.token, found, at);
    if (refused) return answer(refused);

    await delay();
    const fault = takeFault();
    if (fault?.kind === 'status') {
      const error =
        fault.status === 429
          ? found.search
            ? errors.secondlyLimit(1)
            : errors.tenSecondlyLimit(1)
          : errors.server(fault.status);
      // HubSpot's docs promise no Retry-After; an injected fault sends one only when asked.
      delete error.headers['Retry-After'];
      if (fault.retryAfterSeconds !== undefined) {
        error.headers['Retry-After'] = String(fault.retryAfterSeconds);
      }
      send(res, record, error, correlationId);
      return;
    }
    if (fault?.kind === 'drop') {
      res.socket?.destroy();
      return;
    }

    let reply: ApiResponse | HubSpotError;
    try {
      if (badJson) throw errors.invalidJson();
      const segments = url.pathname.slice(API.length).split('/').filter(Boolean).map(decode);
      reply = found.handle(store, {
        method,
        segments,
        query: url.searchParams,
        body,
        baseUrl,
        maxSearchResults,
      });
    } catch (error) {
      if (!(error instanceof HubSpotError)) throw error;
      reply = error;
    }
    if (fault?.kind === 'drop-after-apply') {
      record.status = 0;
      res.socket?.destroy();
      return;
    }
    // Search answers carry no rate-limit headers (HubSpot's usage guidelines); the rest do.
    const headers: Record<string, string> = found.search
      ? {}
      : {
          'X-HubSpot-RateLimit-Interval-Milliseconds': '10000',
          'X-HubSpot-RateLimit-Max': String(burstLimit),
          'X-HubSpot-RateLimit-Remaining': String(
            Math.max(
              0,
              burstLimit - windowOf(burstWindows, auth.token, burstLimit, 10_000).count(at),
            ),
          ),
        };
    send(res, record, reply, correlationId, headers);
  }

  const http = await startHttpEmulator<HubSpotRequest>({
    port: options.port,
    handle: serve,
    onError(error, { res, record }) {
      // A bug in the emulator: answer like HubSpot's 500 rather than hang the client.
      console.error('hubspot emulator:', error);
      if (!res.headersSent) send(res, record, errors.server(500), randomUUID());
    },
  });
  baseUrl = http.url;

  const when = (at: Date | number | undefined) =>
    at === undefined ? now() : typeof at === 'number' ? at : at.getTime();
  const contactView = (c: StoredContact): ContactView => ({
    id: c.id,
    properties: { ...c.properties },
    createdAt: iso(c.createdAt),
    updatedAt: iso(c.updatedAt),
    archived: c.archived,
  });
  const ownerView = (o: StoredOwner): OwnerView => ({
    id: o.id,
    email: o.email,
    firstName: o.firstName,
    lastName: o.lastName,
    userId: o.userId,
    archived: o.archived,
  });

  return {
    ...http,
    token: [...tokens.keys()][0]!,
    stats,

    createContact(input, opts = {}) {
      return contactView(store.createContact(input, when(opts.at)));
    },
    updateContact(id, input, opts = {}) {
      return contactView(store.updateContact(id, input, when(opts.at)));
    },
    archiveContact(id) {
      store.archiveContact(id, now());
    },
    contact(id) {
      const c = store.contacts.get(id);
      return c && contactView(c);
    },
    contacts() {
      return [...store.contacts.values()]
        .filter((c) => !c.archived)
        .sort((a, b) => Number(a.id) - Number(b.id))
        .map(contactView);
    },
    addOwner(owner) {
      return ownerView(store.addOwner(owner, now()));
    },
    archiveOwner(id) {
      const owner = store.owners.get(id);
      if (!owner) throw new Error(`no owner ${id} in the emulator`);
      owner.archived = true;
      owner.updatedAt = now();
    },
    owners() {
      return [...store.owners.values()].map(ownerView);
    },
    addPropertyOption(property, value, label) {
      store.addOption(property, value, label);
    },
  };
}

/** A path segment as sent; a malformed escape names nothing, so it is a 404. */
function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw errors.noRoute('GET', segment);
  }
}
