/**
 * istioSidecarVerdict with discovered webhook configurations (issue 15): the live configuration
 * decides gate 1, the config mirror is the fallback and says so. The mirror's own cases are in the
 * Istio rules' tables (istio-metric-merging.test.ts and others), which run without discovery.
 */
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { admitAndConverge } from '../../test/support/admit.js';
import { podOf, type PodCase } from '../../test/support/istio.js';
import { istioInjectorConfigMap, istioMeshConfigMap, type IstioInjectorOptions } from '../../test/support/peer-settings.js';
import { ISTIO_CANARY, ISTIO_DEFAULT } from '../../test/support/peer-webhooks.js';
import { inspectPod } from '../admission/pod.js';
import { settingsFromObjects, type PeerSettings } from '../cluster/peer-settings.js';
import { staticClusterView, type NamespaceLookup } from '../cluster/view.js';
import { knownDiscovery, summarizeConfiguration, type WebhookDiscovery } from '../cluster/webhooks.js';
import { parseConfig } from '../config/load.js';
import { istioMesh, istioSidecarVerdict } from './istio.js';
import { istioMetricMerging } from './istio-metric-merging.js';

const discovery = (...texts: string[]): WebhookDiscovery => knownDiscovery(texts.map((t) => summarizeConfiguration(parse(t))!));
const CANARY_ONLY = discovery(ISTIO_CANARY);

function contextFor(c: PodCase, ns: NamespaceLookup, webhooks: WebhookDiscovery | undefined, config = '', settings?: PeerSettings) {
  const inspected = inspectPod(podOf(c), c.namespace ?? 'shop');
  if (!inspected.ok) throw new Error(inspected.reason);
  const ctx = { config: parseConfig(config), namespace: ns, activeGateIPs: [], ...(webhooks ? { webhooks } : {}), ...(settings ? { settings } : {}) };
  return { pod: inspected.pod, ctx };
}

function verdict(c: PodCase, ns: NamespaceLookup, webhooks: WebhookDiscovery | undefined, config = '', settings?: PeerSettings) {
  const { pod, ctx } = contextFor(c, ns, webhooks, config, settings);
  return istioSidecarVerdict(pod, ctx);
}

const known = (labels: Record<string, string>): NamespaceLookup => ({ state: 'known', labels });

