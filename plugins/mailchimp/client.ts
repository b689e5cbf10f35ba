/**
 * Mailchimp's transport: the configuration, the official `@mailchimp/mailchimp_marketing` SDK
 * set up per config, and the one place its failures are turned into the SDK's error kinds
 * (`call`). The package ships no types and its main export is a shared singleton, so this file
 * loads its `ApiClient` class with `require` and types the subset a segment sync uses.
 */
import { createRequire } from 'node:module';
import {
  classifyHttpFailure,
  ConfigError,
  secret,
  TransientError,
  VendorError,
  z,
  type DestinationCheck,
} from 'audiencehub/sdk';

export const MailchimpConfig = z.object({
  /** `<32 hex>-us6`: the suffix names the data centre the API lives in. */
  apiKey: secret(z.string().min(1)),
  /** The audience (list) id, e.g. `a1b2c3d4e5`. */
  listId: z.string().min(1),
  /** The tag members of the segment carry; the segment's name when unset. */
  tagName: z.string().min(1).max(100).optional(),
  /** The API's base URL, for proxies and emulators; `https://<dc>.api.mailchimp.com/3.0` by default. */
  baseUrl: z.url({ protocol: /^https?$/ }).optional(),
  /** New members are `pending` (Mailchimp sends a confirmation email) instead of `subscribed`. */
  doubleOptIn: z.boolean().default(false),
  /**
   * A member the hub added to the audience (row state `created`) is archived as well as
   * untagged on leaving the segment; contacts who were there before are only untagged. Off
   * unless asked for.
   */
  archiveOnRemove: z.boolean().default(false),
});
export type MailchimpConfig = z.infer<typeof MailchimpConfig>;

/** The API's base URL for a config: the override, or the data centre named by the key. */
export function basePath(config: Pick<MailchimpConfig, 'apiKey' | 'baseUrl'>): string {
  if (config.baseUrl) return config.baseUrl.replace(/\/+$/, '');
  const dc = /-([a-z]+\d+)$/.exec(config.apiKey)?.[1];
  if (!dc) {
    throw new ConfigError(
      'The Mailchimp API key should end with its data centre, e.g. "-us6" (Account → Extras → API keys).',
    );
  }
  return `https://${dc}.api.mailchimp.com/3.0`;
}

export type MemberStatus =
  'subscribed' | 'unsubscribed' | 'cleaned' | 'pending' | 'transactional' | 'archived';

export interface MemberInput {
  email_address: string;
  status?: 'subscribed' | 'pending';
  merge_fields?: Record<string, unknown>;
  /** Tag names to add (README.md, "Vendor notes"); never with `sync_tags`, which replaces. */
  tags?: string[];
}

/** A member as batch subscribe answers it: the fields this plugin reads. */
export interface BatchMember {
  email_address: string;
  status: MemberStatus;
  tags?: { id: number; name: string }[];
}

export interface BatchSubscribeResult {
  new_members: BatchMember[];
  updated_members: BatchMember[];
  errors: {
    email_address: string;
    error: string;
    error_code: 'ERROR_CONTACT_EXISTS' | 'ERROR_GENERIC';
    field?: string;
    field_message?: string;
  }[];
}

export interface Segment {
  id: number;
  name: string;
  type: 'saved' | 'static' | 'fuzzy';
}

export interface MergeField {
  merge_id: number;
  tag: string;
  name: string;
  type: string;
  required: boolean;
}

/** The SDK calls this plugin makes (see VENDOR-APIS.md §1 for the package's quirks). */
export interface MailchimpSdk {
  basePath: string;
  setConfig(config: { apiKey: string }): void;
  ping: { get(): Promise<{ health_status: string }> };
  lists: {
    getList(listId: string, opts?: Record<string, unknown>): Promise<{ id: string; name: string }>;
    batchListMembers(
      listId: string,
      body: { members: MemberInput[]; update_existing: boolean },
    ): Promise<BatchSubscribeResult>;
    deleteListMember(listId: string, subscriberHash: string): Promise<null>;
    getListMergeFields(
      listId: string,
      opts: { count: number; offset: number },
    ): Promise<{ merge_fields: MergeField[]; total_items: number }>;
    addListMergeField(
      listId: string,
      body: { name: string; tag: string; type: string },
    ): Promise<MergeField>;
    listSegments(
      listId: string,
      opts: { type: 'static'; count: number; offset: number },
    ): Promise<{ segments: Segment[]; total_items: number }>;
    getSegment(listId: string, segmentId: number): Promise<Segment>;
    createSegment(
      listId: string,
      body: { name: string; static_segment: string[] },
    ): Promise<Segment>;
    /** Body first, unlike every other method (VENDOR-APIS.md §1.1). */
    batchSegmentMembers(
      body: { members_to_add?: string[]; members_to_remove?: string[] },
      listId: string,
      segmentId: number,
    ): Promise<{ errors: { email_addresses: string[]; error: string }[] }>;
  };
}

