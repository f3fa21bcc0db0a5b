/**
 * Consul's injection verdict with discovered webhook configurations (issue 15): the installed
 * connect-injector webhook decides the API-server step; the copy of the chart's defaults is the
 * fallback and the reason says so. Without discovery, the cases in
 * consul-activegate-exclusions.test.ts apply unchanged.
 */
import { describe, expect, it } from 'vitest';
import type { V1Pod } from '@kubernetes/client-node';
import { parse } from 'yaml';
import { admitAndConverge } from '../../test/support/admit.js';
import { consulInjectorDeployment, type ConsulInjectorOptions } from '../../test/support/peer-settings.js';
import { CONSUL, consulSkipping } from '../../test/support/peer-webhooks.js';
import { inspectPod } from '../admission/pod.js';
import { settingsFromObjects, type PeerSettings } from '../cluster/peer-settings.js';
import { staticClusterView, type NamespaceLookup } from '../cluster/view.js';
import { knownDiscovery, summarizeConfiguration, type WebhookDiscovery } from '../cluster/webhooks.js';
import { parseConfig } from '../config/load.js';
import { consulActiveGateExclusions } from './consul-activegate-exclusions.js';
import { consulInjectVerdict, consulTproxyVerdict } from './consul.js';

const DT_NS = 'dynakube.internal.dynatrace.com/instance';
const PORTS = 'consul.hashicorp.com/transparent-proxy-exclude-outbound-ports';
const AG_IP = '10.96.0.10';
const discovery = (...texts: string[]): WebhookDiscovery => knownDiscovery(texts.map((t) => summarizeConfiguration(parse(t))!));

function pod(namespace: string, annotations: Record<string, string> = {}, labels: Record<string, string> = {}): V1Pod {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { generateName: 'web-', namespace, annotations, labels }, spec: { containers: [{ name: 'web', image: 'nginx:1.27' }] } };
}

function verdict(p: V1Pod, ns: NamespaceLookup, webhooks: WebhookDiscovery | undefined, settings?: PeerSettings, of = consulInjectVerdict) {
  const inspected = inspectPod(p, p.metadata!.namespace);
  if (!inspected.ok) throw new Error(inspected.reason);
  return of(inspected.pod, { config: parseConfig(''), namespace: ns, activeGateIPs: [], ...(webhooks ? { webhooks } : {}), ...(settings ? { settings } : {}) });
}

const ASKS = { 'consul.hashicorp.com/connect-inject': 'true' };
const known = (labels: Record<string, string>): NamespaceLookup => ({ state: 'known', labels });

