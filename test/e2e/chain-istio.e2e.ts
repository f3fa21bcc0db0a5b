/**
 * The whole chain as the API server runs it, in its name order: `0-mesh-guard` (deploy/base),
 * `consul-consul-connect-injector` (stand-in), `dynatrace-webhook` (stand-in) and
 * `istio-sidecar-injector` (Istio's real injector), each with the reinvocationPolicy its peer
 * ships (IfNeeded, Never, IfNeeded, Never). Each scenario asserts the pod as the API server stored
 * it and what the peer that matters was shown; the API server's audit log says which webhook it
 * called in which round and with which patch.
 */
import { CoreV1Api, KubernetesObjectApi, PatchStrategy, SchedulingV1Api, type V1Container, type V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SKIP_ANNOTATION } from '../../src/admission/annotations.js';
import { POD_AUDIT_POLICY, podEvents, webhookCalls, type WebhookCall } from './support/audit.js';
import { startControlPlane, type ControlPlane } from './support/controlplane.js';
import { startIstioInjector, type IstioInjector } from './support/istio-injector.js';
import { startMeshGuard, type MeshGuard } from './support/mesh-guard.js';
import { DT, startConsul, startDynatrace, type StandIn } from './support/peers.js';
import { annotations, createPod, eventually } from './support/pods.js';
import { apply, istioWebhookConfiguration } from './support/webhooks.js';

const DT_NS = { 'dynakube.internal.dynatrace.com/instance': 'dynakube' };
const MESH_GUARD = '0-mesh-guard';
const MERGED = { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '15020', 'prometheus.io/path': '/stats/prometheus' };

/**
 * A pod of the Dynatrace CSI driver DaemonSet as the Helm chart renders it (dynatrace.md §3;
 * Dynatrace/dynatrace-operator config/helm/chart/default/templates/Common/csi/daemonset.yaml):
 * not hostNetwork, so a mesh sidecar would make it wait for the mesh CNI.
 */
function csiDriverPod(name: string): V1Pod {
  const image = 'public.ecr.aws/dynatrace/dynatrace-operator:v1.11.0';
  const plugin = { name: 'plugin-dir', mountPath: '/csi' };
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: 'dynatrace',
      labels: {
        'app.kubernetes.io/name': 'dynatrace-operator',
        'app.kubernetes.io/component': 'csi-driver',
        'app.kubernetes.io/version': '1.11.0',
        'app.kubernetes.io/managed-by': 'Helm',
        'helm.sh/chart': 'dynatrace-operator-1.11.0',
        'internal.oneagent.dynatrace.com/app': 'csi-driver',
        'internal.oneagent.dynatrace.com/component': 'csi-driver',
        'pod-template-generation': '1',
      },
      annotations: {
        'dynatrace.com/inject': 'false',
        'kubectl.kubernetes.io/default-container': 'provisioner',
        'cluster-autoscaler.kubernetes.io/enable-ds-eviction': 'false',
      },
    },
    spec: {
      serviceAccountName: 'dynatrace-oneagent-csi-driver',
      priorityClassName: 'dynatrace-high-priority',
      dnsPolicy: 'ClusterFirst',
      tolerations: [{ operator: 'Exists' }],
      initContainers: [{ name: 'csi-init', image, args: ['csi-init'], volumeMounts: [plugin] }],
      containers: [
        {
          name: 'server',
          image,
          args: ['csi-server', '--endpoint=unix://csi/csi.sock', '--node-id=$(KUBE_NODE_NAME)'],
          env: [{ name: 'KUBE_NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } }],
          securityContext: { privileged: true, runAsUser: 0 },
          volumeMounts: [plugin, { name: 'mountpoint-dir', mountPath: '/var/lib/kubelet/pods', mountPropagation: 'Bidirectional' }, { name: 'dynatrace-oneagent-data-dir', mountPath: '/data', mountPropagation: 'Bidirectional' }],
        },
        {
          name: 'provisioner',
          image,
          args: ['csi-provisioner', '--node-id=$(KUBE_NODE_NAME)'],
          env: [{ name: 'KUBE_NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } }],
          securityContext: { privileged: true, runAsUser: 0 },
          volumeMounts: [{ name: 'dynatrace-oneagent-data-dir', mountPath: '/data', mountPropagation: 'Bidirectional' }],
        },
        {
          name: 'registrar',
          image: 'registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.13.0',
          args: ['--csi-address=/csi/csi.sock', '--kubelet-registration-path=/var/lib/kubelet/plugins/csi.oneagent.dynatrace.com/csi.sock'],
          volumeMounts: [plugin, { name: 'registration-dir', mountPath: '/registration' }],
        },
        { name: 'liveness-probe', image: 'registry.k8s.io/sig-storage/livenessprobe:v2.15.0', args: ['--csi-address=/csi/csi.sock'], volumeMounts: [plugin] },
      ],
      volumes: [
        { name: 'registration-dir', hostPath: { path: '/var/lib/kubelet/plugins_registry/', type: 'Directory' } },
        { name: 'plugin-dir', hostPath: { path: '/var/lib/kubelet/plugins/csi.oneagent.dynatrace.com', type: 'DirectoryOrCreate' } },
        { name: 'mountpoint-dir', hostPath: { path: '/var/lib/kubelet/pods', type: 'DirectoryOrCreate' } },
        { name: 'dynatrace-oneagent-data-dir', hostPath: { path: '/var/lib/kubelet/plugins/csi.oneagent.dynatrace.com/data', type: 'DirectoryOrCreate' } },
      ],
    },
  };
}

/** A long-running app in an Istio-injected, Dynatrace-monitored namespace that asks Dynatrace to scrape :8080/metrics. */
function scrapedApp(name: string, extra: Record<string, string> = {}): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: 'shop',
      labels: { app: 'web' },
      annotations: { 'metrics.dynatrace.com/scrape': 'true', 'metrics.dynatrace.com/port': '8080', 'metrics.dynatrace.com/path': '/metrics', ...extra },
    },
    spec: { containers: [{ name: 'web', image: 'acme/web:1.4', ports: [{ containerPort: 8080, name: 'http' }] }] },
  };
}

