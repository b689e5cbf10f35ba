CREATE TABLE "segment_daily_sizes" (
	"segment_id" uuid NOT NULL,
	"day" date NOT NULL,
	"size" integer NOT NULL,
	CONSTRAINT "segment_daily_sizes_segment_id_day_pk" PRIMARY KEY("segment_id","day")
);
--> statement-breakpoint
CREATE TABLE "segment_members" (
	"segment_id" uuid NOT NULL,
	"profile_id" uuid NOT NULL,
	"entered_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "segment_members_segment_id_profile_id_pk" PRIMARY KEY("segment_id","profile_id")
);
--> statement-breakpoint
CREATE TABLE "segment_membership_changes" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"segment_id" uuid NOT NULL,
	"profile_id" uuid NOT NULL,
	"entered" boolean NOT NULL,
	"at" timestamp with time zone DEFAULT now() NOT NULL,
	"run_id" bigint
);
--> statement-breakpoint
CREATE TABLE "segment_runs" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"segment_id" uuid NOT NULL,
	"kind" text NOT NULL,
	"trigger" text NOT NULL,
	"status" text NOT NULL,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"finished_at" timestamp with time zone,
	"size" integer,
	"entered" integer,
	"exited" integer,
	"evaluated" integer,
	"error" text
);
--> statement-breakpoint
CREATE TABLE "segments" (
	"id" uuid PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"description" text DEFAULT '' NOT NULL,
	"type" text NOT NULL,
	"visibility" text NOT NULL,
	"owner_id" uuid NOT NULL,
	"owner_name" text NOT NULL,
	"rules" jsonb,
	"schedule" text,
	"next_run_at" timestamp with time zone,
	"template" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"size" integer DEFAULT 0 NOT NULL,
	"last_computed_at" timestamp with time zone
);
--> statement-breakpoint
CREATE INDEX "segment_members_profile_idx" ON "segment_members" USING btree ("profile_id");--> statement-breakpoint
CREATE INDEX "segment_membership_changes_segment_idx" ON "segment_membership_changes" USING btree ("segment_id","at");--> statement-breakpoint
CREATE INDEX "segment_membership_changes_profile_idx" ON "segment_membership_changes" USING btree ("profile_id");--> statement-breakpoint
CREATE INDEX "segment_runs_segment_idx" ON "segment_runs" USING btree ("segment_id","started_at");--> statement-breakpoint
CREATE UNIQUE INDEX "segments_owner_name_idx" ON "segments" USING btree ("owner_id",lower("name"));--> statement-breakpoint
CREATE INDEX "segments_next_run_idx" ON "segments" USING btree ("next_run_at");