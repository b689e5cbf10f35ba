/**
 * Reading a stream in pages by keyset (README.md, "Reading"): each page is one query ordered by
 * the cursor column then the primary key (or by the key alone in a full refresh), starting
 * after the last row of the page before, and is followed by a checkpoint holding that row's
 * values as PostgreSQL printed them. No page skips or repeats a row however many rows share a
 * cursor value, and nothing stays open between pages.
 */
import { createHash } from 'node:crypto';
import {
  ConfigError,
  type Cursor,
  type PluginContext,
  type SourceMessage,
  type SourceRead,
} from 'audiencehub/sdk';
import { ident, open, type Db, type PostgresConfig, type Row } from './client.ts';
import { plans, type Plan } from './streams.ts';
import { jsonValue } from './values.ts';

/**
 * A checkpoint: the columns the read orders by and the last values read, as text.
 * `nulls` is where the read of rows whose cursor column is null stopped (keyed incremental
 * reads only); both stay in every checkpoint, so a read resumed from any of them goes on with
 * new and changed rows first, then rows without a cursor value after the last one read.
 */
interface Position {
  by: string[];
  after: string[] | null;
  nulls?: string[] | null;
}

/** How a stream is paged for the mode asked. */
type Paging =
  /** By `by`: the cursor column (when incremental) then the primary key. */
  | { kind: 'keyset'; by: string[]; cursor?: string; key: string[]; cursorNullable: boolean }
  /** Without a key: by the cursor column, a page taking every row of its last value. */
  | { kind: 'cursor only'; by: [string] };

function paging(plan: Plan, mode: 'full_refresh' | 'incremental'): Paging {
  const cursor = plan.cursorColumn;
  const key = plan.primaryKey;
  if (key.length > 0) {
    if (mode === 'incremental' && cursor) {
      const column = plan.columns.find((c) => c.name === cursor)!;
      // A cursor column that is part of the key is not repeated (and is never null).
      const rest = key.filter((k) => k !== cursor);
      const nullable = !column.notNull && rest.length === key.length;
      return { kind: 'keyset', by: [cursor, ...rest], cursor, key: rest, cursorNullable: nullable };
    }
    return { kind: 'keyset', by: key, key, cursorNullable: false };
  }
  if (cursor) return { kind: 'cursor only', by: [cursor] };
  throw new ConfigError(
    `Stream ${plan.name} has no primary key and no cursor column, so it cannot be read in pages: set streams[].primaryKey (or cursorColumn) for it.`,
  );
}

/** The position to start from: the checkpoint's, when it was taken paging the same way. */
function start(cursor: Cursor | null, by: string[], plan: Plan, ctx: PluginContext): Position {
  if (cursor === null) return { by, after: null, nulls: null };
  const c = cursor as Partial<Position> | null;
  const texts = (v: unknown, n: number) =>
    v === null ||
    v === undefined ||
    (Array.isArray(v) && v.length === n && v.every((x) => typeof x === 'string'));
  if (
    typeof c !== 'object' ||
    !Array.isArray(c?.by) ||
    !texts(c.after, c.by.length) ||
    !texts(c.nulls, c.by.length - 1)
  ) {
    throw new ConfigError(
      `Stream ${plan.name}: the checkpoint to resume from is not one this connector writes; reset the stream to read it again from the start.`,
    );
  }
  if (c.by.join('\u0000') !== by.join('\u0000')) {
    // The stream's cursor or key changed since (or a full refresh follows incremental reads):
    // positions in another order mean nothing in this one.
    ctx.log.warn(
      `Stream ${plan.name}: the checkpoint was taken ordering by ${c.by.join(', ')}, the stream is now read by ${by.join(', ')}: reading it from the start.`,
    );
    return { by, after: null, nulls: null };
  }
  return { by, after: c.after ?? null, nulls: c.nulls ?? null };
}

/** A position as the checkpoint's cursor (`nulls` only when a read of null cursors began). */
const saved = ({ by, after, nulls }: Position): Cursor =>
  nulls ? { by, after, nulls } : { by, after };

const list = (names: string[]) => names.map(ident).join(', ');

/** `(a, b) > ($1, $2)`, with the values pushed to params. */
function after(columns: string[], values: string[], params: string[]) {
  const placeholders = values.map((v) => `$${params.push(v)}`);
  return `(${list(columns)}) > (${placeholders.join(', ')})`;
}

