/**
 * A small keep-alive load loop for the reliability tests (shutdown, rotation, outage, hostile).
 *
 * Why not bench/load.ts: that generator is built for throughput figures. It opens a fixed set
 * of raw TLS connections up front, never reconnects, and stops the whole run at the first
 * connection error. These tests need the opposite: connections that are re-opened (so new
 * handshakes happen during a certificate rotation), a per-request record with the send time
 * (so a failure can be placed before or after readiness flipped), and a switch that stops
 * sending the way the API server stops once an endpoint is removed.
 *
 * It behaves like the API server's client: HTTP/1.1 over TLS, one request in flight per
 * connection, idle connections kept and reused, POST never retried.
 */
import https from 'node:https';
import type tls from 'node:tls';
import { performance } from 'node:perf_hooks';
import { randomUUID } from 'node:crypto';
import { review } from './review.js';

export interface RequestRecord {
  /** performance.now() when the request was handed to the socket pool. */
  readonly start: number;
  readonly end: number;
  readonly ok: boolean;
  readonly status?: number;
  readonly error?: string;
  /** The request went out on a connection that had served an earlier request. */
  readonly reused: boolean;
}

export interface Handshake {
  /** performance.now() when the connection was started (before the TCP connect). */
  readonly startedAt: number;
  /** When the TLS handshake completed. */
  readonly at: number;
  readonly fingerprint256: string;
}

export interface LoadOptions {
  readonly port: number;
  readonly ca: string;
  /** Concurrent workers, each with its own connection (like the API server's per-host pool). */
  readonly workers: number;
  /** Pod for each request (a fresh uid is added per request). */
  readonly pod: () => unknown;
  /** Namespace of the review. */
  readonly namespace?: string;
  /** Close a worker's connection after this many requests, so new handshakes keep happening. */
  readonly requestsPerConnection?: number;
  /** Pause between one worker's requests; 0 sends back to back. */
  readonly pauseMs?: number;
  /** Checked before each request: false stops the worker (the endpoint was removed). */
  readonly shouldSend?: () => boolean;
  readonly timeoutMs?: number;
  /** Check the body too: a v1 AdmissionReview with the request's uid and allowed: true. */
  readonly strict?: boolean;
}

export interface LoadRun {
  readonly records: RequestRecord[];
  readonly handshakes: Handshake[];
  /** Stops sending and waits for in-flight requests. */
  stop(): Promise<void>;
  /** Resolves when every worker has stopped on its own (shouldSend returned false). */
  readonly finished: Promise<void>;
}

export function reviewBody(pod: unknown, uid: string, namespace = 'default'): string {
  return JSON.stringify(review(pod, { uid, namespace }));
}

export function startLoad(o: LoadOptions): LoadRun {
  const records: RequestRecord[] = [];
  const handshakes: Handshake[] = [];
  let stopped = false;
  const perConn = o.requestsPerConnection ?? Infinity;

  const newAgent = () => {
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: o.ca, servername: 'localhost' });
    return agent;
  };

  const one = (agent: https.Agent): Promise<RequestRecord> =>
    new Promise((resolve) => {
      const uid = randomUUID();
      const body = reviewBody(o.pod(), uid, o.namespace);
      const start = performance.now();
      let settled = false;
      const finish = (r: Omit<RequestRecord, 'start' | 'end' | 'reused'>) => {
        if (settled) return;
        settled = true;
        resolve({ ...r, start, end: performance.now(), reused: req.reusedSocket });
      };
      const req = https.request(
        {
          host: '127.0.0.1',
          port: o.port,
          path: '/mutate?timeout=10s',
          method: 'POST',
          agent,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('error', (e) => finish({ ok: false, error: `response: ${e.message}` }));
          res.on('end', () => {
            if (res.statusCode !== 200) return finish({ ok: false, status: res.statusCode, error: `status ${res.statusCode}: ${text.slice(0, 200)}` });
            if (o.strict !== false) {
              try {
                const r = JSON.parse(text) as { apiVersion?: string; kind?: string; response?: { uid?: string; allowed?: boolean } };
                if (r.apiVersion !== 'admission.k8s.io/v1' || r.kind !== 'AdmissionReview' || r.response?.uid !== uid || r.response.allowed !== true) {
                  return finish({ ok: false, status: 200, error: `bad review: ${text.slice(0, 200)}` });
                }
              } catch {
                return finish({ ok: false, status: 200, error: 'response is not JSON' });
              }
            }
            finish({ ok: true, status: 200 });
          });
        },
      );
      req.on('socket', (s) => {
        if ((s as tls.TLSSocket & { _mgSeen?: boolean })._mgSeen) return;
        (s as tls.TLSSocket & { _mgSeen?: boolean })._mgSeen = true;
        const startedAt = performance.now();
        s.once('secureConnect', () => {
          const fp = (s as tls.TLSSocket).getPeerCertificate().fingerprint256;
          handshakes.push({ startedAt, at: performance.now(), fingerprint256: fp });
        });
      });
      req.setTimeout(o.timeoutMs ?? 10_000, () => req.destroy(new Error('client timeout')));
      req.on('error', (e) => finish({ ok: false, error: e.message }));
      req.end(body);
    });

  const worker = async () => {
    let agent = newAgent();
    let n = 0;
    try {
      while (!stopped && (o.shouldSend?.() ?? true)) {
        if (n >= perConn) {
          agent.destroy();
          agent = newAgent();
          n = 0;
        }
        records.push(await one(agent));
        n++;
        if (o.pauseMs) await new Promise((r) => setTimeout(r, o.pauseMs));
      }
    } finally {
      agent.destroy();
    }
  };

  const finished = Promise.all(Array.from({ length: o.workers }, worker)).then(() => undefined);
  return {
    records,
    handshakes,
    finished,
    stop: async () => {
      stopped = true;
      await finished;
    },
  };
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export function latencies(records: readonly RequestRecord[], from = -Infinity, to = Infinity): number[] {
  return records.filter((r) => r.ok && r.start >= from && r.start < to).map((r) => r.end - r.start);
}
