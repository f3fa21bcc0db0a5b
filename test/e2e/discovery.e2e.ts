/**
 * Issue 15's done-when cluster through the real API server, with mesh-guard's default config and
 * the RBAC deploy/base ships: Istio's only webhook serves revision canary (its injector and mesh
 * ConfigMaps in istio-system), a namespace carries a stale istio-injection=enabled, Consul's
 * injector Deployment runs with -default-inject=true and its webhook skips one namespace.
 *
 * The peers' webhook configurations are the ones their installers render (test/support/peer-webhooks.ts),
 * calling Services that do not exist, with failurePolicy Ignore: what is asserted is what mesh-guard,
 * which runs first, writes into the stored pod. The settings objects are read through list+watch
 * with fieldSelector metadata.name, which only the resourceNames rules allow: the canary names are
 * not in the shipped ClusterRole, so mesh-guard first falls back (and says so), then follows the
 * mesh config once they are added, as docs/install.md tells users to do.
 */
import { AppsV1Api, CoreV1Api, RbacAuthorizationV1Api, type V1ClusterRole, type V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { consulInjectorDeployment, istioInjectorConfigMap, istioMeshConfigMap } from '../support/peer-settings.js';
import { consulSkipping, ISTIO_CANARY } from '../support/peer-webhooks.js';
import { startControlPlane, type ControlPlane } from './support/controlplane.js';
import { startMeshGuard, type MeshGuard } from './support/mesh-guard.js';
import { annotations, createPod, eventually } from './support/pods.js';
import { apply, calledButIgnored } from './support/webhooks.js';

const DT_NS = { 'dynakube.internal.dynatrace.com/instance': 'dk' };
const DT_SCRAPE = { 'metrics.dynatrace.com/scrape': 'true', 'metrics.dynatrace.com/port': '8080' };
const EXCLUDE_PORTS = 'consul.hashicorp.com/transparent-proxy-exclude-outbound-ports';

let n = 0;
const pod = (namespace: string, extra: Record<string, string> = {}): V1Pod => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: `app-${++n}`, namespace, annotations: extra },
  spec: { containers: [{ name: 'app', image: 'acme/app:1', ports: [{ containerPort: 8080 }] }] },
});

describe('issue 15: predictions from the peers in the cluster, behind a real kube-apiserver', () => {
  let cp: ControlPlane;
  let mg: MeshGuard;
  beforeAll(async () => {
    cp = await startControlPlane();
    await cp.ensureNamespace('stale', { 'istio-injection': 'enabled', ...DT_NS });
    await cp.ensureNamespace('canary', { 'istio.io/rev': 'canary', ...DT_NS });
    await cp.ensureNamespace('meshed', DT_NS);
    await cp.ensureNamespace('skipped', DT_NS);
    await cp.ensureNamespace('istio-system');
    await cp.ensureNamespace('consul');
    const core = cp.kc.makeApiClient(CoreV1Api);
    for (const cm of [istioInjectorConfigMap({ revision: 'canary' }), istioMeshConfigMap('canary', { defaultConfig: '  statusPort: 15030' })]) {
      await core.createNamespacedConfigMap({ namespace: 'istio-system', body: cm as never });
    }
    // Consul meshes every namespace by default, but not Istio's two.
    await cp.kc.makeApiClient(AppsV1Api).createNamespacedDeployment({ namespace: 'consul', body: consulInjectorDeployment({ defaultInject: true, deny: ['stale', 'canary'] }) as never });
    await apply(cp.kc, [calledButIgnored(ISTIO_CANARY), calledButIgnored(consulSkipping('skipped'))] as never);
    mg = await startMeshGuard(cp);
  });
  afterAll(async () => {
    await mg?.stop();
    await cp?.stop();
  });

  it('a Dynatrace-scraped pod in the stale namespace is left as it is', async () => {
    const stored = await createPod(cp, pod('stale', DT_SCRAPE));
    expect(annotations(stored)).toEqual(DT_SCRAPE);
  });

  it('a pod without Consul\'s annotation in a Dynatrace namespace gets the ActiveGate exclusions (-default-inject=true read from the Deployment)', async () => {
    const stored = await createPod(cp, pod('meshed'));
    expect(annotations(stored)[EXCLUDE_PORTS]).toBe('9999');
  });

  it('a pod in the namespace Consul\'s webhook skips gets none', async () => {
    const stored = await createPod(cp, pod('skipped'));
    expect(annotations(stored)[EXCLUDE_PORTS]).toBeUndefined();
  });

  it('a pod in the canary namespace gets metric merging: at istio.statusPort while the canary ConfigMaps are not granted, then at the mesh config\'s port', async () => {
    const first = await createPod(cp, pod('canary', DT_SCRAPE));
    expect(annotations(first)).toMatchObject({ 'prometheus.io/port': '8080', 'metrics.dynatrace.com/port': '15020', 'metrics.dynatrace.com/path': '/stats/prometheus' });
    const forbidden = mg.lines().filter((l) => l['clusterView'] === 'settings-forbidden').map((l) => l['object']);
    expect(forbidden).toEqual(expect.arrayContaining(['ConfigMap istio-system/istio-sidecar-injector-canary', 'ConfigMap istio-system/istio-canary']));

    // As docs/install.md says for a revision: add its two names to the ClusterRole.
    const rbac = cp.kc.makeApiClient(RbacAuthorizationV1Api);
    const role: V1ClusterRole = await rbac.readClusterRole({ name: 'mesh-guard' });
    const cms = role.rules!.find((r) => r.resources?.includes('configmaps'))!;
    cms.resourceNames = [...(cms.resourceNames ?? []), 'istio-sidecar-injector-canary', 'istio-canary'];
    await rbac.replaceClusterRole({ name: 'mesh-guard', body: role });

    const merged = await eventually('the mesh config read after the grant', 60_000, async () => {
      const p = await createPod(cp, pod('canary', DT_SCRAPE));
      return annotations(p)['metrics.dynatrace.com/port'] === '15030' ? p : undefined;
    });
    expect(annotations(merged)).toMatchObject({ 'prometheus.io/port': '8080', 'metrics.dynatrace.com/path': '/stats/prometheus' });
    expect(await mg.clusterView()).toBe('synced');
  });
});
