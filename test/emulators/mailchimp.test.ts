/**
 * The Mailchimp emulator, driven only through the real `@mailchimp/mailchimp_marketing` SDK
 * (its state helpers stand in for what people and the Mailchimp app do on Mailchimp's side).
 * Every emulator here checks its traffic against the saved spec; each test ends with no
 * violation.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  createSdkClient,
  mailchimpSpec,
  startMailchimpEmulator,
  subscriberHash,
  type MailchimpEmulator,
  type MailchimpSdkClient,
  type MailchimpSdkError,
} from './mailchimp/index.ts';

let mailchimp: MailchimpEmulator;
let client: MailchimpSdkClient;
let listId: string;

beforeEach(async () => {
  mailchimp = await startMailchimpEmulator({ validate: true, apiKeys: ['key-us1', 'token-2'] });
  client = createSdkClient({ url: mailchimp.url, apiKey: 'key-us1' });
  listId = mailchimp.createList({ name: 'Customers' }).id;
});

afterEach(async () => {
  await mailchimp.close();
  expect(mailchimp.violations).toEqual([]);
});

/** The SDK's rejection, for calls that must fail. */
async function failure(call: Promise<unknown>): Promise<MailchimpSdkError> {
  try {
    await call;
  } catch (error) {
    return error as MailchimpSdkError;
  }
  throw new Error('expected the call to fail');
}

const person = (n: number) => `person${n}@example.com`;

describe('authentication', () => {
  it('answers ping for a valid API key (Basic) and OAuth token (Bearer)', async () => {
    expect(await client.ping.get()).toEqual({ health_status: "Everything's Chimpy!" });
    const bearer = createSdkClient({ url: mailchimp.url, accessToken: 'token-2' });
    expect(await bearer.ping.get()).toEqual({ health_status: "Everything's Chimpy!" });
  });

  it('refuses an unknown key with 401 and Mailchimp problem document', async () => {
    const stranger = createSdkClient({ url: mailchimp.url, apiKey: 'wrong-us1' });
    const error = await failure(stranger.lists.getList(listId));
    expect(error.status).toBe(401);
    expect(error.response?.headers['content-type']).toBe('application/problem+json; charset=utf-8');
    expect(error.response?.body).toEqual({
      type: 'https://mailchimp.com/developer/marketing/docs/errors/',
      title: 'API Key Invalid',
      status: 401,
      detail: "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
      instance: error.response?.headers['x-request-id'],
    });
  });
});

describe('lists', () => {
  it('reads an audience and lists audiences', async () => {
    const list = await client.lists.getList(listId);
    expect(list).toMatchObject({ id: listId, name: 'Customers', stats: { member_count: 0 } });
    const all = await client.lists.getAllLists();
    expect(all.total_items).toBe(1);
    expect(all.lists.map((item) => item.id)).toEqual([listId]);
  });

  it('answers 404 for an audience that does not exist or was deleted in Mailchimp', async () => {
    const missing = await failure(client.lists.getList('0000000000'));
    expect(missing.status).toBe(404);
    expect(missing.response?.body).toMatchObject({
      title: 'Resource Not Found',
      detail: 'The requested resource could not be found.',
    });
    mailchimp.deleteList(listId);
    const deleted = await failure(
      client.lists.batchListMembers(listId, {
        members: [{ email_address: person(1), status: 'subscribed' }],
      }),
    );
    expect(deleted.status).toBe(404);
  });
});