/** A page of the rows ordered by `by` after `from`, matching `where`. */
async function page(
  db: Db,
  plan: Plan,
  by: string[],
  from: string[] | null,
  where: string[],
  limit: number,
): Promise<Row[]> {
  const params: string[] = [];
  const conditions = [...where];
  if (from) conditions.push(after(by, from, params));
  const text = `select ${list(plan.columns.map((c) => c.name))} from ${plan.from}${
    conditions.length ? ` where ${conditions.join(' and ')}` : ''
  } order by ${list(by)} limit $${params.push(String(limit))}`;
  return db.select(text, params);
}

function record(plan: Plan, row: Row): SourceMessage {
  const data: Record<string, unknown> = {};
  for (const c of plan.columns) data[c.name] = jsonValue(row[c.name], c.kind, c.element);
  if (plan.primaryKey.length > 0) return { type: 'record', data };
  // Without a key a record is known by its content: a changed row is a new record.
  const key = createHash('sha256').update(JSON.stringify(data)).digest('hex').slice(0, 32);
  return { type: 'record', data, key };
}

const texts = (row: Row, columns: string[]) => columns.map((c) => String(row[c]));

async function* keyset(
  db: Db,
  plan: Plan,
  paging: Extract<Paging, { kind: 'keyset' }>,
  position: Position,
  pageSize: number,
  signal: AbortSignal,
): AsyncGenerator<SourceMessage> {
  const checkpoint = (): SourceMessage => ({ type: 'checkpoint', cursor: saved(position) });
  // Rows with a cursor value (or every row, paging by the key), then those without one.
  const cursor = paging.cursor ? [`${ident(paging.cursor)} is not null`] : [];
  for (;;) {
    signal.throwIfAborted();
    const rows = await page(
      db,
      plan,
      paging.by,
      position.after,
      position.after ? [] : cursor,
      pageSize,
    );
    for (const row of rows) yield record(plan, row);
    if (rows.length > 0) {
      position.after = texts(rows.at(-1)!, paging.by);
      yield checkpoint();
    }
    if (rows.length < pageSize) break;
  }
  if (!paging.cursor || !paging.cursorNullable) return;
  for (;;) {
    signal.throwIfAborted();
    const rows = await page(
      db,
      plan,
      paging.key,
      position.nulls ?? null,
      [`${ident(paging.cursor)} is null`],
      pageSize,
    );
    for (const row of rows) yield record(plan, row);
    if (rows.length > 0) {
      position.nulls = texts(rows.at(-1)!, paging.key);
      yield checkpoint();
    }
    if (rows.length < pageSize) break;
  }
}

/**
 * Without a key, rows sharing a cursor value cannot be told apart, so a page never ends
 * between two of them: it runs up to the value of its `pageSize`-th row and takes every row
 * with that value.
 */
async function* byCursorOnly(
  db: Db,
  plan: Plan,
  cursor: string,
  position: Position,
  pageSize: number,
  signal: AbortSignal,
): AsyncGenerator<SourceMessage> {
  const column = ident(cursor);
  const columns = list(plan.columns.map((c) => c.name));
  for (;;) {
    signal.throwIfAborted();
    const params: string[] = [];
    const since = position.after
      ? `${column} > $${params.push(position.after[0]!)}`
      : `${column} is not null`;
    const [edge] = await db.select(
      `select ${column} as "edge" from ${plan.from} where ${since} order by ${column} offset $${params.push(String(pageSize - 1))} limit 1`,
      params,
    );
    params.pop();
    const upTo = edge ? ` and ${column} <= $${params.push(String(edge.edge))}` : '';
    const rows = await db.select(
      `select ${columns} from ${plan.from} where ${since}${upTo} order by ${column}`,
      params,
    );
    for (const row of rows) yield record(plan, row);
    if (rows.length > 0) {
      position.after = [String(rows.at(-1)![cursor])];
      yield { type: 'checkpoint', cursor: saved(position) };
    }
    if (!edge) break;
  }
}

export const read: SourceRead<PostgresConfig> = async function* (
  { config, stream, cursor, mode },
  ctx,
) {
  const db = open(config, ctx);
  try {
    const [plan] = await plans(db, config, { only: stream.name });
    const how = paging(plan!, mode);
    const position = start(cursor, how.by, plan!, ctx);
    let last: SourceMessage | undefined;
    const pages =
      how.kind === 'keyset'
        ? keyset(db, plan!, how, position, config.pageSize, ctx.signal)
        : byCursorOnly(db, plan!, how.by[0], position, config.pageSize, ctx.signal);
    for await (const message of pages) {
      last = message;
      yield message;
    }
    // Every read ends with a checkpoint, even one that found nothing new.
    if (last?.type !== 'checkpoint') yield { type: 'checkpoint', cursor: saved(position) };
  } finally {
    await db.close();
  }
};
