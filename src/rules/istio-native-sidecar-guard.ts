/**
 * Native-sidecar guard (istio.md §2, dynatrace.md §1).
 *
 * The Dynatrace Operator does not support Istio native sidecars (istio-proxy as an init
 * container with restartPolicy: Always), which Istio ≥1.27 turns on by default when the
 * kubelets are ≥1.33. When a pod will get both an Istio sidecar and OneAgent, this rule sets
 * the per-pod switch `sidecar.istio.io/nativeSidecar: "false"` (Istio ≥1.24; older versions
 * ignore it). It must be on the pod before Istio's webhook runs, so once
 * `sidecar.istio.io/status` exists the rule does nothing: too late, and a re-invocation on
 * its own output stays a no-op.
 */
import { ISTIO_INJECT, ISTIO_NATIVE_SIDECAR, ISTIO_REV, ISTIO_PROXY_CONTAINER, ISTIO_STATUS, parseGoBool } from '../admission/annotations.js';
import { dynatraceOptOutKey, dynatraceWillInject } from './dynatrace.js';
import { istioSidecarVerdict } from './istio.js';
import type { Rule, RuleResult } from './types.js';
import { NOTHING, skip } from './types.js';

const q = JSON.stringify;

export const istioNativeSidecarGuard: Rule = {
  name: 'istio-native-sidecar-guard',
  summary:
    'Sets sidecar.istio.io/nativeSidecar: "false" on pods that get both an Istio sidecar and Dynatrace OneAgent, since the Dynatrace Operator does not support native sidecars.',
  evaluate(pod, ctx): RuleResult {
    if (!ctx.config.istio.nativeSidecarGuard) return NOTHING;
    const current = pod.annotations.get(ISTIO_NATIVE_SIDECAR);
    if (current === 'false') return NOTHING;

    const dynatrace = dynatraceWillInject(pod, ctx);
    if (pod.annotations.has(ISTIO_STATUS)) {
      // Too late to change anything. Say so only when the outcome is the one the guard exists to prevent.
      const native = pod.initContainers.some((c) => c.name === ISTIO_PROXY_CONTAINER);
      return native && dynatrace.yes
        ? skip(`Istio already injected a native sidecar (${ISTIO_PROXY_CONTAINER} in initContainers) and ${dynatrace.reason}; too late to opt out, mesh-guard must run before Istio's webhook`)
        : NOTHING;
    }

    const istio = istioSidecarVerdict(pod, ctx);
    if (istio.state === 'no') return NOTHING;
    if (istio.state === 'unknown') {
      // Without namespace labels neither side can be told. Say so only for a pod that asks for a
      // sidecar itself; otherwise every pod would carry this line while the cluster view is off.
      const optedOut = dynatraceOptOutKey(pod) !== undefined;
      const asksForSidecar = pod.labels.get(ISTIO_INJECT) === 'true' || pod.labels.has(ISTIO_REV);
      return optedOut || !asksForSidecar ? NOTHING : skip(`not acting: ${istio.reason}`);
    }
    if (!dynatrace.yes) return NOTHING;

    const both = `${istio.reason}, and ${dynatrace.reason} (Dynatrace injects OneAgent), which does not support Istio native sidecars`;
    if (current !== undefined && current !== '' && parseGoBool(current) !== false) {
      return skip(`${both}; ${ISTIO_NATIVE_SIDECAR}=${q(current)} is set on the pod and left alone`);
    }
    const reason =
      current === undefined ? both
      : current === '' ? `${both}; an empty ${ISTIO_NATIVE_SIDECAR} means Istio's default (native on ≥1.27)`
      : `${both}; ${ISTIO_NATIVE_SIDECAR}=${q(current)} means native on Istio ≥1.27, which only honours exactly "false"`;
    return { changes: [{ kind: 'annotation', key: ISTIO_NATIVE_SIDECAR, value: 'false', reason }], reasons: [reason] };
  },
};