describe('batch subscribe', () => {
  it('creates new members, then updates them with update_existing', async () => {
    const created = await client.lists.batchListMembers(listId, {
      members: [1, 2, 3].map((n) => ({
        email_address: person(n),
        status: 'subscribed' as const,
        merge_fields: { FNAME: `First ${n}` },
      })),
      update_existing: true,
    });
    expect(created).toMatchObject({
      total_created: 3,
      total_updated: 0,
      error_count: 0,
      errors: [],
    });
    expect(created.new_members.map((member) => member.id)).toEqual(
      [1, 2, 3].map((n) => subscriberHash(person(n))),
    );
    expect(created.new_members[0]?.merge_fields).toEqual({
      FNAME: 'First 1',
      LNAME: '',
      ADDRESS: '',
      PHONE: '',
    });

    const updated = await client.lists.batchListMembers(listId, {
      members: [
        { email_address: 'PERSON1@example.com', merge_fields: { LNAME: 'Last' } },
        { email_address: person(4), status: 'subscribed' },
      ],
      update_existing: true,
    });
    expect(updated).toMatchObject({ total_created: 1, total_updated: 1, error_count: 0 });
    expect(mailchimp.member(listId, person(1))).toMatchObject({
      status: 'subscribed',
      mergeFields: { FNAME: 'First 1', LNAME: 'Last' },
    });
    expect(mailchimp.memberCount(listId)).toBe(4);
  });

  it('reports existing members as ERROR_CONTACT_EXISTS without update_existing', async () => {
    mailchimp.addMember(listId, { email: person(1) });
    const result = await client.lists.batchListMembers(listId, {
      members: [
        { email_address: person(1), status: 'subscribed', merge_fields: { FNAME: 'Changed' } },
        { email_address: person(2), status: 'subscribed' },
      ],
    });
    expect(result.total_created).toBe(1);
    expect(result.errors).toEqual([
      {
        email_address: person(1),
        error: `${person(1)} is already a list member, do you want to update? please provide update_existing:true in the request body`,
        error_code: 'ERROR_CONTACT_EXISTS',
      },
    ]);
    expect(mailchimp.member(listId, person(1))?.mergeFields).toEqual({});
  });

  it('rejects invalid addresses per member and applies the rest', async () => {
    const result = await client.lists.batchListMembers(listId, {
      members: [
        { email_address: 'not-an-address', status: 'subscribed' },
        { email_address: 'two@@example.com', status: 'subscribed' },
        { email_address: person(1), status: 'subscribed' },
      ],
      update_existing: true,
    });
    expect(result.total_created).toBe(1);
    expect(result.error_count).toBe(2);
    expect(result.errors[0]).toEqual({
      email_address: 'not-an-address',
      error: 'not-an-address looks fake or invalid, please enter a real email address.',
      error_code: 'ERROR_GENERIC',
    });
    expect(mailchimp.members(listId).map((member) => member.email)).toEqual([person(1)]);
  });

  it('never re-subscribes someone who unsubscribed or bounced (compliance state)', async () => {
    mailchimp.addMember(listId, { email: person(1) });
    mailchimp.addMember(listId, { email: person(2) });
    mailchimp.setMemberStatus(listId, person(1), 'unsubscribed');
    mailchimp.setMemberStatus(listId, person(2), 'cleaned');

    const result = await client.lists.batchListMembers(listId, {
      members: [1, 2].map((n) => ({
        email_address: person(n),
        status: 'subscribed' as const,
        merge_fields: { FNAME: 'New name' },
      })),
      update_existing: true,
    });
    expect(result.total_updated).toBe(0);
    expect(result.errors).toEqual(
      [1, 2].map((n) => ({
        email_address: person(n),
        error: `${person(n)} is in a compliance state due to unsubscribe, bounce, or compliance review and cannot be subscribed.`,
        error_code: 'ERROR_GENERIC',
      })),
    );
    expect(mailchimp.member(listId, person(1))).toMatchObject({
      status: 'unsubscribed',
      mergeFields: {},
    });
    expect(mailchimp.member(listId, person(2))?.status).toBe('cleaned');

    // Updating their fields without touching the status is allowed; `pending` asks the person
    // who unsubscribed to confirm again.
    const update = await client.lists.batchListMembers(listId, {
      members: [
        { email_address: person(1), merge_fields: { FNAME: 'Kept' } },
        { email_address: person(2), status: 'pending' },
      ],
      update_existing: true,
    });
    expect(update.total_updated).toBe(1);
    expect(update.errors.map((error) => error.email_address)).toEqual([person(2)]);
    expect(mailchimp.member(listId, person(1))).toMatchObject({
      status: 'unsubscribed',
      mergeFields: { FNAME: 'Kept' },
    });
  });

  it('refuses to re-import a forgotten (permanently deleted) address', async () => {
    mailchimp.addMember(listId, { email: person(1) });
    mailchimp.forgetMember(listId, person(1));
    await client.lists.batchListMembers(listId, {
      members: [{ email_address: person(2), status: 'subscribed' }],
    });
    await client.lists.deleteListMemberPermanent(listId, subscriberHash(person(2)));

    const result = await client.lists.batchListMembers(listId, {
      members: [1, 2].map((n) => ({ email_address: person(n), status: 'subscribed' as const })),
      update_existing: true,
    });
    expect(result.total_created).toBe(0);
    expect(result.errors.map((error) => error.error)).toEqual(
      [1, 2].map(
        (n) =>
          `${person(n)} was permanently deleted and cannot be re-imported. The contact must re-subscribe to get back on the list.`,
      ),
    );
    expect(mailchimp.memberCount(listId)).toBe(0);
  });

  it('accepts 500 members a call and refuses 501 without applying any', async () => {
    const members = (count: number) =>
      Array.from({ length: count }, (_, n) => ({
        email_address: person(n),
        status: 'subscribed' as const,
      }));
    const tooMany = await failure(client.lists.batchListMembers(listId, { members: members(501) }));
    expect(tooMany.status).toBe(400);
    expect(tooMany.response?.body).toMatchObject({ title: 'Invalid Resource', status: 400 });
    expect(mailchimp.memberCount(listId)).toBe(0);

    const result = await client.lists.batchListMembers(listId, { members: members(500) });
    expect(result.total_created).toBe(500);
    expect(mailchimp.memberCount(listId, 'subscribed')).toBe(500);
  });

  it('tags new and existing members by name, whatever their status, and none it refuses', async () => {
    // "tags are now properly added to existing members" (release note, 2022-01-24).
    const vip = mailchimp.createTag(listId, 'VIP');
    mailchimp.addMember(listId, { email: person(1), status: 'unsubscribed' });
    mailchimp.addMember(listId, { email: person(2), status: 'subscribed' });
    const created = await client.lists.batchListMembers(listId, {
      members: [1, 2, 3].map((n) => ({
        email_address: person(n),
        status: 'subscribed' as const,
        tags: ['vip'],
      })),
    });
    // Without update_existing, existing members are refused whole: no tag either.
    expect(created.errors.map((e) => [e.email_address, e.error_code])).toEqual([
      [person(1), 'ERROR_CONTACT_EXISTS'],
      [person(2), 'ERROR_CONTACT_EXISTS'],
    ]);
    // Names compare without case; the answer carries the tag's id.
    expect(created.new_members[0]?.tags).toEqual([{ id: vip.id, name: 'VIP' }]);
    expect(mailchimp.segmentMembers(listId, 'VIP')).toEqual([person(3)]);

    // With update_existing, an existing member is tagged even when unsubscribed (the status
    // is left alone when none is sent), but not when the member is refused (compliance).
    const updated = await client.lists.batchListMembers(listId, {
      members: [
        { email_address: person(1), tags: ['VIP'] },
        { email_address: person(2), status: 'subscribed', tags: ['New tag'] },
        { email_address: person(4), status: 'subscribed', tags: ['VIP'] },
      ],
      update_existing: true,
    });
    expect(updated.total_updated).toBe(2);
    expect(mailchimp.member(listId, person(1))).toMatchObject({
      status: 'unsubscribed',
      tags: ['VIP'],
    });
    expect(mailchimp.memberTags(listId, person(2))).toEqual(['New tag']);
    mailchimp.setMemberStatus(listId, person(2), 'cleaned');
    const refused = await client.lists.batchListMembers(listId, {
      members: [{ email_address: person(2), status: 'subscribed', tags: ['VIP'] }],
      update_existing: true,
    });
    expect(refused.error_count).toBe(1);
    expect(mailchimp.memberTags(listId, person(2))).toEqual(['New tag']);
  });

  it('replaces tags with sync_tags and adds them otherwise', async () => {
    await client.lists.batchListMembers(listId, {
      members: [{ email_address: person(1), status: 'subscribed', tags: ['a', 'b'] }],
    });
    expect(mailchimp.memberTags(listId, person(1))).toEqual(['a', 'b']);
    await client.lists.batchListMembers(listId, {
      members: [{ email_address: person(1), tags: ['c'] }],
      update_existing: true,
    });
    expect(mailchimp.memberTags(listId, person(1))).toEqual(['a', 'b', 'c']);
    await client.lists.batchListMembers(listId, {
      members: [{ email_address: person(1), tags: ['b'] }],
      update_existing: true,
      sync_tags: true,
    });
    expect(mailchimp.memberTags(listId, person(1))).toEqual(['b']);
  });
});

