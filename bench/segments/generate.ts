/**
 * Synthetic data for the segment benchmark, generated inside the database (generate_series), so
 * that 10M events take minutes rather than hours: profiles with a user id and traits (city, age,
 * acquisition source, plan), and a year of events ending at `now` — product views, page views
 * (a share on /pricing), orders with revenue and category, form submissions and file downloads.
 * Event volume per person is skewed: a few people are very active, most are not.
 * Computed traits are then folded the way the worker's fold would, in one statement.
 * The statements are the generator's own constants: no outside input reaches sql.raw.
 */
import { sql } from 'drizzle-orm';
import { rows, type Db } from '../../src/db/index.ts';

export interface Scale {
  profiles: number;
  events: number;
}

const CITIES = ['London', 'Paris', 'Berlin', 'Madrid', 'Rome', 'Lisbon', 'Dublin', 'Vienna'];
const SOURCES = ['organic', 'referral', 'paid', 'email', 'social'];
const CATEGORIES = ['books', 'garden', 'kitchen', 'toys', 'music', 'sports'];
const PATHS = ['/', '/pricing', '/blog', '/docs', '/about'];

const pick = (values: string[], r: ReturnType<typeof sql>) =>
  sql`(${sql.raw(`array[${values.map((v) => `'${v}'`).join(', ')}]`)})[1 + floor(${r} * ${values.length})::int]`;

/** Fill an empty, migrated database; `progress` hears about each step. */
export async function generate(
  db: Db,
  scale: Scale,
  now: Date,
  progress: (step: string) => void = () => {},
): Promise<void> {
  const at = now.toISOString();
  progress(`profiles: ${scale.profiles.toLocaleString('en-US')}`);
  await db.execute(sql`
    insert into profiles (id, kind, created_at, traits)
    select gen_random_uuid(), 'customer', ${at}::timestamptz - interval '400 days',
      jsonb_build_object(
        'city', ${pick(CITIES, sql`random()`)},
        'age', 18 + floor(random() * 55)::int,
        'source', ${pick(SOURCES, sql`random()`)},
        'plan', case when random() < 0.2 then 'pro' else 'free' end)
    from generate_series(1, ${scale.profiles})`);
  // A dense numbering of the profiles, to pick event owners by number.
  await db.execute(sql`create table bench_people as
    select row_number() over (order by id) as n, id from profiles`);
  await db.execute(sql`create unique index on bench_people (n)`);
  await db.execute(sql`
    insert into identities (type, value, profile_id, source)
    select 'user_id', 'u' || n, id, 'bench' from bench_people`);

  // Bulk load as one would: the events' secondary indexes are dropped first and built once at
  // the end, instead of being updated row by row in random order (which, past the buffer cache,
  // makes each million rows slower than the last).
  const indexes = await rows<{ name: string; definition: string }>(
    db,
    sql`select indexname as name, indexdef as definition from pg_indexes
        where tablename = 'events' and indexname <> 'events_pkey'`,
  );
  for (const index of indexes) await db.execute(sql`drop index ${sql.identifier(index.name)}`);
  const chunk = 1_000_000;
  for (let from = 1; from <= scale.events; from += chunk) {
    const to = Math.min(scale.events, from + chunk - 1);
    progress(`events ${from.toLocaleString('en-US')}–${to.toLocaleString('en-US')}`);
    // owner: skewed towards low numbers (random()^2); kind: the event's type by share.
    await db.execute(sql`
      insert into events (profile_id, source, message_id, type, name, properties, revenue,
        "timestamp", received_at, user_id)
      select b.id, 'bench', 'g' || g.i, k.type, k.name, k.properties, k.revenue, g.ts, g.ts,
        'u' || b.n
      from (
        select i, 1 + floor(power(random(), 2) * ${scale.profiles})::bigint as n,
          random() as kind, random() as r,
          ${at}::timestamptz - random() * interval '365 days' as ts
        from generate_series(${from}::bigint, ${to}::bigint) as i
      ) g
      join bench_people b on b.n = g.n
      cross join lateral (
        select
          case when g.kind < 0.50 then 'track' when g.kind < 0.78 then 'page' else 'track' end
            as type,
          case when g.kind < 0.50 then 'Product Viewed'
               when g.kind < 0.78 then 'Page'
               when g.kind < 0.90 then 'Order Completed'
               when g.kind < 0.95 then 'Form Submitted'
               else 'File Downloaded' end as name,
          case when g.kind < 0.50 then jsonb_build_object('category', ${pick(CATEGORIES, sql`g.r`)})
               when g.kind < 0.78 then jsonb_build_object('path', ${pick(PATHS, sql`g.r`)})
               when g.kind < 0.90 then jsonb_build_object('order_id', 'o' || g.i,
                 'category', ${pick(CATEGORIES, sql`g.r`)}, 'revenue', round((5 + g.r * 195)::numeric, 2))
               else '{}'::jsonb end as properties,
          case when g.kind >= 0.78 and g.kind < 0.90 then round((5 + g.r * 195)::numeric, 2) end
            as revenue
      ) k`);
  }
  await db.execute(sql`drop table bench_people`);
  for (const index of indexes) {
    progress(`index ${index.name}`);
    await db.execute(sql.raw(index.definition));
  }

  progress('computed traits (folding every event)');
  await db.execute(sql`
    update profiles p set first_seen_at = a.first, last_seen_at = a.last,
      event_count = a.activity, purchase_count = a.purchases, total_spent = a.spent,
      last_purchase_at = a.last_purchase
    from (
      select profile_id, min("timestamp") as first, max("timestamp") as last,
        count(*) filter (where type in ('track', 'page', 'screen')) as activity,
        count(revenue) as purchases, coalesce(sum(revenue), 0) as spent,
        max("timestamp") filter (where revenue is not null) as last_purchase
      from events group by profile_id
    ) a
    where p.id = a.profile_id`);
  await db.execute(sql`
    insert into profile_event_counts (profile_id, name, count, first_at, last_at)
    select profile_id, case when type = 'track' then name else type end, count(*),
      min("timestamp"), max("timestamp")
    from events where type in ('track', 'page', 'screen') group by 1, 2`);
  await db.execute(sql`
    insert into event_cursors (name, position)
    select name, (select coalesce(max(id), 0) from events)
    from (values ('computed-traits'), ('segments')) as c(name)`);
  // As autovacuum would leave a settled database: statistics, and the visibility map that lets
  // the planner answer from an index alone.
  progress('vacuum analyze');
  await db.execute(sql`vacuum analyze`);
}
