/**
 * Keeps Dynatrace's own CSI driver pods out of the meshes (dynatrace.md §3, §7). The CSI
 * driver is not hostNetwork, so a mesh sidecar would make it wait for the mesh CNI, which
 * may itself wait for the CSI volume. Istio's webhook selectors read the pod *label*
 * `sidecar.istio.io/inject`; Consul reads the annotation `connect-inject`. In ambient mode
 * the pod's sandbox waits for ztunnel, a node agent like istio-cni, so the pod label
 * `istio.io/dataplane-mode: none` keeps it out of ambient too (peers-2026-12.md §2; istio
 * manifests/charts/istio-cni/values.yaml enablement selectors). An explicit value already on
 * the pod is the owner's choice and is left alone.
 */
import { CONSUL_CONNECT_INJECT, ISTIO_DATAPLANE_MODE, ISTIO_INJECT } from '../admission/annotations.js';
import type { PodView } from '../admission/pod.js';
import type { Change, Rule, RuleResult } from './types.js';
import { NOTHING } from './types.js';

export function isDynatraceCsiDriver(pod: PodView): boolean {
  return (
    pod.labels.get('internal.oneagent.dynatrace.com/component') === 'csi-driver' ||
    (pod.labels.get('app.kubernetes.io/component') === 'csi-driver' &&
      pod.labels.get('app.kubernetes.io/name') === 'dynatrace-operator')
  );
}

export const csiDriverGuard: Rule = {
  name: 'csi-driver-guard',
  summary: "Keeps Istio (sidecar and ambient) and Consul out of Dynatrace's CSI driver pods.",
  evaluate(pod): RuleResult {
    if (!isDynatraceCsiDriver(pod)) return NOTHING;
    const changes: Change[] = [];
    const reasons: string[] = [];
    const why = 'Dynatrace CSI driver pod must not wait for a mesh';
    if (pod.labels.has(ISTIO_INJECT)) reasons.push(`label ${ISTIO_INJECT} already set`);
    else changes.push({ kind: 'label', key: ISTIO_INJECT, value: 'false', reason: why });
    if (pod.labels.has(ISTIO_DATAPLANE_MODE)) reasons.push(`label ${ISTIO_DATAPLANE_MODE} already set`);
    else changes.push({ kind: 'label', key: ISTIO_DATAPLANE_MODE, value: 'none', reason: `${why} (ambient: ztunnel)` });
    if (pod.annotations.has(CONSUL_CONNECT_INJECT)) reasons.push(`${CONSUL_CONNECT_INJECT} already set`);
    else changes.push({ kind: 'annotation', key: CONSUL_CONNECT_INJECT, value: 'false', reason: why });
    if (changes.length) reasons.unshift(why);
    return { changes, reasons };
  },
};
