/**
 * HubSpot's transport: the configuration, the one place the connector's HTTP goes through (the
 * SDK's client, which retries 429, 5xx and dropped connections honouring Retry-After), and
 * `check`. A private app's token is sent as `Authorization: Bearer <token>`
 * (https://developers.hubspot.com/docs/api/private-apps); the client never puts a header in an
 * error, so the token cannot leak through one.
 */
import {
  ConfigError,
  secret,
  z,
  type HttpRequest,
  type PluginContext,
  type SourceCheck,
} from 'audiencehub/sdk';

export const HubSpotConfig = z.object({
  /** The API's base URL, for a proxy or an emulator. */
  baseUrl: z.url({ protocol: /^https?$/ }).default('https://api.hubapi.com'),
  /** A private app's access token (`pat-na1-…`), from Settings → Integrations → Private Apps. */
  accessToken: secret(z.string().trim().min(1)),
});
export type HubSpotConfig = z.infer<typeof HubSpotConfig>;

/** The scopes the private app needs, by what they let the connector read. */
export const SCOPES = {
  contacts: 'crm.objects.contacts.read',
  owners: 'crm.objects.owners.read',
} as const;

/** A CRM object as the v3 API answers it: every property value a string or null. */
export interface CrmObject {
  id: string;
  properties: Record<string, string | null | undefined>;
  createdAt: string;
  updatedAt: string;
  archived?: boolean;
}

/** A page of a listing; `paging.next.after` asks for the next one. */
export interface Page<T> {
  results: T[];
  paging?: { next?: { after: string; link?: string } };
}

export interface SearchFilter {
  propertyName: string;
  operator: 'EQ' | 'GT';
  value: string;
}

/** The search body the connector sends (https://developers.hubspot.com/docs/api/crm/search). */
export interface SearchRequest {
  filterGroups: { filters: SearchFilter[] }[];
  /** HubSpot applies one sorting rule at most. */
  sorts: [{ propertyName: string; direction: 'ASCENDING' | 'DESCENDING' }];
  properties: string[];
  limit: number;
}

export interface HubSpot {
  get<T>(path: string, query: HttpRequest['query'], scope: string): Promise<T>;
  search(body: SearchRequest): Promise<Page<CrmObject> & { total: number }>;
}

/**
 * A client for one configuration and one call (`ctx`: its signal and retries).
 *
 * @example
 * const api = hubspot(config, ctx);
 * const page = await api.get<Page<CrmObject>>('/crm/v3/objects/contacts', { limit: 100 }, SCOPES.contacts);
 */
export function hubspot(config: HubSpotConfig, ctx: PluginContext): HubSpot {
  const http = ctx.http({
    baseUrl: config.baseUrl.replace(/\/+$/, ''),
    vendor: 'HubSpot',
    headers: { Authorization: `Bearer ${config.accessToken}` },
  });
  const call = async <T>(request: HttpRequest, scope: string): Promise<T> => {
    try {
      return (await http.request<T>(request)).data;
    } catch (error) {
      throw explained(error, scope);
    }
  };
  return {
    get: (path, query, scope) => call({ method: 'GET', path, query }, scope),
    // A search changes nothing: retrying one after a dropped connection is safe.
    search: (body) =>
      call({ method: 'POST', path: '/crm/v3/objects/contacts/search', body }, SCOPES.contacts),
  };
}

/**
 * The SDK's ConfigError (401 or 403) with what to do about it. Its message already holds the
 * method, the URL without query and HubSpot's own words, never the token.
 */
function explained(error: unknown, scope: string): unknown {
  if (!(error instanceof ConfigError)) return error;
  if (/ answered 401 /.test(error.message)) {
    return new ConfigError(
      `${error.message} — HubSpot did not accept the access token: copy it again from the private app (Settings → Integrations → Private Apps).`,
    );
  }
  return new ConfigError(
    `${error.message} — give the private app the ${scope} scope (it needs ${Object.values(SCOPES).join(' and ')}).`,
  );
}

/** The token works and has both scopes; otherwise why not. One contact and one owner read. */
export const check: SourceCheck<HubSpotConfig> = async ({ config }, ctx) => {
  try {
    const api = hubspot(config, ctx);
    await api.get('/crm/v3/objects/contacts', { limit: 1, properties: 'email' }, SCOPES.contacts);
    await api.get('/crm/v3/owners', { limit: 1 }, SCOPES.owners);
    return { ok: true };
  } catch (error) {
    return { ok: false, reason: error instanceof Error ? error.message : String(error) };
  }
};
