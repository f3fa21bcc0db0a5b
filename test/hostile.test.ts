/**
 * Hostile transport (issue 8): every hostile input gets a clear 4xx or is closed, while a
 * background load of normal admissions keeps being answered (0 failures; p99 recorded before and
 * during, bounded only generously because this runs on shared CI cores).
 *
 * The server runs with short timeouts (headersTimeoutMs 8000, requestTimeoutMs 10000) so the
 * slow-client cases finish quickly; production defaults are 10 s and 30 s (docs/reliability.md).
 */
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import { LINGER_MS, lingerBytes } from '../src/server/linger.js';
import { startLoad, latencies, percentile, type LoadRun } from './support/load-loop.js';
import { istioCniNodePod as normalPod, review } from './support/review.js';
import { startTestServer, type TestServer } from './support/server.js';

const HEADERS_TIMEOUT = 8_000;
const REQUEST_TIMEOUT = 10_000;

interface Exchange {
  status?: number;
  head: string;
  body: string;
  /** ms from the start until the server closed the connection (undefined: still open at the end). */
  closedAfterMs?: number;
}

/**
 * Opens a TLS connection, lets `drive` write to it, and collects whatever comes back until the
 * server closes the connection or `waitMs` passes.
 */
function exchange(s: TestServer, drive: (socket: tls.TLSSocket) => void, waitMs: number, untilClose = false): Promise<Exchange> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('utf8');
      const [head = '', ...rest] = text.split('\r\n\r\n');
      const status = /^HTTP\/1\.1 (\d{3})/.exec(head)?.[1];
      socket.destroy();
      resolve({ status: status ? Number(status) : undefined, head, body: rest.join('\r\n\r\n'), closedAfterMs: closed ? performance.now() - t0 : undefined });
    };
    const socket = tls.connect({ host: '127.0.0.1', port: s.server.port, ca: s.ca, servername: 'localhost' }, () => drive(socket));
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      // A complete response ends the exchange even if the connection stays open (keep-alive).
      const all = Buffer.concat(chunks);
      const end = all.indexOf('\r\n\r\n');
      const len = end === -1 ? undefined : /\r\ncontent-length:\s*(\d+)/i.exec(all.toString('latin1', 0, end))?.[1];
      if (!untilClose && len !== undefined && all.length >= end + 4 + Number(len)) finish(false);
    });
    socket.on('error', () => finish(true));
    socket.on('close', () => finish(true));
    const timer = setTimeout(() => finish(false), waitMs);
  });
}

