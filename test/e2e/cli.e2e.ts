/**
 * `mesh-guard audit` and `mesh-guard doctor` against a real kube-apiserver. The audited cluster
 * (test/support/audit-seeds.ts) is created through the API once; each doctor scenario creates its
 * installation (webhook configurations, Service, Endpoints, Secret, DaemonSets, istiod, Nodes) and
 * removes it afterwards. Permission problems are the API server's own RBAC answers to limited
 * ServiceAccounts, and paging is its own limit/continue. No webhook is served here: objects are
 * stored as written, plus what the ServiceAccount admission plugin adds to pods.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { KubernetesObjectApi, type KubernetesObject } from '@kubernetes/client-node';
import { generate } from 'selfsigned';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AuditReport } from '../../src/cli/audit.js';
import { memoryIO } from '../../src/cli/common.js';
import type { DoctorReport } from '../../src/cli/doctor.js';
import { run } from '../../src/cli/main.js';
import { ACTIVEGATE_IP, ACTIVEGATE_SERVICE, AUDIT_NAMESPACES, AUDIT_PODS } from '../support/audit-seeds.js';
import { consulInjectorDeployment, istioInjectorConfigMap, istioMeshConfigMap } from '../support/peer-settings.js';
import { CONSUL, ISTIO_CANARY } from '../support/peer-webhooks.js';
import { repoRoot } from '../support/review.js';
import { startControlPlane, type ControlPlane } from './support/controlplane.js';
import { createPod } from './support/pods.js';
import { limitedUser } from './support/users.js';
import { calledButIgnored } from './support/webhooks.js';

const DAY = 86_400_000;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mg-cli-e2e-'));

async function cli(args: string[], kubeconfig: string) {
  const io = memoryIO({ env: { HOME: tmp, KUBECONFIG: kubeconfig } });
  const code = await run(args, io);
  return { code, stdout: io.stdout(), stderr: io.stderr() };
}

const compiled = (args: string[], kubeconfig: string) =>
  promisify(execFile)(process.execPath, [path.join(repoRoot, 'dist/src/cli/main.js'), ...args], { env: { PATH: process.env.PATH, HOME: tmp, KUBECONFIG: kubeconfig } }).then(
    (x) => ({ code: 0, stdout: x.stdout }),
    (e: { code: number; stdout: string }) => ({ code: e.code, stdout: e.stdout }),
  );

/** CLI_DOCS_DIR=dir keeps the outputs docs/cli.md quotes (real output, not hand-written). */
function keepForDocs(name: string, r: { code: number; stdout: string; stderr: string }): void {
  const dir = process.env.CLI_DOCS_DIR;
  if (dir) fs.writeFileSync(path.join(dir, name), `${r.stdout}${r.stderr ? `--- stderr ---\n${r.stderr}` : ''}--- exit ${r.code} ---\n`);
}

type Obj = KubernetesObject & Record<string, unknown>;

let cp: ControlPlane;
let objects: KubernetesObjectApi;
/** What a scenario created, removed by `removeMade()`. */
const made: Obj[] = [];
async function make(o: Obj): Promise<void> {
  await objects.create(o);
  made.push(o);
}
async function removeMade(): Promise<void> {
  for (const o of made.splice(0).reverse()) {
    try {
      await objects.delete(o);
    } catch (err) {
      if ((err as { code?: number }).code !== 404) throw err;
    }
  }
}

