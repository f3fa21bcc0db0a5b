import { describe, expect, it } from 'vitest';
import { admitAndConverge, admitPod } from '../../test/support/admit.js';
import { evaluateCase, podOf, type PodCase } from '../../test/support/istio.js';
import { istioNativeSidecarGuard, WARN_CLASSIC_JOB, WARN_KEPT_NATIVE, WARN_TOO_LATE } from './istio-native-sidecar-guard.js';
import type { RuleResult } from './types.js';

const DYNAKUBE = 'dynakube.internal.dynatrace.com/instance';
const BOTH = { 'istio-injection': 'enabled', [DYNAKUBE]: 'dynakube' };
const NATIVE = 'sidecar.istio.io/nativeSidecar';
const STATUS = 'sidecar.istio.io/status';
const PROXY_CONFIG = 'proxy.istio.io/config';
const HOLD = 'holdApplicationUntilProxyStarts: true';
const NATIVE_PROXY = { initContainers: [{ name: 'istio-init', image: 'p' }, { name: 'istio-proxy', image: 'p', restartPolicy: 'Always' }] };
const NATIVE_STATUS = { [STATUS]: '{"initContainers":["istio-init","istio-proxy"],"containers":null}' };

type Case = PodCase;
const evaluate = (c: Case): RuleResult => evaluateCase(istioNativeSidecarGuard, c, BOTH);

const adds = (r: RuleResult) => r.changes.map((ch) => (ch.kind === 'annotation' ? `${ch.key}=${ch.value}` : ch.kind));

