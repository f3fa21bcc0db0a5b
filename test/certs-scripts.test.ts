/**
 * certs-scripts/create.sh and rotate.sh in --dry-run (no cluster): the certificate they make
 * verifies against their CA for the Service DNS name, a real TLS handshake with the printed
 * caBundle and ServerName mesh-guard.mesh-guard.svc succeeds (what kube-apiserver does), the
 * Secrets are valid Kubernetes objects, the caBundle patch merges into the rendered webhook
 * configuration, and rotation keeps the old CA trusted in the intermediate bundle.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { Secret } from 'kubernetes-models/v1';
import { parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const repoRoot = path.resolve(import.meta.dirname, '..');
const script = (name: string) => path.join(repoRoot, 'certs-scripts', name);
const SERVICE_DNS = 'mesh-guard.mesh-guard.svc';

type Obj = Record<string, any>;

const has = (cmd: string, args: string[]) => {
  try {
    execFileSync(cmd, args, { stdio: 'ignore', timeout: 20_000 });
    return true;
  } catch {
    return false;
  }
};
const haveOpenssl = has('openssl', ['version']) && has('bash', ['--version']);
const haveKubectl = has('kubectl', ['version', '--client']);

function run(name: string, args: string[]): { stdout: string; stderr: string; status: number | null } {
  // No kubectl on PATH: --dry-run must not need the cluster.
  const env = { ...process.env, PATH: process.env.PATH ?? '' };
  const r = spawnSync('bash', [script(name), ...args], { encoding: 'utf8', env, timeout: 60_000 });
  return { stdout: r.stdout, stderr: r.stderr, status: r.status };
}

function docs(text: string): Obj[] {
  return parseAllDocuments(text, { version: '1.1' })
    .map((d) => d.toJS() as Obj | null)
    .filter((o): o is Obj => o !== null);
}

const b64 = (s: string) => Buffer.from(s, 'base64').toString('utf8');
const pemCerts = (bundle: string) => bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];

interface Issued {
  ca: crypto.X509Certificate;
  caKey: string;
  leaf: crypto.X509Certificate;
  leafPem: string;
  leafKey: string;
  bundles: string[];
  objs: Obj[];
}

function readOutput(stdout: string): Issued {
  const objs = docs(stdout);
  const caSecret = objs.find((o) => o.kind === 'Secret' && o.metadata.name === 'mesh-guard-ca')!;
  const tlsSecret = objs.find((o) => o.kind === 'Secret' && o.metadata.name === 'mesh-guard-tls')!;
  expect(caSecret).toBeDefined();
  expect(tlsSecret).toBeDefined();
  const bundles = objs
    .filter((o) => o.kind === 'MutatingWebhookConfiguration')
    .map((o) => b64(o.webhooks[0].clientConfig.caBundle));
  expect(b64(tlsSecret.data['ca.crt'])).toBe(b64(caSecret.data['ca.crt']));
  return {
    ca: new crypto.X509Certificate(b64(caSecret.data['ca.crt'])),
    caKey: b64(caSecret.data['ca.key']),
    leaf: new crypto.X509Certificate(b64(tlsSecret.data['tls.crt'])),
    leafPem: b64(tlsSecret.data['tls.crt']),
    leafKey: b64(tlsSecret.data['tls.key']),
    bundles,
    objs,
  };
}

/** A real handshake the way the API server makes it: caBundle as the only trust, SNI = service DNS. */
async function handshake(cert: string, key: string, caBundle: string): Promise<string> {
  const server = https.createServer({ cert, key, minVersion: 'TLSv1.2' }, (_req, res) => res.end('ok'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  try {
    const port = (server.address() as AddressInfo).port;
    return await new Promise<string>((resolve, reject) => {
      const req = https.get(
        { host: '127.0.0.1', port, path: '/', servername: SERVICE_DNS, ca: caBundle, agent: false,
          checkServerIdentity: (_host, peer) => (peer.subjectaltname?.includes(`DNS:${SERVICE_DNS}`) ? undefined : new Error('SAN')) },
        (res) => {
          let body = '';
          res.on('data', (c) => (body += c));
          res.on('end', () => resolve(body));
        },
      );
      req.on('error', reject);
    });
  } finally {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
}

describe.skipIf(!haveOpenssl)('certs-scripts (openssl)', () => {
  let tmp: string;
  let created: Issued;

  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-guard-certs-scripts-'));
    const r = run('create.sh', ['--dry-run']);
    expect(r.status, r.stderr).toBe(0);
    created = readOutput(r.stdout);
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('create.sh --dry-run issues a certificate that verifies against its CA for the service DNS name', () => {
    const { ca, leaf, leafKey, caKey } = created;
    expect(ca.ca).toBe(true);
    expect(leaf.ca).toBe(false);
    expect(leaf.checkIssued(ca)).toBe(true);
    expect(leaf.verify(ca.publicKey)).toBe(true);
    expect(leaf.checkHost(SERVICE_DNS)).toBe(SERVICE_DNS);
    expect(leaf.checkHost(`${SERVICE_DNS}.cluster.local`)).toBe(`${SERVICE_DNS}.cluster.local`);
    expect(leaf.checkHost('other.mesh-guard.svc')).toBeUndefined();
    expect(leaf.keyUsage).toContain('1.3.6.1.5.5.7.3.1'); // serverAuth
    expect(leaf.checkPrivateKey(crypto.createPrivateKey(leafKey))).toBe(true);
    expect(ca.checkPrivateKey(crypto.createPrivateKey(caKey))).toBe(true);
    const days = (new Date(leaf.validTo).getTime() - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(360);
    expect(days).toBeLessThan(367);
    expect(new Date(ca.validTo).getTime()).toBeGreaterThan(new Date(leaf.validTo).getTime());
  });

  it('prints valid Secrets and a caBundle patch holding exactly the CA', () => {
    const secrets = created.objs.filter((o) => o.kind === 'Secret');
    expect(secrets.map((s) => s.metadata.name).sort()).toEqual(['mesh-guard-ca', 'mesh-guard-tls']);
    for (const s of secrets) {
      expect(s.metadata.namespace).toBe('mesh-guard');
      expect(() => new Secret(s as never).validate()).not.toThrow();
    }
    expect(secrets.find((s) => s.metadata.name === 'mesh-guard-tls')!.type).toBe('kubernetes.io/tls');
    expect(created.bundles).toHaveLength(1);
    expect(pemCerts(created.bundles[0]!)).toHaveLength(1);
    expect(new crypto.X509Certificate(created.bundles[0]!).fingerprint256).toBe(created.ca.fingerprint256);
  });

  it('the served certificate passes an API-server-style TLS handshake with the printed caBundle', async () => {
    expect(await handshake(created.leafPem, created.leafKey, created.bundles[0]!)).toBe('ok');
  });

  it.skipIf(!haveKubectl)('the caBundle patch merges into the rendered webhook configuration', () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'kustomize-'));
    fs.writeFileSync(path.join(dir, 'all.yaml'), execFileSync('kubectl', ['kustomize', path.join(repoRoot, 'deploy/base')], { encoding: 'utf8' }));
    const patch = created.objs.find((o) => o.kind === 'MutatingWebhookConfiguration')!;
    fs.writeFileSync(path.join(dir, 'patch.yaml'), JSON.stringify(patch));
    fs.writeFileSync(path.join(dir, 'kustomization.yaml'), 'resources: [all.yaml]\npatches:\n  - path: patch.yaml\n');
    const out = docs(execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8' }));
    const mwc = out.find((o) => o.kind === 'MutatingWebhookConfiguration')!;
    expect(mwc.webhooks).toHaveLength(1);
    expect(mwc.webhooks[0].failurePolicy).toBe('Ignore');
    expect(mwc.webhooks[0].clientConfig.service.name).toBe('mesh-guard');
    expect(b64(mwc.webhooks[0].clientConfig.caBundle)).toBe(created.bundles[0]);
  });

  it('rotate.sh --dry-run keeps the old CA trusted until the new certificate is served', async () => {
    const current = path.join(tmp, 'current-bundle.pem');
    fs.writeFileSync(current, created.bundles[0]!);
    const r = run('rotate.sh', ['--dry-run', '--current-bundle', current]);
    expect(r.status, r.stderr).toBe(0);
    const rotated = readOutput(r.stdout);
    expect(rotated.ca.fingerprint256).not.toBe(created.ca.fingerprint256);
    expect(rotated.leaf.verify(rotated.ca.publicKey)).toBe(true);
    expect(rotated.leaf.verify(created.ca.publicKey)).toBe(false);
    expect(rotated.leaf.checkHost(SERVICE_DNS)).toBe(SERVICE_DNS);

    // Printed in the order to apply: bundle(old+new), Secrets, bundle(new).
    const kinds = rotated.objs.map((o) => o.kind);
    expect(kinds).toEqual(['MutatingWebhookConfiguration', 'Secret', 'Secret', 'MutatingWebhookConfiguration']);
    const [during, after] = rotated.bundles as [string, string];
    const fps = (b: string) => pemCerts(b).map((p) => new crypto.X509Certificate(p).fingerprint256);
    expect(fps(during).sort()).toEqual([created.ca.fingerprint256, rotated.ca.fingerprint256].sort());
    expect(fps(after)).toEqual([rotated.ca.fingerprint256]);

    // While the bundle holds both CAs, pods serving the old or the new certificate are both trusted.
    expect(await handshake(created.leafPem, created.leafKey, during)).toBe('ok');
    expect(await handshake(rotated.leafPem, rotated.leafKey, during)).toBe('ok');
    // The final bundle trusts only the new one.
    expect(await handshake(rotated.leafPem, rotated.leafKey, after)).toBe('ok');
    await expect(handshake(created.leafPem, created.leafKey, after)).rejects.toThrow();

    // Rotating again from the intermediate bundle does not duplicate a CA already in it.
    fs.writeFileSync(current, during + pemCerts(during)[0]);
    const again = run('rotate.sh', ['--dry-run', '--current-bundle', current]);
    expect(again.status, again.stderr).toBe(0);
    const b = readOutput(again.stdout).bundles[0]!;
    expect(new Set(fps(b)).size).toBe(fps(b).length - 1); // the duplicate we planted stays, nothing new is doubled
  });

  it('rejects unknown arguments', () => {
    expect(run('create.sh', ['--dry-run', '--bogus']).status).not.toBe(0);
    expect(run('rotate.sh', ['--dry-run', '--bogus']).status).not.toBe(0);
  });
});
