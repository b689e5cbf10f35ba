/**
 * Sending a batch to Mailchimp: members upserted with batch subscribe and tagged with the sync's
 * tag (a static segment); members who left untagged, and archived when asked for if the hub
 * added them.
 *
 * Never re-subscribing anyone: batch subscribe has no `status_if_new`, and a `status` sent for an
 * existing member would overwrite what the person chose. So each member goes through passes:
 * - a **create** pass sends `status` (`subscribed`, or `pending` with double opt-in) and the tag
 *   (`tags`) with `update_existing: false`: it can only add people Mailchimp does not hold (or
 *   holds archived, which brings them back), and tags them in the same call; an existing member
 *   answers `ERROR_CONTACT_EXISTS` and is left untouched;
 * - an **update** pass sends no `status` and no tag with `update_existing: true`: merge fields
 *   change, the subscription status never does; someone Mailchimp does not hold answers that a
 *   status is needed. Members it updates are tagged afterwards with the segment call, unless
 *   they are `unsubscribed` or `cleaned`: those are reported rejected and not tagged.
 * An `add` row starts with the create pass and an `update` row with the update pass; a member
 * answered "exists" or "needs a status" moves to the other pass, once. A first sync of new
 * people therefore costs one call per 500.
 *
 * Each confirmed row keeps `{ created }` as its state: true when the create pass added the
 * member. `archiveOnRemove` archives only those, so a contact who was on the audience before
 * the hub stays on it.
 */
import { createHash } from 'node:crypto';
import {
  ConfigError,
  VendorError,
  type DestinationPrepare,
  type DestinationSync,
  type PluginContext,
  type RowResult,
  type SyncInfo,
  type SyncRow,
} from 'audiencehub/sdk';
import {
  assertAudience,
  isNotFound,
  mailchimp,
  type BatchMember,
  type BatchSubscribeResult,
  type Mailchimp,
  type MailchimpConfig,
  type MemberInput,
  type Segment,
} from './client.ts';
import { EMAIL, ensureMergeFields } from './fields.ts';

/** Members per batch subscribe and per segment array: Mailchimp refuses more. */
export const MAX_MEMBERS = 500;

/** The tag a sync's members carry. */
export const tagName = (config: MailchimpConfig, sync: Pick<SyncInfo, 'segmentName'>) =>
  config.tagName ?? sync.segmentName;

interface Ready {
  tagId: number;
  tagName: string;
}

const keyOf = (config: MailchimpConfig, sync: SyncInfo) =>
  JSON.stringify([sync.id, config.baseUrl ?? '', config.listId, tagName(config, sync)]);

/** The current run's set-up per sync, made by its first batch and shared by the others. */
const setUps = new Map<string, Promise<Ready>>();
/** The tag id each sync last used in this process, to tell a tag deleted in Mailchimp. */
const lastTagIds = new Map<string, number>();

/**
 * A new run starts: forget the last run's set-up. Nothing is asked of Mailchimp here, so a run
 * with nothing to send makes no call at all; the first batch makes the tag and merge fields
 * ready (`ready`).
 */
export const prepare: DestinationPrepare<MailchimpConfig> = async ({ config, sync }) => {
  setUps.delete(keyOf(config, sync));
};

function ready(
  client: Mailchimp,
  config: MailchimpConfig,
  sync: SyncInfo,
  ctx: PluginContext,
): Promise<Ready> {
  const key = keyOf(config, sync);
  let setUp = setUps.get(key);
  if (!setUp) {
    setUp = makeReady(client, config, sync, key, ctx);
    setUps.set(key, setUp);
    // A failed set-up is tried again by the next batch (or the engine's retry of this one).
    setUp.catch(() => setUps.get(key) === setUp && setUps.delete(key));
  }
  return setUp;
}

