import type { HubConfig } from './config.ts';
import type { Db } from './db/index.ts';
import type { ImportDeps } from './imports/deps.ts';
import type { SegmentJobs } from './jobs/index.ts';
import type { Logger } from './log.ts';
import type { SyncDeps } from './sync/engine.ts';

/** What every request handler and job receives: the database, the configuration, a logger. */
export interface HubContext {
  db: Db;
  config: HubConfig;
  log: Logger;
  /** Where segment computations go; inline (in the request) when absent. */
  jobs?: SegmentJobs;
  /** Destination plugins, the secret box and shared limits, for destinations and syncs. */
  sync?: SyncDeps;
  /**
   * Source connectors and the secret box, for sources and imports; when absent, built on first
   * use from `sync` (its box and log) with the bundled and installed connectors.
   */
  imports?: ImportDeps;
}
