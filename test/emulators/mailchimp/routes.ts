/**
 * The emulated endpoints of the Mailchimp Marketing API v3, one function per resource, each
 * taking the parsed request and returning the status and body (or throwing a MailchimpProblem).
 * Paths are relative to `/3.0`.
 */
import { problems } from './problem.ts';
import {
  collectionLinks,
  listJson,
  memberJson,
  mergeFieldJson,
  project,
  segmentJson,
  type Json,
} from './render.ts';
import {
  MAX_COUNT,
  MERGE_FIELD_TYPES,
  SUBSCRIPTION_STATUSES,
  type Audience,
  type MailchimpStore,
  type MemberStatus,
  type MergeFieldType,
  type Segment,
} from './store.ts';

export interface ApiRequest {
  method: string;
  /** Decoded path segments after `/3.0`, e.g. `['lists', 'abc', 'members']`. */
  segments: string[];
  query: URLSearchParams;
  body: unknown;
  /** `http://127.0.0.1:<port>/3.0`, for `_links`. */
  baseUrl: string;
  /** The request's time in Mailchimp's format, shared by everything it changes. */
  now: string;
}

export interface ApiResponse {
  status: number;
  body?: Json;
}

const ok = (body: Json): ApiResponse => ({ status: 200, body });
const noContent: ApiResponse = { status: 204 };

