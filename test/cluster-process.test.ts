/**
 * Issue 3's Done-when, with the compiled server as users run it: KUBECONFIG points at the
 * in-test API server; the webhook follows namespace label changes live, uses the ActiveGate
 * ClusterIPs, and keeps answering /mutate from its cache while the API server is down.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeApiServer, kubeconfigFor } from './support/fake-apiserver.js';
import { review, type Op } from './support/review.js';
import { spawnServer, waitReady, type ServerProcess } from './support/process.js';
import { waitFor } from './support/server.js';

const DT_NS = { 'dynakube.internal.dynatrace.com/instance': 'dk' };
const AG_LABELS = { 'app.kubernetes.io/component': 'activegate', 'app.kubernetes.io/name': 'dynatrace-operator' };

function pod(namespace: string, annotations: Record<string, string>) {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { generateName: 'app-', namespace, annotations }, spec: { containers: [{ name: 'app', image: 'acme/app:1' }] } };
}
const scrapePod = (ns: string) => pod(ns, { 'metrics.dynatrace.com/scrape': 'true', 'metrics.dynatrace.com/port': '8080' });
const consulPod = (ns: string) => pod(ns, { 'consul.hashicorp.com/connect-inject': 'true' });

async function mutate(p: ServerProcess, object: unknown): Promise<Op[]> {
  const res = await p.request('POST', '/mutate', JSON.stringify(review(object)));
  expect(res.status).toBe(200);
  const patch = JSON.parse(res.body).response.patch;
  return patch ? JSON.parse(Buffer.from(patch, 'base64').toString()) : [];
}

describe('compiled server with KUBECONFIG pointing at the in-test API server', () => {
  let api: FakeApiServer;
  let p: ServerProcess;
  beforeAll(async () => {
    api = await FakeApiServer.start();
    api.create('namespaces', { metadata: { name: 'shop', labels: { ...DT_NS } } });
    api.create('namespaces', { metadata: { name: 'dynatrace' } });
    api.create('services', {
      metadata: { name: 'dk-activegate', namespace: 'dynatrace', labels: AG_LABELS },
      spec: { type: 'ClusterIP', clusterIP: '10.43.0.10', clusterIPs: ['10.43.0.10', 'fd00:10::a'], ports: [{ name: 'https', port: 443 }] },
    });
    p = await spawnServer({ KUBECONFIG: kubeconfigFor(api) });
    await waitReady(p);
  });
  afterAll(async () => {
    p?.kill('SIGKILL');
    await api?.close();
  });

  it('uses the ActiveGate ClusterIP (IPv4 by default) for Consul pods', async () => {
    const ops = await mutate(p, consulPod('shop'));
    expect(ops).toContainEqual({
      op: 'add',
      path: '/metadata/annotations/consul.hashicorp.com~1transparent-proxy-exclude-outbound-cidrs',
      value: '10.43.0.10/32',
    });
  });

  it('sees a namespace label change without a restart', async () => {
    expect(await mutate(p, scrapePod('shop'))).toEqual([]);
    api.setLabels('namespaces', undefined, 'shop', { 'istio-injection': 'enabled' });
    let ops: Op[] = [];
    const until = Date.now() + 10_000;
    while (ops.length === 0 && Date.now() < until) {
      ops = await mutate(p, scrapePod('shop'));
      if (!ops.length) await new Promise((r) => setTimeout(r, 50));
    }
    expect(ops).toContainEqual({ op: 'add', path: '/metadata/annotations/prometheus.io~1port', value: '8080' });
  });

  it('keeps answering from its cache while the API server is down, with one warning', async () => {
    await api.stop();
    for (let i = 0; i < 20; i++) {
      const ops = await mutate(p, scrapePod('shop'));
      expect(ops.length).toBeGreaterThan(0);
    }
    await waitFor(() => p.lines.some((l) => l.level === 'warn' && /degraded/.test(String(l.msg))), 10_000);
    for (let i = 0; i < 20; i++) await mutate(p, scrapePod('shop'));
    expect(p.lines.filter((l) => l.level === 'warn' && /degraded/.test(String(l.msg)))).toHaveLength(1);
    const ready = await p.request('GET', '/readyz');
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.body).clusterView).toBe('degraded');
    await api.start();
    await waitFor(() => p.lines.some((l) => /synced/.test(String(l.msg)) && l.level === 'info' && p.lines.indexOf(l) > 0), 15_000);
  });
});
