-- How ingestion stores a batch of events (src/events/ingest.ts). The rows arrive as one array
-- per column, times as epoch milliseconds; `event_rows` zips them back into rows, with each
-- message's place in the batch.
CREATE FUNCTION "event_rows"(
  "profile_ids" json, "sources" json, "message_ids" json, "types" json, "names" json,
  "properties" jsonb, "contexts" jsonb, "revenues" json, "times" json, "original_times" json,
  "sent_times" json, "received_times" json, "user_ids" json, "anonymous_ids" json
) RETURNS TABLE (
  "n" bigint, "profile_id" uuid, "source" text, "message_id" text, "type" text, "name" text,
  "properties" jsonb, "context" jsonb, "revenue" numeric, "timestamp" timestamptz,
  "original_timestamp" timestamptz, "sent_at" timestamptz, "received_at" timestamptz,
  "user_id" text, "anonymous_id" text
) LANGUAGE sql STABLE AS $$
  -- Whole seconds and milliseconds apart: exact for every date (to_timestamp's float is not).
  SELECT x.n, x.profile_id::uuid, x.source, x.message_id, x.type, x.name,
    coalesce(nullif(x.properties, 'null'), '{}'), coalesce(nullif(x.context, 'null'), '{}'),
    x.revenue::numeric,
    timestamptz 'epoch' + (x.ts::int8 / 1000) * interval '1 second'
      + (x.ts::int8 % 1000) * interval '1 millisecond',
    timestamptz 'epoch' + (x.original_ts::int8 / 1000) * interval '1 second'
      + (x.original_ts::int8 % 1000) * interval '1 millisecond',
    timestamptz 'epoch' + (x.sent_ts::int8 / 1000) * interval '1 second'
      + (x.sent_ts::int8 % 1000) * interval '1 millisecond',
    timestamptz 'epoch' + (x.received_ts::int8 / 1000) * interval '1 second'
      + (x.received_ts::int8 % 1000) * interval '1 millisecond',
    x.user_id, x.anonymous_id
  FROM ROWS FROM (
    json_array_elements_text("profile_ids"), json_array_elements_text("sources"),
    json_array_elements_text("message_ids"), json_array_elements_text("types"),
    json_array_elements_text("names"), jsonb_array_elements("properties"),
    jsonb_array_elements("contexts"), json_array_elements_text("revenues"),
    json_array_elements_text("times"), json_array_elements_text("original_times"),
    json_array_elements_text("sent_times"), json_array_elements_text("received_times"),
    json_array_elements_text("user_ids"), json_array_elements_text("anonymous_ids")
  ) WITH ORDINALITY AS x(profile_id, source, message_id, type, name, properties, context,
    revenue, ts, original_ts, sent_ts, received_ts, user_id, anonymous_id, n)
$$;
--> statement-breakpoint
-- Nearly every batch is new: it is inserted plainly, without ON CONFLICT's check of each row,
-- in a subtransaction of its own (which, unlike a savepoint, costs no round trip). Only when a
-- (source, message_id) turns out to be stored already are the rows not stored yet inserted,
-- again until none is stored meanwhile by another transaction. Answers null when every row was
-- stored, otherwise the places (from 1) of the rows stored.
CREATE FUNCTION "insert_events"(
  "profile_ids" json, "sources" json, "message_ids" json, "types" json, "names" json,
  "properties" jsonb, "contexts" jsonb, "revenues" json, "times" json, "original_times" json,
  "sent_times" json, "received_times" json, "user_ids" json, "anonymous_ids" json
) RETURNS bigint[] LANGUAGE plpgsql
-- Its statements read no table but events' unique index, so one plan serves every batch.
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
  "stored" bigint[];
  "skipping" boolean := false;
BEGIN
  LOOP
    BEGIN
      IF "skipping" THEN
        SELECT coalesce(array_agg(r."n" ORDER BY r."n"), '{}') INTO "stored"
        FROM event_rows("profile_ids", "sources", "message_ids", "types", "names", "properties",
          "contexts", "revenues", "times", "original_times", "sent_times", "received_times",
          "user_ids", "anonymous_ids") AS r
        WHERE NOT EXISTS (
          SELECT FROM "events" e WHERE e."source" = r."source" AND e."message_id" = r."message_id"
        );
      END IF;
      INSERT INTO "events" ("profile_id", "source", "message_id", "type", "name", "properties",
        "context", "revenue", "timestamp", "original_timestamp", "sent_at", "received_at",
        "user_id", "anonymous_id")
      SELECT r."profile_id", r."source", r."message_id", r."type", r."name", r."properties",
        r."context", r."revenue", r."timestamp", r."original_timestamp", r."sent_at",
        r."received_at", r."user_id", r."anonymous_id"
      FROM event_rows("profile_ids", "sources", "message_ids", "types", "names", "properties",
        "contexts", "revenues", "times", "original_times", "sent_times", "received_times",
        "user_ids", "anonymous_ids") AS r
      WHERE "stored" IS NULL OR r."n" = ANY ("stored");
      RETURN "stored";
    EXCEPTION WHEN unique_violation THEN
      -- Rolled back to the start of the block: the rows not stored yet are inserted next time.
      "skipping" := true;
    END;
  END LOOP;
END
$$;