describe('istio: gate 1 from the discovered webhooks', () => {
  it.each<[string, PodCase, NamespaceLookup, WebhookDiscovery, string, RegExp]>([
    ['stale istio-injection=enabled with only a canary webhook: no sidecar', {}, known({ 'istio-injection': 'enabled' }), CANARY_ONLY, 'no', /^no Istio webhook sees the pod: istio-sidecar-injector-canary\/rev.namespace.sidecar-injector.istio.io: namespaceSelector does not match: namespace label istio-injection=enabled, selector wants it absent/],
    ['istio.io/rev=canary', {}, known({ 'istio.io/rev': 'canary' }), CANARY_ONLY, 'yes', /^Istio injects a sidecar: Istio webhook istio-sidecar-injector-canary\/rev.namespace.sidecar-injector.istio.io matches: namespace label istio.io\/rev=canary$/],
    ['istio.io/rev=default with only a canary webhook: no sidecar', {}, known({ 'istio.io/rev': 'default' }), CANARY_ONLY, 'no', /no Istio webhook sees the pod/],
    ['default install, istio-injection=enabled', {}, known({ 'istio-injection': 'enabled' }), discovery(ISTIO_DEFAULT), 'yes', /Istio webhook istio-sidecar-injector\/namespace.sidecar-injector.istio.io matches/],
    ['the 1.27 caveat stays on a discovered route', { labels: { 'sidecar.istio.io/inject': 'yes' } }, known({ 'istio-injection': 'enabled' }), discovery(ISTIO_DEFAULT), 'yes', /matches: namespace label istio-injection=enabled; label sidecar.istio.io\/inject="yes" is neither/],
    ['gate 2 first: hostNetwork', { hostNetwork: true }, known({ 'istio.io/rev': 'canary' }), CANARY_ONLY, 'no', /^hostNetwork pod/],
    ['gate 2 first: the annotation opt-out the selectors do not see', { annotations: { 'sidecar.istio.io/inject': 'false' } }, known({ 'istio.io/rev': 'canary' }), CANARY_ONLY, 'no', /pod annotation sidecar.istio.io\/inject="false"/],
  ])('%s', (_, c, ns, webhooks, state, reason) => {
    const v = verdict(c, ns, webhooks);
    expect(v.state).toBe(state);
    expect(v.reason).toMatch(reason);
  });

  it('falls back to the config mirror, saying why, when discovery cannot tell', () => {
    const none = verdict({}, known({ 'istio-injection': 'enabled' }), discovery());
    expect(none.state).toBe('yes');
    expect(none.reason).toMatch(/^Istio injects a sidecar: namespace label istio-injection=enabled \(from the config mirror: no Istio webhook found/);
    const off: WebhookDiscovery = { state: 'unknown', reason: 'not allowed to list mutatingwebhookconfigurations (HTTP 403)' };
    expect(verdict({}, known({}), off, 'istio: {injectByDefault: true}').reason).toMatch(/istio.injectByDefault.*\(from the config mirror: Istio webhooks unknown: not allowed/);
    const unknownNs: NamespaceLookup = { state: 'unknown', reason: 'cluster view not synced' };
    expect(verdict({}, unknownNs, CANARY_ONLY).state).toBe('unknown');
  });

  it('without discovery in the context the mirror answers as before', () => {
    expect(verdict({}, known({ 'istio-injection': 'enabled' }), undefined).reason).toBe('Istio injects a sidecar: namespace label istio-injection=enabled');
  });
});

describe("istio: gate 2 from the revision's injector ConfigMap (injectRequired)", () => {
  const CANARY_NS = known({ 'istio.io/rev': 'canary' });
  const withInjector = (o: IstioInjectorOptions) => settingsFromObjects(CANARY_ONLY, [istioInjectorConfigMap({ revision: 'canary', ...o })]);
  const BATCH = { labels: { 'job-name': 'nightly' } };

  it.each<[string, PodCase, IstioInjectorOptions, string, RegExp]>([
    ['policy enabled: injects, and says where from', {}, {}, 'yes', /matches: namespace label istio.io\/rev=canary; ConfigMap istio-system\/istio-sidecar-injector-canary has policy enabled$/],
    ['policy disabled, pod does not ask: no sidecar', {}, { policy: 'disabled' }, 'no', /^ConfigMap istio-system\/istio-sidecar-injector-canary has policy disabled and the pod does not ask/],
    ['policy disabled, label inject=true: injects', { labels: { 'sidecar.istio.io/inject': 'true' } }, { policy: 'disabled' }, 'yes', /; sidecar.istio.io\/inject="true" \(ConfigMap istio-system\/istio-sidecar-injector-canary\)$/],
    ['neverInjectSelector matches: no sidecar', BATCH, { neverInjectSelector: '- matchExpressions:\n  - {key: job-name, operator: Exists}' }, 'no', /^pod labels match neverInjectSelector job-name \(ConfigMap istio-system\/istio-sidecar-injector-canary\): no sidecar$/],
    ['an explicit "true" wins over neverInjectSelector', { labels: { 'job-name': 'x', 'sidecar.istio.io/inject': 'true' } }, { neverInjectSelector: '- matchExpressions:\n  - {key: job-name, operator: Exists}' }, 'yes', /inject="true"/],
    ['an empty neverInjectSelector is skipped, as Istio skips it', {}, { neverInjectSelector: '- {}' }, 'yes', /has policy enabled$/],
    ['alwaysInjectSelector with policy disabled: injects', BATCH, { policy: 'disabled', alwaysInjectSelector: '- matchLabels: {job-name: nightly}' }, 'yes', /pod labels match alwaysInjectSelector job-name=nightly/],
    ['a policy Istio does not know injects nothing', {}, { policy: 'Enabled' }, 'no', /has injection policy "Enabled", which Istio's injectRequired treats as off/],
  ])('%s', (_, c, o, state, reason) => {
    const v = verdict(c, CANARY_NS, CANARY_ONLY, '', withInjector(o));
    expect(v.state).toBe(state);
    expect(v.reason).toMatch(reason);
  });

  it("unread, the chart's policy enabled stands in, and the reason says why", () => {
    const v = verdict({}, CANARY_NS, CANARY_ONLY, '', settingsFromObjects(CANARY_ONLY, []));
    expect(v.state).toBe('yes');
    expect(v.reason).toMatch(/; injection policy taken as the chart's "enabled" \(ConfigMap istio-system\/istio-sidecar-injector-canary does not exist\)$/);
  });

  it("istioMesh: the revision's mesh config, else the istio.* mirrors", () => {
    const settings = settingsFromObjects(CANARY_ONLY, [istioMeshConfigMap('canary', { enablePrometheusMerge: false, defaultConfig: '  statusPort: 15030' })]);
    const { pod, ctx } = contextFor({}, CANARY_NS, CANARY_ONLY, 'istio: {statusPort: 15020}', settings);
    expect(istioMesh(pod, ctx)).toEqual({ statusPort: 15030, prometheusMerge: false, source: 'ConfigMap istio-system/istio-canary' });
    const unread = contextFor({}, CANARY_NS, CANARY_ONLY, '', settingsFromObjects(CANARY_ONLY, []));
    expect(istioMesh(unread.pod, unread.ctx)).toEqual({ statusPort: 15020, prometheusMerge: true, source: undefined, unread: 'ConfigMap istio-system/istio-canary does not exist' });
    const noSettings = contextFor({}, CANARY_NS, CANARY_ONLY);
    expect(istioMesh(noSettings.pod, noSettings.ctx)).toEqual({ statusPort: 15020, prometheusMerge: true, source: undefined });
  });
});

describe('istio: the done-when pods of issue 15 through admission', () => {
  const DT = { 'metrics.dynatrace.com/scrape': 'true', 'metrics.dynatrace.com/port': '8080' };
  const namespaces = { stale: { 'istio-injection': 'enabled' }, canary: { 'istio.io/rev': 'canary' } };
  const cluster = staticClusterView(namespaces, [], CANARY_ONLY);

  it('a Dynatrace-scraped pod in the stale namespace is left as it is', async () => {
    const { ops, result } = await admitAndConverge(podOf({ namespace: 'stale', annotations: DT }), { cluster, rules: [istioMetricMerging] });
    expect(ops).toEqual([]);
    expect(JSON.stringify(result.outcomes)).toContain('no Istio webhook sees the pod');
  });

  it('a pod in the canary namespace gets metric merging', async () => {
    const { patched } = await admitAndConverge(podOf({ namespace: 'canary', annotations: DT }), { cluster, rules: [istioMetricMerging] });
    expect((patched as { metadata: { annotations: Record<string, string> } }).metadata.annotations).toMatchObject({
      'prometheus.io/port': '8080',
      'metrics.dynatrace.com/port': '15020',
      'metrics.dynatrace.com/path': '/stats/prometheus',
    });
  });
});

describe("istio metric merging with the revision's mesh config", () => {
  const DT = { 'metrics.dynatrace.com/scrape': 'true', 'metrics.dynatrace.com/port': '8080' };
  const namespaces = { canary: { 'istio.io/rev': 'canary' } };
  const run = (mesh: Parameters<typeof istioMeshConfigMap>[1]) => {
    const settings = settingsFromObjects(CANARY_ONLY, [istioInjectorConfigMap({ revision: 'canary' }), istioMeshConfigMap('canary', mesh)]);
    const cluster = staticClusterView(namespaces, [], CANARY_ONLY, settings);
    return admitAndConverge(podOf({ namespace: 'canary', annotations: DT }), { cluster, rules: [istioMetricMerging] });
  };

  it('points Dynatrace at the status port the mesh config sets', async () => {
    const { patched } = await run({ defaultConfig: '  statusPort: 15030' });
    expect((patched as { metadata: { annotations: Record<string, string> } }).metadata.annotations).toMatchObject({ 'metrics.dynatrace.com/port': '15030' });
  });

  it('stands back when the mesh config turns merging off, naming the ConfigMap', async () => {
    const { ops, result } = await run({ enablePrometheusMerge: false });
    expect(ops).toEqual([]);
    expect(JSON.stringify(result.outcomes)).toContain('enablePrometheusMerge is false in ConfigMap istio-system/istio-canary');
  });
});
