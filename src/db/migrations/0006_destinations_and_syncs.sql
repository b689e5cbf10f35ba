CREATE TABLE "destinations" (
	"id" uuid PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"plugin" text NOT NULL,
	"config" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"secrets" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"created_by" uuid
);
--> statement-breakpoint
CREATE TABLE "sync_row_errors" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"run_id" bigint NOT NULL,
	"sync_id" uuid NOT NULL,
	"profile_id" uuid NOT NULL,
	"action" text NOT NULL,
	"status" text NOT NULL,
	"reason" text NOT NULL,
	"at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "sync_runs" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"sync_id" uuid NOT NULL,
	"trigger" text NOT NULL,
	"status" text NOT NULL,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"finished_at" timestamp with time zone,
	"added" integer DEFAULT 0 NOT NULL,
	"updated" integer DEFAULT 0 NOT NULL,
	"removed" integer DEFAULT 0 NOT NULL,
	"rejected" integer DEFAULT 0 NOT NULL,
	"retried" integer DEFAULT 0 NOT NULL,
	"error" text
);
--> statement-breakpoint
CREATE TABLE "sync_state" (
	"sync_id" uuid NOT NULL,
	"profile_id" uuid NOT NULL,
	"values" jsonb NOT NULL,
	"status" text NOT NULL,
	"reason" text,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "sync_state_sync_id_profile_id_pk" PRIMARY KEY("sync_id","profile_id")
);
--> statement-breakpoint
CREATE TABLE "syncs" (
	"id" uuid PRIMARY KEY NOT NULL,
	"segment_id" uuid NOT NULL,
	"destination_id" uuid NOT NULL,
	"mode" text NOT NULL,
	"mapping" jsonb NOT NULL,
	"schedule" text,
	"next_run_at" timestamp with time zone,
	"auto_sync" boolean DEFAULT false NOT NULL,
	"lease_run_id" bigint,
	"lease_until" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"created_by" uuid
);
--> statement-breakpoint
CREATE UNIQUE INDEX "destinations_name_idx" ON "destinations" USING btree (lower("name"));--> statement-breakpoint
CREATE INDEX "sync_row_errors_run_idx" ON "sync_row_errors" USING btree ("run_id");--> statement-breakpoint
CREATE INDEX "sync_row_errors_profile_idx" ON "sync_row_errors" USING btree ("sync_id","profile_id");--> statement-breakpoint
CREATE INDEX "sync_runs_sync_idx" ON "sync_runs" USING btree ("sync_id","started_at");--> statement-breakpoint
CREATE INDEX "syncs_segment_idx" ON "syncs" USING btree ("segment_id");--> statement-breakpoint
CREATE INDEX "syncs_destination_idx" ON "syncs" USING btree ("destination_id");