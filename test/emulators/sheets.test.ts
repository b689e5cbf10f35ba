/**
 * The Google Sheets emulator, driven only through the real googleapis client (178.0.0).
 *
 * googleapis retries by itself (gaxios defaults: 3 retries of GET/PUT/HEAD/OPTIONS/DELETE on
 * 408, 429 and 5xx, 2 retries of those methods when no answer came, never POST, Retry-After
 * ignored, waits of 100 ms, 500 ms, 1.5 s). Most suites turn that off (`retry: false`) so each
 * call is one request; "what googleapis does by default" shows the retries against the
 * emulator on purpose.
 */
import { google, type sheets_v4 } from 'googleapis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startSheetsEmulator, type SheetsEmulator } from './sheets/index.ts';
import { DiscoverySpec } from './sheets/spec.ts';
import { googleFailure as failure } from './test-helpers.ts';

const TOKEN = 'test-token';

type Sheets = sheets_v4.Sheets;

function sheetsFor(
  emulator: SheetsEmulator,
  opts: { token?: string; retry?: boolean } = {},
): Sheets {
  const auth = new google.auth.OAuth2();
  auth.setCredentials({ access_token: opts.token ?? TOKEN });
  return google.sheets({
    version: 'v4',
    auth,
    rootUrl: emulator.url,
    ...(opts.retry === true ? {} : { retry: false }),
  });
}