describe('consul: the API-server step from the discovered connect-injector webhook', () => {
  it.each<[string, V1Pod, NamespaceLookup, WebhookDiscovery | undefined, string, RegExp]>([
    ['the chart default selects the pod', pod('app', ASKS), known({}), discovery(CONSUL), 'will-inject', /^consul.hashicorp.com\/connect-inject="true"; Consul webhook consul-connect-injector\/consul-connect-injector.consul.hashicorp.com matches/],
    ['a namespace the webhook skips', pod('skipped', ASKS), known({}), discovery(consulSkipping('skipped')), 'skip', /^no Consul webhook sees the pod: .*namespace label kubernetes.io\/metadata.name=skipped, selector wants kubernetes.io\/metadata.name notin \(kube-system,skipped\)/],
    ['app=consul through the live objectSelector', pod('app', ASKS, { app: 'consul' }), known({}), discovery(CONSUL), 'skip', /objectSelector does not match: pod label app=consul/],
    ['no Consul webhook found: the mirror, saying so', pod('app', ASKS), known({}), discovery(), 'will-inject', /no Consul webhook found .*, so the config mirror of Consul's selectors decides$/],
    ['without discovery: the mirror as before', pod('app', ASKS), known({}), undefined, 'will-inject', /^consul.hashicorp.com\/connect-inject="true"$/],
  ])('%s', (_, p, ns, webhooks, kind, reason) => {
    const v = verdict(p, ns, webhooks);
    expect(v.kind).toBe(kind);
    expect('reason' in v ? v.reason : '').toMatch(reason);
  });

  it('a custom objectSelector that admits app=consul overrides the chart-default copy', () => {
    const noObjectSelector = CONSUL.replace(/  objectSelector:\n    matchExpressions:\n    - key: app\n      operator: NotIn\n      values: \[ consul \]\n/, '');
    expect(noObjectSelector).not.toBe(CONSUL);
    expect(verdict(pod('app', ASKS, { app: 'consul' }), known({}), discovery(noObjectSelector)).kind).toBe('will-inject');
  });

  it('a pod without the annotation is still none of Consul\'s business while consul.injectByDefault is false', () => {
    expect(verdict(pod('app'), known({}), discovery(CONSUL)).kind).toBe('not-consul');
  });
});

describe("consul: the injector's own flags from its Deployment", () => {
  const CONSUL_ONLY = discovery(CONSUL);
  const flags = (o: ConsulInjectorOptions) => settingsFromObjects(CONSUL_ONLY, [consulInjectorDeployment(o)]);
  const FROM = 'Deployment consul/consul-connect-injector';

  it.each<[string, V1Pod, ConsulInjectorOptions, string, string]>([
    ['-default-inject=true meshes a pod without the annotation', pod('app'), { defaultInject: true }, 'will-inject', `consul.hashicorp.com/connect-inject absent and the injector runs with -default-inject=true (${FROM})`],
    ['-default-inject=false (the chart default): not a Consul pod', pod('app'), {}, 'not-consul', ''],
    ['-deny-k8s-namespace', pod('legacy', ASKS), { deny: ['legacy'] }, 'skip', `namespace legacy is in the injector's -deny-k8s-namespace (${FROM})`],
    ['-allow-k8s-namespace without "*"', pod('app', ASKS), { allow: ['shop'] }, 'skip', `namespace app is not in the injector's -allow-k8s-namespace (${FROM})`],
    ['allowed by name', pod('shop', ASKS), { allow: ['shop'] }, 'will-inject', 'consul.hashicorp.com/connect-inject="true"'],
  ])('%s', (_, p, o, kind, reason) => {
    const v = verdict(p, known({}), CONSUL_ONLY, flags(o));
    expect(v.kind).toBe(kind);
    if (reason) expect('reason' in v ? v.reason : '').toContain(reason);
  });

  it('-default-enable-transparent-proxy=false: injected without transparent proxy', () => {
    const v = verdict(pod('app', ASKS), known({}), CONSUL_ONLY, flags({ transparentProxy: false }), consulTproxyVerdict);
    expect(v.kind).toBe('skip');
    expect('reason' in v ? v.reason : '').toContain(`the injector runs with -default-enable-transparent-proxy=false (${FROM})`);
  });

  it('unread flags: the consul.* mirrors, saying why', () => {
    const v = verdict(pod('app', ASKS), known({}), CONSUL_ONLY, settingsFromObjects(CONSUL_ONLY, []));
    expect(v.kind).toBe('will-inject');
    expect('reason' in v ? v.reason : '').toMatch(/; the consul.\* mirrors stand in for the injector's flags \(Deployment consul\/consul-connect-injector does not exist\)$/);
  });
});

describe('consul: the done-when pods of issue 15 through admission', () => {
  const namespaces = { meshed: { [DT_NS]: 'dk' }, skipped: { [DT_NS]: 'dk' } };
  const cluster = staticClusterView(namespaces, [AG_IP], discovery(consulSkipping('skipped')));
  const run = (namespace: string) => admitAndConverge(pod(namespace, ASKS), { cluster, rules: [consulActiveGateExclusions] });

  it('a meshed pod in a Dynatrace namespace gets the ActiveGate exclusions', async () => {
    const { patched } = await run('meshed');
    expect((patched as V1Pod).metadata!.annotations![PORTS]).toBe('9999');
  });

  it('a pod in the namespace Consul\'s webhook skips gets none', async () => {
    const { ops, result } = await run('skipped');
    expect(ops).toEqual([]);
    expect(JSON.stringify(result.outcomes)).toContain('no Consul webhook sees the pod');
  });
});
