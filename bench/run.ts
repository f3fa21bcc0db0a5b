/**
 * `npm run bench`: mesh-guard (the compiled production build, default log level, rules
 * in enforce mode) against the floor (bench/floor.ts), under the same load, in the same run.
 *
 *   npm run bench                 3 repetitions, table printed and written to bench/RESULTS.md
 *   npm run bench -- --smoke      a few hundred requests per server, checks only (CI); no file written
 *   npm run bench -- --reps=5 --no-write
 *   npm run bench -- --without=--max-semi-space-size   mesh-guard without that `npm start` flag (or env
 *                                 variable); repeatable; never written, for trying a flag
 *
 * Servers are pinned to CPU 1 and the load generator to CPU 0 when `taskset` exists and
 * there are at least two CPUs. Server CPU comes from /proc/<pid>/stat (utime + stime),
 * peak RSS from /proc/<pid>/status (VmHWM). Exit status is non-zero when the harness
 * breaks (a server does not start, a response is wrong, a log line is missing), not when
 * a target is missed.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { percentile, type LoadResult, type LoadSpec } from './load.js';
import { startCommand } from './start-command.js';
import type { Size } from './bodies.js';

const here = path.dirname(fileURLToPath(import.meta.url)); // dist/bench
const distRoot = path.resolve(here, '..');
const repoRoot = path.resolve(distRoot, '..');
const MAIN_JS = path.join(distRoot, 'src/server/main.js');
const FLOOR_JS = path.join(here, 'floor.js');
const LOAD_JS = path.join(here, 'load.js');

const args = process.argv.slice(2);
const SMOKE = args.includes('--smoke');
const WITHOUT = args.filter((a) => a.startsWith('--without=')).map((a) => a.slice('--without='.length));
const WRITE = !SMOKE && !args.includes('--no-write') && WITHOUT.length === 0;
const REPS = SMOKE ? 1 : Number(args.find((a) => a.startsWith('--reps='))?.slice(7) ?? 3);
const OUT = path.join(repoRoot, 'bench/RESULTS.md');

const MESH_GUARD = startCommand(repoRoot, WITHOUT);

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();
const hasTaskset = (() => {
  try {
    execFileSync('taskset', ['-V'], { stdio: 'ignore' });
    return os.availableParallelism() >= 2;
  } catch {
    return false;
  }
})();
const SERVER_CPU = '1';
const LOAD_CPU = '0';

type ServerName = 'floor' | 'mesh-guard';

interface Running {
  readonly name: ServerName;
  readonly child: ChildProcess;
  readonly pid: number;
  readonly port: number;
  readonly readyMs: number;
  readonly logFile: string;
}

function pinned(cpu: string, argv: string[]): [string, string[]] {
  return hasTaskset ? ['taskset', ['-c', cpu, ...argv]] : [argv[0]!, argv.slice(1)];
}

function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, TMPDIR: process.env.TMPDIR, ...extra };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  return env; // no KUBECONFIG or KUBERNETES_SERVICE_*: the server runs without a cluster
}

function get(port: number, ca: string | undefined, urlPath: string): Promise<number> {
  return new Promise((resolve) => {
    const req = https.get({ host: '127.0.0.1', port, path: urlPath, ca, servername: 'localhost', agent: false, rejectUnauthorized: !!ca, timeout: 1000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(0));
    req.on('timeout', () => req.destroy());
  });
}

async function waitReady(port: number, child: ChildProcess, t0: number): Promise<number> {
  // The CA may not exist yet (mesh-guard writes it at start), so readiness is polled without verification.
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode} before it was ready`);
    if ((await get(port, undefined, '/readyz')) === 200) return performance.now() - t0;
    if (performance.now() - t0 > 15_000) throw new Error('server not ready after 15 s');
    await sleep(2);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function startServer(name: ServerName, work: string, port: number, tlsDir: string): Promise<Running> {
  const logFile = path.join(work, `${name}-${port}.log`);
  const fd = fs.openSync(logFile, 'w');
  let argv: string[];
  let env: NodeJS.ProcessEnv;
  if (name === 'mesh-guard') {
    const configFile = path.join(work, 'config.yaml');
    // Only what a laptop run sets: port, where the self-signed certificate goes, and no shutdown drain delay.
    fs.writeFileSync(configFile, `server:\n  port: ${port}\n  shutdownDelayMs: 0\n  tls:\n    selfSignedDir: ${JSON.stringify(tlsDir)}\n`);
    fs.rmSync(tlsDir, { recursive: true, force: true }); // the certificate is generated at every start
    argv = [process.execPath, ...MESH_GUARD.flags, MAIN_JS];
    env = cleanEnv({ ...MESH_GUARD.env, CONFIG_FILE: configFile });
  } else {
    argv = [process.execPath, FLOOR_JS];
    env = cleanEnv({ PORT: String(port), TLS_CERT_FILE: path.join(tlsDir, 'tls.crt'), TLS_KEY_FILE: path.join(tlsDir, 'tls.key') });
  }
  const [cmd, cmdArgs] = pinned(SERVER_CPU, argv);
  const t0 = performance.now();
  const child = spawn(cmd, cmdArgs, { env, stdio: ['ignore', fd, fd] });
  fs.closeSync(fd);
  const readyMs = await waitReady(port, child, t0);
  return { name, child, pid: child.pid!, port, readyMs, logFile };
}

async function stopServer(s: Running): Promise<void> {
  if (s.child.exitCode !== null || s.child.signalCode !== null) return;
  const exited = new Promise<void>((r) => s.child.once('exit', () => r()));
  s.child.kill('SIGTERM');
  await Promise.race([exited, sleep(10_000)]);
  if (s.child.exitCode === null && s.child.signalCode === null) {
    s.child.kill('SIGKILL');
    await exited;
  }
}

function cpuTicks(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15)
}

function peakRssMiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const [cmd, cmdArgs] = pinned(LOAD_CPU, [process.execPath, LOAD_JS, JSON.stringify(spec)]);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, cmdArgs, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString('utf8')));
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`load generator exited with ${code}`));
      try {
        resolve(JSON.parse(out) as LoadResult);
      } catch {
        reject(new Error(`load generator printed no result: ${out.slice(0, 200)}`));
      }
    });
  });
}

/** One phase, summed over its slices. */
interface Measured {
  requests: number;
  elapsedMs: number;
  cpuMs: number;
  patched: number;
  generatorCpuMs: number;
  latencies: number[];
  averageBodyBytes: number;
  reqPerSec: number;
  cpuUsPerReq: number;
  /** Share of its core the server used during the phase. */
  serverCpu: number;
  generatorCpu: number;
  p50: number;
  p90: number;
  p99: number;
}