describe('members', () => {
  it('upserts with PUT: status_if_new for a new member, status rules for an existing one', async () => {
    const hash = subscriberHash(person(1));
    const created = await client.lists.setListMember(listId, hash, {
      email_address: person(1),
      status_if_new: 'subscribed',
      merge_fields: { FNAME: 'Ann' },
    });
    expect(created).toMatchObject({ id: hash, status: 'subscribed', full_name: 'Ann' });

    mailchimp.setMemberStatus(listId, person(1), 'unsubscribed');
    const kept = await client.lists.setListMember(listId, hash, {
      email_address: person(1),
      status_if_new: 'subscribed',
      merge_fields: { LNAME: 'Lee' },
    });
    expect(kept).toMatchObject({
      status: 'unsubscribed',
      merge_fields: { FNAME: 'Ann', LNAME: 'Lee' },
    });

    const refused = await failure(
      client.lists.setListMember(listId, hash, {
        email_address: person(1),
        status_if_new: 'subscribed',
        status: 'subscribed',
      }),
    );
    expect(refused.status).toBe(400);
    expect(refused.response?.body).toMatchObject({ title: 'Member In Compliance State' });

    // The raw address is accepted in place of the hash.
    const byEmail = await client.lists.getListMember(listId, person(1));
    expect(byEmail.id).toBe(hash);
  });

  it('answers Member Exists to POST for an existing member, and Forgotten for a forgotten one', async () => {
    await client.lists.addListMember(listId, { email_address: person(1), status: 'subscribed' });
    const exists = await failure(
      client.lists.addListMember(listId, { email_address: person(1), status: 'subscribed' }),
    );
    expect(exists.response?.body).toMatchObject({
      title: 'Member Exists',
      detail: `${person(1)} is already a list member. Use PUT to insert or update list members.`,
    });
    mailchimp.forgetMember(listId, person(1));
    const forgotten = await failure(
      client.lists.setListMember(listId, subscriberHash(person(1)), {
        email_address: person(1),
        status_if_new: 'subscribed',
      }),
    );
    expect(forgotten.response?.body).toMatchObject({ title: 'Forgotten Email Not Subscribed' });
  });

  it('archives on DELETE, refuses a second archive with 405, and re-adds on PUT', async () => {
    mailchimp.addMember(listId, { email: person(1) });
    const hash = subscriberHash(person(1));
    expect(await client.lists.deleteListMember(listId, hash)).toBeNull();
    expect((await client.lists.getListMember(listId, hash)).status).toBe('archived');
    expect((await client.lists.getListMembersInfo(listId)).total_items).toBe(0);

    const again = await failure(client.lists.deleteListMember(listId, hash));
    expect(again.status).toBe(405);
    expect(again.response?.headers.allow).toBe('GET, PUT');

    await client.lists.setListMember(listId, hash, {
      email_address: person(1),
      status_if_new: 'subscribed',
    });
    expect(mailchimp.member(listId, person(1))?.status).toBe('subscribed');
  });

  it('patches a member and 404s for one not on the list', async () => {
    mailchimp.addMember(listId, { email: person(1) });
    const patched = await client.lists.updateListMember(listId, subscriberHash(person(1)), {
      merge_fields: { FNAME: 'Bo' },
      status: 'unsubscribed',
    });
    expect(patched).toMatchObject({ status: 'unsubscribed', merge_fields: { FNAME: 'Bo' } });
    const missing = await failure(
      client.lists.updateListMember(listId, subscriberHash(person(2)), { vip: true }),
    );
    expect(missing.status).toBe(404);
    expect((await failure(client.lists.getListMember(listId, person(2)))).status).toBe(404);
  });

  it('pages members with count and offset, and filters by status', async () => {
    for (let n = 0; n < 25; n++) mailchimp.addMember(listId, { email: person(n) });
    mailchimp.setMemberStatus(listId, person(3), 'unsubscribed');
    const page = await client.lists.getListMembersInfo(listId, { count: 10, offset: 20 });
    expect(page.total_items).toBe(25);
    expect(page.members.map((member) => member.email_address)).toEqual(
      [20, 21, 22, 23, 24].map(person),
    );
    const unsubscribed = await client.lists.getListMembersInfo(listId, { status: 'unsubscribed' });
    expect(unsubscribed.members.map((member) => member.email_address)).toEqual([person(3)]);
    const fields = await client.lists.getListMembersInfo(listId, {
      count: 1,
      fields: ['members.email_address', 'total_items'],
    });
    expect(fields).toEqual({ members: [{ email_address: person(0) }], total_items: 25 });
  });
});

