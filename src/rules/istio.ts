/**
 * "Will Istio inject a sidecar into this pod?" (istio.md §4 and §5), shared by the Istio rules.
 *
 * Two gates, in the order the API server and Istio apply them:
 * 1. The MutatingWebhookConfiguration selectors decide whether Istio's webhook sees the pod
 *    at all. They read namespace labels and the pod **label** `sidecar.istio.io/inject`
 *    (never the annotation):
 *    - namespace:     ns istio-injection=enabled;                          pod label inject ≠ "false"
 *    - rev.namespace: ns istio.io/rev set, istio-injection absent;         pod label inject ≠ "false"
 *    - rev.object:    ns has neither label; pod label istio.io/rev set,    pod label inject ≠ "false"
 *    - object:        ns has neither label; pod label inject = "true",     no pod label istio.io/rev
 *    - auto (only with enableNamespacesByDefault, our `istio.injectByDefault`): ns has neither
 *      label and is not ignored; pod has neither label.
 *    Any other `istio-injection` value (e.g. "disabled") matches no webhook.
 * 2. `injectRequired`: hostNetwork → no; ignored namespaces → no; then the pod label
 *    `sidecar.istio.io/inject`, else the deprecated annotation, where 1.27+ takes only
 *    "true"/"false" and anything else falls back to the default policy (autoInject
 *    "enabled", i.e. inject). never/alwaysInjectSelector are not mirrored.
 *
 * Gate 1 comes from Istio's live webhook configurations when the cluster view has them
 * (src/cluster/webhooks.ts decides as the API server does, for whatever revisions, tags and
 * selectors are installed); the hand-written copy below, with `istio.injectByDefault`, is the
 * fallback when discovery is off, found no Istio webhook, or cannot tell (matchConditions,
 * unknown namespace labels), and the reason then says so.
 *
 * When gate 1 was decided by a discovered webhook, gate 2 also reads that revision's injector
 * ConfigMap (src/cluster/peer-settings.ts) as istio `pkg/kube/inject/inject.go` `injectRequired`
 * does: an explicit "true"/"false" wins; otherwise a matching non-empty `neverInjectSelector`
 * means no, then a matching `alwaysInjectSelector` yes; then `policy`: "enabled" injects,
 * "disabled" only on an explicit "true", any other value never. Unread, it is the chart's
 * `policy: enabled` without selectors, said in the reason. `istioMesh` gives the same revision's
 * mesh config (status port, enablePrometheusMerge), else the `istio.*` mirrors.
 *
 * Istio's injector ignores `istio.io/dataplane-mode`: a pod that takes a sidecar route gets a
 * sidecar (and metric merging) even when labelled ambient; the ambient CNI then skips it.
 * Ambient only shows up in the reason when no sidecar route applies.
 */
import {
  ISTIO_DATAPLANE_MODE,
  ISTIO_IGNORED_NAMESPACES,
  ISTIO_INJECT,
  ISTIO_INJECTION_LABEL,
  ISTIO_REV,
  istioInjectSelector,
} from '../admission/annotations.js';
import type { PodView } from '../admission/pod.js';
import { decidingWebhook, istioRefs, lookupSettings, type RefOf } from '../cluster/peer-settings.js';
import { selectorMatches, selectorString, type InvalidSelector, type Selector } from '../cluster/selectors.js';
import { peerSeesPodCreate, type PeerVerdict } from '../cluster/webhooks.js';
import { perAdmission, type RuleContext } from './types.js';

/** The settings objects of the Istio revision whose webhook sees the pod. */
export interface IstioRevisionRefs {
  readonly injector: RefOf<'istio-injector'>;
  readonly mesh: RefOf<'istio-mesh'>;
}

export type SidecarVerdict =
  | {
      readonly state: 'yes';
      readonly reason: string;
      /** Present when a discovered webhook decided gate 1 and the view reads settings. */
      readonly revision?: IstioRevisionRefs;
    }
  | { readonly state: 'no'; readonly reason: string }
  /** Namespace labels are needed but unknown: callers must not act, and say why. */
  | { readonly state: 'unknown'; readonly reason: string };

const q = JSON.stringify;

/** Several rules ask for the same pod in one admission; the answer is worked out once. */
export const istioSidecarVerdict: (pod: PodView, ctx: RuleContext) => SidecarVerdict = perAdmission(sidecarVerdict);

