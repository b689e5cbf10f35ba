import { resolve } from 'node:path';
import { CronExpressionParser } from 'cron-parser';

/** A purchase event and the property holding its revenue. */
export interface PurchaseEvent {
  event: string;
  revenueProperty: string;
}

export interface HubConfig {
  port: number;
  /** Where the embedded database and generated keys live. */
  dataDir: string;
  /** PostgreSQL URL; embedded PGlite when absent. */
  databaseUrl?: string;
  /** Used as the admin token on first start instead of a generated one. */
  initialAdminToken?: string;
  /** Used as the tracking write key on first start instead of a generated one. */
  initialWriteKey?: string;
  /** Events that count as purchases for purchase_count / total_spent. */
  purchaseEvents: PurchaseEvent[];
  /** Trait sources, highest priority first; unlisted sources rank below all listed ones. */
  traitSourcePriority: string[];
  /** Identity types that only identify a device or browser: a profile holding only these is a visitor. */
  anonymousIdentityTypes: string[];
  /** ISO country used to read phone numbers written without a country code, if any. */
  defaultPhoneCountry?: string;
  /** How often the background fold looks for new events to fold into computed traits. */
  foldIntervalMs: number;
  /**
   * The longest the fold rests while ingestion is busy (see `refreshPause` in
   * src/jobs/worker.ts): how far computed traits may fall behind to fold bigger windows.
   */
  foldMaxIntervalMs: number;
  /** How many segments one owner (API token) may have. */
  maxSegmentsPerOwner: number;
  /** When the RFM scores are recomputed: a cron expression in UTC. */
  rfmSchedule: string;
  /**
   * The key sealing destination secrets (32 bytes, base64); generated into the data directory
   * when unset. Every process of one hub must use the same key.
   */
  secretKey?: string;
  /** The largest file a source upload may be, in bytes as sent (compressed when gzip). */
  maxUploadBytes: number;
  /** A config-as-code folder `start` applies before serving (`npm start` gives `config/`). */
  configDir?: string;
  /**
   * How far (percent) the V8 heap may grow past its live size before a full collection;
   * 0 leaves V8's own rule (up to 300%). See src/memory.ts.
   */
  heapGrowthPercent: number;
}

/** GA4's `purchase`/`value` and the Segment e-commerce spec's `Order Completed`/`revenue`. */
export const DEFAULT_PURCHASE_EVENTS: PurchaseEvent[] = [
  { event: 'purchase', revenueProperty: 'value' },
  { event: 'Order Completed', revenueProperty: 'revenue' },
];

/**
 * Parse `event:property,event:property`, e.g. `purchase:value,Order Completed:revenue`.
 * A name holding a colon can be written with the property after the last colon.
 */
export function parsePurchaseEvents(text: string): PurchaseEvent[] {
  return text
    .split(',')
    .map((part) => part.trim())
    .filter(Boolean)
    .map((part) => {
      const at = part.lastIndexOf(':');
      if (at <= 0 || at === part.length - 1) {
        throw new Error(
          `AUDIENCEHUB_PURCHASE_EVENTS: "${part}" is not of the form event:revenueProperty`,
        );
      }
      return { event: part.slice(0, at).trim(), revenueProperty: part.slice(at + 1).trim() };
    });
}

const list = (text: string | undefined) =>
  (text ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

/** A whole number from the environment, at least `min` (1: "positive", 0: "0 or more"). */
function integer(env: NodeJS.ProcessEnv, name: string, fallback: number, min: 0 | 1 = 1): number {
  const text = env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min) {
    const kind = min === 1 ? 'a positive whole number' : 'a whole number (0 or more)';
    throw new Error(`${name}: "${text}" is not ${kind}`);
  }
  return value;
}

function cron(env: NodeJS.ProcessEnv, name: string, fallback: string): string {
  const text = env[name]?.trim() || fallback;
  try {
    CronExpressionParser.parse(text, { tz: 'UTC' });
  } catch (error) {
    throw new Error(`${name}: "${text}" is not a cron expression (${(error as Error).message})`, {
      cause: error,
    });
  }
  return text;
}

/** The configuration from the environment, with defaults for everything. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): HubConfig {
  const port = Number(env.PORT ?? 3000);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`PORT: "${env.PORT}" is not a port number`);
  }
  return {
    port,
    dataDir: resolve(env.AUDIENCEHUB_DATA_DIR ?? './data'),
    databaseUrl: env.DATABASE_URL || undefined,
    initialAdminToken: env.AUDIENCEHUB_ADMIN_TOKEN || undefined,
    initialWriteKey: env.AUDIENCEHUB_WRITE_KEY || undefined,
    purchaseEvents: env.AUDIENCEHUB_PURCHASE_EVENTS
      ? parsePurchaseEvents(env.AUDIENCEHUB_PURCHASE_EVENTS)
      : DEFAULT_PURCHASE_EVENTS,
    traitSourcePriority: list(env.AUDIENCEHUB_TRAIT_PRIORITY),
    anonymousIdentityTypes: env.AUDIENCEHUB_ANONYMOUS_IDENTITY_TYPES
      ? list(env.AUDIENCEHUB_ANONYMOUS_IDENTITY_TYPES)
      : ['anonymous_id'],
    defaultPhoneCountry: env.AUDIENCEHUB_PHONE_COUNTRY || undefined,
    foldIntervalMs: integer(env, 'AUDIENCEHUB_FOLD_INTERVAL_MS', 250),
    foldMaxIntervalMs: integer(env, 'AUDIENCEHUB_FOLD_MAX_INTERVAL_MS', 3000),
    maxSegmentsPerOwner: integer(env, 'AUDIENCEHUB_MAX_SEGMENTS_PER_OWNER', 50),
    rfmSchedule: cron(env, 'AUDIENCEHUB_RFM_SCHEDULE', '15 2 * * *'),
    secretKey: env.AUDIENCEHUB_SECRET_KEY || undefined,
    maxUploadBytes: integer(env, 'AUDIENCEHUB_MAX_UPLOAD_BYTES', 256 * 1024 * 1024),
    configDir: env.AUDIENCEHUB_CONFIG_DIR || undefined,
    heapGrowthPercent: integer(env, 'AUDIENCEHUB_HEAP_GROWTH_PERCENT', 100, 0),
  };
}

/** A configuration for tests and embedding: defaults, then `overrides`. */
export function testConfig(overrides: Partial<HubConfig> = {}): HubConfig {
  return { ...loadConfig({}), ...overrides };
}
