/**
 * A stateful Mailchimp Marketing API v3 emulator on 127.0.0.1 for the real
 * `@mailchimp/mailchimp_marketing` SDK (set the client's `basePath` to `emulator.url`; see
 * ../shared/VENDOR-APIS.md §1.1). It keeps audiences, members, merge fields, tags and static
 * segments in memory, answers with Mailchimp's bodies and problem documents, enforces Mailchimp's
 * limits (10 simultaneous connections per API key, 500 members per batch call, count ≤ 1000) and
 * injects the faults of `Emulator` (429 / 5xx, dropped connections before or after the change).
 *
 * @example
 * const mailchimp = await startMailchimpEmulator({ validate: true });
 * const list = mailchimp.createList({ name: 'Customers' });
 * const client = createSdkClient({ url: mailchimp.url, apiKey: mailchimp.apiKey });
 * await client.lists.batchListMembers(list.id, { members: [...], update_existing: true });
 * mailchimp.members(list.id); // what Mailchimp now holds
 * expect(mailchimp.violations).toEqual([]);
 * await mailchimp.close();
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { startHttpEmulator, whenAnswered, type Exchange } from '../http-harness.ts';
import type { Emulator, RecordedRequest } from '../types.ts';
import { faultProblem, MailchimpProblem, problems } from './problem.ts';
import { handle, type ApiResponse } from './routes.ts';
import { mailchimpSpec, type SpecViolation } from './spec.ts';
import {
  mailchimpTime,
  MailchimpStore,
  subscriberHash,
  type Audience,
  type Member,
  type MemberStatus,
  type MergeFieldType,
  type Segment,
  type SubscriptionStatus,
} from './store.ts';

export { createSdkClient, type MailchimpSdkClient, type MailchimpSdkError } from './sdk.ts';
export { mailchimpSpec, type SpecViolation } from './spec.ts';
export { subscriberHash, type MemberStatus, type SubscriptionStatus, type MergeFieldType };

export interface MailchimpEmulatorOptions {
  /** Keys (Basic `anystring:<key>`) or OAuth tokens (Bearer) that authenticate. */
  apiKeys?: string[];
  /** Simultaneous requests per key before 429; Mailchimp's limit is 10. */
  maxConnections?: number;
  /** Optional quota of requests per key per minute (not a documented Mailchimp limit). */
  requestsPerMinute?: number;
  /** Check every request and response against the saved spec into `violations`. */
  validate?: boolean;
  /** See StoreOptions.unknownMergeFields: `ignore` (as recorded, the default) or `reject`. */
  unknownMergeFields?: 'ignore' | 'reject';
  /** Port on 127.0.0.1; 0 (any free port) by default. */
  port?: number;
}

/** A member as the emulator holds it, for assertions. */
export interface MemberView {
  id: string;
  email: string;
  /** The subscription status, or `archived`. */
  status: MemberStatus;
  mergeFields: Record<string, unknown>;
  /** Tag names, in the order they were added. */
  tags: string[];
  lastChanged: string;
}

export interface ListView {
  id: string;
  name: string;
  /** Members by status (archived included). */
  counts: Record<MemberStatus, number>;
}

export interface SegmentView {
  id: number;
  name: string;
  type: 'static' | 'saved';
  /** Members held, archived ones excluded. */
  memberCount: number;
}

export interface MergeFieldView {
  id: number;
  tag: string;
  name: string;
  type: MergeFieldType;
  required: boolean;
}

export interface MailchimpEmulator extends Emulator {
  /** `http://127.0.0.1:<port>/3.0`, the SDK's `basePath`. */
  url: string;
  /** The first valid key. */
  apiKey: string;
  /** Spec violations seen while `validate` is on. */
  violations: SpecViolation[];
  /** The most requests in flight at once for any one key, and how many the limit refused. */
  stats: { peakInFlight: number; refusedForConcurrency: number };