const allContainers = (pod: V1Pod): V1Container[] => [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])];
const container = (pod: V1Pod, name: string) => allContainers(pod).find((c) => c.name === name);
const env = (c: V1Container | undefined, name: string) => c?.env?.find((e) => e.name === name)?.value;

describe('mesh-guard, Consul, Dynatrace and the real Istio injector in one API server chain', () => {
  let cp: ControlPlane;
  let mg: MeshGuard;
  let dt: StandIn;
  let consul: StandIn;
  let istio: IstioInjector;
  let activeGateIP: string;

  /** What the peer was shown for pod `name` in its first call (Dynatrace, IfNeeded, may be called again after Istio). */
  const shownTo = (peer: StandIn, name: string) => peer.seen().find((p) => p.metadata?.name === name);
  const shownToIstio = (name: string) =>
    istio
      .requests()
      .map((r) => r.object as V1Pod)
      .find((p) => p.metadata?.name === name);
  /** The API server's own record of the webhook calls for the nth (1-based) `verb` of pod namespace/name. */
  const callsFor = (namespace: string, name: string, nth = 1, verb = 'create') =>
    eventually(`audit event of ${verb} ${nth} of ${namespace}/${name}`, 10_000, async () => {
      const e = podEvents(cp.auditLogPath!, verb, namespace, name)[nth - 1];
      return e && webhookCalls(e);
    });
  const meshGuardCalls = (calls: WebhookCall[]) => calls.filter((c) => c.configuration === MESH_GUARD);
  /** mesh-guard's admission log lines for pod `name`, once there are `count` (its stdout arrives after the API answer). */
  const admissionLines = (name: string, count: number) =>
    eventually(`${count} admission lines for ${name}`, 5_000, async () => {
      const lines = mg.lines().filter((l) => l.msg === 'admission' && l.pod === name);
      return lines.length >= count ? lines : undefined;
    });

  beforeAll(async () => {
    cp = await startControlPlane({ auditPolicy: POD_AUDIT_POLICY });
    const core = cp.kc.makeApiClient(CoreV1Api);
    // The operator's namespace is in the mesh (namespace-wide injection), which is what makes the CSI driver pod a risk.
    await cp.ensureNamespace('dynatrace', { 'istio-injection': 'enabled' });
    await cp.ensureNamespace('shop', { 'istio-injection': 'enabled', ...DT_NS });
    await cp.ensureNamespace('payments', DT_NS);
    await core.createNamespacedServiceAccount({ namespace: 'dynatrace', body: { metadata: { name: 'dynatrace-oneagent-csi-driver' } } });
    // The chart's priority class (the Priority admission plugin rejects a pod that names a missing one).
    await cp.kc.makeApiClient(SchedulingV1Api).createPriorityClass({ body: { metadata: { name: 'dynatrace-high-priority' }, value: 1000000, globalDefault: false } });
    // The in-cluster ActiveGate's Service (dynatrace.md §3, service.go CreateService), before mesh-guard starts, so its first sync has it.
    const svc = await core.createNamespacedService({
      namespace: 'dynatrace',
      body: {
        metadata: {
          name: 'dynakube-activegate',
          labels: { 'app.kubernetes.io/name': 'dynatrace-operator', 'app.kubernetes.io/created-by': 'dynakube', 'app.kubernetes.io/component': 'activegate' },
        },
        spec: {
          type: 'ClusterIP',
          selector: { 'app.kubernetes.io/name': 'activegate', 'app.kubernetes.io/created-by': 'dynakube', 'app.kubernetes.io/managed-by': 'dynatrace-operator' },
          ports: [
            { name: 'https', port: 443, targetPort: 'https', protocol: 'TCP' },
            { name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' },
          ],
        },
      },
    });
    activeGateIP = svc.spec!.clusterIP!;

    mg = await startMeshGuard(cp);
    await eventually('cluster view synced', 30_000, async () => ((await mg.clusterView()) === 'synced' ? true : undefined));
    const tls = await cp.issueServingCert();
    dt = await startDynatrace({ tls });
    consul = await startConsul({ tls });
    istio = await startIstioInjector({ tls: { cert: tls.cert, key: tls.key, ca: tls.caPem } });
    await apply(cp.kc, [dt.webhookConfiguration(), consul.webhookConfiguration(), istioWebhookConfiguration(istio.url, cp.caPem)]);
    // The API server's webhook manager picks new configurations up asynchronously: wait until a pod reaches all three.
    let probe = 0;
    await eventually('all three peers called', 30_000, async () => {
      const name = `probe-${++probe}`;
      await createPod(cp, { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'shop' }, spec: { containers: [{ name: 'app', image: 'acme/app:1' }] } });
      return shownTo(consul, name) && shownTo(dt, name) && shownToIstio(name) ? true : undefined;
    });
  });
  afterAll(async () => {
    await istio?.stop();
    await consul?.stop();
    await dt?.stop();
    await mg?.stop();
    await cp?.stop();
  });

  it('the Dynatrace CSI driver pod is kept out of the meshes before Istio sees it', async () => {
    const name = 'dynatrace-oneagent-csi-driver-x7k2p';
    const stored = await createPod(cp, csiDriverPod(name));
    // Consul (called for every pod outside its system namespaces) was shown the opt-out.
    expect(annotations(shownTo(consul, name)!)['consul.hashicorp.com/connect-inject']).toBe('false');
    // Istio's selectors read the pod label sidecar.istio.io/inject NotIn [false]: with mesh-guard's label
    // on the pod the API server does not call Istio at all, though the namespace has istio-injection=enabled.
    expect(shownToIstio(name), 'Istio was called for the CSI driver pod').toBeUndefined();
    const calls = await callsFor('dynatrace', name);
    expect(calls.map((c) => c.configuration)).not.toContain('istio-sidecar-injector');
    expect(meshGuardCalls(calls)[0]).toMatchObject({ round: 0, mutated: true });

    expect(stored.metadata!.labels).toMatchObject({ 'sidecar.istio.io/inject': 'false', 'istio.io/dataplane-mode': 'none' });
    expect(annotations(stored)['consul.hashicorp.com/connect-inject']).toBe('false');
    expect(allContainers(stored).map((c) => c.name)).toEqual(['csi-init', 'server', 'provisioner', 'registrar', 'liveness-probe']);
    expect(annotations(stored)['sidecar.istio.io/status']).toBeUndefined();
    expect(annotations(stored)['consul.hashicorp.com/connect-inject-status']).toBeUndefined();
  });

  it('without mesh-guard the same CSI driver pod gets istio-proxy (the namespace is injected: the opt-out above is what kept Istio away)', async () => {
    const name = 'dynatrace-oneagent-csi-driver-skip1';
    const pod = csiDriverPod(name);
    pod.metadata!.annotations![SKIP_ANNOTATION] = 'true';
    const stored = await createPod(cp, pod);
    expect(shownToIstio(name)!.metadata!.labels!['sidecar.istio.io/inject']).toBeUndefined();
    expect(container(stored, 'istio-proxy')).toBeDefined();
  });

  /** The stored pod of a scraped app after the whole chain: Istio's merged endpoint, Dynatrace pointed at it. */
  function expectMergedForDynatrace(stored: V1Pod): void {
    const a = annotations(stored);
    expect(a).toMatchObject(MERGED);
    expect(a).toMatchObject({ 'metrics.dynatrace.com/scrape': 'true', 'metrics.dynatrace.com/port': '15020', 'metrics.dynatrace.com/path': '/stats/prometheus' });
    expect(JSON.parse(a['metrics.dynatrace.com/filter']!)).toEqual({ mode: 'exclude', names: ['istio_*', 'envoy_*'] });
    const proxy = container(stored, 'istio-proxy');
    expect(proxy, 'istio-proxy injected').toBeDefined();
    expect(JSON.parse(env(proxy, 'ISTIO_PROMETHEUS_ANNOTATIONS')!)).toEqual({ scrape: 'true', path: '/metrics', port: '8080' });
    expect(a['sidecar.istio.io/status']).toBeDefined();
    // Dynatrace injected the app too (the stand-in is in the chain).
    expect(stored.spec!.initContainers!.map((c) => c.name)).toContain(DT.initContainer);
  }

  it('a meshed app asking for Dynatrace scraping: Istio merged the app endpoint it was shown, Dynatrace points at :15020', async () => {
    const name = 'web-merge';
    const stored = await createPod(cp, scrapedApp(name));
    expect(annotations(shownToIstio(name)!)).toMatchObject({ 'prometheus.io/scrape': 'true', 'prometheus.io/port': '8080', 'prometheus.io/path': '/metrics' });
    expectMergedForDynatrace(stored);
  });

  it('Istio\'s change reinvokes mesh-guard (IfNeeded), and the second call yields no patch', async () => {
    const name = 'web-reinvoked';
    const stored = await createPod(cp, scrapedApp(name));
    const all = await callsFor('shop', name);
    // The chain in the API server's order: round 0 by configuration name, round 1 the IfNeeded
    // webhooks called before Istio's change (webhook-engineering.md §1.6).
    expect(all.map((c) => [c.round, c.configuration])).toEqual([
      [0, MESH_GUARD],
      [0, 'consul-consul-connect-injector'],
      [0, 'dynatrace-webhook'],
      [0, 'istio-sidecar-injector'],
      [1, MESH_GUARD],
      [1, 'dynatrace-webhook'],
    ]);
    const calls = meshGuardCalls(all);
    expect(calls.map((c) => [c.round, c.mutated])).toEqual([
      [0, true],
      [1, false],
    ]);
    expect(calls[1]!.patch).toBeUndefined();
    // mesh-guard's own account of the two calls: the second was shown Istio's output and changed nothing.
    const lines = await admissionLines(name, 2);
    expect(lines.map((l) => [l.outcome, l.ops])).toEqual([
      ['patched', expect.any(Number)],
      ['unchanged', 0],
    ]);
    expectMergedForDynatrace(stored);
  });

  it('a Consul transparent-proxy pod in a Dynatrace namespace: the ActiveGate exclusions are in the rendered redirect config, after the pod\'s own', async () => {
    const name = 'ledger-tproxy';
    const stored = await createPod(cp, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name,
        namespace: 'payments',
        annotations: {
          'consul.hashicorp.com/connect-inject': 'true',
          'consul.hashicorp.com/transparent-proxy-exclude-outbound-ports': '8125',
          'consul.hashicorp.com/transparent-proxy-exclude-outbound-cidrs': '10.96.0.10/32',
        },
      },
      spec: { containers: [{ name: 'ledger', image: 'acme/ledger:2', ports: [{ containerPort: 8080 }] }] },
    });
    // Consul was shown the exclusions merged into the pod's own (consul.md §1: read once, at its admission).
    expect(annotations(shownTo(consul, name)!)).toMatchObject({
      'consul.hashicorp.com/transparent-proxy-exclude-outbound-ports': '8125,9999',
      'consul.hashicorp.com/transparent-proxy-exclude-outbound-cidrs': `10.96.0.10/32,${activeGateIP}/32`,
    });
    expect(annotations(stored)).toMatchObject({ 'consul.hashicorp.com/connect-inject-status': 'injected', 'consul.hashicorp.com/transparent-proxy-status': 'enabled' });
    const rendered = JSON.parse(env(container(stored, 'consul-connect-inject-init'), 'CONSUL_REDIRECT_TRAFFIC_CONFIG')!) as Record<string, unknown>;
    expect(rendered.ExcludeOutboundPorts).toEqual(['8125', '9999']);
    expect(rendered.ExcludeOutboundCIDRs).toEqual(['10.96.0.10/32', `${activeGateIP}/32`]);
    // Dynatrace came after Consul and injected the app, whose OneAgent now reaches the ActiveGate around Envoy.
    expect(container(stored, 'ledger')!.volumeMounts!.map((m) => m.name)).toContain(DT.binVolume);
  });

  it(`a pod with ${SKIP_ANNOTATION}: "true" is stored without any mesh-guard change, and every peer saw it as written`, async () => {
    const name = 'web-skip';
    const written = scrapedApp(name, { [SKIP_ANNOTATION]: 'true' });
    const stored = await createPod(cp, written);
    const calls = meshGuardCalls(await callsFor('shop', name));
    expect(calls.length).toBeGreaterThan(0);
    expect(calls.every((c) => !c.mutated)).toBe(true);
    expect((await admissionLines(name, calls.length)).map((l) => [l.outcome, l.reason])).toEqual(
      calls.map(() => ['opted-out', `${SKIP_ANNOTATION} is true`]),
    );
    // Consul and Dynatrace come before Istio and were shown exactly what the user wrote.
    for (const peer of [consul, dt]) {
      const shown = shownTo(peer, name)!;
      expect(shown.metadata!.annotations).toEqual(written.metadata!.annotations);
      expect(shown.metadata!.labels).toEqual(written.metadata!.labels);
    }
    // Istio was shown what the user wrote plus Dynatrace's own keys, none of mesh-guard's.
    const toIstio = shownToIstio(name)!;
    expect(annotations(toIstio)).toMatchObject(written.metadata!.annotations!);
    const dynatraceKeys = Object.keys(annotations(toIstio)).filter((k) => !(k in written.metadata!.annotations!));
    expect(dynatraceKeys.every((k) => /dynatrace\.com\//.test(k))).toBe(true);
    expect(toIstio.metadata!.labels).toEqual(written.metadata!.labels);

    const a = annotations(stored);
    expect(a).toMatchObject({ ...written.metadata!.annotations, ...MERGED });
    expect(a['sidecar.istio.io/nativeSidecar']).toBeUndefined();
    expect(a['metrics.dynatrace.com/filter']).toBeUndefined();
    // Without mesh-guard Istio found no app endpoint to merge, and made istio-proxy a native sidecar.
    expect(env(container(stored, 'istio-proxy'), 'ISTIO_PROMETHEUS_ANNOTATIONS')).toBeUndefined();
    expect(stored.spec!.initContainers!.find((c) => c.name === 'istio-proxy')?.restartPolicy).toBe('Always');
  });

  describe('the same pod twice (no drift)', () => {
    const FIELD_MANAGER = 'kubectl';
    const ssa = (pod: V1Pod) => KubernetesObjectApi.makeApiClient(cp.kc).patch(pod, undefined, undefined, FIELD_MANAGER, true, PatchStrategy.ServerSideApply) as Promise<V1Pod>;
    const read = (name: string) => cp.kc.makeApiClient(CoreV1Api).readNamespacedPod({ name, namespace: 'shop' });

    /** Applies the scraped app twice; the stored pod after each apply. */
    async function applyTwice(name: string) {
      await ssa(scrapedApp(name));
      const first = await read(name);
      await ssa(scrapedApp(name));
      return { first, second: await read(name) };
    }

    it('server-side apply of the same manifest twice: nothing mesh-guard added is stripped, and mesh-guard is not called again', async () => {
      const name = 'web-applied';
      const written = scrapedApp(name).metadata!.annotations!;
      const { first, second } = await applyTwice(name);
      expectMergedForDynatrace(first);
      // How the API server attributes webhook mutations: not at all. The create's managedFields are
      // computed before admission, so the applier owns exactly its manifest's fields and what the
      // webhooks added belongs to no manager; an apply removes only fields its manager owned.
      expect(first.metadata!.managedFields!.map((m) => [m.manager, m.operation])).toEqual([[FIELD_MANAGER, 'Apply']]);
      const owned = Object.keys((first.metadata!.managedFields![0]!.fieldsV1 as { 'f:metadata': { 'f:annotations': object } })['f:metadata']['f:annotations']);
      expect(owned.sort()).toEqual(Object.keys(written).map((k) => `f:${k}`).sort());
      const added = Object.entries(annotations(first)).filter(([k]) => !(k in written));
      expect(added.length).toBeGreaterThan(0);
      expect(Object.entries(annotations(second)).filter(([k]) => !(k in written))).toEqual(added);
      expect(second.metadata!.labels).toEqual(first.metadata!.labels);
      expect(second.spec).toEqual(first.spec);
      // Both applies are PATCH requests; the first creates the pod (through the whole chain), the
      // second is an UPDATE, which no webhook of the chain (CREATE only, all four) is called for.
      expect(meshGuardCalls(await callsFor('shop', name, 1, 'patch')).map((c) => c.mutated)).toEqual([true, false]);
      expect(await callsFor('shop', name, 2, 'patch')).toEqual([]);
    });

    // KNOWN DRIFT (reported to the lead, not fixed here): mesh-guard repoints the user's own
    // metrics.dynatrace.com/port|path (8080 /metrics → 15020 /stats/prometheus) on CREATE. Those
    // fields stay owned by the applier, so the second apply of the same manifest writes the user's
    // values back, as an UPDATE that no webhook in the chain is registered for: Dynatrace then
    // scrapes the app port, which STRICT mTLS closes to the ActiveGate. Istio's own rewrite of a
    // user-written prometheus.io/* reverts the same way. Flip to it() once mesh-guard handles UPDATE.
    it.fails('server-side apply twice keeps Dynatrace pointed at the merged endpoint (fails today: the drift above)', async () => {
      const { first, second } = await applyTwice('web-reapplied');
      expect(annotations(second)).toEqual(annotations(first));
      expect(second.metadata!.resourceVersion).toBe(first.metadata!.resourceVersion);
    });

    it('create, delete, create of the same manifest: the second pod equals the first, with the same mesh-guard patch', async () => {
      const name = 'web-recreated';
      const core = cp.kc.makeApiClient(CoreV1Api);
      const first = await createPod(cp, scrapedApp(name));
      const firstPatches = meshGuardCalls(await callsFor('shop', name)).map((c) => c.patch);
      await core.deleteNamespacedPod({ name, namespace: 'shop' });
      await eventually('pod gone', 10_000, async () => core.readNamespacedPod({ name, namespace: 'shop' }).then(() => undefined, () => true));
      const second = await createPod(cp, scrapedApp(name));
      expectMergedForDynatrace(second);
      expect(normalized(second)).toEqual(normalized(first));
      const calls = await callsFor('shop', name, 2);
      expect(meshGuardCalls(calls).map((c) => c.patch)).toEqual(firstPatches);
    });
  });
});

/** What must be equal between two creations of one manifest: all but identity, time and the token volume's random suffix. */
function normalized(pod: V1Pod): unknown {
  const text = JSON.stringify({ metadata: { ...pod.metadata, uid: undefined, resourceVersion: undefined, creationTimestamp: undefined, managedFields: undefined }, spec: pod.spec });
  return JSON.parse(text.replace(/kube-api-access-[a-z0-9]{5}/g, 'kube-api-access-*'));
}