describe('Sheets emulator: tabs and values through googleapis', () => {
  let emulator: SheetsEmulator;
  let sheets: Sheets;
  beforeAll(async () => {
    emulator = await startSheetsEmulator({ validate: true });
    sheets = sheetsFor(emulator);
  });
  afterAll(() => emulator.close());
  afterEach(() => {
    // Every request these tests send is what the discovery document describes.
    expect(emulator.violations).toEqual([]);
  });

  it('adds a tab, writes a header and rows, and reads them back', async () => {
    const spreadsheetId = emulator.createSpreadsheet({ title: 'Audiences' });
    const added = await sheets.spreadsheets.batchUpdate({
      spreadsheetId,
      requestBody: {
        requests: [
          {
            addSheet: {
              properties: {
                title: 'VIP buyers',
                gridProperties: { rowCount: 100, columnCount: 5 },
              },
            },
          },
        ],
      },
    });
    const props = added.data.replies![0]!.addSheet!.properties!;
    expect(props).toMatchObject({
      title: 'VIP buyers',
      index: 1,
      gridProperties: { rowCount: 100, columnCount: 5 },
    });
    expect(props.sheetId).toBeGreaterThan(0);

    const meta = await sheets.spreadsheets.get({
      spreadsheetId,
      fields: 'sheets(properties(sheetId,title,index,gridProperties))',
    });
    expect(meta.data).toEqual({
      sheets: [
        {
          properties: {
            sheetId: 0,
            title: 'Sheet1',
            index: 0,
            gridProperties: { rowCount: 1000, columnCount: 26 },
          },
        },
        {
          properties: {
            sheetId: props.sheetId,
            title: 'VIP buyers',
            index: 1,
            gridProperties: { rowCount: 100, columnCount: 5 },
          },
        },
      ],
    });

    const written = await sheets.spreadsheets.values.update({
      spreadsheetId,
      range: "'VIP buyers'!A1",
      valueInputOption: 'RAW',
      requestBody: {
        values: [
          ['email', 'name', 'total_spent'],
          ['ann@example.com', 'Ann', 120.5],
          ['bob@example.com', 'Bob', 80],
        ],
      },
    });
    expect(written.data).toEqual({
      spreadsheetId,
      updatedRange: "'VIP buyers'!A1:C3",
      updatedRows: 3,
      updatedColumns: 3,
      updatedCells: 9,
    });
    // googleapis percent-encodes the whole range in the path, quotes and `!` included.
    expect(emulator.requests.at(-1)!.path).toContain(
      '/values/%27VIP%20buyers%27%21A1?valueInputOption=RAW',
    );

    const formatted = await sheets.spreadsheets.values.get({
      spreadsheetId,
      range: "'VIP buyers'!A:C",
    });
    expect(formatted.data).toEqual({
      range: "'VIP buyers'!A1:C100",
      majorDimension: 'ROWS',
      values: [
        ['email', 'name', 'total_spent'],
        ['ann@example.com', 'Ann', '120.5'],
        ['bob@example.com', 'Bob', '80'],
      ],
    });
    const raw = await sheets.spreadsheets.values.get({
      spreadsheetId,
      range: "'VIP buyers'!B2:C3",
      valueRenderOption: 'UNFORMATTED_VALUE',
      majorDimension: 'COLUMNS',
    });
    expect(raw.data.values).toEqual([
      ['Ann', 'Bob'],
      [120.5, 80],
    ]);
    expect(emulator.readTab(spreadsheetId, 'VIP buyers')).toEqual([
      ['email', 'name', 'total_spent'],
      ['ann@example.com', 'Ann', 120.5],
      ['bob@example.com', 'Bob', 80],
    ]);
  });

  it('quotes tab names with spaces and apostrophes, and refuses them unquoted', async () => {
    const title = "Bob's VIP list";
    const spreadsheetId = emulator.createSpreadsheet({ tabs: ['Sheet1', title] });
    const range = "'Bob''s VIP list'!A1:B2";
    await sheets.spreadsheets.values.update({
      spreadsheetId,
      range,
      valueInputOption: 'RAW',
      requestBody: {
        range,
        values: [
          ['a', 'b'],
          ['c', 'd'],
        ],
      },
    });
    const read = await sheets.spreadsheets.values.get({
      spreadsheetId,
      range: "'Bob''s VIP list'",
    });
    expect(read.data.range).toBe("'Bob''s VIP list'!A1:Z1000");
    expect(read.data.values).toEqual([
      ['a', 'b'],
      ['c', 'd'],
    ]);
    // Tab names are matched without regard to case, as in Sheets.
    const lower = await sheets.spreadsheets.values.get({
      spreadsheetId,
      range: "'bob''s vip list'!B2",
    });
    expect(lower.data).toEqual({
      range: "'Bob''s VIP list'!B2",
      majorDimension: 'ROWS',
      values: [['d']],
    });

    const unquoted = await failure(
      sheets.spreadsheets.values.get({ spreadsheetId, range: "Bob's VIP list!A1" }),
    );
    expect(unquoted.status).toBe(400);
    expect(unquoted.error).toEqual({
      code: 400,
      message: "Unable to parse range: Bob's VIP list!A1",
      status: 'INVALID_ARGUMENT',
    });
    // A range naming no tab is on the first tab.
    const first = await sheets.spreadsheets.values.get({ spreadsheetId, range: 'A1' });
    expect(first.data).toEqual({ range: 'Sheet1!A1', majorDimension: 'ROWS' });
  });

  it('appends after the table, inserting rows or overwriting, and clears ranges', async () => {
    const spreadsheetId = emulator.createSpreadsheet({
      tabs: [
        {
          title: 'Members',
          rowCount: 6,
          columnCount: 3,
          values: [['email'], ['a@x.io'], ['b@x.io']],
        },
      ],
    });
    const appended = await sheets.spreadsheets.values.append({
      spreadsheetId,
      range: 'Members!A1',
      valueInputOption: 'RAW',
      insertDataOption: 'INSERT_ROWS',
      requestBody: { values: [['c@x.io'], ['d@x.io']] },
    });
    expect(appended.data).toEqual({
      spreadsheetId,
      tableRange: 'Members!A1:A3',
      updates: {
        spreadsheetId,
        updatedRange: 'Members!A4:A5',
        updatedRows: 2,
        updatedColumns: 1,
        updatedCells: 2,
      },
    });
    // INSERT_ROWS always inserts: the grid grew by two rows.
    expect(emulator.tabs(spreadsheetId)[0]).toMatchObject({ rowCount: 8, columnCount: 3 });

    // Clearing a row leaves a gap; the table now ends before it, so an OVERWRITE append lands
    // in the gap and writes over what follows — the reason a mirror should not append into gaps.
    const cleared = await sheets.spreadsheets.values.clear({
      spreadsheetId,
      range: 'Members!A3:C3',
    });
    expect(cleared.data).toEqual({ spreadsheetId, clearedRange: 'Members!A3:C3' });
    const overwrite = await sheets.spreadsheets.values.append({
      spreadsheetId,
      range: 'Members',
      valueInputOption: 'RAW',
      requestBody: { values: [['e@x.io'], ['f@x.io']] },
    });
    expect(overwrite.data.tableRange).toBe('Members!A1:A2');
    expect(overwrite.data.updates!.updatedRange).toBe('Members!A3:A4');
    expect(emulator.readTab(spreadsheetId, 'Members')).toEqual([
      ['email'],
      ['a@x.io'],
      ['e@x.io'],
      ['f@x.io'],
      ['d@x.io'],
    ]);

    // OVERWRITE past the last row adds rows (and columns) to fit.
    await sheets.spreadsheets.values.append({
      spreadsheetId,
      range: "'Members'!A:C",
      valueInputOption: 'RAW',
      requestBody: { values: [['g@x.io', 'G', 1, 'extra'], ['h@x.io'], ['i@x.io'], ['j@x.io']] },
    });
    expect(emulator.tabs(spreadsheetId)[0]).toMatchObject({ rowCount: 9, columnCount: 4 });

    const batch = await sheets.spreadsheets.values.batchUpdate({
      spreadsheetId,
      requestBody: {
        valueInputOption: 'RAW',
        data: [
          { range: 'Members!B1', values: [['name']] },
          { range: 'Members!B2:B3', values: [['A'], ['E']] },
        ],
      },
    });
    expect(batch.data).toMatchObject({
      totalUpdatedRows: 3,
      totalUpdatedColumns: 2,
      totalUpdatedCells: 3,
      totalUpdatedSheets: 1,
    });
    const got = await sheets.spreadsheets.values.batchGet({
      spreadsheetId,
      ranges: ['Members!A1:B2', 'Members!D6'],
    });
    expect(got.data.valueRanges).toEqual([
      {
        range: 'Members!A1:B2',
        majorDimension: 'ROWS',
        values: [
          ['email', 'name'],
          ['a@x.io', 'A'],
        ],
      },
      { range: 'Members!D6', majorDimension: 'ROWS', values: [['extra']] },
    ]);
    const clearedAll = await sheets.spreadsheets.values.batchClear({
      spreadsheetId,
      requestBody: { ranges: ['Members!A2:D', 'Members!B1'] },
    });
    expect(clearedAll.data.clearedRanges).toEqual(['Members!A2:D9', 'Members!B1']);
    expect(emulator.readTab(spreadsheetId, 'Members')).toEqual([['email']]);
  });

  it('parses USER_ENTERED input the way Sheets does and keeps RAW as given', async () => {
    const spreadsheetId = emulator.createSpreadsheet();
    const row = ['007', '+4420', "'007", '=1+1', 'TRUE', '2024-01-31', '10%', '1,234', 'a@b.co'];
    for (const [valueInputOption, r] of [
      ['USER_ENTERED', 1],
      ['RAW', 2],
    ] as const) {
      await sheets.spreadsheets.values.update({
        spreadsheetId,
        range: `Sheet1!A${r}`,
        valueInputOption,
        requestBody: { values: [row] },
      });
    }
    const read = await sheets.spreadsheets.values.get({
      spreadsheetId,
      range: 'Sheet1!A1:I2',
      valueRenderOption: 'UNFORMATTED_VALUE',
    });
    expect(read.data.values).toEqual([
      [7, 4420, '007', '=1+1', true, 45322, 0.1, 1234, 'a@b.co'],
      row,
    ]);
    const formatted = await sheets.spreadsheets.values.get({
      spreadsheetId,
      range: 'Sheet1!A1:I1',
    });
    expect(formatted.data.values).toEqual([
      ['7', '4420', '007', '=1+1', 'TRUE', '2024-01-31', '10%', '1,234', 'a@b.co'],
    ]);
    expect(emulator.getCell(spreadsheetId, 'Sheet1!D1')).toEqual({
      value: '=1+1',
      formatted: '=1+1',
      formula: '=1+1',
    });
    expect(emulator.getCell(spreadsheetId, 'Sheet1!D2')).toBe('=1+1');
  });

  it('leaves null cells alone and empties "" cells', async () => {
    const spreadsheetId = emulator.createSpreadsheet({
      tabs: [{ title: 'T', values: [['a', 'b', 'c']] }],
    });
    await sheets.spreadsheets.values.update({
      spreadsheetId,
      range: 'T!A1',
      valueInputOption: 'RAW',
      requestBody: { values: [[null, '', 'C']] },
    });
    expect(emulator.readTab(spreadsheetId, 'T')).toEqual([['a', '', 'C']]);
  });

  it('returns grid data for ranges, written values when asked, and partial responses', async () => {
    const spreadsheetId = emulator.createSpreadsheet({
      tabs: [
        'Sheet1',
        {
          title: 'Data',
          values: [
            ['email', 'score'],
            ['a@x.io', '12'],
          ],
        },
      ],
    });
    const grid = await sheets.spreadsheets.get({
      spreadsheetId,
      ranges: ['Data!A2:B3'],
      includeGridData: true,
    });
    expect(grid.data.sheets).toHaveLength(1);
    expect(grid.data.sheets![0]!.data).toEqual([
      {
        startRow: 1,
        rowData: [
          {
            values: [
              {
                userEnteredValue: { stringValue: 'a@x.io' },
                effectiveValue: { stringValue: 'a@x.io' },
                formattedValue: 'a@x.io',
              },
              {
                userEnteredValue: { numberValue: 12 },
                effectiveValue: { numberValue: 12 },
                formattedValue: '12',
              },
            ],
          },
        ],
      },
    ]);
    const echoed = await sheets.spreadsheets.values.update({
      spreadsheetId,
      range: 'Data!B2:C3',
      valueInputOption: 'USER_ENTERED',
      includeValuesInResponse: true,
      responseValueRenderOption: 'UNFORMATTED_VALUE',
      requestBody: { values: [['13']] },
    });
    expect(echoed.data.updatedData).toEqual({
      range: 'Data!B2:C3',
      majorDimension: 'ROWS',
      values: [[13]],
    });
    const partial = await sheets.spreadsheets.values.append({
      spreadsheetId,
      range: 'Data!A1',
      valueInputOption: 'RAW',
      fields: 'updates.updatedRange',
      requestBody: { values: [['b@x.io', 7]] },
    });
    expect(partial.data).toEqual({ updates: { updatedRange: 'Data!A3:B3' } });
  });

  it('creates spreadsheets, renames, resizes, moves and deletes tabs and rows', async () => {
    const created = await sheets.spreadsheets.create({
      requestBody: {
        properties: { title: 'Hub exports' },
        sheets: [{ properties: { title: 'First' } }],
      },
    });
    const spreadsheetId = created.data.spreadsheetId!;
    expect(created.data.sheets!.map((s) => s.properties!.title)).toEqual(['First']);
    const add = await sheets.spreadsheets.batchUpdate({
      spreadsheetId,
      requestBody: {
        requests: [
          {
            addSheet: {
              properties: { title: 'Second', gridProperties: { rowCount: 10, columnCount: 2 } },
            },
          },
          { addSheet: {} },
        ],
      },
    });
    const second = add.data.replies![0]!.addSheet!.properties!.sheetId!;
    expect(add.data.replies![1]!.addSheet!.properties!.title).toBe('Sheet3');
    await sheets.spreadsheets.values.update({
      spreadsheetId,
      range: 'Second!A1',
      valueInputOption: 'RAW',
      requestBody: { values: [['h'], ['1'], ['2'], ['3']] },
    });
    await sheets.spreadsheets.batchUpdate({
      spreadsheetId,
      requestBody: {
        requests: [
          {
            deleteDimension: {
              range: { sheetId: second, dimension: 'ROWS', startIndex: 1, endIndex: 3 },
            },
          },
          { appendDimension: { sheetId: second, dimension: 'COLUMNS', length: 3 } },
          {
            updateSheetProperties: {
              properties: {
                sheetId: second,
                title: 'Renamed',
                index: 0,
                gridProperties: { frozenRowCount: 1 },
              },
              fields: 'title,index,gridProperties.frozenRowCount',
            },
          },
          {
            repeatCell: {
              range: { sheetId: second, endRowIndex: 1 },
              cell: { userEnteredFormat: { textFormat: { bold: true } } },
              fields: 'userEnteredFormat.textFormat.bold',
            },
          },
          {
            updateCells: {
              start: { sheetId: second, rowIndex: 0, columnIndex: 1 },
              rows: [{ values: [{ userEnteredValue: { stringValue: 'x' } }] }],
              fields: 'userEnteredValue',
            },
          },
        ],
      },
    });
    expect(
      emulator
        .tabs(spreadsheetId)
        .map(({ title, rowCount, columnCount }) => ({ title, rowCount, columnCount })),
    ).toEqual([
      { title: 'Renamed', rowCount: 8, columnCount: 5 },
      { title: 'First', rowCount: 1000, columnCount: 26 },
      { title: 'Sheet3', rowCount: 1000, columnCount: 26 },
    ]);
    expect(emulator.readTab(spreadsheetId, 'Renamed')).toEqual([['h', 'x'], ['3']]);
    await sheets.spreadsheets.batchUpdate({
      spreadsheetId,
      requestBody: { requests: [{ deleteSheet: { sheetId: second } }] },
    });
    expect(emulator.tabs(spreadsheetId).map((t) => t.title)).toEqual(['First', 'Sheet3']);
  });
});

