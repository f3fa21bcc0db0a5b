/**
 * `mesh-guard audit` and `mesh-guard doctor` against the in-test API server, seeded with
 * realistic objects: an injected istio-cni pod, a CSI driver pod with a sidecar, a meshed pod
 * scraping its app port, a Consul tproxy pod with OneAgent, webhook configurations in good
 * and bad orders, serving certificates good and about to expire. A small proxy in front of
 * the fake server answers 403 for chosen paths and pages lists (limit/continue), which the
 * fake server itself does not do.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { V1Pod } from '@kubernetes/client-node';
import { generate } from 'selfsigned';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { analyse, renderAuditTable, type AuditReport } from '../src/cli/audit.js';
import { parseConfig } from '../src/config/load.js';
import { memoryIO } from '../src/cli/common.js';
import type { DoctorReport } from '../src/cli/doctor.js';
import { discoveryOf } from '../src/cli/peers.js';
import { settingsFromObjects } from '../src/cluster/peer-settings.js';
import { run } from '../src/cli/main.js';
import { FakeApiServer, type KubeObject } from './support/fake-apiserver.js';
import { consulInjectorDeployment, istioInjectorConfigMap, istioMeshConfigMap } from './support/peer-settings.js';
import { configurationObject, CONSUL, ISTIO_CANARY } from './support/peer-webhooks.js';
import { repoRoot } from './support/review.js';

const DAY = 86_400_000;
const MWC = 'admissionregistration.k8s.io/v1/mutatingwebhookconfigurations';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mg-cli-cluster-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function kubeconfig(url: string, name: string): string {
  const file = path.join(tmp, `${name}.kubeconfig`);
  fs.writeFileSync(
    file,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'c', cluster: { server: url, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'u', user: {} }],
      contexts: [{ name: 'ctx', context: { cluster: 'c', user: 'u' } }],
      'current-context': 'ctx',
    }),
  );
  return file;
}

async function cli(args: string[], env: NodeJS.ProcessEnv) {
  const io = memoryIO({ env: { HOME: tmp, ...env } });
  const code = await run(args, io);
  return { code, stdout: io.stdout(), stderr: io.stderr() };
}

/** CLI_DOCS_DIR=dir keeps the outputs docs/cli.md quotes (real output, not hand-written). */
function keepForDocs(name: string, r: { code: number; stdout: string; stderr: string }): void {
  const dir = process.env.CLI_DOCS_DIR;
  if (dir) fs.writeFileSync(path.join(dir, name), `${r.stdout}${r.stderr ? `--- stderr ---\n${r.stderr}` : ''}--- exit ${r.code} ---\n`);
}

/**
 * A proxy to the fake API server: 403 for paths `forbid` selects, and limit/continue paging
 * of list responses (the continue token is the offset).
 */
