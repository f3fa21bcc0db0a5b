import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bodySet } from '../../bench/bodies.js';
import { parseReviewJson as parseBody, textWithoutManagedFields } from './review-json.js';

const parseReviewJson = (text: string) => parseBody(Buffer.from(text, 'utf8'));
const withoutManagedFields = (text: string) => textWithoutManagedFields(Buffer.from(text, 'utf8')) ?? text;

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const review = (metadata: Record<string, Json>, extra: Record<string, Json> = {}) =>
  JSON.stringify({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: { uid: 'u1', operation: 'CREATE', object: { metadata, spec: { containers: [{ name: 'app', image: 'nginx' }] } }, ...extra },
  });

const fieldsV1 = {
  'f:metadata': { 'f:labels': { '.': {}, 'f:app': {} }, 'f:annotations': { 'f:odd"key]': {} } },
  'f:spec': { 'f:containers': { 'k:{"name":"app"}': { '.': {}, 'f:image': {} } } },
};
const managedFields: Json = [
  { manager: 'kube-controller-manager', operation: 'Update', apiVersion: 'v1', time: '2026-11-27T10:00:00Z', fieldsType: 'FieldsV1', fieldsV1 },
  { manager: 'odd \\', operation: 'Update', subresource: 'status', fieldsV1: { 'f:x': { '[': '{', ']': '}\\"' } } },
];

/** JSON.parse of a review, with the pod's metadata.managedFields set to null. */
function podManagedFieldsNull(text: string): unknown {
  const doc = JSON.parse(text) as { request: { object: { metadata: Record<string, Json> } } };
  doc.request.object.metadata.managedFields = null;
  return doc;
}

describe('parseReviewJson', () => {
  const cases: Array<[string, string, (text: string) => unknown]> = [
    ['a review without managedFields parses as it is', review({ name: 'p' }), (t) => JSON.parse(t)],
    [
      "the pod's managedFields (brackets, braces, escaped quotes and backslashes in its strings) becomes null",
      review({ name: 'p', managedFields, labels: { app: 'x' } }),
      podManagedFieldsNull,
    ],
    [
      'an annotation whose value holds the text "managedFields":[ does not hide the real key',
      review({ annotations: { note: '"managedFields":[1,2' }, managedFields }),
      podManagedFieldsNull,
    ],
    [
      'a key ending in an escaped quote and managedFields is not taken for the key: nothing is elided',
      review({ annotations: { 'x"managedFields': '[1]' }, managedFields }),
      (t) => JSON.parse(t),
    ],
    [
      'multi-byte characters before, inside and after managedFields',
      review({ annotations: { 'a/é': 'ü😀' }, managedFields: [{ manager: 'é€😀"]' }], labels: { x: '€' } }),
      podManagedFieldsNull,
    ],
    ['a managedFields that is null stays null', review({ managedFields: null }), (t) => JSON.parse(t)],
    ['a managedFields that is a map is parsed', review({ managedFields: { a: [1] } }), (t) => JSON.parse(t)],
    ['an empty managedFields becomes null', review({ managedFields: [] }), podManagedFieldsNull],
    ['whitespace after the key: parsed as it is', review({ name: 'p' }).replace('"name":', '"managedFields": [1], "name":'), (t) => JSON.parse(t)],
    [
      "only the first managedFields is elided (the old object's is parsed)",
      review({ managedFields }, { oldObject: { metadata: { managedFields: [{ manager: 'm' }] } } }),
      podManagedFieldsNull,
    ],
  ];
  it.each(cases)('%s', (_name, text, expected) => {
    expect(parseReviewJson(text)).toEqual(expected(text));
  });

  it('a malformed body throws the SyntaxError JSON.parse throws', () => {
    for (const text of ['{"managedFields":[1,2', '{"managedFields":[1,"]', '{"managedFields":[1]', '{"a":1,"managedFields":[1]} x', '{"x": ']) {
      expect(() => JSON.parse(text)).toThrow(SyntaxError);
      expect(() => parseReviewJson(text)).toThrow(SyntaxError);
    }
  });

  it('elides managedFields from every benchmark review and changes nothing else', () => {
    for (const size of ['small', 'medium', 'large'] as const) {
      for (const body of bodySet(size).bodies) {
        const text = body.toString('utf8');
        expect(Buffer.byteLength(withoutManagedFields(text))).toBeLessThan(body.length * 0.8);
        expect(parseReviewJson(text)).toEqual(podManagedFieldsNull(text));
      }
    }
  });

  // Strings full of the characters the scan looks at.
  const trickyString = fc.string({ unit: fc.constantFrom('"', '\\', '[', ']', '{', '}', ':', 'managedFields', '"managedFields":[', 'a', 'é', '€', '😀', '\n') });
  const value: fc.Arbitrary<Json> = fc.letrec<{ v: Json }>((tie) => ({
    v: fc.oneof(
      { depthSize: 'small' },
      fc.constant(null),
      fc.boolean(),
      fc.integer(),
      trickyString,
      fc.array(tie('v'), { maxLength: 4 }),
      fc.dictionary(fc.oneof(trickyString, fc.constant('managedFields')), tie('v'), { maxKeys: 4 }),
    ),
  })).v;

  /** The paths at which `a` and `b` differ (a path into both when both are containers). */
  function differences(a: unknown, b: unknown, path: string[] = []): Array<{ path: string[]; a: unknown; b: unknown }> {
    if (typeof a === 'object' && a !== null && typeof b === 'object' && b !== null && Array.isArray(a) === Array.isArray(b)) {
      const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
      return [...keys].flatMap((k) => differences((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], [...path, k]));
    }
    return Object.is(a, b) ? [] : [{ path, a, b }];
  }

  it('on any JSON document, differs from JSON.parse at most in one managedFields array turned null', () => {
    let elided = 0;
    fc.assert(
      fc.property(value, (doc) => {
        const text = JSON.stringify(doc);
        const diffs = differences(JSON.parse(text), parseReviewJson(text));
        expect(diffs.length).toBeLessThanOrEqual(1);
        elided += diffs.length;
        for (const d of diffs) {
          expect(d.path.at(-1)).toBe('managedFields');
          expect(Array.isArray(d.a)).toBe(true);
          expect(d.b).toBeNull();
        }
      }),
      { numRuns: 3000, seed: 20_261_127 },
    );
    expect(elided).toBeGreaterThan(30); // the generator does reach the elision (58 times with this seed)
  });

  it('on any text, succeeds wherever JSON.parse does, and fails as it does unless managedFields was elided', () => {
    const text = fc.oneof(
      fc.string({ unit: fc.constantFrom('"', '\\', '[', ']', '{', '}', ':', ',', '1', '"managedFields":[', '"managedFields":') }),
      value.map((v) => JSON.stringify(v)).chain((t) => fc.nat(t.length).map((n) => t.slice(0, n))),
    );
    fc.assert(
      fc.property(text, (t) => {
        let expected: unknown;
        try {
          expected = JSON.parse(t);
        } catch (err) {
          if (withoutManagedFields(t) === t) expect(() => parseReviewJson(t)).toThrow((err as Error).constructor as ErrorConstructor);
          return;
        }
        expect(differences(expected, parseReviewJson(t)).length).toBeLessThanOrEqual(1);
      }),
      { numRuns: 3000, seed: 20_261_127 },
    );
  });
});
