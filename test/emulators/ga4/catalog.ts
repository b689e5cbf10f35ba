/**
 * The dimensions and metrics the emulator computes, as `getMetadata` describes them, and how
 * each is read from a stored event fact. A property adds its registered custom dimensions
 * (`customUser:<user property>`, `customEvent:<event parameter>`).
 */

/** One cell of seeded data: `count` events of one name, on one day, sharing these values. */
export interface EventFact {
  /** `YYYY-MM-DD` in the property's time zone. */
  date: string;
  eventName: string;
  count: number;
  /** Purchase revenue of these events, in the property's currency. */
  revenue: number;
  country?: string;
  deviceCategory?: string;
  platform?: string;
  /** User properties (what `customUser:<key>` reads). */
  user: Record<string, string>;
  /** Event parameters (what `customEvent:<key>` reads). */
  params: Record<string, string>;
}

export interface DimensionMetadata {
  apiName: string;
  uiName: string;
  description: string;
  category: string;
  customDefinition?: boolean;
}

export interface MetricMetadata {
  apiName: string;
  uiName: string;
  description: string;
  type: 'TYPE_INTEGER' | 'TYPE_CURRENCY';
  category: string;
  customDefinition?: boolean;
  blockedReasons?: string[];
}

const NOT_SET = '(not set)';

const BUILT_IN_DIMENSIONS: Array<DimensionMetadata & { read: (f: EventFact) => string }> = [
  {
    apiName: 'date',
    uiName: 'Date',
    description: 'The date of the event, formatted as YYYYMMDD.',
    category: 'Time',
    read: (f) => f.date.replaceAll('-', ''),
  },
  {
    apiName: 'year',
    uiName: 'Year',
    description: 'The four-digit year of the event.',
    category: 'Time',
    read: (f) => f.date.slice(0, 4),
  },
  {
    apiName: 'month',
    uiName: 'Month',
    description: 'The month of the event, a two digit integer from 01 to 12.',
    category: 'Time',
    read: (f) => f.date.slice(5, 7),
  },
  {
    apiName: 'eventName',
    uiName: 'Event name',
    description: 'The name of the event.',
    category: 'Event',
    read: (f) => f.eventName,
  },
  {
    apiName: 'country',
    uiName: 'Country',
    description: 'The country from which the user activity originated.',
    category: 'Geography',
    read: (f) => f.country ?? NOT_SET,
  },
  {
    apiName: 'deviceCategory',
    uiName: 'Device category',
    description: 'The type of device: Desktop, Tablet, or Mobile.',
    category: 'Platform / Device',
    read: (f) => f.deviceCategory ?? NOT_SET,
  },
  {
    apiName: 'platform',
    uiName: 'Platform',
    description: 'The platform on which your app or website ran.',
    category: 'Platform / Device',
    read: (f) => f.platform ?? NOT_SET,
  },
];

export const METRICS: Array<MetricMetadata & { read: (f: EventFact) => number }> = [
  {
    apiName: 'eventCount',
    uiName: 'Event count',
    description: 'The count of events.',
    type: 'TYPE_INTEGER',
    category: 'Event',
    read: (f) => f.count,
  },
  {
    apiName: 'purchaseRevenue',
    uiName: 'Purchase revenue',
    description: 'The sum of revenue from purchases minus refunded transaction revenue.',
    type: 'TYPE_CURRENCY',
    category: 'Revenue',
    read: (f) => f.revenue,
  },
  {
    apiName: 'totalRevenue',
    uiName: 'Total revenue',
    description: 'The sum of revenue from purchases, subscriptions, and advertising.',
    type: 'TYPE_CURRENCY',
    category: 'Revenue',
    read: (f) => f.revenue,
  },
];

/** `customUser:<name>` / `customEvent:<name>`; GA4 parameter names are letters, digits, `_`. */
export const CUSTOM_DIMENSION = /^(customUser|customEvent):([A-Za-z][A-Za-z0-9_]*)$/;

export interface Catalog {
  dimension(name: string): ((f: EventFact) => string) | undefined;
  metric(name: string): (MetricMetadata & { read: (f: EventFact) => number }) | undefined;
  dimensions(): DimensionMetadata[];
  metrics(): MetricMetadata[];
}

/** The catalog of a property with these custom dimensions; revenue may be blocked for it. */
export function catalogFor(customDimensions: Iterable<string>, revenueBlocked = false): Catalog {
  const custom = [...customDimensions];
  return {
    dimension(name) {
      const builtIn = BUILT_IN_DIMENSIONS.find((d) => d.apiName === name);
      if (builtIn) return builtIn.read;
      if (!custom.includes(name)) return undefined;
      const [, scope, key] = CUSTOM_DIMENSION.exec(name)!;
      return scope === 'customUser'
        ? (f) => f.user[key!] ?? NOT_SET
        : (f) => f.params[key!] ?? NOT_SET;
    },
    metric(name) {
      const m = METRICS.find((x) => x.apiName === name);
      // A blocked metric is accepted and reported as zeros (getMetadata's blockedReasons).
      if (m && revenueBlocked && m.type === 'TYPE_CURRENCY') return { ...m, read: () => 0 };
      return m;
    },
    dimensions() {
      return [
        ...BUILT_IN_DIMENSIONS.map(({ read: _read, ...d }) => d),
        ...custom.map((name) => {
          const [, scope, key] = CUSTOM_DIMENSION.exec(name)!;
          return {
            apiName: name,
            uiName: key!,
            description: `An ${scope === 'customUser' ? 'user' : 'event'}-scoped Custom Dimension for your Analytics property.`,
            category: 'Custom',
            customDefinition: true,
          };
        }),
      ];
    },
    metrics() {
      return METRICS.map(({ read: _read, ...m }) =>
        revenueBlocked && m.type === 'TYPE_CURRENCY'
          ? { ...m, blockedReasons: ['NO_REVENUE_METRICS'] }
          : m,
      );
    },
  };
}
