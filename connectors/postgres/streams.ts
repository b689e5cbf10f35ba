/**
 * What there is to read: the schema's tables and views and the configured query streams, each
 * with its columns, their kinds, its key and its cursor column, read from the catalog
 * (README.md, "Streams"). `discover` reports them; `read` finds its stream here again, so it
 * always pages by the columns as they are now.
 */
import { ConfigError, type SourceDiscover, type SourceStream } from 'audiencehub/sdk';
import { ident, open, type Db, type PostgresConfig, type StreamConfig } from './client.ts';
import { FIELD_TYPE, kindOf, ORDERABLE, type Kind } from './values.ts';

export interface Column {
  name: string;
  /** The type as PostgreSQL writes it, e.g. `numeric(5,2)`. */
  type: string;
  kind: Kind;
  /** An array's element kind. */
  element: Kind;
  notNull: boolean;
}

/** A stream and how to read it. */
export interface Plan {
  name: string;
  /** What follows FROM: a quoted table, or the query as a subquery. */
  from: string;
  /** The columns read (bytea ones are left out). */
  columns: Column[];
  /** bytea columns, not read. */
  skipped: string[];
  primaryKey: string[];
  cursorColumn?: string;
  /** How the cursor column was chosen, for the description. */
  cursorRule?: 'configured' | 'named like an update timestamp';
  /** Date and time columns that could be the cursor. */
  candidates: string[];
  description: string;
}

/**
 * Column names taken as the cursor without being configured, when their type is a timestamp:
 * the names ERPs and frameworks give the column they set on every change (Rails and Django
 * `updated_at`, Sakila/Pagila `last_update`, …). The first in column order wins.
 */
export const UPDATE_COLUMNS = [
  'updated_at',
  'updated_on',
  'last_update',
  'last_updated',
  'last_modified',
  'modified_at',
  'modified',
  'date_modified',
];

interface Relation {
  name: string;
  kind: 'table' | 'view' | 'materialized view' | 'foreign table';
  readable: boolean;
  columns: Column[];
  keys: { columns: string[]; primary: boolean }[];
}

const RELKIND: Record<string, Relation['kind']> = {
  r: 'table',
  p: 'table',
  v: 'view',
  m: 'materialized view',
  f: 'foreign table',
};

// Tables (plain and partitioned, not their partitions), views, materialized views and foreign
// tables of the schema, with their columns; `$2` names the relations wanted (null: all).
const COLUMNS = `
select c.relname as rel, c.relkind as relkind, has_table_privilege(c.oid, 'SELECT') as readable,
       a.attname as name, a.attnotnull as not_null, format_type(a.atttypid, a.atttypmod) as type,
       b.oid::int8 as base, b.typcategory as category, e.oid::int8 as element
from pg_catalog.pg_class c
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
join pg_catalog.pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
join pg_catalog.pg_type t on t.oid = a.atttypid
join pg_catalog.pg_type b on b.oid = case when t.typtype = 'd' then t.typbasetype else t.oid end
left join pg_catalog.pg_type e0 on b.typcategory = 'A' and e0.oid = b.typelem
left join pg_catalog.pg_type e
  on e.oid = case when e0.typtype = 'd' then e0.typbasetype else e0.oid end
where n.nspname = $1 and c.relkind in ('r', 'p', 'v', 'm', 'f') and not c.relispartition
  and ($2::jsonb is null or c.relname in (select jsonb_array_elements_text($2::jsonb)))
order by c.relname, a.attnum`;

// Primary keys, and unique indexes without predicate or expression, with their key columns.
const KEYS = `
select c.relname as rel, i.indisprimary as primary,
       json_agg(a.attname order by k.ord) as columns, bool_and(a.attnotnull) as not_null
from pg_catalog.pg_index i
join pg_catalog.pg_class c on c.oid = i.indrelid
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
cross join lateral unnest(i.indkey::int2[]) with ordinality as k(attnum, ord)
join pg_catalog.pg_attribute a on a.attrelid = c.oid and a.attnum = k.attnum
where n.nspname = $1 and (i.indisprimary or i.indisunique) and i.indisvalid
  and i.indpred is null and i.indexprs is null and k.ord <= i.indnkeyatts
  and ($2::jsonb is null or c.relname in (select jsonb_array_elements_text($2::jsonb)))
group by c.relname, i.indexrelid, i.indisprimary`;

// Types by oid (a query's columns), with a domain's base type and an array's element.
const TYPES = `
select t.oid::int8 as oid, format_type(t.oid, null) as type, b.oid::int8 as base,
       b.typcategory as category, e.oid::int8 as element
from pg_catalog.pg_type t
join pg_catalog.pg_type b on b.oid = case when t.typtype = 'd' then t.typbasetype else t.oid end
left join pg_catalog.pg_type e0 on b.typcategory = 'A' and e0.oid = b.typelem
left join pg_catalog.pg_type e
  on e.oid = case when e0.typtype = 'd' then e0.typbasetype else e0.oid end
where t.oid in (select jsonb_array_elements_text($1::jsonb)::oid)`;