describe('Sheets emulator: errors as Google sends them', () => {
  let emulator: SheetsEmulator;
  let sheets: Sheets;
  let spreadsheetId: string;
  beforeAll(async () => {
    emulator = await startSheetsEmulator({ validate: true });
    sheets = sheetsFor(emulator);
    spreadsheetId = emulator.createSpreadsheet({
      tabs: [{ title: 'Tab', rowCount: 10, columnCount: 3 }],
    });
  });
  afterAll(() => emulator.close());
  afterEach(() => expect(emulator.violations).toEqual([]));

  it('answers 404 for a spreadsheet that does not exist or was deleted', async () => {
    const missing = await failure(
      sheets.spreadsheets.values.get({ spreadsheetId: 'nope', range: 'A1' }),
    );
    expect(missing.status).toBe(404);
    expect(missing.error).toEqual({
      code: 404,
      message: 'Requested entity was not found.',
      status: 'NOT_FOUND',
    });
    const doomed = emulator.createSpreadsheet();
    emulator.deleteSpreadsheet(doomed);
    expect((await failure(sheets.spreadsheets.get({ spreadsheetId: doomed }))).status).toBe(404);
  });

  it('answers 400 for ranges it cannot parse, unknown or deleted tabs, and ranges past the grid', async () => {
    for (const range of ['Nope!A1', 'Tab!A1:B2:C3', 'Tab!1A', "'Tab!A1"]) {
      const f = await failure(sheets.spreadsheets.values.get({ spreadsheetId, range }));
      expect(f.status).toBe(400);
      expect(f.error).toEqual({
        code: 400,
        message: `Unable to parse range: ${range}`,
        status: 'INVALID_ARGUMENT',
      });
    }
    const past = await failure(
      sheets.spreadsheets.values.get({ spreadsheetId, range: 'Tab!A1:Z5' }),
    );
    expect(past.error!.message).toBe(
      'Range (Tab!A1:Z5) exceeds grid limits. Max rows: 10, max columns: 3',
    );
    const writePast = await failure(
      sheets.spreadsheets.values.update({
        spreadsheetId,
        range: 'Tab!A11',
        valueInputOption: 'RAW',
        requestBody: { values: [[1]] },
      }),
    );
    expect(writePast.error!.message).toBe(
      'Range (Tab!A11) exceeds grid limits. Max rows: 10, max columns: 3',
    );
    // values.update never grows the grid: data running off it is refused, and nothing is written.
    const tall = await failure(
      sheets.spreadsheets.values.update({
        spreadsheetId,
        range: 'Tab!A9',
        valueInputOption: 'RAW',
        requestBody: { values: [['a'], ['b'], ['c']] },
      }),
    );
    expect(tall.error!.message).toBe(
      'Requested writing within range [Tab!A9], but tried writing to row [11]',
    );
    const wide = await failure(
      sheets.spreadsheets.values.update({
        spreadsheetId,
        range: 'Tab!A1:B1',
        valueInputOption: 'RAW',
        requestBody: { values: [['a', 'b', 'c']] },
      }),
    );
    expect(wide.error!.message).toBe(
      'Requested writing within range [Tab!A1:B1], but tried writing to column [C]',
    );
    expect(emulator.readTab(spreadsheetId, 'Tab')).toEqual([]);

    const s2 = emulator.createSpreadsheet({ tabs: ['Keep', 'Gone'] });
    emulator.deleteTab(s2, 'Gone');
    const gone = await failure(
      sheets.spreadsheets.values.clear({ spreadsheetId: s2, range: "'Gone'!A1" }),
    );
    expect(gone.error!.message).toBe("Unable to parse range: 'Gone'!A1");
  });

  it('requires valueInputOption and a body range matching the URL', async () => {
    const missing = await failure(
      sheets.spreadsheets.values.update({
        spreadsheetId,
        range: 'Tab!A1',
        requestBody: { values: [[1]] },
      }),
    );
    expect(missing.error).toEqual({
      code: 400,
      message: "'valueInputOption' is required but not specified",
      status: 'INVALID_ARGUMENT',
    });
    const mismatch = await failure(
      sheets.spreadsheets.values.update({
        spreadsheetId,
        range: 'Tab!A1',
        valueInputOption: 'RAW',
        requestBody: { range: 'Tab!A2', values: [[1]] },
      }),
    );
    expect(mismatch.error!.message).toBe(
      "Request range[Tab!A1] does not match value's range[Tab!A2]",
    );
    const tooLong = await failure(
      sheets.spreadsheets.values.update({
        spreadsheetId,
        range: 'Tab!A1',
        valueInputOption: 'RAW',
        requestBody: { values: [['x'.repeat(50_001)]] },
      }),
    );
    expect(tooLong.error!.message).toBe(
      'Your input contains more than the maximum of 50000 characters in a single cell.',
    );
  });

  it('applies a spreadsheets.batchUpdate all or nothing', async () => {
    const id = emulator.createSpreadsheet({
      tabs: [{ title: 'Tab', values: [['a'], ['b'], ['c']] }],
    });
    const f = await failure(
      sheets.spreadsheets.batchUpdate({
        spreadsheetId: id,
        requestBody: {
          requests: [
            { addSheet: { properties: { title: 'New' } } },
            {
              deleteDimension: {
                range: { sheetId: 0, dimension: 'ROWS', startIndex: 0, endIndex: 1 },
              },
            },
            {
              updateSheetProperties: {
                properties: { sheetId: 0, title: 'Renamed' },
                fields: 'title',
              },
            },
            { addSheet: { properties: { title: 'new' } } },
          ],
        },
      }),
    );
    expect(f.error).toEqual({
      code: 400,
      message:
        'Invalid requests[3].addSheet: A sheet with the name "new" already exists. Please enter another name.',
      status: 'INVALID_ARGUMENT',
    });
    expect(emulator.tabs(id).map((t) => [t.title, t.rowCount])).toEqual([['Tab', 1000]]);
    expect(emulator.readTab(id, 'Tab')).toEqual([['a'], ['b'], ['c']]);
    const none = await failure(
      sheets.spreadsheets.batchUpdate({ spreadsheetId: id, requestBody: { requests: [] } }),
    );
    expect(none.error!.message).toBe('Must specify at least one request.');
    const last = await failure(
      sheets.spreadsheets.batchUpdate({
        spreadsheetId: id,
        requestBody: { requests: [{ deleteSheet: { sheetId: 0 } }] },
      }),
    );
    expect(last.error!.message).toBe(
      "Invalid requests[0].deleteSheet: You can't remove all the sheets in a document.",
    );
  });

  it('refuses missing, revoked and unshared credentials, and writes with an API key', async () => {
    const anonymous = google.sheets({ version: 'v4', rootUrl: emulator.url, retry: false });
    const none = await failure(anonymous.spreadsheets.get({ spreadsheetId }));
    expect(none.error).toEqual({
      code: 403,
      message: 'The request is missing a valid API key.',
      status: 'PERMISSION_DENIED',
    });

    const keyed = google.sheets({
      version: 'v4',
      auth: 'an-api-key',
      rootUrl: emulator.url,
      retry: false,
    });
    expect((await keyed.spreadsheets.values.get({ spreadsheetId, range: 'Tab!A1' })).status).toBe(
      200,
    );
    const keyWrite = await failure(
      keyed.spreadsheets.values.update({
        spreadsheetId,
        range: 'Tab!A1',
        valueInputOption: 'RAW',
        requestBody: { values: [[1]] },
      }),
    );
    expect(keyWrite.status).toBe(401);
    expect(keyWrite.error!.status).toBe('UNAUTHENTICATED');
    expect(keyWrite.error!.message).toMatch(/^API keys are not supported by this API/);

    emulator.revokeToken('expired');
    const expired = await failure(
      sheetsFor(emulator, { token: 'expired' }).spreadsheets.get({ spreadsheetId }),
    );
    expect(expired.status).toBe(401);
    expect(expired.error!.message).toMatch(/^Request had invalid authentication credentials/);
    expect(expired.headers!.get('www-authenticate')).toContain('invalid_token');

    const privateId = emulator.createSpreadsheet({ sharedWith: ['owner'] });
    const stranger = await failure(sheets.spreadsheets.get({ spreadsheetId: privateId }));
    expect(stranger.error).toEqual({
      code: 403,
      message: 'The caller does not have permission',
      status: 'PERMISSION_DENIED',
    });
    expect(
      (await sheetsFor(emulator, { token: 'owner' }).spreadsheets.get({ spreadsheetId: privateId }))
        .status,
    ).toBe(200);
  });

  it('answers 501 for a batchUpdate request kind it does not emulate, changing nothing', async () => {
    const f = await failure(
      sheets.spreadsheets.batchUpdate({
        spreadsheetId,
        requestBody: {
          requests: [{ addSheet: { properties: { title: 'X' } } }, { addChart: { chart: {} } }],
        },
      }),
    );
    expect(f.status).toBe(501);
    expect(f.error!.message).toMatch(
      /^Invalid requests\[1\]\.addChart: the Sheets emulator does not implement/,
    );
    expect(emulator.tabs(spreadsheetId).map((t) => t.title)).toEqual(['Tab']);
  });
});

