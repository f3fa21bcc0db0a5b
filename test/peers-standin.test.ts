/**
 * The Dynatrace and Consul stand-ins of the end-to-end suite (test/e2e/support/peers.ts), posted
 * to over real HTTPS with the CA they export: their patches apply (fast-json-patch, validation
 * on), the opt-outs are honoured with each peer's own value parsing, the Consul redirect config
 * holds the exclusions present when Consul saw the pod, and a second pass changes nothing.
 */
import https from 'node:https';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { MutatingWebhookConfiguration } from 'kubernetes-models/admissionregistration.k8s.io/v1';
import { Pod } from 'kubernetes-models/v1';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CONSUL_EXCLUDE_INBOUND_PORTS, CONSUL_EXCLUDE_UIDS, GO_LISTS, GO_NULLS, renderRedirectConfig } from './support/consul.js';
import { applyOps, decodePatch, review, type ReviewResponse } from './support/review.js';
import { loopbackCert } from './support/tls.js';
import { startConsul, startDynatrace, type StandIn } from './e2e/support/peers.js';

const PORTS = 'consul.hashicorp.com/transparent-proxy-exclude-outbound-ports';
const CIDRS = 'consul.hashicorp.com/transparent-proxy-exclude-outbound-cidrs';

type Response = ReviewResponse & { status?: { code: number; message: string } };

function post(s: StandIn, body: unknown): Promise<Response> {
  const url = new URL(s.url);
  const data = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: url.hostname, port: url.port, path: url.pathname, method: 'POST', ca: s.caPem, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          try {
            expect(res.statusCode).toBe(200);
            resolve((JSON.parse(Buffer.concat(chunks).toString('utf8')) as { response: Response }).response);
          } catch (e) {
            reject(e);
          }
        });
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

/** Posts the pod, checks uid and allowed, applies the patch (if any) and returns the result. */
async function admit(s: StandIn, pod: V1Pod): Promise<{ pod: V1Pod; ops: number; response: Response }> {
  const body = review(pod);
  const response = await post(s, body);
  expect(response.uid).toBe((body.request as { uid: string }).uid);
  expect(response.allowed, response.status?.message).toBe(true);
  const ops = decodePatch(response);
  const patched = ops.length ? applyOps(pod, ops) : pod;
  // The result must still be a valid Pod by the Kubernetes schema (the API server would check it too).
  new Pod(patched as ConstructorParameters<typeof Pod>[0]).validate();
  return { pod: patched, ops: ops.length, response };
}

function appPod(annotations?: Record<string, string>, containers?: V1Container[], namespace = 'shop'): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'web-1', namespace, ...(annotations ? { annotations } : {}) },
    spec: { containers: containers ?? [{ name: 'web', image: 'nginx:1.27', ports: [{ name: 'http', containerPort: 8080 }] }] },
  };
}

const names = (cs: V1Container[] | undefined) => (cs ?? []).map((c) => c.name);
const container = (p: V1Pod, name: string) => [...(p.spec?.containers ?? []), ...(p.spec?.initContainers ?? [])].find((c) => c.name === name);
const env = (c: V1Container | undefined, name: string) => c?.env?.find((e) => e.name === name)?.value;
const isInstrumented = (c: V1Container | undefined) => (c?.volumeMounts ?? []).some((m) => m.name === 'oneagent-bin');