  /** Creates an audience, with Mailchimp's default merge fields (FNAME, LNAME, ADDRESS, PHONE). */
  createList(input?: { id?: string; name?: string; defaultMergeFields?: boolean }): ListView;
  /** Deletes an audience on the Mailchimp side: its calls answer 404 from now on. */
  deleteList(listId: string): void;
  list(listId: string): ListView | undefined;
  /** Adds a merge field as an account owner would in the Mailchimp app. */
  addMergeField(
    listId: string,
    field: { tag: string; name?: string; type?: MergeFieldType; required?: boolean },
  ): MergeFieldView;
  mergeFields(listId: string): MergeFieldView[];
  /** Puts a contact on the audience directly (someone else's contact, or a prepared state). */
  addMember(
    listId: string,
    member: {
      email: string;
      status?: SubscriptionStatus;
      mergeFields?: Record<string, unknown>;
      tags?: string[];
    },
  ): MemberView;
  /** One member by address or subscriber hash, archived ones included. */
  member(listId: string, emailOrHash: string): MemberView | undefined;
  /** Members in insertion order; archived ones only with `status: 'archived'`. */
  members(listId: string, filter?: { status?: MemberStatus }): MemberView[];
  memberCount(listId: string, status?: MemberStatus): number;
  /**
   * What the person (or Mailchimp) did: `unsubscribed` (opted out), `cleaned` (bounced),
   * `pending`, `subscribed`, or `archived` by the account owner. No compliance rule applies here.
   */
  setMemberStatus(listId: string, email: string, status: MemberStatus): void;
  /** A GDPR erasure: the member is deleted and the address can never be re-imported. */
  forgetMember(listId: string, email: string): void;
  /** Creates a tag (a static segment). */
  createTag(listId: string, name: string): SegmentView;
  segments(listId: string, filter?: { type?: 'static' | 'saved' }): SegmentView[];
  /** Deletes a tag or segment on the Mailchimp side, by id or name. */
  deleteSegment(listId: string, idOrName: number | string): void;
  /** Addresses in a tag or segment, archived members excluded. */
  segmentMembers(listId: string, idOrName: number | string): string[];
  /** Tag names of a member. */
  memberTags(listId: string, email: string): string[];
}

/** A path segment as sent; a malformed escape names nothing, so it is a 404. */
function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw problems.notFound();
  }
}

/**
 * Starts the emulator on 127.0.0.1.
 *
 * @example
 * const mailchimp = await startMailchimpEmulator({ apiKeys: ['key-us1'] });
 */