describe('Sheets emulator: per-minute quota', () => {
  let clock = 0;
  let emulator: SheetsEmulator;
  beforeAll(async () => {
    emulator = await startSheetsEmulator({
      quota: { writesPerUser: 3, readsPerUser: 5, windowMs: 60_000 },
      now: () => clock,
    });
  });
  afterAll(() => emulator.close());

  it('answers 429 RESOURCE_EXHAUSTED past N writes a minute per user, and recovers after the window', async () => {
    const sheets = sheetsFor(emulator);
    const spreadsheetId = emulator.createSpreadsheet();
    const write = (n: number) =>
      sheets.spreadsheets.values.update({
        spreadsheetId,
        range: `Sheet1!A${n}`,
        valueInputOption: 'RAW',
        requestBody: { values: [[n]] },
      });
    for (const n of [1, 2, 3]) {
      clock += 1000;
      await write(n);
    }
    const limited = await failure(write(4));
    expect(limited.status).toBe(429);
    expect(limited.headers!.get('retry-after')).toBeNull(); // Google sends none with quota errors
    expect(limited.error).toMatchObject({
      code: 429,
      status: 'RESOURCE_EXHAUSTED',
      message:
        "Quota exceeded for quota metric 'Write requests' and limit 'Write requests per minute per user' of service 'sheets.googleapis.com' for consumer 'project_number:123456789012'.",
      details: [
        {
          '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
          reason: 'RATE_LIMIT_EXCEEDED',
          metadata: expect.objectContaining({
            quota_limit: 'WriteRequestsPerMinutePerUser',
            quota_limit_value: '3',
          }),
        },
        expect.objectContaining({ '@type': 'type.googleapis.com/google.rpc.Help' }),
      ],
    });
    expect(emulator.readTab(spreadsheetId, 'Sheet1')).toEqual([[1], [2], [3]]);
    // Reads have their own quota, and another user has their own.
    await sheets.spreadsheets.values.get({ spreadsheetId, range: 'A1' });
    await sheetsFor(emulator, { token: 'someone-else' }).spreadsheets.values.clear({
      spreadsheetId,
      range: 'Sheet1!C1',
    });

    // A sliding window: the first write (t=1s) leaves it at t=61s, freeing one slot.
    clock = 61_000;
    await write(4);
    expect((await failure(write(5))).status).toBe(429);
    clock = 63_001;
    await write(5);
    expect(emulator.readTab(spreadsheetId, 'Sheet1')).toEqual([[1], [2], [3], [4], [5]]);
  });

  it('counts a project-wide quota across users', async () => {
    emulator.resetQuota();
    emulator.setQuota({ writesPerUser: 10, writesPerProject: 4 });
    const spreadsheetId = emulator.createSpreadsheet();
    const statuses: Array<number | undefined> = [];
    for (const token of ['u1', 'u2', 'u3', 'u4', 'u5']) {
      const call = sheetsFor(emulator, { token }).spreadsheets.values.clear({
        spreadsheetId,
        range: 'A1',
      });
      statuses.push(
        await call.then(
          (r) => r.status,
          (e: { status?: number }) => e.status,
        ),
      );
    }
    expect(statuses).toEqual([200, 200, 200, 200, 429]);
    expect(emulator.requests.at(-1)!.error).toMatch(/limit 'Write requests per minute' of service/);
  });

  it('waits out a short real window (windowMs configurable)', async () => {
    const quick = await startSheetsEmulator({ quota: { writesPerUser: 1, windowMs: 150 } });
    try {
      const sheets = sheetsFor(quick);
      const spreadsheetId = quick.createSpreadsheet();
      const clear = () => sheets.spreadsheets.values.clear({ spreadsheetId, range: 'A1' });
      await clear();
      expect((await failure(clear())).status).toBe(429);
      await new Promise((r) => setTimeout(r, 200));
      expect((await clear()).status).toBe(200);
    } finally {
      await quick.close();
    }
  });
});

