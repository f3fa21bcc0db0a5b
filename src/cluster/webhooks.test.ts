/**
 * The peers' webhook configurations as their installers render them (test/support/peer-webhooks.ts
 * says from which templates), and what the API server decides for a pod CREATE against each
 * (webhooks.ts cites the apiserver code).
 */
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  CONSUL,
  consulSkipping,
  DYNATRACE_HELM,
  DYNATRACE_OLM,
  ISTIO_CANARY,
  ISTIO_DEFAULT,
  ISTIO_LEGACY_WEBHOOKS,
  ISTIO_TAG_STABLE,
  mwc,
} from '../../test/support/peer-webhooks.js';
import type { NamespaceLookup } from './view.js';
import {
  knownDiscovery,
  peerOf,
  peerSeesPodCreate,
  ruleCoversPodCreate,
  summarizeConfiguration,
  trimConfiguration,
  webhookSeesPodCreate,
  describeWebhook,
  type Peer,
  type WebhookConfigurationSummary,
  type WebhookDiscovery,
  type WebhookRule,
} from './webhooks.js';

function summary(text: string): WebhookConfigurationSummary {
  const s = summarizeConfiguration(parse(text));
  if (!s) throw new Error('no summary');
  return s;
}

const discovery = (...texts: string[]): WebhookDiscovery => knownDiscovery(texts.map(summary));
const known = (labels: Record<string, string>): NamespaceLookup => ({ state: 'known', labels });
const pod = (namespace: string, labels: Record<string, string> = {}) => ({ namespace, labels: new Map(Object.entries(labels)) });

describe('webhooks: rules.Matcher for a pod CREATE', () => {
  const base: WebhookRule = { operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], scope: '*' };
  it.each<[string, Partial<WebhookRule>, boolean]>([
    ['CREATE "" v1 pods', {}, true],
    ['operations *', { operations: ['*'] }, true],
    ['UPDATE only', { operations: ['UPDATE'] }, false],
    ['CREATE among others', { operations: ['UPDATE', 'CREATE'] }, true],
    ['apiGroups *', { apiGroups: ['*'] }, true],
    ['apiGroups apps', { apiGroups: ['apps'] }, false],
    ['apiVersions *', { apiVersions: ['*'] }, true],
    ['apiVersions v1beta1', { apiVersions: ['v1beta1'] }, false],
    ['resources *', { resources: ['*'] }, true],
    ['resources */* (every resource and subresource)', { resources: ['*/*'] }, true],
    ['resources pods/* (also the pod itself: "*" matches the empty subresource)', { resources: ['pods/*'] }, true],
    ['resources pods/status', { resources: ['pods/status'] }, false],
    ['resources */exec', { resources: ['*/exec'] }, false],
    ['resources deployments', { resources: ['deployments'] }, false],
    ['resources empty', { resources: [] }, false],
    ['scope Namespaced', { scope: 'Namespaced' }, true],
    ['scope Cluster', { scope: 'Cluster' }, false],
    ['scope unknown value', { scope: 'Other' }, false],
  ])('%s', (_, over, covers) => {
    expect(ruleCoversPodCreate({ ...base, ...over })).toBe(covers);
  });

  it('an absent scope is "*"', () => {
    const s = summary(mwc('x', `\n- name: a.example.com\n  rules: [{operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [pods]}]`));
    expect(s.webhooks[0]!.rules[0]!.scope).toBe('*');
  });
});