async function startProxy(upstream: string, forbid: (p: string) => boolean = () => false): Promise<{ url: string; paged: string[]; close(): Promise<void> }> {
  const paged: string[] = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (forbid(url.pathname)) {
      const body = JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Forbidden', code: 403, message: `${url.pathname} is forbidden: User "system:serviceaccount:ci:auditor" cannot do that` });
      res.writeHead(403, { 'content-type': 'application/json' }).end(body);
      return;
    }
    const limit = Number(url.searchParams.get('limit') ?? '0');
    const offset = Number(url.searchParams.get('continue') ?? '0');
    url.searchParams.delete('limit');
    url.searchParams.delete('continue');
    const up = http.request(`${upstream}${url.pathname}${url.search}`, { method: req.method, headers: { ...req.headers, host: new URL(upstream).host } }, (ur) => {
      const chunks: Buffer[] = [];
      ur.on('data', (c: Buffer) => chunks.push(c));
      ur.on('end', () => {
        let body = Buffer.concat(chunks).toString('utf8');
        if (limit > 0 && ur.statusCode === 200 && req.method === 'GET') {
          const list = JSON.parse(body) as { items?: unknown[]; metadata?: Record<string, unknown> };
          if (Array.isArray(list.items)) {
            const all = list.items;
            list.items = all.slice(offset, offset + limit);
            if (offset + limit < all.length) list.metadata = { ...list.metadata, continue: String(offset + limit) };
            paged.push(`${url.pathname}@${offset}`);
            body = JSON.stringify(list);
          }
        }
        res.writeHead(ur.statusCode ?? 500, { 'content-type': 'application/json' }).end(body);
      });
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    paged,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

// ---- seeds ----------------------------------------------------------------------------------

const owner = (kind: string, name: string) => [{ apiVersion: 'apps/v1', kind, name, uid: `${name}-uid`, controller: true }];
const ISTIO_STATUS = '{"initContainers":["istio-init"],"containers":["istio-proxy"],"volumes":["istio-envoy"],"imagePullSecrets":null,"revision":"default"}';
const istioProxy = { name: 'istio-proxy', image: 'docker.io/istio/proxyv2:1.27.1', ports: [{ containerPort: 15090, name: 'http-envoy-prom' }] };
const oneAgentInit = { name: 'dynatrace-operator', image: 'public.ecr.aws/dynatrace/dynatrace-operator:v1.7.0', args: ['bootstrap'] };
const oneAgentVolume = { name: 'oneagent-bin', csi: { driver: 'csi.oneagent.dynatrace.com', readOnly: true } };

/** Consul transparent proxy with OneAgent, rendered without the ActiveGate exclusions. */
const ledgerPod: KubeObject = {
  metadata: {
    name: 'ledger-0',
    namespace: 'payments',
    labels: { app: 'ledger', 'consul.hashicorp.com/connect-inject-status': 'injected' },
    annotations: {
      'consul.hashicorp.com/connect-inject': 'true',
      'consul.hashicorp.com/connect-inject-status': 'injected',
      'consul.hashicorp.com/transparent-proxy-status': 'enabled',
      'oneagent.dynatrace.com/injected': 'true',
    },
    ownerReferences: owner('StatefulSet', 'ledger'),
  },
  spec: {
    initContainers: [
      oneAgentInit,
      {
        name: 'consul-connect-inject-init',
        image: 'hashicorp/consul-k8s-control-plane:1.6.0',
        env: [{ name: 'CONSUL_REDIRECT_TRAFFIC_CONFIG', value: '{"ConsulDNSIP":"","ProxyUserID":"5995","ProxyInboundPort":20000,"ProxyOutboundPort":15001,"ExcludeInboundPorts":null,"ExcludeOutboundPorts":["8200"],"ExcludeOutboundCIDRs":null,"ExcludeUIDs":["5996"],"NetNS":""}' }],
      },
    ],
    containers: [{ name: 'ledger', image: 'registry.example.com/ledger:2' }, { name: 'consul-dataplane', image: 'hashicorp/consul-dataplane:1.6.0' }],
    volumes: [oneAgentVolume],
  },
};

function seedPods(api: FakeApiServer): void {
  const ns = (name: string, labels: Record<string, string> = {}) =>
    api.create('namespaces', { metadata: { name, labels: { 'kubernetes.io/metadata.name': name, ...labels } } });
  ns('kube-system');
  ns('dynatrace');
  ns('default');
  ns('shop', { 'istio-injection': 'enabled', 'dynakube.internal.dynatrace.com/instance': 'dynakube' });
  ns('payments', { 'dynakube.internal.dynatrace.com/instance': 'dynakube' });
  const pod = (o: KubeObject) => api.create('pods', o);

  // An Istio CNI node agent that OneAgent got into: the deadlock in place.
  pod({
    metadata: {
      name: 'istio-cni-node-7xkqp',
      namespace: 'kube-system',
      labels: { 'k8s-app': 'istio-cni-node', 'sidecar.istio.io/inject': 'false' },
      annotations: { 'oneagent.dynatrace.com/injected': 'true', 'dynakube.dynatrace.com/injected': 'true', 'prometheus.io/scrape': 'true', 'prometheus.io/port': '15014' },
      ownerReferences: owner('DaemonSet', 'istio-cni-node'),
    },
    spec: {
      initContainers: [oneAgentInit],
      containers: [{ name: 'install-cni', image: 'registry.istio.io/release/install-cni:1.27.1' }],
      volumes: [oneAgentVolume],
    },
  });
  // Dynatrace CSI driver with an Istio sidecar.
  pod({
    metadata: {
      name: 'dynatrace-oneagent-csi-driver-q2w8r',
      namespace: 'dynatrace',
      labels: { 'internal.oneagent.dynatrace.com/component': 'csi-driver', 'app.kubernetes.io/name': 'dynatrace-operator', 'app.kubernetes.io/component': 'csi-driver' },
      annotations: { 'dynatrace.com/inject': 'false', 'sidecar.istio.io/status': ISTIO_STATUS },
      ownerReferences: owner('DaemonSet', 'dynatrace-oneagent-csi-driver'),
    },
    spec: { containers: [{ name: 'server', image: 'public.ecr.aws/dynatrace/dynatrace-operator:v1.7.0' }, istioProxy] },
  });
  // A meshed pod where Dynatrace scrapes the app port directly.
  pod({
    metadata: {
      name: 'web-7d9f8c6b5-x2x9z',
      namespace: 'shop',
      labels: { app: 'web', 'security.istio.io/tlsMode': 'istio' },
      annotations: {
        'sidecar.istio.io/status': ISTIO_STATUS,
        'metrics.dynatrace.com/scrape': 'true',
        'metrics.dynatrace.com/port': '8080',
        'prometheus.io/scrape': 'true',
        'prometheus.io/port': '15020',
        'prometheus.io/path': '/stats/prometheus',
        'oneagent.dynatrace.com/injected': 'true',
      },
      ownerReferences: owner('ReplicaSet', 'web-7d9f8c6b5'),
    },
    spec: {
      initContainers: [{ name: 'istio-init', image: 'docker.io/istio/proxyv2:1.27.1' }, oneAgentInit],
      containers: [{ name: 'web', image: 'registry.example.com/web:1.4.2', ports: [{ containerPort: 8080 }] }, istioProxy],
      volumes: [oneAgentVolume],
    },
  });
  // A meshed pod that scrapes the merged endpoint: fine.
  pod({
    metadata: {
      name: 'api-5c4b3a2-abcde',
      namespace: 'shop',
      labels: { app: 'api' },
      annotations: {
        'sidecar.istio.io/status': ISTIO_STATUS,
        'metrics.dynatrace.com/scrape': 'true',
        'metrics.dynatrace.com/port': '15020',
        'metrics.dynatrace.com/path': '/stats/prometheus',
      },
      ownerReferences: owner('ReplicaSet', 'api-5c4b3a2'),
    },
    spec: { containers: [{ name: 'api', image: 'registry.example.com/api:2', ports: [{ containerPort: 9090 }] }, istioProxy] },
  });
  pod(ledgerPod);
  // Nothing to say about this one.
  pod({ metadata: { name: 'plain', namespace: 'default' }, spec: { containers: [{ name: 'c', image: 'busybox' }] } });
  api.create('services', {
    metadata: { name: 'dynakube-activegate', namespace: 'dynatrace', labels: { 'app.kubernetes.io/component': 'activegate', 'app.kubernetes.io/name': 'dynatrace-operator' } },
    spec: { clusterIP: '10.96.12.7', clusterIPs: ['10.96.12.7'], ports: [{ name: 'https', port: 443, targetPort: 'https' }] },
  });
}

// ---- audit ---------------------------------------------------------------------------------

describe('audit', () => {
  let api: FakeApiServer;
  let kc: string;
  beforeAll(async () => {
    api = await FakeApiServer.start();
    seedPods(api);
    kc = kubeconfig(api.url, 'audit');
  });
  afterAll(() => api.close());

  it('reports risks of every kind, per pod, and exits 1 (-o json)', async () => {
    const r = await cli(['audit', '-o', 'json'], { KUBECONFIG: kc });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('');
    const report = JSON.parse(r.stdout) as AuditReport;
    expect(report.pods).toBe(6);
    expect(report.namespaces).toBe(5);
    expect(report.scope).toEqual({ namespace: null });
    // In list order (the fake API server sorts by namespace/name).
    expect(report.risks.map((k) => [k.type, `${k.namespace}/${k.name}`, k.owner])).toEqual([
      ['csi-driver-sidecar', 'dynatrace/dynatrace-oneagent-csi-driver-q2w8r', 'DaemonSet/dynatrace-oneagent-csi-driver'],
      ['node-agent-oneagent', 'kube-system/istio-cni-node-7xkqp', 'DaemonSet/istio-cni-node'],
      ['consul-activegate-exclusions', 'payments/ledger-0', 'StatefulSet/ledger'],
      ['scrape-app-port', 'shop/web-7d9f8c6b5-x2x9z', 'ReplicaSet/web-7d9f8c6b5'],
    ]);
    const byType = Object.fromEntries(report.risks.map((k) => [k.type, k.detail]));
    expect(byType['node-agent-oneagent']).toBe('Istio CNI node agent (label k8s-app=istio-cni-node); OneAgent: init container dynatrace-operator, volume oneagent-bin, annotation oneagent.dynatrace.com/injected: "true"');
    expect(byType['csi-driver-sidecar']).toMatch(/^sidecar: annotation sidecar.istio.io\/status, container istio-proxy$/);
    expect(byType['scrape-app-port']).toBe('Dynatrace scrapes port 8080, which the sidecar captures; the merged endpoint is on 15020');
    expect(byType['consul-activegate-exclusions']).toMatch(/env CONSUL_REDIRECT_TRAFFIC_CONFIG of consul-connect-inject-init lacks ports 9999 and CIDRs 10\.96\.12\.7\/32/);
    // (1) the same rules as the webhook, per rule.
    expect(report.wouldChange.byRule['node-agent-guard']).toBe(1);
    expect(report.wouldChange.byRule['csi-driver-guard']).toBe(1);
    expect(report.wouldChange.byRule['consul-activegate-exclusions']).toBe(1);
    const cni = report.wouldChange.pods.find((p) => p.name === 'istio-cni-node-7xkqp')!;
    expect(cni.changes).toEqual([{ rule: 'node-agent-guard', mode: 'enforce', change: 'oneagent.dynatrace.com/inject: (unset) → "false"', reason: expect.stringMatching(/^Istio CNI node agent \(label k8s-app=istio-cni-node\): with the CSI driver, the Helm default, .*a new node deadlocks$/) }]);
    expect(report.wouldChange.pods.some((p) => p.name === 'plain' || p.name === 'api-5c4b3a2-abcde')).toBe(false);
  });

  it('table output groups risks with their fix', async () => {
    const r = await cli(['audit'], { KUBECONFIG: kc });
    keepForDocs('audit.txt', r);
    keepForDocs('audit.json', await cli(['audit', '-n', 'shop', '-o', 'json'], { KUBECONFIG: kc }));
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^Audited 6 pods in 5 namespaces\.\n/);
    expect(r.stdout).toContain('Pods the webhook would change');
    expect(r.stdout).toMatch(/\nRISK node-agent-oneagent \(1 pod\): mesh node agents with OneAgent injected[^\n]*\n {2}fix: annotate the DaemonSet pod template with oneagent.dynatrace.com\/inject: "false"/);
    expect(r.stdout).toMatch(/ {2}kube-system\/istio-cni-node-7xkqp +DaemonSet\/istio-cni-node +Istio CNI node agent/);
    expect(r.stdout).toContain('RISK scrape-app-port (1 pod)');
  });

  it('-n limits the scope; a clean namespace exits 0', async () => {
    const r = await cli(['audit', '-n', 'default', '-o', 'json'], { KUBECONFIG: kc });
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as AuditReport;
    expect(report).toMatchObject({ scope: { namespace: 'default' }, pods: 1, risks: [], wouldChange: { byRule: {}, pods: [] } });
    const shop = JSON.parse((await cli(['audit', '-n', 'shop', '-o', 'json'], { KUBECONFIG: kc })).stdout) as AuditReport;
    expect(shop.risks.map((k) => k.type)).toEqual(['scrape-app-port']);
  });

  it("only pods the webhook's selectors pick are evaluated for changes; risks are checked for all", async () => {
    const before = JSON.parse((await cli(['audit', '-o', 'json'], { KUBECONFIG: kc })).stdout) as AuditReport;
    expect(before.notes).toContain('MutatingWebhookConfiguration 0-mesh-guard not found (mesh-guard not installed yet?); every pod evaluated as if the webhook saw it');
    api.create(MWC, ours('0-mesh-guard', '', { namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['mesh-guard', 'dynatrace'] }] } }));
    try {
      const r = JSON.parse((await cli(['audit', '-o', 'json'], { KUBECONFIG: kc })).stdout) as AuditReport;
      expect(r.wouldChange.byRule['csi-driver-guard']).toBeUndefined();
      expect(r.wouldChange.byRule['node-agent-guard']).toBe(1);
      expect(r.risks.map((k) => k.type)).toContain('csi-driver-sidecar');
      expect(r.notes).toContain("1 pod outside the webhook's namespace/object selectors: not evaluated for changes (risks still checked)");
    } finally {
      api.delete(MWC, undefined, '0-mesh-guard');
    }
  });

  it('groups replicas of one owner in the table, keeps every pod in JSON', async () => {
    const replicas = ['a', 'b', 'c'].map((x) => ({
      metadata: { name: `istio-cni-node-${x}`, namespace: 'kube-system', labels: { 'k8s-app': 'istio-cni-node' }, ownerReferences: owner('DaemonSet', 'istio-cni-node') },
      spec: { initContainers: [oneAgentInit], containers: [{ name: 'install-cni', image: 'install-cni:1.27' }] },
    }));
    const report = await analyse({ pods: replicas, namespaces: new Map([['kube-system', {}]]), activeGateIPs: [], scope: null }, parseConfig('', {}));
    expect(report.risks).toHaveLength(3);
    expect(report.wouldChange.pods).toHaveLength(3);
    const table = renderAuditTable(report);
    expect(table).toMatch(/\nkube-system\/istio-cni-node-a \(\+2 more\) +DaemonSet\/istio-cni-node +node-agent-guard +oneagent\.dynatrace\.com\/inject: \(unset\) → "false"\n/);
    expect(table).toMatch(/\n {2}kube-system\/istio-cni-node-a \(\+2 more\) +DaemonSet\/istio-cni-node +Istio CNI node agent/);
  });

  it('Consul exclusions: only ActiveGate ClusterIPs of activeGate.clusterIPFamilies count, as in the rule', async () => {
    const ctx = { namespaces: new Map([['payments', {}]]), activeGateIPs: ['10.96.12.7', 'fd00::7'], scope: null };
    const v4 = await analyse({ ...ctx, pods: [ledgerPod as V1Pod] }, parseConfig('', {}));
    expect(v4.risks[0]!.detail).toMatch(/lacks ports 9999 and CIDRs 10\.96\.12\.7\/32$/);
    const both = await analyse({ ...ctx, pods: [ledgerPod as V1Pod] }, parseConfig('activeGate:\n  clusterIPFamilies: [IPv4, IPv6]\n', {}));
    expect(both.risks[0]!.detail).toMatch(/lacks ports 9999 and CIDRs 10\.96\.12\.7\/32,fd00::7\/128$/);
  });

  it("predicts with the peers' webhooks and settings as the webhook does: -default-inject=true meshes a pod without the annotation", async () => {
    const pod = { metadata: { name: 'web-1', namespace: 'meshed' }, spec: { containers: [{ name: 'web', image: 'shop:1' }] } } as V1Pod;
    const ctx = { pods: [pod], namespaces: new Map([['meshed', { 'dynakube.internal.dynatrace.com/instance': 'dk' }]]), activeGateIPs: [], scope: null };
    const mirrorOnly = await analyse(ctx, parseConfig('', {}));
    expect(mirrorOnly.wouldChange.pods).toEqual([]);
    const discovery = discoveryOf([configurationObject(CONSUL) as never]);
    const settings = settingsFromObjects(discovery, [consulInjectorDeployment({ defaultInject: true })]);
    const withPeers = await analyse({ ...ctx, discovery, settings }, parseConfig('', {}));
    const changes = withPeers.wouldChange.pods[0]!.changes;
    expect(changes.map((c) => c.rule)).toContain('consul-activegate-exclusions');
  });

  it('pages through pods with limit/continue and shows progress on stderr', async () => {
    const proxy = await startProxy(api.url);
    try {
      const r = await cli(['audit', '--page-size', '2', '-o', 'json'], { KUBECONFIG: kubeconfig(proxy.url, 'paged') });
      expect(r.code).toBe(1);
      expect((JSON.parse(r.stdout) as AuditReport).pods).toBe(6);
      expect(proxy.paged.filter((p) => p.startsWith('/api/v1/pods@'))).toEqual(['/api/v1/pods@0', '/api/v1/pods@2', '/api/v1/pods@4']);
      expect(r.stderr).toBe('mesh-guard audit: listed 2 pods…\nmesh-guard audit: listed 4 pods…\nmesh-guard audit: listed 6 pods\n');
      const quiet = await cli(['audit', '--page-size', '2', '-q', '-o', 'json'], { KUBECONFIG: kubeconfig(proxy.url, 'paged') });
      expect(quiet.stderr).toBe('');
    } finally {
      await proxy.close();
    }
  });

  it('missing RBAC: pods → one line, exit 2; namespaces/services → a warning, rules fall back', async () => {
    const noPods = await startProxy(api.url, (p) => p === '/api/v1/pods');
    const noNs = await startProxy(api.url, (p) => p === '/api/v1/namespaces' || p === '/api/v1/services');
    try {
      const r = await cli(['audit'], { KUBECONFIG: kubeconfig(noPods.url, 'nopods') });
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe('mesh-guard: cannot list pods in all namespaces: forbidden (403): /api/v1/pods is forbidden: User "system:serviceaccount:ci:auditor" cannot do that; grant the permission or narrow the scope\n');
      const w = await cli(['audit', '-o', 'json'], { KUBECONFIG: kubeconfig(noNs.url, 'nons') });
      expect(w.code).toBe(1);
      expect(w.stderr).toMatch(/^mesh-guard audit: warning: cannot list namespaces: forbidden \(403\)/);
      expect(w.stderr).toMatch(/\nmesh-guard audit: warning: cannot list the ActiveGate Services: forbidden \(403\)/);
      const report = JSON.parse(w.stdout) as AuditReport;
      expect(report.notes.join('\n')).toMatch(/rules use their fallbacks/);
      // Without the ActiveGate IPs, only the configured port is checked.
      expect(report.risks.find((k) => k.type === 'consul-activegate-exclusions')!.detail).toMatch(/lacks ports 9999$/);
    } finally {
      await noPods.close();
      await noNs.close();
    }
  });

  it('unreachable cluster, no cluster, bad flags: one line, exit 2', async () => {
    const dead = await cli(['audit'], { KUBECONFIG: kubeconfig('http://127.0.0.1:1', 'dead') });
    expect(dead).toEqual({ code: 2, stdout: '', stderr: 'mesh-guard: cannot list pods in all namespaces: cannot reach the API server at http://127.0.0.1:1: connection refused\n' });
    const none = await cli(['audit'], {});
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/^mesh-guard: no cluster to talk to: .*\(set KUBECONFIG, pass --kubeconfig, or run in a pod\)\n$/);
    const ctx = await cli(['audit', '--context', 'nope'], { KUBECONFIG: kc });
    expect(ctx).toEqual({ code: 2, stdout: '', stderr: 'mesh-guard: context "nope" is not in the kubeconfig\n' });
    const bad = await cli(['audit', '-o', 'yaml'], { KUBECONFIG: kc });
    expect(bad.stderr).toBe('mesh-guard: audit: -o must be one of table, json, got "yaml"\n');
  });

  it('runs as the compiled program', async () => {
    const exec = promisify(execFile);
    const bin = path.join(repoRoot, 'dist/src/cli/main.js');
    const res = await exec(process.execPath, [bin, 'audit', '-n', 'shop', '-o', 'json'], { env: { PATH: process.env.PATH, HOME: tmp, KUBECONFIG: kc } }).then(
      (x) => ({ code: 0, stdout: x.stdout }),
      (e: { code: number; stdout: string }) => ({ code: e.code, stdout: e.stdout }),
    );
    expect(res.code).toBe(1);
    expect((JSON.parse(res.stdout) as AuditReport).risks[0]!.type).toBe('scrape-app-port');
  });
});

