/**
 * Owners (`GET /crm/v3/owners`, https://developers.hubspot.com/docs/api/crm/owners): the owners
 * stream, and the directory a contacts read resolves `hubspot_owner_id` with. A deactivated
 * user's owner is only listed with `archived=true`, yet contacts keep pointing at it, so both
 * lists are read.
 */
import { ConfigError, type Cursor, type SourceMessage } from 'audiencehub/sdk';
import { SCOPES, type HubSpot, type Page } from './client.ts';

/** HubSpot's largest owners page. */
const OWNERS_PAGE = 500;

export interface Owner {
  id: string;
  email?: string;
  firstName?: string;
  lastName?: string;
  userId?: number;
  createdAt: string;
  updatedAt: string;
  archived: boolean;
}

/** Where an owners read is: the list (active, then archived) and its next page. */
interface OwnersCursor {
  archived: boolean;
  after: string | null;
  done?: boolean;
}

async function* ownerPages(api: HubSpot, from: OwnersCursor) {
  let at = from;
  while (!at.done) {
    const page = await api.get<Page<Owner>>(
      '/crm/v3/owners',
      { limit: OWNERS_PAGE, archived: at.archived, after: at.after ?? undefined },
      SCOPES.owners,
    );
    const next = page.paging?.next?.after;
    if (next) at = { archived: at.archived, after: next };
    else if (!at.archived) at = { archived: true, after: null };
    else at = { archived: true, after: null, done: true };
    yield { owners: page.results, next: at };
  }
}

/**
 * Looks owners up by id, reading the owner lists once per read and only when a contact has an
 * owner: the active list first, the archived one on the first id it lacks.
 *
 * @example
 * const owner = await ownerDirectory(api)('20000001'); // { email, firstName, … } | undefined
 */
export function ownerDirectory(
  api: HubSpot,
): (id: string | null | undefined) => Promise<Owner | undefined> {
  const known = new Map<string, Owner>();
  let loaded: 'none' | 'active' | 'all' = 'none';
  const load = async (archived: boolean) => {
    for await (const { owners, next } of ownerPages(api, { archived, after: null })) {
      for (const owner of owners) known.set(owner.id, owner);
      if (next.archived !== archived) break;
    }
  };
  return async (id) => {
    if (!id) return undefined;
    if (loaded === 'none') {
      await load(false);
      loaded = 'active';
    }
    if (!known.has(id) && loaded === 'active') {
      await load(true);
      loaded = 'all';
    }
    return known.get(id);
  };
}

function ownersCursor(cursor: Cursor | null): OwnersCursor {
  if (cursor === null) return { archived: false, after: null };
  const c = cursor as Partial<OwnersCursor>;
  if (
    typeof cursor !== 'object' ||
    Array.isArray(cursor) ||
    typeof c.archived !== 'boolean' ||
    (c.after !== null && typeof c.after !== 'string')
  ) {
    throw new ConfigError(
      `The owners stream cannot resume from checkpoint ${JSON.stringify(cursor)}: it was not written by this connector. Reset the stream's state.`,
    );
  }
  return { archived: c.archived, after: c.after ?? null, done: c.done === true };
}

/** The owners stream: active owners, then archived ones, a checkpoint after every page. */
export async function* readOwners(
  api: HubSpot,
  cursor: Cursor | null,
): AsyncIterable<SourceMessage> {
  const from = ownersCursor(cursor);
  let last: OwnersCursor = from;
  for await (const { owners, next } of ownerPages(api, from)) {
    for (const owner of owners) {
      yield {
        type: 'record',
        data: {
          id: owner.id,
          email: owner.email ?? null,
          firstName: owner.firstName ?? null,
          lastName: owner.lastName ?? null,
          userId: owner.userId ?? null,
          archived: owner.archived,
          createdAt: owner.createdAt,
          updatedAt: owner.updatedAt,
        },
      };
    }
    last = next;
    yield { type: 'checkpoint', cursor: { ...next } };
  }
  if (last === from) yield { type: 'checkpoint', cursor: { ...from } };
}
