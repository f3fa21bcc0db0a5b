/**
 * Serving certificate: the configured files, or a self-signed CA and serving certificate
 * made at start (EC P-256, fast to generate) for a laptop `npm start`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { generate } from 'selfsigned';
import type { Config } from '../config/schema.js';

export interface TlsMaterial {
  readonly key: string;
  readonly cert: string;
  readonly source: 'files' | 'self-signed';
  /** For self-signed: the CA certificate file to pass to `curl --cacert`. */
  readonly caFile?: string;
  readonly certFile?: string;
  readonly keyFile?: string;
  readonly notAfter: Date;
}

export const SERVICE_DNS_NAMES = [
  'mesh-guard',
  'mesh-guard.mesh-guard',
  'mesh-guard.mesh-guard.svc',
  'mesh-guard.mesh-guard.svc.cluster.local',
];

export async function loadOrCreateTls(tls: Config['server']['tls']): Promise<TlsMaterial> {
  if (tls.certFile || tls.keyFile) {
    if (!tls.certFile || !tls.keyFile) throw new Error('TLS: set both the certificate and the key file, or neither');
    const cert = fs.readFileSync(tls.certFile, 'utf8');
    const key = fs.readFileSync(tls.keyFile, 'utf8');
    const x509 = new X509Certificate(cert);
    return { cert, key, source: 'files', certFile: tls.certFile, keyFile: tls.keyFile, notAfter: new Date(x509.validTo) };
  }
  return createSelfSigned(tls.selfSignedDir || path.join(os.tmpdir(), 'mesh-guard'), tls.selfSignedDnsNames);
}

async function createSelfSigned(dir: string, extraDnsNames: readonly string[]): Promise<TlsMaterial> {
  const notBefore = new Date(Date.now() - 60_000);
  const notAfter = new Date(notBefore.getTime() + 365 * 24 * 3600_000);
  const ca = await generate([{ name: 'commonName', value: 'mesh-guard self-signed CA' }], {
    keyType: 'ec',
    algorithm: 'sha256',
    notBeforeDate: notBefore,
    notAfterDate: notAfter,
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  });
  const dnsNames = [...new Set(['localhost', ...SERVICE_DNS_NAMES, ...extraDnsNames])];
  const leaf = await generate([{ name: 'commonName', value: 'mesh-guard.mesh-guard.svc' }], {
    keyType: 'ec',
    algorithm: 'sha256',
    notBeforeDate: notBefore,
    notAfterDate: notAfter,
    ca: { key: ca.private, cert: ca.cert },
    extensions: [
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          ...dnsNames.map((value) => ({ type: 2 as const, value })),
          { type: 7 as const, ip: '127.0.0.1' },
          { type: 7 as const, ip: '::1' },
        ],
      },
    ],
  });
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const caFile = path.join(dir, 'ca.crt');
  const certFile = path.join(dir, 'tls.crt');
  const keyFile = path.join(dir, 'tls.key');
  fs.writeFileSync(caFile, ca.cert);
  fs.writeFileSync(certFile, leaf.cert);
  fs.writeFileSync(keyFile, leaf.private, { mode: 0o600 });
  return { cert: leaf.cert, key: leaf.private, source: 'self-signed', caFile, certFile, keyFile, notAfter };
}
