/**
 * The PostgreSQL source against a real server: a scratch database loaded with Northwind and
 * Pagila (./test-fixtures.ts), whatever driver the hub's own suite runs on — the ERP is an
 * external system.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConfigError,
  sourceConformance,
  TransientError,
  type Cursor,
  type PluginContext,
  type ReadMode,
  type SourceStream,
} from 'audiencehub/sdk';
import { PostgresConfig } from './client.ts';
import source from './index.ts';
import {
  closedPort,
  createErpDatabase,
  pagilaRows,
  startPasswordRefusingServer,
  type ErpDatabase,
} from './test-fixtures.ts';

let erp: ErpDatabase;
let refusing: Awaited<ReturnType<typeof startPasswordRefusingServer>>;
beforeAll(async () => {
  erp = await createErpDatabase();
  refusing = await startPasswordRefusingServer();
}, 120_000);
afterAll(async () => {
  await refusing?.close();
  await erp?.drop();
});

const configOf = (extra: Record<string, unknown> = {}): PostgresConfig =>
  PostgresConfig.parse({ ...erp.connection, ...extra });

const warnings: string[] = [];
const ctx = (signal = new AbortController().signal): PluginContext => ({
  log: { debug() {}, info() {}, warn: (msg) => warnings.push(msg), error() {} },
  signal,
  http: () => {
    throw new Error('the PostgreSQL connector makes no HTTP call');
  },
});

async function streamsOf(config: PostgresConfig) {
  return source.discover({ config }, ctx());
}

async function streamOf(config: PostgresConfig, name: string): Promise<SourceStream> {
  const stream = (await streamsOf(config)).find((s) => s.name === name);
  if (!stream) throw new Error(`no stream ${name}`);
  return stream;
}

interface Read {
  records: Record<string, unknown>[];
  keys: (string | undefined)[];
  checkpoints: { cursor: Cursor; after: number }[];
  lastIsCheckpoint: boolean;
}

async function readAll(
  config: PostgresConfig,
  name: string,
  cursor: Cursor | null = null,
  mode: ReadMode = 'incremental',
  signal?: AbortSignal,
): Promise<Read> {
  const stream = await streamOf(config, name);
  const result: Read = { records: [], keys: [], checkpoints: [], lastIsCheckpoint: false };
  for await (const m of source.read({ config, stream, cursor, mode }, ctx(signal))) {
    if (m.type === 'record') {
      result.records.push(m.data);
      result.keys.push(m.key);
    } else result.checkpoints.push({ cursor: m.cursor, after: result.records.length });
    result.lastIsCheckpoint = m.type === 'checkpoint';
  }
  return result;
}

/** Read every message; how many there were. */
async function drain(messages: AsyncIterable<unknown>): Promise<number> {
  let count = 0;
  for await (const message of messages) if (message) count++;
  return count;
}

/** What a read threw. */
async function failureOf(read: Promise<unknown>): Promise<Error> {
  try {
    await read;
  } catch (error) {
    return error as Error;
  }
  throw new Error('the read did not fail');
}

const refusingConfig = () =>
  PostgresConfig.parse({
    host: '127.0.0.1',
    port: refusing.port,
    database: 'erp',
    user: 'reader',
    password: 'correct-horse-battery',
  });

const CUSTOMER_TOTALS = {
  name: 'customer_totals',
  query: `select c.customer_id, c.email, sum(p.amount) as total_payments, count(*) as payments,
            max(p.payment_date) as last_payment_at
          from customer c join payment p on p.customer_id = c.customer_id
          group by c.customer_id, c.email;`,
  primaryKey: ['customer_id'],
  cursorColumn: 'last_payment_at',
};

