/**
 * The real `@mailchimp/mailchimp_marketing` SDK (3.0.80), typed for the calls a segment sync and
 * these tests make. The package ships no types; rather than declare its modules for the whole
 * project, this file loads it with `require` and gives it a local interface (a subset: add methods
 * here as they are needed). Each `createSdkClient` builds an isolated `ApiClient` (the package's
 * main export is a shared singleton), pointed at a base URL (VENDOR-APIS.md §1.1).
 *
 * @example
 * const client = createSdkClient({ url: emulator.url, apiKey: emulator.apiKey });
 * await client.ping.get(); // { health_status: "Everything's Chimpy!" }
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** What the SDK rejects with on an HTTP error (superagent's error) or a network failure. */
export interface MailchimpSdkError extends Error {
  /** The HTTP status; undefined when the connection failed. */
  status?: number;
  response?: {
    status: number;
    headers: Record<string, string>;
    body: Record<string, unknown>;
  };
  /** Node's error code on a network failure, e.g. ECONNRESET. */
  code?: string;
}

export type SdkStatus = 'subscribed' | 'unsubscribed' | 'cleaned' | 'pending' | 'transactional';

export interface SdkMember {
  id: string;
  email_address: string;
  unique_email_id: string;
  status: SdkStatus | 'archived';
  merge_fields: Record<string, unknown>;
  tags?: { id: number; name: string }[];
  tags_count?: number;
  list_id: string;
  [field: string]: unknown;
}

export interface SdkMemberInput {
  email_address?: string;
  status?: SdkStatus;
  status_if_new?: SdkStatus;
  email_type?: string;
  merge_fields?: Record<string, unknown>;
  interests?: Record<string, boolean>;
  language?: string;
  vip?: boolean;
  tags?: string[];
  [field: string]: unknown;
}

export interface SdkBatchResult {
  new_members: SdkMember[];
  updated_members: SdkMember[];
  errors: {
    email_address: string;
    error: string;
    error_code: 'ERROR_CONTACT_EXISTS' | 'ERROR_GENERIC';
    field?: string;
    field_message?: string;
  }[];
  total_created: number;
  total_updated: number;
  error_count: number;
}

export interface SdkSegment {
  id: number;
  name: string;
  member_count: number;
  type: 'saved' | 'static' | 'fuzzy';
  created_at: string;
  updated_at: string;
  list_id: string;
}

export interface SdkSegmentBatchResult {
  members_added: SdkMember[];
  members_removed: SdkMember[];
  errors: { email_addresses: string[]; error: string }[];
  total_added: number;
  total_removed: number;
  error_count: number;
}

export interface SdkMergeField {
  merge_id: number;
  tag: string;
  name: string;
  type: string;
  required: boolean;
  default_value: string;
  public: boolean;
  display_order: number;
  options: Record<string, unknown>;
  help_text: string;
  list_id: string;
}

export interface SdkList {
  id: string;
  web_id: number;
  name: string;
  stats: { member_count: number; unsubscribe_count: number; cleaned_count: number };
  [field: string]: unknown;
}

/** Query options: the SDK takes camelCase or snake_case keys. */
export type SdkOptions = Record<string, string | number | boolean | string[] | undefined>;