describe('webhooks: which webhooks are the peers\'', () => {
  it.each<[string, string, Peer | undefined]>([
    ['istio-sidecar-injector', 'namespace.sidecar-injector.istio.io', 'istio'],
    ['istio-sidecar-injector', 'object.sidecar-injector.istio.io', 'istio'],
    ['istio-sidecar-injector-canary', 'rev.namespace.sidecar-injector.istio.io', 'istio'],
    ['istio-sidecar-injector-1-24-2-istio-other', 'rev.object.sidecar-injector.istio.io', 'istio'],
    ['istio-revision-tag-default', 'auto.sidecar-injector.istio.io', 'istio'],
    ['istio-revision-tag-stable-istio-other', 'rev.namespace.sidecar-injector.istio.io', 'istio'],
    ['istio-validator-istio-system', 'rev.validation.istio.io', undefined],
    ['my-sidecar-injector', 'namespace.sidecar-injector.istio.io', undefined],
    ['consul-connect-injector', 'consul-connect-injector.consul.hashicorp.com', 'consul'],
    ['consul-consul-connect-injector', 'consul-consul-connect-injector.consul.hashicorp.com', 'consul'],
    ['mesh-connect-injector', 'mesh-connect-injector.consul.hashicorp.com', 'consul'],
    ['consul-connect-injector', 'mutate-proxydefaults.consul.hashicorp.com', undefined],
    ['consul-connect-injector', 'other-connect-injector.consul.hashicorp.com', undefined],
    ['dynatrace-webhook', 'webhook.pod.dynatrace.com', 'dynatrace'],
    ['dynatrace-webhook', 'webhook.ns.dynatrace.com', undefined],
    ['webhook.pod.dynatrace.com-7x4kq', 'webhook.pod.dynatrace.com', 'dynatrace'],
    ['webhook.ns.dynatrace.com-abcde', 'webhook.ns.dynatrace.com', undefined],
    ['0-mesh-guard', 'pods.mesh-guard.io', undefined],
  ])('%s / %s → %s', (configuration, webhook, peer) => {
    expect(peerOf(configuration, webhook)).toBe(peer);
  });

  it('groups them by peer in the order the API server calls them (configuration names byte-wise)', () => {
    const d = discovery(ISTIO_TAG_STABLE, CONSUL, ISTIO_CANARY, DYNATRACE_HELM, ISTIO_DEFAULT);
    if (d.state !== 'known') throw new Error('unknown');
    expect(d.configurations.map((c) => c.name)).toEqual([
      'consul-connect-injector',
      'dynatrace-webhook',
      'istio-revision-tag-stable',
      'istio-sidecar-injector',
      'istio-sidecar-injector-canary',
    ]);
    expect(d.peers.consul.map((w) => w.name)).toEqual(['consul-connect-injector.consul.hashicorp.com']);
    expect(d.peers.dynatrace.map((w) => w.name)).toEqual(['webhook.pod.dynatrace.com']);
    expect(d.peers.istio.map((w) => `${w.configuration}/${w.name.split('.sidecar')[0]}`)).toEqual([
      'istio-revision-tag-stable/rev.namespace',
      'istio-revision-tag-stable/rev.object',
      'istio-sidecar-injector/rev.namespace',
      'istio-sidecar-injector/rev.object',
      'istio-sidecar-injector/namespace',
      'istio-sidecar-injector/object',
      'istio-sidecar-injector-canary/rev.namespace',
      'istio-sidecar-injector-canary/rev.object',
    ]);
    expect(d.peers.istio[0]!.service).toEqual({ namespace: 'istio-system', name: 'istiod-canary' });
  });
});

describe('webhooks: Istio, default revision (istio-sidecar-injector)', () => {
  const d = discovery(ISTIO_DEFAULT);
  it.each<[string, Record<string, string>, Record<string, string>, 'yes' | 'no', string]>([
    ['istio-injection=enabled', { 'istio-injection': 'enabled' }, {}, 'yes', 'istio-sidecar-injector/namespace.sidecar-injector.istio.io matches: namespace label istio-injection=enabled'],
    ['istio-injection=enabled, pod inject=false', { 'istio-injection': 'enabled' }, { 'sidecar.istio.io/inject': 'false' }, 'no', 'pod label sidecar.istio.io/inject=false, selector wants sidecar.istio.io/inject notin (false)'],
    ['istio-injection=enabled, pod inject=true', { 'istio-injection': 'enabled' }, { 'sidecar.istio.io/inject': 'true' }, 'yes', 'namespace.sidecar-injector.istio.io matches'],
    ['istio-injection=disabled', { 'istio-injection': 'disabled' }, { 'sidecar.istio.io/inject': 'true' }, 'no', 'namespace label istio-injection=disabled'],
    ['istio.io/rev=default', { 'istio.io/rev': 'default' }, {}, 'yes', 'istio-sidecar-injector/rev.namespace.sidecar-injector.istio.io matches: namespace label istio.io/rev=default'],
    ['both labels: the legacy one wins', { 'istio-injection': 'enabled', 'istio.io/rev': 'default' }, {}, 'yes', '/namespace.sidecar-injector.istio.io matches'],
    ['istio.io/rev=canary (not served here)', { 'istio.io/rev': 'canary' }, {}, 'no', 'no Istio webhook sees the pod'],
    ['no labels, pod inject=true', {}, { 'sidecar.istio.io/inject': 'true' }, 'yes', '/object.sidecar-injector.istio.io matches: pod label sidecar.istio.io/inject=true'],
    ['no labels, pod istio.io/rev=default', {}, { 'istio.io/rev': 'default' }, 'yes', '/rev.object.sidecar-injector.istio.io matches: pod label istio.io/rev=default'],
    ['no labels, pod inject=true and istio.io/rev=canary', {}, { 'sidecar.istio.io/inject': 'true', 'istio.io/rev': 'canary' }, 'no', 'no Istio webhook sees the pod'],
    ['no labels at all (no auto webhook without enableNamespacesByDefault)', {}, {}, 'no', 'no Istio webhook sees the pod'],
  ])('%s', (_, nsLabels, podLabels, state, reason) => {
    const v = peerSeesPodCreate('istio', d, pod('app', podLabels), known(nsLabels));
    expect(v.state).toBe(state);
    expect(v.reason).toContain(reason);
    expect(v.webhooks).toHaveLength(4);
  });
});

