/**
 * The Istio rules over Istio's own injection fixtures (istio-inject, read at run time from the Go module
 * cache or ../shared/corpus, see test/support/corpus.ts): inputs are the before-Istio state, `.injected`
 * outputs the after-Istio state. The classic-1.26.8 outputs exist only in ../shared; their cases are
 * tables of their own so that the rest runs without them.
 */
import { describe, expect, it } from 'vitest';
import type { V1Pod } from '@kubernetes/client-node';
import { admitAndConverge, admitPod } from './support/admit.js';
import { NS, applyPrometheusMerge, istioInject, storedScrapeEnv } from './support/istio.js';
import { skipWithout } from './support/corpus.js';
import { corpusPod } from './support/review.js';

const DIR = 'istio-inject';
const opts = { namespace: 'shop', namespaces: { shop: NS.meshed } };
const DT = { 'metrics.dynatrace.com/scrape': 'true', 'metrics.dynatrace.com/port': '8080' };
const annotations = (p: unknown) => ((p as V1Pod).metadata?.annotations ?? {}) as Record<string, string>;
const prom = (p: V1Pod) => Object.fromEntries(Object.entries(annotations(p)).filter(([k]) => /^prometheus[-./]io[./]/.test(k)));
const sidecarList = (p: V1Pod) =>
  p.spec?.containers.some((c) => c.name === 'istio-proxy') ? 'containers' : p.spec?.initContainers?.some((c) => c.name === 'istio-proxy') ? 'initContainers' : 'none';

function load(file: string, extra: Record<string, string> = {}): V1Pod {
  const pod = corpusPod(`${DIR}/${file}`);
  pod.metadata = { ...pod.metadata, annotations: { ...(pod.metadata?.annotations ?? {}), ...extra } };
  return pod;
}

/** Skipped where the fixtures are missing (never under CI): see test/support/corpus.ts. */
const noFixtures = skipWithout(`${DIR}/hello.yaml`);
const noClassic = skipWithout(`${DIR}/classic-1.26.8/hello.yaml`);

const reasonsOf = (r: Awaited<ReturnType<typeof admitPod>>, rule: string) =>
  r.result.outcomes.filter((o) => o.rule === rule).flatMap((o) => o.reasons).join('\n');

describe.skipIf(noFixtures)('the test Istio matches the real fixtures', () => {
  const pairs: Array<[input: string, output: string]> = [
    ['hello.yaml', 'hello.yaml.injected'],
    ['prometheus-scrape.yaml', 'prometheus-scrape.yaml.injected'],
    ['prometheus-scrape2.yaml', 'prometheus-scrape2.yaml.injected'],
    ['merge-probers.yaml', 'merge-probers.yaml.injected'],
    ['native-sidecar.yaml', 'native-sidecar.yaml.injected'],
    ['native-sidecar-opt-in.yaml', 'native-sidecar-opt-in.yaml.injected'],
    ['native-sidecar-opt-out.yaml', 'native-sidecar-opt-out.yaml.injected'],
  ];
  it.each(pairs)('%s → %s: prometheus annotations, env and sidecar placement', (input, output) => {
    const ours = istioInject(load(input));
    const real = load(output);
    expect(prom(ours)).toEqual(prom(real));
    expect(storedScrapeEnv(ours)).toEqual(storedScrapeEnv(real));
    // Real re-injection strips and re-renders the proxy (now native); the stand-in only re-merges.
    if (input !== 'merge-probers.yaml') expect(sidecarList(ours)).toBe(sidecarList(real));
  });

  it.skipIf(noClassic)('native sidecars off (classic 1.26 outputs) keep istio-proxy in containers', () => {
    expect(sidecarList(istioInject(load('hello.yaml'), { nativeSidecars: false }))).toBe(sidecarList(load('classic-1.26.8/hello.yaml.injected')));
  });

  const rewriteIsNoOp = (f: string) => {
    const pod = load(f);
    const copy = structuredClone(pod);
    applyPrometheusMerge(copy);
    expect(copy).toEqual(pod);
  };
  it.each(['hello.yaml.injected', 'merge-probers.yaml.injected', 'hello-multiport-metrics.yaml.injected'])(
    'the rewrite is a no-op on the real output %s (port already the status port)',
    rewriteIsNoOp,
  );
  it.skipIf(noClassic)('the rewrite is a no-op on the classic output hello.yaml.injected', () => rewriteIsNoOp('classic-1.26.8/hello.yaml.injected'));
});

