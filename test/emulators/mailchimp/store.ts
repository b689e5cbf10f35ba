/**
 * The Mailchimp emulator's state: audiences (lists) with their members, merge fields, forgotten
 * addresses and segments (a tag is a static segment), kept in Maps so that every request costs in
 * proportion to what it sends, not to the audience's size. The rules each operation enforces are
 * Mailchimp's, with their source beside them; ../shared/VENDOR-APIS.md §1 collects them.
 */
import { hash } from 'node:crypto';
import { problems, type FieldError, type MailchimpProblem } from './problem.ts';

export const SUBSCRIPTION_STATUSES = [
  'subscribed',
  'unsubscribed',
  'cleaned',
  'pending',
  'transactional',
] as const;
export type SubscriptionStatus = (typeof SUBSCRIPTION_STATUSES)[number];
/** What GET member shows: the subscription status, or `archived` once archived. */
export type MemberStatus = SubscriptionStatus | 'archived';

export const MERGE_FIELD_TYPES = [
  'text',
  'number',
  'address',
  'phone',
  'date',
  'url',
  'imageurl',
  'radio',
  'dropdown',
  'birthday',
  'zip',
] as const;
export type MergeFieldType = (typeof MERGE_FIELD_TYPES)[number];

/** Per spec: "Up to 500 members may be added or updated with each API call." */
export const MAX_BATCH_MEMBERS = 500;
/** Per spec: members_to_add / members_to_remove, "A maximum of 500 members can be sent." */
export const MAX_SEGMENT_BATCH = 500;
/** Per spec: `count` "Default value is 10. Maximum value is 1000". */
export const MAX_COUNT = 1000;

export interface MergeFieldOptions {
  default_country?: number;
  phone_format?: string;
  date_format?: string;
  choices?: string[];
  size?: number;
}

export interface MergeField {
  id: number;
  tag: string;
  name: string;
  type: MergeFieldType;
  required: boolean;
  defaultValue: string;
  public: boolean;
  displayOrder: number;
  options: MergeFieldOptions;
  helpText: string;
}

export interface Segment {
  id: number;
  name: string;
  /** `static` for tags and static segments; `saved` for condition-based segments. */
  type: 'static' | 'saved';
  /** The members in a static segment, with the time each was added (`date_added`). */
  members: Map<Member, string>;
  /** How many of `members` are on the list (not archived), kept up to date for member_count. */
  activeCount: number;
  /** The conditions of a saved segment, kept as sent (the emulator does not evaluate them). */
  options: unknown;
  createdAt: string;
  updatedAt: string;
}

export interface Member {
  /** The subscriber hash: md5 of the lower-cased address. */
  id: string;
  email: string;
  status: SubscriptionStatus;
  archived: boolean;
  /** A running number, the source of web_id, unique_email_id and contact_id. */
  seq: number;
  emailType: string;
  mergeFields: Record<string, unknown>;
  interests: Record<string, boolean> | null;
  language: string;
  vip: boolean;
  location: { latitude: number; longitude: number } | null;
  ipSignup: string;
  timestampSignup: string;
  ipOpt: string;
  timestampOpt: string;
  lastChanged: string;
  unsubscribeReason: string;
  source: string;
  /** The static segments (tags) holding this member. */
  tags: Segment[];
}

/** Mailchimp writes times as `2021-02-27T00:30:39+00:00`. */
export function mailchimpTime(ms: number = Date.now()): string {
  return new Date(ms).toISOString().slice(0, 19) + '+00:00';
}

/** Per spec: "The MD5 hash of the lowercase version of the list member's email address." */
export function subscriberHash(email: string): string {
  return hash('md5', email.toLowerCase());
}

// A plausible address: no spaces or quotes, one @, a dotted domain ending in 2+ letters.
// Mailchimp's own check is stricter and unpublished ("looks fake or invalid").
const EMAIL =
  /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$/;

export function isValidEmail(email: unknown): email is string {
  return typeof email === 'string' && email.length <= 254 && EMAIL.test(email);
}

/** Per spec, a batch member's `status` (no `transactional` here). */
const BATCH_STATUSES = new Set(['subscribed', 'unsubscribed', 'cleaned', 'pending']);

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function jsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

/** Mailchimp's JSON-schema wording, e.g. "Schema describes object, array found instead". */
function schemaError(field: string, expected: string, value: unknown): FieldError {
  return { field, message: `Schema describes ${expected}, ${jsonType(value)} found instead` };
}

/** Whether Mailchimp lets an API call move a member from one status to another. */
function statusChangeAllowed(from: SubscriptionStatus, to: SubscriptionStatus): boolean {
  if (from === to) return true;
  // "... is in a compliance state due to unsubscribe, bounce, or compliance review and cannot be
  // subscribed." Someone who unsubscribed may be sent a confirmation (`pending`) instead; a
  // cleaned (bounced) address may not be brought back by the API at all.
  if (from === 'cleaned') return to === 'unsubscribed';
  if (from === 'unsubscribed') return to !== 'subscribed';
  return true;
}

