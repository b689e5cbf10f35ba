import { describe, expect, it } from 'vitest';
import { testConfig } from '../../src/config.ts';
import { dateReader } from '../../src/imports/dates.ts';
import {
  StreamMapping,
  compileMapping,
  recordKeyOf,
  unknownFields,
  type StreamMappingInput,
} from '../../src/imports/mapping.ts';

const config = testConfig({ defaultPhoneCountry: 'GB' });
const receivedAt = new Date('2024-01-01T00:00:00Z');
const origin = { sourceId: 's1', stream: 'orders', key: '1' };
const compile = (input: StreamMappingInput) =>
  compileMapping(StreamMapping.parse(input), { traitSource: 'erp', config, receivedAt });

const retail: StreamMappingInput = {
  identities: { customer_id: 'CustomerID' },
  traits: { country: 'Country' },
  event: {
    name: 'Order Line',
    timestamp: { field: 'InvoiceDate', format: 'YYYY-MM-DD HH:mm:ss', timezone: 'Europe/London' },
    properties: { invoice: 'InvoiceNo', quantity: { field: 'Quantity', type: 'integer' } },
    revenue: { multiply: ['Quantity', 'UnitPrice'] },
  },
};
const line = {
  InvoiceNo: '536365',
  StockCode: '85123A',
  Quantity: '6',
  InvoiceDate: '2011-06-01 08:26:00',
  UnitPrice: '2.55',
  CustomerID: '17850',
  Country: 'United Kingdom',
};

