import { describe, expect, it } from 'vitest';
import type { V1Container } from '@kubernetes/client-node';
import { admitAndConverge, admitPod } from '../../test/support/admit.js';
import { evaluateCase, expectStoodBack, podOf, type PodCase } from '../../test/support/istio.js';
import { istioMetricMerging } from './istio-metric-merging.js';
import type { RuleResult } from './types.js';

const ENABLED = { 'istio-injection': 'enabled' };
const FILTER = '{"mode":"exclude","names":["istio_*","envoy_*"]}';
const DT = { 'metrics.dynatrace.com/scrape': 'true', 'metrics.dynatrace.com/port': '8080' };
const STATUS = { 'sidecar.istio.io/status': '{"initContainers":["istio-init"],"containers":["istio-proxy"],"revision":"default"}' };
const ISTIO_REWRITE = { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '15020', 'prometheus.io/path': '/stats/prometheus' };
/** What the rule writes for DT above. */
const PREPARED = {
  'prometheus.io/scrape': 'true',
  'prometheus.io/port': '8080',
  'prometheus.io/path': '/metrics',
  'metrics.dynatrace.com/port': '15020',
  'metrics.dynatrace.com/path': '/stats/prometheus',
  'metrics.dynatrace.com/filter': FILTER,
};
const DT_MERGED = { 'metrics.dynatrace.com/port': '15020', 'metrics.dynatrace.com/path': '/stats/prometheus', 'metrics.dynatrace.com/filter': FILTER };

type Case = PodCase;
const evaluate = (c: Case): RuleResult => evaluateCase(istioMetricMerging, c, ENABLED);

const without = (o: Record<string, string>, ...keys: string[]) => Object.fromEntries(Object.entries(o).filter(([k]) => !keys.includes(k)));
const changed = (r: RuleResult) => Object.fromEntries(r.changes.map((ch) => [ch.kind === 'env' ? ch.name : ch.key, ch.value]));

const proxy = (env: V1Container['env']): V1Container => ({ name: 'istio-proxy', image: 'proxyv2:1.30', env });
const promEnv = (value: string) => ({ name: 'ISTIO_PROMETHEUS_ANNOTATIONS', value });