describe('check', () => {
  it('accepts the database and its configured streams', async () => {
    const config = configOf({
      streams: [CUSTOMER_TOTALS, { name: 'payment', cursorColumn: 'payment_date' }],
    });
    expect(await source.check({ config }, ctx())).toEqual({ ok: true });
  });

  it('refuses a schema that does not exist, as discover does', async () => {
    const config = configOf({ schema: 'sales' });
    const reason = `Schema "sales" does not exist in database "${erp.name}".`;
    expect(await source.check({ config }, ctx())).toEqual({ ok: false, reason });
    const error = await failureOf(streamsOf(config));
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toBe(reason);
  });

  it('refuses a wrong password with the server’s reason, never the password', async () => {
    const result = await source.check({ config: refusingConfig() }, ctx());
    expect(result.ok).toBe(false);
    const reason = (result as { reason: string }).reason;
    expect(reason).toContain('password authentication failed for user "reader" (28P01)');
    expect(reason).toContain('check the user and password');
    expect(reason).not.toContain('correct-horse-battery');
  });

  it('refuses a schema the user may not use', async () => {
    const role = await erp.createRole([]);
    expect(
      await source.check({ config: configOf({ ...role, schema: 'northwind' }) }, ctx()),
    ).toEqual({
      ok: false,
      reason: `User "${role.user}" may not use schema "northwind": grant it USAGE on the schema.`,
    });
  });

  it('refuses a user the server does not know', async () => {
    const result = await source.check({ config: configOf({ user: 'nobody_here' }) }, ctx());
    expect(result).toMatchObject({
      ok: false,
      reason: expect.stringContaining('role "nobody_here" does not exist (28000)'),
    });
  });

  it('refuses configured streams that cannot be read, naming them', async () => {
    const missing = await source.check(
      { config: configOf({ streams: [{ name: 'invoices', table: 'invoice' }] }) },
      ctx(),
    );
    expect(missing).toEqual({
      ok: false,
      reason: 'Stream invoices: "invoice" is not a table or view of schema "public".',
    });
    const broken = await source.check(
      {
        config: configOf({
          streams: [{ name: 'totals', query: 'select customer_id from customers' }],
        }),
      },
      ctx(),
    );
    expect(broken).toMatchObject({
      ok: false,
      reason: expect.stringContaining('relation "customers" does not exist (42P01)'),
    });
    const twice = await source.check(
      {
        config: configOf({
          streams: [{ name: 'ids', query: 'select customer_id, customer_id from customer' }],
        }),
      },
      ctx(),
    );
    expect(twice).toEqual({
      ok: false,
      reason:
        'Stream ids: the query returns two columns named "customer_id": give them different names.',
    });
    const cursor = await source.check(
      { config: configOf({ streams: [{ name: 'payment', cursorColumn: 'paid_at' }] }) },
      ctx(),
    );
    expect(cursor).toMatchObject({
      ok: false,
      reason: expect.stringContaining(
        'Stream payment: the cursor column "paid_at" is not one of its columns',
      ),
    });
  });

  it('answers an unreachable server with a reason', async () => {
    const port = await closedPort();
    const result = await source.check({ config: configOf({ host: '127.0.0.1', port }) }, ctx());
    expect(result).toEqual({
      ok: false,
      reason: `PostgreSQL at 127.0.0.1:${port} could not be reached or dropped the connection (ECONNREFUSED).`,
    });
  });
});