beforeAll(async () => {
  cp = await startControlPlane();
  objects = KubernetesObjectApi.makeApiClient(cp.kc);
  for (const [name, labels] of Object.entries(AUDIT_NAMESPACES)) await cp.ensureNamespace(name, labels);
  await cp.ensureNamespace('mesh-guard');
  for (const pod of AUDIT_PODS) await createPod(cp, pod);
  await objects.create({ apiVersion: 'v1', kind: 'Service', ...ACTIVEGATE_SERVICE } as Obj);
});
afterAll(async () => {
  await cp?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

// ---- doctor's installations ----------------------------------------------------------------

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

function mwc(name: string, hook: Record<string, unknown> = {}, resources = ['pods']): Obj {
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
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

/** mesh-guard's webhook configuration as deploy/base ships it (a Service, our caBundle). */
function ours(name: string, caBundle: string, hook: Record<string, unknown> = {}): Obj {
  return mwc(name, {
    name: 'pods.mesh-guard.io',
    namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['mesh-guard'] }] },
    clientConfig: { ...(caBundle ? { caBundle } : {}), service: { name: 'mesh-guard', namespace: 'mesh-guard', path: '/mutate', port: 443 } },
    failurePolicy: 'Ignore',
    timeoutSeconds: 3,
    reinvocationPolicy: 'IfNeeded',
    matchPolicy: 'Equivalent',
    ...hook,
  });
}

function istiod(env: Array<{ name: string; value: string }>): Obj {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'istiod', namespace: 'istio-system', labels: { app: 'istiod', istio: 'pilot' } },
    spec: {
      selector: { matchLabels: { app: 'istiod' } },
      template: { metadata: { labels: { app: 'istiod' } }, spec: { containers: [{ name: 'discovery', image: 'docker.io/istio/pilot:1.27.1', env }] } },
    },
  };
}

/** The node-agent and CSI driver DaemonSets doctor's scope check looks for. */
async function nodeAgentDaemonSets(): Promise<void> {
  const ds = (namespace: string, name: string, labels: Record<string, string>, image: string) =>
    make({
      apiVersion: 'apps/v1',
      kind: 'DaemonSet',
      metadata: { name, namespace },
      spec: { selector: { matchLabels: labels }, template: { metadata: { labels }, spec: { containers: [{ name: 'c', image }] } } },
    });
  await ds('kube-system', 'istio-cni-node', { 'k8s-app': 'istio-cni-node' }, 'docker.io/istio/install-cni:1.27.1');
  await ds('dynatrace', 'dynatrace-oneagent-csi-driver', { 'internal.oneagent.dynatrace.com/component': 'csi-driver' }, 'public.ecr.aws/dynatrace/dynatrace-operator:v1.7.0');
  await ds('kube-system', 'kube-proxy', { 'k8s-app': 'kube-proxy' }, 'registry.k8s.io/kube-proxy:v1.33.2');
}

/** A Node as its kubelet registers it (status included: nodes may set it on create). */
const node = (name: string, kubelet: string): Obj => ({ apiVersion: 'v1', kind: 'Node', metadata: { name }, status: { nodeInfo: { kubeletVersion: kubelet } } });

const secret = (crt: string): Obj => ({
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name: 'mesh-guard-tls', namespace: 'mesh-guard' },
  type: 'kubernetes.io/tls',
  data: { 'tls.crt': b64(crt), 'tls.key': b64('(not read)') },
});

/** mesh-guard's Service (and, unless told otherwise, 2 ready endpoints behind it), then the scenario's objects. */
async function installation(seed: () => Promise<void>, opts: { endpoints?: boolean } = {}): Promise<string> {
  await make({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'mesh-guard', namespace: 'mesh-guard' }, spec: { ports: [{ port: 443, targetPort: 'https' }] } });
  if (opts.endpoints ?? true) {
    await make({
      apiVersion: 'v1',
      kind: 'Endpoints',
      metadata: { name: 'mesh-guard', namespace: 'mesh-guard' },
      subsets: [{ addresses: [{ ip: '10.244.1.7' }, { ip: '10.244.2.9' }], ports: [{ name: 'https', port: 8443 }] }],
    });
  }
  await seed();
  return cp.kubeconfigPath;
}

// ---- audit ---------------------------------------------------------------------------------