function emptyMeasured(): Measured {
  return { requests: 0, elapsedMs: 0, cpuMs: 0, patched: 0, generatorCpuMs: 0, latencies: [], averageBodyBytes: 0, reqPerSec: NaN, cpuUsPerReq: NaN, serverCpu: NaN, generatorCpu: NaN, p50: NaN, p90: NaN, p99: NaN };
}

async function slice(s: Running, spec: LoadSpec, into: Measured): Promise<void> {
  const c0 = cpuTicks(s.pid);
  const load = await runLoad({ ...spec, raw: true });
  const cpuMs = ((cpuTicks(s.pid) - c0) / CLK_TCK) * 1000;
  if (load.errors > 0) throw new Error(`${s.name}: ${load.errors} bad responses, e.g. ${load.errorSamples.join(' | ')}`);
  into.requests += load.requests;
  into.elapsedMs += load.elapsedMs;
  into.cpuMs += cpuMs;
  into.patched += load.patched;
  into.generatorCpuMs += load.generatorCpu * load.elapsedMs;
  for (const l of load.latencies ?? []) into.latencies.push(l);
  into.averageBodyBytes = load.averageBodyBytes;
}

function finish(m: Measured): Measured {
  const sorted = Float64Array.from(m.latencies).sort();
  return {
    ...m,
    latencies: [],
    reqPerSec: (m.requests / m.elapsedMs) * 1000,
    cpuUsPerReq: (m.cpuMs * 1000) / m.requests,
    serverCpu: m.cpuMs / m.elapsedMs,
    generatorCpu: m.generatorCpuMs / m.elapsedMs,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
  };
}

