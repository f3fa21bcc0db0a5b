/**
 * Graceful shutdown under load (issue 8), against the compiled server as a child process.
 *
 * What counts as a failure, modelled on the API server and the endpoints machinery:
 * - SIGTERM flips /readyz to 503. The endpoints controller and kube-proxy then remove the pod,
 *   which takes a while; the drain delay (server.shutdownDelayMs) exists to cover that while.
 *   The load generator here plays the API server: it keeps sending on its keep-alive connections
 *   (and opening new ones) until the endpoint is "removed", which it does `ENDPOINT_LAG_MS` after
 *   it first sees /readyz answer 503, a lag shorter than the drain delay, as it must be in a
 *   correctly configured cluster. After that it sends nothing new to this endpoint.
 * - Every request sent before the removal must get a valid 200 review: that is the failure count,
 *   and its target is 0. A request sent on an already open keep-alive connection late in the
 *   drain window (after the removal, before the delay ends) must succeed too.
 * - A request still in flight when the drain delay ends (its body half sent) must finish.
 * - After the drain delay, idle keep-alive connections are closed by the server and new
 *   connections are refused. A refused new connection at that point is not a failed admission:
 *   no correctly configured API server still routes to the endpoint.
 * - The process exits 0 well within the termination grace period.
 */
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { performance } from 'node:perf_hooks';
import { afterAll, describe, expect, it } from 'vitest';
import { spawnServer, type ServerProcess } from './support/process.js';
import { startLoad, latencies, percentile, reviewBody } from './support/load-loop.js';
import { istioCniNodePod as pod } from './support/review.js';

