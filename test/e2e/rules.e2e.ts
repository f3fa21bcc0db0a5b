/**
 * The rules of issue 14 through the real API server: a run-to-completion pod keeps its native
 * sidecar and the create answers with mesh-guard's warning; a long-running pod gets the classic
 * sidecar with the proxy-first start; a Consul transparent-proxy pod that asks for Dynatrace
 * scraping reaches Consul's webhook with the metrics-merging annotations and the ActiveGate
 * exclusions, which end up in the redirect config Consul renders.
 */
import https from 'node:https';
import type { V1MutatingWebhookConfiguration, V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WARN_KEPT_NATIVE } from '../../src/rules/istio-native-sidecar-guard.js';
import { startControlPlane, type ControlPlane } from './support/controlplane.js';
import { startMeshGuard, type MeshGuard } from './support/mesh-guard.js';
import { startConsul, type StandIn } from './support/peers.js';
import { annotations, createPod } from './support/pods.js';
import { apply } from './support/webhooks.js';

const DT_NS = { 'dynakube.internal.dynatrace.com/instance': 'dk' };
const MESHED = { 'istio-injection': 'enabled', ...DT_NS };

/** Creates a pod with a raw POST, to read the API server's Warning headers (client-node drops them). */
async function createWithWarnings(cp: ControlPlane, pod: V1Pod): Promise<{ status: number; warnings: string[]; body: V1Pod }> {
  const options: https.RequestOptions = {
    host: '127.0.0.1',
    port: cp.apiPort,
    method: 'POST',
    path: `/api/v1/namespaces/${pod.metadata!.namespace}/pods`,
    headers: { 'content-type': 'application/json' },
  };
  await cp.kc.applyToHTTPSOptions(options);
  return new Promise((resolve, reject) => {
    const req = https.request(options, (res) => {
      let text = '';
      res.on('data', (d) => (text += d)).on('end', () => {
        const raw = res.headers.warning;
        const list = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw];
        // RFC 7234 warn-value: 299 - "text"
        const warnings = list.flatMap((w) => [...w.matchAll(/299 - "((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!.replace(/\\(.)/g, '$1')));
        resolve({ status: res.statusCode ?? 0, warnings, body: JSON.parse(text) as V1Pod });
      });
    });
    req.on('error', reject);
    req.end(JSON.stringify(pod));
  });
}

const appPod = (namespace: string, name: string, spec: Partial<V1Pod['spec']> = {}, extra: Record<string, string> = {}): V1Pod => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace, annotations: extra },
  spec: { containers: [{ name: 'app', image: 'acme/app:1' }], ...spec },
});

/** The v1 review only: the chart's [v1beta1, v1] fails against this API server build (see the note in controlplane.e2e.ts). */
const v1Only = (mwc: V1MutatingWebhookConfiguration): V1MutatingWebhookConfiguration => ({
  ...mwc,
  webhooks: mwc.webhooks?.map((w) => ({ ...w, admissionReviewVersions: ['v1'] })),
});

describe('issue 14 rules behind a real kube-apiserver', () => {
  let cp: ControlPlane;
  let mg: MeshGuard;
  let consul: StandIn;
  beforeAll(async () => {
    cp = await startControlPlane();
    await cp.ensureNamespace('jobs', MESHED);
    await cp.ensureNamespace('payments', DT_NS);
    mg = await startMeshGuard(cp);
    consul = await startConsul({ tls: await cp.issueServingCert() });
    await apply(cp.kc, [v1Only(consul.webhookConfiguration())]);
  });
  afterAll(async () => {
    await consul?.stop();
    await mg?.stop();
    await cp?.stop();
  });

  it('a Job pod (restartPolicy Never) keeps its native sidecar, and kubectl gets the warning', async () => {
    const res = await createWithWarnings(cp, appPod('jobs', 'migrate-abcde', { restartPolicy: 'Never' }));
    expect(res.status).toBe(201);
    expect(res.warnings).toContain(WARN_KEPT_NATIVE);
    expect(annotations(res.body)['sidecar.istio.io/nativeSidecar']).toBeUndefined();
    expect(annotations(res.body)['proxy.istio.io/config']).toBeUndefined();
  });

  it('a Deployment pod gets nativeSidecar "false" and holdApplicationUntilProxyStarts, no warning', async () => {
    const res = await createWithWarnings(cp, appPod('jobs', 'web-abcde', {}, { 'proxy.istio.io/config': '{"concurrency": 2}' }));
    expect(res.status).toBe(201);
    expect(res.warnings.filter((w) => w.startsWith('mesh-guard:'))).toEqual([]);
    expect(annotations(res.body)).toMatchObject({
      'sidecar.istio.io/nativeSidecar': 'false',
      'proxy.istio.io/config': '{ "concurrency": 2, "holdApplicationUntilProxyStarts": true }',
    });
  });

  it('a Consul tproxy pod asking for Dynatrace scraping: Consul sees the merging annotations, Dynatrace points at :20200/metrics', async () => {
    consul.clear();
    const stored = await createPod(
      cp,
      appPod('payments', 'ledger-0', {}, { 'consul.hashicorp.com/connect-inject': 'true', 'metrics.dynatrace.com/scrape': 'true', 'metrics.dynatrace.com/port': '9102' }),
    );
    const shown = consul.seen().find((p) => p.metadata?.name === 'ledger-0');
    expect(annotations(shown!)).toMatchObject({
      'consul.hashicorp.com/enable-metrics': 'true',
      'consul.hashicorp.com/enable-metrics-merging': 'true',
      'consul.hashicorp.com/service-metrics-port': '9102',
      'consul.hashicorp.com/service-metrics-path': '/metrics',
      'consul.hashicorp.com/transparent-proxy-exclude-outbound-ports': '9999',
    });
    expect(annotations(stored)).toMatchObject({ 'metrics.dynatrace.com/port': '20200', 'metrics.dynatrace.com/path': '/metrics', 'consul.hashicorp.com/connect-inject-status': 'injected' });
    const init = stored.spec!.initContainers!.find((c) => c.name === 'consul-connect-inject-init')!;
    const rendered = JSON.parse(init.env!.find((e) => e.name === 'CONSUL_REDIRECT_TRAFFIC_CONFIG')!.value!) as Record<string, string[] | null>;
    // The scrape port is kept out of inbound redirection, so an ActiveGate outside the mesh reaches it.
    expect(rendered.ExcludeInboundPorts).toContain('20200');
    expect(rendered.ExcludeOutboundPorts).toContain('9999');
  });
});
