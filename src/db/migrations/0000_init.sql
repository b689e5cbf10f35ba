CREATE TABLE "api_tokens" (
	"id" uuid PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"role" text NOT NULL,
	"prefix" text NOT NULL,
	"hash" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"created_by" uuid,
	"last_used_at" timestamp with time zone,
	"revoked_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "audit_log" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"at" timestamp with time zone DEFAULT now() NOT NULL,
	"actor_id" uuid,
	"actor_name" text,
	"action" text NOT NULL,
	"subject_type" text NOT NULL,
	"subject_id" text,
	"details" jsonb DEFAULT '{}'::jsonb NOT NULL
);
--> statement-breakpoint
CREATE TABLE "events" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"profile_id" uuid NOT NULL,
	"source" text NOT NULL,
	"message_id" text NOT NULL,
	"type" text NOT NULL,
	"name" text,
	"properties" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"context" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"revenue" numeric(18, 4),
	"timestamp" timestamp with time zone NOT NULL,
	"original_timestamp" timestamp with time zone,
	"sent_at" timestamp with time zone,
	"received_at" timestamp with time zone NOT NULL,
	"user_id" text,
	"anonymous_id" text
);
--> statement-breakpoint
CREATE TABLE "identities" (
	"type" text NOT NULL,
	"value" text NOT NULL,
	"profile_id" uuid NOT NULL,
	"source" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "identities_type_value_pk" PRIMARY KEY("type","value")
);
--> statement-breakpoint
CREATE TABLE "ingest_rejections" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"write_key_id" uuid,
	"message_id" text,
	"batch_index" integer,
	"reason" text NOT NULL,
	"errors" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"received_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "merges" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"survivor_id" uuid NOT NULL,
	"merged_id" uuid NOT NULL,
	"cause" jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "profile_event_counts" (
	"profile_id" uuid NOT NULL,
	"name" text NOT NULL,
	"count" integer NOT NULL,
	"first_at" timestamp with time zone NOT NULL,
	"last_at" timestamp with time zone NOT NULL,
	CONSTRAINT "profile_event_counts_profile_id_name_pk" PRIMARY KEY("profile_id","name")
);
--> statement-breakpoint
CREATE TABLE "profiles" (
	"id" uuid PRIMARY KEY NOT NULL,
	"kind" text DEFAULT 'visitor' NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"merged_into" uuid,
	"merged_at" timestamp with time zone,
	"traits" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"first_seen_at" timestamp with time zone,
	"last_seen_at" timestamp with time zone,
	"event_count" integer DEFAULT 0 NOT NULL,
	"purchase_count" integer DEFAULT 0 NOT NULL,
	"total_spent" numeric(18, 4) DEFAULT '0' NOT NULL,
	"last_purchase_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "traits" (
	"profile_id" uuid NOT NULL,
	"source" text NOT NULL,
	"key" text NOT NULL,
	"value" jsonb NOT NULL,
	"observed_at" timestamp with time zone NOT NULL,
	CONSTRAINT "traits_profile_id_source_key_pk" PRIMARY KEY("profile_id","source","key")
);
--> statement-breakpoint
CREATE TABLE "write_keys" (
	"id" uuid PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"source" text NOT NULL,
	"prefix" text NOT NULL,
	"hash" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"created_by" uuid,
	"revoked_at" timestamp with time zone
);
--> statement-breakpoint
CREATE UNIQUE INDEX "api_tokens_hash_idx" ON "api_tokens" USING btree ("hash");--> statement-breakpoint
CREATE INDEX "audit_log_at_idx" ON "audit_log" USING btree ("at");--> statement-breakpoint
CREATE UNIQUE INDEX "events_source_message_idx" ON "events" USING btree ("source","message_id");--> statement-breakpoint
CREATE INDEX "events_profile_time_idx" ON "events" USING btree ("profile_id","timestamp");--> statement-breakpoint
CREATE INDEX "identities_profile_idx" ON "identities" USING btree ("profile_id");--> statement-breakpoint
CREATE INDEX "ingest_rejections_received_idx" ON "ingest_rejections" USING btree ("received_at");--> statement-breakpoint
CREATE INDEX "merges_survivor_idx" ON "merges" USING btree ("survivor_id");--> statement-breakpoint
CREATE INDEX "merges_merged_idx" ON "merges" USING btree ("merged_id");--> statement-breakpoint
CREATE INDEX "profiles_merged_into_idx" ON "profiles" USING btree ("merged_into");--> statement-breakpoint
CREATE INDEX "profiles_traits_idx" ON "profiles" USING gin ("traits" jsonb_path_ops);--> statement-breakpoint
CREATE UNIQUE INDEX "write_keys_hash_idx" ON "write_keys" USING btree ("hash");