describe('merge fields', () => {
  it('lists the defaults, creates fields and stores values by tag', async () => {
    const defaults = await client.lists.getListMergeFields(listId);
    expect(defaults.merge_fields.map((field) => field.tag)).toEqual([
      'FNAME',
      'LNAME',
      'ADDRESS',
      'PHONE',
    ]);
    const ltv = await client.lists.addListMergeField(listId, {
      name: 'Lifetime value',
      type: 'number',
      tag: 'LTV',
    });
    expect(ltv).toMatchObject({ tag: 'LTV', type: 'number', required: false, list_id: listId });
    const auto = await client.lists.addListMergeField(listId, { name: 'City', type: 'text' });
    expect(auto.tag).toBe(`MMERGE${auto.merge_id}`);
    const page = await client.lists.getListMergeFields(listId, { count: 2, offset: 4 });
    expect(page.total_items).toBe(6);
    expect(page.merge_fields.map((field) => field.tag)).toEqual(['LTV', auto.tag]);

    const duplicate = await failure(
      client.lists.addListMergeField(listId, { name: 'Again', type: 'text', tag: 'LTV' }),
    );
    expect(duplicate.status).toBe(400);

    const result = await client.lists.batchListMembers(listId, {
      members: [
        { email_address: person(1), status: 'subscribed', merge_fields: { LTV: '12.5' } },
        { email_address: person(2), status: 'subscribed', merge_fields: { LTV: 'AAAAA' } },
      ],
    });
    expect(result.new_members[0]?.merge_fields.LTV).toBe(12.5);
    expect(result.errors).toEqual([
      {
        email_address: person(2),
        error: 'Your merge fields were invalid.',
        error_code: 'ERROR_GENERIC',
        field: 'LTV',
        field_message: 'Please enter a number',
      },
    ]);
  });

  it('requires required fields of new members unless skip_merge_validation', async () => {
    mailchimp.addMergeField(listId, { tag: 'CITY', required: true });
    const refused = await failure(
      client.lists.setListMember(listId, person(1), {
        email_address: person(1),
        status_if_new: 'subscribed',
      }),
    );
    expect(refused.response?.body).toMatchObject({
      title: 'Invalid Resource',
      detail: 'Your merge fields were invalid.',
      errors: [{ field: 'CITY', message: 'Please enter a value' }],
    });
    const skipped = await client.lists.setListMember(
      listId,
      person(1),
      { email_address: person(1), status_if_new: 'subscribed' },
      { skipMergeValidation: true },
    );
    expect(skipped.status).toBe('subscribed');
  });

  it('drops merge fields the audience does not have, as Mailchimp does', async () => {
    const member = await client.lists.addListMember(listId, {
      email_address: person(1),
      status: 'subscribed',
      merge_fields: { FNAME: 'Cy', NOPE: 'x' },
    });
    expect(member.merge_fields).toEqual({ FNAME: 'Cy', LNAME: '', ADDRESS: '', PHONE: '' });
  });

  it('can reject unknown merge fields with 400 (unknownMergeFields: reject)', async () => {
    const strict = await startMailchimpEmulator({ unknownMergeFields: 'reject', validate: true });
    try {
      const list = strict.createList();
      const sdk = createSdkClient({ url: strict.url, apiKey: strict.apiKey });
      const error = await failure(
        sdk.lists.addListMember(list.id, {
          email_address: person(1),
          status: 'subscribed',
          merge_fields: { NOPE: 'x' },
        }),
      );
      expect(error.response?.body).toMatchObject({
        detail: 'Your merge fields were invalid.',
        errors: [{ field: 'NOPE' }],
      });
      const batch = await sdk.lists.batchListMembers(list.id, {
        members: [{ email_address: person(2), status: 'subscribed', merge_fields: { NOPE: 'x' } }],
      });
      expect(batch.errors[0]?.field).toBe('NOPE');
      expect(strict.violations).toEqual([]);
    } finally {
      await strict.close();
    }
  });
});

