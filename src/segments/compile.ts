/**
 * Compiling segment rules (./rules.ts) to one parameterised SQL statement that selects the
 * `profile_id` of every live profile matching them. Everything is evaluated in PostgreSQL, and
 * every value from the rules — trait names, values, event names, property keys, dates — is a
 * bound parameter; the only text spliced into the statement is this file's own constants.
 *
 * The statement is shaped the way one would write it by hand, so the planner can use
 * set-based joins: a condition on a trait or a profile column is a predicate on `profiles p`;
 * an event condition is a set of profile ids computed once with `group by profile_id having …`
 * and joined as `p.id in (…)` (a semi-join) or, when a profile without any matching event
 * satisfies it ("at most 2", "has not", "sum < 100"), as the complement
 * `not exists (… where s.profile_id = p.id)` (an anti-join). `any` over event conditions
 * becomes one `p.id in (A union all B)`; `not` is pushed down to the conditions.
 */
import { sql, type SQL } from 'drizzle-orm';
import { json, rows, type Db } from '../db/index.ts';
import { HubError, badRequest } from '../errors.ts';
import {
  COMPUTED_TRAITS,
  conditionCount,
  segmentReferences,
  type Comparison,
  type ComputedCondition,
  type ComputedTraitName,
  type DateValue,
  type EventAggregate,
  type EventCondition,
  type KeyPath,
  type RuleNode,
  type SegmentRules,
  type TimeUnit,
} from './rules.ts';

/** What a referenced segment is: rules to inline, or a stored list of members. */
export type ResolvedSegment =
  { rules: SegmentRules; name?: string } | { stored: true; name?: string };

/** Looks a referenced segment up; null or undefined when there is no such segment. */
export type SegmentResolver = (
  segmentId: string,
) => Promise<ResolvedSegment | null | undefined> | ResolvedSegment | null | undefined;

export interface CompileOptions {
  /**
   * Evaluate as of this time: event windows end here, later events are ignored, and the
   * computed traits derived from events are computed from the events up to it. Default: now,
   * with computed traits read from their stored columns (the fast path).
   */
  asOf?: Date;
  /** Evaluate only these profiles (incremental recomputation). */
  profileIds?: readonly string[];
  /** Looks up the segments the rules reference. */
  resolveSegment: SegmentResolver;
  /**
   * Event names that count as purchases. By default every event ingest gave a revenue
   * (`revenue is not null`: the configured purchase events); when given, only `track` events
   * with one of these names among those — the same definition as src/segments/rfm.ts.
   */
  purchaseEvents?: readonly string[];
  /**
   * The members of a stored (static or uploaded) segment, as a query selecting a
   * `profile_id` column. Default: `select profile_id from segment_members where segment_id = $id`.
   */
  storedMembers?: (segmentId: string) => SQL;
  /** The id (and name) of the segment being compiled, so that a reference back to it is a cycle. */
  segmentId?: string;
  segmentName?: string;
  /** Where the rules sit in the request, for error fields. Default `rules`. */
  field?: string;
}

/** Referenced segments are inlined; the inlined tree may hold at most this many conditions. */
export const MAX_INLINED_CONDITIONS = 1000;

/**
 * Compile rules to one statement selecting `profile_id` of the live profiles that match.
 * Throws a 400 {@link HubError} for an unknown referenced segment or a reference cycle.
 *
 * @example
 * const query = await compileSegment(rules, { resolveSegment: (id) => loadSegment(db, id) });
 * const members = await rows<{ profile_id: string }>(db, query);
 */
export async function compileSegment(rules: SegmentRules, options: CompileOptions): Promise<SQL> {
  const field = options.field ?? 'rules';
  const resolved = await resolveReferences(rules, options, field);
  const asOf = options.asOf ?? new Date();
  if (Number.isNaN(asOf.getTime())) throw new TypeError('compileSegment: asOf is not a valid date');
  const scoped = options.profileIds !== undefined;
  if (scoped) {
    const bad = options.profileIds!.find((id) => !UUID.test(id));
    if (bad !== undefined) throw new TypeError(`compileSegment: "${bad}" is not a profile id`);
  }
  const names = options.purchaseEvents;
  const ctx: Ctx = {
    asOf,
    derivedAsOf: options.asOf !== undefined,
    scoped,
    purchase: () =>
      !names
        ? sql`e.revenue is not null`
        : names.length === 0
          ? sql`false`
          : sql`e.revenue is not null and e.type = 'track' and e.name in (${list(names)})`,
    resolved,
    storedMembers:
      options.storedMembers ??
      ((id) => sql`select m.profile_id from segment_members m where m.segment_id = ${id}::uuid`),
  };
  const part = compileNode(rules, false, ctx);
  const scope = scoped
    ? sql`with scope as materialized (
        select x::uuid as id from json_array_elements_text(${json(options.profileIds)}) as x
      ) `
    : sql``;
  if (part.preds.length === 0 && part.ins.length > 0) return sql`${scope}${fromSets(part, scoped)}`;
  const where = [sql`p.merged_into is null`];
  if (scoped) where.push(sql`p.id in (select id from scope)`);
  where.push(...conjuncts(part));
  return sql`${scope}select p.id as profile_id from profiles p where ${sql.join(where, sql` and `)}`;
}

