/**
 * What segments amount to: the segment list with sizes, 30-day change and revenue; per
 * segment its stats and daily size series, its membership history and computation history;
 * the overlap of two segments; and a preview of unsaved rules.
 *
 * Sizes over time come from `segment_daily_sizes` (one row per day on which membership
 * changed, holding the size at the end of it), carried forward over the days without a row.
 */
import { z } from '@hono/zod-openapi';
import { sql, type SQL } from 'drizzle-orm';
import type { Principal } from '../auth/credentials.ts';
import { rows, type Db } from '../db/index.ts';
import { badRequest } from '../errors.ts';
import { compileSegment, type SegmentResolver } from './compile.ts';
import { listRuns, segmentResolver, type SegmentRun } from './compute.ts';
import { profileCards, type ProfileCard } from './members.ts';
import { parseSegmentRules } from './rules.ts';
import {
  getSegment,
  toSegment,
  visibleTo,
  type Segment,
  type SegmentType,
  type Visibility,
} from './store.ts';

/** Today (UTC), the day `segment_daily_sizes` files changes under. */
const TODAY = sql`(now() at time zone 'utc')::date`;

/**
 * The size of segment `s` (an alias) `days` days ago: the last size recorded on or before
 * that day; null when none was.
 */
const sizeDaysAgo = (days: number, alias = 's') =>
  sql`(select d.size from segment_daily_sizes d
       where d.segment_id = ${sql.raw(alias)}.id and d.day <= ${TODAY} - ${days}::int
       order by d.day desc limit 1)`;

/** The summed `total_spent` of the members of segment `s`. */
const revenueOf = (alias = 's') =>
  sql`(select coalesce(sum(p.total_spent), 0) from segment_members m
       join profiles p on p.id = m.profile_id
       where m.segment_id = ${sql.raw(alias)}.id)`;

// ---------------------------------------------------------------------------------------------
// The list

export const SEGMENT_SORTS = [
  'name',
  'size',
  'change',
  'revenue',
  'lastComputedAt',
  'createdAt',
] as const;
export const SegmentSort = z.enum(SEGMENT_SORTS);
export type SegmentSort = z.infer<typeof SegmentSort>;
export const SortOrder = z.enum(['asc', 'desc']);
export type SortOrder = z.infer<typeof SortOrder>;

/** Each sort key: its expression over the listed row `l`, and the SQL type its cursor is read as. */
const SORT_KEYS: Record<SegmentSort, { key: SQL; type: SQL }> = {
  // "C" collation: the same order on every server, whatever its locale.
  name: { key: sql`(lower(l.name) collate "C")`, type: sql.raw('text') },
  size: { key: sql`(l.size)`, type: sql.raw('int') },
  change: { key: sql`(l.change_30d)`, type: sql.raw('int') },
  revenue: { key: sql`(l.sorted_revenue)`, type: sql.raw('numeric') },
  lastComputedAt: { key: sql`(l.last_computed_at)`, type: sql.raw('timestamptz') },
  createdAt: { key: sql`(l.created_at)`, type: sql.raw('timestamptz') },
};

/** Where a page of the list ends: the sort, and the last row's sort key (as text) and id. */
export const SegmentListCursor = z.object({
  sort: SegmentSort,
  order: SortOrder,
  key: z.string().nullable(),
  id: z.uuid(),
});
export type SegmentListCursor = z.infer<typeof SegmentListCursor>;

export interface SegmentListQuery {
  limit: number;
  cursor?: SegmentListCursor;
  /** Case-insensitive text in the name or the description. */
  q?: string;
  type?: SegmentType;
  visibility?: Visibility;
  /** `me` (the caller's segments) or an owner's token id. */
  owner?: string;
  sort?: SegmentSort;
  /** Default: ascending for `name`, descending for the others. */
  order?: SortOrder;
}

export interface SegmentListItem extends Omit<Segment, 'rules'> {
  /** Size now minus the size 30 days ago; null when the size then is not known. */
  change30d: number | null;
  /** The sum of the members' `total_spent`. */
  revenue: number;
}

const escapeLike = (text: string) => text.replace(/[\\%_]/g, '\\$&');

