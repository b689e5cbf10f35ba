/**
 * A transaction on postgres.js sends its statements behind BEGIN without waiting for BEGIN's
 * answer (scripts/patch-postgres.mjs), and is still one transaction: atomic, its statements
 * in order, its connection its own until it ends. PostgreSQL only: PGlite runs in this process.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PIPELINED } from '../scripts/patch-postgres.mjs';
import { isConnectionLoss, type Database } from '../src/db/index.ts';
import { databaseUrlOf, driver, testDatabase } from './support/db.ts';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const onPostgres = driver === 'postgres' ? describe : () => {};

/**
 * A TCP proxy in front of PostgreSQL that can hold back what the server answers, and records
 * what the client sends.
 */
async function holdingProxy(target: URL) {
  const sent: Buffer[] = [];
  const held: { socket: Socket; data: Buffer }[] = [];
  const sockets = new Set<Socket>();
  let holding = false;
  let rewrite: [from: string, to: string] | null = null;
  let keepBack: string | null = null;
  const kept: { socket: Socket; data: Buffer }[] = [];
  const server: Server = createServer((client) => {
    const upstream = connect(Number(target.port || 5432), target.hostname);
    sockets.add(client).add(upstream);
    client.on('data', (data) => {
      sent.push(data);
      if (rewrite) data = Buffer.from(data.toString('latin1').replace(...rewrite), 'latin1');
      if (keepBack && (kept.length > 0 || data.includes(keepBack)))
        kept.push({ socket: upstream, data });
      else upstream.write(data);
    });
    upstream.on('data', (data) => {
      if (holding) held.push({ socket: client, data });
      else client.write(data);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const url = new URL(target);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return {
    url: url.toString(),
    /** Hold every answer from now on. */
    hold() {
      holding = true;
    },
    /** Keep from the server what the client sends from `text` on, until released. */
    keepBack(text: string) {
      keepBack = text;
    },
    /** Pass on what was held, and everything after. */
    release() {
      holding = false;
      keepBack = null;
      for (const { socket, data } of kept.splice(0)) if (!socket.destroyed) socket.write(data);
      for (const { socket, data } of held.splice(0)) socket.write(data);
    },
    /** Change what the client sends from now on (`from` and `to` of one length), or stop. */
    rewrite(change: [from: string, to: string] | null) {
      rewrite = change;
    },
    /** Whether the client has sent `text`, from byte `from` of all it sent. */
    hasSent: (text: string, from = 0) => Buffer.concat(sent).subarray(from).includes(text),
    /** How many bytes the client has sent so far. */
    sentBytes: () => Buffer.concat(sent).length,
    /** Cut every connection through the proxy. */
    cut() {
      for (const socket of sockets) socket.destroy();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Poll `check` until it holds or `ms` pass; whether it held. */
async function eventually(check: () => boolean, ms = 2000): Promise<boolean> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) return false;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return true;
}

describe('the pipelined BEGIN patch', () => {
  it('is installed in both builds Node may load', () => {
    const src = fileURLToPath(new URL('.', import.meta.resolve('postgres')));
    for (const file of ['index.js', '../cjs/src/index.js']) {
      expect(readFileSync(join(src, file), 'utf8'), file).toContain(PIPELINED);
    }
  });
});

onPostgres('a transaction on postgres.js', () => {
  let database: Database;
  let target: URL;
  let proxy: Awaited<ReturnType<typeof holdingProxy>>;

  beforeAll(async () => {
    database = await testDatabase();
    target = new URL((await databaseUrlOf(database.db))!);
    proxy = await holdingProxy(target);
  });

  afterAll(async () => {
    await proxy?.close();
    await database?.close();
  });

  it('sends its statements before the answer to BEGIN is back', async () => {
    const client = postgres(proxy.url, { max: 1, onnotice: () => {} });
    try {
      await client`select 1`;
      proxy.hold();
      const transaction = client.begin((tx) => tx`select 'sent behind begin' as text`);
      // Nothing has come back from the server, not even BEGIN's answer, yet the statement is out.
      const sentEarly = await eventually(() => proxy.hasSent('sent behind begin'));
      proxy.release();
      expect(sentEarly).toBe(true);
      const [row] = await transaction;
      expect(row!.text).toBe('sent behind begin');
    } finally {
      proxy.release();
      await client.end({ timeout: 1 });
    }
  });

  it('is one transaction: one id, nothing of it kept when it fails, its connection its own', async () => {
    // One connection: a statement outside the transaction must wait for the connection.
    const client = postgres(target.toString(), { max: 1, onnotice: () => {} });
    try {
      await client`create table if not exists pipelined_begin (n int)`;
      const ids = await client.begin((tx) => [
        tx`select txid_current() as id`,
        tx`insert into pipelined_begin values (1)`,
        tx`select txid_current() as id`,
      ]);
      expect(ids[0]![0]!.id).toBe(ids[2]![0]!.id);
      const failed = await client
        .begin(async (tx) => {
          tx`insert into pipelined_begin values (2)`.execute();
          await tx`select 1 / 0`;
        })
        .then(
          () => null,
          (error: unknown) => error as { code?: string },
        );
      expect(failed?.code).toBe('22012');
      const rows = await client<{ n: number }[]>`select n from pipelined_begin order by n`;
      expect(rows.map((r) => r.n)).toEqual([1]);
      // Its connection is its own: a statement sent meanwhile outside it does not join it.
      const inside = client.begin(async (tx) => {
        await tx`insert into pipelined_begin values (3)`;
        await new Promise((resolve) => setTimeout(resolve, 50));
        throw new Error('rolled back');
      });
      const outside = client`insert into pipelined_begin values (4)`;
      await expect(inside).rejects.toThrow('rolled back');
      await outside;
      const after = await client<{ n: number }[]>`select n from pipelined_begin order by n`;
      expect(after.map((r) => r.n)).toEqual([1, 4]);
    } finally {
      await client`drop table if exists pipelined_begin`;
      await client.end({ timeout: 1 });
    }
  });

  it('fails when BEGIN itself fails, though the session lives on', async () => {
    const client = postgres(proxy.url, { max: 1, onnotice: () => {} });
    try {
      await client`select 1`;
      // BEGIN fails only with its session in practice; a syntax error stands in for that here.
      proxy.rewrite(['begin ', 'begi! ']);
      const outcome = await client
        .begin((tx) => tx`select 1`)
        .then(
          () => null,
          (error: unknown) => error as { code?: string },
        );
      proxy.rewrite(null);
      expect(outcome?.code).toBe('42601');
      const [row] = await client<{ one: number }[]>`select 1 as one`;
      expect(row!.one).toBe(1);
    } finally {
      proxy.rewrite(null);
      await client.end({ timeout: 1 });
    }
  });

  it('loses a new connection while it reads the array types without an unhandled rejection', async () => {
    const unhandled: unknown[] = [];
    const record = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', record);
    const client = postgres(proxy.url, {
      max: 1,
      onnotice: () => {},
      connection: { application_name: 'reads-types' },
    });
    try {
      const from = proxy.sentBytes();
      proxy.keepBack('pg_catalog.pg_type');
      const first = client`select 1 as n`.then(
        () => null,
        (error: unknown) => error,
      );
      expect(await eventually(() => proxy.hasSent('pg_catalog.pg_type', from))).toBe(true);
      // Its backend ends (as on a restart) before the read of the types reaches it.
      const admin = postgres(target.toString(), { max: 1, onnotice: () => {} });
      try {
        const ended = await admin<{ n: number }[]>`
          select count(*) filter (where pg_terminate_backend(pid))::int as n
          from pg_stat_activity
          where application_name = 'reads-types'`;
        expect(ended[0]!.n).toBe(1);
      } finally {
        await admin.end({ timeout: 1 });
      }
      proxy.release();
      // The first statement is sent again on the next connection, or fails as a lost one.
      const outcome = await first;
      expect(outcome === null || isConnectionLoss(outcome)).toBe(true);
      const [row] = await client<{ n: number }[]>`select 2 as n`;
      expect(row!.n).toBe(2);
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', record);
      proxy.release();
      await client.end({ timeout: 1 });
    }
  });

  it('fails whole when the connection is lost before BEGIN is answered, and the pool goes on', async () => {
    const client = postgres(proxy.url, { max: 1, onnotice: () => {} });
    try {
      await client`create table if not exists pipelined_lost (n int)`;
      proxy.hold();
      const transaction = client
        .begin((tx) => [tx`insert into pipelined_lost values (1)`, tx`select 2`])
        .then(
          () => null,
          (error: unknown) => error,
        );
      expect(await eventually(() => proxy.hasSent('insert into pipelined_lost'))).toBe(true);
      proxy.cut();
      proxy.release();
      expect(isConnectionLoss(await transaction)).toBe(true);
      const rows = await client<{ n: number }[]>`select count(*)::int as n from pipelined_lost`;
      expect(rows[0]!.n).toBe(0);
    } finally {
      proxy.release();
      await client`drop table if exists pipelined_lost`;
      await client.end({ timeout: 1 });
    }
  });
});