/**
 * Runs a phase as alternating slices (A B B A A B …), so that a change in the load other
 * processes put on this machine hits both servers alike: the ratios stay meaningful.
 */
async function interleaved(servers: readonly Running[], spec: (port: number) => LoadSpec, slices: number): Promise<Measured[]> {
  const out = servers.map(() => emptyMeasured());
  for (let i = 0; i < slices; i++) {
    const order = i % 2 === 0 ? servers.map((_, k) => k) : servers.map((_, k) => servers.length - 1 - k);
    for (const k of order) await slice(servers[k]!, spec(servers[k]!.port), out[k]!);
  }
  return out.map(finish);
}

interface Rep {
  readyMs: number;
  tput: Measured;
  lat: Measured;
  rssMiB: number;
  small: Measured;
  large: Measured;
  admissions: number;
  logLines: number;
}

/** One repetition: both servers up at once (idle while the other is loaded), phases interleaved. */
async function runRep(rep: number, work: string, firstPort: number, tlsDir: string): Promise<Record<ServerName, Rep>> {
  const caFile = path.join(tlsDir, 'ca.crt');
  // mesh-guard starts first: it writes the self-signed certificate that the floor also serves.
  const mg = await startServer('mesh-guard', work, firstPort, tlsDir);
  let floor: Running | undefined;
  try {
    floor = await startServer('floor', work, firstPort + 1, tlsDir);
    // Alternate which server gets the first slice of every phase.
    const servers = rep % 2 === 0 ? [mg, floor] : [floor, mg];
    const closed = (size: Size, d: { durationMs?: number; count?: number }) => (port: number): LoadSpec => ({ port, caFile, size, mode: 'closed', connections: 16, ...d });
    const warm = SMOKE ? servers.map(() => emptyMeasured()) : await interleaved(servers, closed('medium', { durationMs: 2000 }), 1); // JIT warm-up
    const tput = await interleaved(servers, closed('medium', SMOKE ? { count: 300 } : { durationMs: 1000 }), SMOKE ? 1 : 6);
    const lat = await interleaved(
      servers,
      (port) => ({ port, caFile, size: 'medium', mode: 'rate', connections: 4, rps: 200, ...(SMOKE ? { count: 100 } : { durationMs: 2500 }) }),
      SMOKE ? 1 : 4,
    );
    const rss = servers.map((s) => peakRssMiB(s.pid));
    const small = await interleaved(servers, closed('small', SMOKE ? { count: 50 } : { durationMs: 1500 }), SMOKE ? 1 : 2);
    const large = await interleaved(servers, closed('large', SMOKE ? { count: 50 } : { durationMs: 1500 }), SMOKE ? 1 : 2);
    await stopServer(mg);
    await stopServer(floor);
    const result = {} as Record<ServerName, Rep>;
    servers.forEach((s, k) => {
      const admissions = [warm, tput, lat, small, large].reduce((a, m) => a + m[k]!.requests, 0);
      result[s.name] = {
        readyMs: s.readyMs,
        tput: tput[k]!,
        lat: lat[k]!,
        rssMiB: rss[k]!,
        small: small[k]!,
        large: large[k]!,
        admissions,
        logLines: s.name === 'mesh-guard' ? countAdmissionLines(s.logFile) : 0,
      };
    });
    return result;
  } finally {
    await stopServer(mg);
    if (floor) await stopServer(floor);
  }
}

function countAdmissionLines(file: string): number {
  let n = 0;
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) if (line.includes('"msg":"admission"')) n++;
  return n;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

function machine(): string {
  const cpu = /model name\s*:\s*(.*)/.exec(fs.existsSync('/proc/cpuinfo') ? fs.readFileSync('/proc/cpuinfo', 'utf8') : '')?.[1] ?? os.cpus()[0]?.model ?? 'unknown';
  return `${os.availableParallelism()} CPUs (nproc), ${cpu}, Node ${process.version}, Linux ${os.release()}`;
}

interface Row {
  figure: string;
  floor: string;
  mg: string;
  ratio: string;
  target: string;
  pass: boolean | undefined;
}

function fmt(n: number, digits = 0): string {
  return Number.isFinite(n) ? n.toFixed(digits) : 'n/a';
}