export interface MemberInput {
  email_address?: unknown;
  status?: unknown;
  status_if_new?: unknown;
  email_type?: unknown;
  merge_fields?: unknown;
  interests?: unknown;
  language?: unknown;
  vip?: unknown;
  location?: unknown;
  ip_signup?: unknown;
  timestamp_signup?: unknown;
  ip_opt?: unknown;
  timestamp_opt?: unknown;
  tags?: unknown;
}

export interface BatchError {
  email_address: string;
  error: string;
  error_code: 'ERROR_CONTACT_EXISTS' | 'ERROR_GENERIC';
  field?: string;
  field_message?: string;
}

export interface BatchSubscribeResult {
  created: Member[];
  updated: Member[];
  errors: BatchError[];
}

export interface SegmentBatchResult {
  added: Member[];
  removed: Member[];
  errors: { email_addresses: string[]; error: string }[];
}

export interface StoreOptions {
  /**
   * What a merge_fields key with no merge field on the audience does. `ignore` (the default) is
   * what recorded Mailchimp traffic shows: grouparoo's fixtures send `merge_fields.email_address`
   * to an audience without such a field and get a 200 with the key dropped. `reject` answers 400
   * "Your merge fields were invalid." instead, for suites that want a missing field to be loud.
   */
  unknownMergeFields: 'ignore' | 'reject';
}

/** Every audience of one emulated account. */
export class MailchimpStore {
  readonly lists = new Map<string, Audience>();
  private listSeq = 0;
  private segmentSeq = 10_000;
  private memberSeq = 0;

  constructor(readonly options: StoreOptions) {}

  nextSegmentId(): number {
    return ++this.segmentSeq;
  }

  nextMemberSeq(): number {
    return ++this.memberSeq;
  }

  createList(input: { id?: string; name?: string; withDefaultMergeFields?: boolean }): Audience {
    const seq = ++this.listSeq;
    // Real list ids are 10 hex characters; hex never contains "server", which the SDK would
    // rewrite in the URL (VENDOR-APIS.md §1.1 gotcha).
    const id = input.id ?? hash('md5', `audience-${seq}`).slice(0, 10);
    if (this.lists.has(id)) throw new Error(`list ${id} already exists`);
    const list = new Audience(this, id, input.name ?? `Audience ${seq}`, 100_000 + seq);
    if (input.withDefaultMergeFields !== false) {
      // "Merge fields with the tags FNAME, LNAME, ADDRESS, and PHONE are present by default when
      // an audience is created." (mailchimp.com/developer/marketing/docs/merge-fields/)
      list.addMergeField({ tag: 'FNAME', name: 'First Name', type: 'text' });
      list.addMergeField({ tag: 'LNAME', name: 'Last Name', type: 'text' });
      list.addMergeField({ tag: 'ADDRESS', name: 'Address', type: 'address' });
      list.addMergeField({ tag: 'PHONE', name: 'Phone Number', type: 'phone' });
    }
    this.lists.set(id, list);
    return list;
  }
}

export class Audience {
  readonly members = new Map<string, Member>();
  /** Hashes of addresses permanently deleted: they cannot be re-imported. */
  readonly forgotten = new Set<string>();
  readonly mergeFields = new Map<string, MergeField>();
  readonly segments = new Map<number, Segment>();
  /** Segments by lower-cased name: Mailchimp treats "Customers" and "customers" as one. */
  private readonly segmentsByName = new Map<string, Segment>();
  readonly counts: Record<MemberStatus, number> = {
    subscribed: 0,
    unsubscribed: 0,
    cleaned: 0,
    pending: 0,
    transactional: 0,
    archived: 0,
  };
  readonly dateCreated = mailchimpTime();
  lastSubDate = '';
  lastUnsubDate = '';
  /** Bumped on every change to membership or status, to invalidate cached listings. */
  private version = 0;
  private readonly views = new Map<string, { version: number; items: Member[] }>();
  private mergeSeq = 0;

  constructor(
    private readonly store: MailchimpStore,
    readonly id: string,
    public name: string,
    readonly webId: number,
  ) {}

  // ---- members -------------------------------------------------------------------------

  /**
   * The member a path names: the spec's `subscriber_hash` ("The MD5 hash of the lowercase
   * version of the list member's email address. This endpoint also accepts a list member's
   * email address"), archived ones included. Contact ids are not accepted.
   */
  findMember(hashOrEmail: string): Member | undefined {
    return this.members.get(
      hashOrEmail.includes('@') ? subscriberHash(hashOrEmail) : hashOrEmail.toLowerCase(),
    );
  }

  /** A member on the list (archived contacts are off it until re-added). */
  activeMember(hashOrEmail: string): Member | undefined {
    const member = this.findMember(hashOrEmail);
    return member && !member.archived ? member : undefined;
  }

  private touch(): void {
    this.version++;
  }

