/**
 * A stateful Google Analytics 4 Data API (v1beta) emulator on 127.0.0.1 for the real
 * `googleapis` client: properties with seeded per-user, per-day event counts, `runReport`
 * (dimensions, metrics, date ranges, filters, ordering, offset/limit paging capped at 250,000
 * rows, `rowCount`) and `getMetadata`, Google's error bodies, OAuth tokens and service-account
 * self-signed JWTs, property quotas (`propertyQuota`, tokens charged per call, 429
 * RESOURCE_EXHAUSTED once spent), injected faults, latency, a request log, and every request
 * checked against the discovery document. What it emulates and what it leaves out: README.md.
 *
 * @example
 * const emulator = await startGa4Emulator({ validate: 'reject' });
 * emulator.createProperty({ propertyId: '123', customDimensions: ['customUser:crm_id'] });
 * emulator.addEvents('123', [{ date: '2024-05-01', eventName: 'purchase', revenue: 30, user: { crm_id: 'c-1' } }]);
 * const auth = new google.auth.OAuth2();
 * auth.setCredentials({ access_token: 'test-token' });
 * const ga = google.analyticsdata({ version: 'v1beta', auth, rootUrl: emulator.url, retry: false });
 * await ga.properties.runReport({ property: 'properties/123', requestBody: { … } });
 */
import type { IncomingMessage } from 'node:http';
import {
  answerEmulatorBug,
  answerError,
  answerOf,
  dropConnection,
  faultAnswer,
  htmlAnswer,
  readJsonBody,
  recordAnswer,
  schemaRejection,
  sendAnswer,
  type GoogleAnswer,
  type GoogleRecordedRequest,
} from '../google-transport.ts';
import { startHttpEmulator, whenAnswered, type Exchange } from '../http-harness.ts';
import type { Emulator } from '../types.ts';
import { authenticate, DEFAULT_PROJECT, type Credentials, type ServiceAccount } from './auth.ts';
import { CUSTOM_DIMENSION, catalogFor, type EventFact } from './catalog.ts';
import {
  Ga4ApiError,
  invalid,
  invalidPropertyId,
  noPropertyAccess,
  quotaExhausted,
} from './errors.ts';
import {
  defaultTokenCost,
  PropertyQuotaState,
  STANDARD_QUOTA,
  type Ga4Quota,
  type TokenCost,
} from './quota.ts';
import { runReport } from './report.ts';
import { analyticsDataSpec, type SpecViolation } from './spec.ts';

export type { Ga4Quota, TokenCost } from './quota.ts';
export { ANALYTICS_360_QUOTA, STANDARD_QUOTA } from './quota.ts';
export type { ServiceAccount } from './auth.ts';
export type { EventFact } from './catalog.ts';
export type { SpecViolation } from './spec.ts';
export { MAX_ROWS_PER_REQUEST, DEFAULT_LIMIT, dayIn, addDays } from './report.ts';

export interface Ga4EmulatorOptions {
  /**
   * Check every request (route, query, body) and every 2xx response against
   * specs/analyticsdata-v1beta.discovery.json and record departures in `violations`.
   * `'reject'` also answers a request breaking the schema with Google's 400.
   */
  validate?: boolean | 'reject';
  /** OAuth access tokens accepted, as a list or token → Cloud project; any token when omitted. */
  tokens?: string[] | Record<string, string>;
  /** Service accounts whose self-signed JWTs are accepted. */
  serviceAccounts?: ServiceAccount[];
  /** Quotas of properties created without their own; a standard property's by default. */
  quota?: Partial<Ga4Quota>;
  /** Tokens a report costs (1 + 1 per 1,000 rows returned by default). */
  tokenCost?: TokenCost;
  /** The clock for relative dates, quota windows and JWT expiry; `Date.now` by default. */
  now?: () => number;
  discoveryFile?: string;
}

export interface Ga4RecordedRequest extends GoogleRecordedRequest {
  propertyId?: string;
  /** The caller: a token or a service account's email. */
  principal?: string;
  /** Quota tokens the request was charged. */
  tokens?: number;
}

/** One event fact to add: `count` events (1 by default) sharing these values. */
export interface EventInput {
  date: string;
  eventName: string;
  count?: number;
  revenue?: number;
  user?: Record<string, string>;
  params?: Record<string, string>;
  country?: string;
  deviceCategory?: string;
  platform?: string;
}

