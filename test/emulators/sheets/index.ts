/**
 * A stateful Google Sheets API v4 emulator on 127.0.0.1 for the real `googleapis` client:
 * spreadsheets, tabs and cell values in memory, Google's errors, per-minute quotas, the
 * 10,000,000-cell limit, injected faults, a request log, and (optionally) every request checked
 * against the discovery document. What it emulates and what it leaves out: README.md here.
 *
 * @example
 * const emulator = await startSheetsEmulator({ validate: true });
 * const id = emulator.createSpreadsheet({ tabs: ['Sheet1'] });
 * const auth = new google.auth.OAuth2();
 * auth.setCredentials({ access_token: 'test-token' });
 * const sheets = google.sheets({ version: 'v4', auth, rootUrl: emulator.url });
 * await sheets.spreadsheets.values.update({ spreadsheetId: id, range: "'Sheet1'!A1",
 *   valueInputOption: 'RAW', requestBody: { values: [['email']] } });
 * emulator.readTab(id, 'Sheet1'); // [['email']]
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import {
  answerEmulatorBug,
  answerError,
  answerOf,
  dropConnection,
  faultAnswer,
  htmlAnswer,
  readJsonBody,
  recordAnswer,
  schemaRejection,
  sendAnswer,
  type GoogleAnswer,
  type GoogleRecordedRequest,
} from '../google-transport.ts';
import { startHttpEmulator, type Exchange } from '../http-harness.ts';
import type { Emulator } from '../types.ts';
import { parseA1 } from './a1.ts';
import { toCell, type Cell, type Scalar, type ValueRenderOption } from './cells.ts';
import { SheetsApiError, invalid, notFound, quotaExceeded, type QuotaKind } from './errors.ts';
import { applyFields, parseFields } from './fields.ts';
import { GOOGLE_QUOTA, QuotaCounter, type SheetsQuota } from './quota.ts';
import { DiscoverySpec, type SpecViolation } from './spec.ts';
import {
  spreadsheetResource,
  batchUpdateSpreadsheet,
  createSpreadsheet,
  type SpreadsheetContext,
} from './spreadsheets.ts';
import {
  boxInGrid,
  findSheet,
  readCells,
  resize,
  resolveRange,
  totalCells,
  writeCells,
  type Spreadsheet,
} from './state.ts';
import {
  appendValues,
  batchClearValues,
  batchGetValues,
  batchUpdateValues,
  clearValues,
  getValues,
  readOptions,
  updateValues,
} from './values.ts';

export type { SheetsQuota } from './quota.ts';
export type { SpecViolation } from './spec.ts';
export type { Cell, Scalar } from './cells.ts';

export interface SheetsEmulatorOptions {
  /**
   * Check every request (route, parameters, body) and every 2xx response against
   * specs/sheets-v4.discovery.json and record departures in `violations`. `'reject'` also
   * answers a request whose body or query breaks the schema with Google's 400
   * ("Invalid JSON payload received. Unknown name …"), as the real API does.
   */
  validate?: boolean | 'reject';
  /** Per-minute quotas; Google's (60 per user, 300 per project, 60 s) by default. */
  quota?: Partial<SheetsQuota>;
  /** Cells a workbook may hold (Σ rows × columns of its tabs): 10,000,000 at Google. */
  cellLimit?: number;
  /** OAuth access tokens accepted; any non-empty token when omitted. */
  tokens?: string[];
  /** API keys accepted (reads only, as at Google); any key when omitted. */
  apiKeys?: string[];
  /**
   * Refuse bodies larger than this with Google's 400 "Request payload size exceeds the limit".
   * Unset by default: Sheets only recommends 2 MB; `requests[].bodyBytes` records every size.
   */
  maxPayloadBytes?: number;
  /** The clock quota windows are measured on (ms); `Date.now` by default. */
  now?: () => number;
  /** The discovery document to validate against (see `sheetsDiscoveryFile`). */
  discoveryFile?: string;
}

/** One served request, with what the Sheets emulator knows about it. */
export interface SheetsRecordedRequest extends GoogleRecordedRequest {
  /** Request body size in bytes as received (before any gunzip). */
  bodyBytes: number;
  /** The caller: an OAuth token or `key:<api key>`. */
  user?: string;
}

/** A tab to create with `createSpreadsheet`. */
export interface TabSpec {
  title: string;
  sheetId?: number;
  rowCount?: number;
  columnCount?: number;
  /** Initial values from A1, stored as USER_ENTERED input would be. */
  values?: Scalar[][];
}

