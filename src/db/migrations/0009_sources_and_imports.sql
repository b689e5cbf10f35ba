CREATE TABLE "import_rejects" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"run_id" bigint NOT NULL,
	"source_id" uuid NOT NULL,
	"stream" text NOT NULL,
	"record_key" text NOT NULL,
	"row" json NOT NULL,
	"reason" text NOT NULL,
	"field" text,
	"at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "import_row_digests" (
	"stream_id" bigint NOT NULL,
	"digest" uuid NOT NULL,
	"key_digest" uuid NOT NULL,
	CONSTRAINT "import_row_digests_stream_id_digest_pk" PRIMARY KEY("stream_id","digest")
);
--> statement-breakpoint
CREATE TABLE "import_runs" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"source_id" uuid NOT NULL,
	"stream" text NOT NULL,
	"trigger" text NOT NULL,
	"status" text NOT NULL,
	"start_cursor" jsonb,
	"rows_read" integer DEFAULT 0 NOT NULL,
	"rows_imported" integer DEFAULT 0 NOT NULL,
	"rows_duplicate" integer DEFAULT 0 NOT NULL,
	"rows_rejected" integer DEFAULT 0 NOT NULL,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"finished_at" timestamp with time zone,
	"error" text
);
--> statement-breakpoint
CREATE TABLE "import_streams" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"source_id" uuid NOT NULL,
	"stream" text NOT NULL,
	"mapping" jsonb NOT NULL,
	"enabled" boolean DEFAULT true NOT NULL,
	"cursor" jsonb,
	"cursor_at" timestamp with time zone,
	"lease_run_id" bigint,
	"lease_until" timestamp with time zone,
	"failure_alerted_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "sources" (
	"id" uuid PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"connector" text NOT NULL,
	"config" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"secrets" text NOT NULL,
	"schedule" text,
	"next_run_at" timestamp with time zone,
	"expected_interval_minutes" integer,
	"alert_webhook" text,
	"max_reject_share" double precision DEFAULT 0.1 NOT NULL,
	"managed_by" text,
	"last_success_at" timestamp with time zone,
	"overdue_alerted_at" timestamp with time zone,
	"created_by" uuid,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX "import_rejects_record_idx" ON "import_rejects" USING btree ("source_id","stream","record_key");--> statement-breakpoint
CREATE INDEX "import_rejects_run_idx" ON "import_rejects" USING btree ("run_id","id");--> statement-breakpoint
CREATE INDEX "import_runs_source_idx" ON "import_runs" USING btree ("source_id","started_at");--> statement-breakpoint
CREATE UNIQUE INDEX "import_streams_source_stream_idx" ON "import_streams" USING btree ("source_id","stream");--> statement-breakpoint
CREATE UNIQUE INDEX "sources_name_idx" ON "sources" USING btree (lower("name"));--> statement-breakpoint
CREATE UNIQUE INDEX "sources_managed_by_idx" ON "sources" USING btree ("managed_by");--> statement-breakpoint
CREATE INDEX "sources_next_run_idx" ON "sources" USING btree ("next_run_at");