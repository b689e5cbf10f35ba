/**
 * The segment rule language: a JSON tree of groups (`all`, `any`, `not`) over conditions on
 * stored traits, computed traits, events and membership of other segments. This one zod schema
 * validates input, types the compiler (./compile.ts) and feeds the OpenAPI document.
 * docs/segments.md is the reference, with an example of every shape.
 *
 * @example
 * const rules = parseSegmentRules({
 *   all: [
 *     { trait: { name: 'city', op: 'eq', value: 'Paris' } },
 *     { event: { purchase: true, count: { atLeast: 2 }, within: { last: 3, unit: 'months' } } },
 *   ],
 * });
 */
import { z } from '@hono/zod-openapi';
import { badRequest, type FieldError } from '../errors.ts';

/** Groups nest at most this deep (`not` counts as a level). */
export const MAX_RULE_DEPTH = 10;
/** Conditions (leaves) in one rule tree, before referenced segments are inlined. */
export const MAX_RULE_CONDITIONS = 200;
/** Values in one `in` list. */
export const MAX_IN_VALUES = 1000;

/** The keys that make a rule node, in the order of the union below. */
export const RULE_KEYS = ['all', 'any', 'not', 'trait', 'computed', 'event', 'segment'] as const;
export type RuleKey = (typeof RULE_KEYS)[number];

// PostgreSQL text cannot hold NUL, and json refuses lone surrogates: such strings are refused
// here, so that no value can make the compiled statement fail.
const UNPAIRED = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const safeText = (s: string) => !s.includes('\u0000') && !UNPAIRED.test(s);
const Text = (max: number) =>
  z.string().max(max).refine(safeText, 'must not contain NUL characters or unpaired surrogates');
const Name = Text(200).min(1);

/** A key, or the keys down to a nested value: `"city"` or `["address", "city"]`. */
export const KeyPath = z
  .union([Name, z.array(Name).min(1).max(10)], {
    error: 'expected a key (string) or a path of keys (array of 1–10 strings)',
  })
  .openapi('SegmentKeyPath', {
    description: 'A key, or the keys down to a nested value: "city" or ["address", "city"].',
  });
export type KeyPath = z.infer<typeof KeyPath>;

export const TimeUnit = z.enum(['days', 'weeks', 'months', 'years']);
export type TimeUnit = z.infer<typeof TimeUnit>;
const Amount = z.number().int().min(0).max(100_000);

/** A date (`2024-03-01`, midnight UTC) or a date-time with an offset (`…T10:00:00Z`). */
export const AbsoluteDate = z.union([z.iso.date(), z.iso.datetime({ offset: true })], {
  error: 'expected an ISO date (2024-03-01) or date-time with offset (2024-03-01T10:00:00Z)',
});
/** `{ "ago": 30, "unit": "days" }`: that long before the evaluation time (`asOf`). */
export const RelativeDate = z.strictObject({ ago: Amount, unit: TimeUnit });
export const DateValue = z
  .union([AbsoluteDate, RelativeDate], {
    error: 'expected an ISO date, a date-time with offset, or { "ago": n, "unit": "days" }',
  })
  .openapi('SegmentDateValue');
export type DateValue = z.infer<typeof DateValue>;

const Num = z.number();
const Scalar = z.union([Text(1000), Num, z.boolean()], {
  error: 'expected a string, a number or a boolean',
});
const Ordered = z.union([Num, DateValue], { error: 'expected a number or a date' });

/** The branches of a comparison, each extended with `extra` (the trait name, property …). */
function comparisonBranches<E extends z.ZodRawShape>(extra: E) {
  return [
    z.strictObject({ ...extra, op: z.literal('eq'), value: Scalar }),
    z.strictObject({ ...extra, op: z.literal('neq'), value: Scalar }),
    z.strictObject({ ...extra, op: z.literal('gt'), value: Ordered }),
    z.strictObject({ ...extra, op: z.literal('gte'), value: Ordered }),
    z.strictObject({ ...extra, op: z.literal('lt'), value: Ordered }),
    z.strictObject({ ...extra, op: z.literal('lte'), value: Ordered }),
    z.strictObject({
      ...extra,
      op: z.literal('between'),
      value: z
        .tuple([Ordered, Ordered])
        .refine(
          ([a, b]) => (typeof a === 'number') === (typeof b === 'number'),
          'both bounds must be numbers, or both dates',
        ),
    }),
    z.strictObject({
      ...extra,
      op: z.literal('in'),
      value: z
        .array(z.union([Text(1000), Num], { error: 'expected a string or a number' }))
        .min(1)
        .max(MAX_IN_VALUES),
    }),
    z.strictObject({ ...extra, op: z.literal('contains'), value: Text(1000).min(1) }),
    z.strictObject({ ...extra, op: z.literal('starts_with'), value: Text(1000).min(1) }),
    z.strictObject({ ...extra, op: z.literal('exists') }),
    z.strictObject({ ...extra, op: z.literal('not_exists') }),
    z.strictObject({ ...extra, op: z.literal('before'), value: DateValue }),
    z.strictObject({ ...extra, op: z.literal('after'), value: DateValue }),
    z.strictObject({
      ...extra,
      op: z.literal('within_last'),
      value: Amount.min(1),
      unit: TimeUnit,
    }),
  ] as const;
}