describe('discover', () => {
  it('lists the schema’s tables and views with their keys, types and cursors', async () => {
    const streams = await streamsOf(configOf());
    expect(streams.map((s) => s.name)).toEqual([
      'address',
      'city',
      'country',
      'customer',
      'customer_emails',
      'payment',
      'rental',
    ]);
    const customer = streams.find((s) => s.name === 'customer')!;
    expect(customer).toEqual({
      name: 'customer',
      description:
        'Table public.customer; incremental by last_update (named like an update timestamp); other date columns: create_date.',
      fields: [
        { name: 'customer_id', type: 'integer', description: 'integer not null' },
        { name: 'store_id', type: 'integer', description: 'smallint not null' },
        { name: 'first_name', type: 'string', description: 'text not null' },
        { name: 'last_name', type: 'string', description: 'text not null' },
        { name: 'email', type: 'string', description: 'text' },
        { name: 'address_id', type: 'integer', description: 'smallint not null' },
        { name: 'activebool', type: 'boolean', description: 'boolean not null' },
        { name: 'create_date', type: 'date', description: 'date not null' },
        { name: 'last_update', type: 'datetime', description: 'timestamp with time zone' },
        { name: 'active', type: 'integer', description: 'integer' },
      ],
      primaryKey: ['customer_id'],
      modes: ['full_refresh', 'incremental'],
      cursorField: 'last_update',
    });
    const payment = streams.find((s) => s.name === 'payment')!;
    expect(payment).toMatchObject({
      description: 'Table public.payment; read in full: no cursor column (could be: payment_date).',
      primaryKey: ['payment_id'],
      modes: ['full_refresh'],
    });
    expect(payment.cursorField).toBeUndefined();
    expect(payment.fields.find((f) => f.name === 'amount')).toEqual({
      name: 'amount',
      type: 'number',
      description: 'numeric(5,2) not null',
    });
    // A view has no constraint: no key unless configured; its records are known by content.
    expect(streams.find((s) => s.name === 'customer_emails')).toMatchObject({
      description: expect.stringContaining(
        'View public.customer_emails; incremental by last_update',
      ),
      primaryKey: [],
      modes: ['full_refresh', 'incremental'],
    });
  });

  it('takes keys and cursors from the configuration, and adds query streams', async () => {
    const streams = await streamsOf(
      configOf({
        streams: [
          { name: 'payment', cursorColumn: 'payment_date' },
          { name: 'customer_emails', primaryKey: ['customer_id'] },
          CUSTOMER_TOTALS,
        ],
      }),
    );
    expect(streams.find((s) => s.name === 'payment')).toMatchObject({
      description: 'Table public.payment; incremental by payment_date (configured).',
      modes: ['full_refresh', 'incremental'],
      cursorField: 'payment_date',
    });
    expect(streams.find((s) => s.name === 'customer_emails')?.primaryKey).toEqual(['customer_id']);
    expect(streams.find((s) => s.name === 'customer_totals')).toEqual({
      name: 'customer_totals',
      description: 'Query; incremental by last_payment_at (configured).',
      fields: [
        { name: 'customer_id', type: 'integer', description: 'integer' },
        { name: 'email', type: 'string', description: 'text' },
        { name: 'total_payments', type: 'number', description: 'numeric' },
        { name: 'payments', type: 'integer', description: 'bigint' },
        { name: 'last_payment_at', type: 'datetime', description: 'timestamp with time zone' },
      ],
      primaryKey: ['customer_id'],
      modes: ['full_refresh', 'incremental'],
      cursorField: 'last_payment_at',
    });
  });

  it('reads another schema: Northwind, composite keys, binary columns left out', async () => {
    const streams = await streamsOf(configOf({ schema: 'northwind' }));
    expect(streams).toHaveLength(14);
    expect(streams.find((s) => s.name === 'order_details')?.primaryKey).toEqual([
      'order_id',
      'product_id',
    ]);
    const categories = streams.find((s) => s.name === 'categories')!;
    expect(categories.fields.map((f) => f.name)).toEqual([
      'category_id',
      'category_name',
      'description',
    ]);
    expect(categories.description).toContain('binary columns not read: picture');
    expect(streams.find((s) => s.name === 'orders')?.description).toBe(
      'Table northwind.orders; read in full: no cursor column (could be: order_date, required_date, shipped_date).',
    );
  });

  it('leaves out tables the user may not read', async () => {
    const role = await erp.createRole(['customer', 'customer_emails']);
    const streams = await streamsOf(configOf(role));
    expect(streams.map((s) => s.name)).toEqual(['customer', 'customer_emails']);
  });
});

