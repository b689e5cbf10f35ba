/**
 * Deterministic Segment `track` traffic for the ingestion benchmark: batch `i` is always the
 * same events, so senders can build batches on demand (memory stays flat whatever the event
 * count) and the baseline can rebuild exactly the rows the hub was sent.
 */
import { createHash } from 'node:crypto';

const DAY_MS = 86_400_000;
const SPAN_MS = 90 * DAY_MS;

/** Share of each event name in the traffic: mostly browsing, a few purchases. */
const EVENTS: [name: string, weight: number][] = [
  ['Product Viewed', 38],
  ['Products Searched', 14],
  ['Product Added', 14],
  ['Cart Viewed', 9],
  ['Checkout Started', 7],
  ['Order Completed', 5],
  ['Signed In', 5],
  ['Product Removed', 4],
  ['Coupon Applied', 4],
];
const TOTAL_WEIGHT = EVENTS.reduce((sum, [, w]) => sum + w, 0);
const CATEGORIES = ['shoes', 'outerwear', 'bags', 'accessories', 'knitwear', 'denim', 'sport'];
const QUERIES = ['running shoes', 'rain jacket', 'leather bag', 'wool scarf', 'slim jeans'];
const LOCALES = ['en-GB', 'en-US', 'de-DE', 'fr-FR', 'nl-NL', 'es-ES'];
const LIBRARY = { name: '@segment/analytics-node', version: '3.1.0' };

/** mulberry32: small, fast, and good enough to make traffic look varied. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Stable UUID-shaped ids for one kind of thing in one run: the first groups are a hash of the
 * run and the kind, the last group the thing's number, so ids are unique by construction and
 * cost no hash per event (the senders share the machine with the hub they measure).
 */
function uuidsFor(label: string): (n: number) => string {
  const h = createHash('sha1').update(label).digest('hex');
  const prefix = `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-`;
  return (n) => prefix + n.toString(16).padStart(12, '0');
}

export interface TrackEvent {
  type: 'track';
  messageId: string;
  userId: string;
  anonymousId: string;
  event: string;
  timestamp: string;
  properties: Record<string, unknown>;
  context: Record<string, unknown>;
}

export interface Traffic {
  events: number;
  users: number;
  batchSize: number;
  batches: number;
  /** What it was made from: the same options make the same traffic, in any process. */
  options: TrafficOptions;
  /** Events `[i * batchSize, (i + 1) * batchSize)`, the same on every call. */
  batch(i: number): TrackEvent[];
  /** A stable profile id for a user: the baseline stores it where the hub stores the resolved one. */
  profileId(userId: string): string;
}

export interface TrafficOptions {
  events: number;
  users: number;
  batchSize: number;
  /** Makes message ids unique to this run. */
  runId: string;
  now: number;
}

/**
 * @example
 * const traffic = createTraffic({ events: 1_000_000, users: 100_000, batchSize: 500, runId: 'x', now: Date.now() });
 * const first = traffic.batch(0); // 500 events
 */
export function createTraffic(options: TrafficOptions): Traffic {
  const { events, users, batchSize, runId, now } = options;
  const userId = (u: number) => `user_${u.toString().padStart(7, '0')}`;
  // One device per user, a second one for every tenth: realistic enough for linking.
  const anonymousIds = uuidsFor(`${runId}/anon`);
  const anonymousId = (u: number, device: number) => anonymousIds(u * 2 + device);
  const profileIds = uuidsFor(`${runId}/profile`);

  function event(n: number): TrackEvent {
    const r = random(n * 2654435761 + 17);
    // Skewed: a few heavy users, a long tail of light ones.
    const u = Math.floor(users * r() ** 1.6);
    const device = u % 10 === 0 && r() < 0.5 ? 1 : 0;
    let pick = r() * TOTAL_WEIGHT;
    let name = EVENTS[0]![0];
    for (const [candidate, weight] of EVENTS) {
      if ((pick -= weight) < 0) {
        name = candidate;
        break;
      }
    }
    const category = CATEGORIES[Math.floor(r() * CATEGORIES.length)]!;
    const productId = `P${Math.floor(r() * 5000)
      .toString()
      .padStart(5, '0')}`;
    const price = Math.round((9 + r() * 240) * 100) / 100;
    let properties: Record<string, unknown>;
    switch (name) {
      case 'Order Completed': {
        const quantity = 1 + Math.floor(r() * 4);
        properties = {
          order_id: `O${n}`,
          revenue: Math.round(price * quantity * 100) / 100,
          currency: 'EUR',
          products: quantity,
          coupon: r() < 0.2 ? 'WINTER10' : null,
        };
        break;
      }
      case 'Products Searched':
        properties = {
          query: QUERIES[Math.floor(r() * QUERIES.length)],
          category,
          results: Math.floor(r() * 120),
          page: 1 + Math.floor(r() * 3),
          sort: 'relevance',
        };
        break;
      default:
        properties = {
          product_id: productId,
          sku: `${productId}-${Math.floor(r() * 6)}`,
          category,
          name: `${category} ${productId}`,
          price,
        };
    }
    return {
      type: 'track',
      messageId: `${runId}-${n}`,
      userId: userId(u),
      anonymousId: anonymousId(u, device),
      event: name,
      timestamp: new Date(now - Math.floor(r() * SPAN_MS)).toISOString(),
      properties,
      context: {
        library: LIBRARY,
        ip: `10.${u % 256}.${(u >> 8) % 256}.${device + 1}`,
        locale: LOCALES[u % LOCALES.length],
      },
    };
  }

  return {
    events,
    users,
    batchSize,
    batches: Math.ceil(events / batchSize),
    options,
    batch(i) {
      const out: TrackEvent[] = [];
      for (let n = i * batchSize; n < Math.min(events, (i + 1) * batchSize); n++)
        out.push(event(n));
      return out;
    },
    profileId: (user) => profileIds(Number(user.slice('user_'.length))),
  };
}
