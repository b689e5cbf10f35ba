import { Hono } from 'hono';
import type { HubContext } from '../context.ts';

/** The Segment-compatible tracking API, mounted at `/v1`. (Being written.) */
export function trackingRoutes(_ctx: HubContext): Hono {
  return new Hono();
}
