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

  describe('against a fake kubectl (apply mode)', () => {
    let bin: string;
    let state: string;
    const readState = () => JSON.parse(fs.readFileSync(state, 'utf8')) as FakeState;
    const runFake = (name: string, args: string[]) => {
      const r = spawnSync('bash', [script(name), ...args], {
        encoding: 'utf8',
        timeout: 60_000,
        env: { ...process.env, PATH: `${bin}${path.delimiter}${process.env.PATH ?? ''}`, FAKE_KUBE_STATE: state },
      });
      return { stdout: r.stdout, stderr: r.stderr, status: r.status };
    };

    beforeAll(() => {
      bin = fs.mkdtempSync(path.join(tmp, 'bin-'));
      state = path.join(bin, 'state.json');
      fs.writeFileSync(path.join(bin, 'kubectl'), FAKE_KUBECTL.replace('__YAML__', JSON.stringify(path.join(repoRoot, 'node_modules/yaml/dist/index.js'))), { mode: 0o755 });
      fs.writeFileSync(state, JSON.stringify({ secrets: {}, bundle: '', calls: [] } satisfies FakeState));
    });

    it('create.sh is idempotent: creates once, then changes nothing, --force reissues from the same CA', () => {
      const first = runFake('create.sh', []);
      expect(first.status, first.stderr).toBe(0);
      const s1 = readState();
      const ca = new crypto.X509Certificate(b64(s1.secrets['mesh-guard-ca']!['ca.crt']!));
      const leaf = new crypto.X509Certificate(b64(s1.secrets['mesh-guard-tls']!['tls.crt']!));
      expect(leaf.verify(ca.publicKey)).toBe(true);
      expect(leaf.checkHost(SERVICE_DNS)).toBe(SERVICE_DNS);
      expect(pemCerts(b64(s1.bundle)).map((p) => new crypto.X509Certificate(p).fingerprint256)).toEqual([ca.fingerprint256]);
      // Secrets go in with server-side apply (no last-applied copy of the keys); caBundle first.
      expect(s1.calls.filter((c) => c.startsWith('apply')).every((c) => c.includes('--server-side'))).toBe(true);
      const order = s1.calls.filter((c) => /^(apply|patch)/.test(c)).map((c) => c.split(' ')[0]);
      expect(order).toEqual(['patch', 'apply', 'apply']);

      const second = runFake('create.sh', []);
      expect(second.status, second.stderr).toBe(0);
      expect(second.stderr).toContain('nothing to change');
      const s2 = readState();
      expect(s2.secrets).toEqual(s1.secrets);
      expect(s2.bundle).toBe(s1.bundle);
      expect(s2.calls.slice(s1.calls.length).filter((c) => /^(apply|patch)/.test(c))).toEqual([]);

      const forced = runFake('create.sh', ['--force']);
      expect(forced.status, forced.stderr).toBe(0);
      const s3 = readState();
      expect(s3.secrets['mesh-guard-ca']).toEqual(s1.secrets['mesh-guard-ca']);
      expect(s3.bundle).toBe(s1.bundle);
      const leaf3 = new crypto.X509Certificate(b64(s3.secrets['mesh-guard-tls']!['tls.crt']!));
      expect(leaf3.fingerprint256).not.toBe(leaf.fingerprint256);
      expect(leaf3.verify(ca.publicKey)).toBe(true);
    });

    it('rotate.sh stops with both CAs trusted when the pods do not serve the new certificate in time', () => {
      const before = readState();
      const r = runFake('rotate.sh', ['--timeout', '0']);
      expect(r.status).toBe(2);
      expect(r.stderr).toContain('--finish');
      const after = readState();
      const newCa = new crypto.X509Certificate(b64(after.secrets['mesh-guard-ca']!['ca.crt']!));
      const oldCa = new crypto.X509Certificate(b64(before.secrets['mesh-guard-ca']!['ca.crt']!));
      expect(newCa.fingerprint256).not.toBe(oldCa.fingerprint256);
      const fps = pemCerts(b64(after.bundle)).map((p) => new crypto.X509Certificate(p).fingerprint256);
      expect(fps.sort()).toEqual([oldCa.fingerprint256, newCa.fingerprint256].sort());
      // ...and create.sh then sees a consistent install and changes nothing.
      const again = runFake('create.sh', []);
      expect(again.status, again.stderr).toBe(0);
      expect(readState().bundle).toBe(after.bundle);
    });
  });

  it('rejects unknown arguments', () => {
    expect(run('create.sh', ['--dry-run', '--bogus']).status).not.toBe(0);
    expect(run('rotate.sh', ['--dry-run', '--bogus']).status).not.toBe(0);
  });
});

interface FakeState {
  secrets: Record<string, Record<string, string>>;
  bundle: string;
  calls: string[];
}

/** Just enough kubectl for the scripts: a namespace and webhook configuration that exist, Secrets, caBundle, no pods. */
const FAKE_KUBECTL = `#!/usr/bin/env node
const fs = require('node:fs');
const { parse } = require(__YAML__);
const file = process.env.FAKE_KUBE_STATE;
const st = JSON.parse(fs.readFileSync(file, 'utf8'));
const args = process.argv.slice(2);
st.calls.push(args.filter((a) => a !== '-n' && a !== 'mesh-guard').join(' '));
const save = () => fs.writeFileSync(file, JSON.stringify(st));
const out = (s) => process.stdout.write(s);
const a = args.filter((x, i) => !(x === '-n' || args[i - 1] === '-n'));
const jp = (a.find((x) => x.startsWith('jsonpath=')) || '').slice(9);
const oIdx = a.indexOf('-o');
const o = oIdx >= 0 ? a[oIdx + 1] : '';
if (a[0] === 'get' && a[1] === 'namespace') { save(); out('namespace/mesh-guard\\n'); }
else if (a[0] === 'get' && a[1] === 'mutatingwebhookconfiguration') {
  save();
  if (o.startsWith('jsonpath=')) out(st.bundle); else out('0-mesh-guard\\n');
} else if (a[0] === 'get' && a[1] === 'secret') {
  save();
  const sec = st.secrets[a[2]];
  const key = o.slice('jsonpath={.data.'.length, -1).replace(/\\\\\\./g, '.');
  if (!sec) { process.stderr.write('Error from server (NotFound)\\n'); process.exit(1); }
  out(sec[key] || '');
} else if (a[0] === 'get' && a[1] === 'pods') { save(); }
else if (a[0] === 'apply') {
  const doc = parse(fs.readFileSync(0, 'utf8'));
  st.secrets[doc.metadata.name] = doc.data;
  save(); out('secret/' + doc.metadata.name + ' serverside-applied\\n');
} else if (a[0] === 'patch') {
  const doc = parse(fs.readFileSync(a[a.indexOf('--patch-file') + 1], 'utf8'));
  st.bundle = doc.webhooks[0].clientConfig.caBundle;
  save(); out('patched\\n');
} else { process.stderr.write('fake kubectl: unsupported ' + args.join(' ') + '\\n'); process.exit(1); }
`;
