/**
 * A real control plane for the end-to-end suite: etcd and kube-apiserver, built from Go modules by
 * test/e2e/build.sh into .build/bin/, started on loopback with free ports in a temp dir.
 *
 * The apiserver flags follow controller-runtime envtest (pkg/internal/testing/controlplane/
 * apiserver.go, defaultArgs) with two differences that make pods look as in a cluster: the
 * ServiceAccount admission plugin stays ON (envtest disables it), so `ensureNamespace` creates the
 * `default` ServiceAccount that the token controller would (no controller-manager runs here); and
 * --advertise-address=127.0.0.1 with --endpoint-reconciler-type=none (no kubelet or proxy needs
 * the `kubernetes` Service's endpoints, and the reconciler would try to publish a loopback one).
 *
 * Every child is killed on stop(), on process exit, and by test/e2e/global-setup.ts's teardown
 * (which reads the pid files under MESH_GUARD_E2E_RUN_DIR), so a failing test leaves nothing running.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { generate } from 'selfsigned';
import { repoRoot } from '../../support/repo-root.js';
import { freePort } from '../../support/process.js';

export const BIN_DIR = path.join(repoRoot, '.build/bin');

export interface ControlPlaneOptions {
  /** An audit policy (YAML text); the log is written to `auditLogPath`. */
  readonly auditPolicy?: string;
  /**
   * Run etcd and kube-apiserver at this niceness (nice(1)): bench/scale.ts measures mesh-guard, and in
   * a cluster the control plane does not share the webhook's node.
   */
  readonly nice?: number;
}

export interface ControlPlane {
  readonly dir: string;
  readonly apiPort: number;
  readonly url: string;
  readonly kubeconfigPath: string;
  readonly kc: KubeConfig;
  readonly caPem: string;
  readonly auditLogPath: string | undefined;
  /** /version's gitVersion, as the running apiserver reports it. */
  readonly gitVersion: string;
  /** A serving certificate for a webhook on 127.0.0.1, signed by the control plane's CA (caPem). */
  issueServingCert(): Promise<{ cert: string; key: string; caPem: string }>;
  /** GET on the apiserver as the admin user; the body parsed as JSON. */
  get(urlPath: string): Promise<{ status: number; body: unknown }>;
  /** Creates (or relabels) a namespace and its `default` ServiceAccount. */
  ensureNamespace(name: string, labels?: Record<string, string>): Promise<void>;
  /** Stops kube-apiserver and starts it again on the same port against the same etcd. */
  restartApiServer(): Promise<void>;
  /** Stops the apiserver only (for outage scenarios); startApiServer() brings it back. */
  stopApiServer(): Promise<void>;
  startApiServer(): Promise<void>;
  apiServerLog(): string;
  stop(): Promise<void>;
}

interface Pki {
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  adminCert: string;
  adminKey: string;
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

async function makePki(): Promise<Pki> {
  const notBeforeDate = new Date(Date.now() - 60_000);
  const notAfterDate = new Date(notBeforeDate.getTime() + 24 * 3600_000);
  const common = { keyType: 'ec', algorithm: 'sha256', notBeforeDate, notAfterDate } as const;
  const ca = await generate([{ name: 'commonName', value: 'mesh-guard e2e CA' }], {
    ...common,
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  });
  const signed = { ca: { key: ca.private, cert: ca.cert } };
  const server = await servingCert({ key: ca.private, cert: ca.cert }, 'kube-apiserver');
  // The client-cert authenticator maps CN to the user and O to its groups: system:masters is the
  // group the apiserver's bootstrap RBAC binds to cluster-admin.
  const admin = await generate(
    [
      { name: 'commonName', value: 'e2e-admin' },
      { name: 'organizationName', value: 'system:masters' },
    ],
    {
      ...common,
      ...signed,
      extensions: [
        { name: 'basicConstraints', cA: false, critical: true },
        { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
        { name: 'extKeyUsage', clientAuth: true },
      ],
    },
  );
  return { caCert: ca.cert, caKey: ca.private, serverCert: server.cert, serverKey: server.key, adminCert: admin.cert, adminKey: admin.private };
}

async function servingCert(ca: { key: string; cert: string }, commonName: string): Promise<{ cert: string; key: string }> {
  const notBeforeDate = new Date(Date.now() - 60_000);
  const leaf = await generate([{ name: 'commonName', value: commonName }], {
    keyType: 'ec',
    algorithm: 'sha256',
    notBeforeDate,
    notAfterDate: new Date(notBeforeDate.getTime() + 24 * 3600_000),
    ca,
    extensions: [
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }] },
    ],
  });
  return { cert: leaf.cert, key: leaf.private };
}

