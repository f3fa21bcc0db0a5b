/**
 * Certificate hot reload against a real HTTPS server, with the certificate files laid out and
 * swapped exactly the way kubelet updates a Secret volume: `tls.crt -> ..data/tls.crt`,
 * `..data -> ..<timestamp>`, and an update renames a fresh `..data_tmp` symlink over `..data`.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { Writable } from 'node:stream';
import type { AddressInfo } from 'node:net';
import { pino, type Logger } from 'pino';
import { generate } from 'selfsigned';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import { startServer } from '../src/server/server.js';
import {
  CertificateLoadError,
  checkKeyPair,
  readCertificateNotAfter,
  watchCertificates,
  type CertificateWatcher,
} from '../src/server/cert-reload.js';

interface Pair {
  cert: string;
  key: string;
  fingerprint256: string;
}

async function makePair(cn: string): Promise<Pair> {
  const r = await generate([{ name: 'commonName', value: cn }], {
    keyType: 'ec',
    algorithm: 'sha256',
    notAfterDate: new Date(Date.now() + 24 * 3600_000),
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }] },
    ],
  });
  const fingerprint256 = checkKeyPair(Buffer.from(r.cert), Buffer.from(r.private)).fingerprint256;
  return { cert: r.cert, key: r.private, fingerprint256 };
}

/** A Secret volume as kubelet's AtomicWriter lays it out. */
class SecretVolume {
  private generation = 0;
  private current = '';
  constructor(readonly dir: string) {}

  get certFile(): string {
    return path.join(this.dir, 'tls.crt');
  }
  get keyFile(): string {
    return path.join(this.dir, 'tls.key');
  }

  write(files: { 'tls.crt': string; 'tls.key': string }): void {
    const tsDir = `..2026_11_22_00_00_00.${process.pid}${++this.generation}`;
    fs.mkdirSync(path.join(this.dir, tsDir), { mode: 0o755 });
    for (const [name, content] of Object.entries(files)) fs.writeFileSync(path.join(this.dir, tsDir, name), content);
    const tmp = path.join(this.dir, '..data_tmp');
    fs.symlinkSync(tsDir, tmp);
    fs.renameSync(tmp, path.join(this.dir, '..data')); // the atomic swap
    for (const name of Object.keys(files)) {
      const link = path.join(this.dir, name);
      if (!fs.existsSync(link)) fs.symlinkSync(path.join('..data', name), link);
    }
    if (this.current) fs.rmSync(path.join(this.dir, this.current), { recursive: true, force: true });
    this.current = tsDir;
  }
}

function captureLogger(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  return { log: pino({ level: 'debug' }, stream), lines };
}

function peerFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false }, () => {
      const fp = socket.getPeerCertificate().fingerprint256;
      socket.end();
      resolve(fp);
    });
    socket.on('error', reject);
  });
}

function get(port: number, agent: https.Agent): Promise<{ body: string; reused: boolean; fingerprint: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, path: '/', agent, rejectUnauthorized: false }, (res) => {
      // Read it now: the socket goes back to the agent's pool once the response ends.
      const fingerprint = (res.socket as tls.TLSSocket).getPeerCertificate().fingerprint256;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () =>
        resolve({
          body,
          reused: req.reusedSocket,
          fingerprint,
        }),
      );
    });
    req.on('error', reject);
  });
}