describe('audit against a real kube-apiserver', () => {
  it('reports risks of every kind, per pod, and exits 1 (-o json)', async () => {
    const r = await cli(['audit', '-o', 'json'], cp.kubeconfigPath);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('');
    const report = JSON.parse(r.stdout) as AuditReport;
    expect(report.pods).toBe(6);
    expect(report.namespaces).toBe(5);
    expect(report.scope).toEqual({ namespace: null });
    // In list order: the API server lists by namespace/name (its etcd keys).
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
    expect(byType['consul-activegate-exclusions']).toMatch(new RegExp(`env CONSUL_REDIRECT_TRAFFIC_CONFIG of consul-connect-inject-init lacks ports 9999 and CIDRs ${ACTIVEGATE_IP.replace(/\./g, '\\.')}/32`));
    // (1) the same rules as the webhook, per rule.
    expect(report.wouldChange.byRule['node-agent-guard']).toBe(1);
    expect(report.wouldChange.byRule['csi-driver-guard']).toBe(1);
    expect(report.wouldChange.byRule['consul-activegate-exclusions']).toBe(1);
    const cni = report.wouldChange.pods.find((p) => p.name === 'istio-cni-node-7xkqp')!;
    expect(cni.changes).toEqual([{ rule: 'node-agent-guard', mode: 'enforce', change: 'oneagent.dynatrace.com/inject: (unset) → "false"', reason: expect.stringMatching(/^Istio CNI node agent \(label k8s-app=istio-cni-node\): with the CSI driver, the Helm default, .*a new node deadlocks$/) }]);
    expect(report.wouldChange.pods.some((p) => p.name === 'plain' || p.name === 'api-5c4b3a2-abcde')).toBe(false);
  });

  it('table output groups risks with their fix', async () => {
    const r = await cli(['audit'], cp.kubeconfigPath);
    keepForDocs('audit.txt', r);
    keepForDocs('audit.json', await cli(['audit', '-n', 'shop', '-o', 'json'], cp.kubeconfigPath));
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^Audited 6 pods in 5 namespaces\.\n/);
    expect(r.stdout).toContain('Pods the webhook would change');
    expect(r.stdout).toMatch(/\nRISK node-agent-oneagent \(1 pod\): mesh node agents with OneAgent injected[^\n]*\n {2}fix: annotate the DaemonSet pod template with oneagent.dynatrace.com\/inject: "false"/);
    expect(r.stdout).toMatch(/ {2}kube-system\/istio-cni-node-7xkqp +DaemonSet\/istio-cni-node +Istio CNI node agent/);
    expect(r.stdout).toContain('RISK scrape-app-port (1 pod)');
  });

  it('-n limits the scope; a clean namespace exits 0', async () => {
    const r = await cli(['audit', '-n', 'default', '-o', 'json'], cp.kubeconfigPath);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as AuditReport;
    expect(report).toMatchObject({ scope: { namespace: 'default' }, pods: 1, risks: [], wouldChange: { byRule: {}, pods: [] } });
    const shop = JSON.parse((await cli(['audit', '-n', 'shop', '-o', 'json'], cp.kubeconfigPath)).stdout) as AuditReport;
    expect(shop.risks.map((k) => k.type)).toEqual(['scrape-app-port']);
  });

  it("only pods the webhook's selectors pick are evaluated for changes; risks are checked for all", async () => {
    const before = JSON.parse((await cli(['audit', '-o', 'json'], cp.kubeconfigPath)).stdout) as AuditReport;
    expect(before.notes).toContain('MutatingWebhookConfiguration 0-mesh-guard not found (mesh-guard not installed yet?); every pod evaluated as if the webhook saw it');
    await make(ours('0-mesh-guard', '', { namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['mesh-guard', 'dynatrace'] }] } }));
    try {
      const r = JSON.parse((await cli(['audit', '-o', 'json'], cp.kubeconfigPath)).stdout) as AuditReport;
      expect(r.wouldChange.byRule['csi-driver-guard']).toBeUndefined();
      expect(r.wouldChange.byRule['node-agent-guard']).toBe(1);
      expect(r.risks.map((k) => k.type)).toContain('csi-driver-sidecar');
      expect(r.notes).toContain("1 pod outside the webhook's namespace/object selectors: not evaluated for changes (risks still checked)");
    } finally {
      await removeMade();
    }
  });

  it("pages through pods with the API server's limit/continue and shows progress on stderr", async () => {
    const r = await cli(['audit', '--page-size', '2', '-o', 'json'], cp.kubeconfigPath);
    expect(r.code).toBe(1);
    expect((JSON.parse(r.stdout) as AuditReport).pods).toBe(6);
    // Three pages of 2: the progress lines are written per page that had a continue token.
    expect(r.stderr).toBe('mesh-guard audit: listed 2 pods…\nmesh-guard audit: listed 4 pods…\nmesh-guard audit: listed 6 pods\n');
    const quiet = await cli(['audit', '--page-size', '2', '-q', '-o', 'json'], cp.kubeconfigPath);
    expect(quiet.stderr).toBe('');
  });

  it('RBAC: no list on pods → one line, exit 2; no list on namespaces/services → a warning, rules fall back', async () => {
    const nobody = await limitedUser(cp, 'ci', 'auditor-nothing', []);
    const r = await cli(['audit'], nobody.kubeconfigPath);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      `mesh-guard: cannot list pods in all namespaces: forbidden (403): pods is forbidden: User "${nobody.username}" cannot list resource "pods" in API group "" at the cluster scope; grant the permission or narrow the scope\n`,
    );
    const podsOnly = await limitedUser(cp, 'ci', 'auditor-pods', [
      { apiGroups: [''], resources: ['pods'], verbs: ['list'] },
      { apiGroups: ['admissionregistration.k8s.io'], resources: ['mutatingwebhookconfigurations'], verbs: ['get'] },
    ]);
    const w = await cli(['audit', '-o', 'json'], podsOnly.kubeconfigPath);
    expect(w.code).toBe(1);
    expect(w.stderr).toMatch(/^mesh-guard audit: warning: cannot list namespaces: forbidden \(403\)/);
    expect(w.stderr).toMatch(/\nmesh-guard audit: warning: cannot list the ActiveGate Services: forbidden \(403\)/);
    const report = JSON.parse(w.stdout) as AuditReport;
    expect(report.notes.join('\n')).toMatch(/rules use their fallbacks/);
    // Without the ActiveGate IPs, only the configured port is checked.
    expect(report.risks.find((k) => k.type === 'consul-activegate-exclusions')!.detail).toMatch(/lacks ports 9999$/);
  });

  it('runs as the compiled program', async () => {
    const res = await compiled(['audit', '-n', 'shop', '-o', 'json'], cp.kubeconfigPath);
    expect(res.code).toBe(1);
    expect((JSON.parse(res.stdout) as AuditReport).risks[0]!.type).toBe('scrape-app-port');
  });
});