export interface PropertyOptions {
  /** Numeric id; a random one when omitted. */
  propertyId?: string;
  /** The reporting time zone relative dates resolve in (IANA), `UTC` by default. */
  timeZone?: string;
  currencyCode?: string;
  /** Registered custom dimensions: `customUser:<user property>`, `customEvent:<parameter>`. */
  customDimensions?: string[];
  /** Principals (tokens, service account emails) that may read it; anyone when omitted. */
  access?: string[];
  /** Revenue metrics are blocked for the caller: accepted, reported as zeros. */
  revenueBlocked?: boolean;
  quota?: Partial<Ga4Quota>;
}

export interface Ga4Emulator extends Emulator {
  /** The base URL for googleapis: `google.analyticsdata({ version: 'v1beta', rootUrl: emulator.url })`. */
  url: string;
  requests: Ga4RecordedRequest[];
  violations: SpecViolation[];
  createProperty(options?: PropertyOptions): string;
  /** Adds events; facts with the same day, name and values add up. */
  addEvents(propertyId: string, events: EventInput[]): void;
  clearEvents(propertyId: string): void;
  /** The stored facts of a property. */
  facts(propertyId: string): EventFact[];
  registerDimension(propertyId: string, name: string): void;
  grantAccess(propertyId: string, principal: string): void;
  revokeAccess(propertyId: string, principal: string): void;
  addServiceAccount(account: ServiceAccount): void;
  /** A token or a service account's email answers 401 from now on. */
  revokeToken(tokenOrEmail: string): void;
  setQuota(propertyId: string, quota: Partial<Ga4Quota>): void;
  /** Forgets the tokens a property (every property when omitted) has used. */
  resetQuota(propertyId?: string): void;
  /** Tokens used in the current windows. */
  quotaUsed(
    propertyId: string,
    project?: string,
  ): { hour: number; day: number; projectHour: number };
}

interface Property {
  id: string;
  timeZone: string;
  currencyCode: string;
  customDimensions: Set<string>;
  access?: Set<string>;
  revenueBlocked: boolean;
  facts: Map<string, EventFact>;
  quota: PropertyQuotaState;
}

type Json = Record<string, unknown>;

const OPERATIONS: Record<string, string> = {
  runReport: 'analyticsdata.properties.runReport',
  batchRunReports: 'analyticsdata.properties.batchRunReports',
  runPivotReport: 'analyticsdata.properties.runPivotReport',
  batchRunPivotReports: 'analyticsdata.properties.batchRunPivotReports',
  runRealtimeReport: 'analyticsdata.properties.runRealtimeReport',
  checkCompatibility: 'analyticsdata.properties.checkCompatibility',
};

/** `/v1beta/properties/{id}:verb` or `/v1beta/properties/{id}/metadata`. */
function route(
  method: string,
  pathname: string,
): { operation: string; propertyId: string } | undefined {
  const verb = /^\/v1beta\/properties\/([^/:]+):([A-Za-z]+)$/.exec(pathname);
  if (verb && method === 'POST' && OPERATIONS[verb[2]!]) {
    return { operation: OPERATIONS[verb[2]!]!, propertyId: decodeURIComponent(verb[1]!) };
  }
  const meta = /^\/v1beta\/properties\/([^/:]+)\/metadata$/.exec(pathname);
  if (meta && method === 'GET') {
    return {
      operation: 'analyticsdata.properties.getMetadata',
      propertyId: decodeURIComponent(meta[1]!),
    };
  }
  const audience = /^\/v1beta\/properties\/([^/:]+)\/audienceExports/.exec(pathname);
  if (audience) {
    return {
      operation: 'analyticsdata.properties.audienceExports',
      propertyId: decodeURIComponent(audience[1]!),
    };
  }
  return undefined;
}

/**
 * Starts the emulator on a free port of 127.0.0.1.
 *
 * @example const emulator = await startGa4Emulator({ quota: { tokensPerHour: 20, hourMs: 1000 } });
 */
