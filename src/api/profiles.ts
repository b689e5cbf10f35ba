import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import type { HubContext } from '../context.ts';
import { eraseProfile } from '../profiles/erase.ts';
import { searchProfiles } from '../profiles/search.ts';
import { profileView } from '../profiles/view.ts';
import { actorOf, bearerSecurity, requireRole, rolesNote, type ApiEnv } from './auth.ts';
import { IdParam, Limit, cursorOf, pageOf, toPage } from './params.ts';
import { problemResponses, validationHook } from './problem.ts';

const Kind = z.enum(['customer', 'visitor']);
const Json = z.record(z.string(), z.unknown());
const Time = z.iso.datetime();

const ProfileIdentity = z.object({ type: z.string(), value: z.string() });

export const ProfileSummary = z
  .object({
    id: z.uuid(),
    kind: Kind,
    createdAt: Time,
    updatedAt: Time,
    lastSeenAt: Time.nullable(),
    eventCount: z.number().int(),
    traits: Json.openapi({ description: 'The resolved traits.' }),
    identities: z.array(ProfileIdentity),
  })
  .openapi('ProfileSummary');
export type ProfileSummary = z.infer<typeof ProfileSummary>;

export const ProfilePage = pageOf(ProfileSummary, 'ProfilePage');
export type ProfilePage = z.infer<typeof ProfilePage>;

const KNOWN = new Set(['limit', 'cursor', 'identity', 'q', 'kind']);

export const ProfileQuery = z
  .looseObject({
    limit: Limit,
    cursor: cursorOf(z.uuid()),
    identity: z
      .string()
      .regex(/^[a-z][a-z0-9_]{0,63}:.+$/, 'expected type:value, e.g. email:jane@example.com')
      .optional()
      .openapi({
        description: 'The profile holding this identity; the value is normalised like stored ones.',
        example: 'email:jane@example.com',
      }),
    q: z.string().trim().min(1).max(200).optional().openapi({
      description: 'Profiles with an identity value starting with this text (any case).',
    }),
    kind: Kind.optional(),
  })
  .superRefine((query, ctx) => {
    for (const [key, value] of Object.entries(query)) {
      if (KNOWN.has(key)) continue;
      if (!/^trait\..+/.test(key)) {
        ctx.addIssue({
          code: 'custom',
          path: [key],
          message: 'unknown parameter (trait filters are written trait.<key>=<value>)',
        });
      } else if (typeof value !== 'string') {
        ctx.addIssue({ code: 'custom', path: [key], message: 'give each trait filter once' });
      }
    }
  });
export type ProfileQuery = z.infer<typeof ProfileQuery>;

const EventCount = z.object({
  name: z.string(),
  count: z.number().int(),
  firstAt: Time,
  lastAt: Time,
});

export const ProfileView = z
  .object({
    profile: z.object({
      id: z.uuid(),
      kind: Kind,
      createdAt: Time,
      updatedAt: Time,
      computed: z.object({
        firstSeenAt: Time.nullable(),
        lastSeenAt: Time.nullable(),
        eventCount: z.number().int(),
        purchaseCount: z.number().int(),
        totalSpent: z.number(),
        lastPurchaseAt: Time.nullable(),
        eventCounts: z.array(EventCount),
      }),
    }),
    identities: z.array(ProfileIdentity.extend({ source: z.string(), createdAt: Time })),
    traits: z.object({
      resolved: Json.openapi({
        description: 'Each trait’s value after source priority, then recency.',
      }),
      bySource: z.array(
        z.object({ key: z.string(), source: z.string(), value: z.unknown(), observedAt: Time }),
      ),
    }),
    events: z
      .array(
        z.object({
          id: z.number().int(),
          type: z.string(),
          name: z.string().nullable(),
          source: z.string(),
          messageId: z.string(),
          timestamp: Time,
          receivedAt: Time,
          properties: Json,
          context: Json,
          revenue: z.number().nullable(),
          userId: z.string().nullable(),
          anonymousId: z.string().nullable(),
        }),
      )
      .openapi({ description: 'The 50 most recent events, newest first.' }),
    merges: z
      .array(
        z.object({
          id: z.number().int(),
          survivorId: z.uuid(),
          mergedId: z.uuid(),
          cause: z.object({
            source: z.string(),
            messageId: z.string().nullable(),
            messageType: z.string(),
            identityTypes: z.array(z.string()),
          }),
          createdAt: Time,
        }),
      )
      .openapi({ description: 'Every merge that built this person, newest first.' }),
    redirectedFrom: z
      .uuid()
      .nullable()
      .openapi({ description: 'The id asked for, when it was merged into this profile.' }),
  })
  .openapi('ProfileView');