function allow(req: ApiRequest, methods: string[]): void {
  if (!methods.includes(req.method)) throw problems.methodNotAllowed(methods);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `count` (default 10, at most 1000 per spec; larger values are clamped) and `offset`. */
function page(query: URLSearchParams): { count: number; offset: number } {
  const count = Number.parseInt(query.get('count') ?? '', 10);
  const offset = Number.parseInt(query.get('offset') ?? '', 10);
  return {
    count: Number.isFinite(count) && count >= 0 ? Math.min(count, MAX_COUNT) : 10,
    offset: Number.isFinite(offset) && offset >= 0 ? offset : 0,
  };
}

function slice<T>(items: T[], query: URLSearchParams): T[] {
  const { count, offset } = page(query);
  return items.slice(offset, offset + count);
}

function flag(query: URLSearchParams, name: string): boolean {
  return query.get(name) === 'true';
}

function csv(query: URLSearchParams, name: string): string[] | undefined {
  const value = query.get(name);
  return value ? value.split(',').map((part) => part.trim()) : undefined;
}

/** Routes one request. Throws MailchimpProblem for every error answer. */
export function handle(store: MailchimpStore, req: ApiRequest): ApiResponse {
  const response = route(store, req);
  const fields = csv(req.query, 'fields');
  const exclude = csv(req.query, 'exclude_fields');
  if (response.body && (fields || exclude)) {
    return { status: response.status, body: project(response.body, fields, exclude) };
  }
  return response;
}

function route(store: MailchimpStore, req: ApiRequest): ApiResponse {
  const [first, listId, resource, ...rest] = req.segments;
  if (first === undefined) {
    allow(req, ['GET']);
    return ok(root(store, req));
  }
  if (first === 'ping' && listId === undefined) {
    allow(req, ['GET']);
    // "This will return a constant string value if the request is successful."
    return ok({ health_status: "Everything's Chimpy!" });
  }
  if (first !== 'lists') throw problems.notFound();
  if (listId === undefined) return lists(store, req);
  const list = store.lists.get(listId);
  if (!list) throw problems.notFound();
  switch (resource) {
    case undefined:
      return listResource(store, list, req);
    case 'members':
      return members(list, req, rest);
    case 'merge-fields':
      return mergeFields(list, req, rest);
    case 'segments':
      return segments(list, req, rest);
    case 'tag-search':
      if (rest.length) throw problems.notFound();
      return tagSearch(list, req);
    default:
      throw problems.notFound();
  }
}

function root(store: MailchimpStore, req: ApiRequest): Json {
  let total = 0;
  for (const list of store.lists.values()) total += list.counts.subscribed;
  return {
    account_id: 'emulator0000000000000000',
    login_id: '1000',
    account_name: 'audiencehub emulator',
    email: 'owner@example.com',
    first_name: 'Emulated',
    last_name: 'Owner',
    username: 'emulator',
    role: 'owner',
    pro_enabled: false,
    account_timezone: 'UTC',
    total_subscribers: total,
    _links: collectionLinks(`${req.baseUrl}/`),
  };
}

// ---- lists --------------------------------------------------------------------------------

function lists(store: MailchimpStore, req: ApiRequest): ApiResponse {
  allow(req, ['GET', 'POST']);
  if (req.method === 'POST') {
    const body = req.body;
    if (!isObject(body))
      throw problems.invalid([{ field: '', message: 'Schema describes object' }]);
    const missing = [
      'name',
      'contact',
      'permission_reminder',
      'email_type_option',
      'campaign_defaults',
    ]
      .filter((key) => body[key] === undefined)
      .map((key) => ({ field: key, message: 'This value should not be blank.' }));
    if (missing.length) throw problems.invalid(missing);
    if (typeof body.name !== 'string') {
      throw problems.invalid([{ field: 'name', message: 'Schema describes string' }]);
    }
    return ok(listJson(store.createList({ name: body.name }), req.baseUrl));
  }
  const all = [...store.lists.values()];
  return ok({
    lists: slice(all, req.query).map((list) => listJson(list, req.baseUrl)),
    total_items: all.length,
    constraints: { may_create: true, max_instances: 100, current_total_instances: all.length },
    _links: collectionLinks(`${req.baseUrl}/lists`),
  });
}

function listResource(store: MailchimpStore, list: Audience, req: ApiRequest): ApiResponse {
  allow(req, ['GET', 'POST', 'PATCH', 'DELETE']);
  switch (req.method) {
    case 'GET':
      return ok(listJson(list, req.baseUrl));
    case 'PATCH':
      if (isObject(req.body) && typeof req.body.name === 'string') list.name = req.body.name;
      return ok(listJson(list, req.baseUrl));
    case 'DELETE':
      store.lists.delete(list.id);
      return noContent;
    default:
      return batchSubscribe(list, req);
  }
}

function batchSubscribe(list: Audience, req: ApiRequest): ApiResponse {
  const result = list.batchSubscribe(
    req.body,
    {
      skipMergeValidation: flag(req.query, 'skip_merge_validation'),
      skipDuplicateCheck: flag(req.query, 'skip_duplicate_check'),
    },
    req.now,
  );
  return ok({
    new_members: result.created.map((member) => memberJson(list, member, 'batch')),
    updated_members: result.updated.map((member) => memberJson(list, member, 'batch')),
    errors: result.errors,
    total_created: result.created.length,
    total_updated: result.updated.length,
    error_count: result.errors.length,
    _links: collectionLinks(`${req.baseUrl}/lists/${list.id}`),
  });
}

// ---- members ------------------------------------------------------------------------------

function members(list: Audience, req: ApiRequest, rest: string[]): ApiResponse {
  const [hash, sub, action, ...extra] = rest;
  const skipMergeValidation = flag(req.query, 'skip_merge_validation');
  if (hash === undefined) {
    allow(req, ['GET', 'POST']);
    if (req.method === 'POST') {
      const member = list.addMember(req.body, { skipMergeValidation }, req.now);
      return ok(memberJson(list, member, 'full', req.baseUrl));
    }
    const status = req.query.get('status') ?? undefined;
    if (status && status !== 'archived' && !SUBSCRIPTION_STATUSES.includes(status as never)) {
      throw problems.invalid([{ field: 'status', message: 'Invalid status' }]);
    }
    const all = list.listMembers(status as MemberStatus | undefined);
    return ok({
      members: slice(all, req.query).map((member) => memberJson(list, member, 'full')),
      list_id: list.id,
      total_items: all.length,
      _links: collectionLinks(`${req.baseUrl}/lists/${list.id}/members`),
    });
  }
  if (sub === undefined) {
    allow(req, ['GET', 'PUT', 'PATCH', 'DELETE']);
    switch (req.method) {
      case 'GET': {
        const member = list.findMember(hash);
        if (!member) throw problems.notFound();
        return ok(memberJson(list, member, 'full', req.baseUrl));
      }
      case 'PUT': {
        const member = list.upsertMember(hash, req.body, { skipMergeValidation }, req.now);
        return ok(memberJson(list, member, 'full', req.baseUrl));
      }
      case 'PATCH': {
        const member = list.patchMember(hash, req.body, { skipMergeValidation }, req.now);
        return ok(memberJson(list, member, 'full', req.baseUrl));
      }
      default:
        list.archiveMember(hash, req.now);
        return noContent;
    }
  }
  if (sub === 'tags' && action === undefined) {
    allow(req, ['GET', 'POST']);
    if (req.method === 'POST') {
      list.updateMemberTags(hash, req.body, req.now);
      return noContent;
    }
    const member = list.activeMember(hash);
    if (!member) throw problems.notFound();
    const tags = member.tags.map((tag) => ({
      id: tag.id,
      name: tag.name,
      date_added: tag.members.get(member) ?? '',
    }));
    return ok({
      tags: slice(tags, req.query),
      total_items: tags.length,
      _links: collectionLinks(`${req.baseUrl}/lists/${list.id}/members/${member.id}/tags`),
    });
  }
  if (sub === 'actions' && action === 'delete-permanent' && extra.length === 0) {
    allow(req, ['POST']);
    list.deleteMemberPermanently(hash);
    return noContent;
  }
  throw problems.notFound();
}

// ---- merge fields -------------------------------------------------------------------------

function mergeFields(list: Audience, req: ApiRequest, rest: string[]): ApiResponse {
  const [id, ...extra] = rest;
  if (extra.length) throw problems.notFound();
  if (id === undefined) {
    allow(req, ['GET', 'POST']);
    if (req.method === 'POST') return ok(addMergeField(list, req));
    const type = req.query.get('type');
    const required = req.query.get('required');
    const all = [...list.mergeFields.values()].filter(
      (field) =>
        (!type || field.type === type) &&
        (required === null || String(field.required) === required),
    );
    return ok({
      merge_fields: slice(all, req.query).map((field) => mergeFieldJson(list, field)),
      list_id: list.id,
      total_items: all.length,
      _links: collectionLinks(`${req.baseUrl}/lists/${list.id}/merge-fields`),
    });
  }
  allow(req, ['GET', 'DELETE']);
  const field = /^\d+$/.test(id) ? list.mergeFieldById(Number(id)) : undefined;
  if (!field) throw problems.notFound();
  if (req.method === 'DELETE') {
    list.deleteMergeField(field);
    return noContent;
  }
  return ok(mergeFieldJson(list, field, req.baseUrl));
}

function addMergeField(list: Audience, req: ApiRequest): Json {
  const body = req.body;
  if (!isObject(body)) throw problems.invalid([{ field: '', message: 'Schema describes object' }]);
  const errors = [];
  if (typeof body.name !== 'string' || body.name.trim() === '') {
    errors.push({ field: 'name', message: 'This value should not be blank.' });
  }
  if (!MERGE_FIELD_TYPES.includes(body.type as MergeFieldType)) {
    errors.push({
      field: 'type',
      message: `Value must be one of: ${MERGE_FIELD_TYPES.join(', ')}`,
    });
  }
  if (body.tag !== undefined && typeof body.tag !== 'string') {
    errors.push({ field: 'tag', message: 'Schema describes string' });
  }
  if (errors.length) throw problems.invalid(errors);
  const options = isObject(body.options) ? body.options : undefined;
  const field = list.addMergeField({
    tag: body.tag as string | undefined,
    name: body.name as string,
    type: body.type as MergeFieldType,
    required: body.required === true,
    defaultValue: typeof body.default_value === 'string' ? body.default_value : undefined,
    public: typeof body.public === 'boolean' ? body.public : undefined,
    displayOrder: typeof body.display_order === 'number' ? body.display_order : undefined,
    options: options as never,
    helpText: typeof body.help_text === 'string' ? body.help_text : undefined,
  });
  return mergeFieldJson(list, field, req.baseUrl);
}

// ---- segments and tags --------------------------------------------------------------------

function segments(list: Audience, req: ApiRequest, rest: string[]): ApiResponse {
  const [id, sub, hash, ...extra] = rest;
  if (id === undefined) {
    allow(req, ['GET', 'POST']);
    if (req.method === 'POST') return ok(createSegment(list, req));
    const type = req.query.get('type');
    const all = [...list.segments.values()].filter((segment) => !type || segment.type === type);
    return ok({
      segments: slice(all, req.query).map((segment) => segmentJson(list, segment)),
      list_id: list.id,
      total_items: all.length,
      _links: collectionLinks(`${req.baseUrl}/lists/${list.id}/segments`),
    });
  }
  const segment = /^\d+$/.test(id) ? list.segments.get(Number(id)) : undefined;
  if (!segment) throw problems.notFound();
  if (sub === undefined) {
    allow(req, ['GET', 'POST', 'PATCH', 'DELETE']);
    switch (req.method) {
      case 'GET':
        return ok(segmentJson(list, segment, req.baseUrl));
      case 'DELETE':
        list.deleteSegment(segment);
        return noContent;
      case 'PATCH':
        return ok(updateSegment(list, segment, req));
      default: {
        const result = list.batchSegment(segment, req.body, req.now);
        return ok({
          members_added: result.added.map((member) => memberJson(list, member, 'batch')),
          members_removed: result.removed.map((member) => memberJson(list, member, 'batch')),
          errors: result.errors,
          total_added: result.added.length,
          total_removed: result.removed.length,
          error_count: result.errors.reduce((sum, error) => sum + error.email_addresses.length, 0),
          _links: collectionLinks(`${req.baseUrl}/lists/${list.id}/segments/${segment.id}`),
        });
      }
    }
  }
  if (sub !== 'members' || extra.length) throw problems.notFound();
  if (hash !== undefined) {
    allow(req, ['DELETE']);
    const member = list.activeMember(hash);
    if (!member || !segment.members.has(member)) throw problems.notFound();
    list.untag(member, segment, req.now);
    return noContent;
  }
  allow(req, ['GET', 'POST']);
  if (req.method === 'POST') {
    const email = isObject(req.body) ? req.body.email_address : undefined;
    if (typeof email !== 'string') {
      throw problems.invalid([
        { field: 'email_address', message: 'This value should not be blank.' },
      ]);
    }
    const member = list.activeMember(email);
    if (!member) throw problems.notFound();
    if (segment.type !== 'static') {
      throw problems.badRequest(
        `A Static Segment with an id of "${segment.id}" does not exist for this list.`,
      );
    }
    list.addToSegment(segment, member, req.now);
    return ok(memberJson(list, member, 'segment', req.baseUrl));
  }
  const all = list.segmentMembers(segment, {
    cleaned: flag(req.query, 'include_cleaned'),
    transactional: flag(req.query, 'include_transactional'),
    unsubscribed: flag(req.query, 'include_unsubscribed'),
  });
  return ok({
    members: slice(all, req.query).map((member) => memberJson(list, member, 'segment')),
    total_items: all.length,
    _links: collectionLinks(`${req.baseUrl}/lists/${list.id}/segments/${segment.id}/members`),
  });
}

function staticEmails(list: Audience, value: unknown): ReturnType<Audience['activeMember']>[] {
  if (!Array.isArray(value) || value.some((email) => typeof email !== 'string')) {
    throw problems.invalid([
      { field: 'static_segment', message: 'Schema describes array of strings' },
    ]);
  }
  // Per spec: "Any emails provided that are not present on the list will be ignored."
  return (value as string[]).map((email) => list.activeMember(email)).filter(Boolean);
}

function createSegment(list: Audience, req: ApiRequest): Json {
  const body = req.body;
  if (!isObject(body)) throw problems.invalid([{ field: '', message: 'Schema describes object' }]);
  if (typeof body.name !== 'string' || body.name.trim() === '') {
    throw problems.invalid([{ field: 'name', message: 'This value should not be blank.' }]);
  }
  const hasStatic = body.static_segment !== undefined;
  const hasOptions = body.options !== undefined;
  if (hasStatic === hasOptions) {
    // Recorded for neither; the spec: static_segment "cannot be provided with the options field".
    throw problems.invalidResource(
      hasStatic
        ? 'Only one of the "options" field or the "static_segment" field may be provided'
        : 'Must provide either an "options" field or a "static_segment" field',
    );
  }
  const members = hasStatic ? staticEmails(list, body.static_segment) : [];
  const segment = list.createSegment(
    { name: body.name, type: hasStatic ? 'static' : 'saved', options: body.options },
    req.now,
  );
  for (const member of members) if (member) list.addToSegment(segment, member, req.now);
  return segmentJson(list, segment, req.baseUrl);
}

function updateSegment(list: Audience, segment: Segment, req: ApiRequest): Json {
  const body = req.body;
  if (!isObject(body)) throw problems.invalid([{ field: '', message: 'Schema describes object' }]);
  if (body.name !== undefined) {
    if (typeof body.name !== 'string' || body.name.trim() === '') {
      throw problems.invalid([{ field: 'name', message: 'This value should not be blank.' }]);
    }
    list.renameSegment(segment, body.name, req.now);
  }
  if (body.static_segment !== undefined) {
    if (segment.type !== 'static') {
      throw problems.badRequest(
        `A Static Segment with an id of "${segment.id}" does not exist for this list.`,
      );
    }
    const wanted = new Set(staticEmails(list, body.static_segment));
    for (const member of [...segment.members.keys()]) {
      if (!wanted.has(member)) list.untag(member, segment, req.now);
    }
    for (const member of wanted) if (member) list.addToSegment(segment, member, req.now);
  }
  if (body.options !== undefined && segment.type === 'saved') segment.options = body.options;
  segment.updatedAt = req.now;
  return segmentJson(list, segment, req.baseUrl);
}

/** Per spec: "all tags that have a name starting with this field will be returned". */
function tagSearch(list: Audience, req: ApiRequest): ApiResponse {
  allow(req, ['GET']);
  const prefix = (req.query.get('name') ?? '').toLowerCase();
  const tags = [...list.segments.values()]
    .filter((segment) => segment.type === 'static' && segment.name.toLowerCase().startsWith(prefix))
    .map((segment) => ({ id: segment.id, name: segment.name }));
  return ok({ tags, total_items: tags.length });
}
