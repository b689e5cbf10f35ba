/**
 * Computing segment membership: full runs (every profile; on creation, on a schedule, on
 * demand) and incremental runs (only the profiles new data touched). Both reconcile the stored
 * members with what the rules select, in one statement inside one transaction, recording who
 * entered and left. A run that fails or is cut off leaves the previous membership as it was.
 */
import { sql, type SQL } from 'drizzle-orm';
import { json, rows, withRetry, type Db } from '../db/index.ts';
import { HubError, notFound } from '../errors.ts';
import { compileSegment, type ResolvedSegment } from './compile.ts';
import { parseSegmentRules, type SegmentRules } from './rules.ts';

export type RunTrigger = 'create' | 'manual' | 'schedule' | 'update' | 'upload' | 'data';

/** One computation of a segment, as recorded in the computation history. */
export interface SegmentRun {
  id: number;
  segmentId: string;
  kind: 'full' | 'incremental';
  trigger: RunTrigger;
  status: 'running' | 'succeeded' | 'failed';
  startedAt: Date;
  finishedAt: Date | null;
  size: number | null;
  entered: number | null;
  exited: number | null;
  evaluated: number | null;
  error: string | null;
}

/** What a computation reads of a segment. */
export interface SegmentRow {
  id: string;
  name: string;
  type: string;
  rules: unknown;
}

/**
 * Look up a segment the rules reference: dynamic ones are inlined, the others read as stored.
 * `visible` (over alias `s`) limits what may be referenced, e.g. to what a caller may see.
 */
