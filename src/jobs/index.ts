/**
 * Work done outside a request: computing segments. The API asks for a computation through
 * {@link SegmentJobs}; the hub's worker runs it from the job queue (./queue.ts), while an app
 * without a worker (tests, embedding) runs it inline with {@link inlineJobs}.
 */
import type { Db } from '../db/index.ts';
import { computeSegment, type RunTrigger, type SegmentRun } from '../segments/compute.ts';

export interface SegmentJobs {
  /**
   * Compute a segment's membership: at once, returning the run, or soon on a worker, returning
   * null (the run then shows in the segment's computation history).
   */
  requestComputation(segmentId: string, trigger: RunTrigger): Promise<SegmentRun | null>;
  /** Run a sync soon on a worker (present when a job queue is). */
  requestSyncRun?(syncId: string, trigger: 'manual' | 'schedule' | 'auto'): Promise<void>;
  /** Import a source's stream soon on a worker (present when a job queue is). */
  requestImportRun?(
    sourceId: string,
    stream: string,
    trigger: 'manual' | 'schedule',
  ): Promise<void>;
}

/** Compute in the caller, before answering. */
export function inlineJobs(db: Db): SegmentJobs {
  return {
    requestComputation: (segmentId, trigger) => computeSegment(db, segmentId, trigger),
  };
}
