/**
 * A tight HTTP/1.1 keep-alive load generator over raw TLS sockets, so the generator costs
 * far less per request than the servers it drives: requests are pre-serialised buffers
 * written in one call, and responses are framed by Content-Length without an HTTP parser.
 *
 * Modes:
 *   closed: `connections` connections, one request in flight on each (the API server does
 *           not pipeline), for `durationMs` or `count` requests.
 *   rate:   a fixed arrival rate spread over `connections` connections. Latency runs from
 *           the moment a request is due: if every connection is busy, waiting counts
 *           (no coordinated omission).
 *
 * Every response is checked: status 200, a v1 AdmissionReview, the uid of its request,
 * allowed: true. Patched responses are counted.
 *
 * Run as a child: node dist/bench/load.js '<LoadSpec JSON>'; prints a LoadResult as JSON.
 */
import fs from 'node:fs';
import tls from 'node:tls';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { bodySet, type Size } from './bodies.js';

export interface LoadSpec {
  readonly port: number;
  readonly caFile: string;
  readonly size: Size;
  readonly mode: 'closed' | 'rate';
  readonly connections: number;
  /** For mode rate. */
  readonly rps?: number;
  readonly durationMs?: number;
  readonly count?: number;
  /** Return every latency sample too (to merge percentiles across slices). */
  readonly raw?: boolean;
  /** With raw: also when each sampled request was due (ms since the epoch), to cut the run into windows. */
  readonly times?: boolean;
}

export interface LoadResult {
  readonly requests: number;
  readonly errors: number;
  readonly errorSamples: readonly string[];
  readonly patched: number;
  readonly elapsedMs: number;
  readonly reqPerSec: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  /** Share of one core the generator used (user + system). */
  readonly generatorCpu: number;
  readonly averageBodyBytes: number;
  /** Requests still in flight when a stopped run gave up waiting for them. */
  readonly unanswered?: number;
  /** The stopped run ended by that deadline rather than by its last answer. */
  readonly gaveUp?: boolean;
  readonly unansweredDueAt?: number[];
  readonly latencies?: number[];
  readonly dueAt?: number[];
}

interface Pending {
  readonly uid: string;
  readonly start: number;
}

const CRLFCRLF = Buffer.from('\r\n\r\n');

