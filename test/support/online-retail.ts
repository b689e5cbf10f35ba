/**
 * UCI Online Retail (../shared/datasets/online_retail/online_retail.csv.gz: 541,909 invoice
 * lines of a UK gift wholesaler, 2010-12-01..2011-12-09) as hub messages, a loader, and an
 * oracle computed from the raw CSV rows alone — no SQL, no hub code — for checking what the
 * hub computes from the same data.
 *
 * Reading of the data, shared by the messages and the oracle:
 * - a row without CustomerID is skipped (135,080 rows: no one to attribute them to);
 * - an invoice is the set of rows with one InvoiceNo; its time is the earliest InvoiceDate
 *   of its rows, read as UTC (43 invoices have rows a minute apart);
 * - an invoice whose number starts with `C` is a cancellation. It becomes an
 *   `Order Refunded` track event (not a purchase event: it has no revenue and counts
 *   nowhere in RFM), carrying `total` as a positive amount. Every other invoice with a
 *   CustomerID is a purchase: one `Order Completed` event;
 * - an invoice's revenue is Σ Quantity × UnitPrice of its rows, computed exactly (prices
 *   have at most 3 decimals) and rounded to cents, half away from zero.
 */
import { createReadStream } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { testConfig, type HubConfig } from '../../src/config.ts';
import type { Db } from '../../src/db/index.ts';
import { ingestMessages } from '../../src/events/ingest.ts';
import { parseMessage, type PreparedMessage } from '../../src/events/message.ts';

import { datasetFile } from './datasets.ts';

export { datasetFile };

export const ONLINE_RETAIL_CSV = datasetFile('online_retail/online_retail.csv.gz');

/** The source name the dataset is ingested under. */
export const ONLINE_RETAIL_SOURCE = 'online-retail';

/** One CSV row, with its numbers parsed exactly. */
export interface RetailLine {
  invoiceNo: string;
  stockCode: string;
  quantity: number;
  /** InvoiceDate as written (`YYYY-MM-DD HH:MM:SS`). */
  invoiceDate: string;
  /** InvoiceDate read as UTC, in epoch milliseconds. */
  at: number;
  /** UnitPrice in thousandths (2.55 → 2550), exact. */
  priceMilli: number;
  customerId: string | null;
  country: string;
}

const DAY_MS = 86_400_000;

// ---------------------------------------------------------------------------------------------
// CSV

/**
 * Parse RFC 4180 CSV from a stream of text chunks: fields separated by commas, rows by LF or
 * CRLF, a field in double quotes may hold commas, line breaks and doubled quotes (`""`).
 */
export async function* parseCsv(chunks: AsyncIterable<string>): AsyncGenerator<string[]> {
  let row: string[] = [];
  let field = '';
  let quoted = false;
  // A quote ended the previous chunk inside a quoted field: closing quote or first of `""`.
  let quoteAtEnd = false;
  let rowStarted = false;
  for await (const chunk of chunks) {
    const out: string[][] = [];
    let i = 0;
    if (quoteAtEnd) {
      quoteAtEnd = false;
      if (chunk[0] === '"') {
        field += '"';
        i = 1;
      } else quoted = false;
    }
    while (i < chunk.length) {
      if (quoted) {
        const q = chunk.indexOf('"', i);
        if (q < 0) {
          field += chunk.slice(i);
          i = chunk.length;
        } else if (q + 1 === chunk.length) {
          field += chunk.slice(i, q);
          quoteAtEnd = true;
          i = chunk.length;
        } else if (chunk[q + 1] === '"') {
          field += chunk.slice(i, q + 1);
          i = q + 2;
        } else {
          field += chunk.slice(i, q);
          quoted = false;
          i = q + 1;
        }
        continue;
      }
      const start = i;
      let c = chunk.charCodeAt(i);
      // 44 ',', 10 LF, 13 CR, 34 '"'
      while (c !== 44 && c !== 10 && c !== 13 && c !== 34 && i < chunk.length) {
        c = chunk.charCodeAt(++i);
      }
      if (i > start) {
        field += chunk.slice(start, i);
        rowStarted = true;
      }
      if (i >= chunk.length) break;
      i++;
      if (c === 44) {
        row.push(field);
        field = '';
        rowStarted = true;
      } else if (c === 34) {
        quoted = true;
        rowStarted = true;
      } else if (c === 10) {
        if (rowStarted) {
          row.push(field);
          out.push(row);
        }
        row = [];
        field = '';
        rowStarted = false;
      }
      // CR is dropped: it only ever precedes LF in a row ending.
    }
    yield* out;
  }
  if (quoted && !quoteAtEnd) throw new Error('CSV ends inside a quoted field');
  if (rowStarted) {
    row.push(field);
    yield row;
  }
}