/**
 * The segments `principal` can see, filtered, searched, sorted and a page at a time. Rows
 * without a value for the sort key (a change or last computation not known) come last in
 * either order; ties are broken by id.
 *
 * @example
 * const page = await listSegments(db, principal, { limit: 20, q: 'loyal', sort: 'revenue' });
 * const next = page.next && (await listSegments(db, principal, { limit: 20, cursor: page.next }));
 */
export async function listSegments(
  db: Db,
  principal: Principal,
  query: SegmentListQuery,
): Promise<{ data: SegmentListItem[]; next: SegmentListCursor | null }> {
  const sort = query.sort ?? query.cursor?.sort ?? 'createdAt';
  const order = query.order ?? query.cursor?.order ?? (sort === 'name' ? 'asc' : 'desc');
  if (query.cursor && (query.cursor.sort !== sort || query.cursor.order !== order)) {
    throw badRequest('This cursor belongs to a list in another order.', [
      {
        field: 'cursor',
        message: `a cursor of the list sorted by ${query.cursor.sort} ${query.cursor.order}`,
      },
    ]);
  }
  const where: SQL[] = [visibleTo(principal)];
  if (query.type) where.push(sql`s.type = ${query.type}`);
  if (query.visibility) where.push(sql`s.visibility = ${query.visibility}`);
  if (query.owner) {
    where.push(sql`s.owner_id = ${query.owner === 'me' ? principal.tokenId : query.owner}`);
  }
  if (query.q) {
    const pattern = `%${escapeLike(query.q)}%`;
    where.push(sql`(s.name ilike ${pattern} or s.description ilike ${pattern})`);
  }
  const { key, type } = SORT_KEYS[sort];
  const cmp = sql.raw(order === 'asc' ? '>' : '<');
  const dir = sql.raw(order);
  let after = sql`true`;
  if (query.cursor) {
    const c = query.cursor;
    after =
      c.key === null
        ? sql`(${key} is null and l.id ${cmp} ${c.id})`
        : sql`(${key} is null or ${key} ${cmp} cast(${c.key} as ${type})
              or (${key} = cast(${c.key} as ${type}) and l.id ${cmp} ${c.id}))`;
  }
  // Revenue sums every member, so it is computed for the whole list only when sorting by it.
  const byRevenue = sort === 'revenue';
  const found = await rows<ListRow>(
    db,
    sql`with listed as (
          select s.*, s.size - ${sizeDaysAgo(30)} as change_30d,
            ${byRevenue ? revenueOf() : sql`null::numeric`} as sorted_revenue
          from segments s where ${sql.join(where, sql` and `)}
        ),
        page as (
          select l.*, ${key}::text as sort_key from listed l
          where ${after}
          order by ${key} is null, ${key} ${dir}, l.id ${dir}
          limit ${query.limit + 1}
        )
        select l.*, ${byRevenue ? sql`l.sorted_revenue` : revenueOf('l')} as revenue
        from page l
        order by ${key} is null, ${key} ${dir}, l.id ${dir}`,
  );
  const page = found.slice(0, query.limit);
  const last = page[page.length - 1];
  return {
    data: page.map(toListItem),
    next:
      found.length > query.limit && last ? { sort, order, key: last.sort_key, id: last.id } : null,
  };
}

type ListRow = Parameters<typeof toSegment>[0] & {
  change_30d: number | null;
  revenue: string | number;
  sort_key: string | null;
};

function toListItem(row: ListRow): SegmentListItem {
  // eslint-disable-next-line @typescript-eslint/no-unused-vars -- the list leaves rules out
  const { rules, ...segment } = toSegment(row);
  return { ...segment, change30d: row.change_30d, revenue: Number(row.revenue) };
}

// ---------------------------------------------------------------------------------------------
// One segment's numbers

export interface SegmentStats {
  segmentId: string;
  size: number;
  change30d: number | null;
  revenue: number;
  lastComputedAt: Date | null;
  /** One entry per day (UTC), oldest first, ending today; null before any size is known. */
  series: { day: string; size: number | null }[];
}

/** The longest size series asked for at once. */
export const MAX_SERIES_DAYS = 366;

