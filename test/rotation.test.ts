/**
 * Certificate rotation under load (issue 8): the serving certificate is swapped several times,
 * the way kubelet updates a Secret volume (a new timestamped directory, then an atomic rename
 * of the `..data` symlink), while keep-alive workers and connection-churning workers keep
 * sending admissions. Targets: 0 failed requests; every handshake started after the server
 * picked up a swap presents the new certificate; a bad pair in between changes nothing.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { generate } from 'selfsigned';
import { afterAll, describe, expect, it } from 'vitest';
import { checkKeyPair } from '../src/server/cert-reload.js';
import { parseConfig } from '../src/config/load.js';
import { startLoad, latencies, percentile } from './support/load-loop.js';
import { istioCniNodePod as pod } from './support/review.js';
import { startTestServer, waitFor, type TestServer } from './support/server.js';

interface Pair {
  cert: string;
  key: string;
  fingerprint256: string;
}

async function makeCa(): Promise<{ cert: string; key: string }> {
  const ca = await generate([{ name: 'commonName', value: 'rotation test CA' }], {
    keyType: 'ec',
    algorithm: 'sha256',
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, digitalSignature: true, critical: true },
    ],
  });
  return { cert: ca.cert, key: ca.private };
}

async function makeLeaf(ca: { cert: string; key: string }, cn: string): Promise<Pair> {
  const r = await generate([{ name: 'commonName', value: cn }], {
    keyType: 'ec',
    algorithm: 'sha256',
    ca,
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }] },
    ],
  });
  return { cert: r.cert, key: r.private, fingerprint256: checkKeyPair(Buffer.from(r.cert), Buffer.from(r.private)).fingerprint256 };
}

/** A Secret volume laid out and updated as kubelet's AtomicWriter does it. */
function secretVolume(dir: string) {
  let generation = 0;
  let current = '';
  return {
    certFile: path.join(dir, 'tls.crt'),
    keyFile: path.join(dir, 'tls.key'),
    write(files: { 'tls.crt': string; 'tls.key': string }) {
      const ts = `..2026_11_22_03_00_00.${++generation}`;
      fs.mkdirSync(path.join(dir, ts));
      for (const [name, content] of Object.entries(files)) fs.writeFileSync(path.join(dir, ts, name), content);
      fs.symlinkSync(ts, path.join(dir, '..data_tmp'));
      fs.renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
      for (const name of Object.keys(files)) if (!fs.existsSync(path.join(dir, name))) fs.symlinkSync(path.join('..data', name), path.join(dir, name));
      if (current) fs.rmSync(path.join(dir, current), { recursive: true, force: true });
      current = ts;
    },
  };
}

describe('certificate rotation under load', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-guard-rotation-'));
  let s: TestServer | undefined;
  afterAll(async () => {
    await s?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('swaps the certificate 4 times (and rejects a bad pair) with 0 failed requests; new handshakes get the new certificate', async () => {
    const ca = await makeCa();
    const pairs = await Promise.all(['gen-0', 'gen-1', 'gen-2', 'gen-3', 'gen-4'].map((cn) => makeLeaf(ca, cn)));
    const volume = secretVolume(dir);
    volume.write({ 'tls.crt': pairs[0]!.cert, 'tls.key': pairs[0]!.key });
    const config = parseConfig(
      `server:\n  tls:\n    certFile: ${volume.certFile}\n    keyFile: ${volume.keyFile}\n    reloadIntervalMs: 100\n`,
      {},
    );
    s = await startTestServer({ config });
    const port = s.server.port;

    const keepAlive = startLoad({ port, ca: ca.cert, workers: 3, pod: () => pod, namespace: 'istio-system', pauseMs: 2 });
    // A new connection (and so a new handshake) every 3 requests.
    const churn = startLoad({ port, ca: ca.cert, workers: 3, pod: () => pod, namespace: 'istio-system', pauseMs: 2, requestsPerConnection: 3 });

    const reloads = () => s!.logs.filter((l) => l.msg === 'reloaded TLS certificate').length;
    /** When this test saw the server log each reload (after setSecureContext ran). */
    const seenAt: number[] = [performance.now()]; // generation 0 is in force from the start
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, 600));
    for (let gen = 1; gen < pairs.length; gen++) {
      if (gen === 3) {
        // A pair whose key does not match: logged, ignored, the current certificate stays.
        const before = s.logs.length;
        volume.write({ 'tls.crt': pairs[3]!.cert, 'tls.key': pairs[2]!.key });
        await waitFor(() => s!.logs.slice(before).some((l) => l.msg === 'TLS certificate reload failed; keeping the current certificate'), 10_000);
        await new Promise((r) => setTimeout(r, 300));
      }
      const count = reloads();
      volume.write({ 'tls.crt': pairs[gen]!.cert, 'tls.key': pairs[gen]!.key });
      await waitFor(() => reloads() > count, 10_000);
      seenAt.push(performance.now());
      await new Promise((r) => setTimeout(r, 600));
    }
    await Promise.all([keepAlive.stop(), churn.stop()]);

    const records = [...keepAlive.records, ...churn.records];
    const failed = records.filter((r) => !r.ok);
    const handshakes = [...keepAlive.handshakes, ...churn.handshakes];
    const index = new Map(pairs.map((p, i) => [p.fingerprint256, i]));
    const wrong = handshakes.filter((h) => {
      // The generation in force when the handshake started, at the latest.
      const inForce = seenAt.filter((t) => t < h.startedAt).length - 1;
      const presented = index.get(h.fingerprint256);
      return presented === undefined || presented < inForce;
    });
    const perGeneration = pairs.map((p) => handshakes.filter((h) => h.fingerprint256 === p.fingerprint256).length);
    const l = latencies(records);
    // eslint-disable-next-line no-console
    console.log(
      `rotation: ${pairs.length - 1} swaps + 1 bad pair in ${Math.round(performance.now() - t0)} ms; ${records.length} requests, ${failed.length} failed; ` +
        `${handshakes.length} handshakes (per generation ${perGeneration.join('/')}), ${wrong.length} presented an outdated certificate; p99 ${percentile(l, 99).toFixed(1)} ms`,
    );
    expect(failed.map((f) => f.error).slice(0, 5)).toEqual([]);
    expect(wrong.slice(0, 5)).toEqual([]);
    // Every generation was really served, and the bad pair never was (it has gen-3's certificate
    // with gen-2's key, so it could not have completed a handshake anyway).
    for (const [gen, n] of perGeneration.entries()) expect(n, `handshakes on generation ${gen}`).toBeGreaterThan(0);
  }, 60_000);
});