/**
 * Rules made only of sets (event conditions, segments): start from the first set rather than
 * from every profile, and drop the tombstones. Every profile id in events,
 * profile_event_counts and segment_members names an existing profile (ingestion creates the
 * profile first; erasure deletes them all in one transaction), so a member of a set is live
 * unless it is a tombstone — and tombstones are few, where live profiles are all the others:
 * this is the cost of the hand-written `select profile_id from events … group by profile_id`.
 */
function fromSets(part: Part, scoped: boolean): SQL {
  // A grouped set has each profile once; start from one if there is one.
  const first = part.ins.find((s) => 'key' in s && s.having) ?? part.ins[0]!;
  const unique = 'key' in first && first.having !== null;
  const where = [
    ...part.ins.filter((s) => s !== first).map((s) => sql`s.profile_id in (${render(s)})`),
    ...part.outs.map(
      (s) => sql`not exists (select 1 from (${render(s)}) o where o.profile_id = s.profile_id)`,
    ),
    sql`not exists (select 1 from profiles t
      where t.id = s.profile_id and t.merged_into is not null)`,
  ];
  if (scoped) where.push(sql`s.profile_id in (select id from scope)`);
  return sql`select ${unique ? sql`` : sql`distinct `}s.profile_id from (${render(first)}) s
    where ${sql.join(where, sql` and `)}`;
}

/**
 * The number of profiles matching `rules`.
 *
 * @example
 * const size = await countSegment(db, rules, { resolveSegment, asOf: new Date('2024-01-01') });
 */
export async function countSegment(
  db: Db,
  rules: SegmentRules,
  options: CompileOptions,
): Promise<number> {
  const query = await compileSegment(rules, options);
  const [row] = await rows<{ n: number }>(db, sql`select count(*)::int as n from (${query}) s`);
  return row!.n;
}

/**
 * The ids of the profiles matching `rules`, in id order (at most `limit` when given).
 *
 * @example
 * const sample = await segmentProfileIds(db, rules, { resolveSegment, limit: 20 });
 */