function sidecarVerdict(pod: PodView, ctx: RuleContext): SidecarVerdict {
  if (pod.hostNetwork) return { state: 'no', reason: 'hostNetwork pod: Istio never injects a sidecar' };
  if (ISTIO_IGNORED_NAMESPACES.includes(pod.namespace)) {
    return { state: 'no', reason: `namespace ${pod.namespace} is on Istio's ignored list: no sidecar` };
  }
  const selector = istioInjectSelector(pod.labels, pod.annotations);
  const podLabel = pod.labels.get(ISTIO_INJECT);
  if (selector === false) {
    return {
      state: 'no',
      reason: podLabel !== undefined ? `pod label ${ISTIO_INJECT}="false": no sidecar` : `pod annotation ${ISTIO_INJECT}="false": no sidecar`,
    };
  }
  const discovered = discoveredIstio(pod, ctx);
  if (discovered?.state === 'yes') {
    const revision = revisionRefs(ctx, discovered);
    const gate2 = revision ? injectorGate(pod, ctx, revision.injector, selector) : undefined;
    if (gate2?.state === 'no') return gate2;
    return {
      state: 'yes',
      reason: `Istio injects a sidecar: ${discovered.reason}${gate2?.reason ?? ''}${injectCaveat(pod, selector, podLabel)}`,
      ...(revision ? { revision } : {}),
    };
  }
  if (discovered?.state === 'no') return { state: 'no', reason: discovered.reason };
  const mirrored = mirroredSidecarVerdict(pod, ctx, podLabel, selector);
  return discovered ? { ...mirrored, reason: `${mirrored.reason} (from the config mirror: ${discovered.reason})` } : mirrored;
}

/** Gate 1 from the discovered webhooks; undefined when the view does not discover them. */
function discoveredIstio(pod: PodView, ctx: RuleContext): PeerVerdict | undefined {
  return ctx.webhooks ? peerSeesPodCreate('istio', ctx.webhooks, pod, ctx.namespace) : undefined;
}

/** The deciding webhook's revision settings, when the view reads settings. */
function revisionRefs(ctx: RuleContext, discovered: PeerVerdict): IstioRevisionRefs | undefined {
  if (!ctx.settings || !ctx.webhooks) return undefined;
  const webhook = decidingWebhook(ctx.webhooks, discovered);
  return webhook ? istioRefs(webhook) : undefined;
}

const usable = (s: Selector | InvalidSelector): s is Selector => s.ok && !s.everything && !s.nothing;

/**
 * Gate 2 from the revision's injector ConfigMap, as injectRequired (after hostNetwork, ignored
 * namespaces and an explicit "false", which the caller has handled). A "yes" reason is a suffix.
 */
function injectorGate(
  pod: PodView,
  ctx: RuleContext,
  ref: IstioRevisionRefs['injector'],
  selector: boolean | undefined,
): { state: 'yes' | 'no'; reason: string } {
  const found = lookupSettings(ctx.settings, ref);
  if (found.state !== 'known') return { state: 'yes', reason: `; injection policy taken as the chart's "enabled" (${found.reason})` };
  const { policy, neverInjectSelector, alwaysInjectSelector } = found.value;
  const src = found.source;
  let inject = selector;
  let why = selector === true ? `${ISTIO_INJECT}="true"` : '';
  if (inject === undefined) {
    const never = neverInjectSelector.find((s) => usable(s) && selectorMatches(s, pod.labels)) as Selector | undefined;
    if (never) [inject, why] = [false, `pod labels match neverInjectSelector ${selectorString(never)}`];
  }
  if (inject === undefined) {
    const always = alwaysInjectSelector.find((s) => usable(s) && selectorMatches(s, pod.labels)) as Selector | undefined;
    if (always) [inject, why] = [true, `pod labels match alwaysInjectSelector ${selectorString(always)}`];
  }
  if (policy !== 'enabled' && policy !== 'disabled') {
    return { state: 'no', reason: `${src} has injection policy ${q(policy)}, which Istio's injectRequired treats as off: no sidecar` };
  }
  if (inject === undefined) {
    return policy === 'enabled'
      ? { state: 'yes', reason: `; ${src} has policy enabled` }
      : { state: 'no', reason: `${src} has policy disabled and the pod does not ask for a sidecar (no ${ISTIO_INJECT}="true", no alwaysInjectSelector match)` };
  }
  return inject ? { state: 'yes', reason: `; ${why} (${src})` } : { state: 'no', reason: `${why} (${src}): no sidecar` };
}

/** Where Istio's merged metrics are served for this pod, and whether Istio merges at all. */
export interface IstioMesh {
  readonly statusPort: number;
  readonly prometheusMerge: boolean;
  /** The mesh config ConfigMap read, or undefined when the `istio.*` mirrors answered. */
  readonly source: string | undefined;
  /** Why the mirrors answered although the view reads settings. */
  readonly unread?: string;
}

