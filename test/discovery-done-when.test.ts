/**
 * Issue 15's done-when cluster without any API server: admit() with mesh-guard's default config,
 * every rule, and an in-memory view that carries what the cluster view would have discovered (the
 * peers' webhook configurations as their installers render them, and the settings objects they
 * point at). Istio's only webhook serves revision canary; a namespace keeps a stale
 * istio-injection=enabled; Consul's injector runs with -default-inject=true and its webhook skips one
 * namespace. The same cluster behind a real kube-apiserver is test/e2e/discovery.e2e.ts; how the
 * view reads these objects is test/e2e/cluster-view.e2e.ts.
 */
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { settingsFromObjects } from '../src/cluster/peer-settings.js';
import { staticClusterView } from '../src/cluster/view.js';
import { knownDiscovery, summarizeConfiguration } from '../src/cluster/webhooks.js';
import { defaultConfig } from '../src/config/schema.js';
import { admitAndConverge } from './support/admit.js';
import { consulInjectorDeployment, istioInjectorConfigMap, istioMeshConfigMap } from './support/peer-settings.js';
import { consulSkipping, DYNATRACE_HELM, ISTIO_CANARY } from './support/peer-webhooks.js';

const DT_NS = { 'dynakube.internal.dynatrace.com/instance': 'dk' };
const DT_SCRAPE = { 'metrics.dynatrace.com/scrape': 'true', 'metrics.dynatrace.com/port': '8080' };
const EXCLUDE_PORTS = '/metadata/annotations/consul.hashicorp.com~1transparent-proxy-exclude-outbound-ports';

const discovery = knownDiscovery([ISTIO_CANARY, consulSkipping('skipped'), DYNATRACE_HELM].map((t) => summarizeConfiguration(parse(t))!));
const settings = settingsFromObjects(discovery, [
  istioInjectorConfigMap({ revision: 'canary' }),
  istioMeshConfigMap('canary'),
  // Consul meshes every namespace by default, but not Istio's two.
  consulInjectorDeployment({ defaultInject: true, deny: ['stale', 'canary'] }),
]);
const cluster = staticClusterView(
  {
    stale: { 'istio-injection': 'enabled', ...DT_NS },
    canary: { 'istio.io/rev': 'canary', ...DT_NS },
    meshed: DT_NS,
    skipped: DT_NS,
  },
  [],
  discovery,
  settings,
);

const pod = (namespace: string, annotations: Record<string, string> = {}) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { generateName: 'app-', namespace, annotations },
  spec: { containers: [{ name: 'app', image: 'shop:1', ports: [{ containerPort: 8080 }] }] },
});

async function run(p: ReturnType<typeof pod>) {
  const { ops, result } = await admitAndConverge(p, { config: defaultConfig, cluster, namespace: p.metadata.namespace });
  return { ops, why: JSON.stringify(result.outcomes) };
}

describe("issue 15's done-when cluster through admit(), default config, every rule, discovery in memory", () => {
  it('every settings object the webhooks point at is read', () => {
    expect(Object.fromEntries([...settings].map(([k, l]) => [k, l.state]))).toEqual({
      'istio-injector:istio-system/istio-sidecar-injector-canary': 'known',
      'istio-mesh:istio-system/istio-canary': 'known',
      'consul-injector:consul/consul-connect-injector': 'known',
    });
  });

  it('a Dynatrace-scraped pod in the stale namespace is left as it is', async () => {
    const stale = await run(pod('stale', DT_SCRAPE));
    expect(stale.ops, stale.why).toEqual([]);
    expect(stale.why).toContain('no Istio webhook sees the pod');
  });

  it('a pod in the canary namespace gets metric merging, by the canary injector ConfigMap', async () => {
    const canary = await run(pod('canary', DT_SCRAPE));
    expect(canary.ops).toContainEqual(expect.objectContaining({ path: '/metadata/annotations/metrics.dynatrace.com~1port', value: '15020' }));
    expect(canary.why).toContain('ConfigMap istio-system/istio-sidecar-injector-canary has policy enabled');
  });

  it("a pod without Consul's annotation in a Dynatrace namespace gets the ActiveGate exclusions (-default-inject=true)", async () => {
    const meshed = await run(pod('meshed'));
    expect(meshed.ops).toContainEqual(expect.objectContaining({ path: EXCLUDE_PORTS, value: '9999' }));
    expect(meshed.why).toContain('the injector runs with -default-inject=true (Deployment consul/consul-connect-injector)');
  });

  it("a pod in the namespace Consul's webhook skips gets none", async () => {
    const skipped = await run(pod('skipped'));
    expect(skipped.ops, skipped.why).toEqual([]);
  });
});
