/**
 * Test fixtures for the PostgreSQL connector: a scratch database on a real PostgreSQL server
 * (AUDIENCEHUB_TEST_ERP_URL, by default postgres://root@127.0.0.1:5432/postgres) holding two
 * public ERP datasets from ../shared/datasets/erp — Northwind in schema `northwind` (its own SQL
 * dump) and the Pagila tables a CDP reads in `public` (customer, address, city, country,
 * rental, payment, from their CSVs, with tables written after Pagila's schema) — and a server
 * that asks for a password and refuses every one, since the test server trusts local
 * connections.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, gunzipSync } from 'node:zlib';
import postgres from 'postgres';
import { datasetFile } from '../../test/support/online-retail.ts';

export const ERP_URL =
  process.env.AUDIENCEHUB_TEST_ERP_URL ?? 'postgres://root@127.0.0.1:5432/postgres';

/** The Pagila tables loaded, in load order, with their CSV file. */
const PAGILA = {
  country: 'country.csv',
  city: 'city.csv',
  address: 'address.csv',
  customer: 'customer.csv',
  rental: 'rental.csv.gz',
  payment: 'payment.csv.gz',
} as const;

// After pagila-schema.sql (devrimgunduz/pagila), without its triggers and functions. payment
// is one table here: the staged CSV merges the monthly partitions.
const PAGILA_SCHEMA = `
create table country (
  country_id integer primary key, country text not null,
  last_update timestamptz not null default now());
create table city (
  city_id integer primary key, city text not null,
  country_id smallint not null references country, last_update timestamptz not null default now());
create table address (
  address_id integer primary key, address text not null, address2 text, district text,
  city_id smallint not null references city, postal_code text, phone text,
  last_update timestamptz not null default now());
create table customer (
  customer_id integer primary key, store_id smallint not null, first_name text not null,
  last_name text not null, email text, address_id smallint not null references address,
  activebool boolean not null default true, create_date date not null default current_date,
  last_update timestamptz default now(), active integer);
create table rental (
  rental_id integer primary key, rental_date timestamptz not null, inventory_id integer not null,
  customer_id smallint not null references customer, return_date timestamptz,
  staff_id smallint not null, last_update timestamptz not null default now());
create table payment (
  payment_id integer primary key, customer_id smallint not null references customer,
  staff_id smallint not null, rental_id integer not null, amount numeric(5,2) not null,
  payment_date timestamptz not null);
create index payment_payment_date_idx on payment (payment_date, payment_id);
create view customer_emails as
  select customer_id, email, last_update from customer where activebool;`;

export interface ErpDatabase {
  /** The scratch database's name, `ah_erp_<random>`. */
  name: string;
  /** The connector's connection settings for it, as the server's superuser. */
  connection: { host: string; port: number; database: string; user: string; password?: string };
  /** A superuser client on it, for changing rows behind the connector's back. */
  sql: postgres.Sql;
  /** A login role that may use `public` and read the tables given; dropped with the database. */
  createRole(tables: string[]): Promise<{ user: string; password: string }>;
  /** Drop the database (closing whatever is still connected) and the roles made for it. */
  drop(): Promise<void>;
}

/** Connection settings from a postgres:// URL. */
function settingsOf(url: string, database?: string) {
  const u = new URL(url);
  return {
    host: u.hostname,
    port: Number(u.port || 5432),
    database: database ?? (decodeURIComponent(u.pathname.slice(1)) || 'postgres'),
    user: decodeURIComponent(u.username || 'postgres'),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
  };
}

/**
 * Create and load a scratch ERP database. Always pair with `drop()` in an `afterAll`: it runs
 * even when a test fails.
 *
 * @example
 * let erp: ErpDatabase;
 * beforeAll(async () => { erp = await createErpDatabase(); });
 * afterAll(() => erp?.drop());
 */