describe('read', () => {
  it('reads all of Pagila’s customers in pages, each value as plain JSON', async () => {
    const read = await readAll(configOf({ pageSize: 100 }), 'customer', null, 'full_refresh');
    const csv = await pagilaRows('customer');
    expect(read.records).toHaveLength(599);
    expect(read.records.map((r) => r.email)).toEqual(csv.map((r) => r.email));
    expect(read.records[0]).toEqual({
      customer_id: 1,
      store_id: 1,
      first_name: 'MARY',
      last_name: 'SMITH',
      email: 'MARY.SMITH@sakilacustomer.org',
      address_id: 5,
      activebool: true,
      create_date: '2022-02-14',
      last_update: '2022-02-15T09:57:20Z',
      active: 1,
    });
    // A full refresh pages by the key: a checkpoint after each page of 100, the last one last.
    expect(read.checkpoints.map((c) => c.after)).toEqual([100, 200, 300, 400, 500, 599]);
    expect(read.checkpoints[0]!.cursor).toEqual({ by: ['customer_id'], after: ['100'] });
    expect(read.lastIsCheckpoint).toBe(true);
  });

  it('reads payments incrementally by payment_date and resumes from a checkpoint with no gap or repeat', async () => {
    const config = configOf({
      pageSize: 1000,
      streams: [{ name: 'payment', cursorColumn: 'payment_date' }],
    });
    const full = await readAll(config, 'payment');
    const csv = await pagilaRows('payment');
    expect(full.records).toHaveLength(16_049);
    expect(new Set(full.records.map((r) => r.payment_id))).toEqual(
      new Set(csv.map((r) => Number(r.payment_id))),
    );
    const cents = (rows: Record<string, unknown>[]) =>
      rows.reduce((sum, r) => sum + Math.round(Number(r.amount) * 100), 0);
    expect(cents(full.records)).toBe(cents(csv));
    // In cursor order, microseconds kept.
    const dates = full.records.map((r) => r.payment_date as string);
    expect([...dates].sort()).toEqual(dates);
    expect(full.records.find((r) => r.payment_id === 16051)?.payment_date).toBe(
      '2022-01-29T01:58:52.222594Z',
    );
    expect(full.checkpoints).toHaveLength(17);

    const fifth = full.checkpoints[4]!;
    expect(fifth.after).toBe(5000);
    expect(fifth.cursor).toEqual({
      by: ['payment_date', 'payment_id'],
      after: [
        expect.stringMatching(/^2022-\d\d-\d\d \d\d:\d\d:\d\d\.\d+\+00$/),
        expect.any(String),
      ],
    });
    const resumed = await readAll(config, 'payment', fifth.cursor);
    expect(resumed.records.map((r) => r.payment_id)).toEqual(
      full.records.slice(5000).map((r) => r.payment_id),
    );
    // From the last checkpoint, nothing is new.
    const quiet = await readAll(config, 'payment', full.checkpoints.at(-1)!.cursor);
    expect(quiet.records).toEqual([]);
    expect(quiet.checkpoints).toEqual([{ cursor: full.checkpoints.at(-1)!.cursor, after: 0 }]);
  });

  it('pages by a composite key without repeating or missing a row (Northwind order lines)', async () => {
    const config = configOf({ schema: 'northwind', pageSize: 500 });
    const full = await readAll(config, 'order_details', null, 'full_refresh');
    expect(full.records).toHaveLength(2155);
    const keys = full.records.map((r) => `${r.order_id}/${r.product_id}`);
    expect(new Set(keys).size).toBe(2155);
    expect(full.records[0]).toEqual({
      order_id: 10248,
      product_id: 11,
      unit_price: 14,
      quantity: 12,
      discount: 0,
    });
    const middle = full.checkpoints[1]!;
    const resumed = await readAll(config, 'order_details', middle.cursor, 'full_refresh');
    expect(resumed.records.map((r) => `${r.order_id}/${r.product_id}`)).toEqual(keys.slice(1000));
  });

  it('reads a query stream: customers with their total payments', async () => {
    const config = configOf({ pageSize: 250, streams: [CUSTOMER_TOTALS] });
    const read = await readAll(config, 'customer_totals');
    const oracle = new Map<number, { cents: number; count: number }>();
    for (const p of await pagilaRows('payment')) {
      const t = oracle.get(Number(p.customer_id)) ?? { cents: 0, count: 0 };
      t.cents += Math.round(Number(p.amount) * 100);
      t.count += 1;
      oracle.set(Number(p.customer_id), t);
    }
    expect(read.records).toHaveLength(oracle.size);
    for (const r of read.records) {
      const expected = oracle.get(r.customer_id as number)!;
      expect([Math.round((r.total_payments as number) * 100), r.payments]).toEqual([
        expected.cents,
        expected.count,
      ]);
    }
    expect(read.records.find((r) => r.customer_id === 1)).toMatchObject({
      email: 'MARY.SMITH@sakilacustomer.org',
      total_payments: expect.any(Number),
      last_payment_at: expect.stringMatching(/^2022-\d\d-\d\dT[\d:.]+Z$/),
    });
    expect(read.checkpoints.length).toBeGreaterThan(2);
    const resumed = await readAll(config, 'customer_totals', read.checkpoints[1]!.cursor);
    expect(resumed.records).toEqual(read.records.slice(read.checkpoints[1]!.after));
  });

  it('keeps rows that share a cursor value in one page when a stream has no key', async () => {
    // All 599 customers were last updated in the same second.
    const read = await readAll(configOf({ pageSize: 100 }), 'customer_emails');
    expect(read.records).toHaveLength(599);
    expect(read.checkpoints).toEqual([
      { cursor: { by: ['last_update'], after: ['2022-02-15 09:57:20+00'] }, after: 599 },
    ]);
    expect(new Set(read.keys).size).toBe(599);
    expect(read.keys.every((k) => /^[0-9a-f]{32}$/.test(k ?? ''))).toBe(true);
    const again = await readAll(configOf({ pageSize: 100 }), 'customer_emails');
    expect(again.keys).toEqual(read.keys);
    const quiet = await readAll(configOf(), 'customer_emails', read.checkpoints[0]!.cursor);
    expect(quiet.records).toEqual([]);
  });

  it('turns each PostgreSQL type into JSON without losing digits', async () => {
    await erp.sql
      .unsafe(
        `
      create domain positive_int as integer check (value > 0);
      create table odd_types (
        id bigint primary key, big numeric, ratio double precision, small real, price numeric(7,2),
        data jsonb, tags text[], stamps timestamptz[], local_time timestamp, span interval,
        uid uuid, blob bytea, rank positive_int, code char(4), day date, flag boolean,
        updated_at timestamp not null default '2024-01-01');
      insert into odd_types values
        (9007199254740993, 12345678901234567.89, 'NaN', 0.15, 19.90, '{"a": [1, 2.5]}',
         '{x,"y z"}', '{"2022-01-01 00:00:00+00"}', '2022-01-29 01:58:52.222594', '1 day 2 hours',
         'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\xdead', 5, 'ab', '2022-02-14', true),
        (2, null, 1e300, null, null, null, '{}', null, null, null, null, null, null, null, null,
         false);`,
      )
      .simple();
    const stream = await streamOf(configOf(), 'odd_types');
    expect(stream.fields.map((f) => [f.name, f.type])).toEqual([
      ['id', 'integer'],
      ['big', 'number'],
      ['ratio', 'number'],
      ['small', 'number'],
      ['price', 'number'],
      ['data', 'json'],
      ['tags', 'json'],
      ['stamps', 'json'],
      ['local_time', 'datetime'],
      ['span', 'string'],
      ['uid', 'string'],
      ['rank', 'integer'],
      ['code', 'string'],
      ['day', 'date'],
      ['flag', 'boolean'],
      ['updated_at', 'datetime'],
    ]);
    expect(stream.cursorField).toBe('updated_at');
    const read = await readAll(configOf(), 'odd_types', null, 'full_refresh');
    expect(read.records).toEqual([
      {
        id: 2,
        big: null,
        ratio: 1e300,
        small: null,
        price: null,
        data: null,
        tags: [],
        stamps: null,
        local_time: null,
        span: null,
        uid: null,
        rank: null,
        code: null,
        day: null,
        flag: false,
        updated_at: '2024-01-01T00:00:00',
      },
      {
        id: '9007199254740993',
        big: '12345678901234567.89',
        ratio: null,
        small: 0.15,
        price: 19.9,
        data: { a: [1, 2.5] },
        tags: ['x', 'y z'],
        stamps: ['2022-01-01T00:00:00Z'],
        local_time: '2022-01-29T01:58:52.222594',
        span: 'P1DT2H',
        uid: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
        rank: 5,
        code: 'ab  ',
        day: '2022-02-14',
        flag: true,
        updated_at: '2024-01-01T00:00:00',
      },
    ]);
  });

  it('quotes identifiers: any table or column name reads', async () => {
    await erp.sql
      .unsafe(
        `
      create table "Order ""Lines"".2024" ("Line No" integer primary key, "select" text);
      insert into "Order ""Lines"".2024" values (1, 'a'), (2, 'b'), (3, 'c');`,
      )
      .simple();
    const read = await readAll(
      configOf({ pageSize: 2 }),
      'Order "Lines".2024',
      null,
      'full_refresh',
    );
    expect(read.records).toEqual([
      { 'Line No': 1, select: 'a' },
      { 'Line No': 2, select: 'b' },
      { 'Line No': 3, select: 'c' },
    ]);
    expect(read.checkpoints.map((c) => c.after)).toEqual([2, 3]);
  });

  it('starts over when the checkpoint was taken in another order, and refuses one it did not write', async () => {
    const config = configOf({ pageSize: 100 });
    const incremental = await readAll(config, 'customer');
    warnings.length = 0;
    const full = await readAll(
      config,
      'customer',
      incremental.checkpoints[0]!.cursor,
      'full_refresh',
    );
    expect(full.records).toHaveLength(599);
    expect(warnings).toEqual([
      'Stream customer: the checkpoint was taken ordering by last_update, customer_id, the stream is now read by customer_id: reading it from the start.',
    ]);
    const error = await failureOf(readAll(config, 'customer', { offset: 5 }));
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toContain(
      'the checkpoint to resume from is not one this connector writes',
    );
  });
});