const DRAIN_MS = 2_000;
const SHUTDOWN_TIMEOUT_MS = 5_000;
const ENDPOINT_LAG_MS = 1_000;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** GET /readyz on a fresh connection. */
function readyz(port: number, ca: string): Promise<number> {
  return new Promise((resolve) => {
    const req = https.get({ host: '127.0.0.1', port, path: '/readyz', ca, servername: 'localhost', agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('error', () => resolve(0));
    req.setTimeout(2_000, () => req.destroy());
  });
}

/** One keep-alive TLS connection we drive by hand: send a request whenever we like, see when it closes. */
class ManualConnection {
  readonly socket: tls.TLSSocket;
  closedAt: number | undefined;
  private pending: ((r: { status: number; body: string }) => void) | undefined;
  private buf = '';

  constructor(port: number, ca: string) {
    this.socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost' });
    this.socket.setEncoding('utf8');
    this.socket.on('data', (d: string) => {
      this.buf += d;
      const end = this.buf.indexOf('\r\n\r\n');
      const len = end === -1 ? undefined : /content-length:\s*(\d+)/i.exec(this.buf.slice(0, end))?.[1];
      if (len === undefined || Buffer.byteLength(this.buf.slice(end + 4)) < Number(len)) return;
      const status = Number(this.buf.slice(9, 12));
      const body = this.buf.slice(end + 4);
      this.buf = '';
      const p = this.pending;
      this.pending = undefined;
      p?.({ status, body });
    });
    this.socket.on('error', () => undefined);
    this.socket.on('close', () => {
      this.closedAt = performance.now();
      this.pending?.({ status: 0, body: 'connection closed' });
    });
  }

  ready(): Promise<void> {
    return new Promise((r) => this.socket.once('secureConnect', () => r()));
  }

  /** Sends the head and the first `split` bytes of the body now, the rest after `restAfterMs`. */
  post(body: string, split = body.length, restAfterMs = 0): Promise<{ status: number; body: string }> {
    const b = Buffer.from(body);
    const head = `POST /mutate?timeout=10s HTTP/1.1\r\nHost: mesh-guard.mesh-guard.svc\r\nContent-Type: application/json\r\nContent-Length: ${b.length}\r\n\r\n`;
    return new Promise((resolve) => {
      this.pending = resolve;
      this.socket.write(Buffer.concat([Buffer.from(head), b.subarray(0, split)]));
      if (split < b.length) setTimeout(() => this.socket.write(b.subarray(split)), restAfterMs);
    });
  }
}

describe('graceful shutdown under load (compiled server, SIGTERM)', () => {
  let p: ServerProcess | undefined;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-guard-shutdown-'));
  afterAll(() => {
    p?.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('readiness off at once, keeps answering through the drain delay, finishes in-flight, exits 0, 0 failed requests', async () => {
    const configFile = path.join(dir, 'config.yaml');
    fs.writeFileSync(
      configFile,
      `logLevel: info\nserver:\n  shutdownDelayMs: ${DRAIN_MS}\n  shutdownTimeoutMs: ${SHUTDOWN_TIMEOUT_MS}\n  tls:\n    selfSignedDir: ${dir}\n`,
    );
    p = await spawnServer({ CONFIG_FILE: configFile });
    // spawnServer's ca() reads its own directory; the certificate is in ours.
    for (let i = 0; i < 150 && !fs.existsSync(path.join(dir, 'ca.crt')); i++) await sleep(100);
    const ca = fs.readFileSync(path.join(dir, 'ca.crt'), 'utf8');
    for (let i = 0; i < 100 && (await readyz(p.port, ca)) !== 200; i++) await sleep(100);
    expect(await readyz(p.port, ca)).toBe(200);

    let endpointRemoved = false;
    const load = startLoad({ port: p.port, ca, workers: 4, pod: () => pod, namespace: 'istio-system', pauseMs: 2, shouldSend: () => !endpointRemoved });
    // Also a worker that opens a new connection per request, as a second API server replica would.
    const fresh = startLoad({ port: p.port, ca, workers: 1, pod: () => pod, namespace: 'istio-system', pauseMs: 10, requestsPerConnection: 1, shouldSend: () => !endpointRemoved });
    const idle = new ManualConnection(p.port, ca);
    const late = new ManualConnection(p.port, ca);
    const inflight = new ManualConnection(p.port, ca);
    await Promise.all([idle.ready(), late.ready(), inflight.ready()]);
    expect((await idle.post(reviewBody(pod, 'idle-1', 'istio-system'))).status).toBe(200);
    expect((await late.post(reviewBody(pod, 'late-1', 'istio-system'))).status).toBe(200);
    expect((await inflight.post(reviewBody(pod, 'inflight-1', 'istio-system'))).status).toBe(200);

    await sleep(1_000); // steady state
    const t0 = performance.now();
    p.kill('SIGTERM');
    const exited = p.exited.then((code) => ({ code, at: performance.now() - t0 }));

    // Readiness, polled like a kubelet probe (but every 50 ms).
    const readiness: Array<{ at: number; status: number }> = [];
    let firstNotReady: number | undefined;
    const poll = (async () => {
      while (performance.now() - t0 < DRAIN_MS) {
        const status = await readyz(p!.port, ca);
        const at = performance.now() - t0;
        readiness.push({ at, status });
        if (status !== 200 && firstNotReady === undefined) {
          firstNotReady = at;
          // The endpoint is removed a little later; the load generator then stops.
          setTimeout(() => (endpointRemoved = true), ENDPOINT_LAG_MS);
        }
        await sleep(50);
      }
    })();

    // Late in the drain window, after the removal: a request on an open keep-alive connection.
    const lateReply = sleep(DRAIN_MS - 300).then(() => late.post(reviewBody(pod, 'late-2', 'istio-system')));
    // Half a body just before the drain delay ends, the rest 700 ms after: in flight while closing.
    const inflightReply = sleep(DRAIN_MS - 200).then(() => {
      const body = reviewBody(pod, 'inflight-2', 'istio-system');
      return inflight.post(body, Math.floor(body.length / 2), 700);
    });

    const [{ code, at: exitAt }, lateRes, inflightRes] = await Promise.all([exited, lateReply, inflightReply, poll]);
    await Promise.all([load.stop(), fresh.stop()]);

    const all = [...load.records, ...fresh.records];
    const failed = all.filter((r) => !r.ok);
    const duringDrain = all.filter((r) => r.start - t0 >= 0);
    const before = latencies(all, -Infinity, t0);
    const during = latencies(all, t0);
    // eslint-disable-next-line no-console
    console.log(
      `shutdown: ${all.length} requests (${duringDrain.length} sent after SIGTERM), ${failed.length} failed; ` +
        `first /readyz 503 at ${Math.round(firstNotReady ?? NaN)} ms; idle keep-alive closed at ${Math.round((idle.closedAt ?? NaN) - t0)} ms; ` +
        `exit ${code} at ${Math.round(exitAt)} ms; p99 before ${percentile(before, 99).toFixed(1)} ms, during drain ${percentile(during, 99).toFixed(1)} ms`,
    );

    expect(failed.map((f) => f.error).slice(0, 5), 'failed admissions').toEqual([]);
    expect(duringDrain.length, 'the load kept going after SIGTERM').toBeGreaterThan(10);
    expect(firstNotReady, '/readyz turned 503').toBeDefined();
    expect(firstNotReady!, '/readyz turned 503 at once (first poll)').toBeLessThan(500);
    expect(readiness.filter((r) => r.at > firstNotReady! && r.status === 200), 'never ready again').toEqual([]);
    expect(lateRes.status, `keep-alive request late in the drain window: ${lateRes.body.slice(0, 200)}`).toBe(200);
    expect(JSON.parse(lateRes.body).response.uid).toBe('late-2');
    expect(inflightRes.status, `request in flight when the drain delay ended: ${inflightRes.body.slice(0, 200)}`).toBe(200);
    expect(JSON.parse(inflightRes.body).response.uid).toBe('inflight-2');
    expect(idle.closedAt, 'the idle keep-alive connection was closed by the server').toBeDefined();
    expect(idle.closedAt! - t0, 'not before the drain delay').toBeGreaterThanOrEqual(DRAIN_MS - 50);
    expect(code).toBe(0);
    expect(exitAt, 'exits well within a 30 s grace period').toBeLessThan(DRAIN_MS + SHUTDOWN_TIMEOUT_MS);
    const lines = p.lines.map((l) => l.msg);
    expect(lines).toContain('shutting down: readiness off, draining');
    expect(lines).toContain('stopped');
  }, 60_000);
});