describe('istio-native-sidecar-guard: sets nativeSidecar "false" and holdApplicationUntilProxyStarts', () => {
  const cases: Array<[string, Case, RegExp]> = [
    ['istio-injection=enabled, Dynatrace-labelled namespace', {}, /Istio injects a sidecar: namespace label istio-injection=enabled, and namespace is labelled dynakube.internal.dynatrace.com\/instance .* does not support Istio native sidecars/],
    ['istio.io/rev namespace', { ns: { 'istio.io/rev': '1-31', [DYNAKUBE]: 'dk' } }, /istio.io\/rev="1-31"/],
    ['pod label inject=true', { labels: { 'sidecar.istio.io/inject': 'true' }, ns: { [DYNAKUBE]: 'dk' } }, /pod label sidecar.istio.io\/inject="true"/],
    ['pod label istio.io/rev', { labels: { 'istio.io/rev': 'canary' }, ns: { [DYNAKUBE]: 'dk' } }, /pod label istio.io\/rev="canary"/],
    ['istio.injectByDefault', { ns: { [DYNAKUBE]: 'dk' }, config: 'istio: {injectByDefault: true}' }, /istio.injectByDefault/],
    ['dynatrace.com/inject "yes" is not a Go bool, so Dynatrace injects', { annotations: { 'dynatrace.com/inject': 'yes' } }, /does not support/],
    ['an empty value means Istio\'s default', { annotations: { [NATIVE]: '' } }, /an empty sidecar.istio.io\/nativeSidecar means Istio's default/],
    ['"False" means native on 1.27+', { annotations: { [NATIVE]: 'False' } }, /="False" means native on Istio ≥1.27, which only honours exactly "false"/],
    ['"0" means native on 1.27+', { annotations: { [NATIVE]: '0' } }, /="0" means native/],
    ['a Deployment pod (restartPolicy Always)', { restartPolicy: 'Always' }, /does not support Istio native sidecars$/],
  ];
  it.each(cases)('%s', (_name, input, reason) => {
    const r = evaluate(input);
    expect(adds(r)).toEqual([`${NATIVE}=false`, `${PROXY_CONFIG}=${HOLD}`]);
    expect(r.reasons).toHaveLength(2);
    expect(r.reasons[0]).toMatch(reason);
    expect(r.reasons[1]).toMatch(/^a classic sidecar starts beside the app: holdApplicationUntilProxyStarts in proxy.istio.io\/config starts istio-proxy before the app/);
    expect(r.warnings).toBeUndefined();
  });
});

describe('istio-native-sidecar-guard: holdApplicationUntilProxyStarts merged into proxy.istio.io/config', () => {
  const cases: Array<[string, string, string]> = [
    ['JSON stays JSON, every field kept', '{"concurrency": 2, "proxyMetadata": {"A": "b"}}', '{ "concurrency": 2, "proxyMetadata": { "A": "b" }, "holdApplicationUntilProxyStarts": true }'],
    ['YAML block, comments kept', 'concurrency: 2\n# why\nproxyMetadata:\n  A: b\n', `concurrency: 2\n# why\nproxyMetadata:\n  A: b\n${HOLD}\n`],
    ['YAML with statusPort (the metric-merging rule still sees it)', 'statusPort: 15021', `statusPort: 15021\n${HOLD}`],
    ['empty value', '', HOLD],
    ['empty JSON map', '{}', '{ "holdApplicationUntilProxyStarts": true }'],
  ];
  it.each(cases)('%s', (_name, current, merged) => {
    const r = evaluate({ annotations: { [PROXY_CONFIG]: current } });
    expect(adds(r)).toEqual([`${NATIVE}=false`, `${PROXY_CONFIG}=${merged}`]);
  });

  const kept: Array<[string, string, RegExp]> = [
    ['the owner\'s false', 'holdApplicationUntilProxyStarts: false', /proxy.istio.io\/config sets holdApplicationUntilProxyStarts: false, left as it is/],
    ['the owner\'s true, as JSON', '{"holdApplicationUntilProxyStarts": true}', /sets holdApplicationUntilProxyStarts: true, left as it is/],
    ['the proto field name, which jsonpb also reads', 'hold_application_until_proxy_starts: false', /sets hold_application_until_proxy_starts: false, left as it is/],
    ['YAML that does not parse', 'concurrency: [', /proxy.istio.io\/config does not parse as YAML \(.*\), so it is left alone and the app may start before istio-proxy/],
    ['duplicate keys', 'concurrency: 1\nconcurrency: 2', /does not parse as YAML \(DUPLICATE_KEY\)/],
    ['a list', '[1, 2]', /proxy.istio.io\/config is not a map, so it is left alone/],
    ['two documents', 'a: 1\n---\nb: 2', /does not parse as YAML \(MULTIPLE_DOCS\)/],
  ];
  it.each(kept)('keeps %s', (_name, current, reason) => {
    const r = evaluate({ annotations: { [PROXY_CONFIG]: current } });
    expect(adds(r)).toEqual([`${NATIVE}=false`]);
    expect(r.reasons[1]).toMatch(reason);
  });

  it('adds the start order to a classic sidecar the owner asked for', () => {
    const r = evaluate({ annotations: { [NATIVE]: 'false' } });
    expect(adds(r)).toEqual([`${PROXY_CONFIG}=${HOLD}`]);
    expect(r.reasons).toEqual([expect.stringMatching(/^sidecar.istio.io\/nativeSidecar="false" gives a classic sidecar: holdApplicationUntilProxyStarts/)]);
  });
});

describe('istio-native-sidecar-guard: run-to-completion pods keep native sidecars', () => {
  it.each(['Never', 'OnFailure'] as const)('restartPolicy %s: no change, a reason and a warning', (restartPolicy) => {
    const r = evaluate({ restartPolicy });
    expect(r.changes).toEqual([]);
    expect(r.reasons).toEqual([expect.stringMatching(new RegExp(`the pod runs to completion \\(restartPolicy ${restartPolicy}\\), so it keeps its native sidecar: a classic istio-proxy would keep it from completing`))]);
    expect(r.warnings).toEqual([WARN_KEPT_NATIVE]);
  });

  it('the warning is short, names no pod, and says what the user can do', () => {
    for (const w of [WARN_KEPT_NATIVE, WARN_CLASSIC_JOB, WARN_TOO_LATE]) {
      expect(w.length).toBeLessThanOrEqual(256);
      expect(w).toMatch(/^mesh-guard: /);
      expect(w).not.toMatch(/[\n\r]/);
    }
    expect(WARN_KEPT_NATIVE).toMatch(/oneagent.dynatrace.com\/inject: "false"\) or accept$/);
  });

  it('istio.runToCompletionPods: classic forces a classic sidecar, with hold and a warning', () => {
    const r = evaluate({ restartPolicy: 'Never', config: 'istio: {runToCompletionPods: classic}' });
    expect(adds(r)).toEqual([`${NATIVE}=false`, `${PROXY_CONFIG}=${HOLD}`]);
    expect(r.reasons[0]).toMatch(/the pod runs to completion \(restartPolicy Never\) and istio.runToCompletionPods is classic$/);
    expect(r.warnings).toEqual([WARN_CLASSIC_JOB]);
  });

  it('after Istio, a kept native sidecar is explained without a second warning', () => {
    const r = evaluate({ restartPolicy: 'OnFailure', annotations: NATIVE_STATUS, ...NATIVE_PROXY });
    expect(r).toEqual({ changes: [], reasons: [expect.stringMatching(/^Istio injected a native sidecar, kept because the pod runs to completion/)] });
  });

  it.each([
    ['opted out of OneAgent', { restartPolicy: 'Never', annotations: { 'oneagent.dynatrace.com/inject': 'false' } }],
    ['no Dynatrace in the namespace', { restartPolicy: 'Never', ns: { 'istio-injection': 'enabled' } }],
    ['no sidecar', { restartPolicy: 'Never', labels: { 'sidecar.istio.io/inject': 'false' } }],
  ] as Array<[string, Case]>)('no warning when the pod is %s', (_name, input) => {
    expect(evaluate(input)).toEqual({ changes: [], reasons: [] });
  });
});

