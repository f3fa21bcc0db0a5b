/**
 * What the cluster view's informers hold per object (issue 17: resident memory ≤ 1 KiB per namespace).
 * The figure itself is measured by `npm run bench:scale` against the real API server; this pins its
 * cause: client-node's ListWatch cache must hold trimmed objects, never full ones with managedFields
 * and annotations. The caches are private, looked at here because "never full objects" is the claim.
 */
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterEach, expect, it } from 'vitest';
import { createClusterView } from '../src/cluster/kube-view.js';
import type { ClusterView } from '../src/cluster/view.js';
import { defaultConfig } from '../src/config/schema.js';
import { FakeApiServer } from './support/fake-apiserver.js';

const AG_LABELS = { 'app.kubernetes.io/component': 'activegate', 'app.kubernetes.io/name': 'dynatrace-operator' };
const BULK = { 'kubectl.kubernetes.io/last-applied-configuration': `{"metadata":{"annotations":${JSON.stringify('x'.repeat(1500))}}}` };
const managedFields = [{ manager: 'kubectl-client-side-apply', operation: 'Update', apiVersion: 'v1', fieldsType: 'FieldsV1', fieldsV1: { 'f:metadata': { 'f:labels': { 'f:team': {} } } } }];

function namespace(name: string, labels: Record<string, string>) {
  return { metadata: { name, labels, annotations: BULK, managedFields }, spec: { finalizers: ['kubernetes'] }, status: { phase: 'Active' } };
}

let server: FakeApiServer | undefined;
let view: ClusterView | undefined;
afterEach(async () => {
  await view?.close();
  await server?.close();
  view = server = undefined;
});

async function waitFor(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 8_000;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

type Cached = { lw: { list(): Array<Record<string, unknown>> } };

it('namespaces and ActiveGate Services are cached trimmed: no managedFields, annotations, spec or status', async () => {
  server = await FakeApiServer.start();
  for (let i = 0; i < 20; i++) server.create('namespaces', namespace(`team-${i}`, { team: `t${i}`, 'istio-injection': 'enabled' }));
  server.create('services', {
    metadata: { name: 'dk-activegate', namespace: 'team-0', labels: AG_LABELS, annotations: BULK, managedFields },
    spec: { type: 'ClusterIP', clusterIP: '10.96.0.50', clusterIPs: ['10.96.0.50'], ports: [{ name: 'https', port: 443 }], selector: { app: 'ag' } },
  });
  view = createClusterView({ ...defaultConfig.cluster, syncTimeoutMs: 5_000 }, { log: pino({ level: 'silent' }), registry: new Registry(), kubeConfig: server.kubeConfig() });
  const v = view;
  await v.ready();
  // The first objects come through the list, later ones through the watch: both must be trimmed.
  server.create('namespaces', namespace('late', { team: 'late' }));
  server.setLabels('namespaces', undefined, 'team-1', { team: 'moved', 'istio-injection': null });
  await waitFor(() => {
    const l = v.namespaceLabels('team-1');
    return !(l instanceof Promise) && l.state === 'known' && l.labels['team'] === 'moved';
  }, 'the watched change');
  expect(await v.namespaceLabels('late')).toEqual({ state: 'known', labels: { team: 'late' } });

  const internals = v as unknown as { nsInformer: Cached; svcInformer: Cached };
  const namespaces = internals.nsInformer.lw.list();
  const services = internals.svcInformer.lw.list();
  expect(namespaces).toHaveLength(21);
  expect(services).toHaveLength(1);
  for (const ns of namespaces) {
    expect(Object.keys(ns)).toEqual(['metadata']);
    expect(Object.keys(ns['metadata'] as object).sort()).toEqual(['labels', 'name', 'resourceVersion', 'uid']);
  }
  expect(services[0]).toEqual({
    metadata: { name: 'dk-activegate', namespace: 'team-0', uid: expect.any(String), resourceVersion: expect.any(String) },
    spec: { clusterIP: '10.96.0.50', clusterIPs: ['10.96.0.50'] },
  });
  // What a namespace costs in the cache, as JSON: its name, uid, resourceVersion and labels, nothing of the 2 KiB it came with.
  const perNamespace = JSON.stringify(namespaces).length / namespaces.length;
  expect(perNamespace).toBeLessThan(160);
  expect(v.activeGateServiceIPs()).toEqual(['10.96.0.50']);
  // Listed in pages (src/cluster/paged-list.ts): never one response holding every full namespace.
  const lists = server.requests.filter((r) => r.path === '/api/v1/namespaces' && !r.watch);
  expect(lists.length).toBeGreaterThan(0);
  expect(lists.every((r) => r.query['limit'] === '500')).toBe(true);
});
