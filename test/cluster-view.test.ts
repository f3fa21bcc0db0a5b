/**
 * The informer-backed cluster view under faults a real API server does not produce on demand,
 * through the real @kubernetes/client-node against test/support/fake-apiserver.ts: 410 Gone, a
 * dropped watch, stalled and slow answers, objects changed while the server is down; plus the
 * view without any cluster. Everything a working API server does (list/watch, labels, ClusterIPs,
 * 404s, TLS and tokens, a real outage) is tested against kube-apiserver in
 * test/e2e/cluster-view.e2e.ts. Timing assertions are only generous "does not hang" bounds.
 */
import pino from 'pino';
import { Registry } from 'prom-client';
import { KubeConfig, type V1Service } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import { clusterIPsOf, createClusterView, refusedForGood, SYNCED_METRIC, type ClusterViewTiming } from '../src/cluster/kube-view.js';
import { offlineClusterView, type ClusterView } from '../src/cluster/view.js';
import { defaultConfig, type Config } from '../src/config/schema.js';
import { FakeApiServer } from './support/fake-apiserver.js';
import { freePort } from './support/process.js';

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

/** A namespace and an ActiveGate Service: both informers have something to list and watch. */
function seed(server: FakeApiServer): void {
  server.create('namespaces', { metadata: { name: 'app', labels: { 'istio-injection': 'enabled' } } });
  server.create('namespaces', { metadata: { name: 'dynatrace' } });
  server.create('services', {
    metadata: { name: 'dk-activegate', namespace: 'dynatrace', labels: AG_LABELS },
    spec: { type: 'ClusterIP', clusterIP: '10.96.0.50', clusterIPs: ['10.96.0.50'], ports: [{ name: 'https', port: 443, targetPort: 'https' }] },
  });
}

let server: FakeApiServer | undefined;
let view: ClusterView | undefined;

afterEach(async () => {
  await view?.close();
  await server?.close();
  view = undefined;
  server = undefined;
});

async function startView(opts: { cfg?: Partial<Config['cluster']> } = {}) {
  server = await FakeApiServer.start();
  seed(server);
  const { log, lines } = capture();
  const registry = new Registry();
  view = createClusterView(clusterCfg(opts.cfg), { log, registry, kubeConfig: server.kubeConfig(), timing: FAST });
  return { server, view, lines, registry };
}

async function gaugeValue(registry: Registry): Promise<number | undefined> {
  const m = registry.getSingleMetric(SYNCED_METRIC);
  if (!m) return undefined;
  const v = await m.get();
  return v.values[0]?.value;
}

describe('cluster view under API server faults (fake API server)', () => {
  it('a namespace created after the sync arrives through the watch, while live GETs for it stall', async () => {
    const { server, view, lines } = await startView();
    await view.ready();
    server.setDelay(60_000, (r) => r.path === '/api/v1/namespaces/late');
    server.create('namespaces', { metadata: { name: 'late', labels: { 'dynakube.internal.dynatrace.com/instance': 'dk' } } });
    await waitFor(async () => (await view.namespaceLabels('late')).state === 'known', 'new namespace');
    server.setDelay(0);
    expect(lines.filter((l) => l.level >= 40)).toHaveLength(0);
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
});

describe('cluster view without an API server', () => {
  it('ready() never rejects and close() is idempotent when nothing listens', async () => {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: `http://127.0.0.1:${await freePort()}`, skipTLSVerify: true }],
      users: [{ name: 'u' }],
      contexts: [{ name: 'ctx', cluster: 'c', user: 'u' }],
      currentContext: 'ctx',
    });
    const { log } = capture();
    view = createClusterView(clusterCfg({ syncTimeoutMs: 200 }), { log, registry: new Registry(), kubeConfig: kc, timing: FAST });
    await view.ready();
    expect(view.state).toBe('degraded');
    expect(view.activeGateServiceIPs()).toBeNull();
    expect((await view.namespaceLabels('x')).state).toBe('unknown');
    await view.close();
    await view.close();
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
});

describe('clusterIPsOf', () => {
  const svc = (namespace: string, name: string, spec: V1Service['spec']): V1Service => ({ metadata: { namespace, name }, spec });
  it('takes clusterIPs, or the singular clusterIP of objects written before dual-stack; leaves out None and duplicates', () => {
    // The API server has filled clusterIPs since 1.20, so only a fake (or an old object) lacks it.
    expect(
      clusterIPsOf([
        svc('dynatrace', 'dk-activegate', { clusterIP: '10.96.0.50', clusterIPs: ['10.96.0.50', 'fd00:10:96::50'] }),
        svc('dt2', 'old-activegate', { clusterIP: '10.96.1.7' }),
        svc('dynatrace', 'headless', { clusterIP: 'None', clusterIPs: ['None'] }),
        svc('dynatrace', 'twin', { clusterIPs: ['10.96.0.50'] }),
        svc('dynatrace', 'external', { type: 'ExternalName', externalName: 'ag.example.com' }),
      ]),
    ).toEqual(['10.96.1.7', '10.96.0.50', 'fd00:10:96::50']);
  });
});

describe('cluster view: peer discovery without a cluster', () => {
  it('the offline view does not discover webhooks', () => {
    expect(offlineClusterView.mutatingWebhooks).toBeUndefined();
  });
});

describe('refusedForGood: when a 403 is missing RBAC rather than an API server that just started', () => {
  it.each([
    ['never listed: the first 403', { lastErrorCode: 403, synced: false, refusals: 1 }, true],
    ['listed before: one 403 right after a restart', { lastErrorCode: 403, synced: true, refusals: 1 }, false],
    ['listed before: three 403s in a row', { lastErrorCode: 403, synced: true, refusals: 3 }, false],
    ['listed before: four 403s in a row', { lastErrorCode: 403, synced: true, refusals: 4 }, true],
    ['not a 403', { lastErrorCode: 500, synced: false, refusals: 0 }, false],
    ['no error', { lastErrorCode: undefined, synced: true, refusals: 0 }, false],
  ] as const)('%s', (_name, informer, expected) => {
    expect(refusedForGood(informer)).toBe(expected);
  });
});