describe('webhooks: Istio, revision canary only (the stale-label case of issue 15)', () => {
  const d = discovery(ISTIO_CANARY);
  it('a stale istio-injection=enabled matches no webhook: no sidecar comes', () => {
    const v = peerSeesPodCreate('istio', d, pod('stale'), known({ 'istio-injection': 'enabled' }));
    expect(v.state).toBe('no');
    expect(v.reason).toBe(
      'no Istio webhook sees the pod: ' +
        'istio-sidecar-injector-canary/rev.namespace.sidecar-injector.istio.io: namespaceSelector does not match: namespace label istio-injection=enabled, selector wants it absent; ' +
        'istio-sidecar-injector-canary/rev.object.sidecar-injector.istio.io: namespaceSelector does not match: namespace label istio-injection=enabled, selector wants it absent',
    );
  });

  it('istio.io/rev=canary matches, and the reason names configuration, webhook and label', () => {
    const v = peerSeesPodCreate('istio', d, pod('canary'), known({ 'istio.io/rev': 'canary' }));
    expect(v).toMatchObject({
      peer: 'istio',
      state: 'yes',
      reason: 'Istio webhook istio-sidecar-injector-canary/rev.namespace.sidecar-injector.istio.io matches: namespace label istio.io/rev=canary',
    });
  });

  it('a pod labelled istio.io/rev=canary in an unlabelled namespace', () => {
    const v = peerSeesPodCreate('istio', d, pod('plain', { 'istio.io/rev': 'canary' }), known({}));
    expect(v.state).toBe('yes');
    expect(v.reason).toContain('rev.object.sidecar-injector.istio.io matches: pod label istio.io/rev=canary');
  });

  it('a revision tag is its own configuration with the tag as the value', () => {
    const v = peerSeesPodCreate('istio', discovery(ISTIO_CANARY, ISTIO_TAG_STABLE), pod('tagged'), known({ 'istio.io/rev': 'stable' }));
    expect(v.reason).toBe('Istio webhook istio-revision-tag-stable/rev.namespace.sidecar-injector.istio.io matches: namespace label istio.io/rev=stable');
  });

  it('unknown namespace labels: unknown, unless the object selector already says no', () => {
    const unknownNs: NamespaceLookup = { state: 'unknown', reason: 'cluster view not synced' };
    const v = peerSeesPodCreate('istio', d, pod('x'), unknownNs);
    expect(v.state).toBe('unknown');
    expect(v.reason).toBe('Istio webhook istio-sidecar-injector-canary/rev.namespace.sidecar-injector.istio.io: namespace labels unknown (cluster view not synced)');
    expect(peerSeesPodCreate('istio', d, pod('x', { 'sidecar.istio.io/inject': 'false' }), unknownNs).state).toBe('no');
  });

  it('a namespace that does not exist: the API server does not create the pod', () => {
    const v = peerSeesPodCreate('istio', d, pod('gone'), { state: 'absent' });
    expect(v.state).toBe('no');
    expect(v.reason).toContain('namespace gone does not exist');
  });
});

