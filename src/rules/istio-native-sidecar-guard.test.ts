import { describe, expect, it } from 'vitest';
import { admitAndConverge, admitPod } from '../../test/support/admit.js';
import { evaluateCase, podOf, type PodCase } from '../../test/support/istio.js';
import { istioNativeSidecarGuard } from './istio-native-sidecar-guard.js';
import type { RuleResult } from './types.js';

const DYNAKUBE = 'dynakube.internal.dynatrace.com/instance';
const BOTH = { 'istio-injection': 'enabled', [DYNAKUBE]: 'dynakube' };
const NATIVE = 'sidecar.istio.io/nativeSidecar';
const STATUS = 'sidecar.istio.io/status';

type Case = PodCase;
const evaluate = (c: Case): RuleResult => evaluateCase(istioNativeSidecarGuard, c, BOTH);

const adds = (r: RuleResult) => r.changes.map((ch) => (ch.kind === 'annotation' ? `${ch.key}=${ch.value}` : ch.kind));

describe('istio-native-sidecar-guard: sets nativeSidecar "false"', () => {
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
  ];
  it.each(cases)('%s', (_name, input, reason) => {
    const r = evaluate(input);
    expect(adds(r)).toEqual([`${NATIVE}=false`]);
    expect(r.reasons).toHaveLength(1);
    expect(r.reasons[0]).toMatch(reason);
  });
});

describe('istio-native-sidecar-guard: skips with a reason', () => {
  const cases: Array<[string, Case, RegExp]> = [
    ['the pod asked for native sidecars', { annotations: { [NATIVE]: 'true' } }, /sidecar.istio.io\/nativeSidecar="true" is set on the pod and left alone/],
    ['another explicit value', { annotations: { [NATIVE]: 'yes' } }, /="yes" is set on the pod and left alone/],
    ['unknown namespace, pod label inject=true', { ns: 'unknown', labels: { 'sidecar.istio.io/inject': 'true' } }, /^not acting: namespace labels unknown \(cluster view is off\)/],
    ['unknown namespace, pod label istio.io/rev, Dynatrace assumed', { ns: 'unknown', labels: { 'istio.io/rev': 'canary' }, config: 'dynatrace: {assumeInjectedWhenUnknown: true}' }, /^not acting: namespace labels unknown/],
    ['too late: Istio already injected a native sidecar', { annotations: { [STATUS]: '{"initContainers":["istio-init","istio-proxy"],"containers":null}' }, initContainers: [{ name: 'istio-init', image: 'p' }, { name: 'istio-proxy', image: 'p', restartPolicy: 'Always' }] }, /Istio already injected a native sidecar .* too late to opt out/],
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
    ['already "false" (our own output)', { annotations: { [NATIVE]: 'false' } }],
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
    expect(ops).toEqual([{ op: 'add', path: '/metadata/annotations', value: { [NATIVE]: 'false' } }]);
    expect(result.review.response.auditAnnotations).toEqual({ 'mutated-by': 'istio-native-sidecar-guard' });
  });

  it('normalises "False" with a replace op', async () => {
    const { ops } = await admitAndConverge(podOf({ annotations: { [NATIVE]: 'False' } }), { namespaces: { shop: BOTH } });
    expect(ops).toEqual([{ op: 'replace', path: '/metadata/annotations/sidecar.istio.io~1nativeSidecar', value: 'false' }]);
  });

  it('dry-run shows the change only in the log', async () => {
    const { ops, result } = await admitPod(podOf({}), { namespaces: { shop: BOTH }, configYaml: 'dryRun: true' });
    expect(ops).toEqual([]);
    expect(JSON.stringify(result.log)).toContain('sidecar.istio.io/nativeSidecar: (unset) → \\"false\\"');
  });
});
