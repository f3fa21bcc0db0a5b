import { describe, expect, it } from 'vitest';
import type { V1Pod } from '@kubernetes/client-node';
import { admitAndConverge, admitPod } from '../../test/support/admit.js';
import { evaluateCase, expectStoodBack, podOf, type PodCase } from '../../test/support/istio.js';
import { parseConfig } from '../config/load.js';
import { consulActiveGateExclusions } from './consul-activegate-exclusions.js';
import { consulMetricMerging } from './consul-metric-merging.js';
import type { RuleResult } from './types.js';

const RULE = 'consul-metric-merging';
const DT_NS = { 'dynakube.internal.dynatrace.com/instance': 'dynakube' };
const INJECT = { 'consul.hashicorp.com/connect-inject': 'true' };
const FILTER = '{"mode":"exclude","names":["envoy_*","consul_dataplane_*"]}';
const METRICS = 'consul.hashicorp.com/enable-metrics';
const MERGING = 'consul.hashicorp.com/enable-metrics-merging';
const SM_PORT = 'consul.hashicorp.com/service-metrics-port';
const SM_PATH = 'consul.hashicorp.com/service-metrics-path';
const SCRAPE_PORT = 'consul.hashicorp.com/prometheus-scrape-port';
const SCRAPE_PATH = 'consul.hashicorp.com/prometheus-scrape-path';
const DT_PORT = 'metrics.dynatrace.com/port';
const DT_PATH = 'metrics.dynatrace.com/path';
const DT = { ...INJECT, 'metrics.dynatrace.com/scrape': 'true', [DT_PORT]: '8080' };
/** What the rule writes for DT above. */
const PREPARED = {
  [METRICS]: 'true',
  [MERGING]: 'true',
  [SM_PORT]: '8080',
  [SM_PATH]: '/metrics',
  [DT_PORT]: '20200',
  [DT_PATH]: '/metrics',
  'metrics.dynatrace.com/filter': FILTER,
};
const INJECTED = { 'consul.hashicorp.com/connect-inject-status': 'injected', 'consul.hashicorp.com/transparent-proxy-status': 'enabled' };

const evaluate = (c: PodCase): RuleResult => evaluateCase(consulMetricMerging, c, DT_NS);
const without = (o: Record<string, string>, ...keys: string[]) => Object.fromEntries(Object.entries(o).filter(([k]) => !keys.includes(k)));
const changed = (r: RuleResult) => Object.fromEntries(r.changes.map((ch) => [ch.kind === 'env' ? ch.name : ch.key, ch.value]));

