/**
 * What a sync can map to: `EMAIL` (the member's identity) and the audience's merge fields, by
 * tag. Mapped tags the audience lacks are created by the sync before it sends anyone.
 */
import type { DestinationField, DestinationFields } from 'audiencehub/sdk';
import {
  assertAudience,
  isNotFound,
  mailchimp,
  type Mailchimp,
  type MailchimpConfig,
  type MergeField,
} from './client.ts';

/** The mapping key of the member's address. */
export const EMAIL = 'EMAIL';

/** Mailchimp's page size limit for collections. */
const PAGE = 1000;

/** Every merge field of the audience, page by page. */
export async function mergeFields(
  client: Mailchimp,
  config: MailchimpConfig,
): Promise<MergeField[]> {
  const all: MergeField[] = [];
  for (let offset = 0; ; offset += PAGE) {
    const page = await client
      .call('GET', `/lists/${config.listId}/merge-fields`, (sdk) =>
        sdk.lists.getListMergeFields(config.listId, { count: PAGE, offset }),
      )
      .catch(async (error: unknown) => {
        if (isNotFound(error)) await assertAudience(client, config);
        throw error;
      });
    all.push(...page.merge_fields);
    if (page.merge_fields.length < PAGE || all.length >= page.total_items) return all;
  }
}

const TYPES: Record<string, DestinationField['type']> = {
  number: 'number',
  date: 'date',
  birthday: 'date',
};

export const fields: DestinationFields<MailchimpConfig> = async ({ config }) => {
  const merge = await mergeFields(mailchimp(config), config);
  return [
    { key: EMAIL, label: 'Email address', type: 'string', required: true, identifier: true },
    ...merge.map((f): DestinationField => ({
      key: f.tag,
      label: f.name,
      type: TYPES[f.type] ?? 'string',
      ...(f.required ? { required: true } : {}),
    })),
  ];
};

/**
 * Create the mapped merge fields the audience lacks, as text fields named by their tag (an
 * account owner can rename them in Mailchimp; the tag stays).
 */
export async function ensureMergeFields(
  client: Mailchimp,
  config: MailchimpConfig,
  keys: string[],
): Promise<string[]> {
  const wanted = keys.filter((k) => k !== EMAIL);
  if (wanted.length === 0) return [];
  const have = new Set((await mergeFields(client, config)).map((f) => f.tag.toUpperCase()));
  const created: string[] = [];
  for (const tag of wanted.filter((k) => !have.has(k.toUpperCase()))) {
    await client.call('POST', `/lists/${config.listId}/merge-fields`, (sdk) =>
      sdk.lists.addListMergeField(config.listId, { name: tag, tag, type: 'text' }),
    );
    created.push(tag);
  }
  return created;
}