  private newMember(id: string, email: string, status: SubscriptionStatus, now: string): Member {
    const member: Member = {
      id,
      email,
      status,
      archived: false,
      seq: this.store.nextMemberSeq(),
      emailType: 'html',
      mergeFields: {},
      interests: null,
      language: '',
      vip: false,
      location: null,
      ipSignup: '',
      timestampSignup: '',
      ipOpt: '',
      timestampOpt: status === 'subscribed' ? now : '',
      lastChanged: now,
      unsubscribeReason: status === 'unsubscribed' ? 'N/A (Unsubscribed by an admin)' : '',
      source: 'API - Generic',
      tags: [],
    };
    this.members.set(id, member);
    this.counts[status]++;
    if (status === 'subscribed') this.lastSubDate = now;
    this.touch();
    return member;
  }

  /** Sets a status without Mailchimp's compliance rules (used by the rules and by helpers). */
  setStatus(member: Member, status: SubscriptionStatus, now: string, reason?: string): void {
    if (member.status === status) return;
    if (!member.archived) {
      this.counts[member.status]--;
      this.counts[status]++;
    }
    member.status = status;
    member.lastChanged = now;
    if (status === 'subscribed') {
      member.timestampOpt = now;
      this.lastSubDate = now;
    }
    if (status === 'unsubscribed') {
      member.unsubscribeReason = reason ?? 'N/A (Unsubscribed by an admin)';
      this.lastUnsubDate = now;
    } else member.unsubscribeReason = '';
    this.touch();
  }

  archive(member: Member, now: string): void {
    if (member.archived) return;
    this.counts[member.status]--;
    this.counts.archived++;
    for (const segment of member.tags) segment.activeCount--;
    member.archived = true;
    member.lastChanged = now;
    this.touch();
  }

  private unarchive(member: Member, now: string): void {
    if (!member.archived) return;
    this.counts.archived--;
    for (const segment of member.tags) segment.activeCount++;
    this.counts[member.status]++;
    member.archived = false;
    member.lastChanged = now;
    this.touch();
  }

  /** Permanent deletion ("forget"): gone, and its address can never be imported again. */
  forget(member: Member): void {
    this.counts[member.archived ? 'archived' : member.status]--;
    for (const segment of member.tags) {
      segment.members.delete(member);
      if (!member.archived) segment.activeCount--;
    }
    member.tags = [];
    this.members.delete(member.id);
    this.forgotten.add(member.id);
    this.touch();
  }

  /**
   * Checks the merge_fields of a request against the audience's merge fields and returns the
   * values to store (numbers as numbers, unknown tags dropped) or the field errors.
   * `skipRequired` is the spec's skip_merge_validation: "member data will be accepted without
   * merge field values, even if the merge field is usually required".
   */
  checkMergeFields(
    input: unknown,
    options: { isNew: boolean; skipRequired: boolean },
  ): { values: Record<string, unknown>; errors: FieldError[] } {
    // Runs once per member of a batch: no closures, no allocation beyond the result.
    const values: Record<string, unknown> = {};
    const errors: FieldError[] = [];
    if (input !== undefined && !isObject(input)) {
      return { values, errors: [schemaError('merge_fields', 'object', input)] };
    }
    for (const tag in input) {
      const value = input[tag];
      const field = this.mergeFields.get(tag);
      if (!field) {
        if (this.store.options.unknownMergeFields === 'reject' && !options.skipRequired) {
          // [inferred] wording: the recorded traffic shows unknown keys being dropped.
          errors.push({ field: tag, message: `Merge field "${tag}" does not exist` });
        }
        continue;
      }
      const problem = mergeValueProblem(field, value);
      if (problem) errors.push({ field: tag, message: problem });
      else values[tag] = field.type === 'number' && value !== '' ? Number(value) : value;
    }
    if (!options.skipRequired) {
      for (const field of this.mergeFields.values()) {
        if (!field.required) continue;
        const given = field.tag in values;
        const empty = values[field.tag] === '' || values[field.tag] === null;
        // "Your merge fields were invalid." / "field [FNAME] : Please enter a value" (recorded).
        if ((options.isNew && !given) || (given && empty)) {
          errors.push({ field: field.tag, message: 'Please enter a value' });
        }
      }
    }
    return { values, errors };
  }

  /** Applies the profile parts of a member body (not status, not tags). */
  private applyProfile(member: Member, input: MemberInput, merge: Record<string, unknown>): void {
    for (const tag in merge) member.mergeFields[tag] = merge[tag];
    if (typeof input.email_type === 'string') member.emailType = input.email_type;
    if (isObject(input.interests)) {
      member.interests = { ...member.interests, ...(input.interests as Record<string, boolean>) };
    }
    if (typeof input.language === 'string') member.language = input.language;
    if (typeof input.vip === 'boolean') member.vip = input.vip;
    if (isObject(input.location)) {
      member.location = {
        latitude: Number(input.location.latitude ?? 0),
        longitude: Number(input.location.longitude ?? 0),
      };
    }
    if (typeof input.ip_signup === 'string') member.ipSignup = input.ip_signup;
    if (typeof input.timestamp_signup === 'string') member.timestampSignup = input.timestamp_signup;
    if (typeof input.ip_opt === 'string') member.ipOpt = input.ip_opt;
    if (typeof input.timestamp_opt === 'string') member.timestampOpt = input.timestamp_opt;
  }