export interface MailchimpSdkClient {
  basePath: string;
  /** Per-request timeout in ms (the SDK's default is 120000). */
  timeout: number;
  setConfig(config: { apiKey?: string; accessToken?: string; server?: string }): void;
  ping: { get(): Promise<{ health_status: string }> };
  lists: {
    getAllLists(opts?: SdkOptions): Promise<{ lists: SdkList[]; total_items: number }>;
    getList(listId: string, opts?: SdkOptions): Promise<SdkList>;
    batchListMembers(
      listId: string,
      body: { members: SdkMemberInput[]; update_existing?: boolean; sync_tags?: boolean },
      opts?: SdkOptions,
    ): Promise<SdkBatchResult>;
    addListMember(listId: string, body: SdkMemberInput, opts?: SdkOptions): Promise<SdkMember>;
    setListMember(
      listId: string,
      subscriberHash: string,
      body: SdkMemberInput,
      opts?: SdkOptions,
    ): Promise<SdkMember>;
    getListMember(listId: string, subscriberHash: string, opts?: SdkOptions): Promise<SdkMember>;
    updateListMember(
      listId: string,
      subscriberHash: string,
      body: SdkMemberInput,
      opts?: SdkOptions,
    ): Promise<SdkMember>;
    deleteListMember(listId: string, subscriberHash: string): Promise<null>;
    deleteListMemberPermanent(listId: string, subscriberHash: string): Promise<null>;
    getListMembersInfo(
      listId: string,
      opts?: SdkOptions,
    ): Promise<{ members: SdkMember[]; list_id: string; total_items: number }>;
    getListMergeFields(
      listId: string,
      opts?: SdkOptions,
    ): Promise<{ merge_fields: SdkMergeField[]; list_id: string; total_items: number }>;
    addListMergeField(
      listId: string,
      body: {
        name: string;
        type: string;
        tag?: string;
        required?: boolean;
        [field: string]: unknown;
      },
    ): Promise<SdkMergeField>;
    createSegment(
      listId: string,
      body: { name: string; static_segment?: string[]; options?: Record<string, unknown> },
    ): Promise<SdkSegment>;
    listSegments(
      listId: string,
      opts?: SdkOptions,
    ): Promise<{ segments: SdkSegment[]; list_id: string; total_items: number }>;
    getSegment(listId: string, segmentId: number | string, opts?: SdkOptions): Promise<SdkSegment>;
    updateSegment(
      listId: string,
      segmentId: number | string,
      body: { name: string; static_segment?: string[] },
    ): Promise<SdkSegment>;
    deleteSegment(listId: string, segmentId: number | string): Promise<null>;
    /** Note the order: body first (VENDOR-APIS.md §1.1). */
    batchSegmentMembers(
      body: { members_to_add?: string[]; members_to_remove?: string[] },
      listId: string,
      segmentId: number | string,
    ): Promise<SdkSegmentBatchResult>;
    getSegmentMembersList(
      listId: string,
      segmentId: number | string,
      opts?: SdkOptions,
    ): Promise<{ members: SdkMember[]; total_items: number }>;
    createSegmentMember(
      listId: string,
      segmentId: number | string,
      body: { email_address: string },
    ): Promise<SdkMember>;
    removeSegmentMember(
      listId: string,
      segmentId: number | string,
      subscriberHash: string,
    ): Promise<null>;
    updateListMemberTags(
      listId: string,
      subscriberHash: string,
      body: { tags: { name: string; status: 'active' | 'inactive' }[]; is_syncing?: boolean },
    ): Promise<null>;
    getListMemberTags(
      listId: string,
      subscriberHash: string,
      opts?: SdkOptions,
    ): Promise<{ tags: { id: number; name: string; date_added: string }[]; total_items: number }>;
    tagSearch(
      listId: string,
      opts?: SdkOptions,
    ): Promise<{ tags: { id: number; name: string }[]; total_items: number }>;
  };
}

const ApiClient =
  require('@mailchimp/mailchimp_marketing/src/ApiClient.js') as new () => MailchimpSdkClient;

/**
 * A new, isolated SDK client for `url` (`http://127.0.0.1:<port>/3.0`), authenticating with an
 * API key (Basic) or an OAuth token (Bearer). `server` is left unset on purpose: the SDK would
 * replace the first "server" in the URL with it.
 */
export function createSdkClient(options: {
  url: string;
  apiKey?: string;
  accessToken?: string;
  timeout?: number;
}): MailchimpSdkClient {
  const client = new ApiClient();
  client.basePath = options.url;
  client.setConfig(
    options.accessToken !== undefined
      ? { accessToken: options.accessToken }
      : { apiKey: options.apiKey ?? '' },
  );
  if (options.timeout !== undefined) client.timeout = options.timeout;
  return client;
}