describe('Dynatrace stand-in (pkg/webhook/mutation/pod)', () => {
  let dt: StandIn;
  beforeAll(async () => {
    dt = await startDynatrace();
  });
  afterAll(() => dt.stop());
  beforeEach(() => dt.clear());

  it('injects: init container last, CSI oneagent-bin volume, mounts and LD_PRELOAD, its annotations; a second pass is a no-op', async () => {
    const input = appPod({ existing: 'x' });
    input.spec!.initContainers = [{ name: 'migrate', image: 'migrate:1' }];
    const { pod } = await admit(dt, input);
    expect(names(pod.spec!.initContainers)).toEqual(['migrate', 'dynatrace-operator']);
    expect(pod.spec!.volumes!.find((v) => v.name === 'oneagent-bin')).toEqual({
      name: 'oneagent-bin',
      csi: { driver: 'csi.oneagent.dynatrace.com', readOnly: true, volumeAttributes: { mode: 'app', dynakube: 'dynakube', retryTimeout: '10m0s' } },
    });
    expect(pod.spec!.volumes!.map((v) => v.name)).toEqual(['oneagent-bin', 'dynatrace-input', 'dynatrace-config']);
    const web = container(pod, 'web')!;
    expect(web.volumeMounts).toEqual([
      { name: 'dynatrace-config', mountPath: '/var/lib/dynatrace', subPath: 'web' },
      { name: 'oneagent-bin', mountPath: '/opt/dynatrace/oneagent-paas', readOnly: true },
      { name: 'dynatrace-config', mountPath: '/etc/ld.so.preload', subPath: 'oneagent/ld.so.preload', readOnly: true },
    ]);
    expect(env(web, 'LD_PRELOAD')).toBe('/opt/dynatrace/oneagent-paas/agent/lib64/liboneagentproc.so');
    expect(env(web, 'DT_STORAGE')).toBe('/var/lib/dynatrace/oneagent');
    const init = container(pod, 'dynatrace-operator')!;
    expect(init.args?.slice(0, 3)).toEqual(['bootstrap', '--config-directory=/mnt/config', '--input-directory=/mnt/input']);
    expect(init.volumeMounts?.map((m) => `${m.name}:${m.mountPath}`)).toEqual(['oneagent-bin:/mnt/bin', 'dynatrace-config:/mnt/config', 'dynatrace-input:/mnt/input']);
    expect(pod.metadata!.annotations).toMatchObject({
      existing: 'x',
      'oneagent.dynatrace.com/injected': 'true',
      'dynakube.dynatrace.com/injected': 'true',
      'metadata-enrichment.dynatrace.com/injected': 'true',
    });

    const again = await admit(dt, pod);
    expect(again.ops, 'reinvocation on its own output').toBe(0);
    expect(dt.seen()).toHaveLength(2);
    expect(dt.seen()[0]).toEqual(input);
  });

  it('patches a pod with no annotations map and one with annotations: null', async () => {
    for (const meta of [{ name: 'a' }, { name: 'b', annotations: null }]) {
      const { pod } = await admit(dt, { apiVersion: 'v1', kind: 'Pod', metadata: meta as V1Pod['metadata'], spec: { containers: [{ name: 'c', image: 'i' }] } });
      expect(pod.metadata!.annotations!['oneagent.dynatrace.com/injected']).toBe('true');
    }
  });

  // webhook.go mutationRequired / util/map GetFieldBool: strconv.ParseBool, anything else is the default (inject).
  it.each([
    ['false', false], ['FALSE', false], ['0', false], ['f', false],
    ['no', true], ['off', true], ['fAlSe', true], ['', true], ['true', true],
  ])('dynatrace.com/inject=%j: injected=%s', async (value, injected) => {
    const { pod, ops } = await admit(dt, appPod({ 'dynatrace.com/inject': value }));
    expect(ops > 0).toBe(injected);
    expect(isInstrumented(container(pod, 'web'))).toBe(injected);
  });

  it('oneagent.dynatrace.com/inject=false: no init container, the NoMutationNeeded annotations (no metadata enrichment)', async () => {
    const { pod } = await admit(dt, appPod({ 'oneagent.dynatrace.com/inject': 'False' }));
    expect(pod.spec!.initContainers).toBeUndefined();
    expect(pod.spec!.volumes).toBeUndefined();
    expect(pod.metadata!.annotations).toEqual({
      'oneagent.dynatrace.com/inject': 'False',
      'dynakube.dynatrace.com/injected': 'false',
      'dynakube.dynatrace.com/reason': 'NoMutationNeeded',
    });
    expect((await admit(dt, pod)).ops).toBe(0);
  });

  it('per container: only the exact string "false" excludes; all excluded means no patch at all', async () => {
    const two = [{ name: 'web', image: 'a' }, { name: 'istio-proxy', image: 'b' }];
    const { pod } = await admit(dt, appPod({ 'container.inject.dynatrace.com/istio-proxy': 'false' }, two));
    expect(isInstrumented(container(pod, 'web'))).toBe(true);
    expect(container(pod, 'istio-proxy')).toEqual(two[1]);

    const loose = await admit(dt, appPod({ 'container.inject.dynatrace.com/istio-proxy': 'False' }, two));
    expect(isInstrumented(container(loose.pod, 'istio-proxy'))).toBe(true);

    const all = await admit(dt, appPod({ 'container.inject.dynatrace.com/web': 'false' }, [two[0]!]));
    expect(all.ops).toBe(0);
  });

  it('reinvocation instruments only containers added since (e.g. a classic istio-proxy), annotations untouched', async () => {
    const first = (await admit(dt, appPod())).pod;
    const withProxy = structuredClone(first);
    withProxy.spec!.containers.push({ name: 'istio-proxy', image: 'proxyv2', env: [{ name: 'LD_PRELOAD', value: '/lib/a.so' }] });
    const second = await admit(dt, withProxy);
    expect(second.ops).toBeGreaterThan(0);
    expect(container(second.pod, 'web')).toEqual(container(first, 'web'));
    expect(env(container(second.pod, 'istio-proxy'), 'LD_PRELOAD')).toBe('/lib/a.so:/opt/dynatrace/oneagent-paas/agent/lib64/liboneagentproc.so');
    expect(container(second.pod, 'dynatrace-operator')!.args!.at(-1)).toBe('--attribute-container={"k8s.container.name":"istio-proxy"}');
    expect(second.pod.metadata!.annotations).toEqual(first.metadata!.annotations);
    expect(second.pod.spec!.volumes).toEqual(first.spec!.volumes);
    expect((await admit(dt, second.pod)).ops).toBe(0);
    // Native sidecars (init containers) are never instrumented.
    const native = structuredClone(first);
    native.spec!.initContainers!.unshift({ name: 'istio-proxy', image: 'proxyv2', restartPolicy: 'Always' });
    expect((await admit(dt, native)).ops).toBe(0);
  });

  it('webhook configuration: dynatrace-webhook as the chart renders it, pointing at the stand-in', () => {
    const mwc = dt.webhookConfiguration();
    expect(mwc.metadata!.name).toBe('dynatrace-webhook');
    expect(mwc.webhooks).toHaveLength(1);
    expect(mwc.webhooks![0]).toEqual({
      name: 'webhook.pod.dynatrace.com',
      reinvocationPolicy: 'IfNeeded',
      failurePolicy: 'Ignore',
      timeoutSeconds: 10,
      admissionReviewVersions: ['v1'],
      sideEffects: 'None',
      rules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'], scope: 'Namespaced' }],
      namespaceSelector: { matchExpressions: [{ key: 'dynakube.internal.dynatrace.com/instance', operator: 'Exists' }] },
      clientConfig: { url: dt.url, caBundle: dt.caBundle },
    });
    new MutatingWebhookConfiguration(mwc as ConstructorParameters<typeof MutatingWebhookConfiguration>[0]).validate();
    expect(dt.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/inject$/);
    expect(Buffer.from(dt.caBundle, 'base64').toString()).toBe(dt.caPem);
  });
});