export async function segmentProfileIds(
  db: Db,
  rules: SegmentRules,
  options: CompileOptions & { limit?: number },
): Promise<string[]> {
  const query = await compileSegment(rules, options);
  const limit = options.limit === undefined ? sql`` : sql` limit ${options.limit}`;
  const found = await rows<{ profile_id: string }>(
    db,
    sql`select s.profile_id from (${query}) s order by s.profile_id${limit}`,
  );
  return found.map((r) => r.profile_id);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// ---------------------------------------------------------------------------------------------
// Referenced segments

/**
 * Resolve every segment the rules reference, transitively, rejecting unknown segments and
 * cycles. Errors name the field of the reference in `rules` that leads to the problem.
 */
async function resolveReferences(
  rules: SegmentRules,
  options: CompileOptions,
  field: string,
): Promise<Map<string, ResolvedSegment>> {
  const resolved = new Map<string, ResolvedSegment>();
  let budget = MAX_INLINED_CONDITIONS - conditionCount(rules);
  const label = (id: string, name?: string) => name ?? id;
  const visit = async (
    tree: SegmentRules,
    stack: { id: string; label: string }[],
    rootField: string | undefined,
  ) => {
    for (const ref of segmentReferences(tree, field)) {
      const at = rootField ?? ref.field;
      let target = resolved.get(ref.id);
      const seen = stack.findIndex((s) => s.id === ref.id);
      if (seen >= 0) {
        const cycle = [...stack.slice(seen).map((s) => s.label), stack[seen]!.label].join(' → ');
        throw new HubError(
          400,
          'segment-cycle',
          'Segment references form a cycle',
          `Segment references form a cycle: ${cycle}.`,
          [{ field: at, message: `references form a cycle: ${cycle}` }],
          { cycle: [...stack.slice(seen).map((s) => s.id), ref.id] },
        );
      }
      if (!target) {
        target = (await options.resolveSegment(ref.id)) ?? undefined;
        if (!target) {
          throw badRequest(`Rules reference segment ${ref.id}, which does not exist.`, [
            { field: at, message: `no segment with id ${ref.id}` },
          ]);
        }
        resolved.set(ref.id, target);
      }
      if ('rules' in target) {
        budget -= conditionCount(target.rules);
        if (budget < 0) {
          throw badRequest(
            `With the segments they reference inlined, the rules hold more than ${MAX_INLINED_CONDITIONS} conditions.`,
            [{ field: at, message: `referenced segments hold too many conditions` }],
          );
        }
        await visit(
          target.rules,
          [...stack, { id: ref.id, label: label(ref.id, target.name) }],
          at,
        );
      }
    }
  };
  const root = options.segmentId
    ? [{ id: options.segmentId, label: label(options.segmentId, options.segmentName) }]
    : [];
  await visit(rules, root, undefined);
  return resolved;
}

// ---------------------------------------------------------------------------------------------
// Rule tree → conjunctions of predicates and (anti-)joined sets

interface Ctx {
  asOf: Date;
  /** True when an explicit asOf was given: computed traits come from events, not columns. */
  derivedAsOf: boolean;
  /** True when the statement is restricted to the `scope` CTE. */
  scoped: boolean;
  /** The purchase predicate on events `e`. */
  purchase: () => SQL;
  resolved: Map<string, ResolvedSegment>;
  storedMembers: (segmentId: string) => SQL;
}

/**
 * A conjunction: row predicates on `p` (each never null, so `not` is plain negation), sets
 * of profile ids `p.id` must be in, and sets it must not be in. Empty = true.
 */
interface Part {
  preds: SQL[];
  ins: IdSet[];
  outs: IdSet[];
}

/**
 * A set of profile ids: a query, or events grouped per profile. Grouped sets over the same
 * events (`key`) that must all hold are merged into one grouping with both `having`s, as one
 * would write `having sum(revenue) > 200 and count(*) > 3`.
 */
type IdSet = { query: SQL } | Grouped;
interface Grouped {
  key: string;
  where: SQL[];
  /** null: any matching event (no grouping needed). */
  having: SQL | null;
}

function render(set: IdSet): SQL {
  if ('query' in set) return set.query;
  const body = sql`select e.profile_id from events e where ${sql.join(set.where, sql` and `)}`;
  return set.having ? sql`${body} group by e.profile_id having ${set.having}` : body;
}

const TRUE: Part = { preds: [], ins: [], outs: [] };
const FALSE: Part = { preds: [sql`false`], ins: [], outs: [] };
const pred = (p: SQL): Part => ({ preds: [p], ins: [], outs: [] });
const member = (set: IdSet, isIn: boolean): Part =>
  isIn ? { preds: [], ins: [set], outs: [] } : { preds: [], ins: [], outs: [set] };

/** Compile `node`, negated when `neg` (not is pushed down to the conditions). */
function compileNode(node: RuleNode, neg: boolean, ctx: Ctx): Part {
  if ('all' in node) {
    const parts = node.all.map((c) => compileNode(c, neg, ctx));
    return neg ? anyOf(parts) : allOf(parts);
  }
  if ('any' in node) {
    const parts = node.any.map((c) => compileNode(c, neg, ctx));
    return neg ? allOf(parts) : anyOf(parts);
  }
  if ('not' in node) return compileNode(node.not, !neg, ctx);
  if ('trait' in node) {
    const p = compare(jsonValue(sql`p.traits`, node.trait.name), node.trait, ctx);
    return pred(neg ? sql`not (${p})` : p);
  }
  if ('computed' in node) return negate(computed(node.computed, ctx), neg);
  if ('event' in node) return negate(eventCondition(node.event, ctx), neg);
  const { id } = node.segment;
  const isMember = (node.segment.member ?? true) !== neg;
  const target = ctx.resolved.get(id)!;
  if ('rules' in target) return compileNode(target.rules, !isMember, ctx);
  return member({ query: ctx.storedMembers(id) }, isMember);
}

function negate(part: Part, neg: boolean): Part {
  if (!neg) return part;
  if (part.preds.length === 0 && part.ins.length + part.outs.length === 1) {
    return part.ins.length ? member(part.ins[0]!, false) : member(part.outs[0]!, true);
  }
  return pred(sql`not (${predicate(part)})`);
}

function allOf(parts: Part[]): Part {
  const ins: IdSet[] = [];
  const grouped = new Map<string, Grouped>();
  for (const set of parts.flatMap((p) => p.ins)) {
    const same = 'key' in set ? grouped.get(set.key) : undefined;
    if (!same || !('key' in set)) {
      const copy = { ...set };
      if ('key' in copy) grouped.set(copy.key, copy);
      ins.push(copy);
    } else if (set.having) {
      // A group exists only for a profile with a matching event: "any event" adds nothing.
      same.having = same.having ? sql`${same.having} and ${set.having}` : set.having;
    }
  }
  return { preds: parts.flatMap((p) => p.preds), ins, outs: parts.flatMap((p) => p.outs) };
}

function anyOf(parts: Part[]): Part {
  if (parts.length === 0) return FALSE;
  if (parts.some(isTrue)) return TRUE;
  if (parts.length === 1) return parts[0]!;
  // Sets joined by `or` become one set: `p.id in (A union all B)` is one semi-join.
  const sets = parts.filter(
    (p) => p.preds.length === 0 && p.outs.length === 0 && p.ins.length === 1,
  );
  const others = parts.filter((p) => !sets.includes(p));
  const union = sql.join(
    sets.map((p) => render(p.ins[0]!)),
    sql` union all `,
  );
  if (others.length === 0)
    return member(sets.length === 1 ? sets[0]!.ins[0]! : { query: union }, true);
  const alternatives = others.map(predicate);
  if (sets.length > 0) alternatives.unshift(sql`p.id in (${union})`);
  return pred(sql`(${sql.join(alternatives, sql` or `)})`);
}

const isTrue = (p: Part) => p.preds.length + p.ins.length + p.outs.length === 0;

/** The WHERE conjuncts of a part: semi-joins and anti-joins the planner can flatten. */
function conjuncts(part: Part): SQL[] {
  return [
    ...part.preds,
    ...part.ins.map((s) => sql`p.id in (${render(s)})`),
    ...part.outs.map(
      (s) => sql`not exists (select 1 from (${render(s)}) s where s.profile_id = p.id)`,
    ),
  ];
}

/** A part as one boolean expression on `p`. */
function predicate(part: Part): SQL {
  const all = conjuncts(part);
  if (all.length === 0) return sql`true`;
  return all.length === 1 ? all[0]! : sql`(${sql.join(all, sql` and `)})`;
}

// ---------------------------------------------------------------------------------------------
// Values and comparisons

/** Constant SQL text from this file (never from rules): regexes, operators, casts. */
const constant = (text: string) => sql.raw(text);

/**
 * Numbers as written in JSON or in numeric strings ("42", " -1.5e3 "); with the length bound
 * (1,000 characters) the cast cannot overflow.
 */
const NUMERIC = constant(
  String.raw`'^\s*[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]{1,3})?\s*$'`,
);
/**
 * ISO dates and date-times that PostgreSQL reads without error: real calendar days (leap
 * years included), 24-hour times, an optional offset.
 */
const DATE_RE = constant(
  "'" +
    String.raw`^([1-9][0-9]{3}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))` +
    String.raw`|([1-9][0-9](0[48]|[2468][048]|[13579][26])|([2468][048]|[13579][26])00)-02-29)` +
    String.raw`([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,9})?)?(Z|[+-]([01][0-9]|2[0-3])(:?[0-5][0-9])?)?)?$` +
    "'",
);
/** A date-time that carries its own offset; others are read as UTC. */
const OFFSET_RE = constant(String.raw`'[T ][0-9:.]+(Z|[+-][0-9:]+)$'`);

/** A value to compare: a jsonb value (stored traits, event properties) or a typed SQL value. */
type Value =
  | { kind: 'json'; root: SQL; path: string[]; x: () => SQL }
  | {
      kind: 'typed';
      type: 'number' | 'date' | 'text';
      x: () => SQL;
      /** An integer column: whole numbers are compared as integers, so its indexes apply. */
      integer?: boolean;
      /** It may be null (a date never reached, no score, an average of nothing). */
      nullable?: boolean;
    };

/** The jsonb value at `path` in the jsonb column `root`. */
function jsonValue(root: SQL, key: KeyPath): Value {
  const path = typeof key === 'string' ? [key] : key;
  const x = () =>
    sql`(${root}${sql.join(
      path.map((k) => sql` -> ${k}::text`),
      sql``,
    )})`;
  return { kind: 'json', root, path, x };
}

const typed = (
  type: 'number' | 'date' | 'text',
  x: SQL,
  flags: { integer?: boolean; nullable?: boolean } = {},
): Value => ({ kind: 'typed', type, x: () => x, ...flags });

/** The value as numeric, null when it is not a number or a numeric string. */
function asNumber(v: Value): SQL {
  if (v.kind === 'typed') return v.type === 'number' ? v.x() : sql`null::numeric`;
  const x = v.x;
  return sql`(case when jsonb_typeof(${x()}) = 'number' then (${x()} #>> '{}')::numeric
    when jsonb_typeof(${x()}) = 'string' and length(${x()} #>> '{}') <= 1000
      and (${x()} #>> '{}') ~ ${NUMERIC}
    then (${x()} #>> '{}')::numeric end)`;
}

/** The value as timestamptz, null when it is not an ISO date string. */
function asDate(v: Value): SQL {
  if (v.kind === 'typed') return v.type === 'date' ? v.x() : sql`null::timestamptz`;
  const x = v.x;
  return sql`(case when jsonb_typeof(${x()}) = 'string' and (${x()} #>> '{}') ~ ${DATE_RE}
    then case when (${x()} #>> '{}') ~ ${OFFSET_RE} then (${x()} #>> '{}')::timestamptz
      else (${x()} #>> '{}')::timestamp at time zone 'UTC' end end)`;
}

/** The value as text, null unless it is a string. */
function asText(v: Value): SQL {
  if (v.kind === 'typed') return v.type === 'text' ? v.x() : sql`null::text`;
  return sql`(case when jsonb_typeof(${v.x()}) = 'string' then ${v.x()} #>> '{}' end)`;
}

function exists(v: Value): SQL {
  if (v.kind === 'typed') return sql`(${v.x()} is not null)`;
  return sql`coalesce(jsonb_typeof(${v.x()}) <> 'null', false)`;
}

/** `{ a: { b: value } }` for the path [a, b]: a containment the GIN index on traits answers. */
function nested(path: string[], value: unknown): string {
  return JSON.stringify(path.reduceRight<unknown>((acc, key) => ({ [key]: acc }), value));
}

const num = (n: number) => sql`${String(n)}::numeric`;
/** A number to compare `v` with: a bigint for a whole number against an integer column. */
const number = (v: Value, n: number) =>
  v.kind === 'typed' && v.integer && Number.isSafeInteger(n) ? sql`${String(n)}::bigint` : num(n);
/** An instant as a timestamptz parameter, clamped to years 1–9999 (ISO text PostgreSQL reads). */
const time = (d: Date) =>
  sql`${new Date(Math.min(Math.max(d.getTime(), MIN_TIME), MAX_TIME)).toISOString()}::timestamptz`;
const MIN_TIME = Date.parse('0001-01-01T00:00:00Z');
const MAX_TIME = Date.parse('9999-12-31T23:59:59.999Z');
const list = (values: readonly string[]) =>
  // A handful of names, each its own parameter: the planner sees the values (and estimates
  // the rows) as it would for a hand-written `in (…)`. Long lists go through one json parameter.
  sql.join(
    values.map((v) => sql`${v}::text`),
    sql`, `,
  );
/**
 * `test` on `v` made never null, so that `not` is plain negation. A typed column is guarded
 * with `is not null`, which keeps the comparison visible to the planner (estimates, indexes);
 * a json value with coalesce, since its casts yield null for values of another type.
 */
function guard(v: Value, test: SQL): SQL {
  if (v.kind === 'json') return sql`coalesce(${test}, false)`;
  return v.nullable ? sql`(${v.x()} is not null and ${test})` : test;
}

/** A condition on `v`, as a boolean expression that is never null. */
function compare(v: Value, c: Comparison, ctx: Ctx): SQL {
  switch (c.op) {
    case 'exists':
      return exists(v);
    case 'not_exists':
      return sql`not ${exists(v)}`;
    case 'eq':
      return equals(v, c.value);
    case 'neq':
      return sql`(${exists(v)} and not ${equals(v, c.value)})`;
    case 'in': {
      const strings = c.value.filter((x): x is string => typeof x === 'string');
      const numbers = c.value.filter((x): x is number => typeof x === 'number');
      const alternatives: SQL[] = [];
      if (strings.length) {
        alternatives.push(
          guard(v, sql`${asText(v)} in (select json_array_elements_text(${json(strings)}))`),
        );
      }
      if (numbers.length) {
        alternatives.push(
          guard(
            v,
            sql`${asNumber(v)} in (select x::numeric from json_array_elements_text(${json(numbers)}) as x)`,
          ),
        );
      }
      return alternatives.length === 1
        ? alternatives[0]!
        : sql`(${sql.join(alternatives, sql` or `)})`;
    }
    case 'contains': {
      const text = guard(v, sql`strpos(lower(${asText(v)}), lower(${c.value}::text)) > 0`);
      if (v.kind === 'typed') return text;
      // A list (e.g. tags) contains a value when one of its strings equals it, ignoring case.
      return sql`(case jsonb_typeof(${v.x()})
        when 'string' then ${text}
        when 'array' then exists (select 1 from jsonb_array_elements(${v.x()}) as el
          where jsonb_typeof(el) = 'string' and lower(el #>> '{}') = lower(${c.value}::text))
        else false end)`;
    }
    case 'starts_with':
      return guard(v, sql`starts_with(lower(${asText(v)}), lower(${c.value}::text))`);
    case 'gt':
    case 'gte':
    case 'lt':
    case 'lte':
    case 'before':
    case 'after':
      return ordered(v, c.op, c.value, ctx);
    case 'between': {
      const [lo, hi] = c.value;
      return sql`(${ordered(v, 'gte', lo, ctx)} and ${ordered(v, 'lte', hi, ctx)})`;
    }
    case 'within_last':
      return guard(
        v,
        sql`(${asDate(v)} > ${time(minus(ctx.asOf, c.value, c.unit))} and ${asDate(v)} <= ${time(ctx.asOf)})`,
      );
  }
}

function equals(v: Value, value: string | number | boolean): SQL {
  if (typeof value === 'number') return guard(v, sql`${asNumber(v)} = ${number(v, value)}`);
  if (v.kind === 'typed') {
    return typeof value === 'string' ? guard(v, sql`${asText(v)} = ${value}::text`) : sql`false`;
  }
  // Containment, so that the GIN index on profiles.traits can answer it.
  const contains = (x: unknown) => sql`${v.root} @> ${nested(v.path, x)}::jsonb`;
  if (typeof value === 'string') return contains(value);
  return sql`(${contains(value)} or ${contains(String(value))})`;
}

const SQL_OP = { gt: '>', gte: '>=', lt: '<', lte: '<=' } as const;

/**
 * An ordering comparison: numeric for a number, in time for a date. A date without a time
 * stands for its whole (UTC) day: `after 2024-03-01` starts on 2 March, `lte 2024-03-01`
 * includes all of 1 March.
 */
function ordered(
  v: Value,
  op: 'gt' | 'gte' | 'lt' | 'lte' | 'before' | 'after',
  value: number | DateValue,
  ctx: Ctx,
): SQL {
  const o = op === 'before' ? 'lt' : op === 'after' ? 'gt' : op;
  if (typeof value === 'number')
    return guard(v, sql`${asNumber(v)} ${constant(SQL_OP[o])} ${number(v, value)}`);
  const { at, wholeDay } = dateOf(value, ctx.asOf);
  if (!wholeDay) return guard(v, sql`${asDate(v)} ${constant(SQL_OP[o])} ${time(at)}`);
  const next = new Date(at.getTime() + DAY);
  const [sqlOp, bound] =
    o === 'gt' ? ['>=', next] : o === 'gte' ? ['>=', at] : o === 'lt' ? ['<', at] : ['<', next];
  return guard(v, sql`${asDate(v)} ${constant(sqlOp)} ${time(bound)}`);
}

// ---------------------------------------------------------------------------------------------
// Time

const DAY = 86_400_000;

/** `at` minus an amount of a unit; months and years are calendar ones in UTC (31 March − 1 month = 28/29 February). */
export function minus(at: Date, amount: number, unit: TimeUnit): Date {
  if (unit === 'days') return new Date(at.getTime() - amount * DAY);
  if (unit === 'weeks') return new Date(at.getTime() - amount * 7 * DAY);
  const months = unit === 'months' ? amount : amount * 12;
  const y = at.getUTCFullYear();
  const m = at.getUTCMonth() - months;
  const lastDay = new Date(Date.UTC(y, m + 1, 0)).getUTCDate();
  const d = new Date(at.getTime());
  d.setUTCFullYear(y, m, Math.min(at.getUTCDate(), lastDay));
  return d;
}

/** A rule date as an instant; `wholeDay` for a date without a time (midnight UTC). */
function dateOf(value: DateValue, asOf: Date): { at: Date; wholeDay: boolean } {
  if (typeof value === 'object') return { at: minus(asOf, value.ago, value.unit), wholeDay: false };
  if (/^\d{4}-\d{2}-\d{2}$/.test(value)) {
    return { at: new Date(`${value}T00:00:00Z`), wholeDay: true };
  }
  return { at: new Date(value), wholeDay: false };
}

// ---------------------------------------------------------------------------------------------
// Computed traits

/** The profile column of each computed trait. */
const COLUMN: Record<ComputedTraitName, { x: SQL; integer?: true; nullable?: true }> = {
  kind: { x: sql`p.kind` },
  created_at: { x: sql`p.created_at` },
  first_seen_at: { x: sql`p.first_seen_at`, nullable: true },
  last_seen_at: { x: sql`p.last_seen_at`, nullable: true },
  last_purchase_at: { x: sql`p.last_purchase_at`, nullable: true },
  event_count: { x: sql`p.event_count`, integer: true },
  purchase_count: { x: sql`p.purchase_count`, integer: true },
  total_spent: { x: sql`p.total_spent` },
  rfm_recency: { x: sql`p.rfm_recency`, integer: true, nullable: true },
  rfm_frequency: { x: sql`p.rfm_frequency`, integer: true, nullable: true },
  rfm_monetary: { x: sql`p.rfm_monetary`, integer: true, nullable: true },
};

/**
 * How the computed traits derived from events are computed from the events up to `asOf`:
 * which events, the aggregate, and its value for a profile with none (the same definitions
 * as the fold in src/profiles/fold.ts).
 */
const DERIVED: Partial<
  Record<
    ComputedTraitName,
    { events: 'activity' | 'purchases' | 'all'; agg: SQL; empty: 0 | null; integer?: true }
  >
> = {
  event_count: {
    events: 'activity',
    agg: sql`count(*)`,
    empty: 0,
    integer: true,
  },
  purchase_count: {
    events: 'purchases',
    agg: sql`count(*)`,
    empty: 0,
    integer: true,
  },
  total_spent: {
    events: 'purchases',
    agg: sql`coalesce(sum(e.revenue), 0)`,
    empty: 0,
  },
  last_purchase_at: { events: 'purchases', agg: sql`max(e."timestamp")`, empty: null },
  first_seen_at: { events: 'all', agg: sql`min(e."timestamp")`, empty: null },
  last_seen_at: { events: 'all', agg: sql`max(e."timestamp")`, empty: null },
};

function computed(c: ComputedCondition, ctx: Ctx): Part {
  const type = COMPUTED_TRAITS[c.name];
  const derived = ctx.derivedAsOf ? DERIVED[c.name] : undefined;
  if (!derived) {
    const { x, ...flags } = COLUMN[c.name];
    return pred(compare(typed(type, x, flags), c, ctx));
  }
  const events = {
    activity: sql`e.type in ('track', 'page', 'screen')`,
    purchases: ctx.purchase(),
    all: sql`true`,
  }[derived.events];
  const where = [events, sql`e."timestamp" <= ${time(ctx.asOf)}`];
  const having = compare(
    typed(type, derived.agg, { integer: derived.integer, nullable: derived.empty === null }),
    c,
    ctx,
  );
  return eventSet(`computed:${derived.events}`, where, having, holds(c, derived.empty), ctx);
}

/**
 * Whether a profile with no matching event satisfies `c`: its count or sum is 0, its
 * average, minimum, maximum or date is null.
 */
function holds(c: Comparison | EventAggregate, x: 0 | null): boolean {
  if (c.op === 'not_exists') return x === null;
  if (x === null) return false;
  switch (c.op) {
    case 'exists':
      return true;
    case 'eq':
      return c.value === x;
    case 'neq':
      return typeof c.value === 'number' && c.value !== x;
    case 'gt':
      return typeof c.value === 'number' && x > c.value;
    case 'gte':
      return typeof c.value === 'number' && x >= c.value;
    case 'lt':
      return typeof c.value === 'number' && x < c.value;
    case 'lte':
      return typeof c.value === 'number' && x <= c.value;
    case 'between': {
      const [lo, hi] = c.value;
      return typeof lo === 'number' && typeof hi === 'number' && lo <= x && x <= hi;
    }
    case 'in':
      return c.value.includes(x);
    default:
      return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Event conditions

function eventCondition(c: EventCondition, ctx: Ctx): Part {
  const where = eventFilters(c, ctx);
  // Conditions on the same events share one grouping (see allOf).
  const key = `event:${JSON.stringify([c.name, c.type, c.purchase, c.where, c.within])}`;
  // Without a count, "performed" means at least once — unless an aggregate says what counts.
  const atLeast = c.count ? (c.count.exactly ?? c.count.atLeast ?? 0) : c.aggregate ? 0 : 1;
  const atMost = c.count?.exactly ?? c.count?.atMost;
  const checks: SQL[] = [];
  if (atLeast > 0) checks.push(sql`count(*) >= ${atLeast}::int`);
  if (atMost !== undefined) checks.push(sql`count(*) <= ${atMost}::int`);
  let emptyHolds = atLeast === 0;
  if (c.aggregate) {
    const a = c.aggregate;
    const x = a.revenue ? sql`e.revenue` : asNumber(jsonValue(sql`e.properties`, a.property!));
    const agg = a.fn === 'sum' ? sql`coalesce(sum(${x}), 0)` : sql`${constant(a.fn)}(${x})`;
    checks.push(compare(typed('number', agg, { nullable: a.fn !== 'sum' }), a, ctx));
    emptyHolds &&= holds(a, a.fn === 'sum' ? 0 : null);
  }
  if (checks.length === 0) return TRUE; // at least 0 times: everyone
  // "At least once" needs no grouping: any matching event puts the profile in.
  const once = !c.aggregate && atLeast === 1 && atMost === undefined;
  const having = once ? null : sql.join(checks, sql` and `);
  if (!emptyHolds && !ctx.derivedAsOf && countsTableServes(c)) {
    return member({ query: countsTableSet(c, atLeast, atMost, ctx) }, true);
  }
  if (emptyHolds && !c.aggregate && atMost !== undefined) {
    if (!ctx.derivedAsOf && countsTableServes(c)) {
      return member({ query: countsTableSet(c, atMost + 1, undefined, ctx) }, false);
    }
    // At most N: not among those with more than N; "has not" (N = 0) needs no grouping.
    const more = atMost === 0 ? null : sql`count(*) > ${atMost}::int`;
    return member(grouped(key, where, more, ctx), false);
  }
  return eventSet(key, where, having, emptyHolds, ctx);
}

/** The profiles whose matching events satisfy `having` (null: any matching event). */
function eventSet(
  key: string,
  where: SQL[],
  having: SQL | null,
  emptyHolds: boolean,
  ctx: Ctx,
): Part {
  if (!emptyHolds) return member(grouped(key, where, having, ctx), true);
  // A profile without matching events satisfies the condition: keep everyone except those
  // whose events fail it.
  return member(grouped(key, where, sql`not (${having ?? sql`true`})`, ctx), false);
}

function grouped(key: string, where: SQL[], having: SQL | null, ctx: Ctx): Grouped {
  const scope = ctx.scoped ? [sql`e.profile_id in (select id from scope)`] : [];
  return { key, where: [...where, ...scope], having };
}

function eventFilters(c: EventCondition, ctx: Ctx): SQL[] {
  const where: SQL[] = [];
  const types = c.type === undefined ? (c.name ? ['track'] : []) : [c.type].flat();
  if (types.length === 1) where.push(sql`e.type = ${types[0]}::text`);
  else if (types.length > 1) where.push(sql`e.type in (${list(types)})`);
  if (c.name !== undefined) {
    const names = [c.name].flat();
    where.push(
      names.length === 1 ? sql`e.name = ${names[0]}::text` : sql`e.name in (${list(names)})`,
    );
  }
  if (c.purchase) where.push(ctx.purchase());
  const w = c.within ?? {};
  if (w.last !== undefined && w.unit !== undefined) {
    where.push(sql`e."timestamp" > ${time(minus(ctx.asOf, w.last, w.unit))}`);
  }
  if (w.from !== undefined) where.push(sql`e."timestamp" >= ${time(dateOf(w.from, ctx.asOf).at)}`);
  if (w.to !== undefined) {
    const { at, wholeDay } = dateOf(w.to, ctx.asOf);
    where.push(
      wholeDay
        ? sql`e."timestamp" < ${time(new Date(at.getTime() + DAY))}`
        : sql`e."timestamp" <= ${time(at)}`,
    );
  }
  where.push(sql`e."timestamp" <= ${time(ctx.asOf)}`);
  for (const f of c.where ?? [])
    where.push(compare(jsonValue(sql`e.properties`, f.property), f, ctx));
  return where;
}

/**
 * All-time counts of one track event (or of page or screen views) without filters can be read
 * from profile_event_counts, which the fold keeps, instead of counting events.
 */
function countsTableServes(c: EventCondition): boolean {
  if (c.within || c.where?.length || c.aggregate || c.purchase) return false;
  const types = c.type === undefined ? ['track'] : [c.type].flat();
  if (types.length !== 1) return false;
  if (types[0] === 'track') return typeof c.name === 'string' || c.name?.length === 1;
  return (types[0] === 'page' || types[0] === 'screen') && c.name === undefined;
}

function countsTableSet(c: EventCondition, atLeast: number, atMost: number | undefined, ctx: Ctx) {
  const types = c.type === undefined ? ['track'] : [c.type].flat();
  const name = types[0] === 'track' ? [c.name!].flat()[0]! : types[0]!;
  // The counts are unlogged: after a crash, fail until they are rebuilt rather than match nobody.
  const where = [
    sql`c.name = ${name}::text`,
    sql`c.count >= ${atLeast}::int`,
    sql`event_counts_ready()`,
  ];
  if (atMost !== undefined) where.push(sql`c.count <= ${atMost}::int`);
  if (ctx.scoped) where.push(sql`c.profile_id in (select id from scope)`);
  return sql`select c.profile_id from profile_event_counts c where ${sql.join(where, sql` and `)}`;
}