// ---- doctor --------------------------------------------------------------------------------

interface Pem {
  private: string;
  cert: string;
}

async function makeCa(cn: string): Promise<Pem> {
  return generate([{ name: 'commonName', value: cn }], {
    keyType: 'ec',
    algorithm: 'sha256',
    notAfterDate: new Date(Date.now() + 3650 * DAY),
    extensions: [{ name: 'basicConstraints', cA: true }, { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true }],
  });
}

async function makeLeaf(ca: Pem, days: number, dns = 'mesh-guard.mesh-guard.svc'): Promise<Pem> {
  return generate([{ name: 'commonName', value: dns }], {
    keyType: 'ec',
    algorithm: 'sha256',
    notAfterDate: new Date(Date.now() + days * DAY),
    ca: { key: ca.private, cert: ca.cert },
    extensions: [{ name: 'basicConstraints', cA: false }, { name: 'extKeyUsage', serverAuth: true }, { name: 'subjectAltName', altNames: [{ type: 2, value: dns }, { type: 2, value: `${dns}.cluster.local` }] }],
  });
}

const b64 = (s: string) => Buffer.from(s).toString('base64');

function mwc(name: string, hook: Record<string, unknown> = {}, resources = ['pods']): KubeObject {
  return {
    metadata: { name },
    webhooks: [
      {
        name: `${name}.example.io`,
        admissionReviewVersions: ['v1'],
        sideEffects: 'None',
        clientConfig: { service: { name, namespace: 'x', path: '/mutate' } },
        rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources }],
        ...hook,
      },
    ],
  };
}

