import type { Config, RuleName } from '../config/schema.js';
import type { NamespaceLookup } from '../cluster/view.js';
import type { PeerSettings } from '../cluster/peer-settings.js';
import type { WebhookDiscovery } from '../cluster/webhooks.js';
import type { PodView } from '../admission/pod.js';

/**
 * What a rule wants changed. Rules never build patch operations: the patch builder
 * (src/admission/patch.ts) turns changes into a JSON Patch that applies cleanly.
 */
export type Change =
  | { readonly kind: 'annotation'; readonly key: string; readonly value: string; readonly reason: string }
  | { readonly kind: 'label'; readonly key: string; readonly value: string; readonly reason: string }
  | {
      /** Replace the literal value of an existing env var (values are never logged). */
      readonly kind: 'env';
      readonly list: 'containers' | 'initContainers';
      readonly containerIndex: number;
      readonly containerName: string;
      readonly envIndex: number;
      readonly name: string;
      readonly value: string;
      readonly reason: string;
    };

export interface RuleResult {
  readonly changes: readonly Change[];
  /**
   * Why the rule acted or stayed away, for the admission log. Empty when the pod is simply
   * none of the rule's business, so ordinary pods keep a short log line.
   */
  readonly reasons: readonly string[];
  /**
   * AdmissionReview warnings, shown by kubectl and kept in the audit log: only for a known
   * breakage mesh-guard leaves in place that a person must act on. Short, fixed text with no
   * pod content, and few: a warning on every ordinary pod is noise.
   */
  readonly warnings?: readonly string[];
}

export interface RuleContext {
  readonly config: Config;
  /** Labels of the pod's namespace, from the cluster view. */
  readonly namespace: NamespaceLookup;
  /** ClusterIPs of the Dynatrace ActiveGate Services; null when unknown. */
  readonly activeGateIPs: readonly string[] | null;
  /**
   * The peers' webhook configurations, from the cluster view. Predictions use them first and the
   * config mirrors when this is absent, unknown, or inconclusive for the pod.
   */
  readonly webhooks?: WebhookDiscovery;
  /**
   * The peers' own settings behind those webhooks (peer-settings.ts). Predictions use them first
   * and the config mirrors for whatever is absent or unknown here.
   */
  readonly settings?: PeerSettings;
}

export interface Rule {
  readonly name: RuleName;
  /** One line for docs and `--help`. */
  readonly summary: string;
  /** Pure: no I/O, no clock, no mutation of `pod`. */
  evaluate(pod: PodView, ctx: RuleContext): RuleResult;
}

export const NOTHING: RuleResult = Object.freeze({ changes: [], reasons: [] });

export function skip(reason: string): RuleResult {
  return { changes: [], reasons: [reason] };
}

/**
 * One answer per pod and admission for a question several rules ask (will Istio inject, which
 * Consul injector): the context is built once per admission and the pod view is not changed by rules.
 */
export function perAdmission<T>(compute: (pod: PodView, ctx: RuleContext) => T): (pod: PodView, ctx: RuleContext) => T {
  const memo = new WeakMap<RuleContext, WeakMap<PodView, T>>();
  return (pod, ctx) => {
    let byPod = memo.get(ctx);
    if (!byPod) memo.set(ctx, (byPod = new WeakMap()));
    if (!byPod.has(pod)) byPod.set(pod, compute(pod, ctx));
    return byPod.get(pod) as T;
  };
}
