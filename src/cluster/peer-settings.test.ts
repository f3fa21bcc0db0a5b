/**
 * Reading the peers' settings objects (test/support/peer-settings.ts says from which templates)
 * and finding them from the discovered webhooks (peer-settings.ts cites the peers' code).
 */
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { consulInjectorDeployment, istioInjectorConfigMap, istioMeshConfigMap, type IstioMeshOptions } from '../../test/support/peer-settings.js';
import { CONSUL, DYNATRACE_HELM, ISTIO_CANARY, ISTIO_DEFAULT, ISTIO_TAG_STABLE } from '../../test/support/peer-webhooks.js';
import {
  consulRef,
  istioRefs,
  istioRevisionOf,
  parseConsulInjector,
  parseIstioInjector,
  parseIstioMesh,
  settingsKey,
  shellWords,
  wantedSettings,
} from './peer-settings.js';
import { selectorString } from './selectors.js';
import { knownDiscovery, summarizeConfiguration, type WebhookSummary } from './webhooks.js';

const discovery = (...texts: string[]) => knownDiscovery(texts.map((t) => summarizeConfiguration(parse(t))!));
const ok = <T>(p: { ok: true; value: T } | { ok: false; error: string }): T => {
  if (!p.ok) throw new Error(p.error);
  return p.value;
};

describe('Istio injector ConfigMap', () => {
  it('reads policy, selectors, native sidecars and hold as the chart renders them', () => {
    const s = ok(parseIstioInjector(istioInjectorConfigMap()));
    expect(s).toMatchObject({ policy: 'enabled', neverInjectSelector: [], alwaysInjectSelector: [], nativeSidecars: 'auto', holdApplicationUntilProxyStarts: false });
    const custom = ok(
      parseIstioInjector(
        istioInjectorConfigMap({
          policy: 'disabled',
          neverInjectSelector: '- matchExpressions:\n  - {key: job-name, operator: Exists}',
          alwaysInjectSelector: '- matchLabels: {mesh: always}',
          nativeSidecars: 'false',
          hold: true,
        }),
      ),
    );
    expect(custom.policy).toBe('disabled');
    expect(custom.neverInjectSelector.map((s) => (s.ok ? selectorString(s) : s.error))).toEqual(['job-name']);
    expect(custom.alwaysInjectSelector.map((s) => (s.ok ? selectorString(s) : s.error))).toEqual(['mesh=always']);
    expect(custom.nativeSidecars).toBe('false');
    expect(custom.holdApplicationUntilProxyStarts).toBe(true);
  });

  it.each<[string, unknown, RegExp]>([
    ['config that is not YAML', { data: { config: 'policy: [enabled' } }, /data.config is not valid YAML/],
    ['config that is a list', { data: { config: '- a' } }, /data.config is not a mapping/],
    ['values that are not JSON/YAML', { data: { config: 'policy: enabled', values: '{"global": ' } }, /data.values is not valid YAML/],
  ])('%s is unreadable, never a throw', (_, cm, error) => {
    const p = parseIstioInjector(cm);
    expect(p.ok).toBe(false);
    expect(p.ok ? '' : p.error).toMatch(error);
  });

  it('a missing policy is "" (Go zero value), which injectRequired treats as off', () => {
    expect(ok(parseIstioInjector({ data: { config: 'templates: {}' } })).policy).toBe('');
  });
});

describe('Istio mesh config', () => {
  it.each<[string, IstioMeshOptions, { enablePrometheusMerge: boolean; statusPort: number; holdApplicationUntilProxyStarts: boolean }]>([
    ['chart defaults', {}, { enablePrometheusMerge: true, statusPort: 15020, holdApplicationUntilProxyStarts: false }],
    ['merge off', { enablePrometheusMerge: false }, { enablePrometheusMerge: false, statusPort: 15020, holdApplicationUntilProxyStarts: false }],
    ['status port and hold', { defaultConfig: '  statusPort: 15030\n  holdApplicationUntilProxyStarts: true' }, { enablePrometheusMerge: true, statusPort: 15030, holdApplicationUntilProxyStarts: true }],
  ])('%s', (_, mesh, want) => {
    expect(ok(parseIstioMesh(istioMeshConfigMap('', mesh)))).toEqual(want);
  });

  it("a mesh config with a key twice is unreadable (Istio's YAML-to-JSON refuses it too)", () => {
    expect(parseIstioMesh({ data: { mesh: 'enablePrometheusMerge: true\nenablePrometheusMerge: false' } }).ok).toBe(false);
  });

  it('defaultConfig.statusPort and hold, and DefaultMeshConfig for what is left out', () => {
    const cm = { data: { mesh: 'defaultConfig:\n  statusPort: 15030\n  holdApplicationUntilProxyStarts: true\n' } };
    expect(ok(parseIstioMesh(cm))).toEqual({ enablePrometheusMerge: true, statusPort: 15030, holdApplicationUntilProxyStarts: true });
    expect(ok(parseIstioMesh({}))).toEqual({ enablePrometheusMerge: true, statusPort: 15020, holdApplicationUntilProxyStarts: false });
    expect(parseIstioMesh({ data: { mesh: 'defaultConfig: {statusPort: "x"}' } }).ok).toBe(false);
  });
});