describe('istio-native-sidecar-guard: skips with a reason', () => {
  const cases: Array<[string, Case, RegExp]> = [
    ['the pod asked for native sidecars', { annotations: { [NATIVE]: 'true' } }, /sidecar.istio.io\/nativeSidecar="true" is set on the pod and left alone/],
    ['another explicit value', { annotations: { [NATIVE]: 'yes' } }, /="yes" is set on the pod and left alone/],
    ['unknown namespace, pod label inject=true', { ns: 'unknown', labels: { 'sidecar.istio.io/inject': 'true' } }, /^not acting: namespace labels unknown \(cluster view is off\)/],
    ['unknown namespace, pod label istio.io/rev, Dynatrace assumed', { ns: 'unknown', labels: { 'istio.io/rev': 'canary' }, config: 'dynatrace: {assumeInjectedWhenUnknown: true}' }, /^not acting: namespace labels unknown/],
    ['too late: Istio already injected a native sidecar', { annotations: NATIVE_STATUS, ...NATIVE_PROXY }, /Istio already injected a native sidecar .* too late to opt out/],
    ['after Istio, the native sidecar the pod asked for', { annotations: { ...NATIVE_STATUS, [NATIVE]: 'true' }, ...NATIVE_PROXY }, /^Istio injected the native sidecar the pod asked for/],
  ];
  it.each(cases)('%s', (_name, input, reason) => {
    const r = evaluate(input);
    expect(r.changes).toEqual([]);
    expect(r.reasons).toHaveLength(1);
    expect(r.reasons[0]).toMatch(reason);
  });
});