describe('Dynatrace stand-in: namespace webhook and own certificate', () => {
  it('registers webhook.ns.dynatrace.com on /label-ns when asked, answering namespaces unchanged; serves a given certificate', async () => {
    const { key, cert } = await loopbackCert();
    const dt = await startDynatrace({ namespaceWebhook: true, tls: { key, cert, caPem: cert } });
    try {
      const mwc = dt.webhookConfiguration();
      expect(mwc.webhooks!.map((w) => [w.name, w.clientConfig.url, w.rules![0]!.resources, w.rules![0]!.operations])).toEqual([
        ['webhook.pod.dynatrace.com', dt.url, ['pods'], ['CREATE']],
        ['webhook.ns.dynatrace.com', dt.url.replace(/inject$/, 'label-ns'), ['namespaces'], ['CREATE', 'UPDATE']],
      ]);
      const ns = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } };
      const response = await post(dt, review(ns, { resource: { group: '', version: 'v1', resource: 'namespaces' }, namespace: '' }));
      expect(response.allowed).toBe(true);
      expect(response.patch).toBeUndefined();
      expect(dt.seen()).toEqual([]);
      expect(dt.requests()).toHaveLength(1);
    } finally {
      await dt.stop();
    }
  });
});

describe('Dynatrace stand-in: code-module delivery', () => {
  it('ephemeral and image volumes; the pod annotation counts only when the DynaKube has a code-modules image', async () => {
    const eph = await startDynatrace({ volumeType: 'ephemeral' });
    const csiOnly = await startDynatrace();
    try {
      const e = (await admit(eph, appPod())).pod;
      expect(e.spec!.volumes!.find((v) => v.name === 'oneagent-bin')).toEqual({ name: 'oneagent-bin', emptyDir: {} });
      const init = container(e, 'dynatrace-operator')!;
      expect(init.image).toMatch(/codemodules/);
      expect(init.args![0]).toBe('--config-directory=/mnt/config');

      const img = (await admit(eph, appPod({ 'oneagent.dynatrace.com/volume-type': 'image' }))).pod;
      expect(img.spec!.volumes!.find((v) => v.name === 'oneagent-bin')!.image).toEqual({ reference: expect.stringMatching(/codemodules/), pullPolicy: 'IfNotPresent' });

      const ignored = (await admit(csiOnly, appPod({ 'oneagent.dynatrace.com/volume-type': 'ephemeral' }))).pod;
      expect(ignored.spec!.volumes!.find((v) => v.name === 'oneagent-bin')!.csi?.driver).toBe('csi.oneagent.dynatrace.com');
    } finally {
      await eph.stop();
      await csiOnly.stop();
    }
  });
});