describe('Sheets emulator: the 10,000,000-cell limit', () => {
  let emulator: SheetsEmulator;
  let sheets: Sheets;
  beforeAll(async () => {
    emulator = await startSheetsEmulator({ validate: true });
    sheets = sheetsFor(emulator);
  });
  afterAll(() => emulator.close());
  const LIMIT =
    'This action would increase the number of cells in the workbook above the limit of 10000000 cells.';

  it('refuses grid growth past the limit, from appends, new rows and new tabs, changing nothing', async () => {
    // 9,990,000 cells of grid; only a few hold data, so the emulator stays small.
    const spreadsheetId = emulator.createSpreadsheet({
      tabs: [{ title: 'Big', rowCount: 99_900, columnCount: 100, values: [['email'], ['a@x.io']] }],
    });
    expect(emulator.cellCount(spreadsheetId)).toBe(9_990_000);

    // 100 rows × 100 columns more fits exactly; one more row does not.
    await sheets.spreadsheets.batchUpdate({
      spreadsheetId,
      requestBody: {
        requests: [{ appendDimension: { sheetId: 0, dimension: 'ROWS', length: 100 } }],
      },
    });
    expect(emulator.cellCount(spreadsheetId)).toBe(10_000_000);
    const grow = await failure(
      sheets.spreadsheets.batchUpdate({
        spreadsheetId,
        requestBody: {
          requests: [{ appendDimension: { sheetId: 0, dimension: 'ROWS', length: 1 } }],
        },
      }),
    );
    expect(grow.error).toEqual({
      code: 400,
      message: `Invalid requests[0].appendDimension: ${LIMIT}`,
      status: 'INVALID_ARGUMENT',
    });
    const tab = await failure(
      sheets.spreadsheets.batchUpdate({
        spreadsheetId,
        requestBody: { requests: [{ addSheet: { properties: { title: 'More' } } }] },
      }),
    );
    expect(tab.error!.message).toBe(`Invalid requests[0].addSheet: ${LIMIT}`);

    // Appending rows into the grid's empty rows needs no growth; past its end it does.
    await sheets.spreadsheets.values.append({
      spreadsheetId,
      range: 'Big!A1',
      valueInputOption: 'RAW',
      requestBody: { values: [['b@x.io']] },
    });
    const append = await failure(
      sheets.spreadsheets.values.append({
        spreadsheetId,
        range: 'Big!A1',
        valueInputOption: 'RAW',
        insertDataOption: 'INSERT_ROWS',
        requestBody: { values: [['c@x.io']] },
      }),
    );
    expect(append.error).toEqual({ code: 400, message: LIMIT, status: 'INVALID_ARGUMENT' });
    expect(emulator.readTab(spreadsheetId, 'Big')).toEqual([['email'], ['a@x.io'], ['b@x.io']]);
    expect(emulator.cellCount(spreadsheetId)).toBe(10_000_000);
    expect(emulator.violations).toEqual([]);
  });

  it('applies rowCount before columnCount in one resize, as Sheets does', async () => {
    const spreadsheetId = emulator.createSpreadsheet({
      tabs: [{ title: 'T', rowCount: 1000, columnCount: 5000 }],
    });
    // 1,000 × 5,000 → 4,000 × 2,000 (8M cells) is refused: 4,000 × 5,000 would pass the limit first.
    const resize = (rowCount: number, columnCount: number, fields: string) =>
      sheets.spreadsheets.batchUpdate({
        spreadsheetId,
        requestBody: {
          requests: [
            {
              updateSheetProperties: {
                properties: { sheetId: 0, gridProperties: { rowCount, columnCount } },
                fields,
              },
            },
          ],
        },
      });
    const f = await failure(resize(4000, 2000, 'gridProperties(rowCount,columnCount)'));
    expect(f.error!.message).toBe(`Invalid requests[0].updateSheetProperties: ${LIMIT}`);
    await resize(1000, 2000, 'gridProperties.columnCount');
    await resize(4000, 2000, 'gridProperties.rowCount');
    expect(emulator.cellCount(spreadsheetId)).toBe(8_000_000);
  });
});