function binary(name: string): string {
  const file = path.join(BIN_DIR, name);
  if (!fs.existsSync(file)) throw new Error(`${file} is missing: run \`npm run build:go\` (needs Go >= 1.26 and the Go module proxy)`);
  return file;
}

interface Child {
  child: ChildProcess;
  log: () => string;
  exited: Promise<void>;
}

function start(name: string, args: string[], dir: string, nice?: number): Child {
  // nice(1) execs the binary: the pid stays the binary's.
  const [cmd, argv] = nice === undefined ? [binary(name), args] : ['nice', ['-n', String(nice), binary(name), ...args]];
  const child = spawn(cmd, argv, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  const runDir = process.env.MESH_GUARD_E2E_RUN_DIR;
  if (runDir && child.pid) fs.writeFileSync(path.join(runDir, `${name}-${child.pid}.pid`), String(child.pid));
  let out = '';
  const keep = (c: string) => {
    out += c;
    if (out.length > 200_000) out = out.slice(-100_000);
  };
  child.stdout!.setEncoding('utf8').on('data', keep);
  child.stderr!.setEncoding('utf8').on('data', keep);
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      live.delete(child);
      if (runDir && child.pid) fs.rmSync(path.join(runDir, `${name}-${child.pid}.pid`), { force: true });
      resolve();
    }),
  );
  return { child, log: () => out, exited };
}

async function kill(c: Child | undefined, graceMs = 10_000): Promise<void> {
  if (!c || c.child.exitCode !== null || c.child.signalCode !== null) return;
  c.child.kill('SIGTERM');
  const timer = setTimeout(() => c.child.kill('SIGKILL'), graceMs);
  await c.exited;
  clearTimeout(timer);
}

