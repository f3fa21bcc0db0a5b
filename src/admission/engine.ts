/**
 * Runs the rules over one pod and decides, per rule mode, which changes become patch
 * operations (enforce) and which are only reported (dry-run).
 */
import type { Config, RuleMode, RuleName } from '../config/schema.js';
import type { Rule, RuleContext, Change } from '../rules/types.js';
import { type PodView, withMetadata } from './pod.js';
import { buildPatch, resolveChanges, type PatchOperation, type ResolvedChange } from './patch.js';

export interface RuleOutcome {
  readonly rule: RuleName;
  readonly mode: Exclude<RuleMode, 'off'>;
  readonly changes: readonly ResolvedChange[];
  readonly reasons: readonly string[];
  readonly warnings: readonly string[];
  /** Set when the rule threw: its changes are dropped, the pod is still admitted. */
  readonly error?: string;
}

export interface Evaluation {
  readonly ops: PatchOperation[];
  /** Only rules that changed something, would have, or gave a reason. */
  readonly outcomes: readonly RuleOutcome[];
  /** Every rule's warnings, once each, in rule order (dry-run too: they describe the pod, not a patch). */
  readonly warnings: readonly string[];
}

export function effectiveMode(config: Config, rule: RuleName): RuleMode {
  const mode = config.rules[rule];
  if (mode === 'off') return 'off';
  return config.dryRun ? 'dry-run' : mode;
}

export function evaluateRules(pod: PodView, ctx: RuleContext, rules: readonly Rule[]): Evaluation {
  const enforced: Change[] = [];
  const outcomes: RuleOutcome[] = [];
  let view = pod;
  for (const rule of rules) {
    const mode = effectiveMode(ctx.config, rule.name);
    if (mode === 'off') continue;
    let changes: readonly Change[];
    let reasons: readonly string[];
    let warnings: readonly string[];
    try {
      ({ changes, reasons, warnings = NO_WARNINGS } = rule.evaluate(view, ctx));
    } catch (err) {
      outcomes.push({ rule: rule.name, mode, changes: [], reasons: [], warnings: NO_WARNINGS, error: errorText(err) });
      continue;
    }
    if (changes.length === 0 && reasons.length === 0 && warnings.length === 0) continue;
    outcomes.push({ rule: rule.name, mode, changes: resolveChanges(view, changes), reasons, warnings });
    if (mode === 'enforce' && changes.length > 0) {
      enforced.push(...changes);
      // Later rules see the pod as it will be, e.g. an opt-out set by an earlier rule.
      view = applyMetadataChanges(view, changes);
    }
  }
  return { ops: enforced.length ? buildPatch(pod, enforced) : [], outcomes, warnings: warningsOf(outcomes) };
}

const NO_WARNINGS: readonly string[] = Object.freeze([]);

function warningsOf(outcomes: readonly RuleOutcome[]): readonly string[] {
  const all = outcomes.flatMap((o) => o.warnings);
  return all.length ? [...new Set(all)] : NO_WARNINGS;
}

function applyMetadataChanges(pod: PodView, changes: readonly Change[]): PodView {
  let annotations: Map<string, string> | undefined;
  let labels: Map<string, string> | undefined;
  for (const c of changes) {
    if (c.kind === 'annotation') (annotations ??= new Map(pod.annotations)).set(c.key, c.value);
    else if (c.kind === 'label') (labels ??= new Map(pod.labels)).set(c.key, c.value);
  }
  return annotations || labels ? withMetadata(pod, annotations ?? pod.annotations, labels ?? pod.labels) : pod;
}

function errorText(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : 'non-error thrown';
}