async function makeReady(
  client: Mailchimp,
  config: MailchimpConfig,
  sync: SyncInfo,
  key: string,
  ctx: PluginContext,
): Promise<Ready> {
  const created = await ensureMergeFields(client, config, sync.fields);
  if (created.length > 0) ctx.log.info('Mailchimp merge fields created', { tags: created });
  const name = tagName(config, sync);
  const before = lastTagIds.get(key);
  let tag = await findTag(client, config, name);
  if (!tag) {
    tag = await client.call('POST', `/lists/${config.listId}/segments`, (sdk) =>
      sdk.lists.createSegment(config.listId, { name, static_segment: [] }),
    );
    if (before === undefined) ctx.log.info('Mailchimp tag created', { tag: name, id: tag.id });
  }
  if (before !== undefined && before !== tag.id) {
    // Detected, not repaired: the members tagged before lost the tag with it, and the hub's
    // ledger still counts them as sent (README.md, "A tag deleted in Mailchimp").
    ctx.log.warn(
      `The Mailchimp tag "${name}" (id ${before}) was deleted in Mailchimp; it is now id ${tag.id}. Members sent before carry it again only once they are sent again.`,
      { tag: name, deletedId: before, id: tag.id },
    );
  }
  lastTagIds.set(key, tag.id);
  return { tagId: tag.id, tagName: name };
}

/** The static segment (tag) of that name; Mailchimp compares tag names without case. */
async function findTag(
  client: Mailchimp,
  config: MailchimpConfig,
  name: string,
): Promise<Segment | undefined> {
  const wanted = name.toLowerCase();
  for (let offset = 0; ; offset += 1000) {
    const page = await client
      .call('GET', `/lists/${config.listId}/segments`, (sdk) =>
        sdk.lists.listSegments(config.listId, { type: 'static', count: 1000, offset }),
      )
      .catch(async (error: unknown) => {
        if (isNotFound(error)) await assertAudience(client, config);
        throw error;
      });
    const found = page.segments.find((s) => s.name.toLowerCase() === wanted);
    if (found) return found;
    if (page.segments.length < 1000 || offset + 1000 >= page.total_items) return undefined;
  }
}

/** A row's result without its id. */
type Outcome = RowResult extends infer R ? (R extends RowResult ? Omit<R, 'id'> : never) : never;

type Settle = (rows: SyncRow[], result: Outcome) => void;

/** One address of the batch and the rows (profiles) that carry it. */
interface Member {
  email: string;
  merge: Record<string, unknown>;
  rows: SyncRow[];
  first: 'create' | 'update';
  tried: Set<'create' | 'update'>;
}

/** What the steps of one batch share. */
interface Shared {
  client: Mailchimp;
  config: MailchimpConfig;
  sync: SyncInfo;
  tag: Ready;
  settle: Settle;
  ctx: PluginContext;
}

/**
 * The row state this plugin keeps: whether the hub's create pass added the member to the
 * audience (Mailchimp's `new_members`). Only such members are archived on removal.
 */
interface MemberState extends Record<string, unknown> {
  created: boolean;
}

export const sync: DestinationSync<MailchimpConfig> = async ({ config, sync, batch }, ctx) => {
  const results = new Map<string, RowResult>();
  const settle: Settle = (rows, result) => {
    for (const row of rows) results.set(row.id, { ...result, id: row.id } as RowResult);
  };
  const upserts = new Map<string, Member>();
  const removals = new Map<string, SyncRow[]>();
  for (const row of batch) {
    const email = row.fields[EMAIL];
    if (typeof email !== 'string' || email.trim() === '') {
      settle([row], { status: 'rejected', reason: 'no email address (EMAIL) to send' });
      continue;
    }
    const key = email.trim().toLowerCase();
    if (row.action === 'remove') {
      removals.set(key, [...(removals.get(key) ?? []), row]);
      continue;
    }
    const member = upserts.get(key);
    if (member) member.rows.push(row);
    else {
      upserts.set(key, {
        email: email.trim(),
        merge: mergeValues(row.fields),
        rows: [row],
        first: row.action === 'add' ? 'create' : 'update',
        tried: new Set(),
      });
    }
  }
  // Another profile with the same address stays in the segment: the address keeps its tag.
  for (const [key, rows] of removals) {
    if (upserts.has(key)) {
      settle(rows, { status: 'ok' });
      removals.delete(key);
    }
  }
  if (upserts.size + removals.size === 0) return batch.map((row) => results.get(row.id)!);

  const client = mailchimp(config);
  const tag = await ready(client, config, sync, ctx);
  const shared: Shared = { client, config, sync, tag, settle, ctx };
  try {
    const existing = await upsert(shared, [...upserts.values()]);
    await addTag(shared, existing);
    await remove(shared, removals);
  } catch (error) {
    if (!isNotFound(error)) throw error;
    await assertAudience(client, config);
    throw tagDeleted(shared);
  }
  return batch.map(
    (row) =>
      results.get(row.id) ?? { id: row.id, status: 'retry', reason: 'no answer for this row' },
  );
};