describe('changes between reads', () => {
  it('reads a row again once an update moves its cursor past the checkpoint', async () => {
    const config = configOf({ pageSize: 200 });
    const first = await readAll(config, 'customer');
    const last = first.checkpoints.at(-1)!.cursor;
    await erp.sql`update customer set email = 'mary@example.com', last_update = '2024-05-01T10:00:00.123456Z' where customer_id = 1`;
    const next = await readAll(config, 'customer', last);
    expect(next.records).toEqual([
      expect.objectContaining({
        customer_id: 1,
        email: 'mary@example.com',
        last_update: '2024-05-01T10:00:00.123456Z',
      }),
    ]);
    expect(next.checkpoints).toEqual([
      {
        cursor: {
          by: ['last_update', 'customer_id'],
          after: ['2024-05-01 10:00:00.123456+00', '1'],
        },
        after: 1,
      },
    ]);
    expect((await readAll(config, 'customer', next.checkpoints[0]!.cursor)).records).toEqual([]);
  });

  it('reads new rows appended after the last checkpoint', async () => {
    const config = configOf({ streams: [{ name: 'payment', cursorColumn: 'payment_date' }] });
    const first = await readAll(config, 'payment');
    await erp.sql`insert into payment values (99001, 1, 1, 76, 4.99, '2030-01-01T00:00:00Z')`;
    try {
      const next = await readAll(config, 'payment', first.checkpoints.at(-1)!.cursor);
      expect(next.records).toEqual([
        {
          payment_id: 99001,
          customer_id: 1,
          staff_id: 1,
          rental_id: 76,
          amount: 4.99,
          payment_date: '2030-01-01T00:00:00Z',
        },
      ]);
    } finally {
      await erp.sql`delete from payment where payment_id = 99001`;
    }
  });

  it('reads rows whose cursor is null after the others, and new ones from the checkpoint', async () => {
    const config = configOf({ pageSize: 250 });
    await erp.sql`update customer set last_update = null where customer_id in (7, 8)`;
    const read = await readAll(config, 'customer');
    expect(read.records).toHaveLength(599);
    expect(read.records.slice(-2).map((r) => [r.customer_id, r.last_update])).toEqual([
      [7, null],
      [8, null],
    ]);
    const last = read.checkpoints.at(-1)!.cursor as { nulls: string[] };
    expect(last.nulls).toEqual(['8']);
    await erp.sql`update customer set last_update = null where customer_id = 9`;
    const next = await readAll(config, 'customer', last);
    expect(next.records.map((r) => r.customer_id)).toEqual([9]);
    await erp.sql`update customer set last_update = '2022-02-15 09:57:20+00' where customer_id in (7, 8, 9)`;
  });
});

