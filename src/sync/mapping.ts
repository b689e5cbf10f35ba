/**
 * Field mappings: which profile value goes to which destination field. A source is a resolved
 * trait (`trait:first_name`), an identity (`identity:email`), a computed trait
 * (`computed:total_spent`) or the profile id (`profile:id`). The mapped values of every member
 * are computed inside the database by one expression, so a sync never loads profiles one by one.
 */
import { z } from '@hono/zod-openapi';
import { sql, type SQL } from 'drizzle-orm';
import { COMPUTED_TRAITS } from '../segments/rules.ts';
import { IDENTITY_TYPE } from '../profiles/identity.ts';

const SOURCE = /^(trait|identity|computed|profile):(.+)$/;

export const MappingEntry = z
  .object({
    from: z
      .string()
      .regex(SOURCE, 'expected trait:<key>, identity:<type>, computed:<name> or profile:id')
      .openapi({ example: 'identity:email' }),
    to: z.string().min(1).max(200).openapi({ example: 'EMAIL' }),
  })
  .openapi('MappingEntry');
export type MappingEntry = z.infer<typeof MappingEntry>;

export const Mapping = z
  .array(MappingEntry)
  .min(1)
  .max(100)
  .refine((m) => new Set(m.map((e) => e.to)).size === m.length, 'each field may be mapped once')
  .openapi('Mapping');
export type Mapping = z.infer<typeof Mapping>;

/** Problems with a mapping beyond its shape, as field errors (`mapping[1].from`). */
export function mappingProblems(mapping: Mapping, prefix = 'mapping') {
  const problems: { field: string; message: string }[] = [];
  mapping.forEach((entry, i) => {
    const [, kind, key] = SOURCE.exec(entry.from)!;
    const field = `${prefix}[${i}].from`;
    if (kind === 'identity' && !IDENTITY_TYPE.test(key!)) {
      problems.push({ field, message: `"${key}" is not an identity type` });
    }
    if (kind === 'computed' && !Object.hasOwn(COMPUTED_TRAITS, key!)) {
      problems.push({
        field,
        message: `no computed trait "${key}" (known: ${Object.keys(COMPUTED_TRAITS).join(', ')})`,
      });
    }
    if (kind === 'profile' && key !== 'id') {
      problems.push({ field, message: 'only profile:id is available' });
    }
  });
  return problems;
}

/**
 * A jsonb expression of profile `p` holding `{ <to>: value, … }`. Keys and trait names are bound
 * parameters; computed traits are chosen from a fixed list of columns.
 */
export function mappedValues(mapping: Mapping, p = sql`p`): SQL {
  const pairs = mapping.map((entry) => {
    const [, kind, key] = SOURCE.exec(entry.from)!;
    let value: SQL;
    switch (kind) {
      case 'trait':
        value = sql`${p}.traits -> ${key}`;
        break;
      case 'identity':
        // The oldest identity of the type, so the value is stable while several exist.
        value = sql`to_jsonb((select i.value from identities i
          where i.profile_id = ${p}.id and i.type = ${key} order by i.created_at, i.value limit 1))`;
        break;
      case 'computed':
        // Only names from the fixed list reach the identifier (mappingProblems refuses others).
        if (!Object.hasOwn(COMPUTED_TRAITS, key!)) throw new Error(`no computed trait "${key}"`);
        value = sql`to_jsonb(${p}.${sql.identifier(key!)})`;
        break;
      default:
        value = sql`to_jsonb(${p}.id)`;
    }
    return sql`${entry.to}::text, ${value}`;
  });
  return sql`jsonb_build_object(${sql.join(pairs, sql`, `)})`;
}