export const OPERATORS = [
  'eq',
  'neq',
  'gt',
  'gte',
  'lt',
  'lte',
  'between',
  'in',
  'contains',
  'starts_with',
  'exists',
  'not_exists',
  'before',
  'after',
  'within_last',
] as const;
export type Operator = (typeof OPERATORS)[number];

/** The comparison part of a condition: an operator and its value. */
export const Comparison = z.discriminatedUnion('op', comparisonBranches({}));
export type Comparison = z.infer<typeof Comparison>;

/** A condition on a stored trait (`profiles.traits`); the rule value's type picks the comparison. */
export const TraitCondition = z
  .discriminatedUnion('op', comparisonBranches({ name: KeyPath }))
  .openapi('SegmentTraitCondition');
export type TraitCondition = z.infer<typeof TraitCondition>;

/** The type of each computed trait, which decides the operators it accepts. */
export const COMPUTED_TRAITS = {
  kind: 'text',
  created_at: 'date',
  first_seen_at: 'date',
  last_seen_at: 'date',
  last_purchase_at: 'date',
  event_count: 'number',
  purchase_count: 'number',
  total_spent: 'number',
  rfm_recency: 'number',
  rfm_frequency: 'number',
  rfm_monetary: 'number',
} as const satisfies Record<string, ValueType>;
export type ComputedTraitName = keyof typeof COMPUTED_TRAITS;
export type ValueType = 'number' | 'date' | 'text';

/** The operators each type of computed trait accepts. */
export const OPERATORS_OF: Record<ValueType, readonly Operator[]> = {
  number: ['eq', 'neq', 'gt', 'gte', 'lt', 'lte', 'between', 'in', 'exists', 'not_exists'],
  date: [
    'gt',
    'gte',
    'lt',
    'lte',
    'between',
    'before',
    'after',
    'within_last',
    'exists',
    'not_exists',
  ],
  text: ['eq', 'neq', 'in', 'contains', 'starts_with', 'exists', 'not_exists'],
};

/** Whether `c`'s value has the type `type` (numbers for numbers, dates for dates, strings for text). */
function valueFits(type: ValueType, c: Comparison): boolean {
  if (!('value' in c) || c.op === 'within_last') return true;
  const values: unknown[] = Array.isArray(c.value) ? c.value : [c.value];
  return values.every((v) =>
    type === 'number' ? typeof v === 'number' : type === 'text' ? typeof v === 'string' : isDate(v),
  );
}
const isDate = (v: unknown) => typeof v === 'string' || (typeof v === 'object' && v !== null);

function checkTyped(type: ValueType, what: string, c: Comparison, ctx: z.RefinementCtx) {
  if (!OPERATORS_OF[type].includes(c.op)) {
    ctx.addIssue({
      code: 'custom',
      path: ['op'],
      message: `${what} is a ${type}: use one of ${OPERATORS_OF[type].join(', ')}`,
    });
  } else if (!valueFits(type, c)) {
    const expected = { number: 'a number', date: 'a date', text: 'a string' }[type];
    ctx.addIssue({ code: 'custom', path: ['value'], message: `${what} takes ${expected}` });
  }
}

/** A condition on a computed trait: a profile column, derived from events as of `asOf`. */
export const ComputedCondition = z
  .discriminatedUnion(
    'op',
    comparisonBranches({
      name: z.enum(Object.keys(COMPUTED_TRAITS) as [ComputedTraitName, ...ComputedTraitName[]]),
    }),
  )
  .superRefine((c, ctx) => checkTyped(COMPUTED_TRAITS[c.name], c.name, c, ctx))
  .openapi('SegmentComputedCondition');
