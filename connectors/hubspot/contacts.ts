/**
 * The contacts stream. Incremental reads go through the search endpoint, ordered by
 * `lastmodifieddate`; a full read lists every contact (`GET /crm/v3/objects/contacts`, in id
 * order) and hands over to incremental reads at the end. README.md ("How contacts are read")
 * explains the choices; in short:
 *
 * - A position `{ lastmodifieddate, id }` says that every contact whose (date, id) pair sorts at
 *   or before it has been read. Each search page is a new query for what sorts after the
 *   position — `lastmodifieddate > T`, or `= T` with `hs_object_id > id` — so no query is ever
 *   paged with `after`: the 10,000-result ceiling per query never applies, and a contact
 *   changing during the read (leaving its place in the order) cannot shift a page boundary
 *   over another one.
 * - HubSpot applies one sort rule, and contacts sharing a date come back in any order. So a
 *   page's last date may continue on the next page: its contacts are left for the next query,
 *   and only those with earlier dates are yielded, in (date, id) order, before the checkpoint.
 *   When a whole page shares one date, that date's contacts are read on their own, sorted by
 *   `hs_object_id`, from the id in the position on.
 */
import { ConfigError, type Cursor, type SourceMessage } from 'audiencehub/sdk';
import {
  SCOPES,
  type CrmObject,
  type HubSpot,
  type Page,
  type SearchFilter,
  type SearchRequest,
} from './client.ts';
import { ownerDirectory, type Owner } from './owners.ts';
import { CONTACT_PROPERTIES } from './streams.ts';

/** HubSpot's largest search page. */
export const SEARCH_PAGE = 200;
/** HubSpot's largest contacts listing page. */
const LIST_PAGE = 100;

/** Every contact whose (lastmodifieddate, id) sorts at or before this pair has been read. */
export interface Position {
  /** ISO 8601, as HubSpot gives it. */
  lastmodifieddate: string;
  id: string;
}

/** A full read in progress: the listing's next page, and the position to end on. */
interface Listing {
  after: string;
  until: Position | null;
}

const properties = [...CONTACT_PROPERTIES];

/** Ids are decimal strings, possibly past 2^53: compare by length, then digits. */
const compareIds = (a: string, b: string) => a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);

function modifiedAt(contact: CrmObject): number {
  const at = Date.parse(contact.properties.lastmodifieddate ?? contact.updatedAt);
  if (Number.isNaN(at)) {
    throw new Error(`HubSpot gave contact ${contact.id} without a readable lastmodifieddate`);
  }
  return at;
}

const byDateThenId = (a: CrmObject, b: CrmObject) =>
  modifiedAt(a) - modifiedAt(b) || compareIds(a.id, b.id);

const positionOf = (contact: CrmObject): Position => ({
  lastmodifieddate: new Date(modifiedAt(contact)).toISOString(),
  id: contact.id,
});

/** Dates are compared by HubSpot as epoch milliseconds. */
const filter = (propertyName: string, operator: 'EQ' | 'GT', value: string | number) =>
  ({ propertyName, operator, value: String(value) }) satisfies SearchFilter;

/** What sorts after a position, in `lastmodifieddate` order. */
function changesAfter(position: Position | null): SearchRequest {
  const request: SearchRequest = {
    filterGroups: [],
    sorts: [{ propertyName: 'lastmodifieddate', direction: 'ASCENDING' }],
    properties,
    limit: SEARCH_PAGE,
  };
  if (position) {
    const at = Date.parse(position.lastmodifieddate);
    request.filterGroups = [
      {
        filters: [filter('lastmodifieddate', 'EQ', at), filter('hs_object_id', 'GT', position.id)],
      },
      { filters: [filter('lastmodifieddate', 'GT', at)] },
    ];
  }
  return request;
}

/** The contacts modified at `at` with an id past `afterId`, in id order. */
function sameDate(at: number, afterId: string | null): SearchRequest {
  const filters = [filter('lastmodifieddate', 'EQ', at)];
  if (afterId !== null) filters.push(filter('hs_object_id', 'GT', afterId));
  return {
    filterGroups: [{ filters }],
    sorts: [{ propertyName: 'hs_object_id', direction: 'ASCENDING' }],
    properties,
    limit: SEARCH_PAGE,
  };
}

/** Turns HubSpot contacts into records, with labels and owners looked up once per read. */
function contactRecords(api: HubSpot) {
  const owner = ownerDirectory(api);
  let labels: Promise<{ stages: Map<string, string>; sources: Map<string, string> }> | undefined;
  const optionLabels = async (name: string) => {
    const property = await api.get<{ options?: { value: string; label: string }[] }>(
      `/crm/v3/properties/contacts/${name}`,
      {},
      SCOPES.contacts,
    );
    return new Map((property.options ?? []).map((o) => [o.value, o.label]));
  };
  return async (contact: CrmObject): Promise<SourceMessage> => {
    labels ??= Promise.all([
      optionLabels('lifecyclestage'),
      optionLabels('hs_analytics_source'),
    ]).then(([stages, sources]) => ({ stages, sources }));
    const { stages, sources } = await labels;
    // HubSpot may answer an empty value as "" as well as null.
    const p = (name: (typeof CONTACT_PROPERTIES)[number]) => contact.properties[name] || null;
    const stage = p('lifecyclestage');
    const source = p('hs_analytics_source');
    const owned: Owner | undefined = await owner(p('hubspot_owner_id'));
    const ownerName = [owned?.firstName, owned?.lastName].filter(Boolean).join(' ');
    return {
      type: 'record',
      data: {
        id: contact.id,
        email: p('email'),
        firstname: p('firstname'),
        lastname: p('lastname'),
        phone: p('phone'),
        lifecyclestage: stage,
        lifecyclestage_label: (stage && stages.get(stage)) || null,
        hs_analytics_source: source,
        hs_analytics_source_label: (source && sources.get(source)) || null,
        hubspot_owner_id: p('hubspot_owner_id'),
        owner_email: owned?.email || null,
        owner_name: ownerName || null,
        createdate: p('createdate') ?? contact.createdAt,
        lastmodifieddate: p('lastmodifieddate') ?? contact.updatedAt,
      },
    };
  };
}