export function segmentResolver(db: Db, visible: SQL = sql`true`) {
  return async (id: string): Promise<ResolvedSegment | null> => {
    if (!UUID.test(id)) return null;
    const [row] = await rows<SegmentRow>(
      db,
      sql`select id, name, type, rules from segments s where s.id = ${id} and ${visible}`,
    );
    if (!row) return null;
    if (row.type === 'dynamic' && row.rules) {
      return { rules: row.rules as SegmentRules, name: row.name };
    }
    return { stored: true, name: row.name };
  };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Compute a segment's membership from its rules over every profile, now. Static segments are
 * computed this way once, when created from rules; uploaded lists never are.
 *
 * Crash safety: the run is recorded as `running` first, in its own transaction; the
 * reconciliation commits with the run's outcome, so a run cut off mid-way leaves the members
 * as they were and its record `running` — and the next run of the segment, once it holds the
 * segment's lock, marks such leftovers failed.
 *
 * @example
 * const run = await computeSegment(db, segmentId, 'manual');
 * console.log(run.size, run.entered, run.exited);
 */
export async function computeSegment(
  db: Db,
  segmentId: string,
  trigger: RunTrigger,
): Promise<SegmentRun> {
  return recordedRun(db, segmentId, trigger, async (tx, segment, runId) => {
    if (!segment.rules) {
      throw new HubError(
        409,
        'segment-not-computable',
        'Segment has no rules',
        'This segment is an uploaded list: its members change only by uploading a new list.',
      );
    }
    const target = await compileSegment(parseSegmentRules(segment.rules), {
      resolveSegment: segmentResolver(tx),
      segmentId: segment.id,
      segmentName: segment.name,
    });
    return reconcile(tx, segmentId, runId, target, null);
  });
}

/**
 * Run `body` as one recorded full run of a segment: the run is recorded as `running` in its own
 * transaction first; then, holding the segment's lock, runs left `running` by a process that
 * died are marked failed, `body` changes the membership, and the size and the run's outcome are
 * stored — all committed together, or not at all and the run marked failed.
 */
export async function recordedRun(
  db: Db,
  segmentId: string,
  trigger: RunTrigger,
  body: (
    tx: Db,
    segment: SegmentRow,
    runId: number,
  ) => Promise<{ entered: number; exited: number }>,
): Promise<SegmentRun> {
  const [started] = await rows<{ id: string | number }>(
    db,
    sql`insert into segment_runs (segment_id, kind, trigger, status)
        select id, 'full', ${trigger}, 'running' from segments where id = ${segmentId}
        returning id`,
  );
  if (!started) throw notFound('Segment', segmentId);
  const runId = Number(started.id);
  try {
    await withRetry(db, async (tx) => {
      const segment = await lockSegment(tx, segmentId);
      await tx.execute(
        sql`update segment_runs set status = 'failed', finished_at = now(),
              error = 'interrupted: the process stopped before the run finished'
            where segment_id = ${segmentId} and status = 'running' and id <> ${runId}`,
      );
      const { entered, exited } = await body(tx, segment, runId);
      const size = await refreshSize(tx, segmentId);
      await finishRun(tx, runId, { size, entered, exited });
    });
  } catch (error) {
    await db.execute(
      sql`update segment_runs set status = 'failed', finished_at = now(), error = ${runError(error)}
          where id = ${runId} and status = 'running'`,
    );
    throw error;
  }
  return (await getRun(db, runId))!;
}

/** Lock the segment for a computation (others wait) and read it. */
async function lockSegment(tx: Db, segmentId: string): Promise<SegmentRow> {
  const [segment] = await rows<SegmentRow>(
    tx,
    sql`select id, name, type, rules from segments where id = ${segmentId} for update`,
  );
  if (!segment) throw notFound('Segment', segmentId);
  return segment;
}

/**
 * Make the stored members of a segment agree with `target` (a query selecting `profile_id`),
 * over every profile or only over `scope` (a json array of profile ids), recording each entry
 * and exit under the run. One statement: it reads one snapshot and writes all or nothing.
 */
export async function reconcile(
  tx: Db,
  segmentId: string,
  runId: number,
  target: SQL,
  scope: string[] | null,
): Promise<{ entered: number; exited: number }> {
  const inScope = scope
    ? sql`and m.profile_id in (select x::uuid from json_array_elements_text(${json(scope)}) as x)`
    : sql``;
  const [result] = await rows<{ entered: number; exited: number }>(
    tx,
    sql`with target as materialized (${target}),
        exited as (
          delete from segment_members m
          where m.segment_id = ${segmentId} ${inScope}
            and not exists (select 1 from target t where t.profile_id = m.profile_id)
          returning m.profile_id
        ),
        entered as (
          -- The primary key finds those already in: no anti-join against the table being
          -- written (which a planner that thinks it empty turns into a scan per row).
          insert into segment_members (segment_id, profile_id)
          select ${segmentId}::uuid, t.profile_id from target t
          on conflict (segment_id, profile_id) do nothing
          returning profile_id
        ),
        changes as (
          insert into segment_membership_changes (segment_id, profile_id, entered, run_id)
          select ${segmentId}::uuid, profile_id, true, ${runId}::bigint from entered
          union all
          select ${segmentId}::uuid, profile_id, false, ${runId}::bigint from exited
        )
        select (select count(*)::int from entered) as entered,
               (select count(*)::int from exited) as exited`,
  );
  return result!;
}

/** Store the segment's size now (and as today's in the daily series); returns it. */
export async function refreshSize(tx: Db, segmentId: string): Promise<number> {
  const [row] = await rows<{ size: number }>(
    tx,
    sql`update segments set last_computed_at = now(),
          size = (select count(*)::int from segment_members where segment_id = ${segmentId})
        where id = ${segmentId}
        returning size`,
  );
  await tx.execute(
    sql`insert into segment_daily_sizes (segment_id, day, size)
        values (${segmentId}, (now() at time zone 'utc')::date, ${row!.size})
        on conflict (segment_id, day) do update set size = excluded.size`,
  );
  return row!.size;
}

async function finishRun(
  tx: Db,
  runId: number,
  counts: { size: number; entered: number; exited: number; evaluated?: number },
) {
  await tx.execute(
    sql`update segment_runs set status = 'succeeded', finished_at = now(), size = ${counts.size},
          entered = ${counts.entered}, exited = ${counts.exited},
          evaluated = ${counts.evaluated ?? null}
        where id = ${runId}`,
  );
}

/**
 * What a failed run records: the reason, never a stack, the statement or its parameters
 * (which may hold identifiers): for a failed query, the database's own message.
 */
export function runError(error: unknown): string {
  if (error instanceof HubError) return error.detail ?? error.message;
  const cause = (error as { cause?: unknown })?.cause;
  const failedQuery = error instanceof Error && error.message.startsWith('Failed query:');
  const source = failedQuery && cause instanceof Error ? cause : error;
  const message = source instanceof Error ? source.message : String(source);
  return message.split('\nparams:')[0]!.slice(0, 500);
}

/** The cursor of incremental computation in `event_cursors`; it trails the fold's. */
const INCREMENTAL_CURSOR = 'segments';

export interface IncrementalResult {
  /** Events whose profiles were re-evaluated. */
  events: number;
  /** Profiles re-evaluated. */
  profiles: number;
  /** Membership changes across all dynamic segments. */
  entered: number;
  exited: number;
  /** The segments whose membership changed. */
  changedSegments: string[];
}

/**
 * Re-evaluate every dynamic segment for the profiles that data folded since the last call
 * touched (new events, identifies, imports, and the survivors of merges), and take merged-away
 * profiles out of the segments they were in. Reads the events the fold has already folded, so
 * computed traits are current; advances its own cursor in the same transaction, so a crash
 * means the same profiles are evaluated again, never skipped.
 *
 * @example
 * await foldNewEvents(db);
 * await computeIncrementally(db); // memberships now reflect the folded events
 */
export async function computeIncrementally(
  db: Db,
  options: { maxEvents?: number } = {},
): Promise<IncrementalResult & { more: boolean }> {
  const maxEvents = options.maxEvents ?? 50_000;
  return withRetry(db, async (tx) => {
    await tx.execute(
      sql`insert into event_cursors (name) values (${INCREMENTAL_CURSOR})
          on conflict (name) do nothing`,
    );
    const [cursor] = await rows<{ from: string | number; folded: string | number | null }>(
      tx,
      sql`select c.position as from,
            (select position from event_cursors where name = 'computed-traits') as folded
          from event_cursors c where c.name = ${INCREMENTAL_CURSOR} for update skip locked`,
    );
    const none = {
      events: 0,
      profiles: 0,
      entered: 0,
      exited: 0,
      changedSegments: [],
      more: false,
    };
    // Locked: another process is computing incrementally.
    if (!cursor) return none;
    const from = Number(cursor.from);
    const horizon = Number(cursor.folded ?? 0);
    const to = Math.min(horizon, from + maxEvents);
    if (to <= from) return none;
    const advance = () =>
      tx.execute(
        sql`update event_cursors set position = ${to}, updated_at = now()
            where name = ${INCREMENTAL_CURSOR}`,
      );
    // Without any segment there is nothing to evaluate and no member to take out. A segment
    // created after this read is computed in full from data that includes this window.
    const [any] = await rows<{ exists: boolean }>(tx, sql`select exists (select from segments)`);
    if (!any!.exists) {
      await advance();
      return { ...none, more: to < horizon };
    }
    // The window's profiles first, then each looked up by key: a join condition on merged_into
    // lets the planner (without statistics) read every live profile through its index, a cost
    // that grows with the table rather than the window. Liveness is filtered here, not in SQL.
    const window = await rows<{ id: string; n: number; merged_into: string | null }>(
      tx,
      sql`with t as materialized (
            select profile_id as id, count(*)::int as n from events
            where id > ${from} and id <= ${to}
            group by profile_id
          )
          select t.id, t.n, p.merged_into from t
          cross join lateral (select merged_into from profiles where id = t.id) p`,
    );
    const touched = window.filter((t) => t.merged_into === null);
    const ids = touched.map((t) => t.id);
    const result: IncrementalResult = {
      events: touched.reduce((n, t) => n + t.n, 0),
      profiles: ids.length,
      entered: 0,
      exited: 0,
      changedSegments: [],
    };
    const changedSegments = new Set<string>();
    if (ids.length > 0) {
      const segments = await rows<SegmentRow>(
        tx,
        sql`select id, name, type, rules from segments
            where type = 'dynamic' and rules is not null order by id`,
      );
      for (const segment of segments) {
        const changed = await computeForProfiles(tx, segment, ids);
        result.entered += changed.entered;
        result.exited += changed.exited;
        if (changed.entered + changed.exited > 0) changedSegments.add(segment.id);
      }
      const gone = await removeMergedAway(tx, ids);
      result.exited += gone.length;
      gone.forEach((id) => changedSegments.add(id));
    }
    result.changedSegments = [...changedSegments].sort();
    await advance();
    return { ...result, more: to < horizon };
  });
}

/** One dynamic segment, re-evaluated for `ids`; a run is recorded when membership changed. */
async function computeForProfiles(tx: Db, segment: SegmentRow, ids: string[]) {
  await lockSegment(tx, segment.id);
  const [run] = await rows<{ id: string | number }>(
    tx,
    sql`insert into segment_runs (segment_id, kind, trigger, status)
        values (${segment.id}, 'incremental', 'data', 'running') returning id`,
  );
  const runId = Number(run!.id);
  const target = await compileSegment(parseSegmentRules(segment.rules), {
    resolveSegment: segmentResolver(tx),
    segmentId: segment.id,
    segmentName: segment.name,
    profileIds: ids,
  });
  const changed = await reconcile(tx, segment.id, runId, target, ids);
  if (changed.entered + changed.exited === 0) {
    await tx.execute(sql`delete from segment_runs where id = ${runId}`);
    return changed;
  }
  const size = await refreshSize(tx, segment.id);
  await finishRun(tx, runId, { size, ...changed, evaluated: ids.length });
  return changed;
}

/**
 * Profiles merged into one of `survivors` leave every segment they were in (the survivor is
 * evaluated in their place). Recorded as exits without a run.
 */
async function removeMergedAway(tx: Db, survivors: string[]): Promise<string[]> {
  const removed = await rows<{ segment_id: string }>(
    tx,
    sql`with gone as (
          delete from segment_members m using merges g
          where g.merged_id = m.profile_id
            and g.survivor_id in (
              select x::uuid from json_array_elements_text(${json(survivors)}) as x)
          returning m.segment_id, m.profile_id
        ),
        changes as (
          insert into segment_membership_changes (segment_id, profile_id, entered)
          select segment_id, profile_id, false from gone
        )
        select segment_id from gone`,
  );
  for (const segmentId of new Set(removed.map((r) => r.segment_id))) {
    await refreshSize(tx, segmentId);
  }
  // One entry per membership removed: the caller counts them and collects the segments.
  return removed.map((r) => r.segment_id);
}

/** A run, by id. */
export async function getRun(db: Db, runId: number): Promise<SegmentRun | undefined> {
  const [row] = await rows<RunRow>(db, sql`select * from segment_runs where id = ${runId}`);
  return row && toRun(row);
}

/** A segment's runs, newest first. */
export async function listRuns(
  db: Db,
  segmentId: string,
  options: { limit?: number; before?: number } = {},
): Promise<SegmentRun[]> {
  const before = options.before === undefined ? sql`` : sql`and id < ${options.before}`;
  const found = await rows<RunRow>(
    db,
    sql`select * from segment_runs where segment_id = ${segmentId} ${before}
        order by id desc limit ${options.limit ?? 50}`,
  );
  return found.map(toRun);
}

interface RunRow {
  id: string | number;
  segment_id: string;
  kind: SegmentRun['kind'];
  trigger: RunTrigger;
  status: SegmentRun['status'];
  started_at: string | Date;
  finished_at: string | Date | null;
  size: number | null;
  entered: number | null;
  exited: number | null;
  evaluated: number | null;
  error: string | null;
}

const toRun = (r: RunRow): SegmentRun => ({
  id: Number(r.id),
  segmentId: r.segment_id,
  kind: r.kind,
  trigger: r.trigger,
  status: r.status,
  startedAt: new Date(r.started_at),
  finishedAt: r.finished_at === null ? null : new Date(r.finished_at),
  size: r.size,
  entered: r.entered,
  exited: r.exited,
  evaluated: r.evaluated,
  error: r.error,
});
