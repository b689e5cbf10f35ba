import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { HubError } from '../../src/errors.ts';
import {
  MAX_RULE_CONDITIONS,
  MAX_RULE_DEPTH,
  SegmentRules,
  checkSegmentRules,
  conditionCount,
  parseSegmentRules,
  segmentReferences,
} from '../../src/segments/rules.ts';

const SEGMENT = '0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b';
const OTHER = '0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c';

/** The field errors of invalid rules. */
function errors(input: unknown) {
  const checked = checkSegmentRules(input);
  if (checked.ok) throw new Error('expected the rules to be refused');
  return checked.errors;
}
const fields = (input: unknown) => errors(input).map((e) => e.field);

const exists = { trait: { name: 'email', op: 'exists' } };

describe('the rule language', () => {
  it('accepts every shape', () => {
    const rules = {
      all: [
        { trait: { name: 'city', op: 'eq', value: 'Paris' } },
        { trait: { name: ['address', 'zip'], op: 'starts_with', value: '75' } },
        { trait: { name: 'age', op: 'between', value: [18, 35] } },
        {
          trait: {
            name: 'birthday',
            op: 'between',
            value: ['2000-01-01', { ago: 18, unit: 'years' }],
          },
        },
        { trait: { name: 'plan', op: 'in', value: ['pro', 'team', 3] } },
        { trait: { name: 'vip', op: 'neq', value: true } },
        { trait: { name: 'tags', op: 'contains', value: 'beta' } },
        { trait: { name: 'phone', op: 'not_exists' } },
        { trait: { name: 'trial_end', op: 'before', value: '2024-06-01T00:00:00Z' } },
        { trait: { name: 'trial_end', op: 'after', value: { ago: 2, unit: 'weeks' } } },
        { trait: { name: 'signup', op: 'within_last', value: 30, unit: 'days' } },
        { trait: { name: 'score', op: 'gte', value: 0.5 } },
        { computed: { name: 'total_spent', op: 'gt', value: 200 } },
        { computed: { name: 'last_seen_at', op: 'within_last', value: 3, unit: 'months' } },
        { computed: { name: 'kind', op: 'eq', value: 'customer' } },
        { computed: { name: 'rfm_recency', op: 'in', value: [4, 5] } },
        {
          any: [
            { event: { name: 'purchase' } },
            { event: { type: 'page', where: [{ property: 'path', op: 'eq', value: '/pricing' }] } },
            {
              event: {
                name: ['File Downloaded', 'Form Submitted'],
                type: ['track'],
                count: { atLeast: 1, atMost: 5 },
                within: { from: '2024-01-01', to: '2024-01-31' },
              },
            },
            {
              event: {
                purchase: true,
                within: { last: 90, unit: 'days' },
                aggregate: { fn: 'sum', revenue: true, op: 'gte', value: 200 },
              },
            },
            {
              event: {
                name: 'Order Completed',
                count: { exactly: 0 },
                aggregate: { fn: 'avg', property: ['cart', 'size'], op: 'between', value: [1, 3] },
              },
            },
          ],
        },
        { not: { segment: { id: SEGMENT } } },
        { segment: { id: OTHER, member: false } },
      ],
    };
    expect(parseSegmentRules(rules)).toEqual(rules);
    expect(conditionCount(parseSegmentRules(rules))).toBe(23);
  });

  it('names the failing field of each error', () => {
    expect(errors({ all: [exists, { event: { name: 'x', count: { atLeast: -1 } } }] })).toEqual([
      { field: 'rules.all[1].event.count.atLeast', message: expect.stringContaining('>=0') },
    ]);
    expect(
      fields({ any: [exists, exists, { trait: { name: 'x', op: 'like', value: 1 } }] }),
    ).toEqual(['rules.any[2].trait.op']);
    expect(fields({ not: { event: { name: '' } } })).toEqual(['rules.not.event.name']);
    expect(fields({ all: [{ segment: { id: 'not-a-uuid' } }] })).toEqual([
      'rules.all[0].segment.id',
    ]);
    expect(fields({ event: { name: 'x', within: { last: 0, unit: 'days' } } })).toEqual([
      'rules.event.within.last',
    ]);
    expect(fields({ event: { name: 'x', within: { last: 3, unit: 'fortnights' } } })).toEqual([
      'rules.event.within.unit',
    ]);
    expect(errors({ event: { name: 'x', within: { last: 3 } } })).toEqual([
      { field: 'rules.event.within.unit', message: 'last and unit go together' },
    ]);
    expect(
      errors({ event: { name: 'x', within: { last: 3, unit: 'days', from: '2024-01-01' } } }),
    ).toEqual([
      {
        field: 'rules.event.within',
        message: 'give last and unit, or from and/or to, not both',
      },
    ]);
    expect(fields({ event: { name: 'x', within: {} } })).toEqual(['rules.event.within']);
    // A trait condition where a property filter belongs: no property, and an unknown name.
    expect(fields({ event: { where: [exists.trait] } })).toEqual([
      'rules.event.where[0].property',
      'rules.event.where[0]',
    ]);
    expect(fields({ event: { where: [{ property: 'p', op: 'gt', value: 'soon' }] } })).toEqual([
      'rules.event.where[0].value',
    ]);
  });

  it('checks values against the operator and computed traits against their type', () => {
    expect(errors({ computed: { name: 'total_spent', op: 'contains', value: '1' } })).toEqual([
      {
        field: 'rules.computed.op',
        message:
          'total_spent is a number: use one of eq, neq, gt, gte, lt, lte, between, in, exists, not_exists',
      },
    ]);
    expect(errors({ computed: { name: 'last_seen_at', op: 'gt', value: 3 } })).toEqual([
      { field: 'rules.computed.value', message: 'last_seen_at takes a date' },
    ]);
    expect(fields({ computed: { name: 'kind', op: 'eq', value: 1 } })).toEqual([
      'rules.computed.value',
    ]);
    expect(fields({ computed: { name: 'lifetime_value', op: 'gt', value: 1 } })).toEqual([
      'rules.computed.name',
    ]);
    expect(errors({ trait: { name: 'age', op: 'between', value: [18, '2024-01-01'] } })).toEqual([
      { field: 'rules.trait.value', message: 'both bounds must be numbers, or both dates' },
    ]);
    expect(fields({ trait: { name: 'age', op: 'gt', value: true } })).toEqual([
      'rules.trait.value',
    ]);
    expect(fields({ trait: { name: 'age', op: 'eq' } })).toEqual(['rules.trait.value']);
    expect(fields({ trait: { name: 'x', op: 'before', value: '2024-02-30' } })).toEqual([
      'rules.trait.value',
    ]);
    expect(fields({ trait: { name: 'x', op: 'before', value: '2024-02-01T10:00:00' } })).toEqual([
      'rules.trait.value',
    ]);
    expect(fields({ trait: { name: 'x', op: 'in', value: [] } })).toEqual(['rules.trait.value']);
    expect(
      fields({ trait: { name: 'x', op: 'in', value: Array.from({ length: 1001 }, (_, i) => i) } }),
    ).toEqual(['rules.trait.value']);
    expect(fields({ trait: { name: 'x', op: 'exists', value: 1 } })).toEqual(['rules.trait']);
  });

  it('checks counts and aggregates', () => {
    expect(errors({ event: { name: 'x', count: { exactly: 1, atLeast: 1 } } })).toEqual([
      { field: 'rules.event.count', message: 'give exactly alone, or atLeast and/or atMost' },
    ]);
    expect(errors({ event: { name: 'x', count: {} } })).toEqual([
      { field: 'rules.event.count', message: 'give atLeast, atMost or exactly' },
    ]);
    expect(errors({ event: { name: 'x', count: { atLeast: 3, atMost: 2 } } })).toEqual([
      { field: 'rules.event.count.atMost', message: 'must not be below atLeast' },
    ]);
    expect(fields({ event: { name: 'x', count: { atLeast: 1.5 } } })).toEqual([
      'rules.event.count.atLeast',
    ]);
    expect(errors({ event: { aggregate: { fn: 'sum', op: 'gt', value: 1 } } })).toEqual([
      { field: 'rules.event.aggregate', message: 'give property or revenue: true (one of them)' },
    ]);
    expect(
      fields({ event: { aggregate: { fn: 'median', property: 'x', op: 'gt', value: 1 } } }),
    ).toEqual(['rules.event.aggregate.fn']);
    expect(
      fields({ event: { aggregate: { fn: 'sum', property: 'x', op: 'contains', value: '1' } } }),
    ).toEqual(['rules.event.aggregate.op']);
    expect(fields({ event: { type: 'click' } })).toEqual(['rules.event.type']);
  });

  it('explains a node that is no rule', () => {
    expect(errors({ all: [exists, { foo: 1 }] })).toEqual([
      {
        field: 'rules.all[1]',
        message:
          'expected an object with exactly one of: all, any, not, trait, computed, event, segment',
      },
    ]);
    expect(fields({ all: [{ trait: exists.trait, note: 'x' }] })).toEqual(['rules.all[0]']);
    expect(fields({ all: 'everyone' })).toEqual(['rules.all']);
    expect(fields(null)).toEqual(['rules']);
    expect(errors({ all: [{ event: { name: 'x', color: 'red' } }] })).toEqual([
      { field: 'rules.all[0].event', message: 'Unrecognized key: "color"' },
    ]);
  });

  it('limits depth and size', () => {
    const nest = (levels: number) => {
      let node: unknown = exists;
      for (let i = 0; i < levels; i++) node = i % 2 ? { not: node } : { all: [node] };
      return node;
    };
    expect(checkSegmentRules(nest(MAX_RULE_DEPTH)).ok).toBe(true);
    expect(errors(nest(MAX_RULE_DEPTH + 1))).toEqual([
      {
        field: 'rules.all[0].not.all[0].not.all[0].not.all[0].not.all[0].not',
        message: 'groups nest deeper than 10 levels',
      },
    ]);
    // Far too deep to walk recursively: refused before it is.
    expect(errors(nest(100_000))[0]!.message).toBe('groups nest deeper than 10 levels');
    const wide = (n: number) => ({ any: Array.from({ length: n }, () => exists) });
    expect(checkSegmentRules(wide(MAX_RULE_CONDITIONS)).ok).toBe(true);
    expect(errors(wide(MAX_RULE_CONDITIONS + 1))).toEqual([
      { field: 'rules', message: 'more than 200 conditions' },
    ]);
  });

  it('refuses with a 400 HubError listing the fields', () => {
    const bad = {
      all: [{ event: { name: 'x', count: { atLeast: -1 } } }, { trait: { name: 'a' } }],
    };
    let error: unknown;
    try {
      parseSegmentRules(bad, 'body.rules');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(HubError);
    const hub = error as HubError;
    expect(hub.status).toBe(400);
    expect(hub.detail).toMatch(
      /^Invalid segment rules: body\.rules\.all\[0\]\.event\.count\.atLeast/,
    );
    expect(hub.errors!.map((e) => e.field)).toEqual([
      'body.rules.all[0].event.count.atLeast',
      'body.rules.all[1].trait.op',
    ]);
  });

  it('lists the segments a tree references, with the field of the first reference', () => {
    const rules = parseSegmentRules({
      any: [
        { segment: { id: SEGMENT } },
        { not: { all: [{ segment: { id: OTHER, member: false } }, { segment: { id: SEGMENT } }] } },
      ],
    });
    expect(segmentReferences(rules)).toEqual([
      { id: SEGMENT, field: 'rules.any[0].segment.id', member: true },
      { id: OTHER, field: 'rules.any[1].not.all[0].segment.id', member: false },
    ]);
  });

  it('feeds the OpenAPI document', () => {
    const app = new OpenAPIHono();
    app.openapi(
      createRoute({
        method: 'post',
        path: '/preview',
        request: {
          body: { content: { 'application/json': { schema: z.object({ rules: SegmentRules }) } } },
        },
        responses: { 200: { description: 'ok' } },
      }),
      (c) => c.json({}),
    );
    const doc = app.getOpenAPI31Document({ openapi: '3.1.0', info: { title: 't', version: '1' } });
    const schemas = doc.components!.schemas!;
    expect(Object.keys(schemas)).toEqual(
      expect.arrayContaining(['SegmentRules', 'SegmentRule', 'SegmentEventCondition']),
    );
    expect(JSON.stringify(schemas.SegmentRule)).toContain('#/components/schemas/SegmentRule');
  });

  it('accepts every example in docs/segments.md', () => {
    const doc = readFileSync(new URL('../../docs/segments.md', import.meta.url), 'utf8');
    const blocks = [...doc.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => m[1]!);
    const examples = blocks
      .filter((b) => !b.includes('"errors"'))
      .flatMap((b) => {
        const text = b.replaceAll('"<A>"', `"${SEGMENT}"`).replaceAll('"<B>"', `"${OTHER}"`);
        try {
          return [JSON.parse(text)];
        } catch {
          // A block of one-line examples.
          return text
            .split('\n')
            .filter((l) => l.trim())
            .map((l) => JSON.parse(l));
        }
      });
    expect(examples.length).toBeGreaterThan(50);
    for (const example of examples)
      expect(checkSegmentRules(example), JSON.stringify(example)).toMatchObject({ ok: true });
  });
});