describe('watchCertificates', () => {
  let pairA: Pair;
  let pairB: Pair;
  let pairC: Pair;
  let tmp: string;
  let volume: SecretVolume;
  let server: https.Server;
  let port: number;
  let watcher: CertificateWatcher | undefined;

  beforeAll(async () => {
    [pairA, pairB, pairC] = await Promise.all([makePair('a'), makePair('b'), makePair('c')]);
  });

  afterEach(async () => {
    watcher?.close();
    watcher = undefined;
    server?.closeAllConnections();
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  async function startServer(): Promise<void> {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-guard-certs-'));
    volume = new SecretVolume(tmp);
    volume.write({ 'tls.crt': pairA.cert, 'tls.key': pairA.key });
    server = https.createServer(
      { key: fs.readFileSync(volume.keyFile), cert: fs.readFileSync(volume.certFile), minVersion: 'TLSv1.2' },
      (_req, res) => res.end('ok'),
    );
    server.keepAliveTimeout = 60_000;
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    port = (server.address() as AddressInfo).port;
  }

  it('serves the new certificate after a kubelet-style symlink swap, keeping open connections', async () => {
    await startServer();
    const { log, lines } = captureLogger();
    const reloads: Array<{ notAfter: Date; fingerprint256: string }> = [];
    let onReloadB!: () => void;
    const reloaded = new Promise<void>((r) => (onReloadB = r));
    watcher = watchCertificates({
      server,
      certFile: volume.certFile,
      keyFile: volume.keyFile,
      intervalMs: 50,
      log,
      onReload: (info) => {
        reloads.push(info);
        if (info.fingerprint256 === pairB.fingerprint256) onReloadB();
      },
    });
    await watcher.check();
    // The first poll installs the pair on disk (the same one the server started with).
    expect(reloads.map((r) => r.fingerprint256)).toEqual([pairA.fingerprint256]);

    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const before = await get(port, agent);
      expect(before.fingerprint).toBe(pairA.fingerprint256);
      expect(await peerFingerprint(port)).toBe(pairA.fingerprint256);

      volume.write({ 'tls.crt': pairB.cert, 'tls.key': pairB.key });
      await reloaded; // found by the poll, not by an explicit check

      expect(await peerFingerprint(port)).toBe(pairB.fingerprint256);
      expect(reloads.map((r) => r.fingerprint256)).toEqual([pairA.fingerprint256, pairB.fingerprint256]);
      expect(reloads[1]!.notAfter.getTime()).toBe(readCertificateNotAfter(volume.certFile).getTime());

      // The keep-alive connection opened before the swap still works, on its original session.
      const after = await get(port, agent);
      expect(after.body).toBe('ok');
      expect(after.reused).toBe(true);
      expect(after.fingerprint).toBe(pairA.fingerprint256);
    } finally {
      agent.destroy();
    }
    expect(lines.join('')).toContain('reloaded TLS certificate');
    expect(lines.join('')).not.toContain('PRIVATE KEY');
  });

  it('keeps the old certificate when the new key does not match, then takes a good pair', async () => {
    await startServer();
    const { log, lines } = captureLogger();
    let reloads = 0;
    watcher = watchCertificates({
      server,
      certFile: volume.certFile,
      keyFile: volume.keyFile,
      intervalMs: 3_600_000, // driven by check() only
      log,
      onReload: () => reloads++,
    });
    await watcher.check();
    expect(reloads).toBe(1); // the first poll

    volume.write({ 'tls.crt': pairB.cert, 'tls.key': pairC.key }); // mismatched
    await watcher.check();
    expect(reloads).toBe(1);
    expect(await peerFingerprint(port)).toBe(pairA.fingerprint256);
    const log1 = lines.join('');
    expect(log1).toContain('private key does not match the certificate');
    expect(log1).toContain('keeping the current certificate');
    expect(log1).not.toContain('PRIVATE KEY');
    expect(log1).not.toContain(pairC.key.split('\n')[1]!);

    // The same bad content is not logged again on every poll.
    const count = lines.length;
    await watcher.check();
    expect(lines.length).toBe(count);

    volume.write({ 'tls.crt': 'not a certificate', 'tls.key': pairB.key }); // garbage
    await watcher.check();
    expect(lines.join('')).toContain('certificate does not parse');
    expect(await peerFingerprint(port)).toBe(pairA.fingerprint256);

    volume.write({ 'tls.crt': pairB.cert, 'tls.key': 'garbage' });
    await watcher.check();
    expect(lines.join('')).toContain('private key does not parse');
    expect(await peerFingerprint(port)).toBe(pairA.fingerprint256);

    volume.write({ 'tls.crt': pairB.cert, 'tls.key': pairB.key });
    await watcher.check();
    expect(reloads).toBe(2);
    expect(await peerFingerprint(port)).toBe(pairB.fingerprint256);
    expect(lines.join('')).not.toContain('PRIVATE KEY');
  });

  it('keeps the old certificate while the files are missing, and reloads when they return', async () => {
    await startServer();
    const { log, lines } = captureLogger();
    watcher = watchCertificates({ server, certFile: volume.certFile, keyFile: volume.keyFile, intervalMs: 3_600_000, log });
    fs.rmSync(path.join(tmp, '..data'));
    await watcher.check();
    expect(lines.join('')).toContain('TLS certificate files unreadable');
    expect(await peerFingerprint(port)).toBe(pairA.fingerprint256);
    volume.write({ 'tls.crt': pairC.cert, 'tls.key': pairC.key });
    await watcher.check();
    expect(await peerFingerprint(port)).toBe(pairC.fingerprint256);
  });

  it('picks up a swap made right after it starts, and keeps TLS 1.2 as the minimum', async () => {
    await startServer();
    const { log } = captureLogger();
    watcher = watchCertificates({ server, certFile: volume.certFile, keyFile: volume.keyFile, intervalMs: 3_600_000, log });
    volume.write({ 'tls.crt': pairB.cert, 'tls.key': pairB.key });
    await watcher.check();
    const err = await new Promise<Error | undefined>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, maxVersion: 'TLSv1.1', minVersion: 'TLSv1' }, () => {
        s.end();
        resolve(undefined);
      });
      s.on('error', (e) => resolve(e));
    });
    expect(err).toBeInstanceOf(Error);
    expect(await peerFingerprint(port)).toBe(pairB.fingerprint256);
  });
});

