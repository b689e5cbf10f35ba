/** Request parameters shared by the resources: ids in paths, and cursor paging. */
import { z } from '@hono/zod-openapi';

/** An `{id}` path parameter; one that is not a uuid names nothing, so it answers 404. */
export const IdParam = z.object({
  id: z.uuid().openapi({
    param: { name: 'id', in: 'path' },
    example: '0190f5c2-8b1e-7a3c-9d4e-5f6a7b8c9d0e',
  }),
});

/*
 * Cursor paging. A cursor is the sort key of the last item a page returned, JSON in base64url:
 * opaque to clients, stable under inserts (unlike offsets, a new row never shifts a page).
 */

export const Limit = z.coerce
  .number()
  .int()
  .min(1)
  .max(200)
  .default(50)
  .openapi({ description: 'Items per page, 1–200.', example: 50 });

/** A `cursor` query parameter that decodes to a key matching `key`, or fails validation. */
export function cursorOf<K extends z.ZodType>(key: K) {
  return z
    .string()
    .transform((text, ctx): z.infer<K> => {
      const parsed = key.safeParse(decode(text));
      if (!parsed.success) {
        ctx.addIssue({ code: 'custom', message: 'not a cursor this API returned' });
        return z.NEVER;
      }
      return parsed.data;
    })
    .optional()
    .openapi({ description: 'The `nextCursor` of the previous page.', type: 'string' });
}

function decode(text: string): unknown {
  try {
    return JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
}

export const encodeCursor = (key: unknown): string =>
  Buffer.from(JSON.stringify(key), 'utf8').toString('base64url');

/** A page's response schema: the items and the cursor of the next page (null on the last). */
export function pageOf<T extends z.ZodType>(item: T, name: string) {
  return z
    .object({
      data: z.array(item),
      nextCursor: z
        .string()
        .nullable()
        .openapi({ description: 'Pass as `cursor` for the next page; null on the last page.' }),
    })
    .openapi(name);
}

/** A domain page (`next` is the last item's key) as the API answers it. */
export const toPage = <T>(page: { data: T[]; next: unknown }) => ({
  data: page.data,
  nextCursor: page.next === null ? null : encodeCursor(page.next),
});