describe('consul-metric-merging: acts before Consul', () => {
  const cases: Array<[string, PodCase, Record<string, string>, RegExp]> = [
    ['done-when: DT port 8080, Consul tproxy by default, Dynatrace namespace', { annotations: DT }, PREPARED,
      /Consul will inject with transparent proxy .*namespace is labelled dynakube.*app endpoint :8080\/metrics \(from metrics.dynatrace.com\/port\).*merged endpoint :20200\/metrics/],
    ['DT custom path goes to service-metrics-path', { annotations: { ...DT, [DT_PATH]: '/custom' } }, { ...PREPARED, [SM_PATH]: '/custom' }, /:8080\/custom/],
    ['an empty DT path means /metrics', { annotations: { ...DT, [DT_PATH]: '' } }, PREPARED, /:8080\/metrics/],
    ['DT scrape "True" parses as true', { annotations: { ...DT, 'metrics.dynatrace.com/scrape': 'True' } }, PREPARED, /metrics.dynatrace.com\/scrape="True"/],
    ['the user\'s own "true" values are kept as written', { annotations: { ...DT, [METRICS]: '1', [MERGING]: 'T' } }, without(PREPARED, METRICS, MERGING), /app endpoint :8080/],
    ['empty Consul values mean the default, so they are filled', { annotations: { ...DT, [METRICS]: '', [MERGING]: '', [SM_PORT]: '', [SM_PATH]: '' } }, PREPARED, /app endpoint :8080/],
    ['the user\'s service-metrics-* equal to the Dynatrace endpoint are kept', { annotations: { ...DT, [SM_PORT]: '8080', [SM_PATH]: '/metrics' } }, without(PREPARED, SM_PORT, SM_PATH), /app endpoint :8080/],
    ['pod-level prometheus-scrape-port/path override the config defaults', { annotations: { ...DT, [SCRAPE_PORT]: '20300', [SCRAPE_PATH]: '/merged' } }, { ...PREPARED, [DT_PORT]: '20300', [DT_PATH]: '/merged' }, /merged endpoint :20300\/merged/],
    ['consul.prometheusScrapePort/Path from the config', { annotations: DT, config: 'consul: {prometheusScrapePort: 29000, prometheusScrapePath: /stats}' }, { ...PREPARED, [DT_PORT]: '29000', [DT_PATH]: '/stats' }, /merged endpoint :29000\/stats/],
    ['an existing filter is never changed', { annotations: { ...DT, 'metrics.dynatrace.com/filter': '{"mode":"include","names":["app_*"]}' } }, without(PREPARED, 'metrics.dynatrace.com/filter'), /app endpoint :8080/],
    ['metricMerging.excludeMeshMetrics off: no filter', { annotations: DT, config: 'metricMerging: {excludeMeshMetrics: false}' }, without(PREPARED, 'metrics.dynatrace.com/filter'), /app endpoint :8080/],
    ['HashiCorp\'s recipe applied by hand (Dynatrace at :20200): only the filter is added', { annotations: { ...DT, ...without(PREPARED, 'metrics.dynatrace.com/filter') } }, { 'metrics.dynatrace.com/filter': FILTER }, /from consul.hashicorp.com\/service-metrics-port/],
    ['Dynatrace at :20200 by hand with a service-metrics-port: Consul is turned on for it', { annotations: { ...INJECT, 'metrics.dynatrace.com/scrape': 'true', [DT_PORT]: '20200', [SM_PORT]: '9102' } }, { [METRICS]: 'true', [MERGING]: 'true', [SM_PATH]: '/metrics', 'metrics.dynatrace.com/path': '/metrics', 'metrics.dynatrace.com/filter': FILTER }, /app endpoint :9102\/metrics \(from consul.hashicorp.com\/service-metrics-port\)/],
    ['prometheus.io/* naming the same endpoint is fine (Consul repoints it at the merge, a superset)', { annotations: { ...DT, 'prometheus.io/scrape': 'true', 'prometheus.io/port': '8080', 'prometheus.io/path': '/metrics' } }, PREPARED, /app endpoint :8080/],
    ['prometheus.io/* already at the scrape endpoint (HashiCorp\'s recipe for Prometheus) is no loss', { annotations: { ...DT, 'prometheus.io/port': '20200', 'prometheus.io/path': '/metrics' } }, PREPARED, /app endpoint :8080/],
    ['connect-inject absent, consul.injectByDefault true', { annotations: without(DT, 'consul.hashicorp.com/connect-inject'), config: 'consul: {injectByDefault: true}' }, PREPARED, /connect-inject absent and consul.injectByDefault is true/],
    ['namespace label transparent-proxy "true" wins over the default false', { annotations: DT, ns: { ...DT_NS, 'consul.hashicorp.com/transparent-proxy': 'true' }, config: 'consul: {transparentProxyDefault: false}' }, PREPARED, /namespace label consul.hashicorp.com\/transparent-proxy="true"/],
    ['Istio namespace labels unknown: Istio cannot be told, so Consul acts', { annotations: DT, ns: 'unknown', config: 'dynatrace: {assumeInjectedWhenUnknown: true}' }, PREPARED, /dynatrace.assumeInjectedWhenUnknown is true/],
  ];
  it.each(cases)('%s', (_name, input, expected, reason) => {
    const r = evaluate(input);
    expect(changed(r)).toEqual(expected);
    expect(r.reasons).toHaveLength(1);
    expect(r.reasons[0]).toMatch(reason);
  });

  it('on its own output: no changes, "already prepared"', () => {
    const r = evaluate({ annotations: { ...DT, ...PREPARED } });
    expect(r.changes).toEqual([]);
    expect(r.reasons[0]).toMatch(/already prepared: Consul.s metrics annotations carry the app endpoint :8080\/metrics \(from consul.hashicorp.com\/service-metrics-port\)/);
  });
});

