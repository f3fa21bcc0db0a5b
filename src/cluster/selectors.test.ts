/**
 * Cases taken from k8s.io/apimachinery v0.36.3: `pkg/labels/selector_test.go`
 * (TestSelectorMatches, TestRequirementSelectorMatching) and `pkg/apis/meta/v1/helpers_test.go`
 * (TestLabelSelectorAsSelector), written as metav1.LabelSelector objects; plus the
 * webhook-relevant corners (absent keys, empty values, a Map and a null-prototype record).
 */
import { describe, expect, it } from 'vitest';
import {
  describeRequirement,
  firstFailed,
  parseSelector,
  selectorMatches,
  selectorString,
  type LabelSelectorSpec,
  type Selector,
} from './selectors.js';

function parsed(spec: LabelSelectorSpec | null | undefined): Selector {
  const s = parseSelector(spec);
  if (!s.ok) throw new Error(s.error);
  return s;
}

const expr = (key: string, operator: string, values?: string[]) => ({ key, operator, ...(values ? { values } : {}) });

describe('selectors: LabelSelectorAsSelector', () => {
  it.each([
    ['nil selects nothing', null, ''],
    ['absent selects nothing', undefined, ''],
    ['empty selects everything', {}, ''],
    ['empty lists select everything', { matchLabels: {}, matchExpressions: [] }, ''],
    ['matchLabels', { matchLabels: { foo: 'bar' } }, 'foo=bar'],
    ['In, values sorted in the string', { matchExpressions: [expr('baz', 'In', ['qux', 'norf'])] }, 'baz in (norf,qux)'],
    ['both, ordered by key', { matchLabels: { foo: 'bar' }, matchExpressions: [expr('baz', 'In', ['qux', 'norf'])] }, 'baz in (norf,qux),foo=bar'],
    ['NotIn, Exists, DoesNotExist', { matchExpressions: [expr('c', 'NotIn', ['x']), expr('b', 'Exists'), expr('a', 'DoesNotExist')] }, '!a,b,c notin (x)'],
    ['explicit null lists', { matchLabels: null, matchExpressions: null }, ''],
  ] as const)('%s', (_, spec, text) => {
    const s = parsed(spec as LabelSelectorSpec | null | undefined);
    expect(selectorString(s)).toBe(text);
  });

  it('nil and empty differ: nothing vs everything', () => {
    expect(parsed(null).nothing).toBe(true);
    expect(selectorMatches(parsed(null), {})).toBe(false);
    expect(parsed({}).everything).toBe(true);
    expect(selectorMatches(parsed({}), {})).toBe(true);
  });

  it.each([
    ['Exists with values (helpers_test.go)', { matchExpressions: [expr('baz', 'Exists', ['qux', 'norf'])] }, /values set must be empty/],
    ['DoesNotExist with values', { matchExpressions: [expr('baz', 'DoesNotExist', ['x'])] }, /values set must be empty/],
    ['In without values', { matchExpressions: [expr('baz', 'In', [])] }, /can't be empty/],
    ['NotIn without values', { matchExpressions: [expr('baz', 'NotIn')] }, /can't be empty/],
    ['unknown operator', { matchExpressions: [expr('baz', 'Gt', ['1'])] }, /"Gt" is not a valid label selector operator/],
    ['operator in the wrong case', { matchExpressions: [expr('baz', 'in', ['a'])] }, /"in" is not a valid/],
    ['bad key', { matchLabels: { 'not a key': 'x' } }, /not a valid label key/],
    ['bad value', { matchExpressions: [expr('k', 'In', ['has space'])] }, /not a valid label value/],
    ['non-string value', { matchLabels: { k: 1 } }, /list of strings/],
    ['matchExpressions not a list', { matchExpressions: { key: 'k' } }, /must be a list/],
  ])('invalid: %s', (_, spec, error) => {
    const s = parseSelector(spec as unknown as LabelSelectorSpec);
    expect(s.ok).toBe(false);
    expect(!s.ok && s.error).toMatch(error);
  });
});

describe('selectors: Requirement.Matches', () => {
  // [selector, labels, match]; from TestSelectorMatches (the =, !x, x forms as matchLabels / expressions).
  const cases: Array<[string, LabelSelectorSpec, Record<string, string>, boolean]> = [
    ['empty matches', {}, { x: 'y' }, true],
    ['x=y', { matchLabels: { x: 'y' } }, { x: 'y' }, true],
    ['x=y,z=w', { matchLabels: { x: 'y', z: 'w' } }, { x: 'y', z: 'w' }, true],
    ['x notin (y), z notin (w)', { matchExpressions: [expr('x', 'NotIn', ['y']), expr('z', 'NotIn', ['w'])] }, { x: 'z', z: 'a' }, true],
    ['notin=in is a plain key and value', { matchLabels: { notin: 'in' } }, { notin: 'in' }, true],
    ['x exists', { matchExpressions: [expr('x', 'Exists')] }, { x: 'z' }, true],
    ['!x', { matchExpressions: [expr('x', 'DoesNotExist')] }, { y: 'z' }, true],
    ['x=z on no labels', { matchLabels: { x: 'z' } }, {}, false],
    ['x=y on x=z', { matchLabels: { x: 'y' } }, { x: 'z' }, false],
    ['x=y,z=w on x=w', { matchLabels: { x: 'y', z: 'w' } }, { x: 'w', z: 'w' }, false],
    ['x notin (y), z notin (w) on z=w', { matchExpressions: [expr('x', 'NotIn', ['y']), expr('z', 'NotIn', ['w'])] }, { x: 'z', z: 'w' }, false],
    ['x exists on y', { matchExpressions: [expr('x', 'Exists')] }, { y: 'z' }, false],
    ['!x on x', { matchExpressions: [expr('x', 'DoesNotExist')] }, { x: 'z' }, false],
    ['foo=bar,foobar=bar,baz=blah', { matchLabels: { foo: 'bar', foobar: 'bar', baz: 'blah' } }, { foo: 'bar', baz: 'blah' }, false],
    // TestRequirementSelectorMatching
    ['x in (foo), y notin (alpha)', { matchExpressions: [expr('x', 'In', ['foo']), expr('y', 'NotIn', ['alpha'])] }, { x: 'foo', y: 'baz' }, true],
    ['x in (foo), y in (alpha)', { matchExpressions: [expr('x', 'In', ['foo']), expr('y', 'In', ['alpha'])] }, { x: 'foo', y: 'baz' }, false],
    ['x notin (""), y exists: absent x matches NotIn', { matchExpressions: [expr('x', 'NotIn', ['']), expr('y', 'Exists')] }, { y: '' }, true],
    ['!x, y exists on y=""', { matchExpressions: [expr('x', 'DoesNotExist'), expr('y', 'Exists')] }, { y: '' }, true],
    ['x notin (""), !y on y=""', { matchExpressions: [expr('x', 'NotIn', ['']), expr('y', 'DoesNotExist')] }, { y: '' }, false],
    ['x in ("") on no x: In needs the key', { matchExpressions: [expr('x', 'In', [''])] }, { y: 'baz' }, false],
    // Webhook corners
    ['In with several values', { matchExpressions: [expr('env', 'In', ['a', 'b'])] }, { env: 'b' }, true],
    ['In matches the empty value when listed', { matchExpressions: [expr('x', 'In', [''])] }, { x: '' }, true],
    ['NotIn on a listed value', { matchExpressions: [expr('inject', 'NotIn', ['false'])] }, { inject: 'false' }, false],
    ['NotIn on an absent key', { matchExpressions: [expr('inject', 'NotIn', ['false'])] }, {}, true],
    ['Exists on the empty value', { matchExpressions: [expr('x', 'Exists')] }, { x: '' }, true],
    ['values are case-sensitive', { matchLabels: { x: 'Enabled' } }, { x: 'enabled' }, false],
  ];

  it.each(cases)('%s', (_, spec, labels, match) => {
    const s = parsed(spec);
    expect(selectorMatches(s, labels)).toBe(match);
    expect(selectorMatches(s, new Map(Object.entries(labels)))).toBe(match);
    expect(firstFailed(s, labels) === undefined).toBe(match);
  });

  it('reads own keys only: "__proto__" and "constructor" are just keys', () => {
    const s = parsed({ matchExpressions: [expr('constructor', 'DoesNotExist'), expr('toString', 'DoesNotExist')] });
    expect(selectorMatches(s, {})).toBe(true);
    const rec: Record<string, string> = Object.create(null);
    rec['constructor'] = 'x';
    expect(selectorMatches(s, rec)).toBe(false);
  });
});

describe('selectors: reasons', () => {
  it('names the label and what the selector wanted', () => {
    const s = parsed({ matchExpressions: [expr('istio.io/rev', 'In', ['canary']), expr('istio-injection', 'DoesNotExist')] });
    const ns = { 'istio-injection': 'enabled', 'istio.io/rev': 'canary' };
    const failed = firstFailed(s, ns)!;
    expect(describeRequirement(failed, ns, 'namespace')).toBe('namespace label istio-injection=enabled, selector wants it absent');
    expect(describeRequirement(s.requirements[1]!, ns, 'namespace')).toBe('namespace label istio.io/rev=canary');
    expect(describeRequirement(s.requirements[1]!, {}, 'namespace')).toBe('no namespace label istio.io/rev, selector wants istio.io/rev in (canary)');
    expect(describeRequirement(s.requirements[0]!, {}, 'pod')).toBe('no pod label istio-injection');
  });
});