  /** Schema checks shared by the member endpoints (Mailchimp rejects the whole call). */
  private checkMemberSchema(input: unknown, statusField: 'status' | 'status_if_new' | null) {
    if (!isObject(input)) throw problems.invalid([schemaError('', 'object', input)]);
    const errors: FieldError[] = [];
    for (const key of ['status', 'status_if_new'] as const) {
      const value = input[key];
      if (value !== undefined && !SUBSCRIPTION_STATUSES.includes(value as SubscriptionStatus)) {
        errors.push({
          field: key,
          message: `Value must be one of: ${SUBSCRIPTION_STATUSES.join(', ')}`,
        });
      }
    }
    if (statusField && input[statusField] === undefined && input.status === undefined) {
      errors.push({ field: statusField, message: 'This value should not be blank.' });
    }
    if (input.email_address !== undefined && typeof input.email_address !== 'string') {
      errors.push(schemaError('email_address', 'string', input.email_address));
    }
    if (errors.length) throw problems.invalid(errors);
    return input as MemberInput;
  }

  private tagsOf(input: MemberInput): string[] | undefined {
    if (input.tags === undefined) return undefined;
    if (!Array.isArray(input.tags) || input.tags.some((tag) => typeof tag !== 'string')) {
      throw problems.invalid([schemaError('tags', 'array of strings', input.tags)]);
    }
    return input.tags as string[];
  }

  /** `POST /lists/{id}/members`: add a new member; 400 Member Exists if already there. */
  addMember(body: unknown, options: { skipMergeValidation: boolean }, now: string): Member {
    const input = this.checkMemberSchema(body, 'status');
    const email = input.email_address;
    if (typeof email !== 'string') {
      throw problems.invalid([
        { field: 'email_address', message: 'This value should not be blank.' },
      ]);
    }
    const id = subscriberHash(email);
    const existing = this.members.get(id);
    if (existing && !existing.archived) throw problems.memberExists(email);
    return this.create(id, email, input.status as SubscriptionStatus, input, options, now);
  }

  private create(
    id: string,
    email: string,
    status: SubscriptionStatus,
    input: MemberInput,
    options: { skipMergeValidation: boolean },
    now: string,
  ): Member {
    if (this.forgotten.has(id)) throw problems.forgotten(email);
    if (!isValidEmail(email)) throw problems.fakeEmail(email);
    const tags = this.tagsOf(input);
    const merge = this.checkMergeFields(input.merge_fields, {
      isNew: true,
      skipRequired: options.skipMergeValidation,
    });
    if (merge.errors.length) throw problems.mergeFields(merge.errors);
    const archived = this.members.get(id);
    let member: Member;
    if (archived) {
      // Re-adding an archived contact brings it back with its history.
      this.unarchive(archived, now);
      this.setStatus(archived, status, now);
      member = archived;
    } else member = this.newMember(id, email, status, now);
    this.applyProfile(member, input, merge.values);
    if (tags) for (const name of tags) this.tag(member, name, now);
    return member;
  }

  /**
   * `PUT /lists/{id}/members/{hash}`: add or update. Per spec, `status_if_new` is the status
   * of a member who is not on the list yet; `status` changes an existing member's status, under
   * Mailchimp's compliance rules.
   */
  upsertMember(
    hashOrEmail: string,
    body: unknown,
    options: { skipMergeValidation: boolean },
    now: string,
  ): Member {
    const input = this.checkMemberSchema(body, null);
    const pathId = hashOrEmail.includes('@')
      ? subscriberHash(hashOrEmail)
      : hashOrEmail.toLowerCase();
    const email = typeof input.email_address === 'string' ? input.email_address : undefined;
    if (email !== undefined && subscriberHash(email) !== pathId) {
      // [inferred] wording
      throw problems.invalidResource(
        'The email address in the request does not match the subscriber hash in the URL.',
      );
    }
    const member = this.members.get(pathId);
    if (member && !member.archived) {
      return this.update(member, input, options, now);
    }
    if (email === undefined) {
      throw problems.invalid([
        { field: 'email_address', message: 'This value should not be blank.' },
      ]);
    }
    const status = (input.status_if_new ?? input.status) as SubscriptionStatus | undefined;
    if (status === undefined) {
      throw problems.invalid([
        { field: 'status_if_new', message: 'This value should not be blank.' },
      ]);
    }
    return this.create(pathId, email, status, input, options, now);
  }

  /** `PATCH /lists/{id}/members/{hash}`: update a member on the list (404 otherwise). */
  patchMember(
    hashOrEmail: string,
    body: unknown,
    options: { skipMergeValidation: boolean },
    now: string,
  ): Member {
    const input = this.checkMemberSchema(body, null);
    const member = this.activeMember(hashOrEmail);
    if (!member) throw problems.notFound();
    if (typeof input.email_address === 'string' && input.email_address !== member.email) {
      this.changeEmail(member, input.email_address);
    }
    return this.update(member, input, options, now);
  }