describe.skipIf(noFixtures)('before Istio: the inputs as they are (namespace istio-injection=enabled, Dynatrace-injected)', () => {
  const cases: Array<[string, string[], RegExp | null]> = [
    ['hello.yaml', ['sidecar.istio.io/nativeSidecar', 'proxy.istio.io/config'], null],
    ['prometheus-scrape.yaml', ['sidecar.istio.io/nativeSidecar', 'proxy.istio.io/config'], null],
    ['prometheus-scrape2.yaml', ['sidecar.istio.io/nativeSidecar', 'proxy.istio.io/config'], null],
    ['native-sidecar.yaml', ['sidecar.istio.io/nativeSidecar', 'proxy.istio.io/config'], null],
    ['hello-multiport-metrics.yaml', ['sidecar.istio.io/nativeSidecar', 'proxy.istio.io/config'], null],
    ['native-sidecar-opt-in.yaml', [], /sidecar.istio.io\/nativeSidecar="true" is set on the pod and left alone/],
    // The owner's classic sidecar gets the start order that classic sidecars lack.
    ['native-sidecar-opt-out.yaml', ['proxy.istio.io/config'], /nativeSidecar="false" gives a classic sidecar: holdApplicationUntilProxyStarts/],
    ['merge-probers.yaml', [], null],
    ['hello-host-network.yaml', [], null],
    ['hello-host-network-with-ns.yaml', [], null],
    ['hello-ignore.yaml', [], null],
  ];
  const classic: typeof cases = [['classic-1.26.8/hello.yaml', ['sidecar.istio.io/nativeSidecar', 'proxy.istio.io/config'], null]];
  const asTheyAre = async (file: string, added: string[], reason: RegExp | null) => {
    const input = load(file);
    const run = await admitAndConverge(input, opts);
    const after = annotations(run.patched);
    expect(Object.keys(after).filter((k) => after[k] !== annotations(input)[k])).toEqual(added);
    if (added.length) expect(after['sidecar.istio.io/nativeSidecar']).toBe('false');
    if (added.length) expect(after['proxy.istio.io/config']).toMatch(/holdApplicationUntilProxyStarts: true$/);
    expect(reasonsOf(run, 'istio-metric-merging')).toBe('');
    if (reason) expect(reasonsOf(run, 'istio-native-sidecar-guard')).toMatch(reason);
  };
  it.each(cases)('%s', asTheyAre);
  it.skipIf(noClassic).each(classic)('%s', asTheyAre);
});

describe.skipIf(noFixtures)('before Istio: the inputs asking for Dynatrace scraping of :8080', () => {
  const cases: Array<[string, boolean, RegExp]> = [
    ['hello.yaml', true, /prometheus.io\/\* carries the app endpoint :8080\/metrics/],
    ['native-sidecar.yaml', true, /app endpoint :8080\/metrics/],
    ['native-sidecar-opt-in.yaml', true, /app endpoint :8080\/metrics/],
    ['prometheus-scrape.yaml', false, /prometheus.io\/scrape="false": Istio does not merge/],
    ['prometheus-scrape2.yaml', false, /prometheus.io.scrape="false": Istio does not merge/],
    ['hello-multiport-metrics.yaml', false, /prometheus.istio.io\/scrape-targets is set/],
    ['hello-host-network.yaml', false, /hostNetwork pod/],
    ['hello-ignore.yaml', false, /pod annotation sidecar.istio.io\/inject="false"/],
    ['merge-probers.yaml', false, /Istio has already injected .*no ISTIO_PROMETHEUS_ANNOTATIONS/],
  ];
  it.each(cases)('%s', async (file, acts, reason) => {
    const input = load(file, DT);
    const run = await admitAndConverge(input, opts);
    expect(reasonsOf(run, 'istio-metric-merging')).toMatch(reason);
    const after = annotations(run.patched);
    if (!acts) {
      expect(prom(run.patched as V1Pod)).toEqual(prom(input));
      expect(after['metrics.dynatrace.com/port']).toBe('8080');
      return;
    }
    expect(after).toMatchObject({ 'prometheus.io/port': '8080', 'metrics.dynatrace.com/port': '15020' });
    // Through the test Istio: the app endpoint lands in the env, and mesh-guard has nothing left to do.
    const injected = istioInject(run.patched as V1Pod);
    expect(storedScrapeEnv(injected)).toEqual(['{"scrape":"true","path":"/metrics","port":"8080"}']);
    expect((await admitPod(injected, opts)).ops).toEqual([]);
  });
});

