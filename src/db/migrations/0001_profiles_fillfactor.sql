-- profiles and profile_event_counts are updated on nearly every event: free space on each page
-- lets PostgreSQL update them in place (HOT) without touching their indexes.
ALTER TABLE "profiles" SET (fillfactor = 70);--> statement-breakpoint
ALTER TABLE "profile_event_counts" SET (fillfactor = 70);
