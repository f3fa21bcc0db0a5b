/**
 * "Will Dynatrace inject OneAgent into this pod?" (dynatrace.md §1), shared by the rules
 * that only matter when OneAgent is coming.
 *
 * The operator's pod webhook only sees namespaces it labelled
 * `dynakube.internal.dynatrace.com/instance`, and `dynatrace.com/inject` or
 * `oneagent.dynatrace.com/inject` parsing false (Go ParseBool; anything unparseable means
 * the default, i.e. inject) opts the pod out.
 *
 * With discovered webhook configurations, a pod that no Dynatrace pod webhook sees is "no" (its
 * namespaceSelector may have been changed, or OLM installed it with an OperatorGroup's). The
 * namespace label stays the signal otherwise: the operator maintains it, and its webhook checks
 * it again with a live GET (pkg/webhook/mutation/pod/request.go), so an OLM webhook that sees
 * every namespace still injects only labelled ones.
 */
import { DT_INJECT, DT_NAMESPACE_INSTANCE, DT_ONEAGENT_INJECT, DT_VOLUME_TYPE, parseGoBool } from '../admission/annotations.js';
import type { PodView } from '../admission/pod.js';
import { peerSeesPodCreate } from '../cluster/webhooks.js';
import type { RuleContext } from './types.js';

export type Verdict = { readonly yes: boolean; readonly reason: string };

/** The first Dynatrace injection annotation on the pod that parses as false (an opt-out), if any. */
export function dynatraceOptOutKey(pod: PodView): string | undefined {
  for (const key of [DT_INJECT, DT_ONEAGENT_INJECT]) {
    if (parseGoBool(pod.annotations.get(key)) === false) return key;
  }
  return undefined;
}

export function dynatraceWillInject(pod: PodView, ctx: RuleContext): Verdict {
  const optOut = dynatraceOptOutKey(pod);
  if (optOut !== undefined) return { yes: false, reason: `${optOut} parses as false` };
  const webhook = ctx.webhooks ? peerSeesPodCreate('dynatrace', ctx.webhooks, pod, ctx.namespace) : undefined;
  if (webhook?.state === 'no') return { yes: false, reason: webhook.reason };
  const byLabel = byNamespaceLabel(ctx);
  if (!webhook) return byLabel;
  return { yes: byLabel.yes, reason: `${byLabel.reason} (${webhook.state === 'yes' ? webhook.reason : `from the namespace label alone: ${webhook.reason}`})` };
}

function byNamespaceLabel(ctx: RuleContext): Verdict {
  const ns = ctx.namespace;
  if (ns.state === 'known') {
    return ns.labels[DT_NAMESPACE_INSTANCE] !== undefined
      ? { yes: true, reason: `namespace is labelled ${DT_NAMESPACE_INSTANCE}` }
      : { yes: false, reason: `namespace is not labelled ${DT_NAMESPACE_INSTANCE}, so Dynatrace does not inject` };
  }
  if (ns.state === 'absent') return { yes: false, reason: 'namespace does not exist' };
  const assume = ctx.config.dynatrace.assumeInjectedWhenUnknown;
  return {
    yes: assume,
    reason: `namespace labels unknown (${ns.reason}); dynatrace.assumeInjectedWhenUnknown is ${assume}`,
  };
}

/**
 * What OneAgent would cost a mesh node agent, by code-module delivery (peers-2026-12.md §3).
 * The pod annotation `oneagent.dynatrace.com/volume-type` picks the delivery when the DynaKube
 * has a code-modules image (operator mutator/oneagent/mutator.go isCSIVolume: "csi" or
 * "ephemeral"; "image" per the 1.11 docs). Without it the DynaKube decides, which mesh-guard
 * cannot see; the Helm chart's default is the CSI driver (csidriver.enabled: true).
 */
export function nodeAgentOneAgentRisk(pod: PodView): string {
  const type = pod.annotations.get(DT_VOLUME_TYPE);
  if (type === 'ephemeral' || type === 'image') {
    return `with ${DT_VOLUME_TYPE}=${JSON.stringify(type)} there is no CSI deadlock, but OneAgent would cost the node agent an image pull and an LD_PRELOAD into it, slowing every new node's mesh`;
  }
  const why = type === 'csi' ? `${DT_VOLUME_TYPE}="csi"` : 'with the CSI driver, the Helm default';
  return `${why}, OneAgent's volume waits for the CSI driver, which waits for this agent: a new node deadlocks`;
}