/** Contacts changed after `from`, oldest change first, a checkpoint after every page. */
export async function* readChanges(
  api: HubSpot,
  from: Position | null,
): AsyncIterable<SourceMessage> {
  const record = contactRecords(api);
  let position = from;
  for (;;) {
    const page = await api.search(changesAfter(position));
    const more = page.paging?.next !== undefined;
    if (page.results.length === 0) break;
    let ready = page.results;
    if (more) {
      // The last date may go on past this page: leave its contacts to the next query.
      const lastAt = modifiedAt(page.results.at(-1)!);
      ready = page.results.filter((c) => modifiedAt(c) < lastAt);
      if (ready.length === 0) {
        const afterId =
          position && Date.parse(position.lastmodifieddate) === lastAt ? position.id : null;
        for await (const message of readSameDate(api, lastAt, afterId, record)) {
          if (message.type === 'checkpoint') position = message.cursor as unknown as Position;
          yield message;
        }
        continue;
      }
    }
    ready = [...ready].sort(byDateThenId);
    for (const contact of ready) yield await record(contact);
    position = positionOf(ready.at(-1)!);
    yield { type: 'checkpoint', cursor: { ...position } };
    if (!more) return;
  }
  // Nothing (more) to read: the position stays where it was.
  yield { type: 'checkpoint', cursor: position && { ...position } };
}

/** Every contact modified at `at` past `afterId`, by id, a checkpoint after every page. */
async function* readSameDate(
  api: HubSpot,
  at: number,
  afterId: string | null,
  record: (contact: CrmObject) => Promise<SourceMessage>,
): AsyncIterable<SourceMessage> {
  let last = afterId;
  for (;;) {
    const page = await api.search(sameDate(at, last));
    // One sort rule on a unique property: already in id order; sorted again all the same.
    const contacts = [...page.results].sort((a, b) => compareIds(a.id, b.id));
    for (const contact of contacts) yield await record(contact);
    if (contacts.length > 0) {
      last = contacts.at(-1)!.id;
      yield {
        type: 'checkpoint',
        cursor: { lastmodifieddate: new Date(at).toISOString(), id: last },
      };
    }
    if (!page.paging?.next || contacts.length === 0) return;
  }
}

/**
 * Every contact, listed in id order, then the position incremental reads go on from: the most
 * recent change before the listing began (a contact changed while listing sorts after it, so
 * the next incremental read picks the change up).
 */
export async function* readAll(api: HubSpot, from: Listing | null): AsyncIterable<SourceMessage> {
  const record = contactRecords(api);
  let until = from?.until ?? null;
  let after = from?.after;
  if (!from) {
    const latest = await api.search({
      filterGroups: [],
      sorts: [{ propertyName: 'lastmodifieddate', direction: 'DESCENDING' }],
      properties: ['lastmodifieddate'],
      limit: 1,
    });
    until = latest.results[0] ? positionOf(latest.results[0]) : null;
  }
  for (;;) {
    const page = await api.get<Page<CrmObject>>(
      '/crm/v3/objects/contacts',
      { limit: LIST_PAGE, properties: properties.join(','), archived: false, after },
      SCOPES.contacts,
    );
    for (const contact of page.results) yield await record(contact);
    after = page.paging?.next?.after;
    if (!after) break;
    yield { type: 'checkpoint', cursor: { after, until: until && { ...until } } };
  }
  yield { type: 'checkpoint', cursor: until && { ...until } };
}

/** A stored checkpoint of the contacts stream, read back. */
export function contactsCursor(
  cursor: Cursor | null,
): { position: Position | null } | { listing: Listing } {
  if (cursor === null) return { position: null };
  const c = cursor as Record<string, unknown>;
  const isPosition = (v: unknown): v is Position =>
    typeof v === 'object' &&
    v !== null &&
    typeof (v as Position).lastmodifieddate === 'string' &&
    !Number.isNaN(Date.parse((v as Position).lastmodifieddate)) &&
    typeof (v as Position).id === 'string' &&
    /^\d+$/.test((v as Position).id);
  if (isPosition(c)) return { position: { lastmodifieddate: c.lastmodifieddate, id: c.id } };
  if (
    typeof c === 'object' &&
    typeof c.after === 'string' &&
    (c.until === null || isPosition(c.until))
  ) {
    return { listing: { after: c.after, until: c.until && { ...(c.until as Position) } } };
  }
  throw new ConfigError(
    `The contacts stream cannot resume from checkpoint ${JSON.stringify(cursor)}: it was not written by this connector. Reset the stream's state.`,
  );
}
