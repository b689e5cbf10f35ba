/**
 * The `daily_user_events` stream: events per user, day and event name from the Data API's
 * runReport — dimensions [userIdDimension, date, eventName], metrics eventCount and the revenue
 * metric — paged with `offset`/`limit` against `rowCount`, and read incrementally by day.
 *
 * Settling: GA4 keeps processing a day for 24–48 hours, so only settled days are read (see
 * `lastSettledDay`) and each is read once. A record is the whole count of its (user, day,
 * event): reading it again replaces it, so nothing is counted twice.
 *
 * The cursor: `{ through, timeZone, range? }` — every day up to `through` has been read;
 * `range` is a report part-read, `offset` rows in, with the `rowCount` its pages had. A resumed
 * read asks for the same range from `offset`; if `rowCount` moved (the days were not final after
 * all), it reads the range again from its first row.
 */
import {
  ConfigError,
  TransientError,
  type Cursor,
  type PluginContext,
  type SourceMessage,
} from 'audiencehub/sdk';
import type { analyticsdata_v1beta } from 'googleapis/build/src/apis/analyticsdata/index.js';
import { call, propertyName, type GaConfig } from './client.ts';
import { addDays, dayIn, EARLIEST_ZONE, fromCompactDay, isDay, lastSettledDay } from './dates.ts';

/** Days a first read goes back when no startDate is given. */
export const DEFAULT_LOOKBACK_DAYS = 90;
/** Times a range is read again from its start because its rows changed under the pages. */
const MAX_RESTARTS = 3;
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

/** User values that name no one: rows holding them are left out. */
const NO_USER = new Set(['', '(not set)', '(other)']);

interface Range {
  from: string;
  to: string;
  offset: number;
  rowCount: number;
}

export interface DailyCursor {
  through: string | null;
  timeZone?: string;
  range?: Range;
}

function parseCursor(cursor: Cursor | null, ctx: PluginContext): DailyCursor {
  if (cursor === null) return { through: null };
  const c = cursor as Record<string, unknown>;
  const through = c.through === null || (typeof c.through === 'string' && isDay(c.through));
  const r = c.range as Record<string, unknown> | undefined;
  const range =
    r === undefined ||
    (typeof r.from === 'string' &&
      isDay(r.from) &&
      typeof r.to === 'string' &&
      isDay(r.to) &&
      Number.isInteger(r.offset) &&
      Number.isInteger(r.rowCount));
  if (typeof cursor !== 'object' || Array.isArray(cursor) || !through || !range) {
    // Reading again from the start is safe: records are keyed by user, day and event.
    ctx.log.warn('Google Analytics: unreadable checkpoint, reading from startDate again');
    return { through: null };
  }
  return {
    through: c.through as string | null,
    timeZone: typeof c.timeZone === 'string' ? c.timeZone : undefined,
    range: r as unknown as Range | undefined,
  };
}

/** The runReport request for a range, one page at `offset`. */
export function reportRequest(
  config: GaConfig,
  range: { from: string; to: string; offset: number },
  limit = config.pageSize,
): analyticsdata_v1beta.Schema$RunReportRequest {
  const user = config.userIdDimension!;
  // Rows without a user are useless here: filtered out by Google, so they cost no tokens.
  const hasUser: analyticsdata_v1beta.Schema$FilterExpression = {
    notExpression: {
      filter: { fieldName: user, stringFilter: { matchType: 'EXACT', value: '(not set)' } },
    },
  };
  const filters = [hasUser];
  if (config.eventNames) {
    filters.push({
      filter: {
        fieldName: 'eventName',
        inListFilter: { values: config.eventNames, caseSensitive: true },
      },
    });
  }
  return {
    dateRanges: [{ startDate: range.from, endDate: range.to }],
    dimensions: [{ name: user }, { name: 'date' }, { name: 'eventName' }],
    metrics: [
      { name: 'eventCount' },
      ...(config.revenueMetric === 'none' ? [] : [{ name: config.revenueMetric }]),
    ],
    dimensionFilter: filters.length === 1 ? filters[0] : { andGroup: { expressions: filters } },
    // A fixed order is what makes offset paging safe; days first, so pages follow the calendar.
    orderBys: [
      { dimension: { dimensionName: 'date', orderType: 'ALPHANUMERIC' } },
      { dimension: { dimensionName: user, orderType: 'ALPHANUMERIC' } },
      { dimension: { dimensionName: 'eventName', orderType: 'ALPHANUMERIC' } },
    ],
    limit: String(limit),
    offset: String(range.offset),
    keepEmptyRows: false,
    returnPropertyQuota: true,
  };
}

/**
 * Stop before the property's quota runs dry for everyone (dashboards and Looker Studio share
 * it): when a page leaves fewer tokens than `quotaReserve`, the read ends after its checkpoint
 * with a TransientError that waits the whole quota window, after which every token this read
 * spent has returned.
 */
