/**
 * Serving certificate: the configured files, or a self-signed CA and serving certificate
 * made at start (EC P-256, fast to generate) for a laptop `npm start`.
 *
 * `selfsigned` (with @peculiar/x509, pkijs, asn1js and reflect-metadata) is loaded in a
 * short-lived worker thread, never in the main thread: importing it there cost about
 * 16 MiB of resident memory for the life of the process and ~200 ms of start-up, for
 * two certificates made once. The worker generates them, posts the PEMs back and exits,
 * and its isolate's memory goes with it. In production, where cert-manager provides the
 * files, it is never loaded at all.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { X509Certificate } from 'node:crypto';
import { Worker } from 'node:worker_threads';
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

type GenerateOptions = NonNullable<Parameters<typeof import('selfsigned').generate>[1]>;
type Attributes = Parameters<typeof import('selfsigned').generate>[0];
interface GenerateJob {
  readonly module: string;
  readonly ca: { attrs: Attributes; opts: GenerateOptions };
  readonly leaf: { attrs: Attributes; opts: GenerateOptions };
}
interface Pem {
  readonly private: string;
  readonly cert: string;
}

/**
 * The worker's code, CommonJS evaluated from a string so that it runs the same from the
 * compiled build and from the TypeScript sources under test; `selfsigned` is required by
 * the absolute path resolved here. The CA signs the leaf.
 */
const WORKER_SOURCE = `
const { parentPort, workerData: job } = require('node:worker_threads');
const { generate } = require(job.module);
(async () => {
  const ca = await generate(job.ca.attrs, job.ca.opts);
  const leaf = await generate(job.leaf.attrs, { ...job.leaf.opts, ca: { key: ca.private, cert: ca.cert } });
  return { ca: { private: ca.private, cert: ca.cert }, leaf: { private: leaf.private, cert: leaf.cert } };
})().then(
  (pems) => parentPort.postMessage({ pems }),
  (err) => parentPort.postMessage({ error: err instanceof Error ? err.message : String(err) }),
);
`;

function generateInWorker(job: GenerateJob): Promise<{ ca: Pem; leaf: Pem }> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: job, stdout: false, stderr: false });
    let settled = false;
    worker.once('message', (msg: { pems?: { ca: Pem; leaf: Pem }; error?: string }) => {
      settled = true;
      if (msg.pems) resolve(msg.pems);
      else reject(new Error(`self-signed certificate: ${msg.error ?? 'generation failed'}`));
    });
    worker.once('error', (err) => {
      settled = true;
      reject(err);
    });
    worker.once('exit', (code) => {
      if (!settled) reject(new Error(`self-signed certificate: worker exited with ${code}`));
    });
  });
}

async function createSelfSigned(dir: string, extraDnsNames: readonly string[]): Promise<TlsMaterial> {
  const notBefore = new Date(Date.now() - 60_000);
  const notAfter = new Date(notBefore.getTime() + 365 * 24 * 3600_000);
  const dnsNames = [...new Set(['localhost', ...SERVICE_DNS_NAMES, ...extraDnsNames])];
  const common = { keyType: 'ec', algorithm: 'sha256', notBeforeDate: notBefore, notAfterDate: notAfter } as const;
  const { ca, leaf } = await generateInWorker({
    module: createRequire(import.meta.url).resolve('selfsigned'),
    ca: {
      attrs: [{ name: 'commonName', value: 'mesh-guard self-signed CA' }],
      opts: {
        ...common,
        extensions: [
          { name: 'basicConstraints', cA: true, critical: true },
          { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
        ],
      },
    },
    leaf: {
      attrs: [{ name: 'commonName', value: 'mesh-guard.mesh-guard.svc' }],
      opts: {
        ...common,
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
      },
    },
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