function request(body: Buffer | string, headers: Record<string, string | number> = { 'Content-Type': 'application/json' }): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body) : body;
  const lines = ['POST /mutate?timeout=10s HTTP/1.1', 'Host: mesh-guard.mesh-guard.svc'];
  for (const [k, v] of Object.entries({ ...headers, 'Content-Length': b.length })) lines.push(`${k}: ${v}`);
  return Buffer.concat([Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1'), b]);
}

/** A 4xx with a JSON error body naming the status. */
function expectJsonError(x: Exchange, status: number, message?: RegExp): void {
  expect(x.status, x.head).toBe(status);
  expect(x.head).toMatch(/content-type: application\/json/i);
  const err = JSON.parse(x.body) as { error: string; status: number };
  expect(err.status).toBe(status);
  if (message) expect(err.error).toMatch(message);
}

interface Posted {
  status?: number;
  headers: IncomingHttpHeaders;
  body: string;
  /** Every error the client saw: on the request (EPIPE, ECONNRESET) or the response. */
  errors: string[];
}

/**
 * POSTs `body` to /mutate with Node's https.request, written in one go before anything is read
 * (one `end(body)` with a Content-Length, or one `write(body)` then `end()`, which Node sends
 * chunked); resolves once the request and the response are both over.
 */
function postWhole(s: TestServer, body: Buffer, framing: 'content-length' | 'chunked'): Promise<Posted> {
  return new Promise((resolve) => {
    const out: Posted = { headers: {}, body: '', errors: [] };
    let pending = 2;
    const settle = () => --pending === 0 && resolve(out);
    const headers: Record<string, string | number> = { 'content-type': 'application/json' };
    if (framing === 'content-length') headers['content-length'] = body.length;
    const req = https.request({ host: '127.0.0.1', port: s.server.port, path: '/mutate', method: 'POST', ca: s.ca, servername: 'localhost', agent: false, headers, timeout: 20_000 }, (res) => {
      out.status = res.statusCode;
      out.headers = res.headers;
      res.setEncoding('utf8');
      res.on('data', (d: string) => (out.body += d));
      res.on('error', (e) => out.errors.push(`response: ${e.message}`));
      res.on('close', settle);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e: NodeJS.ErrnoException) => out.errors.push(`request: ${e.code ?? e.message}`));
    req.on('close', () => {
      if (out.status === undefined) pending = 1; // no response will come
      settle();
    });
    if (framing === 'content-length') req.end(body);
    else {
      req.write(body);
      req.end();
    }
  });
}

/** Python's urllib, when python3 is here; otherwise why not (printed, and the test is skipped). */
const pythonMissing = (() => {
  const r = spawnSync('python3', ['-c', 'import ssl, urllib.request'], { encoding: 'utf8' });
  return r.status === 0 ? undefined : `python3 with ssl and urllib is not usable here (${r.error?.message ?? r.stderr.trim()})`;
})();
if (pythonMissing) console.log(`hostile: skipping the urllib client: ${pythonMissing}`); // eslint-disable-line no-console

/** urllib.request.urlopen sends the whole body (http.client's sendall) before it reads the answer. */
const URLLIB_POST = `
import json, ssl, sys, urllib.error, urllib.request
url, cafile, attempts = sys.argv[1], sys.argv[2], int(sys.argv[3])
body = sys.stdin.buffer.read()
for _ in range(attempts):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(req, context=ssl.create_default_context(cafile=cafile), timeout=20)
        print(json.dumps({"status": "2xx"}))
    except urllib.error.HTTPError as e:
        print(json.dumps({"status": e.code, "connection": e.headers.get("Connection"), "type": e.headers.get("Content-Type"), "body": e.read().decode()}))
    except Exception as e:
        print(json.dumps({"error": type(e).__name__ + ": " + str(e)}))
`;

function urllibPosts(s: TestServer, body: Buffer, attempts: number): Promise<Array<Record<string, unknown>>> {
  const caFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-guard-urllib-')), 'ca.crt');
  fs.writeFileSync(caFile, s.ca);
  return new Promise((resolve, reject) => {
    // Asynchronous: the server runs in this process.
    const child = execFile('python3', ['-c', URLLIB_POST, `${s.url}/mutate`, caFile, String(attempts)], { timeout: 60_000 }, (err, stdout, stderr) => {
      fs.rmSync(path.dirname(caFile), { recursive: true, force: true });
      if (err) reject(new Error(`python3 failed: ${err.message}\n${stderr}`));
      else resolve(stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>));
    });
    child.stdin!.end(body);
  });
}