function ours(name: string, caBundle: string, hook: Record<string, unknown> = {}): KubeObject {
  return mwc(name, {
    name: 'pods.mesh-guard.io',
    namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['mesh-guard'] }] },
    clientConfig: { caBundle, service: { name: 'mesh-guard', namespace: 'mesh-guard', path: '/mutate', port: 443 } },
    failurePolicy: 'Ignore',
    timeoutSeconds: 3,
    reinvocationPolicy: 'IfNeeded',
    matchPolicy: 'Equivalent',
    ...hook,
  });
}

function istiod(env: Array<{ name: string; value: string }>): KubeObject {
  return {
    metadata: { name: 'istiod', namespace: 'istio-system', labels: { app: 'istiod', istio: 'pilot' } },
    spec: {
      selector: { matchLabels: { app: 'istiod' } },
      template: { metadata: { labels: { app: 'istiod' } }, spec: { containers: [{ name: 'discovery', image: 'docker.io/istio/pilot:1.27.1', env }] } },
    },
  };
}

/** The node-agent and CSI driver DaemonSets doctor's scope check looks for. */
function nodeAgentDaemonSets(a: FakeApiServer): void {
  for (const n of ['kube-system', 'dynatrace']) a.create('namespaces', { metadata: { name: n, labels: { 'kubernetes.io/metadata.name': n } } });
  const ds = (ns: string, name: string, labels: Record<string, string>, image: string) =>
    a.create('apps/v1/daemonsets', {
      metadata: { name, namespace: ns },
      spec: { selector: { matchLabels: labels }, template: { metadata: { labels }, spec: { containers: [{ name: 'c', image }] } } },
    });
  ds('kube-system', 'istio-cni-node', { 'k8s-app': 'istio-cni-node' }, 'docker.io/istio/install-cni:1.27.1');
  ds('dynatrace', 'dynatrace-oneagent-csi-driver', { 'internal.oneagent.dynatrace.com/component': 'csi-driver' }, 'public.ecr.aws/dynatrace/dynatrace-operator:v1.7.0');
  ds('kube-system', 'kube-proxy', { 'k8s-app': 'kube-proxy' }, 'registry.k8s.io/kube-proxy:v1.33.2');
}

