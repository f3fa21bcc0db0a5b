import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { admitAndConverge, admitPod, type AdmitOptions } from '../../test/support/admit.js';
import { GO_LISTS, GO_NULLS } from '../../test/support/consul.js';
import { parseConfig } from '../config/load.js';
import { staticClusterView, type ClusterView } from '../cluster/view.js';
import { consulActiveGateExclusions } from './consul-activegate-exclusions.js';
import { addToRenderedConfig, cidrKey } from './consul.js';

const RULE = 'consul-activegate-exclusions';
const INJECT = 'consul.hashicorp.com/connect-inject';
const STATUS = 'consul.hashicorp.com/connect-inject-status';
const TPROXY = 'consul.hashicorp.com/transparent-proxy';
const TPROXY_STATUS = 'consul.hashicorp.com/transparent-proxy-status';
const PORTS = 'consul.hashicorp.com/transparent-proxy-exclude-outbound-ports';
const CIDRS = 'consul.hashicorp.com/transparent-proxy-exclude-outbound-cidrs';
const INBOUND = 'consul.hashicorp.com/transparent-proxy-exclude-inbound-ports';
const UIDS = 'consul.hashicorp.com/transparent-proxy-exclude-uids';
const REDIRECT = 'consul.hashicorp.com/redirect-traffic-config';
const ENV = 'CONSUL_REDIRECT_TRAFFIC_CONFIG';
const DT_NS = 'dynakube.internal.dynatrace.com/instance';

const AG_IP = '10.96.0.10';

const namespaces: Record<string, Record<string, string>> = {
  app: { [DT_NS]: 'dynakube' },
  plain: {},
  'tp-off': { [DT_NS]: 'dynakube', [TPROXY]: 'false' },
  'tp-on': { [DT_NS]: 'dynakube', [TPROXY]: 'true' },
  'tp-bad': { [DT_NS]: 'dynakube', [TPROXY]: 'enabled' },
  'kube-system': { [DT_NS]: 'dynakube' },
  'kube-public': { [DT_NS]: 'dynakube' },
  denied: { [DT_NS]: 'dynakube' },
};

function pod(
  opts: { namespace?: string; annotations?: Record<string, string>; labels?: Record<string, string>; initContainers?: V1Container[] } = {},
): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      generateName: 'web-',
      namespace: opts.namespace ?? 'app',
      ...(opts.annotations ? { annotations: opts.annotations } : {}),
      ...(opts.labels ? { labels: opts.labels } : {}),
    },
    spec: {
      containers: [{ name: 'web', image: 'nginx:1.27' }],
      ...(opts.initContainers ? { initContainers: opts.initContainers } : {}),
    },
  };
}

const meshed = (extra: Record<string, string> = {}, namespace = 'app') => pod({ namespace, annotations: { [INJECT]: 'true', ...extra } });
const annotationsOf = (p: unknown) => ((p as V1Pod).metadata?.annotations ?? {}) as Record<string, string>;

// admitPod turns activeGateIPs: null into [] (test/support/admit.ts), so "unknown" goes through a view.
async function run(input: V1Pod, opts: AdmitOptions = {}) {
  const first = await admitAndConverge(input, { namespaces, activeGateIPs: [AG_IP], rules: [consulActiveGateExclusions], ...opts });
  const outcome = first.result.outcomes.find((o) => o.rule === RULE);
  return { ...first, outcome, reasons: outcome?.reasons.join(' | ') ?? '' };
}

/** A view whose namespace labels are unknown (e.g. not synced). */
function unknownView(activeGateIPs: readonly string[] | null): ClusterView {
  return {
    state: 'syncing',
    namespaceLabels: async () => ({ state: 'unknown', reason: 'cluster view not synced' }),
    activeGateServiceIPs: () => activeGateIPs,
    ready: async () => undefined,
    close: async () => undefined,
  };
}