async function relations(db: Db, schema: string, names: string[] | null) {
  const filter = names ? JSON.stringify(names) : (null as unknown as string);
  const [columns, keys] = [
    await db.select(COLUMNS, [schema, filter]),
    await db.select(KEYS, [schema, filter]),
  ];
  const byName = new Map<string, Relation>();
  for (const row of columns) {
    const name = String(row.rel);
    let relation = byName.get(name);
    if (!relation) {
      relation = {
        name,
        kind: RELKIND[String(row.relkind)] ?? 'table',
        readable: row.readable === 't',
        columns: [],
        keys: [],
      };
      byName.set(name, relation);
    }
    relation.columns.push(column(row, row.not_null === 't'));
  }
  for (const row of keys) {
    const relation = byName.get(String(row.rel));
    // A unique index identifies rows only when none of its columns may be null.
    if (!relation || (row.primary !== 't' && row.not_null !== 't')) continue;
    relation.keys.push({ columns: JSON.parse(String(row.columns)), primary: row.primary === 't' });
  }
  return byName;
}

const column = (row: Record<string, unknown>, notNull: boolean, name = String(row.name)) => ({
  name,
  type: String(row.type),
  kind: kindOf(Number(row.base), String(row.category)),
  element: row.element === null ? 'text' : kindOf(Number(row.element), ''),
  notNull,
});

/** A query stream's columns, from the server's description of it (nothing is run). */
async function queryColumns(db: Db, stream: StreamConfig & { query: string }) {
  const described = await db.describe(`select * from (\n${stream.query}\n) as "q"`);
  const names = described.map((c) => c.name);
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice !== undefined) {
    throw new ConfigError(
      `Stream ${stream.name}: the query returns two columns named "${twice}": give them different names.`,
    );
  }
  const oids = [...new Set(described.map((c) => c.type))];
  const types = new Map(
    (await db.select(TYPES, [JSON.stringify(oids.map(String))])).map((r) => [Number(r.oid), r]),
  );
  // A query's columns may always be null, as far as the catalog can tell.
  return described.map((c) =>
    column(types.get(c.type) ?? { base: 25, category: 'S', type: 'text' }, false, c.name),
  );
}

/** The key a table's catalog gives it: its primary key, else its narrowest unique index. */
function catalogKey(relation: Relation): string[] {
  const [best] = [...relation.keys].sort(
    (a, b) =>
      Number(b.primary) - Number(a.primary) ||
      a.columns.length - b.columns.length ||
      a.columns.join().localeCompare(b.columns.join()),
  );
  return best?.columns ?? [];
}

function plan(
  config: PostgresConfig,
  name: string,
  source: { relation: Relation } | { query: string; columns: Column[] },
  settings: StreamConfig | undefined,
): Plan {
  const all = 'relation' in source ? source.relation.columns : source.columns;
  const columns = all.filter((c) => c.kind !== 'bytea');
  const skipped = all.filter((c) => c.kind === 'bytea').map((c) => c.name);
  const at = `Stream ${name}`;
  const find = (column: string, role: string) => {
    const found = columns.find((c) => c.name === column);
    if (!found) {
      throw new ConfigError(
        `${at}: the ${role} column "${column}" is not one of its columns (${columns.map((c) => c.name).join(', ')}).`,
      );
    }
    if (!ORDERABLE.has(found.kind)) {
      throw new ConfigError(
        `${at}: the ${role} column "${column}" (${found.type}) cannot be ordered by.`,
      );
    }
    return found;
  };

  let primaryKey =
    settings?.primaryKey ?? ('relation' in source ? catalogKey(source.relation) : []);
  if (
    !settings?.primaryKey &&
    primaryKey.some((k) => !columns.some((c) => c.name === k && ORDERABLE.has(c.kind)))
  ) {
    primaryKey = []; // a key on a bytea or json column: read as a keyless stream
  }
  for (const key of primaryKey) find(key, 'primary key');

  let cursorColumn: string | undefined;
  let cursorRule: Plan['cursorRule'];
  if (settings?.cursorColumn) {
    cursorColumn = find(settings.cursorColumn, 'cursor').name;
    cursorRule = 'configured';
  } else {
    const auto = columns.find(
      (c) =>
        (c.kind === 'timestamp' || c.kind === 'timestamptz') &&
        UPDATE_COLUMNS.includes(c.name.toLowerCase()),
    );
    if (auto) [cursorColumn, cursorRule] = [auto.name, 'named like an update timestamp'];
  }
  const candidates = columns
    .filter((c) => ['date', 'timestamp', 'timestamptz'].includes(c.kind) && c.name !== cursorColumn)
    .map((c) => c.name);

  const what =
    'relation' in source
      ? `${source.relation.kind[0]!.toUpperCase()}${source.relation.kind.slice(1)} ${config.schema}.${source.relation.name}`
      : 'Query';
  const parts = [what];
  const others = candidates.length ? ` (could be: ${candidates.join(', ')})` : '';
  parts.push(
    cursorColumn
      ? `incremental by ${cursorColumn} (${cursorRule})`
      : `read in full: no cursor column${others}`,
  );
  if (cursorColumn && candidates.length) parts.push(`other date columns: ${candidates.join(', ')}`);
  if (primaryKey.length === 0) {
    parts.push(
      cursorColumn
        ? 'no primary key: records are identified by their content'
        : 'no primary key: set streams[].primaryKey or cursorColumn to read it',
    );
  }
  if (skipped.length) parts.push(`binary columns not read: ${skipped.join(', ')}`);

  return {
    name,
    from:
      'relation' in source
        ? `${ident(config.schema)}.${ident(source.relation.name)}`
        : `(\n${source.query}\n) as "q"`,
    columns,
    skipped,
    primaryKey,
    cursorColumn,
    cursorRule,
    candidates,
    description: `${parts.join('; ')}.`,
  };
}

