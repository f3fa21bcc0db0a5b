/**
 * deploy/helm/mesh-guard installed into the real kube-apiserver v1.36.3 with the real helm binary
 * (.build/bin/helm), as docs/install.md "C. Helm" path A says: `helm install` in dry-run, then
 * certs-scripts/create.sh (the user-supplied Secret and the caBundle, no cert-manager), then
 * `helm upgrade --reuse-values --set config.dryRun=false`. Every assertion is on what the API server
 * stored. The only test-only value is webhook.url (mesh-guard runs as a process on 127.0.0.1, with a
 * serving certificate for 127.0.0.1 signed by the CA create.sh made, and with the config file the
 * Deployment mounts, copied from the stored ConfigMap as kubelet would).
 *
 * The cert-manager mode needs cert-manager's CRDs and controllers, which this control plane does not
 * have: test/helm.test.ts renders it (it equals deploy/overlays/cert-manager).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  AdmissionregistrationV1Api,
  AppsV1Api,
  CoreV1Api,
  KubernetesObjectApi,
  type V1MutatingWebhook,
  type V1Pod,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { chartDir, helmBin } from '../support/helm.js';
import { freePort } from '../support/process.js';
import { istioCniNodePod, repoRoot } from '../support/review.js';
import { startControlPlane, type ControlPlane } from './support/controlplane.js';
import { startMeshGuard, type MeshGuard } from './support/mesh-guard.js';
import { annotations, createPod, eventually } from './support/pods.js';
import { deployBaseObjects } from './support/webhooks.js';

const NS = 'mesh-guard';
const RELEASE = 'mesh-guard';
const OPTED_OUT = 'oneagent.dynatrace.com/inject';

let seq = 0;
const cniPod = (): V1Pod => ({ ...istioCniNodePod, metadata: { ...istioCniNodePod.metadata, generateName: undefined, name: `istio-cni-node-helm-${++seq}` } });

/** The shipped webhook (deploy/base) without its clientConfig, which the test points at 127.0.0.1. */
function shippedWebhook(): Omit<V1MutatingWebhook, 'clientConfig'> {
  const mwc = deployBaseObjects().find((o) => o.kind === 'MutatingWebhookConfiguration') as unknown as { webhooks: V1MutatingWebhook[] };
  const { clientConfig: _unused, ...rest } = mwc.webhooks[0]!;
  return rest;
}

/**
 * A serving certificate for 127.0.0.1 (and localhost, which the readiness probe names) from the CA
 * certs-scripts/create.sh stored, made with openssl as its lib.sh gen_leaf does: Go's verifier
 * matches the issuer by its exact encoded name, which openssl copies from the CA certificate.
 */
async function leafFrom(ca: { cert: string; key: string }): Promise<{ cert: string; key: string; caPem: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-guard-e2e-leaf-'));
  const f = (n: string) => path.join(dir, n);
  fs.writeFileSync(f('ca.crt'), ca.cert);
  fs.writeFileSync(f('ca.key'), ca.key, { mode: 0o600 });
  fs.writeFileSync(f('ext.cnf'), 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n');
  const openssl = (...args: string[]) => run('openssl', args, { cwd: dir });
  await openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'tls.key');
  await openssl('req', '-new', '-sha256', '-key', 'tls.key', '-subj', '/CN=mesh-guard e2e', '-out', 'tls.csr');
  await openssl('x509', '-req', '-sha256', '-in', 'tls.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', 'ext.cnf', '-out', 'tls.crt');
  const out = { cert: fs.readFileSync(f('tls.crt'), 'utf8'), key: fs.readFileSync(f('tls.key'), 'utf8'), caPem: ca.cert };
  fs.rmSync(dir, { recursive: true, force: true });
  return out;
}

const run = promisify(execFile);