describe('consul-activegate-exclusions: the "Consul will inject with tproxy" and "Dynatrace injects" predicate', () => {
  it('done-when: connect-inject "true" in a Dynatrace namespace gets 9999 and the ActiveGate ClusterIP /32', async () => {
    const { patched, reasons, result } = await run(meshed());
    expect(annotationsOf(patched)[PORTS]).toBe('9999');
    expect(annotationsOf(patched)[CIDRS]).toBe(`${AG_IP}/32`);
    expect(reasons).toMatch(/Consul will inject with transparent proxy \(consul.hashicorp.com\/connect-inject="true"; no pod annotation or namespace label, consul.transparentProxyDefault is true\)/);
    expect(reasons).toMatch(/namespace is labelled dynakube.internal.dynatrace.com\/instance/);
    expect(result.review.response.auditAnnotations).toEqual({ 'mutated-by': RULE });
  });

  // [name, pod, options, expected reason (or null for "none of the rule's business")]
  const skipped: Array<[string, V1Pod, AdmitOptions, RegExp | null]> = [
    ['no Consul annotation, consul.injectByDefault false: not a Consul pod', pod(), {}, null],
    ['connect-inject "false": Consul opt-out, not a Consul pod', meshed({ [INJECT]: 'false' }), {}, null],
    ['connect-inject "0" (Go ParseBool false)', meshed({ [INJECT]: '0' }), {}, null],
    ['connect-inject "yes": Consul rejects the pod', meshed({ [INJECT]: 'yes' }), {}, /connect-inject="yes" is not a Go bool, so Consul's webhook rejects the pod/],
    ['connect-inject " true" (space): Consul rejects the pod', meshed({ [INJECT]: ' true' }), {}, /is not a Go bool/],
    ['kube-system with connect-inject', meshed({}, 'kube-system'), {}, /Consul never injects pods in kube-system/],
    ['kube-public with connect-inject', meshed({}, 'kube-public'), {}, /Consul never injects pods in kube-public/],
    ['kube-system without annotation, injectByDefault: not a Consul pod', pod({ namespace: 'kube-system' }), { configYaml: 'consul: {injectByDefault: true}' }, null],
    ['namespace in consul.denyNamespaces', meshed({}, 'denied'), { configYaml: 'consul: {denyNamespaces: [denied]}' }, /namespace denied is in consul.denyNamespaces/],
    ["app=consul label (Consul's objectSelector)", pod({ labels: { app: 'consul' }, annotations: { [INJECT]: 'true' } }), {}, /objectSelector leaves out pods labelled app=consul/],
    ['pod annotation transparent-proxy "false"', meshed({ [TPROXY]: 'false' }), {}, /Consul injects without transparent proxy \(pod annotation consul.hashicorp.com\/transparent-proxy="false"\)/],
    ['pod annotation "false" wins over namespace label "true"', meshed({ [TPROXY]: 'false' }, 'tp-on'), {}, /pod annotation consul.hashicorp.com\/transparent-proxy="false"/],
    ['namespace label "false" wins over the default', meshed({}, 'tp-off'), {}, /without transparent proxy \(namespace label consul.hashicorp.com\/transparent-proxy="false"\)/],
    ['default transparentProxyDefault false', meshed(), { configYaml: 'consul: {transparentProxyDefault: false}' }, /consul.transparentProxyDefault is false\)/],
    ['pod annotation transparent-proxy "on": Consul rejects the pod', meshed({ [TPROXY]: 'on' }), {}, /transparent-proxy="on" is not a Go bool, so Consul's webhook rejects the pod/],
    ['namespace label transparent-proxy "enabled": Consul rejects the pod', meshed({}, 'tp-bad'), {}, /namespace label consul.hashicorp.com\/transparent-proxy="enabled" is not a Go bool/],
    ['namespace without the Dynatrace label', meshed({}, 'plain'), {}, /Dynatrace does not inject OneAgent: namespace is not labelled dynakube.internal.dynatrace.com\/instance/],
    ['dynatrace.com/inject "false"', meshed({ 'dynatrace.com/inject': 'false' }), {}, /Dynatrace does not inject OneAgent: dynatrace.com\/inject parses as false/],
    ['oneagent.dynatrace.com/inject "False"', meshed({ 'oneagent.dynatrace.com/inject': 'False' }), {}, /oneagent.dynatrace.com\/inject parses as false/],
    ['namespace that does not exist', meshed({}, 'gone'), {}, /Dynatrace does not inject OneAgent: namespace does not exist/],
    ['namespace labels unknown, assumeInjectedWhenUnknown false (default)', meshed(), { cluster: unknownView(null) }, /dynatrace.assumeInjectedWhenUnknown is false/],
    ['already injected without transparent proxy', meshed({ [STATUS]: 'injected' }), {}, /Consul already injected the pod .* without transparent proxy/],
  ];
  it.each(skipped)('left alone: %s', async (_name, input, opts, reason) => {
    const { ops, outcome, reasons } = await run(input, opts);
    expect(ops).toEqual([]);
    if (reason === null) expect(outcome, 'none of the rule\'s business: no log entry').toBeUndefined();
    else expect(reasons).toMatch(reason);
  });

  const applied: Array<[string, V1Pod, AdmitOptions, RegExp]> = [
    ['connect-inject "T" (Go ParseBool true)', meshed({ [INJECT]: 'T' }), {}, /connect-inject="T"/],
    ['no annotation, consul.injectByDefault true', pod(), { configYaml: 'consul: {injectByDefault: true}' }, /connect-inject absent and consul.injectByDefault is true/],
    ['empty connect-inject-status is not "injected" (Consul checks != "")', meshed({ [STATUS]: '' }), {}, /Consul will inject/],
    ['pod annotation "true" wins over namespace label "false"', meshed({ [TPROXY]: 'true' }, 'tp-off'), {}, /pod annotation consul.hashicorp.com\/transparent-proxy="true"/],
    ['namespace label "true" wins over default false', meshed({}, 'tp-on'), { configYaml: 'consul: {transparentProxyDefault: false}' }, /namespace label consul.hashicorp.com\/transparent-proxy="true"/],
    ['oneagent.dynatrace.com/inject "no" is unparseable, so Dynatrace injects', meshed({ 'oneagent.dynatrace.com/inject': 'no' }), {}, /namespace is labelled/],
    ['namespace labels unknown, assumeInjectedWhenUnknown true', meshed(), { cluster: unknownView([AG_IP]), configYaml: 'dynatrace: {assumeInjectedWhenUnknown: true}' }, /namespace labels unknown \(cluster view not synced\), consul.transparentProxyDefault is true.*dynatrace.assumeInjectedWhenUnknown is true/],
  ];
  it.each(applied)('acts: %s', async (_name, input, opts, reason) => {
    const { patched, reasons } = await run(input, opts);
    expect(annotationsOf(patched)[PORTS]).toBe('9999');
    expect(annotationsOf(patched)[CIDRS]).toBe(`${AG_IP}/32`);
    expect(reasons).toMatch(reason);
  });
});

describe('consul-activegate-exclusions: the exclusion annotations (before Consul)', () => {
  // [name, existing ports, existing cidrs, ports after, cidrs after, reason]
  const lists: Array<[string, string | undefined, string | undefined, string | undefined, string | undefined, RegExp]> = [
    ['both absent', undefined, undefined, '9999', `${AG_IP}/32`, /set consul.hashicorp.com\/transparent-proxy-exclude-outbound-ports to 9999/],
    ['existing lists without our entries: appended, kept in order', '8080,8443', '10.0.0.0/8', '8080,8443,9999', `10.0.0.0/8,${AG_IP}/32`, /appended 9999 to consul.hashicorp.com\/transparent-proxy-exclude-outbound-ports/],
    ['existing lists with our entries: nothing to do', '8080,9999', `${AG_IP}/32,10.0.0.0/8`, '8080,9999', `${AG_IP}/32,10.0.0.0/8`, /already hold every entry/],
    ['a bare IP counts as its /32', '9999', AG_IP, '9999', AG_IP, /already hold every entry/],
    ['odd spacing is left as is, our entries compared trimmed', '8080, 9999', ` ${AG_IP}/32 `, '8080, 9999', ` ${AG_IP}/32 `, /items with spaces or empty items.*left as is/],
    ['odd spacing without our entries: appended after, no space', '8080 , 8443', '10.0.0.0/8, 192.168.0.0/16', '8080 , 8443,9999', `10.0.0.0/8, 192.168.0.0/16,${AG_IP}/32`, /left as is/],
    ['a trailing comma is filled, not doubled', '8080,', '10.0.0.0/8,', '8080,9999', `10.0.0.0/8,${AG_IP}/32`, /appended 9999/],
    ['an empty annotation is replaced by our entries', '', '', '9999', `${AG_IP}/32`, /appended 9999/],
  ];
  it.each(lists)('%s', async (_name, ports, cidrs, portsAfter, cidrsAfter, reason) => {
    const extra: Record<string, string> = { [INBOUND]: '8000, 8001', [UIDS]: '1000' };
    if (ports !== undefined) extra[PORTS] = ports;
    if (cidrs !== undefined) extra[CIDRS] = cidrs;
    const { patched, reasons } = await run(meshed(extra));
    const a = annotationsOf(patched);
    expect(a[PORTS]).toBe(portsAfter);
    expect(a[CIDRS]).toBe(cidrsAfter);
    expect(a[INBOUND], 'inbound exclusions are never touched').toBe('8000, 8001');
    expect(a[UIDS], 'UID exclusions are never touched').toBe('1000');
    expect(reasons).toMatch(reason);
  });

  it('IPv6 ClusterIPs are left out by default (Consul applies IPv4 iptables), with the reason', async () => {
    const { patched, reasons } = await run(meshed(), { activeGateIPs: [AG_IP, 'fd00:10:96::a'] });
    expect(annotationsOf(patched)[CIDRS]).toBe(`${AG_IP}/32`);
    expect(reasons).toMatch(/left out ActiveGate ClusterIP fd00:10:96::a: IPv6 is not in activeGate.clusterIPFamilies/);
  });

  it('IPv6 ClusterIPs become /128, IPv4 /32; configured ports and CIDRs come first, duplicates dropped', async () => {
    const { patched } = await run(meshed(), {
      activeGateIPs: [AG_IP, 'fd00:10:96::a'],
      configYaml: 'activeGate: {ports: [9999, 8443, 9999], cidrs: ["172.16.0.0/12", "fd00:10:96::a/128"], clusterIPFamilies: [IPv4, IPv6]}',
    });
    expect(annotationsOf(patched)[PORTS]).toBe('9999,8443');
    expect(annotationsOf(patched)[CIDRS]).toBe(`172.16.0.0/12,fd00:10:96::a/128,${AG_IP}/32`);
  });

  it('an IPv6 entry already present in another spelling is not added again', async () => {
    const { ops } = await run(meshed({ [PORTS]: '9999', [CIDRS]: 'FD00:10:96:0::A/128' }), {
      activeGateIPs: ['fd00:10:96::a'],
      configYaml: 'activeGate: {clusterIPFamilies: [IPv6]}',
    });
    expect(ops).toEqual([]);
    expect(cidrKey('FD00:10:96:0::A')).toBe('fd00:10:96::a/128');
  });

  it('ActiveGate IPs unknown: still adds the configured entries and says the ClusterIPs were unknown', async () => {
    const { patched, reasons } = await run(meshed(), { cluster: staticClusterView(namespaces, null), configYaml: 'activeGate: {cidrs: ["10.10.0.0/16"]}' });
    expect(annotationsOf(patched)[PORTS]).toBe('9999');
    expect(annotationsOf(patched)[CIDRS]).toBe('10.10.0.0/16');
    expect(reasons).toMatch(/ActiveGate Service ClusterIPs are unknown/);
  });

  it('no ActiveGate IPs and no configured CIDRs: never writes an empty CIDR annotation', async () => {
    const { patched, reasons } = await run(meshed(), { cluster: staticClusterView(namespaces, null) });
    expect(annotationsOf(patched)[PORTS]).toBe('9999');
    expect(annotationsOf(patched)).not.toHaveProperty(CIDRS);
    expect(reasons).toMatch(/ClusterIPs are unknown/);
  });

  it('no ActiveGate Service found: says so', async () => {
    const { reasons } = await run(meshed(), { activeGateIPs: [] });
    expect(reasons).toMatch(/no ActiveGate Service found/);
  });

  it('no ports configured and no CIDRs: no change, no empty annotation', async () => {
    const { ops, reasons } = await run(meshed(), { activeGateIPs: [], configYaml: 'activeGate: {ports: []}' });
    expect(ops).toEqual([]);
    expect(reasons).toMatch(/nothing to add: activeGate.ports and activeGate.cidrs are empty/);
  });

  it('ignores a ClusterIP that is not an IP, with a reason', async () => {
    const { patched, reasons } = await run(meshed(), { activeGateIPs: ['None', AG_IP] });
    expect(annotationsOf(patched)[CIDRS]).toBe(`${AG_IP}/32`);
    expect(reasons).toMatch(/ignored ActiveGate ClusterIP "None"/);
  });

  it('the patch adds keys with escaped JSON pointers and keeps other annotations', async () => {
    const { ops, patched } = await run(meshed({ other: 'x' }));
    expect(ops).toEqual([
      { op: 'add', path: '/metadata/annotations/consul.hashicorp.com~1transparent-proxy-exclude-outbound-ports', value: '9999' },
      { op: 'add', path: '/metadata/annotations/consul.hashicorp.com~1transparent-proxy-exclude-outbound-cidrs', value: `${AG_IP}/32` },
    ]);
    expect(annotationsOf(patched).other).toBe('x');
  });
});

// The rendered configs consul-k8s writes (test/support/consul.ts, checked against renderRedirectConfig).
const GO_NULLS_AFTER = GO_NULLS.replace('"ExcludeOutboundPorts":null,"ExcludeOutboundCIDRs":null', `"ExcludeOutboundPorts":["9999"],"ExcludeOutboundCIDRs":["${AG_IP}/32"]`);
const GO_LISTS_AFTER = GO_LISTS.replace('"22222"]', '"22222","9999"]').replace('"3.3.3.3/24"]', `"3.3.3.3/24","${AG_IP}/32"]`);

const injectedAnnotations = { [INJECT]: 'true', [STATUS]: 'injected', [TPROXY_STATUS]: 'enabled' };

function initContainer(name: string, value: string | undefined, extraEnv: V1Container['env'] = []): V1Container {
  return {
    name,
    image: 'hashicorp/consul-k8s-control-plane:1.6.0',
    env: [
      { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      ...extraEnv,
      ...(value === undefined ? [] : [{ name: ENV, value }]),
    ],
  };
}

const envValue = (p: unknown, i = 1) =>
  (p as V1Pod).spec?.initContainers?.[i]?.env?.find((e) => e.name === ENV)?.value;

describe('consul-activegate-exclusions: already injected by Consul (rendered iptables.Config)', () => {
  const otherInit: V1Container = { name: 'setup', image: 'busybox' };

  it('non-CNI: appends to CONSUL_REDIRECT_TRAFFIC_CONFIG on consul-connect-inject-init (null arrays)', async () => {
    const input = pod({ annotations: injectedAnnotations, initContainers: [otherInit, initContainer('consul-connect-inject-init', GO_NULLS)] });
    const { ops, patched, reasons, result } = await run(input);
    expect(ops).toEqual([{ op: 'replace', path: '/spec/initContainers/1/env/1/value', value: GO_NULLS_AFTER }]);
    expect(envValue(patched)).toBe(GO_NULLS_AFTER);
    expect(reasons).toMatch(/Consul already rendered env CONSUL_REDIRECT_TRAFFIC_CONFIG of init container consul-connect-inject-init: appended 9999 to ExcludeOutboundPorts and 10.96.0.10\/32 to ExcludeOutboundCIDRs/);
    expect(annotationsOf(patched)).not.toHaveProperty(PORTS);
    // Env values never reach the log.
    expect(JSON.stringify(result.log)).not.toContain('ProxyUserID');
  });

  it('non-CNI: appends to existing lists and keeps every other field byte for byte', async () => {
    const input = pod({ annotations: injectedAnnotations, initContainers: [otherInit, initContainer('consul-connect-inject-init', GO_LISTS)] });
    const { patched } = await run(input);
    expect(envValue(patched)).toBe(GO_LISTS_AFTER);
  });

  it('CNI: appends to the redirect-traffic-config annotation', async () => {
    const input = pod({ annotations: { ...injectedAnnotations, [REDIRECT]: GO_LISTS } });
    const { ops, reasons } = await run(input);
    expect(ops).toEqual([{ op: 'replace', path: '/metadata/annotations/consul.hashicorp.com~1redirect-traffic-config', value: GO_LISTS_AFTER }]);
    expect(reasons).toMatch(/annotation consul.hashicorp.com\/redirect-traffic-config \(CNI mode\): appended/);
  });

  it('CNI with transparent-proxy-status already "complete" still counts as tproxy', async () => {
    const input = pod({ annotations: { ...injectedAnnotations, [TPROXY_STATUS]: 'complete', [REDIRECT]: GO_NULLS } });
    const { ops } = await run(input);
    expect(ops).toHaveLength(1);
  });

  it('a re-invocation after our own pass: everything present, no ops', async () => {
    const input = pod({ annotations: { ...injectedAnnotations, [REDIRECT]: GO_LISTS_AFTER }, initContainers: [initContainer('consul-connect-inject-init', GO_NULLS_AFTER)] });
    const { ops, reasons } = await run(input);
    expect(ops).toEqual([]);
    expect(reasons).toMatch(/already holds every entry/);
  });

  it('Consul rendered our annotations already (we ran first): no ops', async () => {
    const rendered = GO_NULLS.replace('"ExcludeOutboundPorts":null,"ExcludeOutboundCIDRs":null', `"ExcludeOutboundPorts":["9999"],"ExcludeOutboundCIDRs":["${AG_IP}/32"]`);
    const input = pod({ annotations: { ...injectedAnnotations, [PORTS]: '9999', [CIDRS]: `${AG_IP}/32` }, initContainers: [initContainer('consul-connect-inject-init', rendered)] });
    expect((await run(input)).ops).toEqual([]);
  });

  it('multi-port init container name consul-connect-inject-init-<svc> is recognised', async () => {
    const input = pod({ annotations: injectedAnnotations, initContainers: [initContainer('consul-connect-inject-init-web', GO_NULLS)] });
    const { patched } = await run(input);
    expect(envValue(patched, 0)).toBe(GO_NULLS_AFTER);
  });

  it('pretty-printed JSON with unknown fields: only the two arrays change', async () => {
    const pretty = '{\n  "Future": {"a": [1, "]"]},\n  "ExcludeOutboundPorts": [ "1" ],\n  "ExcludeOutboundCIDRs": [],\n  "Zed": "\\u003c"\n}';
    const input = pod({ annotations: injectedAnnotations, initContainers: [initContainer('consul-connect-inject-init', pretty)] });
    const { patched } = await run(input);
    expect(envValue(patched, 0)).toBe(`{\n  "Future": {"a": [1, "]"]},\n  "ExcludeOutboundPorts": [ "1" ,"9999"],\n  "ExcludeOutboundCIDRs": ["${AG_IP}/32"],\n  "Zed": "\\u003c"\n}`);
  });

  it('missing fields are added at the end (Go decodes a missing field as nil)', async () => {
    const input = pod({ annotations: injectedAnnotations, initContainers: [initContainer('consul-connect-inject-init', '{"ProxyUserID":"5995","ProxyInboundPort":20000}')] });
    const { patched } = await run(input);
    expect(envValue(patched, 0)).toBe(`{"ProxyUserID":"5995","ProxyInboundPort":20000,"ExcludeOutboundPorts":["9999"],"ExcludeOutboundCIDRs":["${AG_IP}/32"]}`);
  });

  const malformed: Array<[string, string, RegExp]> = [
    ['not JSON', '{"ProxyUserID":', /is not valid JSON/],
    ['a JSON array', '[1,2]', /is not a JSON object/],
    ['JSON null', 'null', /is not a JSON object/],
    ['ExcludeOutboundPorts is a string', '{"ExcludeOutboundPorts":"9999"}', /neither null nor a list of strings/],
    ['ExcludeOutboundCIDRs holds a number', '{"ExcludeOutboundCIDRs":[1]}', /neither null nor a list of strings/],
    ['a key Go would also decode into the field', '{"ExcludeOutboundPorts":null,"excludeoutboundports":["1"]}', /which Go would also decode into ExcludeOutboundPorts/],
    ['a key Go folds into the field (long s)', '{"ExcludeOutboundPort\u017f":["1"]}', /which Go would also decode into ExcludeOutboundPorts/],
    ['a duplicate key', '{"ExcludeOutboundCIDRs":null,"ExcludeOutboundCIDRs":null}', /has ExcludeOutboundCIDRs more than once/],
  ];
  it.each(malformed)('leaves the rendered config alone when it is %s, with a reason', async (_name, json, reason) => {
    const input = pod({ annotations: { ...injectedAnnotations, [REDIRECT]: json }, initContainers: [initContainer('consul-connect-inject-init', json)] });
    const { ops, reasons } = await run(input);
    expect(ops).toEqual([]);
    expect(reasons).toMatch(reason);
    expect(reasons).toMatch(/left alone, so OneAgent traffic stays redirected through Envoy/);
  });

  it('injected, tproxy on, but no rendered config (valueFrom env): logs the ordering problem', async () => {
    const input = pod({
      annotations: injectedAnnotations,
      initContainers: [{ name: 'consul-connect-inject-init', image: 'x', env: [{ name: ENV, valueFrom: { configMapKeyRef: { name: 'c', key: 'k' } } }] }],
    });
    const { ops, reasons } = await run(input);
    expect(ops).toEqual([]);
    expect(reasons).toMatch(/no rendered traffic config found.*make mesh-guard run before Consul's webhook/);
  });

  it('injected but Dynatrace does not inject: left alone with the reason', async () => {
    const input = pod({ namespace: 'plain', annotations: { ...injectedAnnotations, [REDIRECT]: GO_NULLS } });
    const { ops, reasons } = await run(input);
    expect(ops).toEqual([]);
    expect(reasons).toMatch(/Dynatrace does not inject OneAgent/);
  });
});

describe('consul-activegate-exclusions: dry-run', () => {
  it('global dryRun: no ops, the would-be changes are logged and audited', async () => {
    const { ops, outcome, result } = await run(meshed(), { configYaml: 'dryRun: true' });
    expect(ops).toEqual([]);
    expect(outcome?.mode).toBe('dry-run');
    expect(outcome?.changes.map((c) => c.change.kind === 'annotation' && c.change.key)).toEqual([PORTS, CIDRS]);
    expect(result.review.response.auditAnnotations).toEqual({ 'dry-run-would-mutate': RULE });
    expect(JSON.stringify(result.log)).toMatch(/transparent-proxy-exclude-outbound-ports: \(unset\) → \\"9999\\"/);
  });

  it('per-rule dry-run on an injected pod: env change reported, value withheld', async () => {
    const input = pod({ annotations: injectedAnnotations, initContainers: [initContainer('consul-connect-inject-init', GO_NULLS)] });
    const { ops, result } = await run(input, { configYaml: `rules: {${RULE}: dry-run}` });
    expect(ops).toEqual([]);
    const log = JSON.stringify(result.log);
    expect(log).toContain('env CONSUL_REDIRECT_TRAFFIC_CONFIG on initContainers[consul-connect-inject-init] updated (value withheld)');
    expect(log).not.toContain('ProxyUserID');
  });

  it('rule off: nothing at all', async () => {
    const { ops, outcome } = await run(meshed(), { configYaml: `rules: {${RULE}: 'off'}` });
    expect(ops).toEqual([]);
    expect(outcome).toBeUndefined();
  });
});

describe('consul-activegate-exclusions: runs with every rule', () => {
  it('converges with allRules', async () => {
    const { patched } = await admitAndConverge(meshed(), { namespaces, activeGateIPs: [AG_IP] });
    expect(annotationsOf(patched)[PORTS]).toBe('9999');
  });
});

describe('activeGate config is validated at startup', () => {
  it.each([
    ['activeGate: {ports: [0]}', /activeGate.ports\[0\]: expected an integer from 1 to 65535, got number 0/],
    ['activeGate: {ports: [65536]}', /activeGate.ports\[0\]/],
    ['activeGate: {ports: ["9999"]}', /activeGate.ports\[0\]: expected an integer/],
    ['activeGate: {ports: [99.5]}', /activeGate.ports\[0\]/],
    ['activeGate: {cidrs: ["10.0.0.1"]}', /activeGate.cidrs\[0\]: "10.0.0.1" is not a CIDR/],
    ['activeGate: {cidrs: ["10.0.0.0/8", "10.0.0.0/33"]}', /activeGate.cidrs\[1\]: "10.0.0.0\/33" is not a CIDR/],
    ['activeGate: {cidrs: [" 10.0.0.0/8"]}', /activeGate.cidrs\[0\]/],
    ['activeGate: {cidrs: ["010.0.0.0/8"]}', /activeGate.cidrs\[0\]/],
    ['activeGate: {cidrs: ["10.0.0.0/08"]}', /activeGate.cidrs\[0\]/],
    ['activeGate: {cidrs: ["fe80::1%eth0/64"]}', /activeGate.cidrs\[0\]/],
    ['activeGate: {cidrs: ["fd00::/129"]}', /activeGate.cidrs\[0\]/],
  ])('%s is a startup error naming the entry', (yaml, message) => {
    expect(() => parseConfig(yaml, {})).toThrow(message);
  });

  it('accepts IPv4 and IPv6 CIDRs and ports 1..65535', () => {
    const c = parseConfig('activeGate: {ports: [1, 65535], cidrs: ["10.0.0.0/8", "fd00::/8", "10.96.0.10/32"]}', {});
    expect(c.activeGate.ports).toEqual([1, 65535]);
    expect(c.activeGate.cidrs).toEqual(['10.0.0.0/8', 'fd00::/8', '10.96.0.10/32']);
  });
});

describe('addToRenderedConfig: properties', () => {
  const item = fc.oneof(fc.constantFrom('9999', '10.96.0.10/32', ' 443', '', '3.3.3.3'), fc.string());
  const list = fc.oneof(fc.constant(null), fc.array(item, { maxLength: 4 }));
  const extraKey = fc.string().filter((k) => !['excludeoutboundports', 'excludeoutboundcidrs'].includes(k.toLowerCase()));
  const config = fc.record(
    {
      ProxyUserID: fc.string(),
      ProxyInboundPort: fc.integer(),
      ExcludeInboundPorts: list,
      ExcludeOutboundPorts: list,
      ExcludeOutboundCIDRs: list,
      ExcludeUIDs: list,
    },
    { requiredKeys: [] },
  );
  const wanted = fc.record({
    ExcludeOutboundPorts: fc.array(fc.constantFrom('9999', '8443'), { maxLength: 2 }),
    ExcludeOutboundCIDRs: fc.array(fc.constantFrom('10.96.0.10/32', 'fd00::a/128'), { maxLength: 2 }),
  });

  it('keeps every other field and their order, appends only missing entries, and is idempotent', () => {
    fc.assert(
      fc.property(config, fc.dictionary(extraKey, fc.jsonValue(), { maxKeys: 3 }), wanted, fc.boolean(), (cfg, extra, want, pretty) => {
        const doc = { ...extra, ...cfg } as Record<string, unknown>;
        const json = JSON.stringify(doc, null, pretty ? 2 : undefined);
        const first = addToRenderedConfig(json, want);
        if (!first.ok) throw new Error(first.reason);
        const out = JSON.parse(first.json) as Record<string, unknown>;
        for (const [k, v] of Object.entries(doc)) {
          if (k === 'ExcludeOutboundPorts' || k === 'ExcludeOutboundCIDRs') continue;
          // Compared as JSON carries it: fc.jsonValue() may yield -0, which JSON writes as 0.
          expect(out[k]).toEqual(JSON.parse(JSON.stringify(v)));
        }
        expect(Object.keys(out).slice(0, Object.keys(doc).length)).toEqual(Object.keys(doc));
        for (const f of ['ExcludeOutboundPorts', 'ExcludeOutboundCIDRs'] as const) {
          const before = (doc[f] ?? []) as string[];
          const after = (out[f] ?? []) as string[];
          expect(after.slice(0, before.length)).toEqual(before);
          expect(after.slice(before.length)).toEqual(first.added[f]);
        }
        const second = addToRenderedConfig(first.json, want);
        expect(second).toEqual({ ok: true, json: first.json, added: { ExcludeOutboundPorts: [], ExcludeOutboundCIDRs: [] } });
      }),
      { numRuns: 300, seed: Number(process.env.FUZZ_SEED ?? 20261122) },
    );
  });
});