export function quotaStop(
  quota: analyticsdata_v1beta.Schema$PropertyQuota | undefined,
  reserve: GaConfig['quotaReserve'],
): TransientError | undefined {
  const left = (s?: analyticsdata_v1beta.Schema$QuotaStatus | null) => s?.remaining ?? Infinity;
  if (left(quota?.tokensPerDay) < reserve.tokensPerDay) {
    return new TransientError(
      `Google Analytics: ${left(quota?.tokensPerDay)} tokens left today for the property, under the ${reserve.tokensPerDay} kept in reserve; reading again in 24 hours.`,
      { retryAfterMs: DAY_MS },
    );
  }
  const hourly = Math.min(left(quota?.tokensPerHour), left(quota?.tokensPerProjectPerHour));
  if (hourly < reserve.tokensPerHour) {
    return new TransientError(
      `Google Analytics: ${hourly} tokens left this hour for the property, under the ${reserve.tokensPerHour} kept in reserve; reading again in an hour.`,
      { retryAfterMs: HOUR_MS },
    );
  }
  return undefined;
}

/** Reads `daily_user_events` from a cursor (null: from startDate, or 90 days back). */
export async function* readDailyUserEvents(
  config: GaConfig,
  cursor: Cursor | null,
  ctx: PluginContext,
): AsyncGenerator<SourceMessage> {
  if (!config.propertyId) throw new ConfigError('propertyId: daily_user_events reads a property');
  const state = parseCursor(cursor, ctx);
  // Until the property's zone is known, days are counted where they start last: never early.
  let timeZone = config.timeZone ?? state.timeZone ?? EARLIEST_ZONE;
  let range = state.range;
  if (!range) {
    const to = lastSettledDay(timeZone, config.settleDays);
    const from = state.through
      ? addDays(state.through, 1)
      : (config.startDate ?? addDays(dayIn(timeZone), -DEFAULT_LOOKBACK_DAYS));
    if (from > to) {
      yield { type: 'checkpoint', cursor: { through: state.through, timeZone } };
      return;
    }
    range = { from, to, offset: 0, rowCount: -1 };
  }

  let restarts = 0;
  let skipped = 0;
  for (;;) {
    const current: Range = range;
    const page = await call(config, ctx, `report ${current.from}..${current.to}`, (ga, options) =>
      ga.properties.runReport(
        { property: propertyName(config), requestBody: reportRequest(config, current) },
        options,
      ),
    );
    const rowCount = page.rowCount ?? 0;
    if (current.rowCount >= 0 && rowCount !== current.rowCount) {
      if (++restarts > MAX_RESTARTS) {
        throw new TransientError(
          `Google Analytics: the report of ${current.from}..${current.to} kept changing between pages (${current.rowCount} then ${rowCount} rows); reading it later.`,
          { retryAfterMs: HOUR_MS },
        );
      }
      ctx.log.warn('Google Analytics: rows changed under the pages; reading the range again', {
        from: current.from,
        to: current.to,
        before: current.rowCount,
        now: rowCount,
      });
      range = { ...current, offset: 0, rowCount: -1 };
      continue;
    }
    if (page.metadata?.dataLossFromOtherRow) {
      ctx.log.warn('Google Analytics rolled some rows into "(other)": they are left out', {
        from: current.from,
        to: current.to,
      });
    }
    timeZone = config.timeZone ?? page.metadata?.timeZone ?? timeZone;
    const rows = page.rows ?? [];
    for (const row of rows) {
      if (ctx.signal.aborted) throw new TransientError('the run was stopped', { retryAfterMs: 0 });
      const dims = (row.dimensionValues ?? []).map((v) => v.value ?? '');
      const metrics = (row.metricValues ?? []).map((v) => Number(v.value ?? 0));
      if (NO_USER.has(dims[0]!)) {
        skipped++;
        continue;
      }
      yield {
        type: 'record',
        data: {
          user_id: dims[0]!,
          date: fromCompactDay(dims[1]!),
          event_name: dims[2]!,
          event_count: metrics[0] ?? 0,
          revenue: config.revenueMetric === 'none' ? null : (metrics[1] ?? 0),
        },
      };
    }
    const offset = current.offset + rows.length;
    if (rows.length === 0 || offset >= rowCount) {
      if (skipped > 0) ctx.log.info('Google Analytics: rows without a user left out', { skipped });
      yield { type: 'checkpoint', cursor: { through: current.to, timeZone } };
      return;
    }
    range = { ...current, offset, rowCount };
    yield {
      type: 'checkpoint',
      cursor: { through: state.through, timeZone, range: { ...range } },
    };
    const stop = quotaStop(page.propertyQuota, config.quotaReserve);
    if (stop) throw stop;
  }
}

/** For `check`: the report request with one row over yesterday. */
export const probeRequest = (config: GaConfig): analyticsdata_v1beta.Schema$RunReportRequest => {
  const request = reportRequest(config, { from: 'yesterday', to: 'yesterday', offset: 0 }, 1);
  return { ...request, orderBys: undefined };
};