/**
 * A segment's size, 30-day change, revenue and daily size series over the last `days` days
 * (today included), each day holding the last size known on or before it.
 *
 * @example
 * const stats = await segmentStats(db, principal, segmentId, { days: 30 });
 * stats.series.at(-1)!.size === stats.size;
 */
export async function segmentStats(
  db: Db,
  principal: Principal,
  segmentId: string,
  options: { days: number },
): Promise<SegmentStats> {
  await getSegment(db, principal, segmentId);
  const days = Math.max(1, Math.min(MAX_SERIES_DAYS, Math.trunc(options.days)));
  const [row] = await rows<{
    size: number;
    change_30d: number | null;
    revenue: string | number;
    last_computed_at: string | Date | null;
    series: { day: string; size: number | null }[] | string;
  }>(
    db,
    sql`select s.size, s.size - ${sizeDaysAgo(30)} as change_30d, ${revenueOf()} as revenue,
          s.last_computed_at,
          (select json_agg(json_build_object('day', to_char(g.day, 'YYYY-MM-DD'), 'size',
              (select d.size from segment_daily_sizes d
               where d.segment_id = s.id and d.day <= g.day
               order by d.day desc limit 1)) order by g.day)
           from (select (${TODAY} - k) as day
                 from generate_series(0, ${days - 1}::int) as k) g) as series
        from segments s where s.id = ${segmentId}`,
  );
  return {
    segmentId,
    size: row!.size,
    change30d: row!.change_30d,
    revenue: Number(row!.revenue),
    lastComputedAt: row!.last_computed_at === null ? null : new Date(row!.last_computed_at),
    series: typeof row!.series === 'string' ? JSON.parse(row!.series) : row!.series,
  };
}

// ---------------------------------------------------------------------------------------------
// Membership history

export interface MembershipChange {
  id: number;
  profileId: string;
  change: 'entered' | 'exited';
  at: Date;
  /** The run that made the change; null for exits through a merge of profiles. */
  runId: number | null;
}

/** Where a page of the history ends: the last change's time (as text, to the microsecond) and id. */
export const HistoryCursor = z.object({ at: z.string(), id: z.number().int() });
export type HistoryCursor = z.infer<typeof HistoryCursor>;

/**
 * Who entered and left a segment, newest first, optionally for one profile.
 *
 * @example
 * const page = await membershipHistory(db, principal, segmentId, { limit: 50, profileId });
 */
export async function membershipHistory(
  db: Db,
  principal: Principal,
  segmentId: string,
  options: { limit: number; cursor?: HistoryCursor; profileId?: string },
): Promise<{ data: MembershipChange[]; next: HistoryCursor | null }> {
  await getSegment(db, principal, segmentId);
  const where = [sql`c.segment_id = ${segmentId}`];
  if (options.profileId) where.push(sql`c.profile_id = ${options.profileId}`);
  if (options.cursor) {
    const { at, id } = options.cursor;
    where.push(sql`(c.at < ${at}::timestamptz or (c.at = ${at}::timestamptz and c.id < ${id}))`);
  }
  const found = await rows<{
    id: string | number;
    profile_id: string;
    entered: boolean;
    at: string | Date;
    at_key: string;
    run_id: string | number | null;
  }>(
    db,
    sql`select c.id, c.profile_id, c.entered, c.at, c.at::text as at_key, c.run_id
        from segment_membership_changes c
        where ${sql.join(where, sql` and `)}
        order by c.at desc, c.id desc
        limit ${options.limit + 1}`,
  );
  const page = found.slice(0, options.limit);
  const last = page[page.length - 1];
  return {
    data: page.map((r) => ({
      id: Number(r.id),
      profileId: r.profile_id,
      change: r.entered ? 'entered' : 'exited',
      at: new Date(r.at),
      runId: r.run_id === null ? null : Number(r.run_id),
    })),
    next: found.length > options.limit && last ? { at: last.at_key, id: Number(last.id) } : null,
  };
}

/**
 * A segment's computation history, newest first; `before` is the last run id of the
 * previous page.
 *
 * @example
 * const { data } = await segmentRuns(db, principal, segmentId, { limit: 20 });
 */