  private changeEmail(member: Member, email: string): void {
    if (!isValidEmail(email)) throw problems.fakeEmail(email);
    const id = subscriberHash(email);
    if (id !== member.id) {
      if (this.members.has(id)) throw problems.memberExists(email);
      if (this.forgotten.has(id)) throw problems.forgotten(email);
      this.members.delete(member.id);
      member.id = id;
      this.members.set(id, member);
      this.touch();
    }
    member.email = email;
  }

  private update(
    member: Member,
    input: MemberInput,
    options: { skipMergeValidation: boolean },
    now: string,
  ): Member {
    const tags = this.tagsOf(input);
    const status = input.status as SubscriptionStatus | undefined;
    if (status !== undefined && !statusChangeAllowed(member.status, status)) {
      throw problems.compliance(member.email);
    }
    const merge = this.checkMergeFields(input.merge_fields, {
      isNew: false,
      skipRequired: options.skipMergeValidation,
    });
    if (merge.errors.length) throw problems.mergeFields(merge.errors);
    this.applyProfile(member, input, merge.values);
    if (status !== undefined) this.setStatus(member, status, now);
    if (tags) for (const name of tags) this.tag(member, name, now);
    member.lastChanged = now;
    return member;
  }

  /**
   * `DELETE /lists/{id}/members/{hash}`: archive. Recorded answers: 405 "This list member cannot
   * be removed." for contacts that are bounced (cleaned), pending or already archived.
   */
  archiveMember(hashOrEmail: string, now: string): void {
    const member = this.findMember(hashOrEmail);
    if (!member) throw problems.notFound();
    if (member.archived || member.status === 'pending' || member.status === 'cleaned') {
      throw problems.methodNotAllowed(
        ['GET', 'PUT'],
        'This list member cannot be removed. Can not archive a contact that is bounced, pending or archived',
      );
    }
    this.archive(member, now);
  }

  /** `POST .../actions/delete-permanent`: "This will make it impossible to re-import the list member." */
  deleteMemberPermanently(hashOrEmail: string): void {
    const member = this.findMember(hashOrEmail);
    if (!member) throw problems.notFound();
    this.forget(member);
  }

  /**
   * `POST /lists/{id}` (batch subscribe). Schema faults reject the whole call; each member's own
   * fault (invalid address, already a member without update_existing, compliance state,
   * forgotten address, merge fields) is reported in `errors` while the rest are applied.
   */
  batchSubscribe(
    body: unknown,
    options: { skipMergeValidation: boolean; skipDuplicateCheck: boolean },
    now: string,
  ): BatchSubscribeResult {
    if (!isObject(body)) throw problems.invalid([schemaError('', 'object', body)]);
    const members = body.members;
    if (!Array.isArray(members)) {
      throw problems.invalid(
        members === undefined
          ? [{ field: 'members', message: 'Required property members not found' }]
          : [schemaError('members', 'array', members)],
      );
    }
    if (members.length > MAX_BATCH_MEMBERS) {
      // [inferred] wording; the limit is the spec's.
      throw problems.invalid([
        {
          field: 'members',
          message: `Schema describes an array of at most ${MAX_BATCH_MEMBERS} items, ${members.length} found instead`,
        },
      ]);
    }
    const schemaErrors: FieldError[] = [];
    members.forEach((item, index) => {
      if (!isObject(item)) schemaErrors.push(schemaError(`members.${index}`, 'object', item));
      else if (typeof item.email_address !== 'string') {
        schemaErrors.push(
          schemaError(`members.${index}.email_address`, 'string', item.email_address),
        );
      } else if (item.status !== undefined && !BATCH_STATUSES.has(item.status as string)) {
        schemaErrors.push({
          field: `members.${index}.status`,
          message: 'Value must be one of: subscribed, unsubscribed, cleaned, pending',
        });
      } else if (
        item.tags !== undefined &&
        (!Array.isArray(item.tags) || item.tags.some((tag) => typeof tag !== 'string'))
      ) {
        schemaErrors.push(schemaError(`members.${index}.tags`, 'array of strings', item.tags));
      }
    });
    if (schemaErrors.length) throw problems.invalid(schemaErrors);
    for (const key of ['update_existing', 'sync_tags'] as const) {
      if (body[key] !== undefined && typeof body[key] !== 'boolean') {
        throw problems.invalid([schemaError(key, 'boolean', body[key])]);
      }
    }
    const updateExisting = body.update_existing === true;
    const syncTags = body.sync_tags === true;

    const result: BatchSubscribeResult = { created: [], updated: [], errors: [] };
    const seen = new Set<string>();
    const fail = (email: string, problem: MailchimpProblem | string, fields?: FieldError[]) => {
      const error: BatchError = {
        email_address: email,
        error: typeof problem === 'string' ? problem : problem.detail,
        error_code: 'ERROR_GENERIC',
      };
      // Newer API versions name the first invalid merge field in `field` / `field_message`.
      if (fields?.[0]) {
        error.field = fields[0].field;
        error.field_message = fields[0].message;
      }
      result.errors.push(error);
    };
    for (const item of members as MemberInput[]) {
      const email = item.email_address as string;
      if (!isValidEmail(email)) {
        fail(email, problems.fakeEmail(email));
        continue;
      }
      const id = subscriberHash(email);
      if (seen.has(id)) {
        // Per spec, skip_duplicate_check=true ignores later duplicates ("The status of the first
        // appearance in the request will be saved"); otherwise they are reported. [inferred] wording
        if (!options.skipDuplicateCheck)
          fail(email, `${email} was provided more than once in this batch`);
        continue;
      }
      seen.add(id);
      const existing = this.members.get(id);
      if (existing && !existing.archived) {
        if (!updateExisting) {
          result.errors.push({
            email_address: email,
            error: `${email} is already a list member, do you want to update? please provide update_existing:true in the request body`,
            error_code: 'ERROR_CONTACT_EXISTS',
          });
          continue;
        }
        const status = item.status as SubscriptionStatus | undefined;
        if (status !== undefined && !statusChangeAllowed(existing.status, status)) {
          fail(email, problems.compliance(email));
          continue;
        }
        const merge = this.checkMergeFields(item.merge_fields, {
          isNew: false,
          skipRequired: options.skipMergeValidation,
        });
        if (merge.errors.length) {
          fail(email, problems.mergeFields(merge.errors), merge.errors);
          continue;
        }
        this.applyProfile(existing, item, merge.values);
        if (status !== undefined) this.setStatus(existing, status, now);
        this.applyBatchTags(existing, item.tags as string[] | undefined, syncTags, now);
        existing.lastChanged = now;
        result.updated.push(existing);
        continue;
      }
      if (this.forgotten.has(id)) {
        fail(email, problems.forgotten(email));
        continue;
      }
      if (item.status === undefined) {
        fail(email, `${email} needs a status to be added to the list`); // [inferred] wording
        continue;
      }
      const merge = this.checkMergeFields(item.merge_fields, {
        isNew: true,
        skipRequired: options.skipMergeValidation,
      });
      if (merge.errors.length) {
        fail(email, problems.mergeFields(merge.errors), merge.errors);
        continue;
      }
      const status = item.status as SubscriptionStatus;
      let member: Member;
      if (existing) {
        this.unarchive(existing, now);
        this.setStatus(existing, status, now);
        member = existing;
      } else member = this.newMember(id, email, status, now);
      this.applyProfile(member, item, merge.values);
      this.applyBatchTags(member, item.tags as string[] | undefined, syncTags, now);
      result.created.push(member);
    }
    return result;
  }