const DATE = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})$/;

function parseUtc(text: string): number {
  const m = DATE.exec(text);
  if (!m) throw new Error(`InvoiceDate "${text}" is not YYYY-MM-DD HH:MM:SS`);
  return Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!);
}

/** A decimal with at most 3 decimals as an integer count of thousandths. */
function parseMilli(text: string): number {
  const m = /^(-?)(\d+)(?:\.(\d{1,3}))?$/.exec(text);
  if (!m) throw new Error(`UnitPrice "${text}" is not a decimal with at most 3 decimals`);
  const value = Number(m[2]) * 1000 + Number((m[3] ?? '').padEnd(3, '0'));
  return m[1] ? -value : value;
}

let cached: Promise<RetailLine[]> | undefined;

/** Every row of the CSV, parsed once per test process and cached. */
export function onlineRetailLines(): Promise<RetailLine[]> {
  cached ??= readLines().catch((error: unknown) => {
    cached = undefined;
    throw error;
  });
  return cached;
}

async function readLines(): Promise<RetailLine[]> {
  const stream = createReadStream(ONLINE_RETAIL_CSV).pipe(createGunzip());
  stream.setEncoding('utf8');
  const lines: RetailLine[] = [];
  let header: string[] | undefined;
  let col: Record<string, number> = {};
  for await (const row of parseCsv(stream as AsyncIterable<string>)) {
    if (!header) {
      header = row;
      col = Object.fromEntries(header.map((name, i) => [name, i]));
      for (const name of ['InvoiceNo', 'StockCode', 'Quantity', 'InvoiceDate', 'UnitPrice']) {
        if (col[name] === undefined) throw new Error(`online_retail.csv: no column ${name}`);
      }
      continue;
    }
    if (row.length !== header.length) {
      throw new Error(`online_retail.csv row ${lines.length + 2}: ${row.length} fields`);
    }
    const invoiceDate = row[col.InvoiceDate!]!;
    const customerId = row[col.CustomerID!]!.trim();
    const quantity = Number(row[col.Quantity!]);
    if (!Number.isInteger(quantity)) throw new Error(`Quantity "${row[col.Quantity!]}"`);
    lines.push({
      invoiceNo: row[col.InvoiceNo!]!,
      stockCode: row[col.StockCode!]!,
      quantity,
      invoiceDate,
      at: parseUtc(invoiceDate),
      priceMilli: parseMilli(row[col.UnitPrice!]!),
      customerId: customerId === '' ? null : customerId,
      country: row[col.Country!]!,
    });
  }
  return lines;
}

/** Thousandths to cents, half away from zero. */
const milliToCents = (milli: number) => Math.sign(milli) * Math.round(Math.abs(milli) / 10);

// ---------------------------------------------------------------------------------------------
// Messages

interface Invoice {
  invoiceNo: string;
  customerId: string;
  at: number;
  lines: RetailLine[];
}

/**
 * The dataset as Segment messages, in this order: one `identify` per customer (userId =
 * CustomerID, traits { country } of their first row, timestamped at their first row), then
 * one track per invoice with a CustomerID in order of first appearance: `Order Completed`
 * (`invoice-<InvoiceNo>`, properties { order_id, revenue, currency, products }) for a
 * purchase, `Order Refunded` (properties { order_id, total, currency, products }, positive
 * amounts) for a cancellation.
 */
export function onlineRetailMessages(lines: readonly RetailLine[]): Record<string, unknown>[] {
  const customers = new Map<string, RetailLine>();
  const invoices = new Map<string, Invoice>();
  for (const line of lines) {
    if (line.customerId === null) continue;
    if (!customers.has(line.customerId)) customers.set(line.customerId, line);
    let invoice = invoices.get(line.invoiceNo);
    if (!invoice) {
      invoice = { invoiceNo: line.invoiceNo, customerId: line.customerId, at: line.at, lines: [] };
      invoices.set(line.invoiceNo, invoice);
    }
    if (invoice.customerId !== line.customerId) {
      throw new Error(`invoice ${line.invoiceNo} has two customers`);
    }
    invoice.at = Math.min(invoice.at, line.at);
    invoice.lines.push(line);
  }
  const messages: Record<string, unknown>[] = [];
  for (const [customerId, first] of customers) {
    messages.push({
      type: 'identify',
      messageId: `customer-${customerId}`,
      userId: customerId,
      timestamp: new Date(first.at).toISOString(),
      traits: { country: first.country },
    });
  }
  for (const invoice of invoices.values()) {
    const cancelled = invoice.invoiceNo.startsWith('C');
    const sign = cancelled ? -1 : 1;
    const milli = invoice.lines.reduce((sum, l) => sum + l.quantity * l.priceMilli, 0);
    const amount = milliToCents(sign * milli) / 100;
    const products = invoice.lines.map((l) => ({
      sku: l.stockCode,
      quantity: sign * l.quantity,
      price: l.priceMilli / 1000,
    }));
    messages.push({
      type: 'track',
      event: cancelled ? 'Order Refunded' : 'Order Completed',
      messageId: `invoice-${invoice.invoiceNo}`,
      userId: invoice.customerId,
      timestamp: new Date(invoice.at).toISOString(),
      properties: cancelled
        ? { order_id: invoice.invoiceNo, total: amount, currency: 'GBP', products }
        : { order_id: invoice.invoiceNo, revenue: amount, currency: 'GBP', products },
    });
  }
  return messages;
}

