/**
 * The API server's chain for a pod: mesh-guard → Istio's injector (test reimplementation of
 * applyPrometheusMerge, istio.md §1) → mesh-guard again (reinvocationPolicy IfNeeded).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { V1Pod } from '@kubernetes/client-node';
import { istioMetricMerging } from '../src/rules/istio-metric-merging.js';
import { admitPod, type AdmitOptions } from './support/admit.js';
import { IstioRejected, NS, evaluateCase, istioInject, podOf, storedScrapeEnv, type IstioOptions, type PodCase } from './support/istio.js';

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
      'proxy.istio.io/config': 'holdApplicationUntilProxyStarts: true',
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
    // nativeSidecar "false" kept istio-proxy a regular container, held first so it starts before the app.
    expect(injected.spec!.containers.map((c) => c.name)).toEqual(['istio-proxy', 'app']);
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

describe('chain properties over random annotation mixes (metric merging alone)', () => {
  // Mostly absent, so that pods the rule acts on are common and every blocker still comes up.
  const opt = <T>(a: fc.Arbitrary<T>, absent = 8) => fc.oneof({ weight: absent, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: a });
  const often = <T>(a: fc.Arbitrary<T>) => opt(a, 1);
  const annotationsArb = fc.record({
    'metrics.dynatrace.com/scrape': often(fc.constantFrom('true', 'true', 'True', 'false', 'yes')),
    'metrics.dynatrace.com/port': often(fc.constantFrom('8080', '8080', '9090', '15020', '15090', 'http', '08080')),
    'metrics.dynatrace.com/path': opt(fc.constantFrom('/metrics', '/custom', '/stats/prometheus', '')),
    'metrics.dynatrace.com/secure': opt(fc.constantFrom('true', 'false')),
    'metrics.dynatrace.com/filter': opt(fc.constant('{"mode":"include","names":["app_*"]}')),
    'prometheus.io/scrape': often(fc.constantFrom('true', 'true', 'false', 'yes')),
    'prometheus.io.scrape': opt(fc.constantFrom('true', '0')),
    'prometheus.io/port': often(fc.constantFrom('8080', '9090', '15020', 'abc')),
    'prometheus-io/port': opt(fc.constantFrom('8080', '15020')),
    'prometheus.io/path': opt(fc.constantFrom('/metrics', '/stats/prometheus', '/x')),
    'prometheus.io/scheme': opt(fc.constantFrom('http', 'https')),
    'prometheus.istio.io/merge-metrics': opt(fc.constantFrom('true', 'false')),
    'sidecar.istio.io/inject': opt(fc.constantFrom('true', 'false')),
  });
  const labelsArb = fc.record({
    'sidecar.istio.io/inject': opt(fc.constantFrom('true', 'false', 'yes')),
    'istio.io/rev': opt(fc.constant('canary')),
    'istio.io/dataplane-mode': opt(fc.constant('ambient')),
  });
  const nsArb = fc.record({
    'istio-injection': opt(fc.constantFrom('enabled', 'disabled'), 1),
    'istio.io/rev': opt(fc.constant('canary')),
    'istio.io/dataplane-mode': opt(fc.constant('ambient')),
  });
  const configArb = fc.record({ prometheusScrapeIsRequest: fc.boolean(), injectByDefault: fc.boolean(), excludeMeshMetrics: fc.boolean() });
  const defined = (o: Record<string, string | undefined>) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Record<string, string>;
  const isPromPort = (k: string) => /^prometheus[-./]io[./]port$/.test(k);

  it('never writes the status port into prometheus.io/port, never makes Istio reject the pod, and converges before and after Istio', () => {
    fc.assert(
      fc.property(annotationsArb, labelsArb, nsArb, configArb, (a, l, n, c) => {
        const config = `metricMerging: {prometheusScrapeIsRequest: ${c.prometheusScrapeIsRequest}, excludeMeshMetrics: ${c.excludeMeshMetrics}}\nistio: {injectByDefault: ${c.injectByDefault}}`;
        const base: PodCase = { annotations: defined(a), labels: defined(l), ns: defined(n), config };
        const first = evaluateCase(istioMetricMerging, base, {});
        const out = { ...base.annotations };
        for (const ch of first.changes) {
          expect(ch.kind).toBe('annotation');
          if (ch.kind !== 'annotation') continue;
          expect(isPromPort(ch.key) && ch.value === '15020').toBe(false);
          out[ch.key] = ch.value;
        }
        const prepared: PodCase = { ...base, annotations: out };
        expect(evaluateCase(istioMetricMerging, prepared, {}).changes).toEqual([]);

        let rejectedBefore = false;
        try {
          istioInject(podOf(base));
        } catch (e) {
          if (!(e instanceof IstioRejected)) throw e;
          rejectedBefore = true;
        }
        let injected: V1Pod;
        try {
          injected = istioInject(podOf(prepared));
        } catch (e) {
          if (!(e instanceof IstioRejected)) throw e;
          expect(rejectedBefore, 'mesh-guard made Istio reject a pod it accepted').toBe(true);
          return;
        }
        const after: PodCase = { ...prepared, annotations: annotations(injected), containers: injected.spec!.containers, initContainers: injected.spec!.initContainers };
        const third = evaluateCase(istioMetricMerging, after, {});
        for (const ch of third.changes) expect(ch.kind === 'annotation' && ch.key.startsWith('metrics.dynatrace.com/')).toBe(true);
        if (first.changes.length > 0) {
          expect(third.changes).toEqual([]);
          // What Istio stored for pilot-agent is the endpoint Dynatrace asked for.
          const app = first.reasons.join().match(/app endpoint :(\d+)(\/\S*) \(from/);
          if (app) expect(storedScrapeEnv(injected).map((v) => JSON.parse(v) as { port: string; path: string })).toEqual([expect.objectContaining({ port: app[1], path: app[2] })]);
        }
      }),
      { numRuns: 400, seed: 20261122 },
    );
  });
});
