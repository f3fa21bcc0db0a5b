/**
 * Kubernetes label-selector semantics, the one implementation in mesh-guard.
 *
 * Mirrors k8s.io/apimachinery v0.36.3:
 * - `pkg/apis/meta/v1/helpers.go` `LabelSelectorAsSelector`: a nil selector selects nothing, an
 *   empty one (no matchLabels, no matchExpressions) everything; matchLabels become `=`
 *   requirements, matchExpressions In / NotIn / Exists / DoesNotExist; any other operator is an
 *   error ("%q is not a valid label selector operator").
 * - `pkg/labels/selector.go` `NewRequirement`: the key must be a qualified name, every value a
 *   label value; In and NotIn need at least one value, `=` exactly one, Exists and DoesNotExist
 *   none. `internalSelector.Add` orders requirements by key, so `String()` is stable.
 * - `pkg/labels/selector.go` `Requirement.Matches`: In and `=` need the key present with a listed
 *   value; NotIn matches when the key is absent or its value is not listed; Exists / DoesNotExist
 *   look only at presence. A selector matches when every requirement does.
 *
 * No TypeScript library kept alongside @kubernetes/client-node 1.x evaluates selectors
 * (client-node only passes `labelSelector` strings through to the API server), hence this file.
 *
 * An invalid selector is returned as `{ ok: false }` rather than thrown: the API server rejects
 * such selectors when a configuration is created (admissionregistration validation runs the
 * same checks), so one can only come from hand-written input (preview files) or a server that
 * mesh-guard does not understand, and callers answer "unknown" for it.
 */
import { isQualifiedName, isValidLabelValue } from '../admission/annotations.js';

/** metav1.LabelSelector as it appears in JSON (webhook configurations, DynaKubes, preview input). */
export interface LabelSelectorSpec {
  readonly matchLabels?: Readonly<Record<string, string>> | null;
  readonly matchExpressions?: ReadonlyArray<{ readonly key: string; readonly operator: string; readonly values?: readonly string[] | null }> | null;
}

export type Operator = '=' | 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';

export interface Requirement {
  readonly key: string;
  readonly operator: Operator;
  readonly values: readonly string[];
}

/** A label set: a pod's labels (a Map) or a namespace's (a plain record). */
export type Labels = ReadonlyMap<string, string> | Readonly<Record<string, string>>;

export interface Selector {
  readonly ok: true;
  /** Selects every label set (an empty selector). */
  readonly everything: boolean;
  /** Selects no label set (a nil selector, as LabelSelectorAsSelector(nil)). */
  readonly nothing: boolean;
  /** Ordered by key, as internalSelector.Add orders them. */
  readonly requirements: readonly Requirement[];
}

export interface InvalidSelector {
  readonly ok: false;
  readonly error: string;
}

export const EVERYTHING: Selector = Object.freeze({ ok: true, everything: true, nothing: false, requirements: Object.freeze([]) });
export const NOTHING: Selector = Object.freeze({ ok: true, everything: false, nothing: true, requirements: Object.freeze([]) });

const OPERATORS: Readonly<Record<string, Operator>> = { In: 'In', NotIn: 'NotIn', Exists: 'Exists', DoesNotExist: 'DoesNotExist' };
const q = JSON.stringify;

/** LabelSelectorAsSelector plus NewRequirement's validation. */
export function parseSelector(spec: LabelSelectorSpec | null | undefined): Selector | InvalidSelector {
  if (spec === null || spec === undefined) return NOTHING;
  if (typeof spec !== 'object' || Array.isArray(spec)) return invalid('a label selector must be an object');
  const matchLabels = spec.matchLabels ?? {};
  const matchExpressions = spec.matchExpressions ?? [];
  if (typeof matchLabels !== 'object' || Array.isArray(matchLabels)) return invalid('matchLabels must be an object');
  if (!Array.isArray(matchExpressions)) return invalid('matchExpressions must be a list');
  const requirements: Requirement[] = [];
  for (const [key, value] of Object.entries(matchLabels)) {
    const r = requirement(key, '=', [value]);
    if (typeof r === 'string') return invalid(`matchLabels: ${r}`);
    requirements.push(r);
  }
  for (const [i, e] of matchExpressions.entries()) {
    if (!e || typeof e !== 'object') return invalid(`matchExpressions[${i}] must be an object`);
    const op = typeof e.operator === 'string' && Object.hasOwn(OPERATORS, e.operator) ? OPERATORS[e.operator]! : undefined;
    if (!op) return invalid(`matchExpressions[${i}]: ${q(e.operator)} is not a valid label selector operator`);
    const r = requirement(e.key, op, e.values ?? []);
    if (typeof r === 'string') return invalid(`matchExpressions[${i}]: ${r}`);
    requirements.push(r);
  }
  if (requirements.length === 0) return EVERYTHING;
  // Stable, like sort.Sort(ByKey) on requirements that differ in key (equal keys keep their order here).
  requirements.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return Object.freeze({ ok: true, everything: false, nothing: false, requirements: Object.freeze(requirements) });
}

