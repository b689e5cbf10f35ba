ALTER TABLE "destinations" ADD COLUMN "managed_by" text;--> statement-breakpoint
ALTER TABLE "segments" ADD COLUMN "managed_by" text;--> statement-breakpoint
ALTER TABLE "syncs" ADD COLUMN "managed_by" text;--> statement-breakpoint
CREATE UNIQUE INDEX "destinations_managed_by_idx" ON "destinations" USING btree ("managed_by");--> statement-breakpoint
CREATE UNIQUE INDEX "segments_managed_by_idx" ON "segments" USING btree ("managed_by");--> statement-breakpoint
CREATE UNIQUE INDEX "syncs_managed_by_idx" ON "syncs" USING btree ("managed_by");