describe('hostile transport, under a background load of normal admissions', () => {
  let s: TestServer;
  let load: LoadRun;
  const phases: Array<{ name: string; from: number; to: number }> = [];
  const tried: string[] = [];

  async function phase<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const from = performance.now();
    try {
      return await fn();
    } finally {
      phases.push({ name, from, to: performance.now() });
      tried.push(name);
    }
  }

  beforeAll(async () => {
    const config = parseConfig(`logLevel: warn\nserver:\n  headersTimeoutMs: ${HEADERS_TIMEOUT}\n  requestTimeoutMs: ${REQUEST_TIMEOUT}\n`, {});
    s = await startTestServer({ config });
    load = startLoad({ port: s.server.port, ca: s.ca, workers: 4, pod: () => normalPod, namespace: 'istio-system', pauseMs: 5 });
    await phase('baseline', () => new Promise((r) => setTimeout(r, 1_500)));
  });

  afterAll(async () => {
    await load?.stop();
    await s?.close();
  });

  it('a body over 3 MiB: 413 with a JSON error (Content-Length and chunked)', async () => {
    await phase('body over 3 MiB', async () => {
      const big = JSON.stringify(review(normalPod, { padding: 'x'.repeat(3 * 1024 * 1024) }));
      const x = await exchange(s, (sock) => sock.write(request(big)), 10_000);
      expectJsonError(x, 413, /larger than 3145728 bytes/);
      // Without a Content-Length the limit is enforced while streaming.
      const chunked = await exchange(
        s,
        (sock) => {
          sock.write('POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n');
          const chunk = Buffer.alloc(256 * 1024, 'x');
          for (let i = 0; i < 16 && !sock.destroyed; i++) sock.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
        },
        10_000,
      );
      expectJsonError(chunked, 413);
    });
  });

  // 4 MiB, over the 3 MiB limit: the issue 16 report (urllib saw a TLS EOF instead of the 413).
  const whole = Buffer.from(JSON.stringify(review(normalPod, { padding: 'x'.repeat(4 * 1024 * 1024) })));

  it('a 4 MiB review written whole before the client reads: 413 with a JSON error, no client error (https.request)', async () => {
    await phase('4 MiB written before reading (https.request)', async () => {
      // Several times each: before the linger, the answer was lost in some attempts, not all.
      for (const framing of ['content-length', 'chunked'] as const) {
        for (let i = 0; i < 3; i++) {
          const p = await postWhole(s, whole, framing);
          expect(p.errors, framing).toEqual([]);
          expect(p.status, framing).toBe(413);
          expect(p.headers.connection).toBe('close');
          expect(p.headers['content-type']).toMatch(/^application\/json/);
          expect(JSON.parse(p.body)).toEqual({ error: 'body larger than 3145728 bytes', status: 413 });
        }
      }
    });
  });

  it.skipIf(pythonMissing !== undefined)('a 4 MiB review written whole before the client reads: 413 with a JSON error (Python urllib)', async () => {
    await phase('4 MiB written before reading (urllib)', async () => {
      const answers = await urllibPosts(s, whole, 3);
      expect(answers).toEqual(
        Array(3).fill({ status: 413, connection: 'close', type: 'application/json; charset=utf-8', body: '{"error":"body larger than 3145728 bytes","status":413}' }),
      );
    });
  });

  it('a client that keeps sending after the 413 is cut off within the linger bounds (bytes, then time)', async () => {
    await phase('sending on after the 413', async () => {
      const cutOffs = () => s.logs.filter((l) => l.msg === 'client kept sending after the 413; connection closed');
      const before = cutOffs().length;
      // As fast as the socket takes it, chunked without end: cut off by the byte bound.
      const frame = Buffer.from(`${(256 * 1024).toString(16)}\r\n${'x'.repeat(256 * 1024)}\r\n`);
      const flood = await exchange(
        s,
        (sock) => {
          sock.write('POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n');
          const pump = () => {
            while (!sock.destroyed && sock.write(frame));
            if (!sock.destroyed) sock.once('drain', pump);
          };
          pump();
        },
        LINGER_MS + 20_000,
        true,
      );
      // 16 KiB every 100 ms of a declared 1 TiB: never done, never over the byte bound; cut off by time.
      const trickle = await exchange(
        s,
        (sock) => {
          sock.write(`POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${2 ** 40}\r\n\r\n`);
          const iv = setInterval(() => (sock.destroyed ? clearInterval(iv) : sock.write(Buffer.alloc(16 * 1024, 'x'))), 100);
          sock.on('close', () => clearInterval(iv));
        },
        LINGER_MS + 20_000,
        true,
      );
      for (const x of [flood, trickle]) {
        expectJsonError(x, 413, /larger than 3145728 bytes/);
        expect(x.head).toMatch(/\r\nconnection: close/i);
        expect(x.closedAfterMs, 'closed by the server').toBeDefined();
      }
      const [byBytes, byTime] = cutOffs().slice(before) as Array<{ bound: string; discardedBytes: number; lingerMs: number }>;
      expect(byBytes?.bound).toBe('bytes');
      // Read past the bound by at most the one chunk that crossed it.
      expect(byBytes!.discardedBytes).toBeGreaterThan(lingerBytes(3 * 1024 * 1024));
      expect(byBytes!.discardedBytes).toBeLessThan(lingerBytes(3 * 1024 * 1024) + 256 * 1024);
      expect(byTime?.bound).toBe('time');
      expect(byTime!.lingerMs).toBeGreaterThanOrEqual(LINGER_MS - 50);
      expect(byTime!.discardedBytes).toBeLessThan(lingerBytes(3 * 1024 * 1024));
      // eslint-disable-next-line no-console
      console.log(
        `hostile: after the 413, the flood was cut off after ${byBytes!.discardedBytes} bytes (${byBytes!.lingerMs} ms), ` +
          `the trickle after ${byTime!.lingerMs} ms (${byTime!.discardedBytes} bytes)`,
      );
    });
  }, 60_000);

  it('JSON nested 100,000 levels deep: 400, no crash', async () => {
    await phase('JSON nested 100,000 deep', async () => {
      for (const deep of ['['.repeat(100_000) + ']'.repeat(100_000), '{"a":'.repeat(100_000) + '1' + '}'.repeat(100_000)]) {
        const x = await exchange(s, (sock) => sock.write(request(deep)), 10_000);
        expectJsonError(x, 400);
      }
      // And deep inside a review that is otherwise well-formed (the object is nested, not the envelope).
      const nested = JSON.stringify(review(normalPod)).replace('"spec":', `"deep":${'['.repeat(50_000)}${']'.repeat(50_000)},"spec":`);
      const x = await exchange(s, (sock) => sock.write(request(nested)), 10_000);
      expect([200, 400]).toContain(x.status);
    });
  });

  it('invalid UTF-8: 400 with a JSON error', async () => {
    await phase('invalid UTF-8', async () => {
      const valid = JSON.stringify(review(normalPod));
      for (const bad of [Buffer.from([0xff, 0xfe]), Buffer.from([0xc0, 0xaf]) /* overlong "/" */, Buffer.from([0xed, 0xa0, 0x80]) /* lone surrogate */]) {
        const at = valid.indexOf('istio-cni-node-'); // inside a JSON string
        const body = Buffer.concat([Buffer.from(valid.slice(0, at)), bad, Buffer.from(valid.slice(at))]);
        const x = await exchange(s, (sock) => sock.write(request(body)), 10_000);
        expectJsonError(x, 400, /UTF-8/);
      }
    });
  });

  it('the wrong content type: 415 with a JSON error; JSON with parameters is accepted', async () => {
    await phase('wrong content type', async () => {
      const body = JSON.stringify(review(normalPod));
      for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/json-patch+json', 'multipart/form-data; boundary=x']) {
        expectJsonError(await exchange(s, (sock) => sock.write(request(body, { 'Content-Type': type })), 10_000), 415, /application\/json/);
      }
      expectJsonError(await exchange(s, (sock) => sock.write(request(body, {})), 10_000), 415);
      const ok = await exchange(s, (sock) => sock.write(request(body, { 'Content-Type': 'application/json; charset=utf-8', Connection: 'close' })), 10_000);
      expect(ok.status).toBe(200);
    });
  });

  it('duplicate keys: parsed last-wins, like Go encoding/json (see docs/reliability.md)', async () => {
    await phase('duplicate keys', async () => {
      const annotations = '{"oneagent.dynatrace.com/inject":"false","oneagent.dynatrace.com/inject":"true"}';
      const pod = JSON.stringify(normalPod).replace('"metadata":{', `"metadata":{"annotations":${annotations},`);
      const envelope = JSON.stringify(review({}, { uid: 'first' })).slice(0, -1);
      const body = `${envelope},"request":${JSON.stringify((review({}, { uid: 'second' }) as { request: Record<string, unknown> }).request).replace('"object":{}', `"object":${pod}`)}}`;
      const x = await exchange(s, (sock) => sock.write(request(body, { 'Content-Type': 'application/json', Connection: 'close' })), 10_000);
      expect(x.status).toBe(200);
      const res = JSON.parse(x.body) as { response: { uid: string; allowed: boolean; patch?: string } };
      expect(res.response.uid).toBe('second');
      expect(res.response.allowed).toBe(true);
      // The later "true" won, so the node agent gets the opt-out as a replace.
      const ops = JSON.parse(Buffer.from(res.response.patch!, 'base64').toString('utf8')) as unknown[];
      expect(ops).toEqual([{ op: 'replace', path: '/metadata/annotations/oneagent.dynatrace.com~1inject', value: 'false' }]);
    });
  });

  it('slowloris, a stalled half body and 1,000 idle connections are cut off by the timeouts', async () => {
    await phase('slowloris + half body + 1,000 idle connections', async () => {
      // Headers trickled one byte per second: closed after headersTimeout with a 408.
      const slowloris = exchange(
        s,
        (sock) => {
          const head = 'POST /mutate HTTP/1.1\r\nHost: mesh-guard.mesh-guard.svc\r\nContent-Type: application/json\r\nContent-Length: 10\r\n';
          let i = 0;
          const iv = setInterval(() => (i < head.length && !sock.destroyed ? sock.write(head[i++]!) : clearInterval(iv)), 1_000);
          sock.on('close', () => clearInterval(iv));
        },
        HEADERS_TIMEOUT + 10_000,
        true,
      );
      // Headers and half the body, then nothing: closed after requestTimeout with a 408.
      const half = exchange(
        s,
        (sock) => {
          const body = JSON.stringify(review(normalPod));
          const req = request(body);
          sock.write(req.subarray(0, req.length - Math.floor(body.length / 2)));
        },
        REQUEST_TIMEOUT + 10_000,
        true,
      );
      // 500 TLS connections that never send a request, 500 TCP connections that never start TLS.
      const t0 = performance.now();
      const idleClosed: number[] = [];
      const idle: net.Socket[] = [];
      let peak = 0;
      const sampler = setInterval(() => s.server.app.fastify.server.getConnections((_e, n) => (peak = Math.max(peak, n))), 50);
      const open = (make: () => net.Socket) => {
        const sock = make();
        sock.on('error', () => undefined);
        sock.on('close', () => idleClosed.push(performance.now() - t0));
        idle.push(sock);
      };
      // In steps of 100, so the listen backlog (511) is not what limits them.
      for (let i = 0; i < 500; i++) {
        open(() => net.connect(s.server.port, '127.0.0.1'));
        open(() => tls.connect({ host: '127.0.0.1', port: s.server.port, ca: s.ca, servername: 'localhost' }));
        if (i % 50 === 49) await new Promise((r) => setTimeout(r, 20));
      }
      const [sl, hb] = await Promise.all([slowloris, half]);
      clearInterval(sampler);
      // The server must end up holding nothing but the background load's connections, and every
      // client socket must see the close. Both are waited for: a SYN the kernel dropped from a full
      // accept queue is retried by the client 1, 3, 7 s later, so the server may accept (and later
      // time out) a few idle connections after its count first fell to the background load's.
      const serverConnections = () => new Promise<number>((r) => s.server.app.fastify.server.getConnections((_e, n) => r(n)));
      const until = performance.now() + HEADERS_TIMEOUT + 20_000;
      let left = await serverConnections();
      while ((left > 4 || idleClosed.length < idle.length) && performance.now() < until) {
        await new Promise((r) => setTimeout(r, 100));
        left = await serverConnections();
      }
      const cutAfter = performance.now() - t0;
      for (const sock of idle) sock.destroy();

      expect(sl.status, sl.head).toBe(408);
      expect(sl.closedAfterMs).toBeDefined();
      expect(hb.status, hb.head).toBe(408);
      expect(hb.closedAfterMs).toBeDefined();
      expect(left, 'the server closed every idle connection (4 are the background load)').toBeLessThanOrEqual(4);
      expect(idleClosed.length, 'client side: closed by the server').toBeGreaterThanOrEqual(990);
      expect(peak, 'most idle connections were open at the same time').toBeGreaterThanOrEqual(800);
      // eslint-disable-next-line no-console
      console.log(
        `hostile: slowloris closed after ${Math.round(sl.closedAfterMs!)} ms, half body after ${Math.round(hb.closedAfterMs!)} ms, ` +
          `${peak} connections open at peak, all closed by the server ${Math.round(cutAfter)} ms after the first was opened`,
      );
    });
  }, 75_000);

  it('the normal admissions all succeeded throughout', async () => {
    await load.stop();
    const failed = load.records.filter((r) => !r.ok);
    const summary = phases.map((p) => {
      const l = latencies(load.records, p.from, p.to);
      return `${p.name}: ${l.length} requests, p99 ${percentile(l, 99).toFixed(1)} ms`;
    });
    // eslint-disable-next-line no-console
    console.log(`hostile: ${tried.length - 1} hostile phases (${pythonMissing ? 22 : 23} inputs); background load ${load.records.length} requests, ${failed.length} failed\n  ${summary.join('\n  ')}`);
    expect(failed.map((f) => f.error).slice(0, 5)).toEqual([]);
    expect(load.records.length).toBeGreaterThan(100);
    // "Does not hang", not a latency target: the box is shared.
    const during = latencies(load.records, phases[1]?.from ?? 0);
    expect(percentile(during, 99)).toBeLessThan(2_000);
  });
});