  /**
   * A member's `tags` are added to new and existing members alike, whatever their status: "tags
   * are now properly added to existing members"
   * (https://mailchimp.com/developer/release-notes/added-ability-sync-tags-existing-members/).
   * sync_tags: "Whether this batch operation will replace all existing tags with tags in request."
   */
  private applyBatchTags(member: Member, tags: string[] | undefined, sync: boolean, now: string) {
    if (tags === undefined) return;
    if (sync) {
      const keep = new Set(tags.map((name) => name.toLowerCase()));
      for (const segment of [...member.tags]) {
        if (!keep.has(segment.name.toLowerCase())) this.untag(member, segment, now);
      }
    }
    for (const name of tags) this.tag(member, name, now);
  }

  // ---- tags and segments -----------------------------------------------------------------

  segmentByName(name: string): Segment | undefined {
    return this.segmentsByName.get(name.toLowerCase());
  }

  createSegment(input: { name: string; type: 'static' | 'saved'; options?: unknown }, now: string) {
    if (this.segmentsByName.has(input.name.toLowerCase())) {
      // [inferred] wording; Mailchimp compares segment names without regard to case.
      throw problems.invalidResource(`A segment or tag named "${input.name}" already exists.`);
    }
    const segment: Segment = {
      id: this.store.nextSegmentId(),
      name: input.name,
      type: input.type,
      members: new Map(),
      activeCount: 0,
      options: input.options ?? null,
      createdAt: now,
      updatedAt: now,
    };
    this.segments.set(segment.id, segment);
    this.segmentsByName.set(segment.name.toLowerCase(), segment);
    return segment;
  }

  renameSegment(segment: Segment, name: string, now: string): void {
    const other = this.segmentsByName.get(name.toLowerCase());
    if (other && other !== segment) {
      throw problems.invalidResource(`A segment or tag named "${name}" already exists.`);
    }
    this.segmentsByName.delete(segment.name.toLowerCase());
    segment.name = name;
    segment.updatedAt = now;
    this.segmentsByName.set(name.toLowerCase(), segment);
  }

  deleteSegment(segment: Segment): void {
    for (const member of segment.members.keys()) {
      member.tags = member.tags.filter((tag) => tag !== segment);
    }
    segment.members.clear();
    this.segments.delete(segment.id);
    this.segmentsByName.delete(segment.name.toLowerCase());
    this.touch();
  }

  /** Adds a tag by name, creating it as a static segment if it does not exist yet. */
  tag(member: Member, name: string, now: string): Segment {
    let segment = this.segmentByName(name);
    if (!segment) segment = this.createSegment({ name, type: 'static' }, now);
    this.addToSegment(segment, member, now);
    return segment;
  }

