CREATE TABLE "event_cursors" (
	"name" text PRIMARY KEY NOT NULL,
	"position" bigint DEFAULT 0 NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "profiles" ADD COLUMN "rfm_recency" smallint;--> statement-breakpoint
ALTER TABLE "profiles" ADD COLUMN "rfm_frequency" smallint;--> statement-breakpoint
ALTER TABLE "profiles" ADD COLUMN "rfm_monetary" smallint;--> statement-breakpoint
ALTER TABLE "profiles" ADD COLUMN "rfm_as_of" timestamp with time zone;