describe('tags and static segments', () => {
  it('adds tags to a member, creating unknown ones, and removes them', async () => {
    mailchimp.addMember(listId, { email: person(1) });
    const hash = subscriberHash(person(1));
    expect(
      await client.lists.updateListMemberTags(listId, hash, {
        tags: [
          { name: 'VIP', status: 'active' },
          { name: 'Never there', status: 'inactive' },
        ],
        is_syncing: true,
      }),
    ).toBeNull();
    expect(mailchimp.segments(listId).map((segment) => segment.name)).toEqual(['VIP']);
    const tags = await client.lists.getListMemberTags(listId, hash);
    expect(tags.tags.map((tag) => tag.name)).toEqual(['VIP']);

    // Tag names are matched without regard to case.
    await client.lists.updateListMemberTags(listId, hash, {
      tags: [{ name: 'vip', status: 'inactive' }],
    });
    expect(mailchimp.memberTags(listId, person(1))).toEqual([]);

    const notMember = await failure(
      client.lists.updateListMemberTags(listId, subscriberHash(person(2)), {
        tags: [{ name: 'VIP', status: 'active' }],
      }),
    );
    expect(notMember.status).toBe(404);
  });

  it('creates a tag as a static segment, ignoring addresses not on the list', async () => {
    mailchimp.addMember(listId, { email: person(1) });
    const segment = await client.lists.createSegment(listId, {
      name: 'Spring',
      static_segment: [person(1), person(9)],
    });
    expect(segment).toMatchObject({ name: 'Spring', type: 'static', member_count: 1 });
    const listed = await client.lists.listSegments(listId, { type: 'static' });
    expect(listed.segments.map((item) => item.id)).toEqual([segment.id]);
    expect((await client.lists.tagSearch(listId, { name: 'spr' })).tags).toEqual([
      { id: segment.id, name: 'Spring' },
    ]);
    const neither = await failure(client.lists.createSegment(listId, { name: 'Empty' }));
    expect(neither.response?.body).toMatchObject({
      detail: 'Must provide either an "options" field or a "static_segment" field',
    });
  });

  it('adds and removes up to 500 members a call, reporting addresses not on the list', async () => {
    for (let n = 0; n < 5; n++) mailchimp.addMember(listId, { email: person(n) });
    const { id } = mailchimp.createTag(listId, 'Synced');
    const added = await client.lists.batchSegmentMembers(
      { members_to_add: [person(0), person(1), person(2), person(7)] },
      listId,
      id,
    );
    expect(added.total_added).toBe(3);
    expect(added.members_added.map((member) => member.email_address)).toEqual(
      [0, 1, 2].map(person),
    );
    expect(added.errors).toEqual([{ email_addresses: [person(7)], error: expect.any(String) }]);
    expect(added.error_count).toBe(1);

    const again = await client.lists.batchSegmentMembers(
      { members_to_add: [person(0), person(3)], members_to_remove: [person(1), person(4)] },
      listId,
      id,
    );
    expect(again).toMatchObject({ total_added: 1, total_removed: 1, error_count: 0 });
    expect(mailchimp.segmentMembers(listId, 'Synced')).toEqual([person(0), person(2), person(3)]);

    const members = await client.lists.getSegmentMembersList(listId, id, { count: 2 });
    expect(members.total_items).toBe(3);
    expect(members.members.map((member) => member.email_address)).toEqual([person(0), person(2)]);

    const tooMany = await failure(
      client.lists.batchSegmentMembers(
        { members_to_add: Array.from({ length: 501 }, (_, n) => person(n)) },
        listId,
        id,
      ),
    );
    expect(tooMany.status).toBe(400);
    expect(mailchimp.segmentMembers(listId, id)).toHaveLength(3);
  });

  it('leaves unsubscribed members out of segment members unless asked', async () => {
    mailchimp.addMember(listId, { email: person(1), tags: ['T'] });
    mailchimp.addMember(listId, { email: person(2), tags: ['T'] });
    mailchimp.setMemberStatus(listId, person(2), 'unsubscribed');
    const { id } = mailchimp.segments(listId)[0]!;
    expect((await client.lists.getSegmentMembersList(listId, id)).total_items).toBe(1);
    expect(
      (await client.lists.getSegmentMembersList(listId, id, { includeUnsubscribed: true }))
        .total_items,
    ).toBe(2);
  });

  it('counts in member_count only the tagged contacts still on the list', async () => {
    for (let n = 1; n <= 3; n++) mailchimp.addMember(listId, { email: person(n), tags: ['T'] });
    const { id } = mailchimp.segments(listId)[0]!;
    await client.lists.deleteListMember(listId, subscriberHash(person(1)));
    await client.lists.deleteListMemberPermanent(listId, subscriberHash(person(2)));
    expect((await client.lists.getSegment(listId, id)).member_count).toBe(1);
    await client.lists.setListMember(listId, subscriberHash(person(1)), {
      email_address: person(1),
      status_if_new: 'subscribed',
    });
    expect((await client.lists.listSegments(listId)).segments[0]?.member_count).toBe(2);
    expect(mailchimp.segmentMembers(listId, id)).toEqual([person(1), person(3)]);
  });

  it('answers 404 once a tag is deleted, through the API or in Mailchimp', async () => {
    mailchimp.addMember(listId, { email: person(1), tags: ['Old', 'Gone'] });
    const [old, gone] = mailchimp.segments(listId);
    expect(await client.lists.deleteSegment(listId, old!.id)).toBeNull();
    mailchimp.deleteSegment(listId, 'Gone');
    for (const id of [old!.id, gone!.id]) {
      expect((await failure(client.lists.getSegment(listId, id))).status).toBe(404);
      const batch = await failure(
        client.lists.batchSegmentMembers({ members_to_add: [person(1)] }, listId, id),
      );
      expect(batch.status).toBe(404);
    }
    expect(mailchimp.memberTags(listId, person(1))).toEqual([]);
  });
});