  addToSegment(segment: Segment, member: Member, now: string): boolean {
    if (segment.members.has(member)) return false;
    segment.members.set(member, now);
    if (!member.archived) segment.activeCount++;
    member.tags.push(segment);
    segment.updatedAt = now;
    this.touch();
    return true;
  }

  untag(member: Member, segment: Segment, now: string): boolean {
    if (!segment.members.delete(member)) return false;
    if (!member.archived) segment.activeCount--;
    member.tags = member.tags.filter((tag) => tag !== segment);
    segment.updatedAt = now;
    this.touch();
    return true;
  }

  /**
   * `POST /lists/{id}/members/{hash}/tags`: `active` adds (creating an unknown tag), `inactive`
   * removes (an unknown tag is ignored). A contact not on the list is 404, as recorded.
   */
  updateMemberTags(hashOrEmail: string, body: unknown, now: string): void {
    const member = this.activeMember(hashOrEmail);
    if (!member) throw problems.notFound();
    if (!isObject(body) || !Array.isArray(body.tags)) {
      throw problems.invalid([
        isObject(body) && body.tags !== undefined
          ? schemaError('tags', 'array', body.tags)
          : { field: 'tags', message: 'Required property tags not found' },
      ]);
    }
    const errors: FieldError[] = [];
    body.tags.forEach((tag: unknown, index: number) => {
      if (!isObject(tag) || typeof tag.name !== 'string' || tag.name.trim() === '') {
        errors.push({ field: `tags.${index}.name`, message: 'This value should not be blank.' });
      } else if (tag.status !== 'active' && tag.status !== 'inactive') {
        errors.push({
          field: `tags.${index}.status`,
          message: 'Value must be one of: inactive, active',
        });
      }
    });
    if (errors.length) throw problems.invalid(errors);
    for (const tag of body.tags as { name: string; status: 'active' | 'inactive' }[]) {
      if (tag.status === 'active') this.tag(member, tag.name, now);
      else {
        const segment = this.segmentByName(tag.name);
        if (segment) this.untag(member, segment, now);
      }
    }
  }

  /**
   * `POST /lists/{id}/segments/{segment_id}`. Per spec: "Any emails provided that are not present
   * on the list will be ignored": nothing happens to them, and they are reported in `errors`
   * (the response schema's "email addresses that could not be added to the segment or
   * removed"; [inferred] message). Adding a member already in the segment, or removing one not
   * in it, changes nothing and is listed nowhere.
   */
  batchSegment(segment: Segment, body: unknown, now: string): SegmentBatchResult {
    if (!isObject(body)) throw problems.invalid([schemaError('', 'object', body)]);
    const lists: Record<'members_to_add' | 'members_to_remove', string[]> = {
      members_to_add: [],
      members_to_remove: [],
    };
    const errors: FieldError[] = [];
    for (const key of ['members_to_add', 'members_to_remove'] as const) {
      const value = body[key];
      if (value === undefined) continue;
      if (!Array.isArray(value) || value.some((email) => typeof email !== 'string')) {
        errors.push(schemaError(key, 'array of strings', value));
      } else if (value.length > MAX_SEGMENT_BATCH) {
        errors.push({
          field: key,
          message: `Schema describes an array of at most ${MAX_SEGMENT_BATCH} items, ${value.length} found instead`,
        });
      } else lists[key] = value as string[];
    }
    if (errors.length) throw problems.invalid(errors);
    if (segment.type !== 'static') {
      // The message Mailchimp gives for member changes on a saved (condition-based) segment.
      throw problems.badRequest(
        `A Static Segment with an id of "${segment.id}" does not exist for this list.`,
      );
    }
    const result: SegmentBatchResult = { added: [], removed: [], errors: [] };
    const notFound = { add: [] as string[], remove: [] as string[] };
    for (const email of lists.members_to_add) {
      const member = isValidEmail(email) ? this.activeMember(email) : undefined;
      if (!member) notFound.add.push(email);
      else if (this.addToSegment(segment, member, now)) result.added.push(member);
    }
    for (const email of lists.members_to_remove) {
      const member = isValidEmail(email) ? this.activeMember(email) : undefined;
      if (!member) notFound.remove.push(email);
      else if (this.untag(member, segment, now)) result.removed.push(member);
    }
    if (notFound.add.length) {
      result.errors.push({
        email_addresses: notFound.add,
        error: 'Email addresses were not added: they are not members of this list.',
      });
    }
    if (notFound.remove.length) {
      result.errors.push({
        email_addresses: notFound.remove,
        error: 'Email addresses were not removed: they are not members of this list.',
      });
    }
    return result;
  }

  // ---- merge fields ----------------------------------------------------------------------

