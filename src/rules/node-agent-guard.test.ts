import { describe, expect, it } from 'vitest';
import type { V1Pod } from '@kubernetes/client-node';
import { admitAndConverge, admitPod } from '../../test/support/admit.js';
import { skipWithout } from '../../test/support/corpus.js';
import { corpusPod } from '../../test/support/review.js';

const ONEAGENT = 'oneagent.dynatrace.com/inject';
const DT = 'dynatrace.com/inject';

function pod(meta: Partial<NonNullable<V1Pod['metadata']>>, images: string[] = ['nginx:1.27']): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { namespace: 'default', ...meta },
    spec: { containers: images.map((image, i) => ({ name: `c${i}`, image })) },
  };
}

const annotationsOf = (p: unknown) => ((p as V1Pod).metadata?.annotations ?? {}) as Record<string, string>;

// The chart pods exist only in ../shared/corpus (test/support/corpus.ts); skipped without it, never under CI.
const CNI_POD = 'istio-charts/examples/istio-cni-node-pod.admission.yaml';
const ZTUNNEL_POD = 'istio-charts/examples/ztunnel-pod.admission.yaml';
const noChartPods = skipWithout(CNI_POD, ZTUNNEL_POD);

describe('node-agent-guard: pods that get oneagent.dynatrace.com/inject: "false"', () => {
  const cases: Array<[string, V1Pod]> = [
    ['istio-cni in kube-system (GKE/OpenShift) by label', pod({ namespace: 'kube-system', generateName: 'x-', labels: { 'k8s-app': 'istio-cni-node' } })],
    ['istio-cni by generateName only', pod({ generateName: 'istio-cni-node-' })],
    ['istio-cni by name', pod({ name: 'istio-cni-node-abcde' })],
    ['istio-cni by install-cni image on another registry, distroless tag', pod({ generateName: 'cni-' }, ['my.registry:5000/mirror/istio/install-cni:1.30.3-distroless'])],
    ['istio-cni by install-cni image with digest', pod({ generateName: 'cni-' }, ['gcr.io/istio-release/install-cni@sha256:abcd'])],
    ['Consul CNI', pod({ generateName: 'consul-cni-', labels: { app: 'consul', component: 'cni' }, annotations: { 'consul.hashicorp.com/connect-inject': 'false' } })],
    ['linkerd-cni', pod({ generateName: 'linkerd-cni-', labels: { 'k8s-app': 'linkerd-cni', 'linkerd.io/cni-resource': 'true' } })],
  ];
  const optedOut = async (input: V1Pod) => {
    const { result, patched } = await admitAndConverge(input);
    expect(result.outcome).toBe('patched');
    expect(annotationsOf(patched)[ONEAGENT]).toBe('false');
    expect(annotationsOf(patched)[DT]).toBe(annotationsOf(input)[DT]);
    expect(result.review.response.auditAnnotations).toEqual({ 'mutated-by': 'node-agent-guard' });
  };
  it.each(cases)('%s', (_name, input) => optedOut(input));
  it.skipIf(noChartPods).each([
    ['istio-cni-node chart pod (corpus)', CNI_POD],
    ['ztunnel chart pod (corpus)', ZTUNNEL_POD],
  ])('%s', (_name, file) => optedOut(corpusPod(file)));

  it.skipIf(noChartPods)('keeps the other annotations of the corpus pod untouched', async () => {
    const input = corpusPod(CNI_POD);
    const { patched, ops } = await admitPod(input);
    expect(ops).toEqual([{ op: 'add', path: '/metadata/annotations/oneagent.dynatrace.com~1inject', value: 'false' }]);
    expect(annotationsOf(patched)).toEqual({ ...annotationsOf(input), [ONEAGENT]: 'false' });
  });

  it('overrides a value that parses as true, and says so', async () => {
    const { result, ops } = await admitAndConverge(pod({ generateName: 'istio-cni-node-', annotations: { [ONEAGENT]: 'True' } }));
    expect(ops).toEqual([{ op: 'replace', path: '/metadata/annotations/oneagent.dynatrace.com~1inject', value: 'false' }]);
    expect(result.outcomes[0]?.reasons.join()).toMatch(/overriding oneagent.dynatrace.com\/inject="True"/);
  });

  it('replaces a value Dynatrace cannot parse (it would inject)', async () => {
    const { ops } = await admitAndConverge(pod({ generateName: 'istio-cni-node-', annotations: { [ONEAGENT]: 'no' } }));
    expect(ops).toEqual([{ op: 'replace', path: '/metadata/annotations/oneagent.dynatrace.com~1inject', value: 'false' }]);
  });

  it.each(['false', 'FALSE', '0', 'f'])('leaves %s alone (already parses as false)', async (value) => {
    const { ops } = await admitPod(pod({ generateName: 'istio-cni-node-', annotations: { [ONEAGENT]: value } }));
    expect(ops).toEqual([]);
  });

  it('also sets dynatrace.com/inject when nodeAgentGuard.disableAllDynatrace is on', async () => {
    const { patched } = await admitAndConverge(pod({ generateName: 'istio-cni-node-' }), { configYaml: 'nodeAgentGuard: { disableAllDynatrace: true }' });
    expect(annotationsOf(patched)).toMatchObject({ [ONEAGENT]: 'false', [DT]: 'false' });
  });

  it('matches extra selectors from config (e.g. calico-node)', async () => {
    const configYaml = 'nodeAgentGuard:\n  extraSelectors:\n    - { k8s-app: calico-node }\n    - { app: cilium, tier: node }';
    const calico = await admitAndConverge(pod({ generateName: 'calico-node-', labels: { 'k8s-app': 'calico-node' } }), { configYaml });
    expect(annotationsOf(calico.patched)[ONEAGENT]).toBe('false');
    const partial = await admitPod(pod({ generateName: 'cilium-', labels: { app: 'cilium' } }), { configYaml });
    expect(partial.ops).toEqual([]);
  });
});