describe('limits and faults', () => {
  it('refuses more than 10 simultaneous requests per key with 429', async () => {
    // Long enough that all 15 arrive while the first 10 are still being answered.
    mailchimp.setLatency(500);
    const results = await Promise.allSettled(
      Array.from({ length: 15 }, () => client.lists.getList(listId)),
    );
    const refused = results.filter((result) => result.status === 'rejected');
    expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(10);
    expect(refused).toHaveLength(5);
    for (const result of refused) {
      const error = (result as PromiseRejectedResult).reason as MailchimpSdkError;
      expect(error.status).toBe(429);
      expect(error.response?.body).toMatchObject({
        title: 'Too Many Requests',
        detail: 'You have exceeded the limit of 10 simultaneous connections.',
      });
      expect(error.response?.headers['retry-after']).toBeUndefined();
    }
    expect(mailchimp.stats).toEqual({ peakInFlight: 10, refusedForConcurrency: 5 });

    // The limit is per key: another key has its own 10.
    const other = createSdkClient({ url: mailchimp.url, accessToken: 'token-2' });
    const both = await Promise.allSettled([
      ...Array.from({ length: 10 }, () => client.ping.get()),
      ...Array.from({ length: 10 }, () => other.ping.get()),
    ]);
    expect(both.every((result) => result.status === 'fulfilled')).toBe(true);
  });

  it('injects a 429 with Retry-After that the SDK exposes, then recovers', async () => {
    mailchimp.inject({ kind: 'status', status: 429, count: 1, retryAfterSeconds: 7 });
    const error = await failure(client.lists.getList(listId));
    expect(error.status).toBe(429);
    expect(error.response?.headers['retry-after']).toBe('7');
    expect(error.response?.body).toMatchObject({ status: 429, title: 'Too Many Requests' });
    expect((await client.lists.getList(listId)).id).toBe(listId);
  });

  it('injects 5xx answers for as many requests as asked', async () => {
    mailchimp.inject({ kind: 'status', status: 503, count: 2 });
    mailchimp.inject({ kind: 'status', status: 500, count: 1 });
    const statuses = [];
    for (let n = 0; n < 4; n++) {
      statuses.push(
        await client.ping.get().then(
          () => 200,
          (error: MailchimpSdkError) => error.status,
        ),
      );
    }
    expect(statuses).toEqual([503, 503, 500, 200]);
    expect(mailchimp.requests.map((request) => request.status)).toEqual([503, 503, 500, 200]);
  });

  it('drops the connection before applying: the call rejects and nothing changed', async () => {
    mailchimp.inject({ kind: 'drop', count: 1 });
    const error = await failure(
      client.lists.batchListMembers(listId, {
        members: [{ email_address: person(1), status: 'subscribed' }],
      }),
    );
    expect(error.status).toBeUndefined();
    expect(error.code).toBe('ECONNRESET');
    expect(mailchimp.memberCount(listId)).toBe(0);
    expect(mailchimp.requests.at(-1)).toMatchObject({ method: 'POST', status: 0 });
  });

  it('drops the connection after applying: the call rejects but the change happened', async () => {
    mailchimp.inject({ kind: 'drop-after-apply', count: 1 });
    const batch = {
      members: [{ email_address: person(1), status: 'subscribed' as const }],
      update_existing: true,
    };
    const error = await failure(client.lists.batchListMembers(listId, batch));
    expect(error.code).toBe('ECONNRESET');
    expect(mailchimp.member(listId, person(1))?.status).toBe('subscribed');
    // A retry finds the member there already.
    expect(await client.lists.batchListMembers(listId, batch)).toMatchObject({
      total_created: 0,
      total_updated: 1,
    });
  });

  it('delays answers by the set latency until faults are cleared', async () => {
    mailchimp.setLatency(400);
    let started = performance.now();
    await client.ping.get();
    expect(performance.now() - started).toBeGreaterThanOrEqual(395);
    mailchimp.inject({ kind: 'status', status: 500 });
    mailchimp.clearFaults();
    started = performance.now();
    await client.ping.get();
    expect(performance.now() - started).toBeLessThan(395);
  });

  it('can hold a key to a number of requests per minute', async () => {
    const quota = await startMailchimpEmulator({ requestsPerMinute: 2 });
    try {
      const sdk = createSdkClient({ url: quota.url, apiKey: quota.apiKey });
      await sdk.ping.get();
      await sdk.ping.get();
      const error = await failure(sdk.ping.get());
      expect(error.status).toBe(429);
      expect(error.response?.body).toMatchObject({ title: 'Too Many Requests' });
    } finally {
      await quota.close();
    }
  });

  it('records every request with its path and status', async () => {
    await client.lists.getList(listId);
    await failure(client.lists.getList('missing'));
    expect(mailchimp.requests).toEqual([
      { method: 'GET', path: `/3.0/lists/${listId}`, status: 200, at: expect.any(Number) },
      { method: 'GET', path: '/3.0/lists/missing', status: 404, at: expect.any(Number) },
    ]);
  });
});