describe('Consul connect-injector flags', () => {
  it('reads the chart script with default values', () => {
    expect(ok(parseConsulInjector(consulInjectorDeployment()))).toEqual({
      defaultInject: false,
      transparentProxy: true,
      allowNamespaces: ['*'],
      denyNamespaces: [],
      prometheusScrapePort: '20200',
      prometheusScrapePath: '/metrics',
    });
  });

  it('reads -default-inject=true, repeated allow/deny and the scrape endpoint', () => {
    const d = consulInjectorDeployment({ defaultInject: true, transparentProxy: false, allow: ['shop', 'pay'], deny: ['legacy'], scrapePort: '20300', scrapePath: '/m' });
    expect(ok(parseConsulInjector(d))).toEqual({
      defaultInject: true,
      transparentProxy: false,
      allowNamespaces: ['shop', 'pay'],
      denyNamespaces: ['legacy'],
      prometheusScrapePort: '20300',
      prometheusScrapePath: '/m',
    });
  });

  it('uses the binary defaults for flags that are not given, and reads args as well as a script', () => {
    const d = { spec: { template: { spec: { containers: [{ name: 'x', args: ['inject-connect', '--default-enable-transparent-proxy=false', '-allow-k8s-namespace', 'a'] }] } } } };
    expect(ok(parseConsulInjector(d))).toMatchObject({ defaultInject: true, transparentProxy: false, allowNamespaces: ['a'], denyNamespaces: [] });
  });

  it.each<[string, unknown, RegExp]>([
    ['no inject-connect container', { spec: { template: { spec: { containers: [{ name: 'x', command: ['sleep'] }] } } } }, /no container runs/],
    ['a bool flag that is not a bool', { spec: { template: { spec: { containers: [{ args: ['inject-connect', '-default-inject=yes'] }] } } } }, /-default-inject="yes" is not a bool/],
    ['not a Deployment at all', 'nonsense', /no container runs/],
  ])('%s is unreadable', (_, d, error) => {
    const p = parseConsulInjector(d);
    expect(p.ok ? '' : p.error).toMatch(error);
  });

  it.each<[string, string[]]>([
    ['exec a \\\n  -b="c d" \\\n  -e=\'f g\'', ['exec', 'a', '-b=c d', '-e=f g']],
    ['a "x\\"y" b\\ c', ['a', 'x"y', 'b c']],
    ['x inject-connect -a=1\nother -b', ['x', 'inject-connect', '-a=1']],
  ])('shellWords %j', (script, words) => {
    expect(shellWords(script)).toEqual(words);
  });
});

describe('which objects the discovered webhooks point at', () => {
  const istio = (text: string): WebhookSummary => {
    const d = discovery(text);
    if (d.state !== 'known') throw new Error(d.reason);
    return d.peers.istio[0]!;
  };

  it('an Istio webhook names its revision by the istiod Service it calls; a tag, its revision', () => {
    expect(istioRevisionOf(istio(ISTIO_DEFAULT))).toEqual({ namespace: 'istio-system', revision: '' });
    expect(istioRefs(istio(ISTIO_CANARY))).toEqual({
      injector: { kind: 'istio-injector', namespace: 'istio-system', name: 'istio-sidecar-injector-canary' },
      mesh: { kind: 'istio-mesh', namespace: 'istio-system', name: 'istio-canary' },
    });
    expect(istioRefs(istio(ISTIO_TAG_STABLE))?.injector.name).toBe('istio-sidecar-injector-canary');
    const byUrl = { ...istio(ISTIO_DEFAULT), service: null };
    expect(istioRefs(byUrl)).toBeUndefined();
  });

  it('Consul: the Deployment named as the configuration, in the Service namespace', () => {
    const d = discovery(CONSUL);
    const w = d.state === 'known' ? d.peers.consul[0]! : undefined;
    expect(consulRef(w!)).toEqual({ kind: 'consul-injector', namespace: 'consul', name: 'consul-connect-injector' });
  });

  it('wantedSettings: each object once, none for Dynatrace or without discovery', () => {
    expect(wantedSettings(discovery(ISTIO_CANARY, ISTIO_TAG_STABLE, CONSUL, DYNATRACE_HELM)).map(settingsKey)).toEqual([
      'consul-injector:consul/consul-connect-injector',
      'istio-injector:istio-system/istio-sidecar-injector-canary',
      'istio-mesh:istio-system/istio-canary',
    ]);
    expect(wantedSettings({ state: 'unknown', reason: 'x' })).toEqual([]);
    expect(wantedSettings(undefined)).toEqual([]);
  });
});