describe('istio-metric-merging: acts before Istio', () => {
  const cases: Array<[string, Case, Record<string, string>, RegExp]> = [
    ['DT port 8080 in istio-injection=enabled', { annotations: DT }, PREPARED, /Istio injects a sidecar: namespace label istio-injection=enabled.*app endpoint :8080\/metrics \(from metrics.dynatrace.com\/port\)/],
    ['DT custom path goes to prometheus.io/path', { annotations: { ...DT, 'metrics.dynatrace.com/path': '/custom' } }, { ...PREPARED, 'prometheus.io/path': '/custom' }, /:8080\/custom/],
    ['namespace istio.io/rev without istio-injection', { annotations: DT, ns: { 'istio.io/rev': 'canary' } }, PREPARED, /namespace label istio.io\/rev="canary"/],
    ['pod label inject=true in a namespace without Istio labels', { annotations: DT, labels: { 'sidecar.istio.io/inject': 'true' }, ns: {} }, PREPARED, /pod label sidecar.istio.io\/inject="true"/],
    ['pod label istio.io/rev in a namespace without Istio labels', { annotations: DT, labels: { 'istio.io/rev': 'canary' }, ns: {} }, PREPARED, /pod label istio.io\/rev="canary"/],
    ['istio.injectByDefault in a namespace without Istio labels', { annotations: DT, ns: {}, config: 'istio: {injectByDefault: true}' }, PREPARED, /istio.injectByDefault/],
    ['istio-injection=enabled wins over istio.io/rev', { annotations: DT, ns: { 'istio-injection': 'enabled', 'istio.io/rev': 'canary' } }, PREPARED, /istio-injection=enabled/],
    ['ambient pod label is ignored by the injector: sidecar route applies', { annotations: DT, labels: { 'istio.io/dataplane-mode': 'ambient' } }, PREPARED, /istio-injection=enabled/],
    ['label "yes" in an enabled namespace: 1.27+ falls back to inject', { annotations: DT, labels: { 'sidecar.istio.io/inject': 'yes' } }, PREPARED, /neither "true" nor "false", which Istio ≥1.27 ignores/],
    ['DT scrape "True" parses as true', { annotations: { ...DT, 'metrics.dynatrace.com/scrape': 'True' } }, PREPARED, /metrics.dynatrace.com\/scrape="True"/],
    ['Dynatrace guide recipe already applied: only the filter is added', { annotations: { ...without(DT_MERGED, 'metrics.dynatrace.com/filter'), 'metrics.dynatrace.com/scrape': 'true', 'prometheus.io/scrape': 'true', 'prometheus.io/port': '8080', 'prometheus.io/path': '/metrics' } }, { 'metrics.dynatrace.com/filter': FILTER }, /from prometheus.io\/port/],
    ['an existing filter is never changed', { annotations: { ...DT, 'metrics.dynatrace.com/filter': '{"mode":"include","names":["app_*"]}' } }, without(PREPARED, 'metrics.dynatrace.com/filter'), /app endpoint :8080/],
    ['metricMerging.excludeMeshMetrics off: no filter', { annotations: DT, config: 'metricMerging: {excludeMeshMetrics: false}' }, without(PREPARED, 'metrics.dynatrace.com/filter'), /app endpoint :8080/],
    ['app endpoint from prometheus.io/port when DT has no port', { annotations: { 'metrics.dynatrace.com/scrape': 'true', 'prometheus.io/port': '9090' } }, { 'prometheus.io/scrape': 'true', 'prometheus.io/path': '/metrics', ...DT_MERGED }, /:9090\/metrics \(from prometheus.io\/port\)/],
    ['a same-valued key variant is used as is', { annotations: { ...DT, 'prometheus.io.port': '8080' } }, without(PREPARED, 'prometheus.io/port'), /app endpoint :8080/],
    ['prometheus.io/port "15020" set before Istio is replaced by the app port', { annotations: { ...DT, ...ISTIO_REWRITE } }, { 'prometheus.io/port': '8080', 'prometheus.io/path': '/metrics', ...DT_MERGED }, /was 15020, which before Istio would make it skip the merge/],
    ['no app port: Dynatrace gets the merged endpoint, no filter', { annotations: { 'metrics.dynatrace.com/scrape': 'true' } }, { 'metrics.dynatrace.com/port': '15020', 'metrics.dynatrace.com/path': '/stats/prometheus' }, /serves only Istio's own metrics \(no exclude filter added\)/],
    ['no app port with only prometheus.io/scrape: the :80 default is called out', { annotations: { 'metrics.dynatrace.com/scrape': 'true', 'prometheus.io/scrape': 'true' } }, { 'metrics.dynatrace.com/port': '15020', 'metrics.dynatrace.com/path': '/stats/prometheus' }, /pilot-agent scrapes the app at :80\/metrics/],
    ['merge-metrics "true" on the pod overrides istio.prometheusMerge false', { annotations: { ...DT, 'prometheus.istio.io/merge-metrics': 'true' }, config: 'istio: {prometheusMerge: false}' }, PREPARED, /app endpoint :8080/],
    ['prometheusScrapeIsRequest: a Prometheus-only pod gets Dynatrace annotations', { annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9090', 'prometheus.io/path': '/m' }, config: 'metricMerging: {prometheusScrapeIsRequest: true}' }, { 'metrics.dynatrace.com/scrape': 'true', ...DT_MERGED }, /prometheus.io\/scrape=true with metricMerging.prometheusScrapeIsRequest.*:9090\/m/],
    ['custom istio.statusPort', { annotations: DT, config: 'istio: {statusPort: 15999}' }, { ...PREPARED, 'metrics.dynatrace.com/port': '15999' }, /merged endpoint :15999\/stats\/prometheus/],
  ];
  it.each(cases)('%s', (_name, input, expected, reason) => {
    const r = evaluate(input);
    expect(changed(r)).toEqual(expected);
    expect(r.reasons.join('\n')).toMatch(reason);
    expect(r.changes.map((c) => c.kind === 'annotation' && c.key === 'prometheus.io/port' && c.value === '15020')).not.toContain(true);
  });
});

describe('istio-metric-merging: skips with a reason', () => {
  const reserved = [15000, 15001, 15004, 15006, 15008, 15021, 15053, 15090].map(
    (p): [string, Case, RegExp] => [`reserved DT port ${p}`, { annotations: { ...DT, 'metrics.dynatrace.com/port': String(p) } }, new RegExp(`${p} is an Istio-reserved port.*reject the pod`)],
  );
  const badPorts = ['http', '0', '65536', '08080', '-1', ' 8080', '8080.0', ''].map(
    (p): [string, Case, RegExp] => [`non-numeric DT port ${JSON.stringify(p)}`, { annotations: { ...DT, 'metrics.dynatrace.com/port': p } }, /not a port number from 1 to 65535/],
  );
  const ignored = ['kube-system', 'kube-public', 'kube-node-lease', 'local-path-storage'].map(
    (ns): [string, Case, RegExp] => [`ignored namespace ${ns}`, { annotations: DT, namespace: ns }, new RegExp(`namespace ${ns} is on Istio's ignored list`)],
  );
  const cases: Array<[string, Case, RegExp]> = [
    ['hostNetwork', { annotations: DT, hostNetwork: true }, /hostNetwork pod: Istio never injects/],
    ...ignored,
    ['pod label inject=false', { annotations: DT, labels: { 'sidecar.istio.io/inject': 'false' } }, /pod label sidecar.istio.io\/inject="false"/],
    ['deprecated annotation inject=false', { annotations: { ...DT, 'sidecar.istio.io/inject': 'false' } }, /pod annotation sidecar.istio.io\/inject="false"/],
    ['label true wins over annotation false', { annotations: { ...DT, 'sidecar.istio.io/inject': 'false' }, labels: { 'sidecar.istio.io/inject': 'true' }, ns: { 'istio-injection': 'disabled' } }, /istio-injection="disabled" matches no Istio webhook/],
    ['namespace istio-injection=disabled with istio.io/rev', { annotations: DT, ns: { 'istio-injection': 'disabled', 'istio.io/rev': 'canary' } }, /takes precedence over istio.io\/rev/],
    ['namespace without Istio labels', { annotations: DT, ns: {} }, /no Istio webhook matches/],
    ['annotation inject=true only: the selectors read the label', { annotations: { ...DT, 'sidecar.istio.io/inject': 'true' }, ns: {} }, /read the label only/],
    ['label "yes" in a namespace without Istio labels', { annotations: DT, labels: { 'sidecar.istio.io/inject': 'yes' }, ns: {} }, /no Istio webhook matches/],
    ['injectByDefault, but the pod has an inject label other than true', { annotations: DT, labels: { 'sidecar.istio.io/inject': 'maybe' }, ns: {}, config: 'istio: {injectByDefault: true}' }, /no Istio webhook matches/],
    ['ambient namespace', { annotations: DT, ns: { 'istio.io/dataplane-mode': 'ambient' } }, /namespace is ambient.*no merged metrics endpoint/],
    ['ambient pod in a namespace without Istio labels', { annotations: DT, labels: { 'istio.io/dataplane-mode': 'ambient' }, ns: {} }, /pod is ambient/],
    ['unknown namespace', { annotations: DT, ns: 'unknown' }, /namespace labels unknown \(cluster view is off\)/],
    ['absent namespace', { annotations: DT, ns: 'absent' }, /namespace "shop" does not exist/],
    ['merge-metrics "false"', { annotations: { ...DT, 'prometheus.istio.io/merge-metrics': 'false' } }, /merge-metrics="false": Istio does not merge/],
    ['merge-metrics not a bool', { annotations: { ...DT, 'prometheus.istio.io/merge-metrics': 'maybe' } }, /is not a bool, so Istio's injection rejects the pod/],
    ['istio.prometheusMerge false', { annotations: DT, config: 'istio: {prometheusMerge: false}' }, /istio.prometheusMerge is false/],
    ['prometheus.io/scrape "false"', { annotations: { ...DT, 'prometheus.io/scrape': 'false' } }, /prometheus.io\/scrape="false": Istio does not merge/],
    ['dotted variant prometheus.io.scrape "0"', { annotations: { ...DT, 'prometheus.io.scrape': '0' } }, /prometheus.io.scrape="0"/],
    ['prometheus.istio.io/scrape-targets', { annotations: { ...DT, 'prometheus.istio.io/scrape-targets': '8080:/metrics' } }, /lists its own merge targets/],
    ['metrics.dynatrace.com/secure true', { annotations: { ...DT, 'metrics.dynatrace.com/secure': 'true' } }, /secure="true": the merged endpoint .* plain HTTP/],
    ['prometheus.io/scheme https', { annotations: { ...DT, 'prometheus.io/scheme': 'https' } }, /prometheus.io\/scheme="https": pilot-agent scrapes the app over plain HTTP only/],
    ['prometheus-io/scheme HTTPS variant', { annotations: { ...DT, 'prometheus-io/scheme': 'HTTPS' } }, /prometheus-io\/scheme="HTTPS"/],
    ['Dynatrace auth annotation', { annotations: { ...DT, 'metrics.dynatrace.com/http.auth': 'builtin:default' } }, /needs TLS or credentials/],
    ['per-pod status port', { annotations: { ...DT, 'status.sidecar.istio.io/port': '15999' } }, /moves the agent off istio.statusPort 15020/],
    ['statusPort in proxy.istio.io/config', { annotations: { ...DT, 'proxy.istio.io/config': 'statusPort: 15999' } }, /proxy.istio.io\/config sets statusPort/],
    ...reserved,
    ...badPorts,
    ['reserved prometheus.io/port without DT port', { annotations: { 'metrics.dynatrace.com/scrape': 'true', 'prometheus.io/port': '15090' } }, /prometheus.io\/port: 15090 is an Istio-reserved port; Istio ≥1.31 rejects the pod/],
    ['non-numeric prometheus.io/port without DT port', { annotations: { 'metrics.dynatrace.com/scrape': 'true', 'prometheus.io/port': 'metrics' } }, /prometheus.io\/port: "metrics" is not a port number/],
    ['prometheus.io/port conflicts with the DT port', { annotations: { ...DT, 'prometheus.io/port': '9090' } }, /prometheus.io\/port="9090" differs from the Dynatrace app port 8080/],
    ['prometheus.io/path conflicts with the DT path default', { annotations: { ...DT, 'prometheus.io/path': '/prom' } }, /prometheus.io\/path="\/prom" differs from the Dynatrace app path \/metrics/],
    ['prometheus.io/port variants disagree', { annotations: { 'metrics.dynatrace.com/scrape': 'true', 'prometheus.io/port': '8080', 'prometheus.io.port': '9090' } }, /variants disagree/],
    ['app port and 15020 variants mixed', { annotations: { ...DT, 'prometheus.io/port': '8080', 'prometheus-io/port': '15020' } }, /variants disagree/],
  ];
  it.each(cases)('%s', (_name, input, reason) => expectStoodBack(evaluate(input), reason));
});

describe('istio-metric-merging: none of its business (no reason)', () => {
  const cases: Array<[string, Case]> = [
    ['plain pod', {}],
    ['metrics.dynatrace.com/scrape "false"', { annotations: { ...DT, 'metrics.dynatrace.com/scrape': 'false' } }],
    ['metrics.dynatrace.com/scrape "yes" (not a Go bool)', { annotations: { ...DT, 'metrics.dynatrace.com/scrape': 'yes' } }],
    ['Prometheus-only pod without prometheusScrapeIsRequest', { annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9090' } }],
    ['prometheusScrapeIsRequest but DT scrape "false"', { annotations: { 'prometheus.io/scrape': 'true', 'metrics.dynatrace.com/scrape': 'false' }, config: 'metricMerging: {prometheusScrapeIsRequest: true}' }],
    ['after Istio, Dynatrace already on the merged endpoint', { annotations: { ...DT, ...PREPARED, ...ISTIO_REWRITE, ...STATUS } }],
    ['after Istio, prometheusScrapeIsRequest, Istio added prometheus.io/* itself (no env)', { annotations: { ...ISTIO_REWRITE, ...STATUS }, containers: [{ name: 'app', image: 'a' }, proxy([])], config: 'metricMerging: {prometheusScrapeIsRequest: true}' }],
    ['after Istio, hostNetwork etc. do not matter: nothing asked', { annotations: STATUS, hostNetwork: true }],
  ];
  it.each(cases)('%s', (_name, input) => {
    expect(evaluate(input)).toEqual({ changes: [], reasons: [] });
  });
});

describe('istio-metric-merging: after Istio (sidecar.istio.io/status present)', () => {
  const after = (env: V1Container['env'], extra: Record<string, string> = {}, where: 'containers' | 'initContainers' = 'containers'): Case => ({
    annotations: { ...DT, ...ISTIO_REWRITE, ...STATUS, ...extra },
    containers: [{ name: 'app', image: 'shop:1' }, ...(where === 'containers' ? [proxy(env)] : [])],
    initContainers: where === 'initContainers' ? [{ name: 'istio-init', image: 'proxyv2' }, proxy(env)] : undefined,
  });
  const repointed = { 'metrics.dynatrace.com/port': '15020', 'metrics.dynatrace.com/path': '/stats/prometheus', 'metrics.dynatrace.com/filter': FILTER };
  const env8080 = promEnv('{"scrape":"true","path":"/metrics","port":"8080"}');

  const repoint: Array<[string, Case]> = [
    ['env holds the DT endpoint', after([env8080])],
    ['env with an empty path (pilot-agent defaults /metrics)', after([promEnv('{"scrape":"true","path":"","port":"8080"}')])],
    ['native sidecar: istio-proxy in initContainers', after([env8080], {}, 'initContainers')],
    ['duplicate env: the last one wins', after([promEnv('{"scrape":"true","path":"/metrics","port":"9090"}'), env8080])],
    ['1.31 targets include the DT endpoint', after([promEnv('{"scrape":"true","path":"/metrics","port":"9100","targets":[{"port":"9100","path":"/metrics"},{"port":"8080","path":"/metrics"}]}')])],
  ];
  it.each(repoint)('repoints only metrics.dynatrace.com/*: %s', (_name, input) => {
    const r = evaluate(input);
    expect(changed(r)).toEqual(repointed);
    expect(r.changes.every((c) => c.kind === 'annotation' && c.key.startsWith('metrics.dynatrace.com/'))).toBe(true);
    expect(r.reasons[0]).toMatch(/Istio has already injected .*already holds the app endpoint :8080\/metrics, so only Dynatrace is repointed/);
  });

  it('prometheusScrapeIsRequest: reads the original request from the env and adds Dynatrace annotations', () => {
    const input = after([promEnv('{"scrape":"true","path":"/m","port":"9090"}')]);
    input.annotations = { ...ISTIO_REWRITE, ...STATUS };
    input.config = 'metricMerging: {prometheusScrapeIsRequest: true}';
    const r = evaluate(input);
    expect(changed(r)).toEqual({ 'metrics.dynatrace.com/scrape': 'true', ...repointed });
    expect(r.reasons[0]).toMatch(/kept by Istio in ISTIO_PROMETHEUS_ANNOTATIONS.*:9090\/m/);
  });

  const leave: Array<[string, Case, RegExp]> = [
    ['no env: Istio merged nothing', after([{ name: 'OTHER', value: 'x' }]), /has no ISTIO_PROMETHEUS_ANNOTATIONS, so Istio merged no app endpoint/],
    ['no istio-proxy container', { annotations: { ...DT, ...ISTIO_REWRITE, ...STATUS } }, /no istio-proxy container/],
    ['malformed env', after([promEnv('{"scrape":"true",')]), /is not the JSON pilot-agent reads/],
    ['env of the wrong shape', after([promEnv('{"scrape":true,"port":8080}')]), /is not the JSON pilot-agent reads/],
    ['env is a JSON array', after([promEnv('[]')]), /is not the JSON pilot-agent reads/],
    ['last duplicate holds another port', after([env8080, promEnv('{"scrape":"true","path":"/metrics","port":"9090"}')]), /holds :9090\/metrics, not that endpoint/],
    ['last env entry is valueFrom', after([env8080, { name: 'ISTIO_PROMETHEUS_ANNOTATIONS', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }]), /has no literal value/],
    ['env says scrape false', after([promEnv('{"scrape":"false","path":"/metrics","port":"8080"}')]), /says scrape "false"/],
    ['env has no port (pilot-agent would use :80)', after([promEnv('{"scrape":"true","path":"","port":""}')]), /holds no app port, not that endpoint/],
    ['https scheme', after([env8080], { 'prometheus.io/scheme': 'https' }), /plain HTTP only/],
    ['DT secure', after([env8080], { 'metrics.dynatrace.com/secure': 'true' }), /plain HTTP/],
  ];
  it.each(leave)('leaves everything alone: %s', (_name, input, reason) => {
    const r = evaluate(input);
    expect(r.changes).toEqual([]);
    expect(r.reasons[0]).toMatch(/prometheus.io\/\* is not touched/);
    expect(r.reasons[0]).toMatch(reason);
  });

  it('never touches prometheus.io/* even when they carry the app endpoint (Istio did not merge)', () => {
    const r = evaluate({
      annotations: { ...DT, 'prometheus.io/scrape': 'true', 'prometheus.io/port': '8080', ...STATUS },
      containers: [{ name: 'app', image: 'a' }, proxy([])],
    });
    expect(r.changes).toEqual([]);
  });
});

describe('istio-metric-merging through the engine', () => {
  const base = (annotations: Record<string, string>) => podOf({ annotations });
  it('patches, and converges on its own output', async () => {
    const { ops, result } = await admitAndConverge(base(DT), { namespaces: { shop: ENABLED } });
    expect(ops.map((o) => o.path)).toEqual([
      '/metadata/annotations/prometheus.io~1scrape',
      '/metadata/annotations/prometheus.io~1port',
      '/metadata/annotations/prometheus.io~1path',
      '/metadata/annotations/metrics.dynatrace.com~1port',
      '/metadata/annotations/metrics.dynatrace.com~1path',
      '/metadata/annotations/metrics.dynatrace.com~1filter',
    ]);
    expect(result.review.response.auditAnnotations).toEqual({ 'mutated-by': 'istio-metric-merging' });
  });

  it('converges for the pre-merged 15020 mistake and the no-app-port case', async () => {
    await admitAndConverge(base({ ...DT, ...ISTIO_REWRITE }), { namespaces: { shop: ENABLED } });
    await admitAndConverge(base({ 'metrics.dynatrace.com/scrape': 'true' }), { namespaces: { shop: ENABLED } });
    await admitAndConverge(base({ 'metrics.dynatrace.com/scrape': 'true', 'prometheus.io.port': '8080' }), { namespaces: { shop: ENABLED } });
  });

  it('dry-run: no ops, the would-be changes are in the log', async () => {
    const { ops, result } = await admitPod(base(DT), { namespaces: { shop: ENABLED }, configYaml: 'rules: {istio-metric-merging: dry-run}' });
    expect(ops).toEqual([]);
    expect(result.review.response.auditAnnotations).toEqual({ 'dry-run-would-mutate': 'istio-metric-merging' });
    const logged = JSON.stringify(result.log);
    expect(logged).toContain('prometheus.io/port: (unset) → \\"8080\\"');
    expect(logged).toContain('metrics.dynatrace.com/port: \\"8080\\" → \\"15020\\"');
  });

  it('an ordinary pod keeps a short log line', async () => {
    const { result } = await admitPod(base({}), { namespaces: { shop: ENABLED } });
    expect(result.outcomes.find((o) => o.rule === 'istio-metric-merging')).toBeUndefined();
  });
});