export type ComputedCondition = z.infer<typeof ComputedCondition>;

/** A filter on an event property; the same operators as traits. */
export const PropertyFilter = z
  .discriminatedUnion('op', comparisonBranches({ property: KeyPath }))
  .openapi('SegmentPropertyFilter');
export type PropertyFilter = z.infer<typeof PropertyFilter>;

export const EVENT_TYPES = ['track', 'page', 'screen', 'identify', 'group', 'alias'] as const;
export const EventType = z.enum(EVENT_TYPES);
export type EventType = z.infer<typeof EventType>;

/**
 * Which events count: the last N units before `asOf` (`last` and `unit`), or from/to (both
 * inclusive; a date without a time stands for its whole day).
 */
export const EventWindow = z
  .strictObject({
    last: Amount.min(1).optional(),
    unit: TimeUnit.optional(),
    from: DateValue.optional(),
    to: DateValue.optional(),
  })
  .superRefine((w, ctx) => {
    const relative = w.last !== undefined || w.unit !== undefined;
    const between = w.from !== undefined || w.to !== undefined;
    if (relative && between) {
      ctx.addIssue({ code: 'custom', message: 'give last and unit, or from and/or to, not both' });
    } else if (relative && (w.last === undefined || w.unit === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: [w.last === undefined ? 'last' : 'unit'],
        message: 'last and unit go together',
      });
    } else if (!relative && !between) {
      ctx.addIssue({ code: 'custom', message: 'give last and unit, or from and/or to' });
    }
  })
  .openapi('SegmentEventWindow');
export type EventWindow = z.infer<typeof EventWindow>;

const Times = z.number().int().min(0).max(1_000_000_000);

/** How many matching events: at least / at most (both inclusive), or exactly. */
export const EventCount = z
  .strictObject({ atLeast: Times.optional(), atMost: Times.optional(), exactly: Times.optional() })
  .superRefine((c, ctx) => {
    if (c.exactly !== undefined && (c.atLeast !== undefined || c.atMost !== undefined)) {
      ctx.addIssue({ code: 'custom', message: 'give exactly alone, or atLeast and/or atMost' });
    } else if (c.exactly === undefined && c.atLeast === undefined && c.atMost === undefined) {
      ctx.addIssue({ code: 'custom', message: 'give atLeast, atMost or exactly' });
    } else if (c.atLeast !== undefined && c.atMost !== undefined && c.atLeast > c.atMost) {
      ctx.addIssue({ code: 'custom', path: ['atMost'], message: 'must not be below atLeast' });
    }
  })
  .openapi('SegmentEventCount');
export type EventCount = z.infer<typeof EventCount>;

const AggregateOf = {
  fn: z.enum(['sum', 'avg', 'min', 'max']),
  property: KeyPath.optional(),
  revenue: z.literal(true).optional(),
};

/** sum / avg / min / max of a numeric property (or of the revenue) compared to a number. */
export const EventAggregate = z
  .discriminatedUnion('op', [
    z.strictObject({ ...AggregateOf, op: z.literal('eq'), value: Num }),
    z.strictObject({ ...AggregateOf, op: z.literal('neq'), value: Num }),
    z.strictObject({ ...AggregateOf, op: z.literal('gt'), value: Num }),
    z.strictObject({ ...AggregateOf, op: z.literal('gte'), value: Num }),
    z.strictObject({ ...AggregateOf, op: z.literal('lt'), value: Num }),
    z.strictObject({ ...AggregateOf, op: z.literal('lte'), value: Num }),
    z.strictObject({ ...AggregateOf, op: z.literal('between'), value: z.tuple([Num, Num]) }),
  ])
  .superRefine((a, ctx) => {
    if ((a.property === undefined) === (a.revenue === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'give property or revenue: true (one of them)' });
    }
  })
  .openapi('SegmentEventAggregate');
export type EventAggregate = z.infer<typeof EventAggregate>;

/**
 * Performed an event, counted per profile. Which events: `name` (track event names; with
 * `type` page or screen, page or screen names), `type`, `purchase` (the configured purchase
 * events), `where` (property filters, all of which must hold) and `within` (a time window).
 * What about them: `count` (default at least 1) and/or `aggregate`.
 */