/**
 * The streams of a configuration: every readable table and view of the schema, with the
 * configured streams refining them or added to them. `only` plans just the stream of that
 * name (for `read`), `configured` just the configured streams (for `check`).
 */
export async function plans(
  db: Db,
  config: PostgresConfig,
  scope: { only: string } | 'all' | 'configured' = 'all',
): Promise<Plan[]> {
  const configured = new Map(config.streams.map((s) => [s.name, s]));
  const wanted =
    typeof scope === 'object'
      ? [configured.get(scope.only) ?? { name: scope.only }]
      : scope === 'configured'
        ? config.streams
        : null;
  const tableOf = (s: StreamConfig) => s.table ?? s.name;
  const tables = await relations(
    db,
    config.schema,
    wanted ? wanted.filter((s) => !s.query).map(tableOf) : null,
  );

  const result: Plan[] = [];
  for (const settings of wanted ?? config.streams) {
    if (settings.query) {
      const query = settings.query;
      result.push(
        plan(
          config,
          settings.name,
          { query, columns: await queryColumns(db, { ...settings, query }) },
          settings,
        ),
      );
      continue;
    }
    const relation = tables.get(tableOf(settings));
    if (!relation) {
      throw new ConfigError(
        typeof scope === 'object' && !configured.has(scope.only)
          ? `Stream ${scope.only} is not a table or view of schema "${config.schema}" nor a configured stream: it may have been dropped or renamed.`
          : `Stream ${settings.name}: "${tableOf(settings)}" is not a table or view of schema "${config.schema}".`,
      );
    }
    result.push(plan(config, settings.name, { relation }, configured.get(settings.name)));
  }
  if (!wanted) {
    for (const relation of tables.values()) {
      // Tables the user may not read are left out; a configured stream names them on purpose.
      if (configured.has(relation.name) || !relation.readable) continue;
      result.push(plan(config, relation.name, { relation }, undefined));
    }
    result.sort((a, b) => a.name.localeCompare(b.name));
  }
  return result;
}

/** A plan as the stream `discover` reports. */
export function describeStream(plan: Plan): SourceStream {
  return {
    name: plan.name,
    description: plan.description,
    fields: plan.columns.map((c) => ({
      name: c.name,
      type: FIELD_TYPE[c.kind as Exclude<Kind, 'bytea'>],
      description: c.notNull ? `${c.type} not null` : c.type,
    })),
    primaryKey: plan.primaryKey,
    modes: plan.cursorColumn ? ['full_refresh', 'incremental'] : ['full_refresh'],
    ...(plan.cursorColumn ? { cursorField: plan.cursorColumn } : {}),
  };
}

/** Throws a ConfigError when the schema does not exist or the user may not use it. */
export async function assertSchema(db: Db, config: PostgresConfig): Promise<void> {
  const [schema] = await db.select(
    `select has_schema_privilege(n.oid, 'USAGE') as usable from pg_catalog.pg_namespace n
     where n.nspname = $1`,
    [config.schema],
  );
  if (!schema) {
    throw new ConfigError(
      `Schema "${config.schema}" does not exist in database "${config.database}".`,
    );
  }
  if (schema.usable !== 't') {
    throw new ConfigError(
      `User "${config.user}" may not use schema "${config.schema}": grant it USAGE on the schema.`,
    );
  }
}

export const discover: SourceDiscover<PostgresConfig> = async ({ config }, ctx) => {
  const db = open(config, ctx);
  try {
    await assertSchema(db, config);
    return (await plans(db, config)).map(describeStream);
  } finally {
    await db.close();
  }
};