export async function segmentRuns(
  db: Db,
  principal: Principal,
  segmentId: string,
  options: { limit: number; before?: number },
): Promise<{ data: SegmentRun[]; next: number | null }> {
  await getSegment(db, principal, segmentId);
  const found = await listRuns(db, segmentId, { limit: options.limit + 1, before: options.before });
  const page = found.slice(0, options.limit);
  return {
    data: page,
    next: found.length > options.limit ? page[page.length - 1]!.id : null,
  };
}

// ---------------------------------------------------------------------------------------------
// Overlap

export interface SegmentOverlap {
  a: { id: string; name: string; size: number };
  b: { id: string; name: string; size: number };
  /** |A ∩ B| */
  both: number;
  /** |A − B| */
  onlyA: number;
  /** |B − A| */
  onlyB: number;
}

/**
 * How the members of two segments overlap, counted from their stored members in one
 * statement (one snapshot). Both must be visible to `principal` (404 otherwise).
 *
 * @example
 * const { both, onlyA, onlyB } = await segmentOverlap(db, principal, loyalId, newsletterId);
 */
export async function segmentOverlap(
  db: Db,
  principal: Principal,
  a: string,
  b: string,
): Promise<SegmentOverlap> {
  const [first, second] = [await getSegment(db, principal, a), await getSegment(db, principal, b)];
  const [row] = await rows<{ size_a: number; size_b: number; both: number }>(
    db,
    sql`select
          (select count(*)::int from segment_members where segment_id = ${a}) as size_a,
          (select count(*)::int from segment_members where segment_id = ${b}) as size_b,
          (select count(*)::int from segment_members x
           join segment_members y on y.segment_id = ${b} and y.profile_id = x.profile_id
           where x.segment_id = ${a}) as both`,
  );
  const { size_a, size_b, both } = row!;
  return {
    a: { id: first.id, name: first.name, size: size_a },
    b: { id: second.id, name: second.name, size: size_b },
    both,
    onlyA: size_a - both,
    onlyB: size_b - both,
  };
}

// ---------------------------------------------------------------------------------------------
// Preview

export interface PreviewInput {
  rules: unknown;
  /** Evaluate as of this time; now when absent. */
  asOf?: Date;
  /** How many matching profiles to show, 0–100. */
  sample: number;
}

export interface SegmentPreview {
  count: number;
  sample: ProfileCard[];
  /** Time spent evaluating, in milliseconds. */
  tookMs: number;
  asOf: Date;
}

/**
 * Evaluate rules that are not saved: how many profiles match and a sample of them (newest
 * profiles first), as of `asOf`. Rules may reference only segments `principal` can see; a
 * reference to any other is reported as to a segment that does not exist.
 *
 * @example
 * const { count, sample } = await previewSegment(db, principal, {
 *   rules: { computed: { name: 'total_spent', op: 'gt', value: 200 } },
 *   sample: 10,
 * });
 */
export async function previewSegment(
  db: Db,
  principal: Principal,
  input: PreviewInput,
): Promise<SegmentPreview> {
  const rules = parseSegmentRules(input.rules, 'rules');
  const resolve = segmentResolver(db);
  const visibleOnly: SegmentResolver = async (id) => {
    const [seen] = await rows<{ id: string }>(
      db,
      sql`select s.id from segments s where s.id = ${id} and ${visibleTo(principal)}`,
    );
    return seen ? resolve(id) : null;
  };
  const started = performance.now();
  const asOf = input.asOf ?? new Date();
  const query = await compileSegment(rules, {
    resolveSegment: visibleOnly,
    // Without an explicit time, computed traits are read from their columns (the fast path).
    asOf: input.asOf,
  });
  const [counted] = await rows<{ n: number }>(db, sql`select count(*)::int as n from (${query}) q`);
  const ids =
    input.sample > 0
      ? await rows<{ profile_id: string }>(
          db,
          sql`select q.profile_id from (${query}) q order by q.profile_id desc limit ${input.sample}`,
        )
      : [];
  const tookMs = Math.round(performance.now() - started);
  return {
    count: counted!.n,
    sample: await profileCards(
      db,
      ids.map((r) => r.profile_id),
    ),
    tookMs,
    asOf,
  };
}