function request(opts: https.RequestOptions, body?: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', agent: false, timeout: 5_000, ...opts }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, text }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>, log: () => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what} not ready in ${timeoutMs} ms (${String(last ?? 'no answer')}); log tail:\n${log().slice(-4_000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-guard-e2e-cp-'));
  const pki = await makePki();
  const file = (name: string, text: string, mode = 0o600) => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, text, { mode });
    return p;
  };
  const caFile = file('ca.crt', pki.caCert, 0o644);
  const serverCertFile = file('apiserver.crt', pki.serverCert);
  const serverKeyFile = file('apiserver.key', pki.serverKey);
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const saKeyFile = file('sa-signer.key', privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
  const auditLogPath = opts.auditPolicy !== undefined ? path.join(dir, 'audit.log') : undefined;
  const auditPolicyFile = opts.auditPolicy !== undefined ? file('audit-policy.yaml', opts.auditPolicy) : undefined;

  const [etcdPort, peerPort, apiPort] = [await freePort(), await freePort(), await freePort()];
  const etcdUrl = `http://127.0.0.1:${etcdPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const etcd = start(
    'etcd',
    [
      '--name=e2e',
      `--data-dir=${path.join(dir, 'etcd')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=e2e=${peerUrl}`,
      '--unsafe-no-fsync=true',
      '--log-level=warn',
    ],
    dir,
    opts.nice,
  );
  let api: Child | undefined;
  const url = `https://127.0.0.1:${apiPort}`;
  const apiArgs = [
    '--advertise-address=127.0.0.1',
    '--bind-address=127.0.0.1',
    `--secure-port=${apiPort}`,
    `--etcd-servers=${etcdUrl}`,
    // Dual-stack, as the clusters whose ActiveGate Services have an IPv4 and an IPv6 ClusterIP;
    // a Service without ipFamilyPolicy still gets one IPv4 address.
    '--service-cluster-ip-range=10.0.0.0/24,fd00:10::/108',
    '--allow-privileged=true',
    '--authorization-mode=RBAC',
    '--endpoint-reconciler-type=none',
    `--cert-dir=${path.join(dir, 'apiserver-certs')}`,
    `--tls-cert-file=${serverCertFile}`,
    `--tls-private-key-file=${serverKeyFile}`,
    `--client-ca-file=${caFile}`,
    `--service-account-issuer=${url}/`,
    `--service-account-key-file=${saKeyFile}`,
    `--service-account-signing-key-file=${saKeyFile}`,
    ...(auditPolicyFile ? [`--audit-policy-file=${auditPolicyFile}`, `--audit-log-path=${auditLogPath}`, '--audit-log-mode=blocking'] : []),
  ];
  const tls = { ca: pki.caCert, cert: pki.adminCert, key: pki.adminKey, port: apiPort };
  const startApiServer = async () => {
    api = start('kube-apiserver', apiArgs, dir, opts.nice);
    await until('kube-apiserver', 120_000, async () => {
      if (api!.child.exitCode !== null) throw new Error(`kube-apiserver exited with ${api!.child.exitCode}`);
      const res = await request({ ...tls, path: '/readyz', method: 'GET' });
      return res.status === 200 ? true : undefined;
    }, () => api!.log());
  };

  const stopAll = async () => {
    await kill(api);
    await kill(etcd);
  };
  try {
    await until('etcd', 60_000, async () => {
      if (etcd.child.exitCode !== null) throw new Error(`etcd exited with ${etcd.child.exitCode}`);
      const res = await fetch(`${etcdUrl}/health`);
      return res.ok ? true : undefined;
    }, etcd.log);
    await startApiServer();
  } catch (err) {
    await stopAll();
    throw err;
  }

  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const kubeconfigPath = file(
    'kubeconfig',
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      `- name: e2e`,
      `  cluster: {server: "${url}", certificate-authority-data: ${b64(pki.caCert)}}`,
      'users:',
      '- name: e2e-admin',
      `  user: {client-certificate-data: ${b64(pki.adminCert)}, client-key-data: ${b64(pki.adminKey)}}`,
      'contexts:',
      '- name: e2e',
      '  context: {cluster: e2e, user: e2e-admin}',
      'current-context: e2e',
      '',
    ].join('\n'),
  );
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfigPath);
  const core = kc.makeApiClient(CoreV1Api);

  const get = async (urlPath: string) => {
    const res = await request({ ...tls, path: urlPath, method: 'GET' });
    let body: unknown = res.text;
    try {
      body = JSON.parse(res.text);
    } catch {
      // not JSON: kept as text
    }
    return { status: res.status, body };
  };
  const version = (await get('/version')).body as { gitVersion: string };
  announceOnce(`kube-apiserver ${version.gitVersion} (its /version) and etcd on 127.0.0.1, in ${dir}`);

  return {
    dir,
    apiPort,
    url,
    kubeconfigPath,
    kc,
    caPem: pki.caCert,
    auditLogPath,
    gitVersion: version.gitVersion,
    issueServingCert: async () => ({ ...(await servingCert({ key: pki.caKey, cert: pki.caCert }, 'e2e-webhook')), caPem: pki.caCert }),
    get,
    async ensureNamespace(name, labels = {}) {
      try {
        await core.createNamespace({ body: { metadata: { name, labels } } });
      } catch (err) {
        if ((err as { code?: number }).code !== 409) throw err;
        await core.patchNamespace(
          { name, body: [{ op: 'replace', path: '/metadata/labels', value: { ...labels, 'kubernetes.io/metadata.name': name } }] },
        );
      }
      try {
        await core.createNamespacedServiceAccount({ namespace: name, body: { metadata: { name: 'default' } } });
      } catch (err) {
        if ((err as { code?: number }).code !== 409) throw err;
      }
    },
    async restartApiServer() {
      await kill(api);
      await startApiServer();
    },
    stopApiServer: () => kill(api),
    startApiServer,
    apiServerLog: () => api?.log() ?? '',
    stop: stopAll,
  };
}

/** One line per test run (all files share MESH_GUARD_E2E_RUN_DIR), not one per file. */
function announceOnce(line: string): void {
  const runDir = process.env.MESH_GUARD_E2E_RUN_DIR;
  const marker = runDir ? path.join(runDir, 'announced') : undefined;
  if (marker && fs.existsSync(marker)) return;
  if (marker) fs.writeFileSync(marker, line);
  console.log(`[e2e] ${line}`);
}