const node = (name: string, kubelet: string): KubeObject => ({ metadata: { name }, status: { nodeInfo: { kubeletVersion: kubelet } } });

describe('doctor', () => {
  let ca: Pem;
  let good: Pem;
  let expiring: Pem;
  let otherCa: Pem;
  let api: FakeApiServer | undefined;
  beforeAll(async () => {
    ca = await makeCa('mesh-guard-ca');
    otherCa = await makeCa('someone-else');
    good = await makeLeaf(ca, 90);
    expiring = await makeLeaf(ca, 10);
  });
  afterEach(async () => {
    await api?.close();
    api = undefined;
  });

  async function cluster(seed: (a: FakeApiServer) => void): Promise<string> {
    api = await FakeApiServer.start();
    api.create('namespaces', { metadata: { name: 'mesh-guard' } });
    api.create('services', { metadata: { name: 'mesh-guard', namespace: 'mesh-guard' }, spec: { ports: [{ port: 443, targetPort: 'https' }] } });
    api.create('endpoints', {
      metadata: { name: 'mesh-guard', namespace: 'mesh-guard' },
      subsets: [{ addresses: [{ ip: '10.244.1.7' }, { ip: '10.244.2.9' }], ports: [{ name: 'https', port: 8443 }] }],
    });
    seed(api);
    return kubeconfig(api.url, `doctor-${Math.random().toString(36).slice(2)}`);
  }
  const secret = (a: FakeApiServer, crt: string) =>
    a.create('secrets', { metadata: { name: 'mesh-guard-tls', namespace: 'mesh-guard' }, type: 'kubernetes.io/tls', data: { 'tls.crt': b64(crt), 'tls.key': b64('(not read)') } });

  it('a good installation: ok lines, the order, warnings only, exit 0', async () => {
    const kc = await cluster((a) => {
      a.create(MWC, ours('0-mesh-guard', b64(ca.cert)));
      a.create(MWC, mwc('dynatrace-webhook', { failurePolicy: 'Ignore', reinvocationPolicy: 'IfNeeded', timeoutSeconds: 10 }));
      a.create(MWC, mwc('istio-sidecar-injector', { failurePolicy: 'Fail' }));
      a.create(MWC, mwc('consul-consul-connect-injector', { failurePolicy: 'Fail' }));
      a.create(MWC, mwc('cert-manager-webhook', {}, ['certificates']));
      secret(a, good.cert);
      nodeAgentDaemonSets(a);
      a.create('apps/v1/deployments', istiod([]));
      a.create('nodes', node('n1', 'v1.33.2'));
      a.create('nodes', node('n2', 'v1.34.0-gke.1200'));
    });
    const r = await cli(['doctor', '-o', 'json'], { KUBECONFIG: kc });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as DoctorReport;
    expect(report.order.map((o) => [o.name, o.owner])).toEqual([
      ['0-mesh-guard', 'mesh-guard'],
      ['consul-consul-connect-injector', 'Consul'],
      ['dynatrace-webhook', 'Dynatrace (Helm/manifests)'],
      ['istio-sidecar-injector', 'Istio'],
    ]);
    const status = Object.fromEntries(report.checks.map((c) => [c.check, c.status]));
    expect(status).toEqual({
      webhook: 'ok',
      order: 'ok',
      peers: 'ok',
      scope: 'ok',
      failurePolicy: 'ok',
      timeout: 'ok',
      reinvocationPolicy: 'ok',
      caBundle: 'ok',
      service: 'ok',
      endpoints: 'ok',
      servingCert: 'ok',
      nativeSidecars: 'warn',
      dynatrace: 'ok',
    });
    const native = report.checks.find((c) => c.check === 'nativeSidecars')!;
    expect(native.message).toMatch(/ENABLE_NATIVE_SIDECARS unset \(auto for Istio 1\.27\) and all 2 kubelets are ≥1\.33: native sidecars are on.*istio-native-sidecar-guard covers it/);
    expect(report.checks.find((c) => c.check === 'order')!.message).toBe('0-mesh-guard runs before consul-consul-connect-injector, dynatrace-webhook, istio-sidecar-injector');
    expect(report.checks.find((c) => c.check === 'scope')!.message).toBe('node-agent and CSI driver DaemonSets in scope: dynatrace/dynatrace-oneagent-csi-driver, kube-system/istio-cni-node');
    expect(report.checks.find((c) => c.check === 'endpoints')!.message).toBe('2 ready mesh-guard pods behind the Service');

    const table = await cli(['doctor'], { KUBECONFIG: kc });
    keepForDocs('doctor-good.txt', table);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^Mutating webhook configurations that see pods, in the order the API server calls them:\n {2}# +NAME/);
    expect(table.stdout).toMatch(/\nok +servingCert +chains to the caBundle, names mesh-guard\.mesh-guard\.svc, expires in 89 days/);
    expect(table.stdout).toMatch(/\nwarn +nativeSidecars +.*\. Fix: nothing to do while the guard is on/);
    expect(table.stdout).toMatch(/\nNo check failed, 1 warning\.\n$/);
  });

  it('a bad installation: wrong order, OLM Dynatrace, loose settings, a cert about to expire: fail lines, exit 1', async () => {
    const kc = await cluster((a) => {
      a.create(MWC, ours('mesh-guard', b64(ca.cert), {
        failurePolicy: 'Fail',
        timeoutSeconds: 10,
        reinvocationPolicy: 'Never',
        namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['mesh-guard', 'kube-system'] }] },
      }));
      nodeAgentDaemonSets(a);
      a.delete('endpoints', 'mesh-guard', 'mesh-guard');
      a.create(MWC, mwc('istio-revision-tag-default'));
      a.create(MWC, mwc('webhook.pod.dynatrace.com-7hq2x', { failurePolicy: 'Ignore', reinvocationPolicy: 'IfNeeded', timeoutSeconds: 10 }));
      secret(a, expiring.cert);
      a.create('apps/v1/deployments', istiod([{ name: 'ENABLE_NATIVE_SIDECARS', value: 'auto' }]));
      a.create('nodes', node('n1', 'v1.32.5'));
      a.create('nodes', node('n2', 'v1.33.1'));
    });
    const r = await cli(['doctor', '--webhook-name', 'mesh-guard', '-o', 'json'], { KUBECONFIG: kc });
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout) as DoctorReport;
    expect(report.order.map((o) => o.name)).toEqual(['istio-revision-tag-default', 'mesh-guard', 'webhook.pod.dynatrace.com-7hq2x']);
    const by = Object.fromEntries(report.checks.map((c) => [c.check, c]));
    expect(by.order).toMatchObject({ status: 'fail', message: 'istio-revision-tag-default runs before mesh-guard, so mesh-guard prepares pods too late' });
    expect(by.order!.fix).toMatch(/rename mesh-guard so it sorts byte-wise before istio-revision-tag-default/);
    expect(by.failurePolicy!.status).toBe('warn');
    expect(by.timeout).toMatchObject({ status: 'warn', fix: 'set timeoutSeconds: 3 (deploy/base)' });
    expect(by.reinvocationPolicy!.status).toBe('warn');
    expect(by.servingCert!.status).toBe('fail');
    expect(by.servingCert!.message).toMatch(/^serving certificate expires in 9 days/);
    expect(by.dynatrace!.status).toBe('warn');
    expect(by.dynatrace!.message).toMatch(/installed through OLM \(webhook\.pod\.dynatrace\.com-7hq2x\).*runs after istio-revision-tag-default/);
    expect(by.scope).toMatchObject({
      status: 'fail',
      message: "the webhook's selectors leave out kube-system/istio-cni-node (Istio CNI node agent (label k8s-app=istio-cni-node)): the guards cannot protect it from the CSI/CNI deadlock",
    });
    expect(by.endpoints).toMatchObject({ status: 'fail', message: 'no Endpoints for Service mesh-guard/mesh-guard: no mesh-guard pod has ever been ready' });
    expect(by.nativeSidecars).toMatchObject({ status: 'ok' });
    expect(by.nativeSidecars!.message).toMatch(/1 of 2 kubelets are <1\.33, so native sidecars stay off/);

    const table = await cli(['doctor', '--webhook-name', 'mesh-guard'], { KUBECONFIG: kc });
    keepForDocs('doctor-bad.txt', table);
    expect(table.code).toBe(1);
    expect(table.stdout).toMatch(/\nfail +order +istio-revision-tag-default runs before mesh-guard, so mesh-guard prepares pods too late\. Fix: rename/);
    expect(table.stdout).toMatch(/\n4 failed, 4 warnings\.\n$/);
  });

  it('missing webhook, missing caBundle, foreign CA and wrong name on the certificate', async () => {
    const none = await cluster(() => undefined);
    const r = JSON.parse((await cli(['doctor', '-o', 'json'], { KUBECONFIG: none })).stdout) as DoctorReport;
    expect(r.checks.find((c) => c.check === 'webhook')).toMatchObject({ status: 'fail', message: 'MutatingWebhookConfiguration 0-mesh-guard not found' });
    await api!.close();

    const foreign = await makeLeaf(otherCa, 90, 'web.shop.svc');
    const kc = await cluster((a) => {
      a.create(MWC, ours('0-mesh-guard', b64(ca.cert)));
      secret(a, foreign.cert);
    });
    const out = await cli(['doctor', '-o', 'json'], { KUBECONFIG: kc });
    expect(out.code).toBe(1);
    const cert = (JSON.parse(out.stdout) as DoctorReport).checks.find((c) => c.check === 'servingCert')!;
    expect(cert).toMatchObject({ status: 'fail', message: 'serving certificate does not chain to the caBundle (the API server rejects it); does not name mesh-guard.mesh-guard.svc' });
    await api!.close();

    const noCa = await cluster((a) => {
      a.create(MWC, ours('0-mesh-guard', ''));
      secret(a, good.cert);
    });
    const nc = JSON.parse((await cli(['doctor', '-o', 'json'], { KUBECONFIG: noCa })).stdout) as DoctorReport;
    expect(nc.checks.find((c) => c.check === 'caBundle')!.status).toBe('fail');
  });

  it('shows the discovered peers, their selectors and settings, and every config mirror that disagrees', async () => {
    const kc = await cluster((a) => {
      a.create(MWC, ours('0-mesh-guard', b64(ca.cert)));
      secret(a, good.cert);
      a.create(MWC, configurationObject(ISTIO_CANARY));
      a.create(MWC, configurationObject(CONSUL));
      a.create('configmaps', istioInjectorConfigMap({ revision: 'canary', neverInjectSelector: '- matchExpressions:\n  - {key: job-name, operator: Exists}' }));
      a.create('configmaps', istioMeshConfigMap('canary', { defaultConfig: '  statusPort: 15030' }));
      a.create('apps/v1/deployments', consulInjectorDeployment({ defaultInject: true }));
    });
    const r = await cli(['doctor', '-o', 'json'], { KUBECONFIG: kc });
    const report = JSON.parse(r.stdout) as DoctorReport;
    const istio = report.peers!.find((p) => p.peer === 'Istio')!;
    expect(istio.webhooks[0]).toBe(
      'istio-sidecar-injector-canary/rev.namespace.sidecar-injector.istio.io: namespaceSelector !istio-injection,istio.io/rev in (canary), objectSelector sidecar.istio.io/inject notin (false)',
    );
    expect(istio.settings).toEqual([
      'ConfigMap istio-system/istio-sidecar-injector-canary: policy enabled, neverInjectSelector [job-name], alwaysInjectSelector [], ENABLE_NATIVE_SIDECARS auto, holdApplicationUntilProxyStarts false',
      'ConfigMap istio-system/istio-canary: enablePrometheusMerge true, defaultConfig.statusPort 15030, defaultConfig.holdApplicationUntilProxyStarts false',
    ]);
    expect(report.peers!.find((p) => p.peer === 'Consul')!.settings[0]).toMatch(/^Deployment consul\/consul-connect-injector: -default-inject=true -default-enable-transparent-proxy=true -allow-k8s-namespace \[\*\]/);
    const mirrors = report.checks.filter((c) => c.check === 'mirror').map((c) => c.message);
    expect(mirrors).toEqual([
      'config consul.injectByDefault is false, but Deployment consul/consul-connect-injector -default-inject is true; mesh-guard follows the cluster and uses consul.injectByDefault only where discovery has no answer',
      'config istio.statusPort is 15020, but ConfigMap istio-system/istio-canary defaultConfig.statusPort is 15030; mesh-guard follows the cluster and uses istio.statusPort only where discovery has no answer',
    ]);
    expect(report.checks.find((c) => c.check === 'peers')!.message).toBe('discovered Istio, Consul from their webhook configurations; predictions follow them');
    const table = await cli(['doctor'], { KUBECONFIG: kc });
    keepForDocs('doctor-peers.txt', table);
    expect(table.stdout).toContain('Peers discovered (webhook selectors, and the settings read from their own objects):\n  Istio:\n    istio-sidecar-injector-canary/rev.namespace');
    expect(table.stdout).toMatch(/\nwarn +mirror +config istio.statusPort is 15020, .*\. Fix: set istio.statusPort to 15030 in the config/);

    // A settings object it may not read: a warning, the rest as before.
    const noCm = await startProxy(api!.url, (p) => p.includes('/configmaps/'));
    try {
      const d = JSON.parse((await cli(['doctor', '-o', 'json'], { KUBECONFIG: kubeconfig(noCm.url, 'nocm') })).stdout) as DoctorReport;
      expect(d.checks.filter((c) => c.check === 'peerSettings').map((c) => c.message)[0]).toMatch(
        /^cannot read ConfigMap istio-system\/istio-sidecar-injector-canary: forbidden \(403\).*; the config mirrors stand in for it$/,
      );
    } finally {
      await noCm.close();
    }
  });

  it('no permission to read the Secret is a warning, not a crash; no permission to list MWCs is exit 2', async () => {
    const kc = await cluster((a) => {
      a.create(MWC, ours('0-mesh-guard', b64(ca.cert)));
      secret(a, good.cert);
    });
    const noSecrets = await startProxy(api!.url, (p) => p.includes('/secrets/'));
    const noMwc = await startProxy(api!.url, (p) => p.includes('mutatingwebhookconfigurations'));
    try {
      const r = await cli(['doctor', '-o', 'json'], { KUBECONFIG: kubeconfig(noSecrets.url, 'nosecrets') });
      expect(r.code).toBe(0);
      expect((JSON.parse(r.stdout) as DoctorReport).checks.find((c) => c.check === 'servingCert')).toMatchObject({
        status: 'warn',
        message: 'not allowed to read Secret mesh-guard/mesh-guard-tls (403); serving certificate not checked',
      });
      const m = await cli(['doctor'], { KUBECONFIG: kubeconfig(noMwc.url, 'nomwc') });
      expect(m.code).toBe(2);
      expect(m.stdout).toBe('');
      expect(m.stderr).toMatch(/^mesh-guard: cannot list mutatingwebhookconfigurations: forbidden \(403\)/);
      expect(m.stderr.trim().split('\n')).toHaveLength(1);
    } finally {
      await noSecrets.close();
      await noMwc.close();
    }
    void kc;
  });

  it('runs as the compiled program; an unreachable cluster is one line, exit 2', async () => {
    const kc = await cluster((a) => {
      a.create(MWC, ours('0-mesh-guard', b64(ca.cert)));
      secret(a, good.cert);
    });
    const exec = promisify(execFile);
    const bin = path.join(repoRoot, 'dist/src/cli/main.js');
    const ok = await exec(process.execPath, [bin, 'doctor', '-o', 'json'], { env: { PATH: process.env.PATH, HOME: tmp, KUBECONFIG: kc } });
    expect((JSON.parse(ok.stdout) as DoctorReport).checks.every((c) => c.status !== 'fail')).toBe(true);
    const dead = await exec(process.execPath, [bin, 'doctor'], { env: { PATH: process.env.PATH, HOME: tmp, KUBECONFIG: kubeconfig('http://127.0.0.1:1', 'dead2') } }).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
    );
    expect(dead).toEqual({ code: 2, stderr: 'mesh-guard: cannot list mutatingwebhookconfigurations: cannot reach the API server at http://127.0.0.1:1: connection refused\n' });
  });
});