describe('Consul stand-in (control-plane/connect-inject/webhook)', () => {
  let consul: StandIn;
  const nsLabels: Record<string, Record<string, string>> = {};
  beforeAll(async () => {
    consul = await startConsul({ namespaceLabels: (ns) => nsLabels[ns] ?? {} });
  });
  afterAll(() => consul.stop());
  beforeEach(() => consul.clear());

  const tproxyPod = (extra: Record<string, string> = {}) => appPod({ 'consul.hashicorp.com/connect-inject': 'true', ...extra });

  it('renders iptables.Config byte for byte as Go does (the hand-written fixtures)', () => {
    expect(renderRedirectConfig({})).toBe(GO_NULLS);
    const lists = { [CONSUL_EXCLUDE_INBOUND_PORTS]: '1111,11111', [PORTS]: '2222,22222', [CIDRS]: '3.3.3.3,3.3.3.3/24', [CONSUL_EXCLUDE_UIDS]: '4444,44444' };
    expect(renderRedirectConfig(lists, { consulDNS: true })).toBe(GO_LISTS);
  });

  it('injects with transparent proxy: init container with the redirect config from the exclusions present, dataplane, status', async () => {
    const input = tproxyPod({ [PORTS]: '9999, 443', [CIDRS]: '10.96.0.10/32' });
    const { pod, response } = await admit(consul, input);
    expect(response.status?.message).toBe('valid Pod request');
    expect(names(pod.spec!.initContainers)).toEqual(['consul-connect-inject-init']);
    expect(names(pod.spec!.containers)).toEqual(['web', 'consul-dataplane']);
    const rendered = env(container(pod, 'consul-connect-inject-init'), 'CONSUL_REDIRECT_TRAFFIC_CONFIG')!;
    expect(rendered).toBe(renderRedirectConfig(input.metadata!.annotations!));
    // strings.Split, no trimming: the space stays (and breaks iptables at pod start, not here).
    expect(JSON.parse(rendered)).toMatchObject({ ExcludeOutboundPorts: ['9999', ' 443'], ExcludeOutboundCIDRs: ['10.96.0.10/32'], ExcludeInboundPorts: null });
    expect(pod.metadata!.annotations).toMatchObject({
      'consul.hashicorp.com/connect-inject-status': 'injected',
      'consul.hashicorp.com/transparent-proxy-status': 'enabled',
      'consul.hashicorp.com/connect-service-port': 'http',
      'consul.hashicorp.com/dual-stack': 'false',
    });
    expect(JSON.parse(pod.metadata!.annotations!['consul.hashicorp.com/original-pod']!)).toEqual(input);
    expect(pod.metadata!.labels).toEqual({
      'consul.hashicorp.com/connect-inject-status': 'injected',
      'consul.hashicorp.com/connect-inject-managed-by': 'consul-k8s-endpoints-controller',
    });
    expect(pod.spec!.volumes).toEqual([{ name: 'consul-connect-inject-data', emptyDir: { medium: 'Memory' } }]);
    expect(consul.seen()).toEqual([input]);
  });

  it('the config is rendered once: exclusions added after Consul injected never reach it, and a second pass is a no-op', async () => {
    const { pod } = await admit(consul, tproxyPod());
    const before = env(container(pod, 'consul-connect-inject-init'), 'CONSUL_REDIRECT_TRAFFIC_CONFIG');
    expect(before).toBe(GO_NULLS);
    const later = structuredClone(pod);
    later.metadata!.annotations![PORTS] = '9999';
    const again = await admit(consul, later);
    expect(again.ops).toBe(0);
    expect(again.response.status?.message).toBe('Pod web-1 does not require injection');
    expect(env(container(again.pod, 'consul-connect-inject-init'), 'CONSUL_REDIRECT_TRAFFIC_CONFIG')).toBe(GO_NULLS);
  });

  it('CNI mode: the config goes into the redirect-traffic-config annotation, the init container runs unprivileged', async () => {
    const cni = await startConsul({ cni: true });
    try {
      const { pod } = await admit(cni, tproxyPod({ [PORTS]: '9999' }));
      expect(pod.metadata!.annotations!['consul.hashicorp.com/redirect-traffic-config']).toBe(GO_NULLS.replace('"ExcludeOutboundPorts":null', '"ExcludeOutboundPorts":["9999"]'));
      const init = container(pod, 'consul-connect-inject-init')!;
      expect(env(init, 'CONSUL_REDIRECT_TRAFFIC_CONFIG')).toBeUndefined();
      expect(init.securityContext?.runAsUser).toBe(5996);
    } finally {
      await cni.stop();
    }
  });

  it('transparent proxy: pod annotation, then the namespace label, then the default', async () => {
    nsLabels['no-tproxy'] = { 'consul.hashicorp.com/transparent-proxy': 'false' };
    const off = (await admit(consul, appPod({ 'consul.hashicorp.com/connect-inject': 'true' }, undefined, 'no-tproxy'))).pod;
    expect(env(container(off, 'consul-connect-inject-init'), 'CONSUL_REDIRECT_TRAFFIC_CONFIG')).toBeUndefined();
    expect(off.metadata!.annotations!['consul.hashicorp.com/transparent-proxy-status']).toBeUndefined();
    const on = (await admit(consul, appPod({ 'consul.hashicorp.com/connect-inject': 'true', 'consul.hashicorp.com/transparent-proxy': 'true' }, undefined, 'no-tproxy'))).pod;
    expect(env(container(on, 'consul-connect-inject-init'), 'CONSUL_REDIRECT_TRAFFIC_CONFIG')).toBe(GO_NULLS);
  });

  it('metrics: the scrape port is excluded from inbound redirection, prometheus.io/* point at it, merging adds the dataplane flags', async () => {
    const input = tproxyPod({
      'consul.hashicorp.com/enable-metrics': 'true',
      'consul.hashicorp.com/enable-metrics-merging': 'T',
      'consul.hashicorp.com/service-metrics-port': '8080',
      'consul.hashicorp.com/service-metrics-path': '/actuator/prometheus',
      [CONSUL_EXCLUDE_INBOUND_PORTS]: '9090',
    });
    const { pod } = await admit(consul, input);
    const rendered = JSON.parse(env(container(pod, 'consul-connect-inject-init'), 'CONSUL_REDIRECT_TRAFFIC_CONFIG')!) as Record<string, unknown>;
    expect(rendered.ExcludeInboundPorts).toEqual(['20200', '9090']);
    expect(pod.metadata!.annotations).toMatchObject({ 'prometheus.io/scrape': 'true', 'prometheus.io/port': '20200', 'prometheus.io/path': '/metrics' });
    const dataplane = container(pod, 'consul-dataplane')!;
    expect(dataplane.ports).toEqual([{ name: 'prometheus', containerPort: 20200, protocol: 'TCP' }]);
    expect(dataplane.args).toEqual(expect.arrayContaining([
      '-telemetry-prom-scrape-path=/metrics',
      '-telemetry-prom-merge-port=20100',
      '-telemetry-prom-service-metrics-url=http://127.0.0.1:8080/actuator/prometheus',
    ]));

    const custom = (await admit(consul, tproxyPod({ 'consul.hashicorp.com/enable-metrics': 'true', 'consul.hashicorp.com/prometheus-scrape-port': '20300', 'consul.hashicorp.com/prometheus-scrape-path': '/m' }))).pod;
    expect(JSON.parse(env(container(custom, 'consul-connect-inject-init'), 'CONSUL_REDIRECT_TRAFFIC_CONFIG')!).ExcludeInboundPorts).toEqual(['20300']);
    expect(custom.metadata!.annotations).toMatchObject({ 'prometheus.io/port': '20300', 'prometheus.io/path': '/m' });
  });

  // metrics_configuration.go / mesh_webhook.go shouldInject: strconv.ParseBool, an invalid value fails the request.
  it.each([
    [{ 'consul.hashicorp.com/connect-inject': 'yes' }, 'error checking if should inject: strconv.ParseBool: parsing "yes": invalid syntax'],
    [{ 'consul.hashicorp.com/connect-inject': 'true', 'consul.hashicorp.com/enable-metrics': 'on' },
      'error configuring injection init container: consul.hashicorp.com/enable-metrics annotation value of on was invalid: strconv.ParseBool: parsing "on": invalid syntax'],
    [{ 'consul.hashicorp.com/connect-inject': 'true', 'consul.hashicorp.com/transparent-proxy': 'false', 'consul.hashicorp.com/enable-metrics': 'on' },
      'error configuring injection sidecar container: unable to determine if merged metrics is enabled: consul.hashicorp.com/enable-metrics annotation value of on was invalid: strconv.ParseBool: parsing "on": invalid syntax'],
    [{ 'consul.hashicorp.com/connect-inject': 'true', 'consul.hashicorp.com/enable-metrics-merging': 'nope' },
      'error configuring injection sidecar container: unable to determine if merged metrics is enabled: consul.hashicorp.com/enable-metrics-merging annotation value of nope was invalid: strconv.ParseBool: parsing "nope": invalid syntax'],
    [{ 'consul.hashicorp.com/connect-inject': 'true', 'consul.hashicorp.com/enable-metrics': 'true', 'consul.hashicorp.com/prometheus-scrape-port': '80' },
      'error configuring injection init container: consul.hashicorp.com/prometheus-scrape-port annotation value of 80 is not in the unprivileged port range 1024-65535'],
  ])('%j is refused like the real webhook (allowed: false, code 500)', async (annotations, message) => {
    const response = await post(consul, review(appPod(annotations)));
    expect(response.allowed).toBe(false);
    expect(response.patch).toBeUndefined();
    expect(response.status).toEqual({ code: 500, message });
  });

  it('empty metrics annotations mean the default; no connect-inject annotation and connectInject.default false: untouched', async () => {
    expect((await admit(consul, tproxyPod({ 'consul.hashicorp.com/enable-metrics': '' }))).pod.metadata!.annotations!['prometheus.io/port']).toBeUndefined();
    expect((await admit(consul, appPod())).ops).toBe(0);
    expect((await admit(consul, appPod({ 'consul.hashicorp.com/connect-inject': 'true' }, undefined, 'kube-system'))).ops).toBe(0);
    const byDefault = await startConsul({ defaultInject: true });
    try {
      expect((await admit(byDefault, appPod())).pod.metadata!.annotations!['consul.hashicorp.com/connect-inject-status']).toBe('injected');
      expect((await admit(byDefault, appPod({ 'consul.hashicorp.com/connect-inject': '0' }))).ops).toBe(0);
    } finally {
      await byDefault.stop();
    }
  });

  it('webhook configuration: consul-consul-connect-injector as the chart renders its pod webhook', () => {
    const mwc = consul.webhookConfiguration('https://127.0.0.1:1/mutate', 'Q0E=');
    expect(mwc.metadata!.name).toBe('consul-consul-connect-injector');
    expect(mwc.webhooks).toEqual([
      {
        name: 'consul-consul-connect-injector.consul.hashicorp.com',
        objectSelector: { matchExpressions: [{ key: 'app', operator: 'NotIn', values: ['consul'] }] },
        failurePolicy: 'Fail',
        sideEffects: 'None',
        admissionReviewVersions: ['v1beta1', 'v1'],
        clientConfig: { url: 'https://127.0.0.1:1/mutate', caBundle: 'Q0E=' },
        rules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'] }],
        namespaceSelector: {
          matchExpressions: [
            { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-system', 'local-path-storage', 'openebs', 'gmp-system', 'gke-managed-cim'] },
            { key: 'openshift.io/cluster-monitoring', operator: 'DoesNotExist' },
          ],
        },
      },
    ]);
    new MutatingWebhookConfiguration(mwc as ConstructorParameters<typeof MutatingWebhookConfiguration>[0]).validate();
    expect(mwc.webhooks![0]).not.toHaveProperty('reinvocationPolicy');
    expect(mwc.webhooks![0]).not.toHaveProperty('timeoutSeconds');
  });
});
