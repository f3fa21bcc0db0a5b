/**
 * The Istio rules end to end with namespace labels served by the in-test API server through
 * the informer-backed cluster view (real @kubernetes/client-node, real HTTPS webhook server).
 */
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { V1Pod } from '@kubernetes/client-node';
import { createClusterView } from '../src/cluster/kube-view.js';
import type { ClusterView } from '../src/cluster/view.js';
import { defaultConfig } from '../src/config/schema.js';
import { FakeApiServer } from './support/fake-apiserver.js';
import { NS, istioInject, podOf, storedScrapeEnv } from './support/istio.js';
import { applyOps, decodePatch, review, type ReviewResponse } from './support/review.js';
import { startTestServer, type TestServer } from './support/server.js';

const REQUEST = { 'metrics.dynatrace.com/scrape': 'true', 'metrics.dynatrace.com/port': '8080' };

let api: FakeApiServer;
let view: ClusterView;
let s: TestServer;

beforeAll(async () => {
  api = await FakeApiServer.start();
  api.create('namespaces', { metadata: { name: 'shop', labels: { ...NS.meshed } } });
  api.create('namespaces', { metadata: { name: 'plain' } });
  view = createClusterView({ ...defaultConfig.cluster, syncTimeoutMs: 5_000 }, {
    log: pino({ level: 'silent' }),
    registry: new Registry(),
    kubeConfig: api.kubeConfig(),
  });
  await view.ready();
  s = await startTestServer({ cluster: view });
});

afterAll(async () => {
  await s?.close();
  await view?.close();
  await api?.close();
});

async function send(pod: V1Pod) {
  const res = await s.mutate(review(pod)).expect(200);
  const response = res.body.response as ReviewResponse;
  const ops = decodePatch(response);
  const log = s.logs.filter((l) => l.msg === 'admission').at(-1)!;
  return { response, ops, patched: ops.length ? applyOps(pod, ops) : pod, log };
}

describe('Istio rules with namespace labels from the API server', () => {
  it('meshed, Dynatrace-injected namespace: merged endpoint, exclude filter, nativeSidecar "false"; no ops after Istio', async () => {
    expect(view.state).toBe('synced');
    const { patched } = await send(podOf({ annotations: REQUEST }));
    expect(patched.metadata!.annotations).toMatchObject({
      'prometheus.io/port': '8080',
      'metrics.dynatrace.com/port': '15020',
      'metrics.dynatrace.com/path': '/stats/prometheus',
      'metrics.dynatrace.com/filter': '{"mode":"exclude","names":["istio_*","envoy_*"]}',
      'sidecar.istio.io/nativeSidecar': 'false',
    });
    const injected = istioInject(patched);
    expect(storedScrapeEnv(injected)).toEqual(['{"scrape":"true","path":"/metrics","port":"8080"}']);
    expect((await send(injected)).ops).toEqual([]);
  });

  it('follows a namespace label change without a restart', async () => {
    // Dynatrace stops injecting in "shop": the native-sidecar guard steps back, metric merging stays.
    api.setLabels('namespaces', undefined, 'shop', { 'dynakube.internal.dynatrace.com/instance': null });
    await waitForLabels('shop', (l) => l['dynakube.internal.dynatrace.com/instance'] === undefined);
    const { patched } = await send(podOf({ annotations: REQUEST }));
    expect(patched.metadata!.annotations!['sidecar.istio.io/nativeSidecar']).toBeUndefined();
    expect(patched.metadata!.annotations!['metrics.dynatrace.com/port']).toBe('15020');
  });

  it('a namespace without Istio labels: skipped with the reason in the log', async () => {
    const { ops, log } = await send(podOf({ namespace: 'plain', annotations: REQUEST }));
    expect(ops).toEqual([]);
    expect(JSON.stringify(log.rules)).toContain('no Istio webhook matches');
  });

  it('a namespace the API server does not have: skipped with the reason in the log', async () => {
    const { ops, log } = await send(podOf({ namespace: 'ghost', annotations: REQUEST }));
    expect(ops).toEqual([]);
    expect(JSON.stringify(log.rules)).toContain('namespace \\"ghost\\" does not exist');
  });
});

async function waitForLabels(name: string, ok: (labels: Readonly<Record<string, string>>) => boolean): Promise<void> {
  const until = Date.now() + 8_000;
  for (;;) {
    const lookup = await view.namespaceLabels(name);
    if (lookup.state === 'known' && ok(lookup.labels)) return;
    if (Date.now() > until) throw new Error(`namespace ${name} labels did not change in time`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