describe('the mesh-guard server with a kubelet-mounted Secret', () => {
  it('serves a swapped certificate without a restart and updates the expiry gauge', async () => {
    const [a, b] = await Promise.all([makePair('server-a'), makePair('server-b')]);
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-guard-server-certs-'));
    const volume = new SecretVolume(tmp);
    volume.write({ 'tls.crt': a.cert, 'tls.key': a.key });
    const config = parseConfig('cluster:\n  mode: "off"\nserver:\n  port: 0\n  host: 127.0.0.1\n  shutdownDelayMs: 0\n  tls:\n    reloadIntervalMs: 100\n', {
      TLS_CERT_FILE: volume.certFile,
      TLS_KEY_FILE: volume.keyFile,
    });
    const { log } = captureLogger();
    const server = await startServer({ config, log, env: {} });
    try {
      expect(await peerFingerprint(server.port)).toBe(a.fingerprint256);
      const gauge = async () => (await server.metrics.certificateExpiry.get()).values[0]?.value;
      const before = await gauge();
      volume.write({ 'tls.crt': b.cert, 'tls.key': b.key });
      const deadline = Date.now() + 20_000;
      let fp = a.fingerprint256;
      while (fp !== b.fingerprint256 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
        fp = await peerFingerprint(server.port);
      }
      expect(fp).toBe(b.fingerprint256);
      expect(await gauge()).toBe(new Date(new crypto.X509Certificate(b.cert).validTo).getTime() / 1000);
      expect(before).toBeDefined();
    } finally {
      await server.shutdown();
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});

describe('checkKeyPair / readCertificateNotAfter', () => {
  let pair: Pair;
  let other: Pair;
  beforeAll(async () => {
    [pair, other] = await Promise.all([makePair('x'), makePair('y')]);
  });
  afterAll(() => undefined);

  it('accepts a matching pair and reports notAfter', () => {
    const info = checkKeyPair(Buffer.from(pair.cert), Buffer.from(pair.key));
    expect(info.notAfter.getTime()).toBeGreaterThan(Date.now());
    expect(info.subjectAltName).toContain('DNS:localhost');
  });

  it('rejects a mismatched pair with a safe message', () => {
    expect(() => checkKeyPair(Buffer.from(pair.cert), Buffer.from(other.key))).toThrow(CertificateLoadError);
    try {
      checkKeyPair(Buffer.from(pair.cert), Buffer.from(other.key));
    } catch (err) {
      expect((err as Error).message).toBe('private key does not match the certificate');
    }
  });

  it('readCertificateNotAfter fails clearly on a missing file', () => {
    expect(() => readCertificateNotAfter('/nonexistent/tls.crt')).toThrow(/cannot read certificate file/);
  });
});