function requestBuffer(body: Buffer): Buffer {
  const head =
    'POST /mutate?timeout=10s HTTP/1.1\r\n' +
    'Host: mesh-guard.mesh-guard.svc:443\r\n' +
    'User-Agent: kube-apiserver-admission\r\n' +
    'Accept: application/json, */*\r\n' +
    'Content-Type: application/json\r\n' +
    `Content-Length: ${body.length}\r\n\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), body]);
}

/** The nearest-rank percentile of ascending samples; NaN without samples. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

class Conn {
  private buf: Buffer = Buffer.alloc(0);
  private pending: Pending | undefined;
  busy = false;

  constructor(
    readonly socket: tls.TLSSocket,
    private readonly onResponse: (c: Conn, p: Pending, status: number, body: Buffer) => void,
    private readonly onError: (c: Conn, err: string) => void,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => this.data(d));
    socket.on('error', (e) => this.onError(this, e.message));
    socket.on('close', () => {
      if (this.pending) this.onError(this, 'connection closed with a request in flight');
    });
  }

  get inFlight(): Pending | undefined {
    return this.pending;
  }

  send(req: Buffer, p: Pending): void {
    this.busy = true;
    this.pending = p;
    this.socket.write(req);
  }

  private data(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    const headEnd = this.buf.indexOf(CRLFCRLF);
    if (headEnd === -1) return;
    const head = this.buf.toString('latin1', 0, headEnd);
    const m = /content-length:\s*(\d+)/i.exec(head);
    if (!m) {
      this.onError(this, `response without Content-Length: ${head.split('\r\n')[0]}`);
      return;
    }
    const total = headEnd + 4 + Number(m[1]);
    if (this.buf.length < total) return;
    const status = Number(head.slice(9, 12));
    const body = this.buf.subarray(headEnd + 4, total);
    this.buf = this.buf.length > total ? this.buf.subarray(total) : Buffer.alloc(0);
    const p = this.pending!;
    this.pending = undefined;
    this.busy = false;
    this.onResponse(this, p, status, body);
  }
}

function connect(port: number, ca: string): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost', ALPNProtocols: ['http/1.1'] }, () => resolve(s));
    s.once('error', reject);
  });
}

/** `stop` ends a run early (as if its duration were up); in-flight requests still complete. */
export async function runLoad(spec: LoadSpec, stop?: AbortSignal): Promise<LoadResult> {
  const set = bodySet(spec.size);
  const reqs = set.bodies.map(requestBuffer);
  const uids = set.bodies.map((b) => (JSON.parse(b.toString('utf8')) as { request: { uid: string } }).request.uid);
  const ca = fs.readFileSync(spec.caFile, 'utf8');

  const latencies: number[] = [];
  const dueAt: number[] = [];
  const errorSamples: string[] = [];
  let errors = 0;
  let patched = 0;
  let sent = 0;
  let next = 0;
  let stopAt = Infinity;
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  let stopping = false;
  let unanswered = 0;
  let gaveUp = false;
  let unansweredDueAt: number[] = [];
  const limit = spec.count ?? Infinity;

  const fail = (msg: string) => {
    errors++;
    if (errorSamples.length < 5) errorSamples.push(msg);
  };
  const moreToSend = () => !stopping && sent < limit && performance.now() < stopAt;

  const queue: number[] = []; // due times of rate-mode requests waiting for a free connection
  const conns: Conn[] = [];

  const sendOn = (c: Conn, start: number) => {
    const i = next;
    next = (next + 1) % reqs.length;
    sent++;
    c.send(reqs[i]!, { uid: uids[i]!, start });
  };

  const checkDone = () => {
    if ((stopping || !moreToSend()) && conns.every((c) => !c.busy)) done();
  };

  const onResponse = (c: Conn, p: Pending, status: number, body: Buffer) => {
    const now = performance.now();
    latencies.push(now - p.start);
    if (spec.times) dueAt.push(performance.timeOrigin + p.start);
    if (status !== 200) fail(`status ${status}: ${body.toString('utf8').slice(0, 200)}`);
    else {
      try {
        const r = JSON.parse(body.toString('utf8')) as { apiVersion?: string; kind?: string; response?: { uid?: string; allowed?: boolean; patch?: string; patchType?: string } };
        if (r.apiVersion !== 'admission.k8s.io/v1' || r.kind !== 'AdmissionReview') fail('not an admission.k8s.io/v1 AdmissionReview');
        else if (r.response?.uid !== p.uid) fail(`uid mismatch: sent ${p.uid}, got ${r.response?.uid}`);
        else if (r.response.allowed !== true) fail('allowed is not true');
        else if (r.response.patch !== undefined) {
          if (r.response.patchType !== 'JSONPatch') fail('patch without patchType JSONPatch');
          else patched++;
        }
      } catch {
        fail('response is not JSON');
      }
    }
    if (spec.mode === 'closed') {
      if (moreToSend()) sendOn(c, performance.now());
    } else if (queue.length > 0) {
      sendOn(c, queue.shift()!); // it waited: latency counts from when it was due
    }
    checkDone();
  };
  const onError = (_c: Conn, msg: string) => {
    fail(msg);
    stopping = true;
    done();
  };

  for (let i = 0; i < spec.connections; i++) {
    conns.push(new Conn(await connect(spec.port, ca), onResponse, onError));
  }

  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  if (spec.durationMs !== undefined) stopAt = t0 + spec.durationMs;
  // Stopped early: in-flight requests get a few seconds to answer, then the run ends without them
  // (counted as unanswered), so a stuck connection cannot hold the result back.
  stop?.addEventListener('abort', () => {
    stopAt = performance.now();
    setTimeout(() => {
      gaveUp = true;
      const stuck = conns.filter((c) => c.busy);
      unanswered = stuck.length;
      unansweredDueAt = stuck.map((c) => performance.timeOrigin + (c.inFlight?.start ?? NaN));
      stopping = true;
      done();
    }, 5_000);
  });

  if (spec.mode === 'closed') {
    for (const c of conns) if (moreToSend()) sendOn(c, performance.now());
  } else {
    const interval = 1000 / (spec.rps ?? 200);
    let due = t0;
    const tick = () => {
      const now = performance.now();
      while (due <= now && moreToSend()) {
        const free = conns.find((c) => !c.busy);
        if (free) sendOn(free, now);
        else queue.push(due);
        due += interval;
      }
      if (moreToSend()) setTimeout(tick, Math.max(0, due - performance.now()));
      else checkDone();
    };
    tick();
  }
  await finished;
  const elapsedMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  for (const c of conns) c.socket.destroy();

  const sorted = Float64Array.from(latencies).sort();
  return {
    requests: latencies.length,
    errors,
    errorSamples,
    patched,
    elapsedMs,
    reqPerSec: (latencies.length / elapsedMs) * 1000,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: sorted.length ? sorted[sorted.length - 1]! : NaN,
    generatorCpu: (cpu.user + cpu.system) / 1000 / elapsedMs,
    averageBodyBytes: set.averageBytes,
    unanswered,
    gaveUp,
    unansweredDueAt,
    ...(spec.raw ? { latencies } : {}),
    ...(spec.raw && spec.times ? { dueAt } : {}),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  // SIGTERM ends the run early and still prints the result (bench/scale.ts cuts runs this way).
  const stop = new AbortController();
  process.once('SIGTERM', () => stop.abort());
  const resultFile = process.argv[3];
  // Diagnosis of a run that ends without a result: the loop drained with the run unfinished.
  process.once('beforeExit', () => process.stderr.write(`load: event loop drained before the run finished (stop ${stop.signal.aborted ? 'received' : 'not received'})\n`));
  runLoad(JSON.parse(process.argv[2]!) as LoadSpec, stop.signal).then(
    (r) => {
      // With a file name (bench/scale.ts): written synchronously, so no pipe can cut a long result short.
      if (resultFile) {
        fs.writeFileSync(resultFile, JSON.stringify(r));
        process.exit(0);
      }
      // A pipe write is asynchronous: exit only once the result is out.
      process.stdout.write(JSON.stringify(r) + '\n', () => process.exit(0));
    },
    (err: unknown) => {
      process.stderr.write(`load: ${err instanceof Error ? err.stack : String(err)}\n`);
      process.exit(2);
    },
  );
}