describe('webhooks: Consul (consul-connect-injector, the chart\'s default namespaceSelector)', () => {
  const d = discovery(CONSUL);
  it.each<[string, string, Record<string, string>, Record<string, string>, 'yes' | 'no', string]>([
    ['an ordinary namespace', 'app', {}, {}, 'yes', 'Consul webhook consul-connect-injector/consul-connect-injector.consul.hashicorp.com matches: its selectors exclude neither the namespace nor the pod'],
    ['kube-system (by the label the API server sets)', 'kube-system', {}, {}, 'no', 'namespace label kubernetes.io/metadata.name=kube-system, selector wants kubernetes.io/metadata.name notin (gke-managed-cim,gmp-system,kube-system,local-path-storage,openebs)'],
    ['gmp-system with the label present', 'gmp-system', { 'kubernetes.io/metadata.name': 'gmp-system' }, {}, 'no', 'kubernetes.io/metadata.name=gmp-system'],
    ['an OpenShift monitoring namespace', 'mon', { 'openshift.io/cluster-monitoring': 'true' }, {}, 'no', 'namespace label openshift.io/cluster-monitoring=true, selector wants it absent'],
    ['Consul\'s own pods (app=consul)', 'consul', {}, { app: 'consul' }, 'no', 'objectSelector does not match: pod label app=consul'],
    ['app=web', 'app', {}, { app: 'web' }, 'yes', 'matches'],
  ])('%s', (_, ns, nsLabels, podLabels, state, reason) => {
    const v = peerSeesPodCreate('consul', d, pod(ns, podLabels), known(nsLabels));
    expect(v.state).toBe(state);
    expect(v.reason).toContain(reason);
    expect(v.webhooks.map((w) => w.webhook)).toEqual(['consul-connect-injector/consul-connect-injector.consul.hashicorp.com']);
  });

  it('a namespaceSelector that skips one namespace (issue 15, done-when)', () => {
    const custom = consulSkipping('skipped');
    const v = peerSeesPodCreate('consul', discovery(custom), pod('skipped'), known({ 'kubernetes.io/metadata.name': 'skipped' }));
    expect(v.state).toBe('no');
    expect(peerSeesPodCreate('consul', discovery(custom), pod('meshed'), known({})).state).toBe('yes');
  });
});

describe('webhooks: Dynatrace', () => {
  it('Helm: namespaces the operator labelled', () => {
    const d = discovery(DYNATRACE_HELM);
    const yes = peerSeesPodCreate('dynatrace', d, pod('app'), known({ 'dynakube.internal.dynatrace.com/instance': 'dk' }));
    expect(yes.reason).toBe('Dynatrace webhook dynatrace-webhook/webhook.pod.dynatrace.com matches: namespace label dynakube.internal.dynatrace.com/instance=dk');
    const no = peerSeesPodCreate('dynatrace', d, pod('app'), known({}));
    expect(no.state).toBe('no');
    expect(no.reason).toContain('no namespace label dynakube.internal.dynatrace.com/instance, selector wants it set');
  });

  it('OLM: every namespace', () => {
    const v = peerSeesPodCreate('dynatrace', discovery(DYNATRACE_OLM), pod('any'), known({}));
    expect(v.state).toBe('yes');
    expect(v.reason).toContain('webhook.pod.dynatrace.com-7x4kq/webhook.pod.dynatrace.com matches');
  });
});

