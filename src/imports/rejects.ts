/**
 * The rejects of a source: the rows its streams' mappings refused, with the reason, to read a
 * page at a time or to download as CSV.
 */
import { sql } from 'drizzle-orm';
import { rows, type Db } from '../db/index.ts';
import { notFound } from '../errors.ts';
import { csvRow } from '../segments/members.ts';

export interface ImportReject {
  id: number;
  runId: number;
  stream: string;
  recordKey: string;
  /** The row as the connector read it. */
  row: Record<string, unknown>;
  reason: string;
  /** The field the reason is about, when it names one. */
  field: string | null;
  at: Date;
}

interface RejectRow {
  id: string | number;
  run_id: string | number;
  stream: string;
  record_key: string;
  row: Record<string, unknown>;
  reason: string;
  field: string | null;
  at: string | Date;
}

const toReject = (r: RejectRow): ImportReject => ({
  id: Number(r.id),
  runId: Number(r.run_id),
  stream: r.stream,
  recordKey: r.record_key,
  row: r.row,
  reason: r.reason,
  field: r.field,
  at: new Date(r.at),
});

export interface RejectFilter {
  runId?: number;
  stream?: string;
}

const where = (sourceId: string, filter: RejectFilter) =>
  sql`source_id = ${sourceId}
      ${filter.runId === undefined ? sql`` : sql`and run_id = ${filter.runId}`}
      ${filter.stream === undefined ? sql`` : sql`and stream = ${filter.stream}`}`;

async function assertSource(db: Db, sourceId: string) {
  const [found] = await rows(db, sql`select 1 from sources where id = ${sourceId}`);
  if (!found) throw notFound('Source', sourceId);
}

/**
 * A page of a source's rejects, oldest first (`after`: the last id of the previous page).
 *
 * @example
 * const { data } = await listRejects(db, sourceId, { limit: 50, runId: 12 });
 */
export async function listRejects(
  db: Db,
  sourceId: string,
  input: RejectFilter & { limit: number; after?: number },
): Promise<{ data: ImportReject[]; next: number | null }> {
  await assertSource(db, sourceId);
  const found = await rows<RejectRow>(
    db,
    sql`select * from import_rejects where ${where(sourceId, input)}
          ${input.after === undefined ? sql`` : sql`and id > ${input.after}`}
        order by id limit ${input.limit + 1}`,
  );
  const data = found.slice(0, input.limit).map(toReject);
  return { data, next: found.length > input.limit ? data.at(-1)!.id : null };
}

/** Rejects read per statement while exporting. */
const EXPORT_PAGE = 2000;

/**
 * Every matching reject as CSV lines (RFC 4180, formula-like cells defused): run_id, stream,
 * record_key, field, reason, rejected_at, then one column per field of the rows.
 */
export async function exportRejectsCsv(
  db: Db,
  sourceId: string,
  filter: RejectFilter,
): Promise<{ filename: string; lines: AsyncIterable<string> }> {
  await assertSource(db, sourceId);
  // The rows' fields, in the order they first appear.
  const keys = (
    await rows<{ key: string }>(
      db,
      sql`select k.key from import_rejects r, json_object_keys(r.row) with ordinality as k(key, n)
          where ${where(sourceId, filter)}
          group by k.key order by min(r.id), min(k.n)`,
    )
  ).map((r) => r.key);
  async function* lines() {
    yield csvRow(['run_id', 'stream', 'record_key', 'field', 'reason', 'rejected_at', ...keys]);
    let after = 0;
    for (;;) {
      const page = await rows<RejectRow>(
        db,
        sql`select * from import_rejects where ${where(sourceId, filter)} and id > ${after}
            order by id limit ${EXPORT_PAGE}`,
      );
      for (const r of page) {
        yield csvRow([
          String(r.run_id),
          r.stream,
          r.record_key,
          r.field,
          r.reason,
          new Date(r.at).toISOString(),
          ...keys.map((k) => cell(r.row[k])),
        ]);
      }
      if (page.length < EXPORT_PAGE) return;
      after = Number(page.at(-1)!.id);
    }
  }
  const suffix = filter.runId === undefined ? '' : `-run-${filter.runId}`;
  return { filename: `rejects-${sourceId}${suffix}.csv`, lines: lines() };
}

const cell = (v: unknown): string | null =>
  v === undefined || v === null ? null : typeof v === 'string' ? v : JSON.stringify(v);