/** The mesh config of the revision whose webhook sees the pod; the `istio.statusPort` / `istio.prometheusMerge` mirrors otherwise. */
export function istioMesh(pod: PodView, ctx: RuleContext): IstioMesh {
  const mirror = { statusPort: ctx.config.istio.statusPort, prometheusMerge: ctx.config.istio.prometheusMerge, source: undefined };
  const verdict = istioSidecarVerdict(pod, ctx);
  if (verdict.state !== 'yes' || !verdict.revision) return mirror;
  const found = lookupSettings(ctx.settings, verdict.revision.mesh);
  if (found.state !== 'known') return { ...mirror, unread: found.reason };
  return { statusPort: found.value.statusPort, prometheusMerge: found.value.enablePrometheusMerge, source: found.source };
}

/** Gate 1 from the hand-written copy of Istio's default webhook selectors. */
function mirroredSidecarVerdict(pod: PodView, ctx: RuleContext, podLabel: string | undefined, selector: boolean | undefined): SidecarVerdict {
  const ns = ctx.namespace;
  if (ns.state === 'unknown') {
    return { state: 'unknown', reason: `namespace labels unknown (${ns.reason}), so whether Istio injects a sidecar cannot be told` };
  }
  if (ns.state === 'absent') return { state: 'no', reason: `namespace ${q(pod.namespace)} does not exist` };

  const injection = ns.labels[ISTIO_INJECTION_LABEL];
  const nsRev = ns.labels[ISTIO_REV];
  const podRev = pod.labels.get(ISTIO_REV);
  let route: string | undefined;
  if (injection !== undefined) {
    if (injection !== 'enabled') {
      return { state: 'no', reason: `namespace label ${ISTIO_INJECTION_LABEL}=${q(injection)} matches no Istio webhook (it takes precedence over ${ISTIO_REV})` };
    }
    route = `namespace label ${ISTIO_INJECTION_LABEL}=enabled`;
  } else if (nsRev !== undefined) {
    route = `namespace label ${ISTIO_REV}=${q(nsRev)}`;
  } else if (podRev !== undefined) {
    route = `pod label ${ISTIO_REV}=${q(podRev)} in a namespace without Istio labels`;
  } else if (podLabel === 'true') {
    route = `pod label ${ISTIO_INJECT}="true" in a namespace without Istio labels`;
  } else if (podLabel === undefined && ctx.config.istio.injectByDefault) {
    route = 'istio.injectByDefault (auto-injection of namespaces without Istio labels)';
  }
  if (!route) return { state: 'no', reason: noRouteReason(pod, ns.labels, podLabel) };
  return { state: 'yes', reason: `Istio injects a sidecar: ${route}${injectCaveat(pod, selector, podLabel)}` };
}

/** Gate 2's note on an injection value Istio ≥1.27 ignores (it then injects by default policy). */
function injectCaveat(pod: PodView, selector: boolean | undefined, podLabel: string | undefined): string {
  return podLabel !== undefined && podLabel !== 'true'
    ? `; label ${ISTIO_INJECT}=${q(podLabel)} is neither "true" nor "false", which Istio ≥1.27 ignores (≤1.26 read it as false)`
    : podLabel === undefined && pod.annotations.has(ISTIO_INJECT) && selector === undefined
      ? `; annotation ${ISTIO_INJECT}=${q(pod.annotations.get(ISTIO_INJECT))} is neither "true" nor "false", which Istio ≥1.27 ignores`
      : '';
}

function noRouteReason(pod: PodView, nsLabels: Readonly<Record<string, string>>, podLabel: string | undefined): string {
  const ambient =
    pod.labels.get(ISTIO_DATAPLANE_MODE) === 'ambient' ? 'pod is ambient (label istio.io/dataplane-mode=ambient), '
    : nsLabels[ISTIO_DATAPLANE_MODE] === 'ambient' ? 'namespace is ambient (label istio.io/dataplane-mode=ambient), '
    : '';
  if (podLabel === undefined && pod.annotations.get(ISTIO_INJECT) === 'true') {
    return `${ambient}no Istio webhook matches: annotation ${ISTIO_INJECT}="true" is not seen by the webhook selectors, which read the label only`;
  }
  return ambient
    ? `${ambient}no sidecar route applies, so there is no sidecar and no merged metrics endpoint`
    : 'no Istio webhook matches (namespace has neither istio-injection nor istio.io/rev, pod has no injection label)';
}
