/**
 * consul-activegate-exclusions end to end against the in-test API server (issue 5): the real
 * informer-backed cluster view (createClusterView from a KUBECONFIG) feeds the real HTTPS server;
 * changing the ActiveGate Service's ClusterIP there changes what the next pod gets.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { Registry } from 'prom-client';
import { createClusterView } from '../src/cluster/kube-view.js';
import { defaultConfig } from '../src/config/schema.js';
import { FakeApiServer, kubeconfigFor } from './support/fake-apiserver.js';
import { PORTS, CIDRS, DT_NS, consulPod, admitOverHttps } from './support/consul.js';
import { startTestServer, waitFor, type TestServer } from './support/server.js';

const AG_LABELS = { 'app.kubernetes.io/component': 'activegate', 'app.kubernetes.io/name': 'dynatrace-operator' };

describe('consul-activegate-exclusions over HTTPS, cluster view from the in-test API server', () => {
  let api: FakeApiServer;
  let s: TestServer;
  beforeAll(async () => {
    api = await FakeApiServer.start();
    api.create('namespaces', { metadata: { name: 'shop', labels: { [DT_NS]: 'dk' } } });
    api.create('namespaces', { metadata: { name: 'plain' } });
    api.create('namespaces', { metadata: { name: 'dynatrace' } });
    api.create('services', {
      metadata: { name: 'dk-activegate', namespace: 'dynatrace', labels: { ...AG_LABELS, 'app.kubernetes.io/created-by': 'dk' } },
      spec: { type: 'ClusterIP', clusterIP: '10.96.0.50', clusterIPs: ['10.96.0.50'], ports: [{ name: 'https', port: 443, targetPort: 'https' }] },
    });
    // The real informer-backed view, as the server builds it from KUBECONFIG in production.
    const cluster = createClusterView(
      { ...defaultConfig.cluster, syncTimeoutMs: 10_000 },
      { log: pino({ level: 'silent' }), registry: new Registry(), env: { KUBECONFIG: kubeconfigFor(api) } },
    );
    s = await startTestServer({ cluster });
    await waitFor(() => s.server.cluster.state === 'synced', 10_000);
  });
  afterAll(async () => {
    await s?.close();
    await api?.close();
  });

  it('uses the namespace labels and the ActiveGate ClusterIP from the API server', async () => {
    const { annotations } = await admitOverHttps(s, consulPod('shop'));
    expect(annotations[PORTS]).toBe('9999');
    expect(annotations[CIDRS]).toBe('10.96.0.50/32');
    const { ops } = await admitOverHttps(s, consulPod('plain'));
    expect(ops).toEqual([]);
  });

  it('a recreated ActiveGate Service (new ClusterIP) changes what the next pod gets', async () => {
    api.delete('services', 'dynatrace', 'dk-activegate');
    api.create('services', {
      metadata: { name: 'dk-activegate', namespace: 'dynatrace', labels: { ...AG_LABELS, 'app.kubernetes.io/created-by': 'dk' } },
      spec: { type: 'ClusterIP', clusterIP: '10.96.7.7', clusterIPs: ['10.96.7.7'], ports: [{ name: 'https', port: 443, targetPort: 'https' }] },
    });
    await waitFor(() => s.server.cluster.activeGateServiceIPs()?.join() === '10.96.7.7', 10_000);
    const { annotations } = await admitOverHttps(s, consulPod('shop'));
    expect(annotations[CIDRS]).toBe('10.96.7.7/32');
  });

  it('a namespace labelled for Dynatrace later is picked up for the next pod', async () => {
    api.setLabels('namespaces', undefined, 'plain', { [DT_NS]: 'dk' });
    const until = Date.now() + 10_000;
    for (;;) {
      const ns = await s.server.cluster.namespaceLabels('plain');
      if (ns.state === 'known' && ns.labels[DT_NS] === 'dk') break;
      if (Date.now() > until) throw new Error('namespace label not seen in time');
      await new Promise((r) => setTimeout(r, 20));
    }
    const { annotations } = await admitOverHttps(s, consulPod('plain'));
    expect(annotations[CIDRS]).toBe('10.96.7.7/32');
  });
});
