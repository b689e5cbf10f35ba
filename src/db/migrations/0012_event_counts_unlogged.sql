-- profile_event_counts holds nothing but what the fold derives from events
-- (src/profiles/fold.ts), and the fold writes a row of it for nearly every event: unlogged, that
-- costs no WAL and no full-page images after each checkpoint. A crash empties an unlogged table,
-- and the marker below with it; the counts are then rebuilt from the events before they are
-- read again (ensureEventCounts in src/profiles/fold.ts), and a segment query that reads them
-- meanwhile fails instead of finding nobody.
ALTER TABLE "profile_event_counts" SET UNLOGGED;--> statement-breakpoint
CREATE UNLOGGED TABLE "profile_event_counts_ready" (
  "ready" boolean PRIMARY KEY DEFAULT true CHECK ("ready")
);--> statement-breakpoint
-- The counts are complete now: they were logged until this migration.
INSERT INTO "profile_event_counts_ready" DEFAULT VALUES;--> statement-breakpoint
-- True, or an error while the counts are being rebuilt. Stable and without arguments, so that a
-- query calls it once (as a one-time filter), not once per row.
CREATE FUNCTION "event_counts_ready"() RETURNS boolean LANGUAGE plpgsql STABLE AS $$
BEGIN
  IF NOT EXISTS (SELECT FROM "profile_event_counts_ready") THEN
    RAISE EXCEPTION 'per-event counts are being rebuilt after a database crash'
      USING ERRCODE = '55000', HINT = 'Retry once the computed traits have caught up.';
  END IF;
  RETURN true;
END
$$;
