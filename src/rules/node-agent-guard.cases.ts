/**
 * node-agent-guard's table of cases: the pods it opts out of OneAgent and the pods it leaves
 * alone. Shared by its unit test and by test/policy.test.ts, which runs the same inputs through
 * the MutatingAdmissionPolicy in deploy/policies.
 */
import type { V1Pod } from '@kubernetes/client-node';

export function pod(meta: Partial<NonNullable<V1Pod['metadata']>>, images: string[] = ['nginx:1.27']): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { namespace: 'default', ...meta },
    spec: { containers: images.map((image, i) => ({ name: `c${i}`, image })) },
  };
}

/**
 * The Istio chart's node-agent pods, hand-written from its templates; they exist only in
 * ../shared/corpus (test/support/corpus.ts), so tests skip them without it (never under CI).
 */
export const CNI_POD = 'istio-charts/examples/istio-cni-node-pod.admission.yaml';
export const ZTUNNEL_POD = 'istio-charts/examples/ztunnel-pod.admission.yaml';

export const NODE_AGENT_CASES: Array<[string, V1Pod]> = [
  ['istio-cni in kube-system (GKE/OpenShift) by label', pod({ namespace: 'kube-system', generateName: 'x-', labels: { 'k8s-app': 'istio-cni-node' } })],
  ['istio-cni by generateName only', pod({ generateName: 'istio-cni-node-' })],
  ['istio-cni by name', pod({ name: 'istio-cni-node-abcde' })],
  ['istio-cni by install-cni image on another registry, distroless tag', pod({ generateName: 'cni-' }, ['my.registry:5000/mirror/istio/install-cni:1.30.3-distroless'])],
  ['istio-cni by install-cni image with digest', pod({ generateName: 'cni-' }, ['gcr.io/istio-release/install-cni@sha256:abcd'])],
  ['Consul CNI', pod({ generateName: 'consul-cni-', labels: { app: 'consul', component: 'cni' }, annotations: { 'consul.hashicorp.com/connect-inject': 'false' } })],
  ['linkerd-cni', pod({ generateName: 'linkerd-cni-', labels: { 'k8s-app': 'linkerd-cni', 'linkerd.io/cni-resource': 'true' } })],
];

export const NOT_NODE_AGENT_CASES: Array<[string, V1Pod]> = [
  ['an ordinary app pod', pod({ generateName: 'web-', labels: { app: 'web' } })],
  ['an image whose name merely contains install-cni', pod({ generateName: 'tools-' }, ['docker.io/acme/my-install-cni-helper:1.0'])],
  ['an image install-cni-tools', pod({ generateName: 'tools-' }, ['acme/install-cni-tools:2'])],
  ['a repository path containing install-cni', pod({ generateName: 'x-' }, ['acme/install-cni/other:1'])],
  ['app: ztunnel without a ztunnel image', pod({ generateName: 'z-', labels: { app: 'ztunnel' } })],
  ['a ztunnel image without app: ztunnel', pod({ generateName: 'z-' }, ['istio/ztunnel:1.30'])],
  ['Consul server (app: consul, component: server)', pod({ generateName: 'consul-server-', labels: { app: 'consul', component: 'server' } })],
  ['generateName that only resembles istio-cni-node', pod({ generateName: 'my-istio-cni-node-' })],
];
