/**
 * Soak (issue 8; on demand, never in CI): the compiled server under a fixed 500 req/s of
 * realistic reviews (bench/bodies.ts, driven by bench/load.ts in rate mode) for 5 minutes,
 * with its RSS sampled from /proc every 5 s and its heap read from /metrics.
 *
 *   npm run build && node dist/bench/soak.js                 5 min at 500 req/s
 *   node dist/bench/soak.js --duration=60 --rps=200          a shorter run
 *
 * The figure: RSS growth after warm-up = (median of the last 3 samples) / (median of the
 * samples in the 15 s after the warm-up) - 1. Target: at most 10%. Exit status 1 when the
 * target is missed or a request failed, 2 when the harness breaks.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { runLoad } from './load.js';

const here = path.dirname(fileURLToPath(import.meta.url)); // dist/bench
const MAIN_JS = path.resolve(here, '../src/server/main.js');

const arg = (name: string, def: number) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? def);
const DURATION_S = arg('duration', 300);
const RPS = arg('rps', 500);
const WARMUP_S = arg('warmup', Math.min(60, Math.floor(DURATION_S / 5)));
const SAMPLE_MS = 5_000;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

function get(port: number, ca: string, p: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, path: p, ca, servername: 'localhost', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
  });
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

function metric(text: string, name: string): number {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)]! : NaN;
};
const mb = (b: number) => `${(b / 1024 / 1024).toFixed(1)} MB`;

async function main(): Promise<number> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-guard-soak-'));
  const configFile = path.join(dir, 'config.yaml');
  // Production defaults (log level info: one line per admission), self-signed certificate.
  fs.writeFileSync(configFile, `server:\n  tls:\n    selfSignedDir: ${dir}\n`);
  const port = await freePort();
  const child = spawn(process.execPath, [MAIN_JS], {
    env: { PATH: process.env.PATH, PORT: String(port), CONFIG_FILE: configFile },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  try {
    const caFile = path.join(dir, 'ca.crt');
    for (let i = 0; ; i++) {
      if (fs.existsSync(caFile) && (await get(port, fs.readFileSync(caFile, 'utf8'), '/readyz').catch(() => ({ status: 0 }))).status === 200) break;
      if (i > 300) throw new Error('server not ready in 30 s');
      await new Promise((r) => setTimeout(r, 100));
    }
    const ca = fs.readFileSync(caFile, 'utf8');
    const samples: Array<{ t: number; rss: number }> = [];
    const heaps: Array<{ t: number; heapUsed: number }> = [];
    const t0 = performance.now();
    const sample = async () => {
      const t = (performance.now() - t0) / 1000;
      samples.push({ t, rss: rssBytes(child.pid!) });
      const m = await get(port, ca, '/metrics').catch(() => undefined);
      if (m) heaps.push({ t, heapUsed: metric(m.body, 'mesh_guard_nodejs_heap_size_used_bytes') });
      process.stderr.write(`soak: t=${t.toFixed(0)} s rss=${mb(samples.at(-1)!.rss)}\n`);
    };
    await sample();
    const timer = setInterval(() => void sample(), SAMPLE_MS);
    const result = await runLoad({ port, caFile, size: 'medium', mode: 'rate', connections: 8, rps: RPS, durationMs: DURATION_S * 1000 });
    clearInterval(timer);
    await sample();

    const warm = samples.filter((s) => s.t >= WARMUP_S && s.t < WARMUP_S + 15).map((s) => s.rss);
    const end = samples.slice(-3).map((s) => s.rss);
    const growth = median(end) / median(warm) - 1;
    const heapWarm = median(heaps.filter((h) => h.t >= WARMUP_S && h.t < WARMUP_S + 15).map((h) => h.heapUsed));
    const heapEnd = median(heaps.slice(-3).map((h) => h.heapUsed));
    const summary = {
      durationS: DURATION_S,
      targetRps: RPS,
      requests: result.requests,
      achievedRps: Math.round(result.reqPerSec),
      errors: result.errors,
      errorSamples: result.errorSamples,
      p50Ms: +result.p50.toFixed(2),
      p99Ms: +result.p99.toFixed(2),
      maxMs: +result.max.toFixed(2),
      rssAfterWarmup: mb(median(warm)),
      rssEnd: mb(median(end)),
      rssPeak: mb(Math.max(...samples.map((s) => s.rss))),
      rssGrowthAfterWarmupPct: +(growth * 100).toFixed(1),
      heapUsedAfterWarmup: mb(heapWarm),
      heapUsedEnd: mb(heapEnd),
      samples: samples.map((s) => [Math.round(s.t), Math.round(s.rss / 1024 / 1024)]),
    };
    process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
    const ok = result.errors === 0 && growth <= 0.1;
    process.stderr.write(`soak: ${ok ? 'PASS' : 'FAIL'}: RSS growth after warm-up ${summary.rssGrowthAfterWarmupPct}% (target <= 10%), ${result.errors} errors\n`);
    return ok ? 0 : 1;
  } finally {
    child.kill('SIGTERM');
    await exited;
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`soak: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(2);
  },
);
