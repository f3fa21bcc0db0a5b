/**
 * The API server's chain for a pod: mesh-guard → Istio's injector (test reimplementation of
 * applyPrometheusMerge, istio.md §1) → mesh-guard again (reinvocationPolicy IfNeeded).
 */
import { describe, expect, it } from 'vitest';
import type { V1Pod } from '@kubernetes/client-node';
import { admitPod, type AdmitOptions } from './support/admit.js';
import { IstioRejected, NS, istioInject, podOf, storedScrapeEnv, type IstioOptions } from './support/istio.js';

const FILTER = '{"mode":"exclude","names":["istio_*","envoy_*"]}';
const annotations = (p: unknown) => ((p as V1Pod).metadata?.annotations ?? {}) as Record<string, string>;

async function chain(input: V1Pod, opts: AdmitOptions = {}, istio: IstioOptions = {}) {
  const admitOpts = { namespaces: { shop: NS.meshed }, ...opts };
  const first = await admitPod(input, admitOpts);
  const injected = istioInject(first.patched as V1Pod, istio);
  const second = await admitPod(injected, admitOpts);
  return { first, injected, second };
}

describe('chain: mesh-guard → Istio → mesh-guard', () => {
  it('the "done when" pod: app endpoint merged, Dynatrace on 15020, classic sidecar, no ops on re-invocation', async () => {
    const input = podOf({ annotations: { 'metrics.dynatrace.com/scrape': 'true', 'metrics.dynatrace.com/port': '8080' } });
    const { first, injected, second } = await chain(input);
    expect(annotations(first.patched)).toEqual({
      'metrics.dynatrace.com/scrape': 'true',
      'metrics.dynatrace.com/port': '15020',
      'metrics.dynatrace.com/path': '/stats/prometheus',
      'metrics.dynatrace.com/filter': FILTER,
      'prometheus.io/scrape': 'true',
      'prometheus.io/port': '8080',
      'prometheus.io/path': '/metrics',
      'sidecar.istio.io/nativeSidecar': 'false',
    });
    expect(first.result.review.response.auditAnnotations).toEqual({ 'mutated-by': 'istio-metric-merging,istio-native-sidecar-guard' });
    // Istio stored the app endpoint for pilot-agent and pointed Prometheus at itself.
    expect(storedScrapeEnv(injected)).toEqual(['{"scrape":"true","path":"/metrics","port":"8080"}']);
    expect(annotations(injected)).toMatchObject({
      'prometheus.io/port': '15020',
      'prometheus.io/path': '/stats/prometheus',
      'metrics.dynatrace.com/port': '15020',
      'metrics.dynatrace.com/path': '/stats/prometheus',
    });
    // nativeSidecar "false" kept istio-proxy a regular container.
    expect(injected.spec!.containers.map((c) => c.name)).toEqual(['app', 'istio-proxy']);
    expect(second.ops).toEqual([]);
    expect(second.result.outcomes).toEqual([]);
  });

  it('without Dynatrace in the namespace, the sidecar stays native and only metrics change', async () => {
    const input = podOf({ annotations: { 'metrics.dynatrace.com/scrape': 'true', 'metrics.dynatrace.com/port': '8080' } });
    const { injected, second } = await chain(input, { namespaces: { shop: NS.meshedOnly } });
    expect(injected.spec!.initContainers!.map((c) => c.name)).toEqual(['istio-init', 'istio-proxy']);
    expect(storedScrapeEnv(injected)).toEqual(['{"scrape":"true","path":"/metrics","port":"8080"}']);
    expect(second.ops).toEqual([]);
  });

  const variants: Array<[string, Record<string, string>, string]> = [
    ['custom DT path', { 'metrics.dynatrace.com/scrape': 'true', 'metrics.dynatrace.com/port': '9000', 'metrics.dynatrace.com/path': '/q/metrics' }, '{"scrape":"true","path":"/q/metrics","port":"9000"}'],
    ['prometheus.io/port "15020" set before Istio (the lost-metrics mistake)', { 'metrics.dynatrace.com/scrape': 'true', 'metrics.dynatrace.com/port': '8080', 'prometheus.io/scrape': 'true', 'prometheus.io/port': '15020', 'prometheus.io/path': '/stats/prometheus' }, '{"scrape":"true","path":"/metrics","port":"8080"}'],
    ['app endpoint only in a dotted prometheus key variant', { 'metrics.dynatrace.com/scrape': 'true', 'prometheus.io.port': '9090' }, '{"scrape":"true","path":"/metrics","port":"9090"}'],
    ['Dynatrace guide recipe already applied by hand', { 'metrics.dynatrace.com/scrape': 'true', 'metrics.dynatrace.com/port': '15020', 'metrics.dynatrace.com/path': '/stats/prometheus', 'prometheus.io/scrape': 'true', 'prometheus.io/port': '8080', 'prometheus.io/path': '/metrics' }, '{"scrape":"true","path":"/metrics","port":"8080"}'],
  ];
  it.each(variants)('%s', async (_name, input, env) => {
    const { injected, second } = await chain(podOf({ annotations: input }));
    expect(storedScrapeEnv(injected)).toEqual([env]);
    expect(annotations(injected)['metrics.dynatrace.com/port']).toBe('15020');
    expect(annotations(injected)['metrics.dynatrace.com/path']).toBe('/stats/prometheus');
    expect(second.ops).toEqual([]);
  });

  it('prometheusScrapeIsRequest: a Prometheus-annotated pod also gets Dynatrace on the merged endpoint', async () => {
    const input = podOf({ annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9090', 'prometheus.io/path': '/m' } });
    const { injected, second } = await chain(input, { configYaml: 'metricMerging: {prometheusScrapeIsRequest: true}' });
    expect(storedScrapeEnv(injected)).toEqual(['{"scrape":"true","path":"/m","port":"9090"}']);
    expect(annotations(injected)).toMatchObject({ 'metrics.dynatrace.com/scrape': 'true', 'metrics.dynatrace.com/port': '15020' });
    expect(second.ops).toEqual([]);
  });

  it('no app port: Dynatrace gets mesh-only metrics, no env, and no :80 scrape is introduced', async () => {
    const { first, injected, second } = await chain(podOf({ annotations: { 'metrics.dynatrace.com/scrape': 'true' } }));
    expect(Object.keys(annotations(first.patched)).filter((k) => k.startsWith('prometheus.io/'))).toEqual([]);
    expect(storedScrapeEnv(injected)).toEqual([]);
    expect(second.ops).toEqual([]);
  });

  it('never makes Istio ≥1.31 reject the pod: a reserved DT port is left alone', async () => {
    const input = podOf({ annotations: { 'metrics.dynatrace.com/scrape': 'true', 'metrics.dynatrace.com/port': '15090' } });
    const { first, injected } = await chain(input);
    expect(annotations(first.patched)['prometheus.io/port']).toBeUndefined();
    expect(injected.metadata!.annotations!['prometheus.io/port']).toBe('15020');
  });

  it('the test Istio rejects what 1.31 rejects (so the check above means something)', () => {
    const bad = podOf({ annotations: { 'prometheus.io/port': '15090' } });
    expect(() => istioInject(bad)).toThrow(IstioRejected);
  });

  it('Istio run again on the result is a no-op (no duplicate env)', async () => {
    const input = podOf({ annotations: { 'metrics.dynatrace.com/scrape': 'true', 'metrics.dynatrace.com/port': '8080' } });
    const { injected } = await chain(input);
    expect(istioInject(injected)).toEqual(injected);
  });

  it('dry-run: the chain sees no mesh-guard ops, and Istio merges nothing of the app', async () => {
    const input = podOf({ annotations: { 'metrics.dynatrace.com/scrape': 'true', 'metrics.dynatrace.com/port': '8080' } });
    const { first, injected, second } = await chain(input, { configYaml: 'dryRun: true' });
    expect(first.ops).toEqual([]);
    expect(first.result.review.response.auditAnnotations).toEqual({ 'dry-run-would-mutate': 'istio-metric-merging,istio-native-sidecar-guard' });
    expect(storedScrapeEnv(injected)).toEqual([]);
    expect(second.ops).toEqual([]);
    // After Istio the log says why nothing can be repointed.
    const reasons = second.result.outcomes.flatMap((o) => o.reasons).join('\n');
    expect(reasons).toMatch(/Istio has already injected .*no ISTIO_PROMETHEUS_ANNOTATIONS/);
  });
});

describe('chain in the other order: Istio → mesh-guard (misordered webhooks)', () => {
  it('repoints Dynatrace only when Istio stored the app endpoint; prometheus.io/* untouched', async () => {
    const input = podOf({
      annotations: { 'metrics.dynatrace.com/scrape': 'true', 'metrics.dynatrace.com/port': '8080', 'prometheus.io/scrape': 'true', 'prometheus.io/port': '8080' },
    });
    const injected = istioInject(input);
    const { ops, patched, result } = await admitPod(injected, { namespaces: { shop: NS.meshed } });
    expect(ops.every((o) => o.path.startsWith('/metadata/annotations/metrics.dynatrace.com~1'))).toBe(true);
    expect(annotations(patched)).toMatchObject({ 'metrics.dynatrace.com/port': '15020', 'metrics.dynatrace.com/path': '/stats/prometheus', 'metrics.dynatrace.com/filter': FILTER });
    expect(result.outcomes.flatMap((o) => o.reasons).join('\n')).toMatch(/mesh-guard's configuration must sort before istio-revision-tag-/);
    const again = await admitPod(patched, { namespaces: { shop: NS.meshed } });
    expect(again.ops).toEqual([]);
  });

  it('leaves a pod alone when Istio stored nothing (the app endpoint was only in Dynatrace annotations)', async () => {
    const injected = istioInject(podOf({ annotations: { 'metrics.dynatrace.com/scrape': 'true', 'metrics.dynatrace.com/port': '8080' } }));
    const { ops, result } = await admitPod(injected, { namespaces: { shop: NS.meshed } });
    expect(ops).toEqual([]);
    expect(result.outcomes.flatMap((o) => o.reasons).join('\n')).toMatch(/no ISTIO_PROMETHEUS_ANNOTATIONS/);
  });
});