const require = createRequire(import.meta.url);
const ApiClient =
  require('@mailchimp/mailchimp_marketing/src/ApiClient.js') as new () => MailchimpSdk;

/** What the SDK (superagent 3) rejects with: an HTTP error, or a network one without status. */
interface SdkFailure {
  status?: number;
  code?: string;
  timeout?: number;
  response?: { headers?: Record<string, string>; body?: unknown };
}

/** One SDK call, named for error messages: `GET /lists/{id}` and how to make it. */
export interface Mailchimp {
  call<T>(method: string, path: string, run: (sdk: MailchimpSdk) => Promise<T>): Promise<T>;
}

/**
 * A client for one config: an isolated `ApiClient` (the package's default export is shared by
 * everything in the process), with `server` left unset: the SDK would replace the first
 * "server" anywhere in the URL with it.
 */
export function mailchimp(config: MailchimpConfig): Mailchimp {
  const url = basePath(config);
  const sdk = new ApiClient();
  sdk.basePath = url;
  sdk.setConfig({ apiKey: config.apiKey });
  return {
    async call(method, path, run) {
      try {
        return await run(sdk);
      } catch (error) {
        throw wrap(error, method, `${url}${path}`);
      }
    },
  };
}

/**
 * The SDK's failure as one of the hub's error kinds, built afresh: superagent's error holds the
 * request and its Authorization header, so it never leaves this file, not even as a `cause`.
 */
function wrap(error: unknown, method: string, url: string): Error {
  const failure = (error ?? {}) as SdkFailure;
  if (typeof failure.status === 'number') {
    const classified = classifyHttpFailure('Mailchimp', {
      method,
      url,
      status: failure.status,
      headers: failure.response?.headers,
      body: failure.response?.body,
    });
    if (classified instanceof ConfigError && failure.status === 401) {
      return new ConfigError(`${classified.message} — check the API key.`);
    }
    return classified;
  }
  const code = failure.code ?? (failure.timeout ? 'timeout' : 'connection lost');
  return new TransientError(`Mailchimp could not be reached for ${method} ${url}: ${code}`);
}

/** A 404 answered by Mailchimp: the audience, tag or member named in the path is gone. */
export const isNotFound = (error: unknown) =>
  error instanceof VendorError && error.request.status === 404;

/** The error for an audience Mailchimp no longer has. */
export const audienceDeleted = (config: MailchimpConfig) =>
  new ConfigError(
    `The Mailchimp audience ${config.listId} was deleted in Mailchimp (or this API key cannot see it); choose another audience.`,
  );

/** Throws `audienceDeleted` when the audience is gone; true while it exists. */
export async function assertAudience(client: Mailchimp, config: MailchimpConfig): Promise<void> {
  try {
    await client.call('GET', `/lists/${config.listId}`, (sdk) =>
      sdk.lists.getList(config.listId, { fields: ['id', 'name'] }),
    );
  } catch (error) {
    throw isNotFound(error) ? audienceDeleted(config) : error;
  }
}

/** The key works and the audience exists; otherwise why not. */
export const check: DestinationCheck<MailchimpConfig> = async ({ config }) => {
  try {
    const client = mailchimp(config);
    await client.call('GET', '/ping', (sdk) => sdk.ping.get());
    await client.call('GET', `/lists/${config.listId}`, (sdk) =>
      sdk.lists.getList(config.listId, { fields: ['id', 'name'] }),
    );
    return { ok: true };
  } catch (error) {
    if (isNotFound(error)) {
      return { ok: false, reason: `Mailchimp audience ${config.listId} not found.` };
    }
    return { ok: false, reason: error instanceof Error ? error.message : String(error) };
  }
};