export interface LoadResult {
  messages: number;
  accepted: number;
  /** Wall time of the ingestion alone (the CSV read is cached). */
  ingestMs: number;
  /** Wall time of reading and parsing the CSV, 0 when it was cached. */
  readMs: number;
}

/**
 * Load the whole dataset into `db` through the real ingestion path (parseMessage, then
 * ingestMessages in batches of `batchSize`), as source `online-retail`.
 */
export async function loadOnlineRetail(
  db: Db,
  options: { config?: HubConfig; batchSize?: number } = {},
): Promise<LoadResult> {
  const config = options.config ?? testConfig();
  const batchSize = options.batchSize ?? 500;
  const t0 = performance.now();
  const lines = await onlineRetailLines();
  const t1 = performance.now();
  const raw = onlineRetailMessages(lines);
  const receivedAt = new Date();
  let accepted = 0;
  for (let start = 0; start < raw.length; start += batchSize) {
    const batch: PreparedMessage[] = raw.slice(start, start + batchSize).map((message, i) => {
      const parsed = parseMessage(message, {
        source: ONLINE_RETAIL_SOURCE,
        receivedAt,
        config,
        prefix: `[${start + i}]`,
      });
      if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
      return parsed.message;
    });
    accepted += (await ingestMessages(db, config, batch)).accepted;
  }
  return {
    messages: raw.length,
    accepted,
    ingestMs: performance.now() - t1,
    readMs: t1 - t0,
  };
}

// ---------------------------------------------------------------------------------------------
// Oracle: straight from the rows, sharing nothing with the hub or with the messages above.

/** A customer's purchases up to some moment. */
export interface CustomerPurchases {
  customerId: string;
  /** Time of the latest purchase invoice, epoch ms. */
  lastPurchaseAt: number;
  /** Distinct purchase invoices. */
  invoices: number;
  /** Σ of the invoices' revenues, each rounded to cents, in cents. */
  revenueCents: number;
}

/** A purchase invoice: its customer, time (earliest row) and revenue in thousandths. */
async function purchaseInvoices(): Promise<
  Map<string, { customerId: string; at: number; milli: number }>
> {
  const invoices = new Map<string, { customerId: string; at: number; milli: number }>();
  for (const line of await onlineRetailLines()) {
    if (line.customerId === null || line.invoiceNo.startsWith('C')) continue;
    const invoice = invoices.get(line.invoiceNo);
    if (invoice) {
      invoice.at = Math.min(invoice.at, line.at);
      invoice.milli += line.quantity * line.priceMilli;
    } else {
      invoices.set(line.invoiceNo, {
        customerId: line.customerId,
        at: line.at,
        milli: line.quantity * line.priceMilli,
      });
    }
  }
  return invoices;
}

/** Per customer with at least one purchase invoice at or before `asOf`: what they bought. */
export async function customerPurchasesOracle(asOf: Date): Promise<Map<string, CustomerPurchases>> {
  const customers = new Map<string, CustomerPurchases>();
  for (const invoice of (await purchaseInvoices()).values()) {
    if (invoice.at > asOf.getTime()) continue;
    const c = customers.get(invoice.customerId);
    const cents = milliToCents(invoice.milli);
    if (c) {
      c.lastPurchaseAt = Math.max(c.lastPurchaseAt, invoice.at);
      c.invoices++;
      c.revenueCents += cents;
    } else {
      customers.set(invoice.customerId, {
        customerId: invoice.customerId,
        lastPurchaseAt: invoice.at,
        invoices: 1,
        revenueCents: cents,
      });
    }
  }
  return customers;
}

