/**
 * The Istio rules end to end through the real HTTPS server: AdmissionReview in, JSONPatch
 * out, one admission log line, then the test Istio and the re-invocation.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { V1Pod } from '@kubernetes/client-node';
import { staticClusterView } from '../src/cluster/view.js';
import { NS, istioInject, podOf, storedScrapeEnv } from './support/istio.js';
import { applyOps, decodePatch, review, type ReviewResponse } from './support/review.js';
import { startTestServer, type TestServer } from './support/server.js';

const DONE_WHEN = podOf({ annotations: { 'metrics.dynatrace.com/scrape': 'true', 'metrics.dynatrace.com/port': '8080' } });
const cluster = () => staticClusterView({ shop: NS.meshed });

async function send(s: TestServer, pod: V1Pod): Promise<{ response: ReviewResponse; patched: V1Pod }> {
  const res = await s.mutate(review(pod)).expect(200);
  const response = res.body.response as ReviewResponse;
  expect(response.allowed).toBe(true);
  const ops = decodePatch(response);
  return { response, patched: ops.length ? applyOps(pod, ops) : pod };
}

const admissionLogs = (s: TestServer) => s.logs.filter((l) => l.msg === 'admission');

describe('Istio rules through the HTTPS server (static cluster view)', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ cluster: cluster() });
  });
  afterAll(async () => s.close());

  it('the "done when" pod: patched, merged by Istio, no ops on re-invocation', async () => {
    const { response, patched } = await send(s, DONE_WHEN);
    expect(response.auditAnnotations).toEqual({ 'mutated-by': 'istio-metric-merging,istio-native-sidecar-guard' });
    expect(patched.metadata!.annotations).toMatchObject({
      'prometheus.io/scrape': 'true',
      'prometheus.io/port': '8080',
      'prometheus.io/path': '/metrics',
      'metrics.dynatrace.com/port': '15020',
      'metrics.dynatrace.com/path': '/stats/prometheus',
      'metrics.dynatrace.com/filter': '{"mode":"exclude","names":["istio_*","envoy_*"]}',
      'sidecar.istio.io/nativeSidecar': 'false',
    });
    const log = admissionLogs(s).at(-1)!;
    expect(log.outcome).toBe('patched');
    expect(JSON.stringify(log.rules)).toContain('Istio injects a sidecar: namespace label istio-injection=enabled');

    const injected = istioInject(patched);
    expect(storedScrapeEnv(injected)).toEqual(['{"scrape":"true","path":"/metrics","port":"8080"}']);
    const again = await send(s, injected);
    expect(again.response.patch).toBeUndefined();
    expect(admissionLogs(s).at(-1)!.outcome).toBe('unchanged');
    expect(admissionLogs(s).at(-1)!.rules).toBeUndefined();
  });

  it('an ordinary pod in an unmeshed namespace keeps a short log line', async () => {
    const { response } = await send(s, podOf({ namespace: 'elsewhere' }));
    expect(response.patch).toBeUndefined();
    expect(admissionLogs(s).at(-1)!.rules).toBeUndefined();
  });
});

describe('dry-run through the HTTPS server', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ cluster: cluster(), configYaml: 'rules: {istio-metric-merging: dry-run, istio-native-sidecar-guard: dry-run}' });
  });
  afterAll(async () => s.close());

  it('returns no patch; the would-be changes and reasons are only in the log', async () => {
    const { response } = await send(s, DONE_WHEN);
    expect(response.patch).toBeUndefined();
    expect(response.auditAnnotations).toEqual({ 'dry-run-would-mutate': 'istio-metric-merging,istio-native-sidecar-guard' });
    const rules = JSON.stringify(admissionLogs(s).at(-1)!.rules);
    expect(rules).toContain('prometheus.io/port: (unset) → \\"8080\\"');
    expect(rules).toContain('metrics.dynatrace.com/port: \\"8080\\" → \\"15020\\"');
    expect(rules).toContain('sidecar.istio.io/nativeSidecar: (unset) → \\"false\\"');
    expect(rules).toContain('"mode":"dry-run"');
  });
});