const lower = (email: string) => email.toLowerCase();

/** The sync's tag is gone from Mailchimp mid-run: fail the run; the next one sets up again. */
function tagDeleted({ config, sync, tag }: Shared): ConfigError {
  setUps.delete(keyOf(config, sync));
  return new ConfigError(
    `The Mailchimp tag "${tag.tagName}" (id ${tag.tagId}) was deleted in Mailchimp during this run; the next run creates it again.`,
  );
}

/** The row's merge fields: every mapped value but the address; absent values are left alone. */
function mergeValues(fields: Record<string, unknown>): Record<string, unknown> {
  const merge: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(fields)) {
    if (key !== EMAIL && value !== null && value !== undefined) merge[key] = value;
  }
  return merge;
}

/**
 * The create and update passes (see the top of this file). A member the create pass adds is
 * tagged by that same call and settled `created`; answers the members found on the audience
 * (and not unsubscribed or cleaned), still to be tagged.
 */
async function upsert(shared: Shared, members: Member[]): Promise<Member[]> {
  const { client, config, tag, settle } = shared;
  const queue = {
    create: members.filter((m) => m.first === 'create'),
    update: members.filter((m) => m.first === 'update'),
  };
  const existing: Member[] = [];
  const status = config.doubleOptIn ? 'pending' : 'subscribed';
  while (queue.create.length + queue.update.length > 0) {
    const pass = queue.create.length > 0 ? 'create' : 'update';
    const other = pass === 'create' ? 'update' : 'create';
    const sending = queue[pass].splice(0, MAX_MEMBERS);
    const answer = await client.call('POST', `/lists/${config.listId}`, (sdk) =>
      sdk.lists.batchListMembers(config.listId, {
        members: sending.map((m): MemberInput => ({
          email_address: m.email,
          // Tags only in the create pass, which adds no one who exists: batch subscribe tags
          // existing members too, unsubscribed and cleaned ones included (README.md, "Vendor
          // notes"). Never `sync_tags`: it would remove every other tag the member carries.
          ...(pass === 'create' ? { status, tags: [tag.tagName] } : {}),
          ...(Object.keys(m.merge).length > 0 ? { merge_fields: m.merge } : {}),
        })),
        update_existing: pass === 'update',
      }),
    );
    if (pass === 'create') assertSameTag(shared, answer.new_members);
    const errors = new Map(answer.errors.map((e) => [lower(e.email_address), e]));
    const created = new Set(answer.new_members.map((m) => lower(m.email_address)));
    const statuses = new Map(answer.updated_members.map((m) => [lower(m.email_address), m.status]));
    for (const m of sending) {
      m.tried.add(pass);
      const error = errors.get(lower(m.email));
      if (!error) {
        const now = statuses.get(lower(m.email));
        if (created.has(lower(m.email))) {
          settle(m.rows, { status: 'ok', state: { created: true } satisfies MemberState });
        } else if (now === 'unsubscribed' || now === 'cleaned') {
          // Their merge fields were updated; the status is theirs, and so is staying untagged.
          settle(m.rows, {
            status: 'rejected',
            reason: `${m.email} is ${now} in Mailchimp: not re-subscribed`,
          });
        } else existing.push(m);
        continue;
      }
      const moves =
        pass === 'create' ? error.error_code === 'ERROR_CONTACT_EXISTS' : needsStatus(error);
      if (!moves) settle(m.rows, { status: 'rejected', reason: reasonOf(error) });
      else if (!m.tried.has(other)) queue[other].push(m);
      else {
        // Added by someone else between the two passes, or gone meanwhile: the engine retries.
        settle(m.rows, { status: 'retry', reason: reasonOf(error) });
      }
    }
  }
  return existing;
}

/**
 * Batch subscribe tags by name, so a tag deleted in Mailchimp since this run found it is made
 * again under a new id. The new members answered carry the tag with its id, which tells.
 */
