/**
 * The JSON the emulator answers with, field for field as Mailchimp sends it (shapes from the
 * spec's schemas, values as in recorded traffic: empty strings for unknown timestamps and
 * addresses, zeroed stats and location). The spec describes a member differently per endpoint
 * (`List Members_2` for one member, `_4` in a collection, `_5` in batch results, `_3` in a
 * segment's members), so `memberJson` takes the variant.
 */
import type { Audience, Member, MergeField, Segment } from './store.ts';

export type Json = Record<string, unknown>;

export type MemberVariant = 'full' | 'batch' | 'segment';

interface Link {
  rel: string;
  href: string;
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
}

function links(...items: Link[]): Link[] {
  return items;
}

export function collectionLinks(base: string): Link[] {
  return links({ rel: 'self', href: base, method: 'GET' });
}

function mergeValues(list: Audience, member: Member): Json {
  // Mailchimp returns every merge field of the audience, "" for those never set.
  const values: Json = {};
  for (const field of list.mergeFields.values())
    values[field.tag] = member.mergeFields[field.tag] ?? '';
  return values;
}

// Shared by every member rendered (a batch answer holds 500): never mutated.
const NO_STATS = Object.freeze({ avg_open_rate: 0, avg_click_rate: 0 });
const NO_LOCATION = Object.freeze({
  latitude: 0,
  longitude: 0,
  gmtoff: 0,
  dstoff: 0,
  country_code: '',
  timezone: '',
});
const NO_LOCATION_FULL = Object.freeze({ ...NO_LOCATION, region: '' });
const NO_TAGS = Object.freeze([]);

/** A member as the given endpoint family returns it (`baseUrl` ends in `/3.0`). */
export function memberJson(
  list: Audience,
  member: Member,
  variant: MemberVariant,
  baseUrl?: string,
): Json {
  const uniqueEmailId = (0x10_0000_0000 + member.seq).toString(16).slice(-10);
  const json: Json = {
    id: member.id,
    email_address: member.email,
    unique_email_id: uniqueEmailId,
  };
  if (variant === 'full') {
    json.contact_id = member.seq.toString(16).padStart(32, '0');
    const first = member.mergeFields.FNAME;
    const last = member.mergeFields.LNAME;
    json.full_name = [first, last].filter((part) => typeof part === 'string' && part).join(' ');
    json.web_id = 400_000_000 + member.seq;
  }
  json.email_type = member.emailType;
  json.status = member.archived && variant === 'full' ? 'archived' : member.status;
  if (variant === 'full' && member.status === 'unsubscribed') {
    json.unsubscribe_reason = member.unsubscribeReason;
  }
  if (variant === 'full') json.consents_to_one_to_one_messaging = true;
  json.merge_fields = mergeValues(list, member);
  if (member.interests) json.interests = member.interests;
  json.stats = NO_STATS;
  json.ip_signup = member.ipSignup;
  json.timestamp_signup = member.timestampSignup;
  json.ip_opt = member.ipOpt;
  json.timestamp_opt = member.timestampOpt;
  json.member_rating = 2;
  json.last_changed = member.lastChanged;
  json.language = member.language;
  json.vip = member.vip;
  json.email_client = '';
  if (!member.location) json.location = variant === 'full' ? NO_LOCATION_FULL : NO_LOCATION;
  else {
    const location: Json = { ...NO_LOCATION, ...member.location };
    if (variant === 'full') location.region = '';
    json.location = location;
  }
  if (variant === 'full') json.source = member.source;
  if (variant !== 'segment') {
    json.tags_count = member.tags.length;
    json.tags = member.tags.length
      ? member.tags.map((tag) => ({ id: tag.id, name: tag.name }))
      : NO_TAGS;
  }
  json.list_id = list.id;
  if (baseUrl) {
    const self = `${baseUrl}/lists/${list.id}/members/${member.id}`;
    json._links = links(
      { rel: 'self', href: self, method: 'GET' },
      { rel: 'parent', href: `${baseUrl}/lists/${list.id}/members`, method: 'GET' },
      { rel: 'update', href: self, method: 'PATCH' },
      { rel: 'upsert', href: self, method: 'PUT' },
      { rel: 'delete', href: self, method: 'DELETE' },
    );
  }
  return json;
}