describe('Sheets emulator: injected faults', () => {
  let emulator: SheetsEmulator;
  let sheets: Sheets;
  let spreadsheetId: string;
  beforeAll(async () => {
    emulator = await startSheetsEmulator();
    sheets = sheetsFor(emulator);
  });
  afterAll(() => emulator.close());
  afterEach(() => emulator.clearFaults());
  const append = (value: string) =>
    sheets.spreadsheets.values.append({
      spreadsheetId,
      range: 'Sheet1!A1',
      valueInputOption: 'RAW',
      requestBody: { values: [[value]] },
    });

  it('answers 500 and 503 with Google JSON, 502 with Google HTML, for `count` requests', async () => {
    spreadsheetId = emulator.createSpreadsheet();
    // With retry: false even a GET comes back failed at once (googleapis would retry it).
    emulator.inject({ kind: 'status', status: 503, count: 1 });
    expect((await failure(sheets.spreadsheets.get({ spreadsheetId }))).status).toBe(503);
    emulator.inject({ kind: 'status', status: 500, count: 1 });
    emulator.inject({ kind: 'status', status: 503, count: 1 });
    emulator.inject({ kind: 'status', status: 502, count: 1 });
    const e500 = await failure(append('a'));
    expect(e500.error).toEqual({
      code: 500,
      message: 'Internal error encountered.',
      status: 'INTERNAL',
    });
    const e503 = await failure(append('a'));
    expect(e503.error).toEqual({
      code: 503,
      message: 'The service is currently unavailable.',
      status: 'UNAVAILABLE',
    });
    const e502 = await failure(append('a'));
    expect(e502.status).toBe(502);
    expect(String(e502.body)).toContain('<title>Error 502 (Server Error)!!1</title>');
    await append('ok');
    expect(emulator.readTab(spreadsheetId, 'Sheet1')).toEqual([['ok']]);
    expect(emulator.requests.slice(-4).map((r) => [r.status, r.fault])).toEqual([
      [500, 'status'],
      [503, 'status'],
      [502, 'status'],
      [200, undefined],
    ]);
  });

  it('answers an injected 429 with Retry-After when given', async () => {
    spreadsheetId = emulator.createSpreadsheet();
    emulator.inject({ kind: 'status', status: 429, retryAfterSeconds: 7, count: 1 });
    const f = await failure(append('a'));
    expect(f.status).toBe(429);
    expect(f.headers!.get('retry-after')).toBe('7');
    expect(f.error!.status).toBe('RESOURCE_EXHAUSTED');
    expect(emulator.readTab(spreadsheetId, 'Sheet1')).toEqual([]);
  });

  it('drops the connection before applying (nothing written) or after (written, answer lost)', async () => {
    spreadsheetId = emulator.createSpreadsheet();
    emulator.inject({ kind: 'drop', count: 1 });
    const dropped = await failure(append('a'));
    expect(dropped.status).toBeUndefined();
    expect(dropped.code).toBe('ECONNRESET');
    expect(emulator.readTab(spreadsheetId, 'Sheet1')).toEqual([]);

    emulator.inject({ kind: 'drop-after-apply', count: 1 });
    const lost = await failure(append('b'));
    expect(lost.status).toBeUndefined();
    expect(emulator.readTab(spreadsheetId, 'Sheet1')).toEqual([['b']]);
    expect(emulator.requests.slice(-2).map((r) => [r.fault, r.status])).toEqual([
      ['drop', 0],
      ['drop-after-apply', 200],
    ]);
  });

  it('delays answers by the set latency, and clearFaults resets it', async () => {
    spreadsheetId = emulator.createSpreadsheet();
    emulator.setLatency(300);
    let t = performance.now();
    await sheets.spreadsheets.get({ spreadsheetId });
    expect(performance.now() - t).toBeGreaterThanOrEqual(295);
    emulator.clearFaults();
    t = performance.now();
    await sheets.spreadsheets.get({ spreadsheetId });
    expect(performance.now() - t).toBeLessThan(250);
  });
});

