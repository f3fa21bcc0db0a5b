import { describe, expect, it } from 'vitest';
import type { V1Pod } from '@kubernetes/client-node';
import { admitAndConverge, admitPod } from '../../test/support/admit.js';

/** Labels and annotations of the Dynatrace CSI driver DaemonSet pod (dynatrace.md §3). */
function csiPod(labels: Record<string, string>, annotations: Record<string, string> = {}): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      generateName: 'dynatrace-oneagent-csi-driver-',
      namespace: 'dynatrace',
      labels,
      annotations: { 'dynatrace.com/inject': 'false', 'kubectl.kubernetes.io/default-container': 'provisioner', ...annotations },
    },
    spec: { containers: ['server', 'provisioner', 'registrar', 'liveness-probe'].map((name) => ({ name, image: `dynatrace/dynatrace-operator:v1.10.0` })) },
  };
}

const helmLabels = {
  'app.kubernetes.io/name': 'dynatrace-operator',
  'app.kubernetes.io/component': 'csi-driver',
  'app.kubernetes.io/version': '1.10.0',
  'internal.oneagent.dynatrace.com/app': 'csi-driver',
  'internal.oneagent.dynatrace.com/component': 'csi-driver',
};

describe('csi-driver-guard', () => {
  it.each([
    ['the Helm-installed CSI driver pod', helmLabels],
    ['selector label only', { 'internal.oneagent.dynatrace.com/component': 'csi-driver' }],
    ['app.kubernetes.io labels only', { 'app.kubernetes.io/name': 'dynatrace-operator', 'app.kubernetes.io/component': 'csi-driver' }],
  ])('opts %s out of Istio (sidecar and ambient labels) and Consul (annotation)', async (_n, labels) => {
    const { patched, result } = await admitAndConverge(csiPod(labels));
    const meta = (patched as V1Pod).metadata!;
    expect(meta.labels!['sidecar.istio.io/inject']).toBe('false');
    expect(meta.labels!['istio.io/dataplane-mode']).toBe('none');
    expect(meta.annotations!['consul.hashicorp.com/connect-inject']).toBe('false');
    expect(meta.annotations!['sidecar.istio.io/inject']).toBeUndefined();
    expect(result.review.response.auditAnnotations).toEqual({ 'mutated-by': 'csi-driver-guard' });
  });

  it('leaves values already set alone', async () => {
    const input = csiPod(
      { ...helmLabels, 'sidecar.istio.io/inject': 'true', 'istio.io/dataplane-mode': 'ambient' },
      { 'consul.hashicorp.com/connect-inject': 'true' },
    );
    const { ops, result } = await admitPod(input);
    expect(ops).toEqual([]);
    expect(result.outcomes[0]!.reasons).toEqual([
      'label sidecar.istio.io/inject already set',
      'label istio.io/dataplane-mode already set',
      'consul.hashicorp.com/connect-inject already set',
    ]);
  });

  it('sets only what is missing', async () => {
    const { ops } = await admitAndConverge(csiPod({ ...helmLabels, 'sidecar.istio.io/inject': 'false', 'istio.io/dataplane-mode': 'none' }));
    expect(ops).toEqual([{ op: 'add', path: '/metadata/annotations/consul.hashicorp.com~1connect-inject', value: 'false' }]);
  });

  it('adds the ambient opt-out in an ambient namespace', async () => {
    const { patched, ops } = await admitAndConverge(csiPod(helmLabels), { namespace: 'dynatrace', namespaces: { dynatrace: { 'istio.io/dataplane-mode': 'ambient' } } });
    expect(ops).toContainEqual({ op: 'add', path: '/metadata/labels/istio.io~1dataplane-mode', value: 'none' });
    expect((patched as V1Pod).metadata!.labels!['istio.io/dataplane-mode']).toBe('none');
  });

  it.each([
    ['component csi-driver of another product', { 'app.kubernetes.io/name': 'other', 'app.kubernetes.io/component': 'csi-driver' }],
    ['the Dynatrace webhook pod', { 'app.kubernetes.io/name': 'dynatrace-operator', 'app.kubernetes.io/component': 'webhook' }],
  ])('ignores %s', async (_n, labels) => {
    const { ops } = await admitPod(csiPod(labels));
    expect(ops).toEqual([]);
  });
});
