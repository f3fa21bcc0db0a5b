/**
 * Istio's real injector (test/e2e/support/istio-injector.ts) answers an AdmissionReview over HTTPS
 * as istiod would: istio-proxy injected (a native sidecar by default), and prometheus.io/* merged
 * into the agent's :15020/stats/prometheus with the app endpoint kept in ISTIO_PROMETHEUS_ANNOTATIONS
 * (pkg/kube/inject/webhook.go applyPrometheusMerge). It also records what it was shown.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import jsonpatch from 'fast-json-patch';
import { httpsRequest } from '../support/process.js';
import { review } from '../support/review.js';
import { startIstioInjector, type IstioInjector } from './support/istio-injector.js';

function plainPod(annotations?: Record<string, string>): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { generateName: 'shop-', namespace: 'shop', labels: { app: 'shop' }, ...(annotations ? { annotations } : {}) },
    spec: { containers: [{ name: 'app', image: 'nginx:1.27', ports: [{ containerPort: 8080 }] }] },
  };
}

/** Posts the pod to /inject as the API server does and returns the pod with Istio's patch applied. */
async function inject(injector: IstioInjector, pod: V1Pod): Promise<V1Pod> {
  const body = review(pod, { userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller' } });
  const uid = (body.request as { uid: string }).uid;
  const res = await httpsRequest({ port: Number(new URL(injector.url).port), ca: injector.caPem, method: 'POST', path: '/inject', body: JSON.stringify(body) });
  expect(res.status).toBe(200);
  const response = (JSON.parse(res.body) as { response: { uid: string; allowed: boolean; patch?: string; patchType?: string } }).response;
  expect(response).toMatchObject({ uid, allowed: true, patchType: 'JSONPatch' });
  const ops = JSON.parse(Buffer.from(response.patch!, 'base64').toString('utf8')) as jsonpatch.Operation[];
  return jsonpatch.applyPatch(structuredClone(pod), ops, true, false).newDocument;
}

const named = (list: V1Container[] | undefined, name: string) => list?.find((c) => c.name === name);
const names = (list: V1Container[] | undefined) => (list ?? []).map((c) => c.name);

describe('the real Istio injector (native sidecars, the default)', () => {
  let injector: IstioInjector;
  beforeAll(async () => {
    injector = await startIstioInjector();
  });
  afterAll(async () => {
    await injector?.stop();
  });

  it('injects istio-proxy into a plain pod as a native sidecar, and records the pod it was shown', async () => {
    const pod = plainPod();
    const out = await inject(injector, pod);
    expect(names(out.spec!.initContainers)).toEqual(['istio-init', 'istio-proxy']);
    expect(named(out.spec!.initContainers, 'istio-proxy')!.restartPolicy).toBe('Always');
    expect(names(out.spec!.containers)).toEqual(['app']);
    expect(out.metadata!.annotations!['sidecar.istio.io/status']).toMatch(/"initContainers":\["istio-init","istio-proxy"\]/);
    // Without app annotations Istio still advertises its own merged endpoint.
    expect(out.metadata!.annotations).toMatchObject({ 'prometheus.io/port': '15020', 'prometheus.io/path': '/stats/prometheus' });
    expect(injector.requests().at(-1)!.object).toEqual(pod);
  });

  it('rewrites prometheus.io/* to :15020/stats/prometheus and keeps the app endpoint in ISTIO_PROMETHEUS_ANNOTATIONS', async () => {
    const out = await inject(injector, plainPod({ 'prometheus.io/scrape': 'true', 'prometheus.io/port': '8080', 'prometheus.io/path': '/metrics' }));
    expect(out.metadata!.annotations).toMatchObject({ 'prometheus.io/scrape': 'true', 'prometheus.io/port': '15020', 'prometheus.io/path': '/stats/prometheus' });
    const env = named(out.spec!.initContainers, 'istio-proxy')!.env!.find((e) => e.name === 'ISTIO_PROMETHEUS_ANNOTATIONS');
    expect(JSON.parse(env!.value!)).toEqual({ scrape: 'true', path: '/metrics', port: '8080' });
    expect(injector.requests().at(-1)!.object.metadata).toMatchObject({ annotations: { 'prometheus.io/port': '8080' } });
  });
});

describe('the real Istio injector with native sidecars off', () => {
  let injector: IstioInjector;
  beforeAll(async () => {
    injector = await startIstioInjector({ nativeSidecars: false });
  });
  afterAll(async () => {
    await injector?.stop();
  });

  it('puts istio-proxy into spec.containers', async () => {
    const out = await inject(injector, plainPod());
    expect(names(out.spec!.initContainers)).toEqual(['istio-init']);
    expect(names(out.spec!.containers)).toEqual(['app', 'istio-proxy']);
  });
});