describe('webhooks: what mesh-guard cannot tell', () => {
  it('matchConditions make a matching webhook "maybe", with their names', () => {
    const withConditions = DYNATRACE_OLM.replace(
      '  sideEffects: None\n  failurePolicy: Ignore\n  timeoutSeconds: 10\n- name: webhook.ns',
      '  sideEffects: None\n  failurePolicy: Ignore\n  matchConditions:\n  - name: not-jobs\n    expression: "!has(object.metadata.ownerReferences)"\n- name: webhook.ns',
    );
    const v = peerSeesPodCreate('dynatrace', discovery(withConditions), pod('any'), known({}));
    expect(v.state).toBe('maybe');
    expect(v.reason).toContain('matchConditions (not-jobs), CEL expressions that mesh-guard cannot evaluate');
    // A webhook whose selectors already exclude the pod is still "no".
    const excluded = withConditions.replace('namespaceSelector: {}', 'namespaceSelector: {matchLabels: {x: y}}');
    expect(peerSeesPodCreate('dynatrace', discovery(excluded), pod('any'), known({})).state).toBe('no');
  });

  it('an invalid selector (which the API server would not have stored) is unknown', () => {
    const bad = DYNATRACE_HELM.replace('operator: Exists', 'operator: Present');
    const v = peerSeesPodCreate('dynatrace', discovery(bad), pod('any'), known({ 'dynakube.internal.dynatrace.com/instance': 'dk' }));
    expect(v.state).toBe('unknown');
    expect(v.reason).toContain('"Present" is not a valid label selector operator');
  });

  it('discovery unknown, or the peer not found', () => {
    const off: WebhookDiscovery = { state: 'unknown', reason: 'not allowed to list mutatingwebhookconfigurations (HTTP 403)' };
    expect(peerSeesPodCreate('consul', off, pod('a'), known({}))).toEqual({
      peer: 'consul',
      state: 'unknown',
      reason: 'Consul webhooks unknown: not allowed to list mutatingwebhookconfigurations (HTTP 403)',
      webhooks: [],
    });
    const none = peerSeesPodCreate('istio', discovery(CONSUL), pod('a'), known({}));
    expect(none.state).toBe('unknown');
    expect(none.reason).toMatch(/^no Istio webhook found/);
  });

  it('several matching webhooks: the first in calling order decides, the others are counted', () => {
    const v = peerSeesPodCreate('istio', discovery(ISTIO_DEFAULT, mwc('istio-sidecar-injector-other', ISTIO_LEGACY_WEBHOOKS)), pod('a'), known({ 'istio-injection': 'enabled' }));
    expect(v.reason).toBe('Istio webhook istio-sidecar-injector/namespace.sidecar-injector.istio.io matches: namespace label istio-injection=enabled (and 1 more Istio webhook)');
  });

  it('webhookSeesPodCreate on a webhook whose rules do not cover pods', () => {
    const s = summary(DYNATRACE_HELM).webhooks[1]!;
    expect(webhookSeesPodCreate(s, pod('a'), known({}))).toEqual({ state: 'no', webhook: 'dynatrace-webhook/webhook.ns.dynatrace.com', reason: 'its rules do not cover pod CREATE' });
  });
});

describe('webhooks: what is kept', () => {
  it('trimConfiguration drops caBundles, CEL and everything matching does not read; the summary is the same', () => {
    const full = parse(DYNATRACE_OLM.replace('  timeoutSeconds: 10\n- name: webhook.ns', '  timeoutSeconds: 10\n  matchConditions:\n  - name: c1\n    expression: "true"\n- name: webhook.ns')) as Record<string, any>;
    full['metadata'] = { name: 'webhook.pod.dynatrace.com-7x4kq', uid: 'u1', resourceVersion: '42', annotations: { big: 'x'.repeat(1000) }, managedFields: [{}] };
    full['webhooks'][0].clientConfig.caBundle = 'LS0t';
    const trimmed = trimConfiguration(full);
    const text = JSON.stringify(trimmed);
    for (const gone of ['caBundle', 'expression', 'timeoutSeconds', 'failurePolicy', 'annotations', 'managedFields', '/inject']) expect(text).not.toContain(gone);
    expect(trimmed['metadata']).toEqual({ name: 'webhook.pod.dynatrace.com-7x4kq', uid: 'u1', resourceVersion: '42' });
    expect(summarizeConfiguration(trimmed)).toEqual(summarizeConfiguration(full));
  });

  it('reads hostile shapes without throwing', () => {
    for (const o of [null, 1, 'x', [], {}, { metadata: null }, { metadata: { name: 'a' }, webhooks: 'x' }, { metadata: { name: 'a' }, webhooks: [null, 1, { rules: 'x', name: 5 }] }]) {
      expect(() => summarizeConfiguration(o)).not.toThrow();
      expect(() => trimConfiguration(o as { metadata?: unknown })).not.toThrow();
    }
    expect(summarizeConfiguration({ metadata: { name: 'a' }, webhooks: [{ name: 'w', clientConfig: { url: 'https://x' } }] })?.webhooks[0]?.service).toBeNull();
  });

  it('describeWebhook prints the selectors in labels.Selector syntax', () => {
    expect(describeWebhook(summary(ISTIO_CANARY).webhooks[0]!)).toBe(
      'istio-sidecar-injector-canary/rev.namespace.sidecar-injector.istio.io: namespaceSelector !istio-injection,istio.io/rev in (canary), objectSelector sidecar.istio.io/inject notin (false)',
    );
    expect(describeWebhook(summary(DYNATRACE_OLM).webhooks[0]!)).toContain('namespaceSelector everything, objectSelector everything');
  });
});