export async function startMailchimpEmulator(
  options: MailchimpEmulatorOptions = {},
): Promise<MailchimpEmulator> {
  const keys = new Set(options.apiKeys ?? ['emulator-key-us1']);
  const maxConnections = options.maxConnections ?? 10;
  const store = new MailchimpStore({ unknownMergeFields: options.unknownMergeFields ?? 'ignore' });
  const spec = options.validate ? mailchimpSpec() : undefined;
  const inFlight = new Map<string, number>();
  const minuteWindows = new Map<string, { start: number; count: number }>();
  let baseUrl = '';

  const violations: SpecViolation[] = [];
  const stats = { peakInFlight: 0, refusedForConcurrency: 0 };

  function send(
    res: ServerResponse,
    record: RecordedRequest,
    answer: ApiResponse | MailchimpProblem,
    requestId: string,
    check?: { method: string; path: string },
  ): void {
    let status: number;
    let body: Record<string, unknown> | undefined;
    let contentType: string | undefined;
    const headers: Record<string, string> = { 'X-Request-Id': requestId };
    if (answer instanceof MailchimpProblem) {
      status = answer.status;
      body = answer.body(requestId);
      contentType = 'application/problem+json; charset=utf-8';
      Object.assign(headers, answer.headers);
      headers.Link =
        '<https://us1.api.mailchimp.com/schema/3.0/Definitions/ProblemDetailDocument.json>; rel="describedBy"';
    } else {
      status = answer.status;
      body = answer.body;
      if (body) contentType = 'application/json; charset=utf-8';
    }
    if (spec && check) {
      violations.push(
        ...spec.checkResponse({
          method: check.method,
          path: check.path,
          status,
          contentType,
          body,
        }),
      );
    }
    record.status = status;
    const text = body === undefined ? '' : JSON.stringify(body);
    if (contentType) headers['Content-Type'] = contentType;
    headers['Content-Length'] = String(Buffer.byteLength(text));
    res.writeHead(status, headers);
    res.end(text);
  }

  /** Counts the request against its key's simultaneous-connection limit until it is answered. */
  function acquire(key: string, res: ServerResponse): boolean {
    const current = inFlight.get(key) ?? 0;
    if (current >= maxConnections) {
      stats.refusedForConcurrency++;
      return false;
    }
    inFlight.set(key, current + 1);
    stats.peakInFlight = Math.max(stats.peakInFlight, current + 1);
    whenAnswered(res, () => inFlight.set(key, (inFlight.get(key) ?? 1) - 1));
    return true;
  }

  function authenticate(req: IncomingMessage): string | MailchimpProblem {
    const header = req.headers.authorization;
    if (!header) return problems.apiKeyMissing();
    const [scheme, credentials = ''] = header.split(' ', 2);
    let key: string | undefined;
    if (scheme?.toLowerCase() === 'basic') {
      // Basic `anystring:<apiKey>`: the user name is ignored.
      const decoded = Buffer.from(credentials, 'base64').toString('utf8');
      key = decoded.slice(decoded.indexOf(':') + 1);
    } else if (scheme?.toLowerCase() === 'bearer') key = credentials;
    return key && keys.has(key) ? key : problems.apiKeyInvalid();
  }

  function overMinuteQuota(key: string): boolean {
    if (!options.requestsPerMinute) return false;
    const now = Date.now();
    let window = minuteWindows.get(key);
    if (!window || now - window.start >= 60_000)
      minuteWindows.set(key, (window = { start: now, count: 0 }));
    return ++window.count > options.requestsPerMinute;
  }

  async function serve({
    req,
    res,
    record,
    url,
    body: raw,
    delay,
    takeFault,
  }: Exchange<RecordedRequest>): Promise<void> {
    const requestId = randomUUID();
    const method = (req.method ?? 'GET').toUpperCase();
    const inApi = url.pathname === '/3.0' || url.pathname.startsWith('/3.0/');
    const path = url.pathname.slice('/3.0'.length) || '/';
    // Every answer to an API path is checked against the spec, error answers included.
    const check = inApi ? { method, path } : undefined;
    const answer = async (reply: ApiResponse | MailchimpProblem) => {
      await delay();
      send(res, record, reply, requestId, check);
    };

    const auth = authenticate(req);
    if (auth instanceof MailchimpProblem) return answer(auth);
    if (!acquire(auth, res)) return answer(problems.tooManyConnections(maxConnections));
    if (overMinuteQuota(auth)) {
      return answer(problems.tooManyRequestsPerMinute(options.requestsPerMinute!));
    }

    await delay();
    const fault = takeFault();
    if (fault?.kind === 'status') {
      const problem = faultProblem(fault.status, maxConnections);
      // Mailchimp itself sends no Retry-After (VENDOR-APIS.md §1.3); a fault may add one.
      if (fault.retryAfterSeconds !== undefined) {
        problem.headers['Retry-After'] = String(fault.retryAfterSeconds);
      }
      send(res, record, problem, requestId, check);
      return;
    }
    if (fault?.kind === 'drop') {
      res.socket?.destroy();
      return;
    }
    if (!inApi) {
      send(res, record, problems.notFound(), requestId);
      return;
    }
    const text = raw.toString('utf8');
    let body: unknown;
    if (text.trim() !== '') {
      try {
        body = JSON.parse(text);
      } catch {
        send(res, record, problems.jsonParse(), requestId, check);
        return;
      }
    }
    if (spec)
      violations.push(...spec.checkRequest({ method, path, query: url.searchParams, body }));

    let reply: ApiResponse | MailchimpProblem;
    try {
      const segments = path.split('/').filter(Boolean).map(decodeSegment);
      reply = handle(store, {
        method,
        segments,
        query: url.searchParams,
        body,
        baseUrl,
        now: mailchimpTime(),
      });
    } catch (error) {
      if (!(error instanceof MailchimpProblem)) throw error;
      reply = error;
    }
    if (fault?.kind === 'drop-after-apply') {
      record.status = 0;
      res.socket?.destroy();
      return;
    }
    send(res, record, reply, requestId, check);
  }

  const http = await startHttpEmulator({
    port: options.port,
    handle: serve,
    onError(error, { res, record }) {
      // A bug in the emulator: answer like Mailchimp's 500 rather than hang the client.
      console.error('mailchimp emulator:', error);
      if (!res.headersSent) send(res, record, faultProblem(500, maxConnections), randomUUID());
    },
  });
  baseUrl = `${http.url}/3.0`;

  // ---- helpers for tests: Mailchimp as its users and its app would change it ------------------

  const listOf = (listId: string): Audience => {
    const list = store.lists.get(listId);
    if (!list) throw new Error(`no audience ${listId} in the emulator`);
    return list;
  };
  const memberOf = (list: Audience, email: string): Member => {
    const member = list.findMember(email);
    if (!member) throw new Error(`${email} is not a member of ${list.id}`);
    return member;
  };
  const segmentOf = (list: Audience, idOrName: number | string): Segment => {
    const segment =
      typeof idOrName === 'number' ? list.segments.get(idOrName) : list.segmentByName(idOrName);
    if (!segment) throw new Error(`no segment ${idOrName} in ${list.id}`);
    return segment;
  };
  const memberView = (member: Member): MemberView => ({
    id: member.id,
    email: member.email,
    status: member.archived ? 'archived' : member.status,
    mergeFields: { ...member.mergeFields },
    tags: member.tags.map((tag) => tag.name),
    lastChanged: member.lastChanged,
  });
  const listView = (list: Audience): ListView => ({
    id: list.id,
    name: list.name,
    counts: { ...list.counts },
  });
  const segmentView = (segment: Segment): SegmentView => ({
    id: segment.id,
    name: segment.name,
    type: segment.type,
    memberCount: segment.activeCount,
  });
  const mergeFieldView = (field: {
    id: number;
    tag: string;
    name: string;
    type: MergeFieldType;
    required: boolean;
  }): MergeFieldView => ({
    id: field.id,
    tag: field.tag,
    name: field.name,
    type: field.type,
    required: field.required,
  });

  return {
    ...http,
    url: baseUrl,
    apiKey: [...keys][0]!,
    violations,
    stats,

    createList(input = {}) {
      return listView(
        store.createList({
          id: input.id,
          name: input.name,
          withDefaultMergeFields: input.defaultMergeFields,
        }),
      );
    },
    deleteList(listId) {
      listOf(listId);
      store.lists.delete(listId);
    },
    list(listId) {
      const list = store.lists.get(listId);
      return list && listView(list);
    },
    addMergeField(listId, field) {
      return mergeFieldView(
        listOf(listId).addMergeField({
          tag: field.tag,
          name: field.name ?? field.tag,
          type: field.type ?? 'text',
          required: field.required,
        }),
      );
    },
    mergeFields(listId) {
      return [...listOf(listId).mergeFields.values()].map(mergeFieldView);
    },
    addMember(listId, input) {
      const list = listOf(listId);
      const now = mailchimpTime();
      const member = list.upsertMember(
        input.email,
        {
          email_address: input.email,
          status_if_new: input.status ?? 'subscribed',
          merge_fields: input.mergeFields,
          tags: input.tags,
        },
        { skipMergeValidation: true },
        now,
      );
      return memberView(member);
    },
    member(listId, emailOrHash) {
      const member = listOf(listId).findMember(emailOrHash);
      return member && memberView(member);
    },
    members(listId, filter = {}) {
      return listOf(listId).listMembers(filter.status).map(memberView);
    },
    memberCount(listId, status) {
      const list = listOf(listId);
      if (status) return list.counts[status];
      return list.members.size - list.counts.archived;
    },
    setMemberStatus(listId, email, status) {
      const list = listOf(listId);
      const member = memberOf(list, email);
      const now = mailchimpTime();
      if (status === 'archived') list.archive(member, now);
      else list.setStatus(member, status, now, 'N/A (Unsubscribed by the contact)');
    },
    forgetMember(listId, email) {
      const list = listOf(listId);
      list.forget(memberOf(list, email));
    },
    createTag(listId, name) {
      const list = listOf(listId);
      return segmentView(list.createSegment({ name, type: 'static' }, mailchimpTime()));
    },
    segments(listId, filter = {}) {
      const list = listOf(listId);
      return [...list.segments.values()]
        .filter((segment) => !filter.type || segment.type === filter.type)
        .map((segment) => segmentView(segment));
    },
    deleteSegment(listId, idOrName) {
      const list = listOf(listId);
      list.deleteSegment(segmentOf(list, idOrName));
    },
    segmentMembers(listId, idOrName) {
      const list = listOf(listId);
      return list
        .segmentMembers(segmentOf(list, idOrName), {
          cleaned: true,
          transactional: true,
          unsubscribed: true,
        })
        .map((member) => member.email);
    },
    memberTags(listId, email) {
      const list = listOf(listId);
      return memberOf(list, email).tags.map((tag) => tag.name);
    },
  };
}
