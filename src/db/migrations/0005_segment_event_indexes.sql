-- Indexes for segment conditions on events (src/segments/compile.ts): purchases, events by
-- name and by type, each within a time window. The included columns let the planner answer
-- "who did X at least N times since T" from the index alone. Written by hand because drizzle's
-- schema cannot express INCLUDE; drizzle-kit never sees them, so it never drops them.
CREATE INDEX IF NOT EXISTS "events_purchase_time_idx" ON "events" ("timestamp") INCLUDE ("profile_id", "revenue") WHERE "revenue" IS NOT NULL;--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "events_name_time_idx" ON "events" ("name", "timestamp") INCLUDE ("profile_id");--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "events_type_time_idx" ON "events" ("type", "timestamp") INCLUDE ("profile_id");