  addMergeField(input: {
    tag?: string;
    name: string;
    type: MergeFieldType;
    required?: boolean;
    defaultValue?: string;
    public?: boolean;
    displayOrder?: number;
    options?: MergeFieldOptions;
    helpText?: string;
  }): MergeField {
    const id = ++this.mergeSeq;
    // Mailchimp names a field created without a tag MMERGE<n>; tags are upper case.
    const tag = (input.tag ?? `MMERGE${id}`).toUpperCase();
    if (!/^[A-Z0-9_]+$/.test(tag)) {
      this.mergeSeq--;
      throw problems.invalid([
        { field: 'tag', message: 'Merge tags may use only letters, numbers and underscores.' },
      ]);
    }
    if (this.mergeFields.has(tag) || tag === 'EMAIL') {
      this.mergeSeq--;
      // [inferred] wording
      throw problems.invalidResource(
        `A Merge Field with the tag "${tag}" already exists for this list.`,
      );
    }
    const field: MergeField = {
      id,
      tag,
      name: input.name,
      type: input.type,
      required: input.required ?? false,
      defaultValue: input.defaultValue ?? '',
      public: input.public ?? false,
      displayOrder: input.displayOrder ?? id + 1,
      options: { ...defaultMergeOptions(input.type), ...input.options },
      helpText: input.helpText ?? '',
    };
    this.mergeFields.set(tag, field);
    return field;
  }

  mergeFieldById(id: number): MergeField | undefined {
    for (const field of this.mergeFields.values()) if (field.id === id) return field;
    return undefined;
  }

  deleteMergeField(field: MergeField): void {
    this.mergeFields.delete(field.tag);
    for (const member of this.members.values()) delete member.mergeFields[field.tag];
  }

  // ---- listings --------------------------------------------------------------------------

  /**
   * A cached, ordered listing (insertion order, like Mailchimp's default) rebuilt only after a
   * change, so paging through a large audience costs O(count) per page.
   */
  view(key: string, build: () => Member[]): Member[] {
    const cached = this.views.get(key);
    if (cached && cached.version === this.version) return cached.items;
    const items = build();
    this.views.set(key, { version: this.version, items });
    return items;
  }

  /** Members for `GET /lists/{id}/members`: by status, archived contacts only when asked. */
  listMembers(status: MemberStatus | undefined): Member[] {
    return this.view(`members:${status ?? ''}`, () => {
      const items: Member[] = [];
      for (const member of this.members.values()) {
        if (
          status === 'archived'
            ? member.archived
            : !member.archived && (!status || member.status === status)
        ) {
          items.push(member);
        }
      }
      return items;
    });
  }

  /**
   * Members of a segment as `GET .../segments/{id}/members` lists them: the spec's
   * include_cleaned / include_transactional / include_unsubscribed default to false.
   */
  segmentMembers(
    segment: Segment,
    include: { cleaned: boolean; transactional: boolean; unsubscribed: boolean },
  ): Member[] {
    const key = `segment:${segment.id}:${+include.cleaned}${+include.transactional}${+include.unsubscribed}`;
    return this.view(key, () => {
      const items: Member[] = [];
      for (const member of segment.members.keys()) {
        if (member.archived) continue;
        if (member.status === 'cleaned' && !include.cleaned) continue;
        if (member.status === 'transactional' && !include.transactional) continue;
        if (member.status === 'unsubscribed' && !include.unsubscribed) continue;
        items.push(member);
      }
      return items;
    });
  }
}

function defaultMergeOptions(type: MergeFieldType): MergeFieldOptions {
  switch (type) {
    case 'text':
      return { size: 25 };
    case 'address':
      return { default_country: 164 };
    case 'phone':
      return { phone_format: 'none' };
    case 'date':
      return { date_format: 'MM/DD/YYYY' };
    case 'birthday':
      return { date_format: 'MM/DD' };
    case 'radio':
    case 'dropdown':
      return { choices: [] };
    default:
      return {};
  }
}

/** Mailchimp's per-type check of a merge value, returning its message (recorded ones quoted). */
function mergeValueProblem(field: MergeField, value: unknown): string | undefined {
  if (value === '' || value === null) return undefined;
  switch (field.type) {
    case 'number':
      // Recorded: {"field":"LTV","message":"Please enter a number"}
      if (typeof value === 'number' && Number.isFinite(value)) return undefined;
      if (typeof value === 'string' && /^-?\d+(\.\d+)?$/.test(value.trim())) return undefined;
      return 'Please enter a number';
    case 'address': {
      // Mailchimp: addr1, city, state and zip are required in an address ("Please enter a
      // complete address", as clients match it).
      if (!isObject(value)) return 'Please enter a complete address';
      const complete = ['addr1', 'city', 'state', 'zip'].every(
        (key) => typeof value[key] === 'string' && (value[key] as string).trim() !== '',
      );
      return complete ? undefined : 'Please enter a complete address';
    }
    case 'radio':
    case 'dropdown':
      if (typeof value !== 'string') return 'Please choose an option.';
      return field.options.choices?.length && !field.options.choices.includes(value)
        ? 'Please choose an option.'
        : undefined;
    default:
      return typeof value === 'string' || typeof value === 'number'
        ? undefined
        : `Please enter a valid ${field.type}`; // [inferred] wording
  }
}