export type ProfileView = z.infer<typeof ProfileView>;

export const Erasure = z
  .object({
    profileId: z.uuid(),
    deleted: z.object({
      profiles: z.number().int(),
      identities: z.number().int(),
      traits: z.number().int(),
      events: z.number().int(),
      eventCounts: z.number().int(),
      merges: z.number().int(),
      segmentMemberships: z
        .number()
        .int()
        .openapi({ description: 'Segment memberships and membership history entries.' }),
    }),
  })
  .openapi('Erasure');
export type Erasure = z.infer<typeof Erasure>;

const tags = ['Profiles'];

const list = createRoute({
  tags,
  security: bearerSecurity,
  method: 'get',
  path: '/profiles',
  summary: 'List and search profiles',
  description: `${rolesNote('admin', 'marketer', 'integrator')} Live profiles, newest first. Filter on resolved traits with \`trait.<key>=<value>\` (repeatable for different keys; \`42\`, \`true\` and \`null\` also match those JSON values).`,
  request: { query: ProfileQuery },
  responses: {
    200: {
      description: 'A page of profiles',
      content: { 'application/json': { schema: ProfilePage } },
    },
    ...problemResponses(400, 401),
  },
});

const view = createRoute({
  tags,
  security: bearerSecurity,
  method: 'get',
  path: '/profiles/{id}',
  summary: 'The 360 view of a profile',
  description: `${rolesNote('admin', 'marketer', 'integrator')} A merged (tombstone) id answers with the surviving profile and \`redirectedFrom\`.`,
  request: { params: IdParam },
  responses: {
    200: { description: 'The profile', content: { 'application/json': { schema: ProfileView } } },
    ...problemResponses(401, 404),
  },
});

const erase = createRoute({
  tags,
  security: bearerSecurity,
  middleware: requireRole('admin'),
  method: 'delete',
  path: '/profiles/{id}',
  summary: 'Erase a person',
  description: `${rolesNote('admin')} Deletes the profile, every profile merged into it, and their identities, traits, events, event counts and merge history, in one transaction; records a \`profile.erased\` audit entry holding only the counts.`,
  request: { params: IdParam },
  responses: {
    200: { description: 'What was deleted', content: { 'application/json': { schema: Erasure } } },
    ...problemResponses(401, 403, 404),
  },
});

/** `/api/profiles`: search, the 360 view, and erasure. */
export function profileRoutes(ctx: HubContext) {
  return new OpenAPIHono<ApiEnv>({ defaultHook: validationHook })
    .openapi(list, async (c) => {
      const query = c.req.valid('query');
      const at = query.identity?.indexOf(':') ?? -1;
      const traits = Object.fromEntries(
        Object.entries(query)
          .filter(([key]) => key.startsWith('trait.'))
          .map(([key, value]) => [key.slice('trait.'.length), String(value)]),
      );
      const page = await searchProfiles(ctx.db, {
        limit: query.limit,
        after: query.cursor,
        identity:
          at > 0
            ? { type: query.identity!.slice(0, at), value: query.identity!.slice(at + 1) }
            : undefined,
        q: query.q,
        kind: query.kind,
        traits,
        defaultPhoneCountry: ctx.config.defaultPhoneCountry,
      });
      return c.json(toPage(page), 200);
    })
    .openapi(view, async (c) => c.json(await profileView(ctx.db, c.req.valid('param').id), 200))
    .openapi(erase, async (c) =>
      c.json(await eraseProfile(ctx.db, c.req.valid('param').id, actorOf(c.get('principal'))), 200),
    );
}