describe('Sheets emulator: what googleapis does by default', () => {
  let emulator: SheetsEmulator;
  let sheets: Sheets;
  beforeAll(async () => {
    emulator = await startSheetsEmulator();
    sheets = sheetsFor(emulator, { retry: true });
  });
  afterAll(() => emulator.close());
  afterEach(() => emulator.clearFaults());

  it('retries a PUT on 5xx and 429 by itself (Retry-After ignored), but never a POST', async () => {
    const spreadsheetId = emulator.createSpreadsheet();
    const before = emulator.requests.length;
    emulator.inject({ kind: 'status', status: 503, count: 1 });
    emulator.inject({ kind: 'status', status: 429, retryAfterSeconds: 30, count: 1 });
    const t = performance.now();
    await sheets.spreadsheets.values.update({
      spreadsheetId,
      range: 'A1',
      valueInputOption: 'RAW',
      requestBody: { values: [['put']] },
    });
    // Three requests, ~100 ms + ~500 ms apart: not the 30 s the 429 asked for.
    expect(emulator.requests.slice(before).map((r) => r.status)).toEqual([503, 429, 200]);
    expect(performance.now() - t).toBeLessThan(5_000);

    emulator.inject({ kind: 'status', status: 503, count: 1 });
    const post = await failure(
      sheets.spreadsheets.values.append({
        spreadsheetId,
        range: 'A1',
        valueInputOption: 'RAW',
        requestBody: { values: [['post']] },
      }),
    );
    expect(post.status).toBe(503);
    expect(emulator.requests.slice(before + 3).map((r) => r.status)).toEqual([503]);
  });

  it('resends a PUT whose connection dropped: after drop-after-apply it is applied twice', async () => {
    const spreadsheetId = emulator.createSpreadsheet();
    const before = emulator.requests.length;
    emulator.inject({ kind: 'drop-after-apply', count: 1 });
    await sheets.spreadsheets.values.update(
      { spreadsheetId, range: 'A1', valueInputOption: 'RAW', requestBody: { values: [['x']] } },
      { retryConfig: { retryDelay: 1 } },
    );
    expect(emulator.requests.slice(before).map((r) => [r.fault, r.status])).toEqual([
      ['drop-after-apply', 200],
      [undefined, 200],
    ]);
    // Harmless for an update (idempotent); an append is a POST, which is never resent.
    expect(emulator.readTab(spreadsheetId, 'Sheet1')).toEqual([['x']]);
  });
});