/** A customer's raw RFM values and scores. */
export interface RfmOracleRow extends CustomerPurchases {
  /** Whole days from the last purchase to asOf, floored. */
  recencyDays: number;
  recency: number;
  frequency: number;
  monetary: number;
}

/**
 * RFM scores as src/segments/rfm.ts defines them, computed here by counting: with n
 * purchasers, a score is ceil(5k/n) where k is how many purchasers rank at or below this one
 * (ties included) — for recency, how many have at least as many days since their last
 * purchase; for frequency and monetary, how many have at most as many invoices, as much revenue.
 */
export async function rfmOracle(asOf: Date): Promise<Map<string, RfmOracleRow>> {
  const customers = [...(await customerPurchasesOracle(asOf)).values()];
  const n = customers.length;
  const days = (c: CustomerPurchases) => Math.floor((asOf.getTime() - c.lastPurchaseAt) / DAY_MS);
  // k for each value: the number of values ≤ it (for recency: ≥ it).
  const atOrBelow = (values: number[]) => {
    const sorted = [...values].sort((a, b) => a - b);
    const k = new Map<number, number>();
    sorted.forEach((v, i) => k.set(v, i + 1)); // the last index of each value wins
    return k;
  };
  const byDays = atOrBelow(customers.map((c) => -days(c)));
  const byInvoices = atOrBelow(customers.map((c) => c.invoices));
  const byRevenue = atOrBelow(customers.map((c) => c.revenueCents));
  const score = (k: number) => Math.ceil((5 * k) / n);
  return new Map(
    customers.map((c) => [
      c.customerId,
      {
        ...c,
        recencyDays: days(c),
        recency: score(byDays.get(-days(c))!),
        frequency: score(byInvoices.get(c.invoices)!),
        monetary: score(byRevenue.get(c.revenueCents)!),
      },
    ]),
  );
}

/**
 * `date` minus `months` calendar months in UTC, the day clamped to the target month's last
 * day as PostgreSQL's `timestamptz - interval 'N months'` does (in a UTC session): 31 May − 3
 * months = 28/29 February, time of day kept.
 */
export function monthsBefore(date: Date, months: number): Date {
  const y = date.getUTCFullYear();
  const m = date.getUTCMonth() - months;
  const target = new Date(Date.UTC(y, m, 1));
  const lastDay = new Date(
    Date.UTC(target.getUTCFullYear(), target.getUTCMonth() + 1, 0),
  ).getUTCDate();
  return new Date(
    Date.UTC(
      target.getUTCFullYear(),
      target.getUTCMonth(),
      Math.min(date.getUTCDate(), lastDay),
      date.getUTCHours(),
      date.getUTCMinutes(),
      date.getUTCSeconds(),
      date.getUTCMilliseconds(),
    ),
  );
}

/**
 * The loyal-customers template's answer: customers with at least `minInvoices` (2) distinct
 * purchase invoices timed in (asOf − `months` (3) calendar months, asOf].
 */
export async function loyalCustomersOracle(
  asOf: Date,
  options: { months?: number; minInvoices?: number } = {},
): Promise<number> {
  const from = monthsBefore(asOf, options.months ?? 3).getTime();
  const to = asOf.getTime();
  const invoicesOf = new Map<string, number>();
  for (const invoice of (await purchaseInvoices()).values()) {
    if (invoice.at > from && invoice.at <= to) {
      invoicesOf.set(invoice.customerId, (invoicesOf.get(invoice.customerId) ?? 0) + 1);
    }
  }
  const min = options.minInvoices ?? 2;
  return [...invoicesOf.values()].filter((n) => n >= min).length;
}

/** Counts that describe the dataset, for checking the reading against its known shape. */
export async function onlineRetailFacts() {
  const lines = await onlineRetailLines();
  const customers = new Set<string>();
  const invoices = new Set<string>();
  const cancellations = new Set<string>();
  let withoutCustomer = 0;
  for (const line of lines) {
    invoices.add(line.invoiceNo);
    if (line.invoiceNo.startsWith('C')) cancellations.add(line.invoiceNo);
    if (line.customerId === null) withoutCustomer++;
    else customers.add(line.customerId);
  }
  return {
    rows: lines.length,
    rowsWithoutCustomer: withoutCustomer,
    customers: customers.size,
    invoices: invoices.size,
    cancellationInvoices: cancellations.size,
    firstAt: new Date(lines.reduce((min, l) => Math.min(min, l.at), Infinity)),
    lastAt: new Date(lines.reduce((max, l) => Math.max(max, l.at), 0)),
  };
}