export const EventCondition = z
  .strictObject({
    name: z
      .union([Name, z.array(Name).min(1).max(50)], {
        error: 'expected an event name or a list of 1–50 names',
      })
      .optional(),
    type: z
      .union([EventType, z.array(EventType).min(1).max(EVENT_TYPES.length)], {
        error: `expected one of ${EVENT_TYPES.join(', ')}, or a list of them`,
      })
      .optional(),
    purchase: z.literal(true).optional(),
    where: z.array(PropertyFilter).max(20).optional(),
    within: EventWindow.optional(),
    count: EventCount.optional(),
    aggregate: EventAggregate.optional(),
  })
  .openapi('SegmentEventCondition');
export type EventCondition = z.infer<typeof EventCondition>;

/** Membership of another segment (`member: false` for "not in"). */
export const SegmentCondition = z
  .strictObject({ id: z.uuid(), member: z.boolean().optional() })
  .openapi('SegmentMembershipCondition');
export type SegmentCondition = z.infer<typeof SegmentCondition>;

/** One node of a rule tree: a group or a condition. */
export type RuleNode =
  | { all: RuleNode[] }
  | { any: RuleNode[] }
  | { not: RuleNode }
  | { trait: TraitCondition }
  | { computed: ComputedCondition }
  | { event: EventCondition }
  | { segment: SegmentCondition };

const RULE_UNION_ERROR = `expected an object with exactly one of: ${RULE_KEYS.join(', ')}`;

export const RuleNode: z.ZodType<RuleNode> = z
  .lazy(() =>
    z.union(
      [
        z.strictObject({ all: z.array(RuleNode) }),
        z.strictObject({ any: z.array(RuleNode) }),
        z.strictObject({ not: RuleNode }),
        z.strictObject({ trait: TraitCondition }),
        z.strictObject({ computed: ComputedCondition }),
        z.strictObject({ event: EventCondition }),
        z.strictObject({ segment: SegmentCondition }),
      ],
      { error: RULE_UNION_ERROR },
    ),
  )
  .openapi('SegmentRule');

/**
 * A segment's rules: one rule node, usually a group. Checked for size first (depth ≤ 10,
 * ≤ 200 conditions), so an oversized tree is refused before it is walked recursively.
 */
export const SegmentRules = z
  .preprocess((input, ctx) => {
    for (const issue of sizeIssues(input)) ctx.addIssue({ code: 'custom', ...issue });
    return input;
  }, RuleNode)
  .openapi('SegmentRules', {
    description: 'A rule tree: groups all / any / not over conditions; see docs/segments.md.',
    example: {
      all: [
        { trait: { name: 'city', op: 'eq', value: 'Paris' } },
        { event: { purchase: true, count: { atLeast: 2 }, within: { last: 3, unit: 'months' } } },
      ],
    },
  });
export type SegmentRules = RuleNode;

/** Depth and size limits, checked on raw input without recursion. */
function sizeIssues(input: unknown): { path: (string | number)[]; message: string }[] {
  const stack: { node: unknown; path: (string | number)[]; depth: number }[] = [
    { node: input, path: [], depth: 0 },
  ];
  let conditions = 0;
  while (stack.length > 0) {
    const { node, path, depth } = stack.pop()!;
    if (typeof node !== 'object' || node === null || Array.isArray(node)) continue;
    const n = node as Record<string, unknown>;
    const children = Array.isArray(n.all) ? n.all : Array.isArray(n.any) ? n.any : null;
    const key = Array.isArray(n.all) ? 'all' : 'any';
    if (children || 'not' in n) {
      if (depth + 1 > MAX_RULE_DEPTH) {
        return [{ path, message: `groups nest deeper than ${MAX_RULE_DEPTH} levels` }];
      }
      if (children) {
        children.forEach((c, i) =>
          stack.push({ node: c, path: [...path, key, i], depth: depth + 1 }),
        );
      } else {
        stack.push({ node: n.not, path: [...path, 'not'], depth: depth + 1 });
      }
    } else if (++conditions > MAX_RULE_CONDITIONS) {
      return [{ path: [], message: `more than ${MAX_RULE_CONDITIONS} conditions` }];
    }
  }
  return [];
}

/** `prefix` then the issue path, written `rules.all[2].event.count`. */
export function fieldPath(prefix: string, path: readonly PropertyKey[]): string {
  return path.reduce<string>(
    (acc, key) =>
      typeof key === 'number' ? `${acc}[${key}]` : acc ? `${acc}.${String(key)}` : String(key),
    prefix,
  );
}