function table(reps: Array<Record<ServerName, Rep>>): { rows: Row[]; pass: boolean } {
  const f = (pick: (r: Rep) => number, who: ServerName) => median(reps.map((r) => pick(r[who])));
  const ratio = (pick: (r: Rep) => number) => median(reps.map((r) => pick(r['mesh-guard']) / pick(r.floor)));
  const rows: Row[] = [];
  const add = (figure: string, pick: (r: Rep) => number, digits: number, target?: { text: string; ok: (ratio: number, mg: number) => boolean }, useRatio = true) => {
    const fl = f(pick, 'floor');
    const mg = f(pick, 'mesh-guard');
    const r = ratio(pick);
    rows.push({
      figure,
      floor: fmt(fl, digits),
      mg: fmt(mg, digits),
      ratio: useRatio ? `${fmt(r, 2)}×` : '',
      target: target?.text ?? '',
      pass: target ? target.ok(r, mg) : undefined,
    });
  };
  add('throughput, medium, 16 in flight (req/s)', (r) => r.tput.reqPerSec, 0, { text: '≥ 0.8× floor', ok: (r) => r >= 0.8 });
  add('p50 at 200 req/s, medium (ms)', (r) => r.lat.p50, 3);
  add('p90 at 200 req/s, medium (ms)', (r) => r.lat.p90, 3);
  add('p99 at 200 req/s, medium (ms)', (r) => r.lat.p99, 3, { text: '≤ 2 ms', ok: (_r, mg) => mg <= 2 });
  add('server CPU per request, medium (µs)', (r) => r.tput.cpuUsPerReq, 0, { text: '≤ 1.3× floor', ok: (r) => r <= 1.3 });
  add('peak RSS after medium load (MiB)', (r) => r.rssMiB, 1, { text: '≤ 1.3× floor', ok: (r) => r <= 1.3 });
  add('process start → /readyz 200 (ms)', (r) => r.readyMs, 0, { text: '≤ 1500 ms (mesh-guard)', ok: (_r, mg) => mg <= 1500 });
  add('throughput, small (req/s)', (r) => r.small.reqPerSec, 0);
  add('server CPU per request, small (µs)', (r) => r.small.cpuUsPerReq, 0);
  add('throughput, large (req/s)', (r) => r.large.reqPerSec, 0);
  add('server CPU per request, large (µs)', (r) => r.large.cpuUsPerReq, 0);
  add('server core busy during medium throughput', (r) => r.tput.serverCpu, 2, undefined, false);
  add('load generator core busy during medium throughput', (r) => r.tput.generatorCpu, 2, undefined, false);
  return { rows, pass: rows.every((r) => r.pass !== false) };
}

function markdown(rows: Row[]): string {
  const lines = ['| figure | floor | mesh-guard | ratio | target | pass |', '|---|---:|---:|---:|---|---|'];
  for (const r of rows) lines.push(`| ${r.figure} | ${r.floor} | ${r.mg} | ${r.ratio} | ${r.target} | ${r.pass === undefined ? '' : r.pass ? 'yes' : '**no**'} |`);
  return lines.join('\n');
}

function rawLines(reps: Array<Record<ServerName, Rep>>): string {
  const out = ['| rep | server | req/s | p50 | p90 | p99 | µs/req | RSS MiB | ready ms | core busy | patched |', '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|'];
  reps.forEach((rep, i) => {
    for (const name of ['floor', 'mesh-guard'] as const) {
      const r = rep[name];
      out.push(
        `| ${i + 1} | ${name} | ${fmt(r.tput.reqPerSec)} | ${fmt(r.lat.p50, 3)} | ${fmt(r.lat.p90, 3)} | ${fmt(r.lat.p99, 3)} | ${fmt(r.tput.cpuUsPerReq)} | ${fmt(r.rssMiB, 1)} | ${fmt(r.readyMs)} | ${fmt(r.tput.serverCpu, 2)} | ${fmt((r.tput.patched / r.tput.requests) * 100, 1)}% |`,
      );
    }
  });
  return out.join('\n');
}

const BEGIN = '<!-- bench:begin (written by npm run bench) -->';
const END = '<!-- bench:end -->';