describe.skipIf(noFixtures)('after Istio: the .injected outputs', () => {
  const outputs = [
    'hello.yaml.injected',
    'hello.yaml.cni.injected',
    'hello-old-version.yaml.injected',
    'hello-probes.yaml.injected',
    'hello-host-network.yaml.injected',
    'hello-ignore.yaml.injected',
    'hello-multiport-metrics.yaml.injected',
    'merge-probers.yaml.injected',
    'native-sidecar.yaml.injected',
    'native-sidecar-opt-in.yaml.injected',
    'native-sidecar-opt-out.yaml.injected',
    'native-sidecar-old-version.yaml.injected',
    'prometheus-scrape.yaml.injected',
    'prometheus-scrape2.yaml.injected',
  ];
  const classic = ['classic-1.26.8/hello.yaml.injected', 'classic-1.26.8/native-sidecar-opt-in.yaml.injected', 'classic-1.26.8/merge-probers.yaml.injected'];

  const asIs = async (file: string) => {
    const run = await admitPod(load(file), opts);
    expect(run.ops).toEqual([]);
    const native = sidecarList(load(file)) === 'initContainers';
    const askedNative = annotations(load(file))['sidecar.istio.io/nativeSidecar'] === 'true';
    expect(reasonsOf(run, 'istio-native-sidecar-guard')).toMatch(!native ? /^$/ : askedNative ? /the native sidecar the pod asked for/ : /too late to opt out/);
    expect(reasonsOf(run, 'istio-metric-merging')).toBe('');
  };
  it.each(outputs)('%s as is: no ops (never touches prometheus.io/*, too late for nativeSidecar)', asIs);
  it.skipIf(noClassic).each(classic)('%s as is: no ops', asIs);

  const askingForDynatrace = async (file: string) => {
    const run = await admitAndConverge(load(file, DT), opts);
    expect(run.ops.every((o) => o.path.startsWith('/metadata/annotations/metrics.dynatrace.com~1'))).toBe(true);
    const injected = annotations(load(file)).hasOwnProperty('sidecar.istio.io/status');
    if (!injected) {
      // hostNetwork and opted-out pods carry no status: Istio skipped them.
      expect(run.ops).toEqual([]);
      return;
    }
    if (file === 'hello-multiport-metrics.yaml.injected') {
      expect(run.ops.length).toBeGreaterThan(0);
      expect(reasonsOf(run, 'istio-metric-merging')).toMatch(/already holds the app endpoint :8080\/metrics, so only Dynatrace is repointed/);
    } else {
      expect(run.ops).toEqual([]);
      expect(reasonsOf(run, 'istio-metric-merging')).toMatch(/Istio has already injected .*(no ISTIO_PROMETHEUS_ANNOTATIONS|no istio-proxy)/);
    }
  };
  it.each(outputs)('%s asking for Dynatrace scraping of :8080: only metrics.dynatrace.com/* may change', askingForDynatrace);
  it.skipIf(noClassic).each(classic)('%s asking for Dynatrace scraping of :8080', askingForDynatrace);

  it('hello-multiport-metrics.yaml.injected: Dynatrace on the second 1.31 target is repointed too', async () => {
    const run = await admitPod(load('hello-multiport-metrics.yaml.injected', { ...DT, 'metrics.dynatrace.com/port': '9100', 'metrics.dynatrace.com/path': '/custom-metrics' }), opts);
    expect(annotations(run.patched)).toMatchObject({ 'metrics.dynatrace.com/port': '15020', 'metrics.dynatrace.com/path': '/stats/prometheus' });
  });

  const scrapeIsRequest = async (file: string) => {
    const run = await admitPod(load(file), { ...opts, configYaml: 'metricMerging: {prometheusScrapeIsRequest: true}' });
    if (file === 'hello-multiport-metrics.yaml.injected') {
      // The user's original prometheus.io/scrape "true" is in the env: a real request, already merged.
      expect(annotations(run.patched)).toMatchObject({ 'metrics.dynatrace.com/scrape': 'true', 'metrics.dynatrace.com/port': '15020' });
    } else {
      expect(run.ops).toEqual([]);
      expect(reasonsOf(run, 'istio-metric-merging')).toBe('');
    }
  };
  it.each(outputs)('%s with prometheusScrapeIsRequest: Istio\'s own prometheus.io/* is not a request', scrapeIsRequest);
  it.skipIf(noClassic).each(classic)('%s with prometheusScrapeIsRequest', scrapeIsRequest);
});