describe('spec validation', () => {
  it('reports requests and responses that break the spec', () => {
    const spec = mailchimpSpec();
    const request = spec.checkRequest({
      method: 'POST',
      path: '/lists/abc',
      query: new URLSearchParams('skip_merge_validation=true&bogus=1'),
      body: {
        members: [{ email_address: person(1), stauts: 'subscribed' }],
        update_existing: 'yes',
      },
    });
    expect(request).toHaveLength(1);
    expect(request[0]!.operation).toBe('postListsId');
    expect(request[0]!.errors).toEqual(
      expect.arrayContaining([
        'query parameter bogus is not in the spec',
        'body/members/0 has stauts, which the spec does not define',
        'body/update_existing must be boolean',
      ]),
    );
    const response = spec.checkResponse({
      method: 'GET',
      path: '/lists/abc/members/123',
      status: 200,
      contentType: 'application/json; charset=utf-8',
      body: { id: 'x', status: 'gone', invented: true },
    });
    expect(response[0]!.errors).toEqual(
      expect.arrayContaining([
        expect.stringContaining('body/status must be equal to one of the allowed values'),
        'body has invented, which the spec does not define',
      ]),
    );
    expect(
      spec.checkResponse({
        method: 'GET',
        path: '/lists/abc',
        status: 404,
        contentType: 'application/problem+json',
        body: { title: 'Resource Not Found' },
      })[0]!.errors,
    ).toEqual(expect.arrayContaining(["body must have required property 'type'"]));
  });

  it('finds no violation in a whole sync conversation', async () => {
    await client.ping.get();
    await client.lists.getAllLists({ count: 5 });
    await client.lists.getList(listId);
    await client.lists.getListMergeFields(listId, { count: 1000 });
    await client.lists.addListMergeField(listId, { name: 'Score', type: 'number', tag: 'SCORE' });
    const tag = await client.lists.createSegment(listId, { name: 'Segment 7', static_segment: [] });
    await client.lists.listSegments(listId, { type: 'static', count: 1000 });
    await client.lists.batchListMembers(
      listId,
      {
        members: [1, 2, 3].map((n) => ({
          email_address: person(n),
          status: 'subscribed' as const,
          merge_fields: { FNAME: 'A', SCORE: n },
        })),
        update_existing: true,
      },
      { skipMergeValidation: true },
    );
    await client.lists.batchSegmentMembers(
      { members_to_add: [1, 2, 3].map(person) },
      listId,
      tag.id,
    );
    await client.lists.batchSegmentMembers({ members_to_remove: [person(3)] }, listId, tag.id);
    await client.lists.getSegment(listId, tag.id);
    await client.lists.getSegmentMembersList(listId, tag.id, { count: 1000 });
    await client.lists.updateListMemberTags(listId, subscriberHash(person(3)), {
      tags: [{ name: 'Other', status: 'active' }],
    });
    await client.lists.getListMemberTags(listId, subscriberHash(person(3)));
    await client.lists.setListMember(listId, subscriberHash(person(4)), {
      email_address: person(4),
      status_if_new: 'subscribed',
    });
    await client.lists.getListMember(listId, subscriberHash(person(4)));
    await client.lists.getListMembersInfo(listId, { count: 1000, status: 'subscribed' });
    await client.lists.deleteListMember(listId, subscriberHash(person(4)));
    await failure(client.lists.getList('missing'));
    expect(mailchimp.requests.every((request) => request.status > 0)).toBe(true);
    expect(mailchimp.violations).toEqual([]);
  });
});