describe('node-agent-guard: pods left alone', () => {
  const cases: Array<[string, V1Pod]> = [
    ['an ordinary app pod', pod({ generateName: 'web-', labels: { app: 'web' } })],
    ['an image whose name merely contains install-cni', pod({ generateName: 'tools-' }, ['docker.io/acme/my-install-cni-helper:1.0'])],
    ['an image install-cni-tools', pod({ generateName: 'tools-' }, ['acme/install-cni-tools:2'])],
    ['a repository path containing install-cni', pod({ generateName: 'x-' }, ['acme/install-cni/other:1'])],
    ['app: ztunnel without a ztunnel image', pod({ generateName: 'z-', labels: { app: 'ztunnel' } })],
    ['a ztunnel image without app: ztunnel', pod({ generateName: 'z-' }, ['istio/ztunnel:1.30'])],
    ['Consul server (app: consul, component: server)', pod({ generateName: 'consul-server-', labels: { app: 'consul', component: 'server' } })],
    ['generateName that only resembles istio-cni-node', pod({ generateName: 'my-istio-cni-node-' })],
  ];
  it.each(cases)('%s', async (_name, input) => {
    const { result, ops } = await admitPod(input);
    expect(ops).toEqual([]);
    expect(result.outcome).toBe('unchanged');
    expect(result.log.rules).toBeUndefined();
  });
});

describe('node-agent-guard: the reason names the risk of the pod\'s code-module delivery', () => {
  const cni = (annotations: Record<string, string> = {}) => pod({ generateName: 'istio-cni-node-', labels: { 'k8s-app': 'istio-cni-node' }, annotations });
  it.each([
    ['no volume-type: the CSI driver, the Helm default', {}, /^Istio CNI node agent \(label k8s-app=istio-cni-node\): with the CSI driver, the Helm default, OneAgent's volume waits for the CSI driver, which waits for this agent: a new node deadlocks$/],
    ['volume-type csi', { 'oneagent.dynatrace.com/volume-type': 'csi' }, /: oneagent.dynatrace.com\/volume-type="csi", OneAgent's volume waits for the CSI driver/],
    ['volume-type ephemeral (node image pull)', { 'oneagent.dynatrace.com/volume-type': 'ephemeral' }, /: with oneagent.dynatrace.com\/volume-type="ephemeral" there is no CSI deadlock, but OneAgent would cost the node agent an image pull and an LD_PRELOAD/],
    ['volume-type image (Operator 1.11 image volumes)', { 'oneagent.dynatrace.com/volume-type': 'image' }, /volume-type="image" there is no CSI deadlock/],
  ])('%s', async (_name, annotations, reason) => {
    const { result } = await admitAndConverge(cni(annotations));
    expect(result.outcomes[0]!.reasons).toEqual([expect.stringMatching(reason)]);
    expect(result.outcomes[0]!.changes.map((c) => (c.change.kind === 'annotation' ? c.change.key : c.change.kind))).toEqual([ONEAGENT]);
  });
});