describe('failures', () => {
  it('refuses a table the user may not read: ConfigError', async () => {
    const role = await erp.createRole(['customer']);
    const error = await failureOf(
      readAll(
        configOf({ ...role, streams: [{ name: 'payment' }] }),
        'payment',
        null,
        'full_refresh',
      ),
    );
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toBe(
      `PostgreSQL (${role.user}@${erp.connection.host}:${erp.connection.port}/${erp.name}): permission denied for table payment (42501): grant the user SELECT on it.`,
    );
  });

  it('refuses a stream whose table is gone: ConfigError', async () => {
    const config = configOf();
    const stream = await streamOf(config, 'customer');
    const error = await failureOf(
      drain(
        source.read(
          {
            config,
            stream: { ...stream, name: 'customers_2019' },
            cursor: null,
            mode: 'full_refresh',
          },
          ctx(),
        ),
      ),
    );
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toBe(
      'Stream customers_2019 is not a table or view of schema "public" nor a configured stream: it may have been dropped or renamed.',
    );
  });

  it('runs queries read-only: a query stream cannot change anything', async () => {
    await erp.sql.unsafe('create sequence ticket');
    const tickets = await failureOf(
      readAll(
        configOf({
          streams: [{ name: 'tickets', query: "select nextval('ticket') as n", primaryKey: ['n'] }],
        }),
        'tickets',
        null,
        'full_refresh',
      ),
    );
    expect(tickets).toBeInstanceOf(ConfigError);
    expect(tickets.message).toContain(
      'cannot execute nextval() in a read-only transaction (25006)',
    );
    const purge = await source.check(
      {
        config: configOf({
          streams: [
            { name: 'purge', query: 'with d as (delete from payment returning *) select * from d' },
          ],
        }),
      },
      ctx(),
    );
    expect(purge).toMatchObject({
      ok: false,
      reason: expect.stringContaining(
        'WITH clause containing a data-modifying statement must be at the top level (0A000)',
      ),
    });
    const [left] = await erp.sql`select count(*)::int as count from payment`;
    expect(left?.count).toBe(16_049);
  });

  it('a server out of reach is a TransientError', async () => {
    const port = await closedPort();
    const error = await failureOf(readAll(configOf({ host: '127.0.0.1', port }), 'customer'));
    expect(error).toBeInstanceOf(TransientError);
  });

  const SLOW = {
    name: 'slow_payments',
    query: 'select payment_id, amount from payment, pg_sleep(3)',
    primaryKey: ['payment_id'],
  };

  /** The connector's running query, once the server shows it. */
  async function runningQuery(): Promise<number> {
    for (let i = 0; i < 100; i++) {
      const [row] = await erp.sql`select pid from pg_stat_activity
        where datname = ${erp.name} and application_name = 'audiencehub'
          and state = 'active' and query like '%pg_sleep%'`;
      if (row) return row.pid as number;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error('the query never ran');
  }

  it('a connection the server terminates mid-read is a TransientError', async () => {
    const config = configOf({ streams: [SLOW] });
    const stream = await streamOf(config, 'slow_payments');
    const reading = failureOf(
      drain(source.read({ config, stream, cursor: null, mode: 'full_refresh' }, ctx())),
    );
    const pid = await runningQuery();
    const terminated = Date.now();
    await erp.sql`select pg_terminate_backend(${pid})`;
    const error = await reading;
    expect(Date.now() - terminated).toBeLessThan(1500);
    expect(error).toBeInstanceOf(TransientError);
    expect(error.message).toMatch(
      /terminating connection due to administrator command \(57P01\)|dropped the connection/,
    );
  });

  it('a query past the statement timeout is a TransientError that says what to do', async () => {
    const config = configOf({ statementTimeoutMs: 1000, streams: [SLOW] });
    const error = await failureOf(readAll(config, 'slow_payments', null, 'full_refresh'));
    expect(error).toBeInstanceOf(TransientError);
    expect(error.message).toContain('canceling statement due to statement timeout (57014)');
    expect(error.message).toContain('index the cursor and key columns, or lower pageSize');
  });

  it('stops a read when the run is stopped, cancelling the running query', async () => {
    const config = configOf({ streams: [SLOW] });
    const controller = new AbortController();
    const started = Date.now();
    const reading = failureOf(
      readAll(config, 'slow_payments', null, 'full_refresh', controller.signal),
    );
    await runningQuery();
    controller.abort();
    const error = await reading;
    expect(error.name).toBe('AbortError');
    expect(Date.now() - started).toBeLessThan(2500);
  });
});

describe('conformance', () => {
  it('passes the SDK’s source conformance kit', async () => {
    const report = await sourceConformance({
      connector: source,
      config: configOf({ pageSize: 100 }),
      badConfig: refusingConfig(),
      stream: 'customer',
      change: async () => {
        await erp.sql`update customer set first_name = 'ANNA', last_update = now() where customer_id = 300`;
      },
    });
    expect(report.filter((c) => !c.ok)).toEqual([]);
    expect(report.map((c) => c.check)).toContain(
      'a read resumed from a checkpoint repeats nothing and misses nothing',
    );
  });
});