export async function startGa4Emulator(options: Ga4EmulatorOptions = {}): Promise<Ga4Emulator> {
  const now = options.now ?? Date.now;
  const spec = options.validate ? analyticsDataSpec(options.discoveryFile) : undefined;
  const tokenCost = options.tokenCost ?? defaultTokenCost;
  const credentials: Credentials = {
    tokens: options.tokens
      ? new Map(
          Array.isArray(options.tokens)
            ? options.tokens.map((t) => [t, DEFAULT_PROJECT] as const)
            : Object.entries(options.tokens),
        )
      : undefined,
    serviceAccounts: new Map((options.serviceAccounts ?? []).map((a) => [a.clientEmail, a])),
    revoked: new Set(),
    now,
  };
  const properties = new Map<string, Property>();
  const violations: SpecViolation[] = [];
  let nextId = 300_000_000;

  const property = (id: string): Property => {
    const p = properties.get(id);
    if (!p) throw new Error(`no property ${id}`);
    return p;
  };

  /** Auth, property access and the method itself. `principal` is filled in for the log. */
  const handle = (
    req: IncomingMessage,
    url: URL,
    raw: Buffer,
    record: Ga4RecordedRequest,
    routed: { operation: string; propertyId: string },
  ): GoogleAnswer => {
    const method = req.method ?? 'GET';
    const body = readJsonBody(req, raw);
    if (spec) {
      const checked = spec.checkRequest(method, `${url.pathname}${url.search}`, body);
      violations.push(...checked.violations);
      const rejected = schemaRejection(checked.violations);
      if (options.validate === 'reject' && rejected) return answerError(rejected);
    }

    const who = authenticate(
      req.headers.authorization,
      url.searchParams,
      credentials,
      routed.operation,
    );
    if (who instanceof Ga4ApiError) return answerError(who);
    record.principal = who.id;

    if (!/^\d+$/.test(routed.propertyId)) {
      return answerError(invalidPropertyId(routed.propertyId));
    }
    // Property 0 is the universal metadata: every property's common dimensions and metrics.
    if (routed.operation === 'analyticsdata.properties.getMetadata' && routed.propertyId === '0') {
      const catalog = catalogFor([]);
      return ok(routed.operation, method, url, {
        name: 'properties/0/metadata',
        dimensions: catalog.dimensions(),
        metrics: catalog.metrics(),
      });
    }
    const p = properties.get(routed.propertyId);
    // A property that does not exist answers as one the caller may not read.
    if (!p || (p.access && !p.access.has(who.id))) return answerError(noPropertyAccess());

    if (routed.operation === 'analyticsdata.properties.getMetadata') {
      const catalog = catalogFor(p.customDimensions, p.revenueBlocked);
      return ok(routed.operation, method, url, {
        name: `properties/${p.id}/metadata`,
        dimensions: catalog.dimensions(),
        metrics: catalog.metrics(),
      });
    }
    if (routed.operation !== 'analyticsdata.properties.runReport') {
      return answerError(
        new Ga4ApiError(
          'UNIMPLEMENTED',
          `The GA4 emulator does not implement ${routed.operation}.`,
        ),
      );
    }

    const t = now();
    const refused = p.quota.refuse(who.project, t);
    if (refused) return answerError(refused);
    const json = (body ?? {}) as Json;
    if (json.property !== undefined && json.property !== `properties/${p.id}`) {
      return answerError(
        invalid(`The property in the request body does not match properties/${p.id}.`),
      );
    }
    const report = runReport(
      {
        timeZone: p.timeZone,
        currencyCode: p.currencyCode,
        catalog: catalogFor(p.customDimensions, p.revenueBlocked),
        facts: p.facts.values(),
      },
      json,
      t,
    );
    const tokens = tokenCost(report.cost);
    p.quota.charge(who.project, tokens, t);
    record.tokens = tokens;
    if (json.returnPropertyQuota === true) {
      report.body.propertyQuota = p.quota.status(who.project, tokens, t);
    }
    return ok(routed.operation, method, url, report.body);
  };

  const ok = (operation: string, method: string, url: URL, result: unknown): GoogleAnswer => {
    if (spec)
      violations.push(...spec.checkResponse(operation, `${method} ${url.pathname}`, result));
    return { status: 200, body: result };
  };

  /** The transport: injected faults and latency, the 404 of unknown paths, then `handle`. */
  const serve = async ({
    req,
    res,
    record,
    url,
    body,
    delay,
    takeFault,
  }: Exchange<Ga4RecordedRequest>): Promise<void> => {
    const fault = takeFault();
    const routed = route(req.method ?? 'GET', url.pathname);
    record.operation = routed?.operation;
    record.propertyId = routed?.propertyId;
    const counted = routed ? properties.get(routed.propertyId) : undefined;
    if (counted) {
      counted.quota.inFlight++;
      whenAnswered(res, () => counted.quota.inFlight--);
    }
    await delay();
    if (fault?.kind === 'drop') return dropConnection(req, record, 'drop');
    let answer: GoogleAnswer;
    if (fault?.kind === 'status') {
      record.fault = 'status';
      // A 429 that passes quickly is the concurrent-requests one; token quotas last an hour.
      answer = faultAnswer(fault, () => quotaExhausted('concurrentRequests'));
      if (counted && fault.status >= 500) {
        const who = authenticate(req.headers.authorization, url.searchParams, credentials, '');
        counted.quota.serverError(
          who instanceof Ga4ApiError ? DEFAULT_PROJECT : who.project,
          now(),
        );
      }
    } else if (!routed) {
      answer = htmlAnswer(404);
    } else {
      answer = answerOf(() => handle(req, url, body, record, routed));
    }
    recordAnswer(record, answer);
    if (fault?.kind === 'drop-after-apply') return dropConnection(req, record, 'drop-after-apply');
    sendAnswer(res, answer);
  };

  const http = await startHttpEmulator<Ga4RecordedRequest>({
    handle: serve,
    onError: answerEmulatorBug,
    // Outlive the client's idle keep-alive sockets so it never reuses one being closed.
    keepAliveTimeout: 60_000,
  });

  const emulator: Ga4Emulator = {
    ...http,
    violations,
    createProperty(opts = {}) {
      const id = opts.propertyId ?? String(nextId++);
      if (!/^\d+$/.test(id)) throw new Error(`a property id is a number, not ${id}`);
      if (properties.has(id)) throw new Error(`property ${id} exists`);
      for (const d of opts.customDimensions ?? []) {
        if (!CUSTOM_DIMENSION.test(d)) throw new Error(`not a custom dimension name: ${d}`);
      }
      properties.set(id, {
        id,
        timeZone: opts.timeZone ?? 'UTC',
        currencyCode: opts.currencyCode ?? 'USD',
        customDimensions: new Set(opts.customDimensions ?? []),
        access: opts.access ? new Set(opts.access) : undefined,
        revenueBlocked: opts.revenueBlocked ?? false,
        facts: new Map(),
        quota: new PropertyQuotaState({ ...STANDARD_QUOTA, ...options.quota, ...opts.quota }),
      });
      return id;
    },
    addEvents(propertyId, events) {
      const p = property(propertyId);
      for (const e of events) {
        if (!/^\d{4}-\d{2}-\d{2}$/.test(e.date))
          throw new Error(`not a YYYY-MM-DD date: ${e.date}`);
        const fact: EventFact = {
          date: e.date,
          eventName: e.eventName,
          count: e.count ?? 1,
          revenue: e.revenue ?? 0,
          country: e.country,
          deviceCategory: e.deviceCategory,
          platform: e.platform,
          user: { ...e.user },
          params: { ...e.params },
        };
        const key = JSON.stringify([
          fact.date,
          fact.eventName,
          fact.country,
          fact.deviceCategory,
          fact.platform,
          Object.entries(fact.user).sort(),
          Object.entries(fact.params).sort(),
        ]);
        const existing = p.facts.get(key);
        if (existing) {
          existing.count += fact.count;
          existing.revenue += fact.revenue;
        } else {
          p.facts.set(key, fact);
        }
      }
    },
    clearEvents(propertyId) {
      property(propertyId).facts.clear();
    },
    facts(propertyId) {
      return [...property(propertyId).facts.values()].map((f) => ({ ...f }));
    },
    registerDimension(propertyId, name) {
      if (!CUSTOM_DIMENSION.test(name)) throw new Error(`not a custom dimension name: ${name}`);
      property(propertyId).customDimensions.add(name);
    },
    grantAccess(propertyId, principal) {
      const p = property(propertyId);
      (p.access ??= new Set()).add(principal);
    },
    revokeAccess(propertyId, principal) {
      const p = property(propertyId);
      (p.access ??= new Set()).delete(principal);
    },
    addServiceAccount(account) {
      credentials.serviceAccounts.set(account.clientEmail, account);
    },
    revokeToken(tokenOrEmail) {
      credentials.revoked.add(tokenOrEmail);
    },
    setQuota(propertyId, quota) {
      Object.assign(property(propertyId).quota.quota, quota);
    },
    resetQuota(propertyId) {
      const list = propertyId ? [property(propertyId)] : [...properties.values()];
      for (const p of list) p.quota.reset();
    },
    quotaUsed(propertyId, project = DEFAULT_PROJECT) {
      return property(propertyId).quota.used(project, now());
    },
  };
  return emulator;
}