describe('consul-metric-merging: stands back with a reason', () => {
  const badPorts = ['http-metrics', '0', '65536', '08080', '0x1f90', '-1', ' 8080', '8080,9090', ''].map(
    (p): [string, PodCase, RegExp] => [`DT port ${JSON.stringify(p)}`, { annotations: { ...DT, [DT_PORT]: p } }, /metrics.dynatrace.com\/port: .* is not a port number from 1 to 65535 in plain decimal/],
  );
  const badBools = ['yes', ' true', 'on', 'enabled'].flatMap((v): Array<[string, PodCase, RegExp]> => [
    [`enable-metrics ${JSON.stringify(v)}`, { annotations: { ...DT, [METRICS]: v } }, /enable-metrics=.* is not a Go bool, so Consul's webhook rejects the pod/],
    [`enable-metrics-merging ${JSON.stringify(v)}`, { annotations: { ...DT, [MERGING]: v } }, /enable-metrics-merging=.* is not a Go bool/],
  ]);
  const badListenerPorts = ['80', '1023', '65536', 'prometheus', '0x4e20', '020200'].map(
    (p): [string, PodCase, RegExp] => [`prometheus-scrape-port ${JSON.stringify(p)}`, { annotations: { ...DT, [SCRAPE_PORT]: p } }, /prometheus-scrape-port=.* is not a port from 1024 to 65535 in plain decimal/],
  );
  const cases: Array<[string, PodCase, RegExp]> = [
    ['the user\'s enable-metrics "false" wins', { annotations: { ...DT, [METRICS]: 'false' } }, /enable-metrics="false" is the owner's choice/],
    ['the user\'s enable-metrics-merging "0" wins', { annotations: { ...DT, [MERGING]: '0' } }, /enable-metrics-merging="0" is the owner's choice/],
    ...badBools,
    ['the user\'s service-metrics-port differs', { annotations: { ...DT, [SM_PORT]: '9102' } }, /service-metrics-port="9102" differs from the Dynatrace app port 8080: the owner's choice stands/],
    ['the user\'s service-metrics-path differs', { annotations: { ...DT, [SM_PATH]: '/prom' } }, /service-metrics-path="\/prom" differs from the Dynatrace app path \/metrics/],
    ...badPorts,
    ['DT port is the merged-metrics port', { annotations: { ...DT, [DT_PORT]: '20100' } }, /20100 is consul-dataplane's merged-metrics port/],
    ['DT port is the pod\'s own merged-metrics port', { annotations: { ...DT, 'consul.hashicorp.com/merged-metrics-port': '8080' } }, /8080 is consul-dataplane's merged-metrics port/],
    ['service-metrics-port is the scrape port', { annotations: { ...INJECT, 'metrics.dynatrace.com/scrape': 'true', [DT_PORT]: '20200', [SM_PORT]: '20200' } }, /20200 is Consul's Prometheus scrape port/],
    ['a DT path that is not a plain URL path', { annotations: { ...DT, [DT_PATH]: '/metrics?format=text' } }, /path "\/metrics\?format=text" is not a plain URL path/],
    ['a DT path with a quote', { annotations: { ...DT, [DT_PATH]: '/m"x' } }, /is not a plain URL path/],
    ...badListenerPorts,
    ['the pod\'s scrape port is the merged-metrics port', { annotations: { ...DT, [SCRAPE_PORT]: '20100' } }, /the scrape port 20100 is also consul-dataplane's merged-metrics port/],
    ['prometheus-scrape-path with a space', { annotations: { ...DT, [SCRAPE_PATH]: '/my metrics' } }, /prometheus-scrape-path="\/my metrics" is not a plain URL path/],
    ['a merged-metrics-port Consul would refuse once merging is on', { annotations: { ...DT, 'consul.hashicorp.com/merged-metrics-port': '999' } }, /merged-metrics-port="999" is not a port from 1024 to 65535.*Consul rejects the pod/],
    ['no DT port', { annotations: without(DT, DT_PORT) }, /no metrics.dynatrace.com\/port names the app's metrics port/],
    ['Dynatrace at :20200 by hand, no service-metrics-port', { annotations: { ...DT, [DT_PORT]: '20200' } }, /already Consul's scrape port 20200, and no consul.hashicorp.com\/service-metrics-port names the app's metrics port/],
    ['metrics.dynatrace.com/secure true', { annotations: { ...DT, 'metrics.dynatrace.com/secure': 'true' } }, /secure="true": the merged endpoint and consul-dataplane's scrape of the app are plain HTTP/],
    ['Dynatrace TLS annotation', { annotations: { ...DT, 'metrics.dynatrace.com/tls.ca.crt': 'configmap:shop:ca:ca.crt' } }, /tls.ca.crt is set: the app endpoint needs TLS or credentials, which consul-dataplane's plain scrape/],
    ['Dynatrace auth annotation', { annotations: { ...DT, 'metrics.dynatrace.com/http.auth': 'builtin:default' } }, /needs TLS or credentials/],
    ['prometheus.io/scheme https', { annotations: { ...DT, 'prometheus.io/scheme': 'https' } }, /consul-dataplane scrapes the app over plain HTTP only, and Consul leaves the scheme on the pod/],
    ['Consul Prometheus TLS (the scrape endpoint would serve TLS)', { annotations: { ...DT, 'consul.hashicorp.com/prometheus-cert-file': '/certs/tls.crt' } }, /prometheus-cert-file is set: with merging on, the scrape endpoint serves TLS/],
    ['a multi-port pod', { annotations: { ...DT, 'consul.hashicorp.com/connect-service': 'web,admin' } }, /names several services: Consul refuses metrics and transparent proxy on multi-port pods/],
    ['prometheus.io/port naming another target', { annotations: { ...DT, 'prometheus.io/port': '9100' } }, /prometheus.io\/port="9100": with metrics on, Consul rewrites prometheus.io\/\* .* the endpoint it scrapes now/],
    ['prometheus.io/path naming another path', { annotations: { ...DT, 'prometheus.io/path': '/prom' } }, /prometheus.io\/path="\/prom"/],
    ['prometheus.io/scrape "false" (Prometheus opt-out)', { annotations: { ...DT, 'prometheus.io/scrape': 'false' } }, /prometheus.io\/scrape="false".*would lose its opt-out/],
    ['Dynatrace does not inject (namespace without the label)', { annotations: DT, ns: {} }, /Dynatrace does not inject OneAgent: namespace is not labelled/],
    ['Dynatrace opt-out', { annotations: { ...DT, 'dynatrace.com/inject': 'false' } }, /dynatrace.com\/inject parses as false/],
    ['Istio injects a sidecar as well', { annotations: DT, ns: { ...DT_NS, 'istio-injection': 'enabled' } }, /Istio injects a sidecar: namespace label istio-injection=enabled as well, and istio-metric-merging owns/],
    ['Istio has injected the pod', { annotations: { ...DT, 'sidecar.istio.io/status': '{}' } }, /Istio has injected the pod too/],
    ['transparent proxy off on the pod', { annotations: { ...DT, 'consul.hashicorp.com/transparent-proxy': 'false' } }, /Consul injects without transparent proxy \(pod annotation consul.hashicorp.com\/transparent-proxy="false"\), so inbound traffic reaches the app port directly/],
    ['transparent proxy off by the namespace label', { annotations: DT, ns: { ...DT_NS, 'consul.hashicorp.com/transparent-proxy': 'false' } }, /without transparent proxy \(namespace label consul.hashicorp.com\/transparent-proxy="false"\), so inbound/],
    ['transparent proxy off, and Consul does not inject kube-public anyway', { annotations: { ...DT, 'consul.hashicorp.com/transparent-proxy': 'false' }, namespace: 'kube-public' }, /: Consul never injects pods in kube-public$/],
    ['transparent-proxy not a Go bool', { annotations: { ...DT, 'consul.hashicorp.com/transparent-proxy': 'on' } }, /is not a Go bool, so Consul's webhook rejects the pod/],
    ['connect-inject not a Go bool', { annotations: { ...DT, 'consul.hashicorp.com/connect-inject': 'yes' } }, /connect-inject="yes" is not a Go bool/],
    ['kube-system', { annotations: DT, namespace: 'kube-system' }, /Consul never injects pods in kube-system/],
  ];
  it.each(cases)('%s', (_name, input, reason) => expectStoodBack(evaluate(input), reason));
});

describe('consul-metric-merging: none of its business (no reason)', () => {
  const cases: Array<[string, PodCase]> = [
    ['plain pod', {}],
    ['Consul pod without a scrape request', { annotations: INJECT }],
    ['metrics.dynatrace.com/scrape "false"', { annotations: { ...DT, 'metrics.dynatrace.com/scrape': 'false' } }],
    ['metrics.dynatrace.com/scrape "yes" (not a Go bool)', { annotations: { ...DT, 'metrics.dynatrace.com/scrape': 'yes' } }],
    ['a Prometheus-only pod, even with prometheusScrapeIsRequest (an Istio-only option)', { annotations: { ...INJECT, 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9090' }, config: 'metricMerging: {prometheusScrapeIsRequest: true}' }],
    ['not a Consul pod (connect-inject absent, injectByDefault false)', { annotations: without(DT, 'consul.hashicorp.com/connect-inject') }],
    ['connect-inject "false"', { annotations: { ...DT, 'consul.hashicorp.com/connect-inject': 'false' } }],
    ['after Consul, prepared before it', { annotations: { ...DT, ...PREPARED, ...INJECTED, 'prometheus.io/port': '20200' } }],
    ['after Consul without transparent proxy: the app port is reachable', { annotations: { ...DT, 'consul.hashicorp.com/connect-inject-status': 'injected' } }],
  ];
  it.each(cases)('%s', (_name, input) => {
    expect(evaluate(input)).toEqual({ changes: [], reasons: [] });
  });
});

describe('consul-metric-merging: after Consul (connect-inject-status set), reasons only', () => {
  const cases: Array<[string, Record<string, string>]> = [
    ['Dynatrace still at the app port', { ...DT, ...INJECTED }],
    ['the user turned metrics on, but Dynatrace is not at the scrape port', { ...DT, ...INJECTED, [METRICS]: 'true', [MERGING]: 'true', [SM_PORT]: '8080' }],
    ['Dynatrace at the scrape port, but merging was never on', { ...DT, ...INJECTED, [DT_PORT]: '20200' }],
    ['CNI mode (redirect-traffic-config, no status)', { ...DT, 'consul.hashicorp.com/connect-inject-status': 'injected', 'consul.hashicorp.com/redirect-traffic-config': '{}' }],
  ];
  it.each(cases)('%s', (_name, annotations) => {
    const r = evaluate({ annotations });
    expect(r.changes).toEqual([]);
    expect(r.reasons[0]).toMatch(/Consul already injected the pod .*which fixed its metrics settings then: nothing changed \(unless this is a re-invocation/);
  });
});

describe('consul-metric-merging through the engine', () => {
  const namespaces = { shop: DT_NS };
  const pod = (annotations: Record<string, string> | null | undefined): V1Pod => {
    const p = podOf({ annotations: annotations ?? undefined });
    if (annotations === null) p.metadata!.annotations = null as unknown as undefined;
    return p;
  };
  const annotationsOf = (p: unknown) => ((p as V1Pod).metadata?.annotations ?? {}) as Record<string, string>;

  it('done-when: the merging annotations, Dynatrace at :20200/metrics, plus the ActiveGate exclusions as before; converges', async () => {
    const { ops, patched, result } = await admitAndConverge(pod(DT), { namespaces, activeGateIPs: ['10.96.0.10'] });
    expect(ops.map((o) => o.path)).toEqual([
      '/metadata/annotations/consul.hashicorp.com~1transparent-proxy-exclude-outbound-ports',
      '/metadata/annotations/consul.hashicorp.com~1transparent-proxy-exclude-outbound-cidrs',
      '/metadata/annotations/consul.hashicorp.com~1enable-metrics',
      '/metadata/annotations/consul.hashicorp.com~1enable-metrics-merging',
      '/metadata/annotations/consul.hashicorp.com~1service-metrics-port',
      '/metadata/annotations/consul.hashicorp.com~1service-metrics-path',
      '/metadata/annotations/metrics.dynatrace.com~1port',
      '/metadata/annotations/metrics.dynatrace.com~1path',
      '/metadata/annotations/metrics.dynatrace.com~1filter',
    ]);
    expect(ops.find((o) => o.path.endsWith('metrics.dynatrace.com~1port'))?.op).toBe('replace');
    expect(annotationsOf(patched)).toEqual({
      ...DT,
      ...PREPARED,
      'consul.hashicorp.com/transparent-proxy-exclude-outbound-ports': '9999',
      'consul.hashicorp.com/transparent-proxy-exclude-outbound-cidrs': '10.96.0.10/32',
    });
    expect(result.review.response.auditAnnotations).toEqual({ 'mutated-by': `consul-activegate-exclusions,${RULE}` });
  });

  it('the same result whichever of the two Consul rules runs first', async () => {
    const opts = { namespaces, activeGateIPs: ['10.96.0.10'] };
    const a = await admitPod(pod(DT), { ...opts, rules: [consulActiveGateExclusions, consulMetricMerging] });
    const b = await admitPod(pod(DT), { ...opts, rules: [consulMetricMerging, consulActiveGateExclusions] });
    expect(annotationsOf(b.patched)).toEqual(annotationsOf(a.patched));
  });

  it('replaces empty values in an existing map, and converges', async () => {
    const { ops } = await admitAndConverge(pod({ ...DT, [METRICS]: '', [SM_PORT]: '' }), { namespaces });
    expect(ops.filter((o) => o.op === 'replace').map((o) => o.path)).toEqual([
      '/metadata/annotations/consul.hashicorp.com~1enable-metrics',
      '/metadata/annotations/consul.hashicorp.com~1service-metrics-port',
      '/metadata/annotations/metrics.dynatrace.com~1port',
    ]);
  });

  it('absent and null annotation maps: nothing asked, nothing done, no crash', async () => {
    for (const annotations of [undefined, null]) {
      const { ops, result } = await admitPod(pod(annotations), { namespaces, configYaml: 'consul: {injectByDefault: true}' });
      expect(ops.filter((o) => o.path.includes('metrics'))).toEqual([]);
      expect(result.outcomes.find((o) => o.rule === RULE)).toBeUndefined();
    }
  });

  it('converges for a custom path, the hand-applied recipe and a pod-level scrape port', async () => {
    await admitAndConverge(pod({ ...DT, [DT_PATH]: '/custom' }), { namespaces });
    await admitAndConverge(pod({ ...DT, ...without(PREPARED, 'metrics.dynatrace.com/filter') }), { namespaces });
    await admitAndConverge(pod({ ...DT, [SCRAPE_PORT]: '20300' }), { namespaces });
  });

  it('dry-run: no ops, the would-be changes are in the log', async () => {
    const { ops, result } = await admitPod(pod(DT), { namespaces, configYaml: `rules: {${RULE}: dry-run, consul-activegate-exclusions: 'off'}` });
    expect(ops).toEqual([]);
    expect(result.review.response.auditAnnotations).toEqual({ 'dry-run-would-mutate': RULE });
    const logged = JSON.stringify(result.log);
    expect(logged).toContain('consul.hashicorp.com/enable-metrics: (unset) → \\"true\\"');
    expect(logged).toContain('metrics.dynatrace.com/port: \\"8080\\" → \\"20200\\"');
  });

  it('rule off: nothing at all', async () => {
    const { ops, result } = await admitPod(pod(DT), { namespaces, configYaml: `rules: {${RULE}: 'off', consul-activegate-exclusions: 'off'}` });
    expect(ops).toEqual([]);
    expect(result.outcomes.find((o) => o.rule === RULE)).toBeUndefined();
  });
});

describe('consul.prometheusScrapePort / prometheusScrapePath are validated at startup', () => {
  it.each([
    ['consul: {prometheusScrapePort: 1023}', /consul.prometheusScrapePort: expected an integer from 1024 to 65535, got number 1023/],
    ['consul: {prometheusScrapePort: 65536}', /consul.prometheusScrapePort/],
    ['consul: {prometheusScrapePort: "20200"}', /consul.prometheusScrapePort: expected an integer/],
    ['consul: {prometheusScrapePort: 20200.5}', /consul.prometheusScrapePort/],
    ['consul: {prometheusScrapePath: metrics}', /consul.prometheusScrapePath: "metrics" is not a plain URL path/],
    ['consul: {prometheusScrapePath: ""}', /consul.prometheusScrapePath: "" is not a plain URL path/],
    ['consul: {prometheusScrapePath: "/metrics?x=1"}', /consul.prometheusScrapePath/],
    ['consul: {prometheusScrapePath: "/a b"}', /consul.prometheusScrapePath/],
    ['consul: {prometheusScrapePath: "/a\\"b"}', /consul.prometheusScrapePath/],
    ['consul: {prometheusScrapePath: "/%zz"}', /consul.prometheusScrapePath/],
    ['consul: {prometheusScrapePath: 7}', /consul.prometheusScrapePath: expected a string/],
  ])('%s is a startup error naming the key', (yaml, message) => {
    expect(() => parseConfig(yaml, {})).toThrow(message);
  });

  it('defaults 20200 and /metrics; accepts 1024..65535 and plain paths', () => {
    expect(parseConfig('', {}).consul).toMatchObject({ prometheusScrapePort: 20200, prometheusScrapePath: '/metrics' });
    const c = parseConfig('consul: {prometheusScrapePort: 1024, prometheusScrapePath: "/stats/prom%2Fx;v=1"}', {});
    expect(c.consul.prometheusScrapePort).toBe(1024);
    expect(c.consul.prometheusScrapePath).toBe('/stats/prom%2Fx;v=1');
    expect(parseConfig('consul: {prometheusScrapePort: 65535}', {}).consul.prometheusScrapePort).toBe(65535);
  });
});
