/**
 * `properties.runReport` over a property's seeded event facts: request checks with the API's
 * errors, date ranges (absolute and relative, in the property's time zone), dimension filters,
 * aggregation, ordering, the 250,000-row page cap with `offset`, `rowCount` and aggregations.
 */
import type { Catalog, EventFact } from './catalog.ts';
import { Ga4ApiError, invalid, unknownDimension, unknownMetric } from './errors.ts';

/** Rows one request returns at most, whatever its `limit` (discovery: RunReportRequest.limit). */
export const MAX_ROWS_PER_REQUEST = 250_000;
/** Rows returned when the request gives no `limit`. */
export const DEFAULT_LIMIT = 10_000;

export interface ReportProperty {
  timeZone: string;
  currencyCode: string;
  catalog: Catalog;
  facts: Iterable<EventFact>;
}

export interface ReportResult {
  body: Record<string, unknown>;
  /** Rows in this response, total rows, and days covered: what the token cost is drawn from. */
  cost: { rows: number; rowCount: number; days: number; dimensions: number; metrics: number };
}

type Json = Record<string, unknown>;

const unimplemented = (what: string) =>
  new Ga4ApiError('UNIMPLEMENTED', `The GA4 emulator does not implement ${what}.`);

/** `YYYY-MM-DD` of `now` in a time zone. */
export function dayIn(timeZone: string, now: number): string {
  return new Intl.DateTimeFormat('en-CA', {
    timeZone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
  }).format(new Date(now));
}

