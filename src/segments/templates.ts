/**
 * Built-in segment templates: rule trees usable as they are or as a starting point. Each has a
 * stable `key` (kept in `segments.template`) and a builder taking the values a marketer would
 * change. "Purchase" is the `purchase: true` event selector: every event ingest gave a revenue,
 * i.e. the configured purchase events (docs/segments.md, "Purchases").
 *
 * @example
 * const rules = loyalCustomers({ purchases: 3, months: 6 });
 * const template = findTemplate('rfm-champions')!; // template.rules
 */
import type { EventWindow, RuleNode, SegmentRules, TimeUnit } from './rules.ts';

export interface SegmentTemplate {
  /** Stable identifier, e.g. `loyal-customers`. */
  key: string;
  name: string;
  description: string;
  group: 'lifecycle' | 'engagement' | 'value' | 'acquisition' | 'rfm';
  rules: SegmentRules;
}

const within = (last: number, unit: TimeUnit): EventWindow => ({ last, unit });

/** Purchased at least `purchases` times within the last `months` months (default 2 in 3). */
export function loyalCustomers(
  options: { purchases?: number; months?: number } = {},
): SegmentRules {
  const { purchases = 2, months = 3 } = options;
  return {
    event: { purchase: true, count: { atLeast: purchases }, within: within(months, 'months') },
  };
}

export interface HotLeadOptions {
  /** The pricing page's path (`properties.path` of page views). */
  pricingPath?: string;
  pricingViews?: number;
  pricingDays?: number;
  /** Track events that show intent: downloads and form submissions. */
  intentEvents?: string[];
  intentDays?: number;
}

/**
 * Viewed the pricing page at least 3 times in the last 7 days, or downloaded a file or
 * submitted a form in the last 30 days.
 */
export function hotLeads(options: HotLeadOptions = {}): SegmentRules {
  const {
    pricingPath = '/pricing',
    pricingViews = 3,
    pricingDays = 7,
    intentEvents = ['File Downloaded', 'Form Submitted'],
    intentDays = 30,
  } = options;
  return {
    any: [
      {
        event: {
          type: 'page',
          where: [{ property: 'path', op: 'eq', value: pricingPath }],
          count: { atLeast: pricingViews },
          within: within(pricingDays, 'days'),
        },
      },
      { event: { name: intentEvents, within: within(intentDays, 'days') } },
    ],
  };
}

/** Spent more than 200 in total over more than 3 purchases. */
export function highValue(
  options: { spentOver?: number; purchasesOver?: number } = {},
): SegmentRules {
  const { spentOver = 200, purchasesOver = 3 } = options;
  return {
    all: [
      { computed: { name: 'total_spent', op: 'gt', value: spentOver } },
      { computed: { name: 'purchase_count', op: 'gt', value: purchasesOver } },
    ],
  };
}

/**
 * Paying customers with no activity (track, page or screen events — what `event_count`
 * counts) in the last 30 days: candidates for a reactivation campaign.
 */
export function inactiveReactivation(options: { days?: number } = {}): SegmentRules {
  const { days = 30 } = options;
  return {
    all: [
      { computed: { name: 'total_spent', op: 'gt', value: 0 } },
      {
        event: {
          type: ['track', 'page', 'screen'],
          count: { atMost: 0 },
          within: within(days, 'days'),
        },
      },
    ],
  };
}

/** Exactly one purchase so far. */
export function newPaying(): SegmentRules {
  return { computed: { name: 'purchase_count', op: 'eq', value: 1 } };
}

/** Acquired through a channel: the stored trait `source` (default `referral`). */
export function channel(options: { source?: string; trait?: string } = {}): SegmentRules {
  const { source = 'referral', trait = 'source' } = options;
  return { trait: { name: trait, op: 'eq', value: source } };
}

export interface CityCategoryOptions {
  city: string;
  /** The `category` property of the purchase events. */
  category: string;
  minAge?: number;
  maxAge?: number;
  purchases?: number;
  /** Default: the last month. */
  within?: EventWindow;
}

/** Aged 18–35, living in `city`, with at least 3 purchases in `category` within a month. */
export function cityCategoryBuyers(options: CityCategoryOptions): SegmentRules {
  const { city, category, minAge = 18, maxAge = 35, purchases = 3 } = options;
  return {
    all: [
      { trait: { name: 'age', op: 'between', value: [minAge, maxAge] } },
      { trait: { name: 'city', op: 'eq', value: city } },
      {
        event: {
          purchase: true,
          where: [{ property: 'category', op: 'eq', value: category }],
          count: { atLeast: purchases },
          within: options.within ?? within(1, 'months'),
        },
      },
    ],
  };
}

/** An RFM group: ranges (inclusive) of the recency and frequency scores 1–5. */
export interface RfmGroup {
  key: string;
  name: string;
  description: string;
  recency: [number, number];
  frequency: [number, number];
}