describe('helm install and helm upgrade of deploy/helm/mesh-guard into a real kube-apiserver', () => {
  let cp: ControlPlane;
  let mg: MeshGuard | undefined;
  let port: number;
  /** helm with the control plane's kubeconfig and no user Helm state. */
  const helm = async (...args: string[]) =>
    (
      await run(helmBin, [...args, '--kubeconfig', cp.kubeconfigPath], {
        timeout: 120_000,
        env: { PATH: process.env.PATH ?? '', HOME: cp.dir, HELM_CACHE_HOME: path.join(cp.dir, 'helm/cache'), HELM_CONFIG_HOME: path.join(cp.dir, 'helm/config'), HELM_DATA_HOME: path.join(cp.dir, 'helm/data') },
      })
    ).stdout;
  const release = async () => JSON.parse(await helm('status', RELEASE, '--namespace', NS, '-o', 'json')) as { version: number; info: { status: string } };
  const webhookConfiguration = () => cp.kc.makeApiClient(AdmissionregistrationV1Api).readMutatingWebhookConfiguration({ name: '0-mesh-guard' });
  const mountedConfig = async () => {
    const dep = await cp.kc.makeApiClient(AppsV1Api).readNamespacedDeployment({ name: 'mesh-guard', namespace: NS });
    const name = dep.spec!.template.spec!.volumes!.find((v) => v.configMap)!.configMap!.name!;
    const cm = await cp.kc.makeApiClient(CoreV1Api).readNamespacedConfigMap({ name, namespace: NS });
    return cm.data!['config.yaml']!;
  };

  beforeAll(async () => {
    cp = await startControlPlane();
    await cp.ensureNamespace('istio-system');
    port = await freePort();
  });
  afterAll(async () => {
    await mg?.stop();
    await cp?.stop();
  });

  it('helm install --create-namespace stores the shipped objects; 0-mesh-guard has the shipped selectors, failure policy, timeout and reinvocation', async () => {
    await helm('install', RELEASE, chartDir, '--namespace', NS, '--create-namespace', '--set', 'config.dryRun=true', '--set', `webhook.url=https://127.0.0.1:${port}/mutate`);
    expect(await release()).toMatchObject({ version: 1, info: { status: 'deployed' } });

    // Every object of deploy/base is there, Helm-managed, in the release namespace.
    const objects = KubernetesObjectApi.makeApiClient(cp.kc);
    for (const o of deployBaseObjects()) {
      const stored = await objects.read({ apiVersion: o.apiVersion, kind: o.kind, metadata: { name: o.metadata!.name!, namespace: o.metadata?.namespace } });
      expect(stored.metadata?.labels, `${o.kind}/${o.metadata!.name}`).toMatchObject({ ...o.metadata?.labels, 'app.kubernetes.io/managed-by': 'Helm' });
    }

    const mwc = await webhookConfiguration();
    expect(mwc.webhooks).toHaveLength(1);
    const { clientConfig, ...webhook } = mwc.webhooks![0]!;
    expect(webhook).toMatchObject(shippedWebhook());
    expect(webhook).toMatchObject({ failurePolicy: 'Ignore', timeoutSeconds: 3, reinvocationPolicy: 'IfNeeded', namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: [NS] }] } });
    // Path A: no caBundle until create.sh patches it in.
    expect(clientConfig).toEqual({ url: `https://127.0.0.1:${port}/mutate` });
    expect(parseConfig(await mountedConfig(), {}).dryRun).toBe(true);
  });

  it('certs-scripts/create.sh creates the Secret the Deployment mounts and puts its CA into 0-mesh-guard', async () => {
    await run('bash', [path.join(repoRoot, 'certs-scripts/create.sh')], { env: { ...process.env, KUBECONFIG: cp.kubeconfigPath }, timeout: 120_000 });
    const core = cp.kc.makeApiClient(CoreV1Api);
    const dep = await cp.kc.makeApiClient(AppsV1Api).readNamespacedDeployment({ name: 'mesh-guard', namespace: NS });
    const secretName = dep.spec!.template.spec!.volumes!.find((v) => v.secret)!.secret!.secretName!;
    const tls = await core.readNamespacedSecret({ name: secretName, namespace: NS });
    expect(tls.type).toBe('kubernetes.io/tls');
    expect(Object.keys(tls.data ?? {})).toEqual(expect.arrayContaining(['tls.crt', 'tls.key']));
    const ca = await core.readNamespacedSecret({ name: 'mesh-guard-ca', namespace: NS });
    const caPem = Buffer.from(ca.data!['ca.crt']!, 'base64').toString();
    const bundle = Buffer.from((await webhookConfiguration()).webhooks![0]!.clientConfig.caBundle ?? '', 'base64').toString();
    expect(bundle).toContain(caPem.trim());
  });

  it('gives a working webhook in dry-run: mesh-guard, with the mounted config and a certificate of that CA, is called and changes nothing', async () => {
    const ca = await cp.kc.makeApiClient(CoreV1Api).readNamespacedSecret({ name: 'mesh-guard-ca', namespace: NS });
    const b64d = (k: string) => Buffer.from(ca.data![k]!, 'base64').toString();
    mg = await startMeshGuard(cp, { installedFor: { port }, tls: await leafFrom({ cert: b64d('ca.crt'), key: b64d('ca.key') }), configYaml: await mountedConfig() });
    // The API server's webhook manager picks the configuration up asynchronously.
    const stored = await eventually('mesh-guard called', 30_000, async () => {
      const pod = await createPod(cp, cniPod());
      const n = pod.metadata!.name!;
      return mg!.lines().some((l) => l.dryRun === true && JSON.stringify(l).includes(n)) ? pod : undefined;
    });
    expect(annotations(stored)[OPTED_OUT]).toBeUndefined();
  });

  it('helm upgrade --reuse-values --set config.dryRun=false changes the mounted config, keeps the caBundle create.sh patched in, and the webhook enforces', async () => {
    const caBundle = (await webhookConfiguration()).webhooks![0]!.clientConfig.caBundle;
    await helm('upgrade', RELEASE, chartDir, '--namespace', NS, '--reuse-values', '--set', 'config.dryRun=false');
    expect(await release()).toMatchObject({ version: 2, info: { status: 'deployed' } });

    const mwc = await webhookConfiguration();
    expect(mwc.webhooks![0]!.clientConfig).toEqual({ url: `https://127.0.0.1:${port}/mutate`, caBundle });
    const { clientConfig: _unused, ...webhook } = mwc.webhooks![0]!;
    expect(webhook).toMatchObject(shippedWebhook());

    const config = await mountedConfig();
    expect(parseConfig(config, {}).dryRun).toBe(false);
    // kubelet syncs the changed ConfigMap into the volume; mesh-guard polls the file and reloads.
    const before = mg!.lines().length;
    mg!.writeConfig(config);
    await eventually('config reloaded', 15_000, async () => (mg!.lines().slice(before).some((l) => l.msg === 'config reloaded (server.* settings need a restart)' && l.dryRun === false) ? true : undefined));
    expect(annotations(await createPod(cp, cniPod()))[OPTED_OUT]).toBe('false');
  });

  it('helm upgrade --reuse-values --set policies.enabled=true passes the chart\'s >= 1.36 check against the real server and stores the policy', async () => {
    await helm('upgrade', RELEASE, chartDir, '--namespace', NS, '--reuse-values', '--set', 'policies.enabled=true');
    expect(await release()).toMatchObject({ version: 3, info: { status: 'deployed' } });
    const objects = KubernetesObjectApi.makeApiClient(cp.kc);
    for (const kind of ['MutatingAdmissionPolicy', 'MutatingAdmissionPolicyBinding']) {
      const stored = await objects.read({ apiVersion: 'admissionregistration.k8s.io/v1', kind, metadata: { name: 'mesh-guard-deadlock-guards' } });
      expect(stored.metadata?.labels?.['app.kubernetes.io/managed-by']).toBe('Helm');
    }
  });

  it('helm uninstall removes the webhook configuration and the policy, and deletes the namespace (docs/install.md)', async () => {
    await helm('uninstall', RELEASE, '--namespace', NS);
    const objects = KubernetesObjectApi.makeApiClient(cp.kc);
    const gone = async (o: { apiVersion: string; kind: string; metadata: { name: string } }) =>
      objects.read(o).then(
        () => false,
        (err: { code?: number }) => err.code === 404,
      );
    expect(await gone({ apiVersion: 'admissionregistration.k8s.io/v1', kind: 'MutatingWebhookConfiguration', metadata: { name: '0-mesh-guard' } })).toBe(true);
    expect(await gone({ apiVersion: 'admissionregistration.k8s.io/v1', kind: 'MutatingAdmissionPolicy', metadata: { name: 'mesh-guard-deadlock-guards' } })).toBe(true);
    // No namespace controller runs here to finish the deletion: Terminating is as far as it gets.
    const ns = await cp.kc.makeApiClient(CoreV1Api).readNamespace({ name: NS }).catch((err: { code?: number }) => (err.code === 404 ? undefined : Promise.reject(err)));
    expect(ns === undefined || ns.metadata?.deletionTimestamp !== undefined).toBe(true);
  });
});