export function listJson(list: Audience, baseUrl: string): Json {
  const self = `${baseUrl}/lists/${list.id}`;
  return {
    id: list.id,
    web_id: list.webId,
    name: list.name,
    contact: {
      company: 'audiencehub emulator',
      address1: '1 Test Street',
      address2: '',
      city: 'Atlanta',
      state: 'GA',
      zip: '30308',
      country: 'US',
      phone: '',
    },
    permission_reminder: 'You signed up in the emulator.',
    use_archive_bar: false,
    campaign_defaults: {
      from_name: 'audiencehub',
      from_email: 'noreply@example.com',
      subject: '',
      language: 'en',
    },
    notify_on_subscribe: '',
    notify_on_unsubscribe: '',
    date_created: list.dateCreated,
    list_rating: 0,
    email_type_option: false,
    subscribe_url_short: `http://eepurl.com/${list.id}`,
    subscribe_url_long: `https://example.us1.list-manage.com/subscribe?id=${list.id}`,
    beamer_address: `us1-${list.id}@inbound.mailchimp.com`,
    visibility: 'prv',
    double_optin: false,
    has_welcome: false,
    marketing_permissions: false,
    modules: [],
    stats: {
      member_count: list.counts.subscribed,
      total_contacts:
        list.counts.subscribed +
        list.counts.unsubscribed +
        list.counts.cleaned +
        list.counts.pending +
        list.counts.transactional,
      unsubscribe_count: list.counts.unsubscribed,
      cleaned_count: list.counts.cleaned,
      member_count_since_send: list.counts.subscribed,
      unsubscribe_count_since_send: list.counts.unsubscribed,
      cleaned_count_since_send: list.counts.cleaned,
      campaign_count: 0,
      campaign_last_sent: '',
      merge_field_count: list.mergeFields.size,
      avg_sub_rate: 0,
      avg_unsub_rate: 0,
      target_sub_rate: 0,
      open_rate: 0,
      click_rate: 0,
      last_sub_date: list.lastSubDate,
      last_unsub_date: list.lastUnsubDate,
    },
    _links: links(
      { rel: 'self', href: self, method: 'GET' },
      { rel: 'parent', href: `${baseUrl}/lists`, method: 'GET' },
      { rel: 'members', href: `${self}/members`, method: 'GET' },
      { rel: 'merge-fields', href: `${self}/merge-fields`, method: 'GET' },
      { rel: 'segments', href: `${self}/segments`, method: 'GET' },
    ),
  };
}

export function segmentJson(list: Audience, segment: Segment, baseUrl?: string): Json {
  const json: Json = {
    id: segment.id,
    name: segment.name,
    // Every contact it holds that is still on the list (archived ones are off it).
    member_count: segment.activeCount,
    type: segment.type,
    created_at: segment.createdAt,
    updated_at: segment.updatedAt,
  };
  if (segment.type === 'saved' && segment.options) json.options = segment.options;
  json.list_id = list.id;
  if (baseUrl) {
    const self = `${baseUrl}/lists/${list.id}/segments/${segment.id}`;
    json._links = links(
      { rel: 'self', href: self, method: 'GET' },
      { rel: 'parent', href: `${baseUrl}/lists/${list.id}/segments`, method: 'GET' },
      { rel: 'delete', href: self, method: 'DELETE' },
      { rel: 'members', href: `${self}/members`, method: 'GET' },
    );
  }
  return json;
}

export function mergeFieldJson(list: Audience, field: MergeField, baseUrl?: string): Json {
  const json: Json = {
    merge_id: field.id,
    tag: field.tag,
    name: field.name,
    type: field.type,
    required: field.required,
    default_value: field.defaultValue,
    public: field.public,
    display_order: field.displayOrder,
    options: field.options,
    help_text: field.helpText,
    list_id: list.id,
  };
  if (baseUrl) {
    const self = `${baseUrl}/lists/${list.id}/merge-fields/${field.id}`;
    json._links = links(
      { rel: 'self', href: self, method: 'GET' },
      { rel: 'parent', href: `${baseUrl}/lists/${list.id}/merge-fields`, method: 'GET' },
    );
  }
  return json;
}

/**
 * The spec's `fields` / `exclude_fields`: comma-separated, dot notation into sub-objects, applied
 * to each element of an array ("members.email_address").
 */
export function project(body: Json, fields?: string[], exclude?: string[]): Json {
  let result: unknown = body;
  if (fields?.length) result = pick(result, tree(fields));
  if (exclude?.length) result = omit(result, tree(exclude));
  return result as Json;
}

type Tree = Map<string, Tree>;

function tree(paths: string[]): Tree {
  const root: Tree = new Map();
  for (const path of paths) {
    let node = root;
    for (const part of path.split('.').filter(Boolean)) {
      let next = node.get(part);
      if (!next) node.set(part, (next = new Map()));
      node = next;
    }
  }
  return root;
}

function pick(value: unknown, keep: Tree): unknown {
  if (keep.size === 0) return value;
  if (Array.isArray(value)) return value.map((item) => pick(item, keep));
  if (typeof value !== 'object' || value === null) return value;
  const out: Json = {};
  for (const [key, sub] of keep) {
    if (key in value) out[key] = pick((value as Json)[key], sub);
  }
  return out;
}

function omit(value: unknown, drop: Tree): unknown {
  if (Array.isArray(value)) return value.map((item) => omit(item, drop));
  if (typeof value !== 'object' || value === null) return value;
  const out: Json = { ...(value as Json) };
  for (const [key, sub] of drop) {
    if (!(key in out)) continue;
    if (sub.size === 0) delete out[key];
    else out[key] = omit(out[key], sub);
  }
  return out;
}