function requirement(key: unknown, operator: Operator, values: unknown): Requirement | string {
  if (typeof key !== 'string' || !isQualifiedName(key)) return `key ${q(key)} is not a valid label key`;
  if (!Array.isArray(values) || values.some((v) => typeof v !== 'string')) return `values of ${key} must be a list of strings`;
  const vals = values as string[];
  if ((operator === 'In' || operator === 'NotIn') && vals.length === 0) return `for 'in', 'notin' operators, values set can't be empty (key ${key})`;
  if (operator === '=' && vals.length !== 1) return `exact-match compatibility requires one single value (key ${key})`;
  if ((operator === 'Exists' || operator === 'DoesNotExist') && vals.length !== 0) {
    return `values set must be empty for exists and does not exist (key ${key})`;
  }
  const bad = vals.find((v) => !isValidLabelValue(v));
  if (bad !== undefined) return `${q(bad)} is not a valid label value (key ${key})`;
  return Object.freeze({ key, operator, values: Object.freeze([...vals]) });
}

function invalid(error: string): InvalidSelector {
  return { ok: false, error };
}

function lookup(labels: Labels, key: string): string | undefined {
  if (labels instanceof Map) return labels.get(key);
  const rec = labels as Readonly<Record<string, string>>;
  return Object.hasOwn(rec, key) ? rec[key] : undefined;
}

/** Requirement.Matches. */
export function requirementMatches(r: Requirement, labels: Labels): boolean {
  const value = lookup(labels, r.key);
  switch (r.operator) {
    case '=':
    case 'In':
      return value !== undefined && r.values.includes(value);
    case 'NotIn':
      return value === undefined || !r.values.includes(value);
    case 'Exists':
      return value !== undefined;
    case 'DoesNotExist':
      return value === undefined;
  }
}

/** Selector.Matches. */
export function selectorMatches(s: Selector, labels: Labels): boolean {
  if (s.nothing) return false;
  for (const r of s.requirements) if (!requirementMatches(r, labels)) return false;
  return true;
}

/** The first requirement the labels fail, or undefined when the selector matches. For reasons. */
export function firstFailed(s: Selector, labels: Labels): Requirement | undefined {
  for (const r of s.requirements) if (!requirementMatches(r, labels)) return r;
  return undefined;
}

/** Requirement.String: `k=v`, `k in (a,b)`, `k notin (a)`, `k`, `!k`; values sorted. */
export function requirementString(r: Requirement): string {
  const values = r.values.length > 1 ? [...r.values].sort().join(',') : (r.values[0] ?? '');
  switch (r.operator) {
    case '=':
      return `${r.key}=${values}`;
    case 'In':
      return `${r.key} in (${values})`;
    case 'NotIn':
      return `${r.key} notin (${values})`;
    case 'Exists':
      return r.key;
    case 'DoesNotExist':
      return `!${r.key}`;
  }
}

/** Selector.String: requirements joined by ",", "" for everything (and for nothing, as Go prints it). */
export function selectorString(s: Selector): string {
  return s.requirements.map(requirementString).join(',');
}

/**
 * How a label set stands towards one requirement, in words, for admission reasons:
 * `namespace label istio.io/rev=canary`, `no pod label sidecar.istio.io/inject`.
 */
export function describeRequirement(r: Requirement, labels: Labels, what: string): string {
  const value = lookup(labels, r.key);
  const has = value === undefined ? `no ${what} label ${r.key}` : `${what} label ${r.key}=${value}`;
  if (requirementMatches(r, labels)) return has;
  switch (r.operator) {
    case '=':
    case 'In':
    case 'NotIn':
      return `${has}, selector wants ${requirementString(r)}`;
    case 'Exists':
      return `${has}, selector wants it set`;
    case 'DoesNotExist':
      return `${has}, selector wants it absent`;
  }
}