describe('Sheets emulator: payloads and the discovery document', () => {
  it('records body sizes, accepts large bodies, and can refuse past a set size', async () => {
    const emulator = await startSheetsEmulator({ maxPayloadBytes: 2_000_000 });
    try {
      const sheets = sheetsFor(emulator);
      const spreadsheetId = emulator.createSpreadsheet({
        tabs: [{ title: 'T', rowCount: 40_000, columnCount: 2 }],
      });
      const rows = (n: number) =>
        Array.from({ length: n }, (_, i) => [`member-${i}@example.com`, 'x'.repeat(30)]);
      await sheets.spreadsheets.values.update({
        spreadsheetId,
        range: 'T!A1',
        valueInputOption: 'RAW',
        requestBody: { values: rows(20_000) },
      });
      const big = await failure(
        sheets.spreadsheets.values.update({
          spreadsheetId,
          range: 'T!A1',
          valueInputOption: 'RAW',
          requestBody: { values: rows(40_000) },
        }),
      );
      expect(big.error!.message).toBe('Request payload size exceeds the limit: 2000000 bytes.');
      const sizes = emulator.requests.map((r) => r.bodyBytes);
      expect(sizes[0]).toBeGreaterThan(1_000_000);
      expect(sizes[0]).toBeLessThan(2_000_000);
      expect(sizes[1]).toBeGreaterThan(2_000_000);
      expect(emulator.readTab(spreadsheetId, 'T')).toHaveLength(20_000);
    } finally {
      await emulator.close();
    }
  });

  it('records a body the discovery schema refuses, and rejects it like Google in reject mode', async () => {
    const emulator = await startSheetsEmulator({ validate: 'reject' });
    try {
      const sheets = sheetsFor(emulator);
      const spreadsheetId = emulator.createSpreadsheet();
      // A typo'd field the TypeScript types would catch in a literal.
      const properties = { title: 'X', colour: 'red' };
      const f = await failure(
        sheets.spreadsheets.batchUpdate({
          spreadsheetId,
          requestBody: { requests: [{ addSheet: { properties } }] },
        }),
      );
      expect(f.status).toBe(400);
      expect(f.error!.message).toMatch(/^Invalid JSON payload received\. .*unknown field "colour"/);
      expect(emulator.violations).toEqual([
        {
          operation: 'sheets.spreadsheets.batchUpdate',
          request: `POST /v4/spreadsheets/${spreadsheetId}:batchUpdate`,
          where: 'body',
          message:
            'BatchUpdateSpreadsheetRequest.requests.0.addSheet.properties: unknown field "colour"',
        },
      ]);
      expect(emulator.tabs(spreadsheetId)).toHaveLength(1);
    } finally {
      await emulator.close();
    }
  });
});

describe('DiscoverySpec: the discovery-document checks themselves', () => {
  const spec = DiscoverySpec.load();

  it('maps verb and path to the discovery method, decoding path parameters', () => {
    expect(
      spec.match('POST', '/v4/spreadsheets/abc/values/%27My%20tab%27%21A1%3AB2:append'),
    ).toMatchObject({
      method: { id: 'sheets.spreadsheets.values.append' },
      params: { spreadsheetId: 'abc', range: "'My tab'!A1:B2" },
    });
    expect(spec.match('GET', '/v4/spreadsheets/abc/values:batchGet')?.method.id).toBe(
      'sheets.spreadsheets.values.batchGet',
    );
    expect(spec.match('GET', '/v4/spreadsheets/abc/values/A1')?.method.id).toBe(
      'sheets.spreadsheets.values.get',
    );
    expect(spec.match('DELETE', '/v4/spreadsheets/abc')).toBeUndefined();
  });

  it('reports unknown routes, unknown or ill-typed parameters, and bodies or responses off the schema', () => {
    expect(spec.checkRequest('DELETE', '/v4/spreadsheets/abc', undefined).violations).toEqual([
      {
        request: 'DELETE /v4/spreadsheets/abc',
        where: 'route',
        message: 'no discovery method has this verb and path',
      },
    ]);
    const { violations } = spec.checkRequest(
      'PUT',
      '/v4/spreadsheets/abc/values/A1?valueInputOption=RAWISH&includeValuesInResponse=yes&colour=red',
      { values: [[1]], majorDimension: 'DIAGONAL' },
    );
    expect(violations.map((v) => `${v.where}: ${v.message}`)).toEqual([
      'query: valueInputOption="RAWISH": not one of INPUT_VALUE_OPTION_UNSPECIFIED, RAW, USER_ENTERED',
      'query: includeValuesInResponse="yes": not a boolean',
      'query: unknown query parameter colour',
      'body: ValueRange.majorDimension: must be equal to one of the allowed values',
    ]);
    expect(
      spec.checkResponse('sheets.spreadsheets.values.get', 'GET /x', { range: 5, values: [['a']] }),
    ).toEqual([
      {
        operation: 'sheets.spreadsheets.values.get',
        request: 'GET /x',
        where: 'response',
        message: 'ValueRange.range: must be string',
      },
    ]);
    // One batchUpdate request sets exactly one kind.
    expect(
      spec.validate('BatchUpdateSpreadsheetRequest', {
        requests: [{ addSheet: {}, deleteSheet: { sheetId: 1 } }],
      }),
    ).toEqual(['BatchUpdateSpreadsheetRequest.requests.0: must NOT have more than 1 properties']);
  });
});

describe('Sheets emulator: cost of small requests on a large tab', () => {
  it('serves small writes and appends on a 1,000,000-cell tab about as fast as on an empty one', async () => {
    const emulator = await startSheetsEmulator({
      quota: { writesPerUser: 1000, writesPerProject: 1000 },
    });
    try {
      const sheets = sheetsFor(emulator);
      const values = Array.from({ length: 200_000 }, (_, i) => [`m${i}@x.io`, i, 'a', 'b', 'c']);
      const spreadsheetId = emulator.createSpreadsheet({
        tabs: [
          { title: 'Big', rowCount: 200_000, columnCount: 5, values },
          { title: 'Tiny', rowCount: 10, columnCount: 5 },
        ],
      });
      const smallRequests = async (tab: string): Promise<number> => {
        const t = performance.now();
        for (let i = 0; i < 20; i++) {
          await sheets.spreadsheets.values.update({
            spreadsheetId,
            range: `${tab}!B${(i % 5) + 2}`,
            valueInputOption: 'RAW',
            requestBody: { values: [[-i]] },
          });
          await sheets.spreadsheets.values.append({
            spreadsheetId,
            range: `${tab}!A:E`,
            valueInputOption: 'RAW',
            requestBody: { values: [[`new${i}@x.io`]] },
          });
        }
        return performance.now() - t;
      };
      const tiny = await smallRequests('Tiny');
      const big = await smallRequests('Big');
      // Coarse on a shared machine: HTTP round trips dominate both; copying or scanning every
      // cell per request (40 × 1M cells) would not fit in the slack.
      expect(big).toBeLessThan(tiny * 3 + 1_000);
      expect(emulator.tabs(spreadsheetId)[0]!.rowCount).toBe(200_020);
      const tail = await sheets.spreadsheets.values.get({
        spreadsheetId,
        range: 'Big!A200020:B200020',
      });
      expect(tail.data.values).toEqual([['new19@x.io']]);
    } finally {
      await emulator.close();
    }
  });
});