describe('a stream mapping', () => {
  it('turns an Online Retail line into an identify and a purchase event', () => {
    const result = compile(retail).map(line, origin);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    const [identify, track] = result.messages;
    expect(identify).toMatchObject({
      type: 'identify',
      source: 'erp',
      identities: [{ type: 'customer_id', value: '17850' }],
      traits: { country: 'United Kingdom' },
    });
    expect(track).toMatchObject({
      type: 'track',
      name: 'Order Line',
      properties: { invoice: '536365', quantity: 6 },
      // 6 × 2.55 without float noise.
      revenue: 15.3,
      // British Summer Time: 08:26 in London is 07:26 UTC.
      timestamp: Date.parse('2011-06-01T07:26:00Z'),
    });
  });

  it('gives a row the same ids when read again: its event by key, its identify by content', () => {
    const m = compile(retail);
    const a = m.map(line, origin);
    const b = m.map(line, origin);
    const changed = m.map({ ...line, Country: 'France' }, { ...origin, key: '1' });
    const ids = (r: typeof a) => (r.ok ? r.messages.map((x) => x.messageId) : []);
    expect(ids(a)).toEqual(ids(b));
    expect(ids(changed)[1]).toBe(ids(a)[1]);
    expect(ids(changed)[0]).not.toBe(ids(a)[0]);
    // Another line of the same customer: its own event, the customer's one identify.
    const other = m.map({ ...line, StockCode: '71053' }, { ...origin, key: '2' });
    expect(ids(other)[1]).not.toBe(ids(a)[1]);
    expect(ids(other)[0]).toBe(ids(a)[0]);
  });

  it.each([
    [{ CustomerID: '' }, 'no identity: CustomerID is empty', 'CustomerID'],
    [
      { InvoiceDate: '12/1/2010 8:26' },
      'InvoiceDate: "12/1/2010 8:26" is not a date in the format YYYY-MM-DD HH:mm:ss',
      'InvoiceDate',
    ],
    [{ InvoiceDate: '2011-02-30 10:00:00' }, /InvoiceDate: .* is not a date/, 'InvoiceDate'],
    [{ Quantity: 'six' }, 'Quantity: "six" is not a number', 'Quantity'],
    [{ UnitPrice: '' }, 'UnitPrice: empty, the revenue needs a number', 'UnitPrice'],
    [{ Quantity: '2.5' }, 'Quantity: "2.5" is not a whole number', 'Quantity'],
  ])('rejects %o with a reason naming the field', (change, reason, field) => {
    const result = compile(retail).map({ ...line, ...change }, origin);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.reason).toEqual(
      typeof reason === 'string' ? reason : expect.stringMatching(reason),
    );
    expect(result.field).toBe(field);
  });

  it('normalises identifiers and keeps a row whose other identity is usable', () => {
    const m = compile({
      identities: { email: 'Email', phone: 'Phone', user_id: 'Id' },
      traits: { name: 'Name', vip: { field: 'Vip', type: 'boolean' } },
    });
    const ok = m.map(
      { Email: ' Jane.Doe@Example.COM ', Phone: '07911 123456', Id: 42, Name: 'Jane', Vip: 'yes' },
      origin,
    );
    expect(ok.ok && ok.messages[0]).toMatchObject({
      type: 'identify',
      userId: '42',
      identities: [
        { type: 'email', value: 'jane.doe@example.com' },
        { type: 'phone', value: '+447911123456' },
        { type: 'user_id', value: '42' },
      ],
      traits: { name: 'Jane', vip: true },
    });
    const partial = m.map({ Email: 'not-an-email', Phone: 'n/a', Id: 7 }, origin);
    expect(partial.ok && partial.messages[0]!.identities).toEqual([
      { type: 'user_id', value: '7' },
    ]);
    const none = m.map({ Email: 'not-an-email', Phone: '', Id: null }, origin);
    expect(none).toEqual({
      ok: false,
      reason: 'no identity: Email is not a valid email address; Phone is empty; Id is empty',
      field: 'Email',
    });
  });

  it('takes the event name from a field, properties as a list, nested fields by path', () => {
    const m = compile({
      identities: { anonymous_id: 'client_id' },
      event: {
        name: { field: 'event_name' },
        timestamp: 'ts',
        properties: ['page', 'geo.country'],
      },
    });
    const r = m.map(
      {
        client_id: 'c1',
        event_name: 'page_view',
        ts: '2021-01-02T03:04:05Z',
        page: '/',
        geo: { country: 'FR' },
      },
      origin,
    );
    expect(r.ok && r.messages).toEqual([
      expect.objectContaining({
        type: 'track',
        name: 'page_view',
        anonymousId: 'c1',
        properties: { page: '/', 'geo.country': 'FR' },
        timestamp: Date.parse('2021-01-02T03:04:05Z'),
        revenue: null,
      }),
    ]);
  });

  it('gives a configured purchase event its revenue property, as the tracking API does', () => {
    const m = compile({
      identities: { email: 'email' },
      event: { name: 'Order Completed', properties: ['revenue'] },
    });
    const r = m.map({ email: 'a@b.co', revenue: '12.5' }, origin);
    expect(r.ok && r.messages[0]!.revenue).toBe(12.5);
  });

  it('validates the mapping itself, naming each field', () => {
    const parsed = StreamMapping.safeParse({
      identities: { Email: 'email' },
      traits: { x: { field: 'd', type: 'date', timezone: 'Mars/Olympus' } },
      event: { name: 'e', timestamp: { field: 't', format: 'HH:mm' } },
    });
    expect(parsed.success).toBe(false);
    const paths = parsed.error!.issues.map((i) => i.path.join('.'));
    expect(paths).toEqual(
      expect.arrayContaining(['identities.Email', 'traits.x.timezone', 'event.timestamp.format']),
    );
    expect(StreamMapping.safeParse({ identities: {} }).error!.issues[0]).toMatchObject({
      path: ['identities'],
    });
  });

  it('names mapped fields the stream does not have', () => {
    const mapping = StreamMapping.parse(retail);
    const stream = {
      name: 'lines',
      primaryKey: [],
      modes: ['full_refresh' as const],
      fields: ['InvoiceNo', 'Quantity', 'InvoiceDate', 'UnitPrice', 'CustomerID'].map((name) => ({
        name,
        type: 'string' as const,
      })),
    };
    expect(unknownFields(mapping, stream)).toEqual([
      { field: 'traits.country', message: '"Country" is not a field of stream lines' },
    ]);
  });
});

describe('record keys', () => {
  it('come from the primary key, else the connector, else the content', () => {
    const digest = () => 'abc';
    expect(recordKeyOf({ primaryKey: ['a', 'b'] }, { a: 1, b: 'x' }, 'k', digest)).toBe('[1,"x"]');
    expect(recordKeyOf({ primaryKey: ['a'] }, { a: '' }, 'line-7', digest)).toBe('line-7');
    expect(recordKeyOf({ primaryKey: [] }, { a: 1 }, undefined, digest)).toBe('#abc');
  });
});

describe('date formats', () => {
  it('reads patterns, ISO 8601 with or without offsets, and epoch numbers', () => {
    expect(dateReader('D/M/YYYY H:mm')('1/12/2010 8:26')).toEqual(new Date('2010-12-01T08:26:00Z'));
    expect(dateReader()('2011-06-01T09:30:00+02:00')).toEqual(new Date('2011-06-01T07:30:00Z'));
    expect(dateReader(undefined, 'America/New_York')('2011-01-05 10:00')).toEqual(
      new Date('2011-01-05T15:00:00Z'),
    );
    expect(dateReader('unix')('1300000000')).toEqual(new Date(1_300_000_000_000));
    expect(dateReader()('2011-13-01')).toBeNull();
    expect(dateReader('YYYY-MM-DD')(20110101)).toBeNull();
  });
});
