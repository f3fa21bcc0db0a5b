/**
 * The informer-backed cluster view against the in-test API server, through the real
 * @kubernetes/client-node (no mocks). Timing assertions are only generous "does not hang" bounds.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { createClusterView, SYNCED_METRIC, type ClusterViewTiming } from '../src/cluster/kube-view.js';
import { offlineClusterView, type ClusterView } from '../src/cluster/view.js';
import { defaultConfig, type Config } from '../src/config/schema.js';
import { admit } from '../src/admission/handler.js';
import { peerSeesPodCreate, type WebhookDiscovery } from '../src/cluster/webhooks.js';
import { istioMetricMerging } from '../src/rules/istio-metric-merging.js';
import { FakeApiServer, kubeconfigFor } from './support/fake-apiserver.js';
import { allRules } from '../src/rules/index.js';
import { consulInjectorDeployment, istioInjectorConfigMap, istioMeshConfigMap } from './support/peer-settings.js';
import { CONSUL, configurationObject, consulSkipping, DYNATRACE_HELM, ISTIO_CANARY, ISTIO_DEFAULT } from './support/peer-webhooks.js';
import { review } from './support/review.js';

const AG_LABELS = { 'app.kubernetes.io/component': 'activegate', 'app.kubernetes.io/name': 'dynatrace-operator' };
const FAST: Partial<ClusterViewTiming> = { backoffInitialMs: 50, backoffMaxMs: 400, degradeAfterMs: 300, listTimeoutMs: 1_000 };

interface LogLine {
  level: number;
  msg: string;
  clusterView?: string;
  [k: string]: unknown;
}

function capture() {
  const lines: LogLine[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  return { log, lines };
}

function clusterCfg(over: Partial<Config['cluster']> = {}): Config['cluster'] {
  return { ...defaultConfig.cluster, syncTimeoutMs: 5_000, ...over };
}

async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 8_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for: ${what}`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function seed(server: FakeApiServer): void {
  server.create('namespaces', { metadata: { name: 'app', labels: { 'istio-injection': 'enabled' } } });
  server.create('namespaces', { metadata: { name: 'dynatrace' } });
  server.create('services', {
    metadata: { name: 'dk-activegate', namespace: 'dynatrace', labels: { ...AG_LABELS, 'app.kubernetes.io/created-by': 'dk' } },
    spec: { type: 'ClusterIP', clusterIP: '10.96.0.50', clusterIPs: ['10.96.0.50', 'fd00:10:96::50'], ports: [{ name: 'https', port: 443, targetPort: 'https' }] },
  });
  // Same labels, headless: never counts.
  server.create('services', {
    metadata: { name: 'dk-activegate-headless', namespace: 'dynatrace', labels: AG_LABELS },
    spec: { clusterIP: 'None', clusterIPs: ['None'] },
  });
  // Not an ActiveGate Service.
  server.create('services', { metadata: { name: 'web', namespace: 'app', labels: { app: 'web' } }, spec: { clusterIP: '10.96.0.99' } });
}

let server: FakeApiServer | undefined;
let view: ClusterView | undefined;

afterEach(async () => {
  await view?.close();
  await server?.close();
  view = undefined;
  server = undefined;
});

async function startView(opts: { cfg?: Partial<Config['cluster']>; timing?: Partial<ClusterViewTiming>; seedData?: boolean } = {}) {
  server = await FakeApiServer.start();
  if (opts.seedData ?? true) seed(server);
  const { log, lines } = capture();
  const registry = new Registry();
  view = createClusterView(clusterCfg(opts.cfg), { log, registry, kubeConfig: server.kubeConfig(), timing: { ...FAST, ...opts.timing } });
  return { server, view, log, lines, registry };
}

async function gaugeValue(registry: Registry): Promise<number | undefined> {
  const m = registry.getSingleMetric(SYNCED_METRIC);
  if (!m) return undefined;
  const v = await m.get();
  return v.values[0]?.value;
}

describe('cluster view (informers against the in-test API server)', () => {
  it('syncs, answers namespace labels from memory and sees a label change without a restart', async () => {
    const { server, view, registry, lines } = await startView();
    await view.ready();
    expect(view.state).toBe('synced');
    expect(await gaugeValue(registry)).toBe(1);
    expect(await view.namespaceLabels('app')).toEqual({ state: 'known', labels: { 'istio-injection': 'enabled' } });
    expect(await view.namespaceLabels('dynatrace')).toEqual({ state: 'known', labels: {} });

    server.setLabels('namespaces', undefined, 'app', { 'istio-injection': null, 'istio.io/rev': 'canary' });
    await waitFor(async () => {
      const a = await view.namespaceLabels('app');
      return a.state === 'known' && a.labels['istio.io/rev'] === 'canary';
    }, 'label change');
    expect(await view.namespaceLabels('app')).toEqual({ state: 'known', labels: { 'istio.io/rev': 'canary' } });

    // A namespace created later arrives through the watch: live GETs for it never answer here.
    server.setDelay(60_000, (r) => r.path === '/api/v1/namespaces/late');
    server.create('namespaces', { metadata: { name: 'late', labels: { 'dynakube.internal.dynatrace.com/instance': 'dk' } } });
    await waitFor(async () => (await view.namespaceLabels('late')).state === 'known', 'new namespace');
    server.setDelay(0);
    expect(lines.filter((l) => l.level >= 40)).toHaveLength(0);
  });

  it('sends list and watch requests the way the real API server expects', async () => {
    const { server, view } = await startView({ cfg: { activeGateNamespace: 'dynatrace' } });
    await view.ready();
    const svc = server.requests.filter((r) => r.path === '/api/v1/namespaces/dynatrace/services');
    const list = svc.find((r) => !r.watch);
    const watch = svc.find((r) => r.watch);
    expect(list?.query['labelSelector']).toBe(defaultConfig.cluster.activeGateLabelSelector);
    expect(watch?.query['labelSelector']).toBe(defaultConfig.cluster.activeGateLabelSelector);
    expect(watch?.query['resourceVersion']).toMatch(/^\d+$/);
    expect(watch?.query['allowWatchBookmarks']).toBe('true');
    expect(Number(watch?.query['timeoutSeconds'])).toBeGreaterThanOrEqual(300);
    expect(view.activeGateServiceIPs()).toEqual(['10.96.0.50', 'fd00:10:96::50']);
  });

  it('tracks ActiveGate Services: add, ClusterIP change, IPv6, None excluded, delete', async () => {
    const { server, view } = await startView();
    await view.ready();
    expect(view.activeGateServiceIPs()).toEqual(['10.96.0.50', 'fd00:10:96::50']);

    server.create('services', {
      metadata: { name: 'other-activegate', namespace: 'dt2', labels: AG_LABELS },
      spec: { clusterIP: '10.96.1.7' }, // only the singular field (older objects)
    });
    await waitFor(() => view.activeGateServiceIPs()?.includes('10.96.1.7') === true, 'added service');
    // Ordered by namespace/name: dt2 < dynatrace.
    expect(view.activeGateServiceIPs()).toEqual(['10.96.1.7', '10.96.0.50', 'fd00:10:96::50']);

    server.modify('services', 'dynatrace', 'dk-activegate', (s) => {
      (s as unknown as { spec: Record<string, unknown> }).spec = { clusterIP: 'fd00:10:96::77', clusterIPs: ['fd00:10:96::77', '10.96.0.77'] };
    });
    await waitFor(() => view.activeGateServiceIPs()?.includes('fd00:10:96::77') === true, 'changed ClusterIP');
    expect(view.activeGateServiceIPs()).toEqual(['10.96.1.7', 'fd00:10:96::77', '10.96.0.77']);

    // Losing the labels removes it from the selection (the watch sends DELETED).
    server.setLabels('services', 'dt2', 'other-activegate', { 'app.kubernetes.io/component': null });
    await waitFor(() => view.activeGateServiceIPs()?.length === 2, 'label removed');

    server.delete('services', 'dynatrace', 'dk-activegate');
    await waitFor(() => view.activeGateServiceIPs()?.length === 0, 'deleted service');
    expect(view.activeGateServiceIPs()).toEqual([]);
    expect(view.state).toBe('synced');
  });

  it('relists after 410 Gone and stays synced', async () => {
    const { server, view, lines } = await startView();
    await view.ready();
    server.requests.length = 0;
    server.expireResourceVersions();
    await waitFor(() => server.requests.some((r) => r.path === '/api/v1/namespaces' && !r.watch), 'relist of namespaces');
    await waitFor(() => server.watchCount('namespaces') === 1 && server.watchCount('services') === 1, 'watches back');
    server.setLabels('namespaces', undefined, 'app', { team: 'a' });
    await waitFor(async () => {
      const a = await view.namespaceLabels('app');
      return a.state === 'known' && a.labels['team'] === 'a';
    }, 'change after relist');
    expect(view.state).toBe('synced');
    expect(lines.filter((l) => l.level >= 40)).toHaveLength(0);
  });

  it('a relist after 410 removes what was deleted while the watch was gone', async () => {
    const { server, view } = await startView();
    await view.ready();
    expect((await view.namespaceLabels('app')).state).toBe('known');
    await server.stop();
    server.delete('namespaces', undefined, 'app');
    server.expireResourceVersions();
    await server.start();
    await waitFor(async () => (await view.namespaceLabels('app')).state === 'absent', 'deleted namespace gone');
    await waitFor(() => view.state === 'synced', 'synced again');
  });

  it('rewatches from its resourceVersion after a dropped connection', async () => {
    const { server, view } = await startView();
    await view.ready();
    const lastListRv = server.resourceVersion;
    server.requests.length = 0;
    server.dropConnections();
    server.setLabels('namespaces', undefined, 'app', { dropped: 'yes' });
    await waitFor(async () => {
      const a = await view.namespaceLabels('app');
      return a.state === 'known' && a.labels['dropped'] === 'yes';
    }, 'change after drop');
    const rewatch = server.requests.find((r) => r.path === '/api/v1/namespaces' && r.watch);
    expect(rewatch?.query['resourceVersion']).toBe(lastListRv); // resumed, not relisted
    expect(server.requests.some((r) => r.path === '/api/v1/namespaces' && !r.watch)).toBe(false);
    await waitFor(() => view.state === 'synced', 'synced');
  });

  it('answers a miss with one live GET: 404 becomes absent and is cached', async () => {
    const { server, view } = await startView();
    await view.ready();
    server.requests.length = 0;
    const [a, b] = await Promise.all([view.namespaceLabels('nope'), view.namespaceLabels('nope')]);
    expect(a).toEqual({ state: 'absent' });
    expect(b).toEqual({ state: 'absent' });
    expect(await view.namespaceLabels('nope')).toEqual({ state: 'absent' });
    expect(server.requests.filter((r) => r.path === '/api/v1/namespaces/nope')).toHaveLength(1);
  });

  it('answers a miss from a live GET when the informer has not seen the namespace yet', async () => {
    const { server, view } = await startView();
    await view.ready();
    // Hold back watch traffic: the namespace exists on the server, but the informer will not hear of it for a while.
    server.setDelay(60_000, (r) => r.watch);
    server.dropConnections();
    server.create('namespaces', { metadata: { name: 'fresh', labels: { 'consul.hashicorp.com/transparent-proxy': 'false' } } });
    expect(await view.namespaceLabels('fresh')).toEqual({ state: 'known', labels: { 'consul.hashicorp.com/transparent-proxy': 'false' } });
    server.setDelay(0);
  });

  it('a slow API server turns a miss into "unknown" within the bound, without retrying', async () => {
    const { server, view } = await startView({ cfg: { liveLookupTimeoutMs: 200 } });
    await view.ready();
    server.requests.length = 0;
    server.setDelay(3_000, (r) => r.path === '/api/v1/namespaces/slow');
    const t0 = Date.now();
    const answer = await view.namespaceLabels('slow');
    const elapsed = Date.now() - t0;
    expect(answer.state).toBe('unknown');
    expect(answer.state === 'unknown' && answer.reason).toMatch(/timed out after 200 ms/);
    expect(elapsed).toBeLessThan(1_500);
    // Cached: the next admission does not wait again.
    const t1 = Date.now();
    expect((await view.namespaceLabels('slow')).state).toBe('unknown');
    expect(Date.now() - t1).toBeLessThan(100);
    expect(server.requests.filter((r) => r.path === '/api/v1/namespaces/slow')).toHaveLength(1);
  });

  it('API server down: serves cached answers, degrades with one warning, recovers to synced', async () => {
    const { server, view, lines, registry } = await startView();
    await view.ready();
    expect(view.state).toBe('synced');

    await server.stop();
    await waitFor(() => view.state === 'degraded', 'degraded');
    expect(await gaugeValue(registry)).toBe(0);
    // Several retries fail meanwhile; still one warning.
    await sleep(700);
    const t0 = Date.now();
    expect(await view.namespaceLabels('app')).toEqual({ state: 'known', labels: { 'istio-injection': 'enabled' } });
    expect(view.activeGateServiceIPs()).toEqual(['10.96.0.50', 'fd00:10:96::50']);
    const miss = await view.namespaceLabels('never-seen');
    expect(miss.state).toBe('unknown');
    expect(Date.now() - t0).toBeLessThan(1_500);
    const warnings = lines.filter((l) => l.level === 40);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.clusterView).toBe('degraded');

    server.setLabels('namespaces', undefined, 'app', { during: 'outage' });
    await server.start();
    await waitFor(() => view.state === 'synced', 'synced again');
    expect(await gaugeValue(registry)).toBe(1);
    await waitFor(async () => {
      const a = await view.namespaceLabels('app');
      return a.state === 'known' && a.labels['during'] === 'outage';
    }, 'change made during the outage');
    expect(lines.filter((l) => l.level === 40)).toHaveLength(1);
    expect(lines.filter((l) => l.clusterView === 'synced')).toHaveLength(2);
  });

  it('ready() resolves after the bounded wait when the first sync cannot finish, then recovers', async () => {
    server = await FakeApiServer.start();
    seed(server);
    server.setDelay(60_000, (r) => !r.watch && r.path === '/api/v1/namespaces');
    const { log, lines } = capture();
    const registry = new Registry();
    view = createClusterView(clusterCfg({ syncTimeoutMs: 300 }), { log, registry, kubeConfig: server.kubeConfig(), timing: FAST });
    expect(view.state).toBe('syncing');
    await view.ready();
    expect(view.state).toBe('degraded');
    expect(await gaugeValue(registry)).toBe(0);
    expect(lines.filter((l) => l.level === 40)).toHaveLength(1);
    server.setDelay(0);
    // The stuck list is aborted by the list timeout (1 s here), then retried.
    await waitFor(() => view!.state === 'synced', 'synced after slow start');
    expect(await view.namespaceLabels('app')).toMatchObject({ state: 'known' });
  });

  it('ready() never rejects and close() is idempotent even when nothing listens', async () => {
    server = await FakeApiServer.start();
    const kc = server.kubeConfig();
    await server.close();
    const { log } = capture();
    view = createClusterView(clusterCfg({ syncTimeoutMs: 200 }), { log, registry: new Registry(), kubeConfig: kc, timing: FAST });
    await view.ready();
    expect(view.state).toBe('degraded');
    expect(view.activeGateServiceIPs()).toBeNull();
    expect((await view.namespaceLabels('x')).state).toBe('unknown');
    await view.close();
    await view.close();
  });

  it('connects through KUBECONFIG', async () => {
    server = await FakeApiServer.start();
    seed(server);
    const { log, lines } = capture();
    view = createClusterView(clusterCfg(), { log, registry: new Registry(), env: { KUBECONFIG: kubeconfigFor(server) }, timing: FAST });
    await view.ready();
    expect(view.state).toBe('synced');
    expect(lines[0]?.msg).toMatch(/KUBECONFIG/);
  });

  it('connects in-cluster over HTTPS with the service-account token and CA', async () => {
    server = await FakeApiServer.start({ tls: true, token: 'test-token' });
    seed(server);
    const saDir = mkdtempSync(path.join(tmpdir(), 'sa-'));
    writeFileSync(path.join(saDir, 'token'), 'test-token');
    writeFileSync(path.join(saDir, 'ca.crt'), server.caCert!);
    const { log } = capture();
    view = createClusterView(clusterCfg(), {
      log,
      registry: new Registry(),
      env: { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(server.port) },
      serviceAccountDir: saDir,
      timing: FAST,
    });
    await view.ready();
    expect(view.state).toBe('synced');
    expect(server.requests.every((r) => r.authorization === 'Bearer test-token')).toBe(true);
    expect(await view.namespaceLabels('nope')).toEqual({ state: 'absent' });
  });

  it('without any cluster it is the offline view, announced in exactly one info line', async () => {
    for (const [env, mode] of [
      [{}, 'auto'],
      [{ KUBERNETES_SERVICE_HOST: '10.0.0.1', KUBERNETES_SERVICE_PORT: '443' }, 'auto'],
      [{ KUBECONFIG: '/nonexistent/kubeconfig' }, 'auto'],
      [{ KUBECONFIG: '/nonexistent/kubeconfig' }, 'off'],
    ] as const) {
      const { log, lines } = capture();
      const registry = new Registry();
      const v = createClusterView(clusterCfg({ mode }), { log, registry, env, serviceAccountDir: '/nonexistent-sa' });
      expect(v).toBe(offlineClusterView);
      expect(v.state).toBe('off');
      expect(lines).toHaveLength(1);
      expect(lines[0]?.level).toBe(30);
      expect(lines[0]?.msg).toMatch(/^cluster view is off/);
      expect(JSON.stringify(lines[0])).not.toContain('10.0.0.1');
      expect(JSON.stringify(lines[0])).not.toContain('/nonexistent/kubeconfig');
      expect(registry.getSingleMetric(SYNCED_METRIC)).toBeUndefined();
      expect(await v.namespaceLabels('x')).toMatchObject({ state: 'unknown' });
    }
  });

  it('a second view on the same registry replaces the gauge, and close() removes it', async () => {
    const { server, registry, view: first } = await startView();
    await first.ready();
    const { log } = capture();
    const second = createClusterView(clusterCfg(), { log, registry, kubeConfig: server.kubeConfig(), timing: FAST });
    await second.ready();
    expect(await gaugeValue(registry)).toBe(1);
    await second.close();
    expect(registry.getSingleMetric(SYNCED_METRIC)).toBeUndefined();
  });

  it('close() leaves no timers behind (also after an outage with pending restarts)', async () => {
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = timers();
    const { server, view } = await startView();
    await view.ready();
    await server.stop(); // informers now wait in backoff timers
    await waitFor(() => view.state === 'degraded', 'degraded');
    await view.namespaceLabels('miss'); // a live lookup, cached with a TTL (no timer)
    await view.close();
    await server.close();
    await sleep(50);
    expect(timers()).toBeLessThanOrEqual(before);
  });
});

const MWC = 'admissionregistration.k8s.io/v1/mutatingwebhookconfigurations';
const MWC_PATH = `/apis/${MWC}`;
const isMwc = (r: { path: string }) => r.path.startsWith(MWC_PATH);

function known(d: WebhookDiscovery): Extract<WebhookDiscovery, { state: 'known' }> {
  if (d.state !== 'known') throw new Error(`webhooks unknown: ${d.reason}`);
  return d;
}

describe('cluster view: mutating webhook configurations (peer discovery)', () => {
  it('lists and watches them, answers from memory and follows add, change and delete', async () => {
    server = await FakeApiServer.start();
    seed(server);
    server.create(MWC, configurationObject(ISTIO_CANARY));
    const { log, lines } = capture();
    view = createClusterView(clusterCfg(), { log, registry: new Registry(), kubeConfig: server.kubeConfig(), timing: FAST });
    const v = view;
    await v.ready();
    expect(v.state).toBe('synced');
    expect(lines.find((l) => l.clusterView === 'synced')?.['webhookConfigurations']).toBe(1);
    const watch = server.requests.find((r) => r.path === MWC_PATH && r.watch);
    expect(watch?.query['allowWatchBookmarks']).toBe('true');
    expect(watch?.query['resourceVersion']).toMatch(/^\d+$/);

    const first = known(v.mutatingWebhooks!());
    expect(first.peers.istio.map((w) => w.name)).toEqual(['rev.namespace.sidecar-injector.istio.io', 'rev.object.sidecar-injector.istio.io']);
    expect(v.mutatingWebhooks!()).toBe(first); // the same answer until something changes
    const canaryNs = { state: 'known', labels: { 'istio.io/rev': 'canary' } } as const;
    expect(peerSeesPodCreate('istio', first, { namespace: 'app', labels: new Map() }, canaryNs).reason).toBe(
      'Istio webhook istio-sidecar-injector-canary/rev.namespace.sidecar-injector.istio.io matches: namespace label istio.io/rev=canary',
    );

    server.create(MWC, configurationObject(CONSUL));
    await waitFor(() => known(v.mutatingWebhooks!()).peers.consul.length === 1, 'Consul configuration added');
    server.modify(MWC, undefined, 'istio-sidecar-injector-canary', (o) => {
      (o['webhooks'] as Array<Record<string, unknown>>).splice(1, 1);
    });
    await waitFor(() => known(v.mutatingWebhooks!()).peers.istio.length === 1, 'Istio webhook removed');
    server.delete(MWC, undefined, 'istio-sidecar-injector-canary');
    await waitFor(() => known(v.mutatingWebhooks!()).peers.istio.length === 0, 'Istio configuration deleted');
    expect(known(v.mutatingWebhooks!()).configurations.map((c) => c.name)).toEqual(['consul-connect-injector']);
    expect(lines.filter((l) => l.level >= 40)).toHaveLength(0);
  });

  it('keeps only what matching reads: no caBundle, no CEL, no managedFields in the cache', async () => {
    server = await FakeApiServer.start();
    const obj = configurationObject(ISTIO_DEFAULT);
    obj.metadata.annotations = { 'kubectl.kubernetes.io/last-applied-configuration': 'x'.repeat(2000) };
    obj.metadata['managedFields'] = [{ manager: 'helm', operation: 'Apply' }];
    const hooks = obj['webhooks'] as Array<Record<string, unknown>>;
    hooks[0]!['matchConditions'] = [{ name: 'skip-jobs', expression: 'SECRET-CEL-TEXT' }];
    server.create(MWC, obj);
    const { log } = capture();
    view = createClusterView(clusterCfg(), { log, registry: new Registry(), kubeConfig: server.kubeConfig(), timing: FAST });
    const v = view;
    await v.ready();
    // A change arrives through the watch, the first objects through the list: both are trimmed.
    server.create(MWC, configurationObject(CONSUL));
    await waitFor(() => known(v.mutatingWebhooks!()).configurations.length === 2, 'second configuration');
    // The informer's own cache (private; looked at here because "never full objects" is the claim).
    const cache = (v as unknown as { mwcInformer: { lw: { list(): unknown[] } } }).mwcInformer.lw.list();
    const text = JSON.stringify(cache) + JSON.stringify(v.mutatingWebhooks!());
    for (const gone of ['LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t', 'SECRET-CEL-TEXT', 'last-applied', 'managedFields', 'failurePolicy', '"path"']) {
      expect(text).not.toContain(gone);
    }
    expect(known(v.mutatingWebhooks!()).peers.istio[0]!.matchConditions).toEqual(['skip-jobs']);
  });

  it('without RBAC for them the view still syncs, discovery is unknown with one warning, and recovers when granted', async () => {
    server = await FakeApiServer.start();
    seed(server);
    server.create(MWC, configurationObject(ISTIO_CANARY));
    server.setForbidden(isMwc);
    const { log, lines } = capture();
    view = createClusterView(clusterCfg(), { log, registry: new Registry(), kubeConfig: server.kubeConfig(), timing: FAST });
    const v = view;
    await v.ready();
    expect(v.state).toBe('synced');
    const d = v.mutatingWebhooks!();
    expect(d.state).toBe('unknown');
    expect(d.state === 'unknown' && d.reason).toMatch(/^not allowed to list mutatingwebhookconfigurations \(HTTP 403: mutatingwebhookconfigurations is forbidden/);
    expect(peerSeesPodCreate('istio', d, { namespace: 'app', labels: new Map() }, { state: 'known', labels: {} }).state).toBe('unknown');
    await waitFor(() => server!.requests.filter(isMwc).length >= 3, 'retries');
    const warnings = lines.filter((l) => l.level === 40);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.clusterView).toBe('webhooks-forbidden');
    expect(warnings[0]?.msg).toMatch(/deploy\/base\/rbac\.yaml/);

    server.setForbidden(undefined);
    await waitFor(() => v.mutatingWebhooks!().state === 'known', 'discovery after the grant');
    expect(known(v.mutatingWebhooks!()).peers.istio).toHaveLength(2);
    expect(v.state).toBe('synced');
  });

  it('serves the configurations it has through an API server outage', async () => {
    const { server, view } = await startView();
    server.create(MWC, configurationObject(CONSUL));
    await view.ready();
    await waitFor(() => view.mutatingWebhooks!().state === 'known' && known(view.mutatingWebhooks!()).peers.consul.length === 1, 'consul seen');
    await server.stop();
    await waitFor(() => view.state === 'degraded', 'degraded');
    expect(known(view.mutatingWebhooks!()).peers.consul).toHaveLength(1);
    await server.start();
    await waitFor(() => view.state === 'synced', 'synced again');
  });

  it('feeds the predictions: the issue-15 Istio pods through admit() with the informer-backed view', async () => {
    server = await FakeApiServer.start();
    server.create('namespaces', { metadata: { name: 'stale', labels: { 'istio-injection': 'enabled' } } });
    server.create('namespaces', { metadata: { name: 'canary', labels: { 'istio.io/rev': 'canary' } } });
    server.create(MWC, configurationObject(ISTIO_CANARY));
    const { log } = capture();
    view = createClusterView(clusterCfg(), { log, registry: new Registry(), kubeConfig: server.kubeConfig(), timing: FAST });
    await view.ready();
    const scraped = (namespace: string) => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { generateName: 'app-', namespace, annotations: { 'metrics.dynatrace.com/scrape': 'true', 'metrics.dynatrace.com/port': '8080' } },
      spec: { containers: [{ name: 'app', image: 'shop:1' }] },
    });
    const run = (namespace: string) =>
      admit(review(scraped(namespace), { namespace }).request as Parameters<typeof admit>[0], { config: defaultConfig, cluster: view!, rules: [istioMetricMerging] });
    const stale = await run('stale');
    expect(stale.ops).toEqual([]);
    expect(JSON.stringify(stale.outcomes)).toContain('no Istio webhook sees the pod');
    const canary = await run('canary');
    expect(canary.ops.length).toBeGreaterThan(0);
    expect(JSON.stringify(canary.outcomes)).toContain('Istio webhook istio-sidecar-injector-canary/rev.namespace.sidecar-injector.istio.io matches: namespace label istio.io/rev=canary');
  });

  it('the offline view does not discover webhooks', () => {
    expect(offlineClusterView.mutatingWebhooks).toBeUndefined();
  });
});

describe("cluster view: the peers' settings objects", () => {
  const CM_PATH = '/api/v1/namespaces/istio-system/configmaps';
  const DEPLOY_PATH = '/apis/apps/v1/namespaces/consul/deployments';

  async function settingsView(objects: Array<[string, Record<string, unknown>]>) {
    server = await FakeApiServer.start();
    for (const [resource, obj] of objects) server.create(resource, obj as never);
    const { log, lines } = capture();
    view = createClusterView(clusterCfg(), { log, registry: new Registry(), kubeConfig: server.kubeConfig(), timing: FAST });
    await view.ready();
    return { server, view, lines };
  }
  const lookup = (v: ClusterView, key: string) => v.peerSettings!().get(key);

  it('reads by name only the objects the webhooks point at, keeps only the parsed settings, and follows changes', async () => {
    const { server, view: v, lines } = await settingsView([
      [MWC, configurationObject(ISTIO_CANARY)],
      ['configmaps', istioInjectorConfigMap({ revision: 'canary' })],
      ['configmaps', istioMeshConfigMap('canary')],
      ['configmaps', { metadata: { name: 'istio', namespace: 'istio-system' }, data: { mesh: 'enablePrometheusMerge: false' } }],
      ['namespaces', { metadata: { name: 'consul' } }],
      ['apps/v1/deployments', consulInjectorDeployment({ defaultInject: true })],
    ]);
    await waitFor(() => lookup(v, 'istio-injector:istio-system/istio-sidecar-injector-canary')?.state === 'known', 'injector ConfigMap read');
    await waitFor(() => lookup(v, 'istio-mesh:istio-system/istio-canary')?.state === 'known', 'mesh config read');
    // Named requests only, in istiod's namespace; nothing for the default revision (no webhook for it) or Consul (none yet).
    const settingsRequests = server.requests.filter((r) => r.path.startsWith('/api/v1/namespaces/') || r.path.includes('/deployments'));
    expect(new Set(settingsRequests.map((r) => `${r.path}?${r.query['fieldSelector']}`))).toEqual(
      new Set([`${CM_PATH}?metadata.name=istio-sidecar-injector-canary`, `${CM_PATH}?metadata.name=istio-canary`]),
    );
    expect(v.peerSettings!()).toBe(v.peerSettings!()); // one answer until something changes

    server.modify('configmaps', 'istio-system', 'istio-sidecar-injector-canary', (o) => {
      const data = o['data'] as Record<string, string>;
      data['config'] = data['config']!.replace('policy: enabled', 'policy: disabled');
    });
    await waitFor(() => {
      const l = lookup(v, 'istio-injector:istio-system/istio-sidecar-injector-canary');
      return l?.state === 'known' && (l.value as { policy: string }).policy === 'disabled';
    }, 'policy change seen');

    // Consul's webhook appears: its Deployment is read from then on.
    server.create(MWC, configurationObject(CONSUL));
    await waitFor(() => lookup(v, 'consul-injector:consul/consul-connect-injector')?.state === 'known', 'Consul injector read');
    expect(server.requests.some((r) => r.path === DEPLOY_PATH && r.watch && r.query['fieldSelector'] === 'metadata.name=consul-connect-injector')).toBe(true);
    const consul = lookup(v, 'consul-injector:consul/consul-connect-injector');
    expect(consul?.state === 'known' && consul.source).toBe('Deployment consul/consul-connect-injector');

    // The caches hold no templates, command lines or environment values.
    const watcher = (v as unknown as { settingsWatcher: { informers: Map<string, { informer: { lw: { list(): unknown[] } } }> } }).settingsWatcher;
    const cached = JSON.stringify([...watcher.informers.values()].map((i) => i.informer.lw.list()));
    for (const gone of ['istio-init', 'Template_Version', 'inject-connect', 'not-a-real-token', 'consul-dataplane-image', 'meshNetworks']) expect(cached).not.toContain(gone);

    // Its webhook configuration goes: the Deployment is no longer read.
    server.delete(MWC, undefined, 'consul-connect-injector');
    await waitFor(() => lookup(v, 'consul-injector:consul/consul-connect-injector') === undefined, 'Consul injector dropped');
    expect(lines.filter((l) => l.level >= 40)).toHaveLength(0);
  });

  it('an object it may not read: one warning naming the object, the mirrors answer, the view stays synced', async () => {
    server = await FakeApiServer.start();
    server.create(MWC, configurationObject(ISTIO_CANARY));
    server.create('configmaps', istioMeshConfigMap('canary'));
    server.setForbidden((r) => r.path === CM_PATH && r.query['fieldSelector'] === 'metadata.name=istio-canary');
    const { log, lines } = capture();
    view = createClusterView(clusterCfg(), { log, registry: new Registry(), kubeConfig: server.kubeConfig(), timing: FAST });
    const v = view;
    await v.ready();
    await waitFor(() => lines.some((l) => l.clusterView === 'settings-forbidden'), 'warning');
    await waitFor(() => server!.requests.filter((r) => r.query['fieldSelector'] === 'metadata.name=istio-canary').length >= 3, 'retries');
    const l = lookup(v, 'istio-mesh:istio-system/istio-canary');
    expect(l?.state === 'unknown' && l.reason).toMatch(/^not allowed to read ConfigMap istio-system\/istio-canary \(HTTP 403/);
    expect(lines.filter((x) => x.level === 40)).toHaveLength(1);
    expect(lines.find((x) => x.clusterView === 'settings-forbidden')?.msg).toMatch(/add "istio-canary" to the resourceNames in deploy\/base\/rbac\.yaml/);
    // A missing object is unknown too, and says so.
    const injector = () => lookup(v, 'istio-injector:istio-system/istio-sidecar-injector-canary');
    await waitFor(() => injector()?.state === 'unknown' && /does not exist$/.test((injector() as { reason: string }).reason), 'absent injector');
    expect(v.state).toBe('synced');
    server.setForbidden(undefined);
    await waitFor(() => lookup(v, 'istio-mesh:istio-system/istio-canary')?.state === 'known', 'read after the grant');
  });

  it("issue 15's done-when cluster, default config, every rule: the four pods", async () => {
    const DT_NS = 'dynakube.internal.dynatrace.com/instance';
    const { view: v } = await settingsView([
      [MWC, configurationObject(ISTIO_CANARY)],
      [MWC, configurationObject(consulSkipping('skipped'))],
      [MWC, configurationObject(DYNATRACE_HELM)],
      ['configmaps', istioInjectorConfigMap({ revision: 'canary' })],
      ['configmaps', istioMeshConfigMap('canary')],
      // Consul meshes every namespace by default, but not Istio's two.
      ['apps/v1/deployments', consulInjectorDeployment({ defaultInject: true, deny: ['stale', 'canary'] })],
      ['namespaces', { metadata: { name: 'stale', labels: { 'istio-injection': 'enabled', [DT_NS]: 'dk' } } }],
      ['namespaces', { metadata: { name: 'canary', labels: { 'istio.io/rev': 'canary', [DT_NS]: 'dk' } } }],
      ['namespaces', { metadata: { name: 'meshed', labels: { [DT_NS]: 'dk' } } }],
      ['namespaces', { metadata: { name: 'skipped', labels: { [DT_NS]: 'dk' } } }],
    ]);
    await waitFor(() => [...v.peerSettings!().values()].filter((l) => l.state === 'known').length === 3, 'settings read');
    const DT = { 'metrics.dynatrace.com/scrape': 'true', 'metrics.dynatrace.com/port': '8080' };
    const pod = (namespace: string, annotations: Record<string, string> = {}) => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { generateName: 'app-', namespace, annotations },
      spec: { containers: [{ name: 'app', image: 'shop:1', ports: [{ containerPort: 8080 }] }] },
    });
    const run = async (p: ReturnType<typeof pod>) => {
      const r = await admit(review(p, { namespace: p.metadata.namespace }).request as Parameters<typeof admit>[0], { config: defaultConfig, cluster: v, rules: allRules });
      return { ops: r.ops, why: JSON.stringify(r.outcomes) };
    };
    const stale = await run(pod('stale', DT));
    expect(stale.ops, stale.why).toEqual([]);
    expect(stale.why).toContain('no Istio webhook sees the pod');

    const canary = await run(pod('canary', DT));
    expect(canary.ops).toContainEqual(expect.objectContaining({ path: '/metadata/annotations/metrics.dynatrace.com~1port', value: '15020' }));
    expect(canary.why).toContain('ConfigMap istio-system/istio-sidecar-injector-canary has policy enabled');

    const meshed = await run(pod('meshed'));
    expect(meshed.ops).toContainEqual(
      expect.objectContaining({ path: '/metadata/annotations/consul.hashicorp.com~1transparent-proxy-exclude-outbound-ports', value: '9999' }),
    );
    expect(meshed.why).toContain('the injector runs with -default-inject=true (Deployment consul/consul-connect-injector)');

    const skipped = await run(pod('skipped'));
    expect(skipped.ops, skipped.why).toEqual([]);
  });
});