export interface SheetsEmulator extends Emulator {
  /** The base URL for googleapis: `google.sheets({ version: 'v4', rootUrl: emulator.url })`. */
  url: string;
  requests: SheetsRecordedRequest[];
  /** Discovery-document departures seen (only with `validate`). */
  violations: SpecViolation[];
  /** Creates a spreadsheet "on the Google side"; returns its id. One `Sheet1` tab by default. */
  createSpreadsheet(opts?: {
    title?: string;
    tabs?: Array<string | TabSpec>;
    spreadsheetId?: string;
    /** Only these tokens may open it (403 "The caller does not have permission" for others). */
    sharedWith?: string[];
  }): string;
  /** A tab's values from A1 to its last cell with data (UNFORMATTED_VALUE unless asked). */
  readTab(spreadsheetId: string, title: string, render?: ValueRenderOption): Scalar[][];
  /** The stored cell at an A1 reference such as `'My tab'!B2` (formulas stay visible). */
  getCell(spreadsheetId: string, a1: string): Cell | undefined;
  /** Writes values into a tab as a person typing would (USER_ENTERED), growing the grid. */
  writeTab(spreadsheetId: string, title: string, values: Scalar[][], at?: string): void;
  /** The tabs with their grid sizes, in order. */
  tabs(spreadsheetId: string): Array<{
    sheetId: number;
    title: string;
    index: number;
    rowCount: number;
    columnCount: number;
  }>;
  /** Σ rows × columns, what the 10,000,000-cell limit counts. */
  cellCount(spreadsheetId: string): number;
  /** Deletes a tab or renames it, as a person would in the Sheets UI. */
  deleteTab(spreadsheetId: string, title: string): void;
  renameTab(spreadsheetId: string, title: string, newTitle: string): void;
  /** Deletes the spreadsheet: later calls answer 404. */
  deleteSpreadsheet(spreadsheetId: string): void;
  /** Changes quotas (and the window); counters are kept. */
  setQuota(quota: Partial<SheetsQuota>): void;
  /** Forgets every request counted against the quotas. */
  resetQuota(): void;
  /** Makes a token answer 401 from now on (an expired or revoked grant). */
  revokeToken(token: string): void;
}

type Json = Record<string, unknown>;

interface Routed {
  operation: string;
  kind: QuotaKind;
  spreadsheetId?: string;
  range?: string;
}

/** The Sheets v4 routes (`/v4/spreadsheets/...`), by verb and path. */
function route(method: string, pathname: string): Routed | undefined {
  const m = /^\/v4\/spreadsheets(?:\/([^/]+?))?(?::([A-Za-z]+))?(\/.*)?$/.exec(pathname);
  if (!m) return undefined;
  const [, rawId, verb, rest] = m;
  let spreadsheetId: string | undefined;
  try {
    spreadsheetId = rawId === undefined ? undefined : decodeURIComponent(rawId);
  } catch {
    return undefined;
  }
  const op = (operation: string, kind: QuotaKind, range?: string): Routed => ({
    operation: `sheets.spreadsheets.${operation}`,
    kind,
    spreadsheetId,
    range,
  });
  if (spreadsheetId === undefined)
    return method === 'POST' && !verb && !rest ? op('create', 'Write') : undefined;
  if (!rest) {
    if (method === 'GET' && !verb) return op('get', 'Read');
    if (method === 'POST' && verb === 'batchUpdate') return op('batchUpdate', 'Write');
    if (method === 'POST' && verb === 'getByDataFilter') return op('getByDataFilter', 'Read');
    return undefined;
  }
  if (verb) return undefined;
  const values = /^\/values(?::([A-Za-z]+)|\/([^/]+))$/.exec(rest);
  if (!values) {
    if (/^\/developerMetadata/.test(rest)) return op('developerMetadata', 'Read');
    if (/^\/sheets\/[^/]+:copyTo$/.test(rest)) return op('sheets.copyTo', 'Write');
    return undefined;
  }
  const [, batchVerb, segment] = values;
  if (batchVerb) {
    if (method === 'GET' && batchVerb === 'batchGet') return op('values.batchGet', 'Read');
    if (method !== 'POST') return undefined;
    return op(`values.${batchVerb}`, batchVerb === 'batchGetByDataFilter' ? 'Read' : 'Write');
  }
  // The verb after the last ':' is literal; a ':' inside the range arrives as %3A.
  const colon = segment!.lastIndexOf(':');
  const suffix = colon >= 0 ? segment!.slice(colon + 1) : '';
  const isVerb = method === 'POST' && (suffix === 'append' || suffix === 'clear');
  let range: string;
  try {
    range = decodeURIComponent(isVerb ? segment!.slice(0, colon) : segment!);
  } catch {
    return undefined;
  }
  if (method === 'GET' && !isVerb) return op('values.get', 'Read', range);
  if (method === 'PUT' && !isVerb) return op('values.update', 'Write', range);
  if (isVerb) return op(`values.${suffix}`, 'Write', range);
  return undefined;
}