/**
 * The field errors of invalid rules, each naming its field (`rules.all[2].event.count`). A node
 * that fits no rule shape is explained by the shape its key selects: `{ "event": … }` gets the
 * event condition's errors, not one "invalid input" for the whole union.
 */
export function ruleErrors(error: z.ZodError, input: unknown, prefix = 'rules'): FieldError[] {
  const out: FieldError[] = [];
  const visit = (issues: readonly z.core.$ZodIssue[], base: PropertyKey[]) => {
    for (const issue of issues) {
      const path = [...base, ...issue.path];
      if (issue.code === 'invalid_union' && issue.message === RULE_UNION_ERROR) {
        const node = at(input, path);
        const keys =
          typeof node === 'object' && node !== null && !Array.isArray(node)
            ? RULE_KEYS.filter((k) => k in node)
            : [];
        const extra =
          keys.length === 1 ? Object.keys(node as object).filter((k) => k !== keys[0]) : [];
        if (keys.length === 1 && extra.length === 0) {
          visit(issue.errors[RULE_KEYS.indexOf(keys[0]!)]!, path);
          continue;
        }
        const message =
          keys.length === 1
            ? `unexpected key(s) beside ${keys[0]}: ${extra.join(', ')}`
            : RULE_UNION_ERROR;
        out.push({ field: fieldPath(prefix, path), message });
        continue;
      }
      out.push({ field: fieldPath(prefix, path), message: issue.message });
    }
  };
  visit(error.issues, []);
  return out;
}

function at(input: unknown, path: readonly PropertyKey[]): unknown {
  let node = input;
  for (const key of path) {
    if (typeof node !== 'object' || node === null) return undefined;
    node = (node as Record<PropertyKey, unknown>)[key];
  }
  return node;
}

/** Validate rules; the errors name each failing field under `prefix`. */
export function checkSegmentRules(
  input: unknown,
  prefix = 'rules',
): { ok: true; rules: SegmentRules } | { ok: false; errors: FieldError[] } {
  const result = SegmentRules.safeParse(input);
  if (result.success) return { ok: true, rules: result.data };
  return { ok: false, errors: ruleErrors(result.error, input, prefix) };
}

/**
 * Validate rules or throw a 400 {@link HubError} listing each failing field.
 *
 * @example
 * parseSegmentRules({ all: [{ event: { name: 'purchase', count: { atLeast: -1 } } }] });
 * // HubError 400, errors: [{ field: 'rules.all[0].event.count.atLeast', message: '…' }]
 */
export function parseSegmentRules(input: unknown, prefix = 'rules'): SegmentRules {
  const checked = checkSegmentRules(input, prefix);
  if (checked.ok) return checked.rules;
  const first = checked.errors[0]!;
  throw badRequest(`Invalid segment rules: ${first.field}: ${first.message}`, checked.errors);
}

/**
 * The segments a rule tree references directly, each with the field of its (first) reference.
 *
 * @example
 * segmentReferences({ all: [{ segment: { id: 'b' } }] }); // [{ id: 'b', field: 'rules.all[0].segment.id' }]
 */
export function segmentReferences(
  rules: SegmentRules,
  prefix = 'rules',
): { id: string; field: string; member: boolean }[] {
  const found = new Map<string, { id: string; field: string; member: boolean }>();
  walk(rules, [], (node, path) => {
    if ('segment' in node && !found.has(node.segment.id)) {
      found.set(node.segment.id, {
        id: node.segment.id,
        field: fieldPath(prefix, [...path, 'segment', 'id']),
        member: node.segment.member ?? true,
      });
    }
  });
  return [...found.values()];
}

/** Visit every node of a rule tree, depth first, with its path. */
export function walk(
  node: RuleNode,
  path: (string | number)[],
  visit: (node: RuleNode, path: (string | number)[]) => void,
): void {
  visit(node, path);
  if ('all' in node) node.all.forEach((c, i) => walk(c, [...path, 'all', i], visit));
  else if ('any' in node) node.any.forEach((c, i) => walk(c, [...path, 'any', i], visit));
  else if ('not' in node) walk(node.not, [...path, 'not'], visit);
}

/** The number of conditions (leaves) in a rule tree. */
export function conditionCount(rules: RuleNode): number {
  let n = 0;
  walk(rules, [], (node) => {
    if (!('all' in node || 'any' in node || 'not' in node)) n++;
  });
  return n;
}