export async function createErpDatabase(): Promise<ErpDatabase> {
  const name = `ah_erp_${randomBytes(6).toString('hex')}`;
  const admin = postgres(ERP_URL, { max: 1, onnotice: () => {} });
  const roles: string[] = [];
  let sql: postgres.Sql | undefined;
  const drop = async () => {
    await sql?.end({ timeout: 5 });
    await admin.unsafe(`drop database if exists "${name}" with (force)`);
    for (const role of roles) await admin.unsafe(`drop role if exists "${role}"`);
    await admin.end({ timeout: 5 });
  };
  try {
    await admin.unsafe(`create database "${name}"`);
    const connection = settingsOf(ERP_URL, name);
    sql = postgres({ ...connection, max: 1, onnotice: () => {} });
    const db = sql;

    // Northwind: its dump, as is, in its own schema (it names no schema itself).
    const dump = gunzipSync(await readFile(datasetFile('erp/northwind/northwind.sql.gz')));
    await db.unsafe(`create schema northwind; set search_path to northwind;\n${dump}`).simple();
    await db.unsafe('reset search_path');

    await db.unsafe(PAGILA_SCHEMA).simple();
    for (const [table, file] of Object.entries(PAGILA)) {
      const path = datasetFile(`erp/pagila/${file}`);
      const source: Readable = file.endsWith('.gz')
        ? createReadStream(path).pipe(createGunzip())
        : createReadStream(path);
      const copy = await db
        .unsafe(`copy "${table}" from stdin with (format csv, header true)`)
        .writable();
      await pipeline(source, copy);
    }
    await db.unsafe('analyze');

    return {
      name,
      connection,
      sql: db,
      async createRole(tables) {
        const user = `${name}_${roles.length + 1}`;
        // Hex only: safe to write into the statement, which takes no parameters.
        const password = randomBytes(12).toString('hex');
        roles.push(user);
        await admin.unsafe(`create role "${user}" login password '${password}'`);
        await db.unsafe(`grant usage on schema public to "${user}"`);
        for (const table of tables) await db.unsafe(`grant select on "${table}" to "${user}"`);
        return { user, password };
      },
      drop,
    };
  } catch (error) {
    await drop().catch(() => {});
    throw error;
  }
}

/** Rows of a Pagila CSV, as the strings written (empty for null). */
export async function pagilaRows(table: keyof typeof PAGILA): Promise<Record<string, string>[]> {
  const { parse } = await import('csv-parse');
  const path = datasetFile(`erp/pagila/${PAGILA[table]}`);
  const source: Readable = PAGILA[table].endsWith('.gz')
    ? createReadStream(path).pipe(createGunzip())
    : createReadStream(path);
  const rows: Record<string, string>[] = [];
  for await (const row of source.pipe(parse({ columns: true }))) rows.push(row);
  return rows;
}

/**
 * A server speaking PostgreSQL's protocol as far as authentication: it asks for a password
 * (pg_hba `password` method) and refuses it with the server's own error, 28P01. The test server
 * trusts local connections, so a wrong password cannot be refused there.
 */
export async function startPasswordRefusingServer(): Promise<{
  port: number;
  close(): Promise<void>;
}> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buffer = Buffer.alloc(0);
    let user = '';
    let started = false;
    socket.on('data', (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      for (;;) {
        if (!started) {
          if (buffer.length < 8) return;
          const length = buffer.readInt32BE(0);
          if (buffer.length < length) return;
          const code = buffer.readInt32BE(4);
          const body = buffer.subarray(8, length);
          buffer = buffer.subarray(length);
          if (code === 80877103) {
            socket.write('N'); // SSLRequest: no TLS here
            continue;
          }
          const params = body.toString('utf8').split('\0');
          user = params[params.indexOf('user') + 1] ?? '';
          started = true;
          socket.write(message('R', int32(3))); // AuthenticationCleartextPassword
          continue;
        }
        if (buffer.length < 5) return;
        const length = buffer.readInt32BE(1);
        if (buffer.length < length + 1) return;
        const type = String.fromCharCode(buffer[0]!);
        buffer = buffer.subarray(length + 1);
        if (type === 'p') {
          socket.end(
            message(
              'E',
              fields({
                S: 'FATAL',
                V: 'FATAL',
                C: '28P01',
                M: `password authentication failed for user "${user}"`,
                F: 'auth.c',
                L: '335',
                R: 'auth_failed',
              }),
            ),
          );
          return;
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

const int32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
const message = (type: string, body: Buffer) =>
  Buffer.concat([Buffer.from(type), int32(body.length + 4), body]);
const fields = (values: Record<string, string>) =>
  Buffer.concat([
    ...Object.entries(values).map(([k, v]) => Buffer.from(`${k}${v}\0`)),
    Buffer.from([0]),
  ]);

/** A local port nothing listens on. */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
