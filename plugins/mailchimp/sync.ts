/**
 * Sending a batch to Mailchimp: members upserted with batch subscribe, then tagged with the
 * sync's tag (a static segment); members who left untagged, and archived when asked for.
 *
 * Never re-subscribing anyone: batch subscribe has no `status_if_new`, and a `status` sent for an
 * existing member would overwrite what the person chose. So each member goes through passes:
 * - a **create** pass sends `status` (`subscribed`, or `pending` with double opt-in) with
 *   `update_existing: false`: it can only add people Mailchimp does not hold (or holds
 *   archived, which brings them back); an existing member answers `ERROR_CONTACT_EXISTS`;
 * - an **update** pass sends no `status` with `update_existing: true`: merge fields change,
 *   the subscription status never does; someone Mailchimp does not hold answers that a status is
 *   needed.
 * An `add` row starts with the create pass and an `update` row with the update pass; a member
 * answered "exists" or "needs a status" moves to the other pass, once. A member whose status is
 * `unsubscribed` or `cleaned` is reported rejected and not tagged.
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

/** One address of the batch and the rows (profiles) that carry it. */
interface Member {
  email: string;
  merge: Record<string, unknown>;
  rows: SyncRow[];
  first: 'create' | 'update';
  tried: Set<'create' | 'update'>;
}

export const sync: DestinationSync<MailchimpConfig> = async ({ config, sync, batch }, ctx) => {
  const results = new Map<string, RowResult>();
  const settle = (rows: SyncRow[], result: Outcome) => {
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
  const { tagId, tagName: name } = await ready(client, config, sync, ctx);
  try {
    const tagged = await upsert(client, config, [...upserts.values()], settle);
    for (let i = 0; i < tagged.length; i += MAX_MEMBERS) {
      const chunk = tagged.slice(i, i + MAX_MEMBERS);
      const answer = await client.call('POST', `/lists/${config.listId}/segments/${tagId}`, (sdk) =>
        sdk.lists.batchSegmentMembers(
          { members_to_add: chunk.map((m) => m.email) },
          config.listId,
          tagId,
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
        } else settle(m.rows, { status: 'ok' });
      }
    }
    await remove(client, config, tagId, removals, settle, ctx);
  } catch (error) {
    if (!isNotFound(error)) throw error;
    await assertAudience(client, config);
    setUps.delete(keyOf(config, sync));
    throw new ConfigError(
      `The Mailchimp tag "${name}" (id ${tagId}) was deleted in Mailchimp during this run; the next run creates it again.`,
    );
  }
  return batch.map(
    (row) =>
      results.get(row.id) ?? { id: row.id, status: 'retry', reason: 'no answer for this row' },
  );
};

const lower = (email: string) => email.toLowerCase();

/** The row's merge fields: every mapped value but the address; absent values are left alone. */
function mergeValues(fields: Record<string, unknown>): Record<string, unknown> {
  const merge: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(fields)) {
    if (key !== EMAIL && value !== null && value !== undefined) merge[key] = value;
  }
  return merge;
}

type Settle = (rows: SyncRow[], result: Outcome) => void;

/** The create and update passes (see the top of this file); answers the members to tag. */
async function upsert(
  client: Mailchimp,
  config: MailchimpConfig,
  members: Member[],
  settle: Settle,
): Promise<Member[]> {
  const queue = {
    create: members.filter((m) => m.first === 'create'),
    update: members.filter((m) => m.first === 'update'),
  };
  const tagged: Member[] = [];
  const status = config.doubleOptIn ? 'pending' : 'subscribed';
  while (queue.create.length + queue.update.length > 0) {
    const pass = queue.create.length > 0 ? 'create' : 'update';
    const other = pass === 'create' ? 'update' : 'create';
    const sending = queue[pass].splice(0, MAX_MEMBERS);
    const answer = await client.call('POST', `/lists/${config.listId}`, (sdk) =>
      sdk.lists.batchListMembers(config.listId, {
        members: sending.map((m): MemberInput => ({
          email_address: m.email,
          ...(pass === 'create' ? { status } : {}),
          ...(Object.keys(m.merge).length > 0 ? { merge_fields: m.merge } : {}),
        })),
        update_existing: pass === 'update',
      }),
    );
    const errors = new Map(answer.errors.map((e) => [lower(e.email_address), e]));
    const statuses = new Map(
      [...answer.new_members, ...answer.updated_members].map((m) => [
        lower(m.email_address),
        m.status,
      ]),
    );
    for (const m of sending) {
      m.tried.add(pass);
      const error = errors.get(lower(m.email));
      if (!error) {
        const now = statuses.get(lower(m.email));
        if (now === 'unsubscribed' || now === 'cleaned') {
          // Their merge fields were updated; the status is theirs, and so is staying untagged.
          settle(m.rows, {
            status: 'rejected',
            reason: `${m.email} is ${now} in Mailchimp: not re-subscribed`,
          });
        } else tagged.push(m);
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
  return tagged;
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

/** Untag who left; archive them too when the config asks for it. */
async function remove(
  client: Mailchimp,
  config: MailchimpConfig,
  tagId: number,
  removals: Map<string, SyncRow[]>,
  settle: Settle,
  ctx: PluginContext,
) {
  const emails = [...removals.keys()];
  for (let i = 0; i < emails.length; i += MAX_MEMBERS) {
    const chunk = emails.slice(i, i + MAX_MEMBERS);
    // An address not on the audience any more (forgotten, deleted) is in `errors`: it carries
    // no tag, which is what removal wants.
    await client.call('POST', `/lists/${config.listId}/segments/${tagId}`, (sdk) =>
      sdk.lists.batchSegmentMembers({ members_to_remove: chunk }, config.listId, tagId),
    );
  }
  if (config.archiveOnRemove) {
    // One DELETE per member (no batch archive outside /batches), one at a time: a `sync` call
    // holds one of the key's 10 connections, never more.
    for (const email of emails) {
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
