/**
 * Mesh-proxy instrumentation guard (peers-2026-12.md §1, dynatrace.md §1 and §7). Off by
 * default: a user turns it on with `rules.mesh-proxy-instrumentation-guard: enforce`.
 *
 * Dynatrace instruments the mesh proxies too: Consul's webhook sorts before Dynatrace's, so
 * Dynatrace sees `consul-dataplane` on its first pass, and its reinvocation instruments
 * `istio-proxy` once Istio has added it (a classic sidecar; native sidecars are init containers,
 * which Dynatrace never touches). OneAgent in Envoy has been reported to crash it with an
 * EnvoyFilter (Dynatrace/dynatrace-operator#1956). The per-container opt-out keeps OneAgent out
 * of the proxy. It also turns off Dynatrace's Envoy monitoring, which is why the rule is off by
 * default.
 *
 * The key is `container.inject.dynatrace.com/<name>` and only exactly "false" excludes
 * (operator pkg/webhook/mutation/pod/mutator/container.go checkInjectionAnnotation). The
 * operator checks it per container at injection time, so the annotation works whenever it is
 * there before Dynatrace's pass over the proxy container; after that, it is too late for that pod.
 */
import { dynatraceContainerExcluded, dynatraceContainerOptOutKey, ISTIO_PROXY_CONTAINER, parseGoBool } from '../admission/annotations.js';
import type { PodView } from '../admission/pod.js';
import { consulInjectVerdict } from './consul.js';
import { dynatraceWillInject } from './dynatrace.js';
import { istioSidecarVerdict } from './istio.js';
import type { Change, Rule, RuleResult } from './types.js';
import { NOTHING } from './types.js';

export const CONSUL_DATAPLANE_CONTAINER = 'consul-dataplane';
/** The operator's per-container "already injected" test (dynatrace.md §4): a mount of this volume. */
const ONEAGENT_BIN_VOLUME = 'oneagent-bin';

const q = JSON.stringify;

function instrumented(pod: PodView, container: string): boolean {
  const c = pod.containers.find((x) => x.name === container);
  return c?.container.volumeMounts?.some((m) => m?.name === ONEAGENT_BIN_VOLUME) === true;
}

/** Undefined once the opt-out is in place (our own output, or the owner's). */
function optOut(pod: PodView, container: string, why: string): { change?: Change; reason: string } | undefined {
  const key = dynatraceContainerOptOutKey(container);
  const current = pod.annotations.get(key);
  if (dynatraceContainerExcluded(current)) return undefined;
  if (instrumented(pod, container)) return { reason: `${why}, but Dynatrace already instrumented ${container}; too late for this pod` };
  if (current !== undefined && parseGoBool(current) !== false) return { reason: `${why}; ${key}=${q(current)} is set on the pod and left alone` };
  const reason =
    current === undefined ? `${why}: keep OneAgent out of ${container}`
    : `${why}: keep OneAgent out of ${container}; ${key}=${q(current)} does not exclude it, Dynatrace honours only exactly "false"`;
  return { change: { kind: 'annotation', key, value: 'false', reason }, reason };
}

export const meshProxyInstrumentationGuard: Rule = {
  name: 'mesh-proxy-instrumentation-guard',
  summary:
    'Opt-in: keeps OneAgent out of istio-proxy and consul-dataplane (container.inject.dynatrace.com/<name>: "false") on pods that a mesh and Dynatrace both inject; this also turns off Dynatrace\'s Envoy monitoring.',
  evaluate(pod, ctx): RuleResult {
    const dynatrace = dynatraceWillInject(pod, ctx);
    if (!dynatrace.yes) return NOTHING;
    const results: Array<{ change?: Change; reason: string } | undefined> = [];
    const istio = istioSidecarVerdict(pod, ctx);
    if (istio.state === 'yes' || pod.containers.some((c) => c.name === ISTIO_PROXY_CONTAINER)) {
      results.push(optOut(pod, ISTIO_PROXY_CONTAINER, istio.state === 'yes' ? `${istio.reason}, and ${dynatrace.reason}` : `${ISTIO_PROXY_CONTAINER} is on the pod, and ${dynatrace.reason}`));
    }
    const consul = consulInjectVerdict(pod, ctx);
    if (consul.kind === 'will-inject' || consul.kind === 'injected') {
      results.push(optOut(pod, CONSUL_DATAPLANE_CONTAINER, `${consul.kind === 'will-inject' ? `Consul injects (${consul.reason})` : consul.reason}, and ${dynatrace.reason}`));
    }
    const open = results.filter((r) => r !== undefined);
    if (open.length === 0) return NOTHING;
    return { changes: open.flatMap((r) => (r.change ? [r.change] : [])), reasons: open.map((r) => r.reason) };
  },
};