function writeResults(block: string): void {
  const existing = fs.existsSync(OUT) ? fs.readFileSync(OUT, 'utf8') : '';
  const section = `${BEGIN}\n${block}\n${END}`;
  let text: string;
  if (existing.includes(BEGIN) && existing.includes(END)) {
    text = existing.slice(0, existing.indexOf(BEGIN)) + section + existing.slice(existing.indexOf(END) + END.length);
  } else {
    text = `# mesh-guard benchmark results\n\nHow to run and read this: [docs/benchmark.md](../docs/benchmark.md).\n\n${section}\n${existing ? '\n' + existing : ''}`;
  }
  fs.writeFileSync(OUT, text);
}

async function main(): Promise<void> {
  if (!fs.existsSync(MAIN_JS)) throw new Error(`${MAIN_JS} is missing: run npm run build`);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-guard-bench-'));
  const tlsDir = path.join(work, 'tls');
  const load0 = os.loadavg();
  const started = new Date();
  console.log(`mesh-guard bench${SMOKE ? ' (smoke)' : ''}: ${REPS} repetition(s); ${machine()}`);
  console.log(`mesh-guard runs: ${[...Object.entries(MESH_GUARD.env).map(([k, v]) => `${k}=${v}`), 'node', ...MESH_GUARD.flags].join(' ')}`);
  console.log(hasTaskset ? `servers pinned to CPU ${SERVER_CPU}, load generator to CPU ${LOAD_CPU}` : 'taskset unavailable or one CPU: nothing pinned');
  const reps: Array<Record<ServerName, Rep>> = [];
  let port = 20_000 + (process.pid % 20_000);
  for (let i = 0; i < REPS; i++) {
    const rep = await runRep(i, work, port, tlsDir);
    port += 2;
    const mg = rep['mesh-guard'];
    if (mg.logLines !== mg.admissions) throw new Error(`mesh-guard wrote ${mg.logLines} admission log lines for ${mg.admissions} admissions`);
    if (mg.tput.patched === 0) throw new Error('mesh-guard patched none of the rule-triggering pods');
    for (const name of ['floor', 'mesh-guard'] as const) {
      const r = rep[name];
      console.log(
        `  rep ${i + 1} ${name.padEnd(10)} ready ${fmt(r.readyMs)} ms, ${fmt(r.tput.reqPerSec)} req/s, ${fmt(r.tput.cpuUsPerReq)} µs/req (core ${fmt(r.tput.serverCpu, 2)}), ` +
          `p50/p90/p99 ${fmt(r.lat.p50, 2)}/${fmt(r.lat.p90, 2)}/${fmt(r.lat.p99, 2)} ms, RSS ${fmt(r.rssMiB, 1)} MiB`,
      );
    }
    reps.push(rep);
  }
  fs.rmSync(work, { recursive: true, force: true });
  const { rows, pass } = table(reps);
  const md = markdown(rows);
  const avg = (s: Size) => reps[0]!['mesh-guard'][s === 'medium' ? 'tput' : s].averageBodyBytes;
  const mg = reps[0]!['mesh-guard'];
  const notes = [
    `Run ${started.toISOString()} on ${machine()}. Load average at start ${load0.map((x) => x.toFixed(2)).join(' ')}, at end ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}.`,
    `Medians of ${REPS} repetition(s); a ratio is the median of the per-repetition ratios (mesh-guard / floor).`,
    `Bodies: small ${avg('small')} B, medium ${avg('medium')} B, large ${avg('large')} B on average; ` +
      `${fmt((mg.tput.patched / mg.tput.requests) * 100, 1)}% of medium reviews came back patched.`,
    hasTaskset ? `Servers pinned to CPU ${SERVER_CPU} with taskset, the load generator to CPU ${LOAD_CPU}.` : 'Nothing pinned (no taskset or one CPU).',
  ];
  console.log('\n' + md + '\n');
  console.log(pass ? 'all targets met' : 'some targets missed');
  if (WRITE) {
    writeResults(`## Latest run\n\n${notes.map((n) => `- ${n}`).join('\n')}\n\n${md}\n\nPer repetition (medium body):\n\n${rawLines(reps)}\n`);
    console.log(`written to ${path.relative(process.cwd(), OUT)}`);
  }
}

main().catch((err: unknown) => {
  console.error(`bench failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