/**
 * The RFM groups, on recency (R) and frequency (F) scores. They partition the 25 (R, F)
 * pairs: every scored customer is in exactly one group. Monetary (M) follows frequency closely
 * (more orders, more revenue), so the groups leave it out; add an `rfm_monetary` condition
 * to a copy to split a group by value.
 */
export const RFM_GROUPS: readonly RfmGroup[] = [
  {
    key: 'champions',
    name: 'Champions',
    description: 'Bought recently and buy often.',
    recency: [5, 5],
    frequency: [4, 5],
  },
  {
    key: 'loyal',
    name: 'Loyal customers',
    description: 'Buy often, and bought fairly recently.',
    recency: [3, 4],
    frequency: [4, 5],
  },
  {
    key: 'potential-loyalists',
    name: 'Potential loyalists',
    description: 'Recent customers with a few orders.',
    recency: [4, 5],
    frequency: [2, 3],
  },
  {
    key: 'new-customers',
    name: 'New customers',
    description: 'Bought very recently, for the first time or nearly.',
    recency: [5, 5],
    frequency: [1, 1],
  },
  {
    key: 'promising',
    name: 'Promising',
    description: 'Bought recently, but only once or nearly.',
    recency: [4, 4],
    frequency: [1, 1],
  },
  {
    key: 'need-attention',
    name: 'Need attention',
    description: 'Average recency and frequency.',
    recency: [3, 3],
    frequency: [3, 3],
  },
  {
    key: 'about-to-sleep',
    name: 'About to sleep',
    description: 'Below-average recency and frequency.',
    recency: [3, 3],
    frequency: [1, 2],
  },
  {
    key: 'at-risk',
    name: 'At risk',
    description: 'Bought often, but long ago.',
    recency: [1, 2],
    frequency: [3, 4],
  },
  {
    key: 'cannot-lose',
    name: 'Cannot lose them',
    description: 'Were among the most frequent buyers, but have not bought for a long time.',
    recency: [1, 2],
    frequency: [5, 5],
  },
  {
    key: 'hibernating',
    name: 'Hibernating',
    description: 'Few orders, long ago.',
    recency: [2, 2],
    frequency: [1, 2],
  },
  {
    key: 'lost',
    name: 'Lost',
    description: 'Few orders, the longest ago.',
    recency: [1, 1],
    frequency: [1, 2],
  },
];

/** The rules of an RFM group. */
export function rfmGroup(group: RfmGroup): SegmentRules {
  const score = (name: 'rfm_recency' | 'rfm_frequency', [lo, hi]: [number, number]): RuleNode =>
    lo === hi
      ? { computed: { name, op: 'eq', value: lo } }
      : { computed: { name, op: 'between', value: [lo, hi] } };
  return { all: [score('rfm_recency', group.recency), score('rfm_frequency', group.frequency)] };
}

/** Every built-in template, with its default values. */
export const TEMPLATES: readonly SegmentTemplate[] = [
  {
    key: 'loyal-customers',
    name: 'Loyal customers',
    description: 'Purchased at least twice in the last 3 months.',
    group: 'lifecycle',
    rules: loyalCustomers(),
  },
  {
    key: 'hot-leads',
    name: 'Hot leads',
    description:
      'Viewed the pricing page at least 3 times in 7 days, or downloaded a file or submitted a form in the last 30 days.',
    group: 'engagement',
    rules: hotLeads(),
  },
  {
    key: 'high-value',
    name: 'High value',
    description: 'Spent more than 200 over more than 3 purchases.',
    group: 'value',
    rules: highValue(),
  },
  {
    key: 'inactive-reactivation',
    name: 'Inactive customers to reactivate',
    description: 'Have spent something, but no activity in the last 30 days.',
    group: 'lifecycle',
    rules: inactiveReactivation(),
  },
  {
    key: 'new-paying',
    name: 'New paying customers',
    description: 'Exactly one purchase so far.',
    group: 'lifecycle',
    rules: newPaying(),
  },
  {
    key: 'channel-referral',
    name: 'Referral channel',
    description:
      'Acquired through referral (trait source = referral); change the value for other channels.',
    group: 'acquisition',
    rules: channel(),
  },
  {
    key: 'city-category-buyers',
    name: 'Young buyers of a category in a city',
    description:
      'Aged 18–35, living in Paris, with at least 3 purchases in the category Shoes in the last month; change city and category.',
    group: 'value',
    rules: cityCategoryBuyers({ city: 'Paris', category: 'Shoes' }),
  },
  ...RFM_GROUPS.map((g): SegmentTemplate => ({
    key: `rfm-${g.key}`,
    name: `RFM: ${g.name}`,
    description: `${g.description} Recency score ${range(g.recency)}, frequency score ${range(g.frequency)}.`,
    group: 'rfm',
    rules: rfmGroup(g),
  })),
];

function range([lo, hi]: [number, number]) {
  return lo === hi ? `${lo}` : `${lo}–${hi}`;
}

/** The template with this key, if any. */
export function findTemplate(key: string): SegmentTemplate | undefined {
  return TEMPLATES.find((t) => t.key === key);
}
