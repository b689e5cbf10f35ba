/**
 * Every destination plugin in the repository through the SDK's conformance kit, each against
 * what stands in for its service: a folder for the file plugin, a local receiver with fault
 * switches for the webhook.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import filePlugin from '../../plugins/file/index.ts';
import sheetsPlugin from '../../plugins/google-sheets/index.ts';
import mailchimpPlugin from '../../plugins/mailchimp/index.ts';
import webhookPlugin from '../../plugins/webhook/index.ts';
import { destinationConformance, type FaultInjector } from '../../src/sdk/index.ts';
import { startMailchimpEmulator, type MailchimpEmulator } from '../emulators/mailchimp/index.ts';
import { startSheetsEmulator, type SheetsEmulator } from '../emulators/sheets/index.ts';

const row = (n: number) => ({ email: `p${n}@example.com`, plan: n % 2 ? 'pro' : 'team', spent: n });
const byEmail = (fields: Record<string, unknown>) => String(fields.email);

describe('the file plugin', () => {
  const dir = mkdtempSync(join(tmpdir(), 'audiencehub-conformance-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('passes the conformance kit', async () => {
    const report = await destinationConformance({
      plugin: filePlugin,
      config: filePlugin.config.parse({ directory: dir, format: 'csv' }),
      row,
      read: async () => {
        // The CSV as a reader would see it: a header, then one line per member.
        const [header, ...lines] = readFileSync(join(dir, 'conformance.csv'), 'utf8')
          .split('\r\n')
          .filter(Boolean);
        const column = header!.split(',').indexOf('email');
        return lines.map((line) => line.split(',')[column]!);
      },
      keyOf: byEmail,
    });
    expect(report.filter((c) => !c.ok)).toEqual([]);
  });
});

/** A webhook receiver that applies batches and can fail the way real servers do. */
function receiver() {
  const held = new Map<string, Record<string, unknown>>();
  const faults: Parameters<FaultInjector['inject']>[0][] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const fault = faults[0];
      if (fault && fault.count !== undefined && --fault.count <= 0) faults.shift();
      if (fault?.kind === 'drop') return req.socket.destroy();
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
        rows?: { id: string; action: string; fields: Record<string, unknown> }[];
      };
      if (fault?.kind === 'status') {
        res.writeHead(fault.status, {
          'content-type': 'application/json',
          ...(fault.retryAfterSeconds ? { 'retry-after': String(fault.retryAfterSeconds) } : {}),
        });
        return res.end(JSON.stringify({ error: 'try later' }));
      }
      const rejected = (body.rows ?? [])
        .filter((r) => String(r.fields.email).startsWith('bad@'))
        .map((r) => ({ id: r.id, status: 'rejected', reason: 'invalid email' }));
      for (const r of body.rows ?? []) {
        if (String(r.fields.email).startsWith('bad@')) continue;
        if (r.action === 'remove') held.delete(String(r.fields.email));
        else held.set(String(r.fields.email), r.fields);
      }
      if (fault?.kind === 'drop-after-apply') return req.socket.destroy();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ results: rejected }));
    });
  });
  const injector: FaultInjector = {
    inject: (fault) => void faults.push({ ...fault }),
    clearFaults: () => void faults.splice(0),
  };
  return { server, held, injector };
}

describe('the webhook plugin', () => {
  const r = receiver();
  let url: string;
  beforeAll(async () => {
    await new Promise<void>((resolve) => r.server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(r.server.address() as AddressInfo).port}/hooks/audiencehub`;
  });
  afterAll(() => new Promise<void>((resolve) => r.server.close(() => resolve())));

  it('passes the conformance kit', async () => {
    const report = await destinationConformance({
      plugin: webhookPlugin,
      config: webhookPlugin.config.parse({ url, signingKey: 'whsec-0123456789abcdef' }),
      emulator: r.injector,
      row,
      rejectable: { email: 'bad@example.com', plan: 'pro', spent: 0 },
      read: async () => [...r.held.keys()],
      keyOf: byEmail,
    });
    expect(report.filter((c) => !c.ok)).toEqual([]);
    expect(report.every((c) => !c.detail.startsWith('skipped'))).toBe(true);
  });
});

describe('the Mailchimp plugin', () => {
  let mailchimp: MailchimpEmulator;
  beforeAll(async () => {
    mailchimp = await startMailchimpEmulator({ validate: true });
  });
  afterAll(() => mailchimp.close());

  it('passes the conformance kit against the Mailchimp emulator', async () => {
    const list = mailchimp.createList({ name: 'Customers' });
    const report = await destinationConformance({
      plugin: mailchimpPlugin,
      config: mailchimpPlugin.config.parse({
        apiKey: mailchimp.apiKey,
        listId: list.id,
        baseUrl: mailchimp.url,
      }),
      emulator: mailchimp,
      row: (n) => ({ EMAIL: `p${n}@example.com` }),
      rejectable: { EMAIL: 'not-an-email' },
      // Segment membership at Mailchimp is the tag: who carries it now.
      read: async () => mailchimp.segmentMembers(list.id, 'conformance'),
      keyOf: (fields) => String(fields.EMAIL),
    });
    expect(report.filter((c) => !c.ok)).toEqual([]);
    expect(mailchimp.violations).toEqual([]);
  });
});

describe('the Google Sheets plugin', () => {
  let sheets: SheetsEmulator;
  beforeAll(async () => {
    sheets = await startSheetsEmulator({ validate: true });
  });
  afterAll(() => sheets.close());

  it('passes the conformance kit against the Sheets emulator', async () => {
    const spreadsheetId = sheets.createSpreadsheet({ tabs: ['Sheet1'] });
    const report = await destinationConformance({
      plugin: sheetsPlugin,
      config: sheetsPlugin.config.parse({
        spreadsheetId,
        accessToken: 'conformance-token',
        rootUrl: sheets.url,
        quotaWaitMs: 50,
      }),
      emulator: sheets,
      row,
      // The tab holds one row per member, keyed by profile id in column A under a header.
      read: async () =>
        sheets
          .readTab(spreadsheetId, 'conformance')
          .slice(1)
          .map((cells) => String(cells[0])),
      keyOf: (_fields, id) => id,
    });
    expect(report.filter((c) => !c.ok)).toEqual([]);
    expect(sheets.violations).toEqual([]);
  });
});