const IMPLEMENTED = new Set(
  [
    'create',
    'get',
    'batchUpdate',
    'values.get',
    'values.batchGet',
    'values.update',
    'values.batchUpdate',
    'values.append',
    'values.clear',
    'values.batchClear',
  ].map((m) => `sheets.spreadsheets.${m}`),
);

const INVALID_TOKEN =
  'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.';

function errorInfo(reason: string, operation: string): Json {
  return {
    '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
    reason,
    domain: 'googleapis.com',
    metadata: { service: 'sheets.googleapis.com', method: operation },
  };
}

/**
 * Starts the emulator on a free port of 127.0.0.1.
 *
 * @example const emulator = await startSheetsEmulator({ quota: { writesPerUser: 3, windowMs: 500 } });
 */
export async function startSheetsEmulator(
  options: SheetsEmulatorOptions = {},
): Promise<SheetsEmulator> {
  const now = options.now ?? Date.now;
  const cellLimit = options.cellLimit ?? 10_000_000;
  const quota = new QuotaCounter({ ...GOOGLE_QUOTA, ...options.quota });
  const spec = options.validate ? DiscoverySpec.load(options.discoveryFile) : undefined;
  const tokens = options.tokens ? new Set(options.tokens) : undefined;
  const apiKeys = options.apiKeys ? new Set(options.apiKeys) : undefined;
  const revoked = new Set<string>();
  const spreadsheets = new Map<string, Spreadsheet>();
  const violations: SpecViolation[] = [];
  let seed = 0x2545f491;

  const ctx: SpreadsheetContext = {
    cellLimit,
    newSheetId: (ss) => {
      for (;;) {
        seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff;
        if (seed > 0 && !ss.sheets.some((s) => s.sheetId === seed)) return seed;
      }
    },
  };

  const newId = (): string => `1${randomBytes(33).toString('base64url')}`;

  const book = (id: string): Spreadsheet => {
    const ss = spreadsheets.get(id);
    if (!ss) throw new Error(`no spreadsheet ${id}`);
    return ss;
  };

  /** Everything after the transport: validation, auth, quota, the method itself. */
  const handle = (
    req: IncomingMessage,
    url: URL,
    raw: Buffer,
    record: SheetsRecordedRequest,
  ): GoogleAnswer => {
    const method = req.method ?? 'GET';
    const routed = route(method, url.pathname);
    const body = readJsonBody(req, raw);
    if (spec) {
      const checked = spec.checkRequest(method, `${url.pathname}${url.search}`, body);
      record.operation = checked.operation;
      violations.push(...checked.violations);
      const rejected = schemaRejection(checked.violations);
      if (options.validate === 'reject' && rejected) return answerError(rejected);
    }
    if (!routed) return htmlAnswer(404);
    record.operation = routed.operation;
    if (options.maxPayloadBytes !== undefined && raw.length > options.maxPayloadBytes) {
      return answerError(
        invalid(`Request payload size exceeds the limit: ${options.maxPayloadBytes} bytes.`),
      );
    }

    // Credentials: a bearer token (header or access_token/oauth_token), else an API key.
    const header = req.headers.authorization;
    const token =
      (header?.startsWith('Bearer ') ? header.slice(7) : undefined) ??
      url.searchParams.get('access_token') ??
      url.searchParams.get('oauth_token') ??
      undefined;
    const key = url.searchParams.get('key') ?? undefined;
    if (token !== undefined) {
      if (token === '' || revoked.has(token) || (tokens && !tokens.has(token))) {
        return answerError(
          new SheetsApiError(
            'UNAUTHENTICATED',
            INVALID_TOKEN,
            [errorInfo('ACCESS_TOKEN_TYPE_UNSUPPORTED', routed.operation)],
            {
              'www-authenticate':
                'Bearer realm="https://accounts.google.com/", error="invalid_token"',
            },
          ),
        );
      }
    } else if (key !== undefined) {
      if (apiKeys && !apiKeys.has(key)) {
        return answerError(
          new SheetsApiError(
            'INVALID_ARGUMENT',
            'API key not valid. Please pass a valid API key.',
            [errorInfo('API_KEY_INVALID', routed.operation)],
          ),
        );
      }
      if (routed.kind === 'Write') {
        return answerError(
          new SheetsApiError(
            'UNAUTHENTICATED',
            'API keys are not supported by this API. Expected OAuth2 access token or other authentication credentials that assert a principal. See https://cloud.google.com/docs/authentication',
            [errorInfo('CREDENTIALS_MISSING', routed.operation)],
          ),
        );
      }
    } else {
      return answerError(
        new SheetsApiError('PERMISSION_DENIED', 'The request is missing a valid API key.'),
      );
    }
    const user = url.searchParams.get('quotaUser') ?? token ?? `key:${key}`;
    record.user = user;

    const exhausted = quota.take(routed.kind, user, now());
    if (exhausted) return answerError(exhausted);

    if (!IMPLEMENTED.has(routed.operation)) {
      return answerError(
        new SheetsApiError(
          'UNIMPLEMENTED',
          `The Sheets emulator does not implement ${routed.operation}.`,
        ),
      );
    }

    const json = (body ?? {}) as Json;
    const query = url.searchParams;
    let result: Json;
    if (routed.operation === 'sheets.spreadsheets.create') {
      const ss = createSpreadsheet(newId(), json, ctx);
      // A new spreadsheet belongs to its creator: other callers get 403 until it is shared.
      if (token !== undefined) ss.sharedWith = new Set([token]);
      spreadsheets.set(ss.spreadsheetId, ss);
      result = spreadsheetResource(ss);
    } else {
      const ss = spreadsheets.get(routed.spreadsheetId!);
      if (!ss) return answerError(notFound());
      if (ss.sharedWith && !(token !== undefined && ss.sharedWith.has(token))) {
        return answerError(
          new SheetsApiError('PERMISSION_DENIED', 'The caller does not have permission'),
        );
      }
      const get = (n: string): string | undefined => query.get(n) ?? undefined;
      switch (routed.operation) {
        case 'sheets.spreadsheets.get':
          result = spreadsheetResource(ss, {
            ranges: query.getAll('ranges'),
            includeGridData: query.get('includeGridData') === 'true',
          });
          break;
        case 'sheets.spreadsheets.batchUpdate':
          result = batchUpdateSpreadsheet(ss, json, ctx);
          break;
        case 'sheets.spreadsheets.values.get':
          result = getValues(ss, routed.range!, readOptions(get));
          break;
        case 'sheets.spreadsheets.values.batchGet':
          result = batchGetValues(ss, query.getAll('ranges'), readOptions(get));
          break;
        case 'sheets.spreadsheets.values.update':
          result = updateValues(ss, routed.range!, query, json);
          break;
        case 'sheets.spreadsheets.values.batchUpdate':
          result = batchUpdateValues(ss, json);
          break;
        case 'sheets.spreadsheets.values.append':
          result = appendValues(ss, routed.range!, query, json, cellLimit);
          break;
        case 'sheets.spreadsheets.values.clear':
          result = clearValues(ss, routed.range!);
          break;
        default:
          result = batchClearValues(ss, json);
      }
    }
    if (spec)
      violations.push(...spec.checkResponse(routed.operation, `${method} ${url.pathname}`, result));
    const fields = query.get('fields');
    return { status: 200, body: fields ? applyFields(result, parseFields(fields)) : result };
  };

  /** The transport: injected faults and latency, then `handle`, then the log entry. */
  const serve = async ({
    req,
    res,
    record,
    url,
    body,
    delay,
    takeFault,
  }: Exchange<SheetsRecordedRequest>): Promise<void> => {
    const fault = takeFault();
    record.bodyBytes = body.length;
    await delay();
    if (fault?.kind === 'drop') return dropConnection(req, record, 'drop');
    if (fault?.kind === 'status') {
      record.fault = 'status';
      const routed = route(req.method ?? 'GET', url.pathname);
      record.operation = routed?.operation;
      const kind = routed?.kind ?? 'Write';
      const answer = faultAnswer(fault, () =>
        quotaExceeded(
          kind,
          'user',
          kind === 'Write' ? quota.quota.writesPerUser : quota.quota.readsPerUser,
        ),
      );
      record.status = answer.status;
      sendAnswer(res, answer);
      return;
    }
    const answer = answerOf(() => handle(req, url, body, record));
    recordAnswer(record, answer);
    if (fault?.kind === 'drop-after-apply') return dropConnection(req, record, 'drop-after-apply');
    sendAnswer(res, answer);
  };

  const http = await startHttpEmulator<SheetsRecordedRequest>({
    handle: serve,
    onError: answerEmulatorBug,
    record: (request): SheetsRecordedRequest => ({ ...request, bodyBytes: 0 }),
    // Outlive the client's idle keep-alive sockets (Node's agent drops them after 5 s), so the
    // client never reuses a socket the server is closing at that moment.
    keepAliveTimeout: 60_000,
  });

  const emulator: SheetsEmulator = {
    ...http,
    violations,
    createSpreadsheet(opts = {}) {
      const id = opts.spreadsheetId ?? newId();
      if (spreadsheets.has(id)) throw new Error(`spreadsheet ${id} exists`);
      const tabs = (opts.tabs ?? ['Sheet1']).map((t) => (typeof t === 'string' ? { title: t } : t));
      const ss = createSpreadsheet(
        id,
        {
          properties: { title: opts.title ?? 'Untitled spreadsheet' },
          sheets: tabs.map((t) => ({
            properties: {
              title: t.title,
              sheetId: t.sheetId,
              gridProperties: { rowCount: t.rowCount, columnCount: t.columnCount },
            },
          })),
        },
        ctx,
      );
      if (opts.sharedWith) ss.sharedWith = new Set(opts.sharedWith);
      spreadsheets.set(id, ss);
      for (const t of tabs) if (t.values) emulator.writeTab(id, t.title, t.values);
      return id;
    },
    readTab(spreadsheetId, title, render = 'UNFORMATTED_VALUE') {
      const ss = book(spreadsheetId);
      const sheet = findSheet(ss, title);
      if (!sheet) throw new Error(`no tab ${title}`);
      return readCells(
        sheet,
        { r0: 0, r1: sheet.rowCount, c0: 0, c1: sheet.columnCount },
        'ROWS',
        render,
        'SERIAL_NUMBER',
      );
    },
    getCell(spreadsheetId, a1) {
      const target = resolveRange(book(spreadsheetId), a1);
      const box = boxInGrid(target);
      return target.sheet.rows[box.r0]?.[box.c0];
    },
    writeTab(spreadsheetId, title, values, at = 'A1') {
      const sheet = findSheet(book(spreadsheetId), title);
      const start = parseA1(at)?.rect;
      if (!sheet || !start) throw new Error(`no tab ${title} or bad cell ${at}`);
      const [r0, c0] = [start.startRow, start.startCol];
      const block = values.map((row, i) =>
        row.map((v, j) => toCell(v, 'USER_ENTERED', `values[${i}][${j}]`)),
      );
      const width = block.reduce((w, row) => Math.max(w, row.length), 0);
      resize(
        sheet,
        Math.max(sheet.rowCount, r0 + block.length),
        Math.max(sheet.columnCount, c0 + width),
      );
      writeCells(sheet, r0, c0, block);
    },
    tabs(spreadsheetId) {
      const ss = book(spreadsheetId);
      return ss.sheets.map((s, index) => ({
        sheetId: s.sheetId,
        title: s.title,
        index,
        rowCount: s.rowCount,
        columnCount: s.columnCount,
      }));
    },
    cellCount(spreadsheetId) {
      return totalCells(book(spreadsheetId));
    },
    deleteTab(spreadsheetId, title) {
      const ss = book(spreadsheetId);
      const sheet = findSheet(ss, title);
      if (!sheet) throw new Error(`no tab ${title}`);
      // As in the Sheets UI, the last tab cannot go.
      if (ss.sheets.length === 1) throw new Error(`${title} is the only tab`);
      ss.sheets.splice(ss.sheets.indexOf(sheet), 1);
    },
    renameTab(spreadsheetId, title, newTitle) {
      const sheet = findSheet(book(spreadsheetId), title);
      if (!sheet) throw new Error(`no tab ${title}`);
      sheet.title = newTitle;
    },
    deleteSpreadsheet(spreadsheetId) {
      spreadsheets.delete(spreadsheetId);
    },
    setQuota(q) {
      Object.assign(quota.quota, q);
    },
    resetQuota() {
      quota.reset();
    },
    revokeToken(token) {
      revoked.add(token);
    },
  };
  return emulator;
}