function assertSameTag(shared: Shared, members: BatchMember[]): void {
  const name = lower(shared.tag.tagName);
  for (const member of members) {
    for (const tag of member.tags ?? []) {
      if (lower(tag.name) === name && tag.id !== shared.tag.tagId) throw tagDeleted(shared);
    }
  }
}

/**
 * Tag the members found on the audience, 500 a call. Their rows are confirmed: an `add` row as
 * not created by the hub; an `update` row keeps the state it had.
 */
async function addTag({ client, config, tag, settle }: Shared, members: Member[]): Promise<void> {
  for (let i = 0; i < members.length; i += MAX_MEMBERS) {
    const chunk = members.slice(i, i + MAX_MEMBERS);
    const answer = await client.call(
      'POST',
      `/lists/${config.listId}/segments/${tag.tagId}`,
      (sdk) =>
        sdk.lists.batchSegmentMembers(
          { members_to_add: chunk.map((m) => m.email) },
          config.listId,
          tag.tagId,
        ),
    );
    // Confirmed by not being in `errors`: a member already tagged is listed nowhere.
    const failed = new Set(answer.errors.flatMap((e) => e.email_addresses.map(lower)));
    for (const m of chunk) {
      if (failed.has(lower(m.email))) {
        settle(m.rows, {
          status: 'retry',
          reason: `${m.email} was not on the audience when tagged`,
        });
        continue;
      }
      settle(
        m.rows.filter((row) => row.action === 'add'),
        { status: 'ok', state: { created: false } satisfies MemberState },
      );
      settle(
        m.rows.filter((row) => row.action !== 'add'),
        { status: 'ok' },
      );
    }
  }
}

/** "needs a status to be added": the update pass met someone Mailchimp does not hold. */
const needsStatus = (error: BatchSubscribeResult['errors'][number]) =>
  error.error_code === 'ERROR_GENERIC' &&
  /\bstatus\b/i.test(error.error) &&
  !/compliance/i.test(error.error);

function reasonOf(error: BatchSubscribeResult['errors'][number]): string {
  return error.field
    ? `${error.error} (${error.field}: ${error.field_message ?? 'invalid'})`
    : error.error;
}

/** The hub's create pass added this address (a row's `state`); rows from before know nothing. */
const createdByHub = (rows: SyncRow[]) => rows.some((row) => row.state?.created === true);

/**
 * Untag who left; with `archiveOnRemove`, archive those the hub added to the audience too. A
 * contact who was on the audience before the hub sent them (a newsletter subscriber who became
 * a customer) stays, untagged.
 */
async function remove(
  { client, config, tag, settle, ctx }: Shared,
  removals: Map<string, SyncRow[]>,
): Promise<void> {
  const emails = [...removals.keys()];
  for (let i = 0; i < emails.length; i += MAX_MEMBERS) {
    const chunk = emails.slice(i, i + MAX_MEMBERS);
    // An address not on the audience any more (forgotten, deleted) is in `errors`: it carries
    // no tag, which is what removal wants.
    await client.call('POST', `/lists/${config.listId}/segments/${tag.tagId}`, (sdk) =>
      sdk.lists.batchSegmentMembers({ members_to_remove: chunk }, config.listId, tag.tagId),
    );
  }
  if (config.archiveOnRemove) {
    // One DELETE per member (no batch archive outside /batches), one at a time: a `sync` call
    // holds one of the key's 10 connections, never more.
    for (const email of emails.filter((e) => createdByHub(removals.get(e)!))) {
      const hash = createHash('md5').update(email).digest('hex');
      const path = `/lists/${config.listId}/members/${hash}`;
      try {
        await client.call('DELETE', path, (sdk) => sdk.lists.deleteListMember(config.listId, hash));
      } catch (error) {
        const status = error instanceof VendorError ? error.request.status : undefined;
        // 404: not on the audience; 405: pending, cleaned or already archived. Either way the
        // tag is off, which is the removal; the member stays as Mailchimp holds them.
        if (status === 405) ctx.log.info('Mailchimp would not archive a member', { path });
        else if (status !== 404) throw error;
      }
    }
  }
  for (const rows of removals.values()) settle(rows, { status: 'ok' });
}