// ---- doctor --------------------------------------------------------------------------------

describe('doctor against a real kube-apiserver', () => {
  let ca: Pem;
  let good: Pem;
  let expiring: Pem;
  let otherCa: Pem;
  beforeAll(async () => {
    ca = await makeCa('mesh-guard-ca');
    otherCa = await makeCa('someone-else');
    good = await makeLeaf(ca, 90);
    expiring = await makeLeaf(ca, 10);
  });
  afterEach(removeMade);

  it('a good installation: ok lines, the order, warnings only, exit 0', async () => {
    const kc = await installation(async () => {
      await make(ours('0-mesh-guard', b64(ca.cert)));
      await make(mwc('dynatrace-webhook', { failurePolicy: 'Ignore', reinvocationPolicy: 'IfNeeded', timeoutSeconds: 10 }));
      await make(mwc('istio-sidecar-injector', { failurePolicy: 'Fail' }));
      await make(mwc('consul-consul-connect-injector', { failurePolicy: 'Fail' }));
      await make(mwc('cert-manager-webhook', {}, ['certificates']));
      await make(secret(good.cert));
      await nodeAgentDaemonSets();
      await cp.ensureNamespace('istio-system');
      await make(istiod([]));
      await make(node('n1', 'v1.33.2'));
      await make(node('n2', 'v1.34.0-gke.1200'));
    });
    const r = await cli(['doctor', '-o', 'json'], kc);
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

    const table = await cli(['doctor'], kc);
    keepForDocs('doctor-good.txt', table);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^Mutating webhook configurations that see pods, in the order the API server calls them:\n {2}# +NAME/);
    expect(table.stdout).toMatch(/\nok +servingCert +chains to the caBundle, names mesh-guard\.mesh-guard\.svc, expires in 89 days/);
    expect(table.stdout).toMatch(/\nwarn +nativeSidecars +.*\. Fix: nothing to do while the guard is on/);
    expect(table.stdout).toMatch(/\nNo check failed, 1 warning\.\n$/);
  });

  it('a bad installation: wrong order, OLM Dynatrace, loose settings, a cert about to expire: fail lines, exit 1', async () => {
    const kc = await installation(
      async () => {
        await make(
          ours('mesh-guard', b64(ca.cert), {
            failurePolicy: 'Fail',
            timeoutSeconds: 10,
            reinvocationPolicy: 'Never',
            namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['mesh-guard', 'kube-system'] }] },
          }),
        );
        await nodeAgentDaemonSets();
        await make(mwc('istio-revision-tag-default'));
        await make(mwc('webhook.pod.dynatrace.com-7hq2x', { failurePolicy: 'Ignore', reinvocationPolicy: 'IfNeeded', timeoutSeconds: 10 }));
        await make(secret(expiring.cert));
        await cp.ensureNamespace('istio-system');
        await make(istiod([{ name: 'ENABLE_NATIVE_SIDECARS', value: 'auto' }]));
        await make(node('n1', 'v1.32.5'));
        await make(node('n2', 'v1.33.1'));
      },
      { endpoints: false },
    );
    const r = await cli(['doctor', '--webhook-name', 'mesh-guard', '-o', 'json'], kc);
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

    const table = await cli(['doctor', '--webhook-name', 'mesh-guard'], kc);
    keepForDocs('doctor-bad.txt', table);
    expect(table.code).toBe(1);
    expect(table.stdout).toMatch(/\nfail +order +istio-revision-tag-default runs before mesh-guard, so mesh-guard prepares pods too late\. Fix: rename/);
    expect(table.stdout).toMatch(/\n4 failed, 4 warnings\.\n$/);
  });

  it('missing webhook, missing caBundle, foreign CA and wrong name on the certificate', async () => {
    const none = await installation(async () => undefined);
    const r = JSON.parse((await cli(['doctor', '-o', 'json'], none)).stdout) as DoctorReport;
    expect(r.checks.find((c) => c.check === 'webhook')).toMatchObject({ status: 'fail', message: 'MutatingWebhookConfiguration 0-mesh-guard not found' });
    await removeMade();

    const foreign = await makeLeaf(otherCa, 90, 'web.shop.svc');
    const kc = await installation(async () => {
      await make(ours('0-mesh-guard', b64(ca.cert)));
      await make(secret(foreign.cert));
    });
    const out = await cli(['doctor', '-o', 'json'], kc);
    expect(out.code).toBe(1);
    const cert = (JSON.parse(out.stdout) as DoctorReport).checks.find((c) => c.check === 'servingCert')!;
    expect(cert).toMatchObject({ status: 'fail', message: 'serving certificate does not chain to the caBundle (the API server rejects it); does not name mesh-guard.mesh-guard.svc' });
    await removeMade();

    const noCa = await installation(async () => {
      await make(ours('0-mesh-guard', ''));
      await make(secret(good.cert));
    });
    const nc = JSON.parse((await cli(['doctor', '-o', 'json'], noCa)).stdout) as DoctorReport;
    expect(nc.checks.find((c) => c.check === 'caBundle')!.status).toBe('fail');
  });

  it('shows the discovered peers, their selectors and settings, and every config mirror that disagrees', async () => {
    const kc = await installation(async () => {
      await make(ours('0-mesh-guard', b64(ca.cert)));
      await make(secret(good.cert));
      await cp.ensureNamespace('istio-system');
      await cp.ensureNamespace('consul');
      await make(calledButIgnored(ISTIO_CANARY) as Obj);
      await make(calledButIgnored(CONSUL) as Obj);
      await make(istioInjectorConfigMap({ revision: 'canary', neverInjectSelector: '- matchExpressions:\n  - {key: job-name, operator: Exists}' }) as Obj);
      await make(istioMeshConfigMap('canary', { defaultConfig: '  statusPort: 15030' }) as Obj);
      await make(consulInjectorDeployment({ defaultInject: true }) as Obj);
    });
    const r = await cli(['doctor', '-o', 'json'], kc);
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
    const table = await cli(['doctor'], kc);
    keepForDocs('doctor-peers.txt', table);
    expect(table.stdout).toContain('Peers discovered (webhook selectors, and the settings read from their own objects):\n  Istio:\n    istio-sidecar-injector-canary/rev.namespace');
    expect(table.stdout).toMatch(/\nwarn +mirror +config istio.statusPort is 15020, .*\. Fix: set istio.statusPort to 15030 in the config/);

    // A settings object RBAC does not let it read: a warning, the rest as before.
    const noConfigMaps = await limitedUser(cp, 'ci', 'doctor-no-configmaps', [
      { apiGroups: ['admissionregistration.k8s.io'], resources: ['mutatingwebhookconfigurations'], verbs: ['get', 'list'] },
      { apiGroups: [''], resources: ['services', 'endpoints', 'namespaces', 'nodes'], verbs: ['get', 'list'] },
      { apiGroups: [''], resources: ['secrets'], verbs: ['get'] },
      { apiGroups: ['apps'], resources: ['daemonsets', 'deployments'], verbs: ['get', 'list'] },
    ]);
    const d = JSON.parse((await cli(['doctor', '-o', 'json'], noConfigMaps.kubeconfigPath)).stdout) as DoctorReport;
    const unread = d.checks.filter((c) => c.check === 'peerSettings').map((c) => c.message);
    expect(unread).toHaveLength(2);
    expect(unread[0]).toMatch(/^cannot read ConfigMap istio-system\/istio-sidecar-injector-canary: forbidden \(403\).*; the config mirrors stand in for it$/);
    expect(d.peers!.find((p) => p.peer === 'Consul')!.settings[0]).toMatch(/^Deployment consul\/consul-connect-injector: -default-inject=true/);
  });

  it('RBAC: no get on the Secret is a warning, not a crash; no list on webhook configurations is exit 2', async () => {
    await installation(async () => {
      await make(ours('0-mesh-guard', b64(ca.cert)));
      await make(secret(good.cert));
    });
    const noSecrets = await limitedUser(cp, 'ci', 'doctor-no-secrets', [
      { apiGroups: ['admissionregistration.k8s.io'], resources: ['mutatingwebhookconfigurations'], verbs: ['get', 'list'] },
      { apiGroups: [''], resources: ['services', 'endpoints', 'namespaces', 'nodes'], verbs: ['get', 'list'] },
      { apiGroups: ['apps'], resources: ['daemonsets', 'deployments'], verbs: ['list'] },
    ]);
    const r = await cli(['doctor', '-o', 'json'], noSecrets.kubeconfigPath);
    expect(r.code).toBe(0);
    expect((JSON.parse(r.stdout) as DoctorReport).checks.find((c) => c.check === 'servingCert')).toMatchObject({
      status: 'warn',
      message: 'not allowed to read Secret mesh-guard/mesh-guard-tls (403); serving certificate not checked',
    });
    const nobody = await limitedUser(cp, 'ci', 'doctor-nothing', []);
    const m = await cli(['doctor'], nobody.kubeconfigPath);
    expect(m.code).toBe(2);
    expect(m.stdout).toBe('');
    expect(m.stderr).toMatch(/^mesh-guard: cannot list mutatingwebhookconfigurations: forbidden \(403\)/);
    expect(m.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('runs as the compiled program', async () => {
    const kc = await installation(async () => {
      await make(ours('0-mesh-guard', b64(ca.cert)));
      await make(secret(good.cert));
    });
    const ok = await compiled(['doctor', '-o', 'json'], kc);
    expect(ok.code).toBe(0);
    expect((JSON.parse(ok.stdout) as DoctorReport).checks.every((c) => c.status !== 'fail')).toBe(true);
  });
});