describe('istio-native-sidecar-guard: none of its business (no reason)', () => {
  const cases: Array<[string, Case]> = [
    ['our own output', { annotations: { [NATIVE]: 'false', [PROXY_CONFIG]: HOLD } }],
    ['our own output, JSON', { annotations: { [NATIVE]: 'false', [PROXY_CONFIG]: '{ "concurrency": 2, "holdApplicationUntilProxyStarts": true }' } }],
    ['config istio.nativeSidecarGuard off', { config: 'istio: {nativeSidecarGuard: false}' }],
    ['namespace not Dynatrace-labelled', { ns: { 'istio-injection': 'enabled' } }],
    ['dynatrace.com/inject "false"', { annotations: { 'dynatrace.com/inject': 'false' } }],
    ['oneagent.dynatrace.com/inject "0"', { annotations: { 'oneagent.dynatrace.com/inject': '0' } }],
    ['unknown namespace, pod opted out of Dynatrace', { ns: 'unknown', labels: { 'sidecar.istio.io/inject': 'true' }, annotations: { 'oneagent.dynatrace.com/inject': 'false' } }],
    ['unknown namespace, a pod with no Istio label of its own', { ns: 'unknown' }],
    ['hostNetwork', { hostNetwork: true }],
    ['kube-system', { namespace: 'kube-system' }],
    ['kube-public', { namespace: 'kube-public' }],
    ['kube-node-lease', { namespace: 'kube-node-lease' }],
    ['local-path-storage', { namespace: 'local-path-storage' }],
    ['pod label inject=false', { labels: { 'sidecar.istio.io/inject': 'false' } }],
    ['deprecated annotation inject=false', { annotations: { 'sidecar.istio.io/inject': 'false' } }],
    ['namespace istio-injection=disabled', { ns: { 'istio-injection': 'disabled', 'istio.io/rev': 'x', [DYNAKUBE]: 'dk' } }],
    ['namespace without Istio labels', { ns: { [DYNAKUBE]: 'dk' } }],
    ['ambient namespace', { ns: { 'istio.io/dataplane-mode': 'ambient', [DYNAKUBE]: 'dk' } }],
    ['absent namespace', { ns: 'absent' }],
    ['after Istio, classic sidecar (re-invocation)', { annotations: { [STATUS]: '{"initContainers":["istio-init"],"containers":["istio-proxy"]}' } }],
    ['after Istio, native but Dynatrace not injecting', { ns: { 'istio-injection': 'enabled' }, annotations: { [STATUS]: '{}' }, initContainers: [{ name: 'istio-proxy', image: 'p', restartPolicy: 'Always' }] }],
  ];
  it.each(cases)('%s', (_name, input) => {
    expect(evaluate(input)).toEqual({ changes: [], reasons: [] });
  });
});

describe('istio-native-sidecar-guard through the engine', () => {
  it('patches once and converges', async () => {
    const { ops, result } = await admitAndConverge(podOf({}), { namespaces: { shop: BOTH } });
    expect(ops).toEqual([{ op: 'add', path: '/metadata/annotations', value: { [NATIVE]: 'false', [PROXY_CONFIG]: HOLD } }]);
    expect(result.review.response.auditAnnotations).toEqual({ 'mutated-by': 'istio-native-sidecar-guard' });
    expect(result.review.response.warnings).toBeUndefined();
  });

  it('normalises "False" with a replace op and merges into an existing config', async () => {
    const { ops } = await admitAndConverge(podOf({ annotations: { [NATIVE]: 'False', [PROXY_CONFIG]: '{"concurrency":2}' } }), { namespaces: { shop: BOTH } });
    expect(ops).toEqual([
      { op: 'replace', path: '/metadata/annotations/sidecar.istio.io~1nativeSidecar', value: 'false' },
      { op: 'replace', path: '/metadata/annotations/proxy.istio.io~1config', value: '{ "concurrency": 2, "holdApplicationUntilProxyStarts": true }' },
    ]);
  });

  it('a Job pod: no patch, the warning in the AdmissionReview response, every time', async () => {
    const { ops, result } = await admitAndConverge(podOf({ restartPolicy: 'Never' }), { namespaces: { shop: BOTH } });
    expect(ops).toEqual([]);
    expect(result.review.response.warnings).toEqual([WARN_KEPT_NATIVE]);
    expect(result.review.response.auditAnnotations).toBeUndefined();
    expect(JSON.stringify(result.log)).toContain(WARN_KEPT_NATIVE.slice(0, 40));
  });

  it('dry-run shows the change only in the log', async () => {
    const { ops, result } = await admitPod(podOf({}), { namespaces: { shop: BOTH }, configYaml: 'dryRun: true' });
    expect(ops).toEqual([]);
    expect(JSON.stringify(result.log)).toContain('sidecar.istio.io/nativeSidecar: (unset) → \\"false\\"');
  });
});