export function addDays(day: string, n: number): string {
  const d = new Date(`${day}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

/** A request date: `YYYY-MM-DD`, `today`, `yesterday` or `NdaysAgo`, resolved in the zone. */
function resolveDate(value: unknown, field: string, today: string): string {
  if (typeof value !== 'string' || value === '') {
    throw invalid(`${field} is required for a date range.`);
  }
  if (value === 'today') return today;
  if (value === 'yesterday') return addDays(today, -1);
  const ago = /^(\d+)daysAgo$/.exec(value);
  if (ago) return addDays(today, -Number(ago[1]));
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
  if (m && addDays(value, 0) === value) return value;
  throw invalid(
    `Invalid ${field} '${value}': use the format YYYY-MM-DD, NdaysAgo, yesterday, or today.`,
  );
}

/** int64 fields arrive as decimal strings (proto3 JSON) or numbers. */
function int64(value: unknown, field: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  const text = typeof value === 'number' ? String(value) : value;
  if (typeof text !== 'string' || !/^-?\d+$/.test(text)) {
    throw invalid(`Invalid value at '${field}' (TYPE_INT64), ${JSON.stringify(value)}`);
  }
  return Number(text);
}

interface Predicate {
  (values: (name: string) => string): boolean;
}

/** A FilterExpression on dimensions; every field it names must be a dimension. */
function compileFilter(expr: unknown, catalog: Catalog, fields: Set<string>): Predicate {
  const e = (expr ?? {}) as Json;
  const kinds = ['andGroup', 'orGroup', 'notExpression', 'filter'].filter((k) => e[k] != null);
  if (kinds.length !== 1) {
    throw invalid(
      'A FilterExpression must set exactly one of andGroup, orGroup, notExpression, filter.',
    );
  }
  if (e.andGroup || e.orGroup) {
    const list = ((e.andGroup ?? e.orGroup) as Json).expressions;
    const parts = (Array.isArray(list) ? list : []).map((x) => compileFilter(x, catalog, fields));
    return e.andGroup ? (v) => parts.every((p) => p(v)) : (v) => parts.some((p) => p(v));
  }
  if (e.notExpression) {
    const inner = compileFilter(e.notExpression, catalog, fields);
    return (v) => !inner(v);
  }
  const f = e.filter as Json;
  const name = f.fieldName;
  if (typeof name !== 'string' || !catalog.dimension(name)) {
    throw unknownDimension(String(name));
  }
  fields.add(name);
  if (f.stringFilter) {
    const s = f.stringFilter as Json;
    const cs = s.caseSensitive === true;
    const norm = (x: string) => (cs ? x : x.toLowerCase());
    const value = norm(String(s.value ?? ''));
    const type = (s.matchType as string | undefined) ?? 'EXACT';
    const test: Record<string, (x: string) => boolean> = {
      EXACT: (x) => x === value,
      BEGINS_WITH: (x) => x.startsWith(value),
      ENDS_WITH: (x) => x.endsWith(value),
      CONTAINS: (x) => x.includes(value),
      FULL_REGEXP: (x) => new RegExp(`^(?:${String(s.value)})$`, cs ? '' : 'i').test(x),
      PARTIAL_REGEXP: (x) => new RegExp(String(s.value), cs ? '' : 'i').test(x),
    };
    const fn = test[type];
    if (!fn) throw unimplemented(`stringFilter matchType ${type}`);
    return (v) => fn(type.endsWith('REGEXP') ? v(name) : norm(v(name)));
  }
  if (f.inListFilter) {
    const l = f.inListFilter as Json;
    const cs = l.caseSensitive === true;
    const values = new Set(
      (Array.isArray(l.values) ? l.values : []).map((x) =>
        cs ? String(x) : String(x).toLowerCase(),
      ),
    );
    return (v) => values.has(cs ? v(name) : v(name).toLowerCase());
  }
  if (f.emptyFilter) return (v) => v(name) === '' || v(name) === '(not set)';
  throw unimplemented('numericFilter and betweenFilter on dimensions');
}

const compareCodePoints = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Formats a metric value as the API does: integers plainly, money without float noise. */
function formatMetric(type: string, value: number): string {
  if (type === 'TYPE_INTEGER') return String(Math.round(value));
  return String(Math.round(value * 1e6) / 1e6);
}

/**
 * Runs one report.
 *
 * @example runReport(property, { dateRanges: [{ startDate: '7daysAgo', endDate: 'yesterday' }],
 *   dimensions: [{ name: 'date' }], metrics: [{ name: 'eventCount' }] }, Date.now())
 */
export function runReport(property: ReportProperty, body: Json, now: number): ReportResult {
  const { catalog } = property;
  if (body.cohortSpec) throw unimplemented('cohort reports');
  if (Array.isArray(body.comparisons) && body.comparisons.length > 0) {
    throw unimplemented('comparisons');
  }
  if (body.metricFilter) throw unimplemented('metricFilter');

  const dimensions = (Array.isArray(body.dimensions) ? body.dimensions : []) as Json[];
  const metrics = (Array.isArray(body.metrics) ? body.metrics : []) as Json[];
  if (dimensions.length === 0 && metrics.length === 0) {
    throw invalid('Requests require dimensions and/or metrics. Most requests include both.');
  }
  if (dimensions.length > 9) {
    throw invalid(
      `Requests are limited to 9 dimensions within a nested request.\n  This request is for ${dimensions.length} dimensions.`,
    );
  }
  if (metrics.length > 10) {
    throw invalid(
      `Requests are limited to 10 metrics within a nested request.\n  This request is for ${metrics.length} metrics.`,
    );
  }
  const dimensionNames = dimensions.map((d) => {
    if (d.dimensionExpression) throw unimplemented('dimensionExpression');
    const name = String(d.name ?? '');
    if (!catalog.dimension(name)) throw unknownDimension(name);
    return name;
  });
  const metricDefs = metrics.map((m) => {
    if (m.expression) throw unimplemented('metric expressions');
    const name = String(m.name ?? '');
    const def = catalog.metric(name);
    if (!def) throw unknownMetric(name);
    return def;
  });
  const readers = dimensionNames.map((n) => catalog.dimension(n)!);

  const today = dayIn(property.timeZone, now);
  const rawRanges = (Array.isArray(body.dateRanges) ? body.dateRanges : []) as Json[];
  if (rawRanges.length === 0) throw invalid('A non-cohort report requires at least one dateRange.');
  if (rawRanges.length > 4) {
    throw invalid(
      `Requests are limited to 4 dateRanges.\n  This request is for ${rawRanges.length} dateRanges.`,
    );
  }
  const ranges = rawRanges.map((r, i) => {
    const start = resolveDate(r.startDate, 'startDate', today);
    const end = resolveDate(r.endDate, 'endDate', today);
    if (start > end) {
      throw invalid(`The date range startDate ${start} is after its endDate ${end}.`);
    }
    const name = typeof r.name === 'string' && r.name ? r.name : `date_range_${i}`;
    if (typeof r.name === 'string' && /^(date_range_|RESERVED_)/.test(r.name)) {
      throw invalid(`A dateRange name cannot begin with date_range_ or RESERVED_: ${r.name}`);
    }
    return { start, end, name };
  });
  const days = ranges.reduce(
    (n, r) => n + (Date.parse(r.end) - Date.parse(r.start)) / 86_400_000 + 1,
    0,
  );

  const limit = int64(body.limit, 'limit');
  const offset = int64(body.offset, 'offset') ?? 0;
  if (limit !== undefined && limit <= 0) throw invalid('limit must be positive.');
  if (offset < 0) throw invalid('offset must be non-negative.');
  const pageSize = Math.min(limit ?? DEFAULT_LIMIT, MAX_ROWS_PER_REQUEST);

  const filterFields = new Set<string>();
  const filter = body.dimensionFilter
    ? compileFilter(body.dimensionFilter, catalog, filterFields)
    : undefined;

  // Group facts by their dimension values (and date range when there are several).
  const groups = new Map<string, { key: string; dims: string[]; sums: number[] }>();
  for (const fact of property.facts) {
    if (filter && !filter((name) => catalog.dimension(name)!(fact))) continue;
    for (const range of ranges) {
      if (fact.date < range.start || fact.date > range.end) continue;
      const dims = readers.map((read) => read(fact));
      if (ranges.length > 1) dims.push(range.name);
      const key = JSON.stringify(dims);
      let g = groups.get(key);
      if (!g) groups.set(key, (g = { key, dims, sums: metricDefs.map(() => 0) }));
      metricDefs.forEach((m, i) => (g!.sums[i]! += m.read(fact)));
    }
  }
  let rows = [...groups.values()];
  if (metricDefs.length > 0 && body.keepEmptyRows !== true) {
    rows = rows.filter((r) => r.sums.some((s) => s !== 0));
  }

  const headerNames = ranges.length > 1 ? [...dimensionNames, 'dateRange'] : dimensionNames;
  const metricNames = metricDefs.map((m) => m.apiName);
  const orderBys = (Array.isArray(body.orderBys) ? body.orderBys : []) as Json[];
  const comparators = orderBys.map((o) => {
    const desc = o.desc === true ? -1 : 1;
    if (o.dimension) {
      const d = o.dimension as Json;
      const i = headerNames.indexOf(String(d.dimensionName));
      if (i < 0) {
        throw invalid(
          `orderBys dimensionName ${String(d.dimensionName)} is not a dimension of the request.`,
        );
      }
      const type = (d.orderType as string | undefined) ?? 'ALPHANUMERIC';
      return (a: (typeof rows)[number], b: (typeof rows)[number]) => {
        const x = a.dims[i]!;
        const y = b.dims[i]!;
        if (type === 'NUMERIC') return desc * ((Number(x) || 0) - (Number(y) || 0));
        if (type === 'CASE_INSENSITIVE_ALPHANUMERIC') {
          return desc * compareCodePoints(x.toLowerCase(), y.toLowerCase());
        }
        return desc * compareCodePoints(x, y);
      };
    }
    if (o.metric) {
      const name = String((o.metric as Json).metricName);
      const i = metricNames.indexOf(name);
      if (i < 0) throw invalid(`orderBys metricName ${name} is not a metric of the request.`);
      return (a: (typeof rows)[number], b: (typeof rows)[number]) =>
        desc * (a.sums[i]! - b.sums[i]!);
    }
    throw unimplemented('pivot orderBys');
  });
  // Without orderBys the API promises no order; the emulator's is the first metric descending,
  // then the dimension values — deterministic, so paging without orderBys is stable here.
  if (comparators.length === 0 && metricDefs.length > 0) {
    comparators.push((a, b) => b.sums[0]! - a.sums[0]!);
  }
  comparators.push((a, b) => compareCodePoints(a.key, b.key));
  rows.sort((a, b) => {
    for (const c of comparators) {
      const r = c(a, b);
      if (r !== 0) return r;
    }
    return 0;
  });

  const page = rows.slice(offset, offset + pageSize);
  const render = (r: (typeof rows)[number]) => {
    const row: Json = {};
    if (headerNames.length > 0) row.dimensionValues = r.dims.map((value) => ({ value }));
    if (metricDefs.length > 0) {
      row.metricValues = r.sums.map((s, i) => ({ value: formatMetric(metricDefs[i]!.type, s) }));
    }
    return row;
  };

  const result: Json = {};
  if (headerNames.length > 0) result.dimensionHeaders = headerNames.map((name) => ({ name }));
  if (metricDefs.length > 0) {
    result.metricHeaders = metricDefs.map((m) => ({ name: m.apiName, type: m.type }));
  }
  if (page.length > 0) result.rows = page.map(render);
  const aggregations = (
    Array.isArray(body.metricAggregations) ? body.metricAggregations : []
  ) as string[];
  const aggregate = (marker: string, fn: (values: number[]) => number) => [
    {
      dimensionValues: headerNames.map(() => ({ value: marker })),
      metricValues: metricDefs.map((m, i) => ({
        value: formatMetric(m.type, rows.length ? fn(rows.map((r) => r.sums[i]!)) : 0),
      })),
    },
  ];
  for (const a of aggregations) {
    if (a === 'TOTAL')
      result.totals = aggregate('RESERVED_TOTAL', (v) => v.reduce((x, y) => x + y, 0));
    else if (a === 'MAXIMUM') result.maximums = aggregate('RESERVED_MAX', (v) => Math.max(...v));
    else if (a === 'MINIMUM') result.minimums = aggregate('RESERVED_MIN', (v) => Math.min(...v));
    else throw unimplemented(`metricAggregations ${a}`);
  }
  // proto3 JSON leaves out zero values: an empty report has no rowCount.
  if (rows.length > 0) result.rowCount = rows.length;
  result.metadata = {
    currencyCode: typeof body.currencyCode === 'string' ? body.currencyCode : property.currencyCode,
    timeZone: property.timeZone,
  };
  result.kind = 'analyticsData#runReport';
  return {
    body: result,
    cost: {
      rows: page.length,
      rowCount: rows.length,
      days,
      dimensions: dimensionNames.length,
      metrics: metricDefs.length,
    },
  };
}
