/**
 * The webhook chain as the API server runs it: mesh-guard (0-mesh-guard) and the Dynatrace stand-in
 * (dynatrace-webhook, its Helm chart's configuration), each asserted on the pod the API server
 * stored and on the pod the peer was shown.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { istioCniNodePod } from '../support/review.js';
import { startControlPlane, type ControlPlane } from './support/controlplane.js';
import { startMeshGuard, type MeshGuard } from './support/mesh-guard.js';
import { DT, startDynatrace, type StandIn } from './support/peers.js';
import { annotations, createPod, eventually } from './support/pods.js';
import { apply } from './support/webhooks.js';

const DT_NS = { 'dynakube.internal.dynatrace.com/instance': 'dynakube' };

describe('mesh-guard ahead of Dynatrace in a real API server chain', () => {
  let cp: ControlPlane;
  let mg: MeshGuard;
  let dt: StandIn;
  beforeAll(async () => {
    cp = await startControlPlane();
    await cp.ensureNamespace('istio-system', DT_NS);
    await cp.ensureNamespace('shop', DT_NS);
    mg = await startMeshGuard(cp);
    dt = await startDynatrace({ tls: await cp.issueServingCert() });
    await apply(cp.kc, [dt.webhookConfiguration()]);
  });
  afterAll(async () => {
    await dt?.stop();
    await mg?.stop();
    await cp?.stop();
  });

  it('an ordinary app pod gets OneAgent (the stand-in is in the chain)', async () => {
    const stored = await eventually('Dynatrace called', 30_000, async () => {
      const pod = await createPod(cp, { apiVersion: 'v1', kind: 'Pod', metadata: { generateName: 'app-', namespace: 'shop' }, spec: { containers: [{ name: 'app', image: 'acme/app:1' }] } });
      return pod.spec?.initContainers?.some((c) => c.name === DT.initContainer) ? pod : undefined;
    });
    expect(stored.spec?.volumes?.map((v) => v.name)).toContain(DT.binVolume);
  });

  it('the Istio CNI node agent is opted out of OneAgent before Dynatrace sees it', async () => {
    dt.clear();
    const stored = await createPod(cp, { ...istioCniNodePod, metadata: { ...istioCniNodePod.metadata, generateName: undefined, name: 'istio-cni-node-chain' } });
    const shown = dt.seen().find((p) => p.metadata?.name === 'istio-cni-node-chain');
    expect(shown?.metadata?.annotations?.['oneagent.dynatrace.com/inject']).toBe('false');
    expect(annotations(stored)['oneagent.dynatrace.com/inject']).toBe('false');
    expect(stored.spec?.initContainers?.some((c) => c.name === DT.initContainer) ?? false).toBe(false);
    expect(stored.spec?.volumes?.map((v) => v.name) ?? []).not.toContain(DT.binVolume);
  });
});
