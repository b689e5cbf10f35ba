/**
 * audiencehub's plugin SDK: everything a destination plugin or a source connector imports
 * (`audiencehub/sdk`).
 *
 * @example
 * import { defineDestination, secret, z, type DestinationSync } from 'audiencehub/sdk';
 *
 * const sync: DestinationSync<Config> = async ({ config, batch }, ctx) => {
 *   const http = ctx.http({ baseUrl: config.baseUrl, vendor: 'Acme' });
 *   await http.request({ method: 'POST', path: '/contacts', body: batch.map((r) => r.fields) });
 *   return batch.map((r) => ({ id: r.id, status: 'ok' }));
 * };
 */
export { z } from 'zod';
export {
  defineDestination,
  secret,
  secretKeys,
  type CheckResult,
  type DestinationCheck,
  type DestinationField,
  type DestinationFields,
  type DestinationFinish,
  type DestinationLimits,
  type DestinationPlugin,
  type DestinationPrepare,
  type DestinationSync,
  type PluginContext,
  type RowResult,
  type SyncInfo,
  type SyncRow,
} from './destination.ts';
export {
  defineSource,
  type Cursor,
  type ReadMode,
  type SourceCheck,
  type SourceConnector,
  type SourceDiscover,
  type SourceField,
  type SourceLimits,
  type SourceMessage,
  type SourceRead,
  type SourceStream,
} from './source.ts';
export { ConfigError, TransientError, VendorError, isTransient } from './errors.ts';
export {
  destinationConformance,
  type ConformanceCheck,
  type ConformanceTarget,
  type FaultInjector,
} from './conformance.ts';
export {
  sourceConformance,
  recordKey,
  type SourceConformanceTarget,
} from './source-conformance.ts';
export {
  classifyHttpFailure,
  createHttpClient,
  retryAfterMs,
  vendorMessage,
  type HttpClient,
  type HttpClientOptions,
  type HttpRequest,
  type HttpResponse,
} from './http.ts';
