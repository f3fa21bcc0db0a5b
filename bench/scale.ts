/**
 * `npm run bench:scale`: mesh-guard's cost as the cluster grows, against the end-to-end suite's real
 * control plane (kube-apiserver + etcd from .build/bin, test/e2e/support/controlplane.ts) and
 * mesh-guard run as a process with the shipped ServiceAccount's RBAC (test/e2e/support/mesh-guard.ts).
 *
 *   npm run bench:scale                         N = 1,000 / 5,000 / 10,000 namespaces, P = 10,000 / 50,000 pods
 *   npm run bench:scale -- --smoke              a small N and P in well under two minutes, checks only (CI)
 *   npm run bench:scale -- --compare=DIR        also run another build's dist (DIR/src/server/main.js) at each N
 *   npm run bench:scale -- --ns=1000,5000 --pods=10000 --no-write
 *
 * The cluster: N namespaces (a third labelled istio-injection=enabled, a third with the Dynatrace
 * operator's dynakube.internal.dynatrace.com/instance label, each created as `kubectl apply` would:
 * field manager kubectl-client-side-apply and the last-applied annotation), 200 Services of which 3
 * are ActiveGates (the default activeGateLabelSelector, namespace dynatrace), and P pods spread over
 * 50 namespaces. Everything is created through client-node with bounded concurrency; pods are
 * created with mesh-guard's webhook configuration deleted (no controller runs them; they are only
 * stored, and audit reads them).
 *
 * Per N, per build: mesh-guard's start → /readyz 200 (the first sync included: syncTimeoutMs is
 * raised so ready means synced), resident memory (VmRSS) 3 s after ready, admission latency at 200
 * reviews/s for 10 s (bench/load.ts, medium bodies, sent straight to mesh-guard), then the same load
 * through a restart of kube-apiserver (restartApiServer): latency and mesh-guard's CPU from the
 * restart until the view is synced again, and the informers' list requests after it (the apiserver
 * audit log), which shows whether the restart forced a full relist.
 * Per P: `mesh-guard audit` (the CLI, admin kubeconfig) under /usr/bin/time -v: wall time, peak RSS,
 * and the API requests it made (audit log: every get/list, with its limit).
 *
 * Exit status is non-zero when the harness breaks, not when a target is missed.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AdmissionregistrationV1Api, CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { startControlPlane, type ControlPlane } from '../test/e2e/support/controlplane.js';
import { startMeshGuard, type MeshGuard } from '../test/e2e/support/mesh-guard.js';
import { percentile, type LoadResult, type LoadSpec } from './load.js';
import { startCommand } from './start-command.js';
import { SYNCED_METRIC } from '../src/cluster/kube-view.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const LOAD_JS = path.join(repoRoot, 'dist/bench/load.js');
const MAIN_JS = path.join(repoRoot, 'dist/src/server/main.js');
const OUT = path.join(repoRoot, 'bench/RESULTS.md');

const args = process.argv.slice(2);
const flag = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const SMOKE = args.includes('--smoke');
const WRITE = !SMOKE && !args.includes('--no-write');
const numbers = (v: string | undefined, dflt: number[]) => (v === undefined ? dflt : v.split(',').map(Number).filter((n) => n > 0));
const NS_STEPS = numbers(flag('ns'), SMOKE ? [50, 120] : [1_000, 5_000, 10_000]);
const POD_STEPS = numbers(flag('pods'), SMOKE ? [300] : [10_000, 50_000]);
/** Other builds' dist directories, comma-separated (e.g. a copy of dist from before a change, under .build/). */
const COMPARE = flag('compare')?.split(',').filter(Boolean) ?? [];
/**
 * --nice=19 runs etcd and kube-apiserver niced while mesh-guard is measured (in a cluster they are on
 * other machines): on two shared cores the apiserver's start-up otherwise takes mesh-guard's CPU and
 * the relist figures measure that. They are started niced (a restarted apiserver too) and set back to
 * 0 for the fills and for `audit`, whose run time is mostly the apiserver's work.
 */
const NICE = flag('nice') === undefined ? undefined : Number(flag('nice'));
const STEADY_MS = SMOKE ? 2_000 : 10_000;
const RATE = 200;
const CONCURRENCY = 24;
const POD_NAMESPACES = SMOKE ? 3 : 50;
const SERVICES = SMOKE ? 20 : 200;
const ACTIVE_GATES = 3;

const AG_LABELS = { 'app.kubernetes.io/component': 'activegate', 'app.kubernetes.io/name': 'dynatrace-operator' };
const SA_USER = 'system:serviceaccount:mesh-guard:mesh-guard';
/** get/list/watch only (creates would make the fill slow); one event per request. */
const AUDIT_POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  verbs: ["get", "list", "watch"]
- level: None
`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (s: string) => console.log(`[scale ${new Date().toISOString().slice(11, 19)}] ${s}`);
const loadavg = () => os.loadavg().map((l) => l.toFixed(2)).join(' ');

// ---- filling the cluster -----------------------------------------------------------------------

/** Runs fn(i) for i in [from, to) with at most `concurrency` in flight; 409 (exists) counts as done. */
async function bounded(from: number, to: number, fn: (i: number) => Promise<unknown>, concurrency = CONCURRENCY): Promise<number> {
  const t0 = Date.now();
  let next = from;
  const worker = async () => {
    while (next < to) {
      const i = next++;
      for (let attempt = 0; ; attempt++) {
        try {
          await fn(i);
          break;
        } catch (err) {
          const code = (err as { code?: number }).code;
          if (code === 409) break;
          if (attempt >= 5) throw err;
          await sleep(200 * 2 ** attempt); // 429/5xx while the apiserver is busy
        }
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return Date.now() - t0;
}

const nsName = (i: number) => `team-${String(i).padStart(5, '0')}`;

function namespaceLabels(i: number): Record<string, string> {
  const base = { 'team.example.com/owner': `team-${i % 97}`, environment: i % 5 === 0 ? 'staging' : 'production' };
  if (i % 3 === 0) return { ...base, 'istio-injection': 'enabled' };
  if (i % 3 === 1) return { ...base, 'dynakube.internal.dynatrace.com/instance': 'dynakube' };
  return base;
}

async function fillNamespaces(core: CoreV1Api, from: number, to: number): Promise<number> {
  return bounded(from, to, (i) => {
    const metadata = { name: nsName(i), labels: namespaceLabels(i) };
    const applied = JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata });
    return core.createNamespace({
      body: { metadata: { ...metadata, annotations: { 'kubectl.kubernetes.io/last-applied-configuration': `${applied}\n` } } },
      fieldManager: 'kubectl-client-side-apply',
    });
  });
}

async function fillServices(core: CoreV1Api): Promise<void> {
  await bounded(0, SERVICES, (i) => {
    const ag = i < ACTIVE_GATES;
    const namespace = ag ? 'dynatrace' : nsName(i);
    const name = ag ? `dynakube-activegate-${i}` : `svc-${i}`;
    return core.createNamespacedService({
      namespace,
      body: {
        metadata: { name, labels: ag ? { ...AG_LABELS, 'app.kubernetes.io/created-by': 'dynakube' } : { app: name } },
        spec: { selector: { app: name }, ports: [{ name: 'https', port: 443, targetPort: 9999 }] },
      },
    });
  });
}

/** A pod as a Deployment makes it; a third with an Istio sidecar, a third with OneAgent injected. */
function podBody(i: number): V1Pod {
  const app = `app-${i % 500}`;
  const pod: V1Pod = {
    metadata: {
      name: `${app}-${(i * 7919).toString(36).padStart(6, '0')}-${i}`,
      labels: { app, 'pod-template-hash': (i % 500).toString(36).padStart(8, 'x') },
      annotations: { 'kubectl.kubernetes.io/restartedAt': '2026-11-20T17:32:11Z' },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: `${app}-rs`, uid: '6f1d2a44-0000-4000-8000-000000000000', controller: true }],
    },
    spec: {
      automountServiceAccountToken: false,
      containers: [
        {
          name: 'app',
          image: `registry.example.com/${app}:1.4.2`,
          ports: [{ containerPort: 8080, name: 'http' }],
          env: [{ name: 'LOG_LEVEL', value: 'info' }, { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }],
          resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '256Mi' } },
        },
      ],
    },
  };
  if (i % 3 === 0) {
    pod.metadata!.annotations!['sidecar.istio.io/status'] = '{"initContainers":["istio-init"],"containers":["istio-proxy"],"volumes":["istio-envoy"]}';
    pod.spec!.containers.push({ name: 'istio-proxy', image: 'docker.io/istio/proxyv2:1.28.0', args: ['proxy', 'sidecar'], ports: [{ containerPort: 15090, name: 'http-envoy-prom' }] });
  } else if (i % 3 === 1) {
    pod.metadata!.annotations!['oneagent.dynatrace.com/injected'] = 'true';
    pod.spec!.initContainers = [{ name: 'dynatrace-operator', image: 'public.ecr.aws/dynatrace/dynatrace-operator:v1.7.0', args: ['init'] }];
  }
  return pod;
}

async function fillPods(cp: ControlPlane, core: CoreV1Api, from: number, to: number): Promise<number> {
  for (let n = 0; n < POD_NAMESPACES; n++) await cp.ensureNamespace(`pods-${n}`, n % 2 === 0 ? { 'istio-injection': 'enabled' } : {});
  return bounded(from, to, (i) => core.createNamespacedPod({ namespace: `pods-${i % POD_NAMESPACES}`, body: podBody(i) }));
}

// ---- measuring -------------------------------------------------------------------------------

/** This process's etcd and kube-apiserver children. */
function controlPlanePids(): number[] {
  const out: number[] = [];
  for (const tid of fs.readdirSync('/proc/self/task')) {
    for (const pid of fs.readFileSync(`/proc/self/task/${tid}/children`, 'utf8').split(' ').filter(Boolean)) {
      const comm = fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      if (comm === 'etcd' || comm === 'kube-apiserver') out.push(Number(pid));
    }
  }
  return out;
}

/** Sets the niceness of every thread of the control plane (Linux niceness is per thread; new threads inherit it). */
function niceControlPlane(nice: number | undefined): void {
  if (NICE === undefined || nice === undefined) return;
  for (const pid of controlPlanePids()) {
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      try {
        os.setPriority(Number(tid), nice);
      } catch {
        // the thread ended meanwhile
      }
    }
  }
}

function procStatus(pid: number): { rssKiB: number; hwmKiB: number } {
  const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
  return { rssKiB: kib('VmRSS'), hwmKiB: kib('VmHWM') };
}

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** utime + stime of a process, in ms. */
function cpuMs(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
}

interface LoadRun {
  readonly result: Promise<LoadResult>;
  stop(): void;
}

function startLoad(mg: MeshGuard, durationMs: number): LoadRun {
  const spec: LoadSpec = {
    port: mg.port,
    caFile: path.join(mg.process().dir, 'ca.crt'),
    size: 'medium',
    mode: 'rate',
    rps: RATE,
    connections: 8,
    durationMs,
    raw: true,
    times: true,
  };
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-guard-scale-load-')), 'result.json');
  const child = spawn(process.execPath, [LOAD_JS, JSON.stringify(spec), out], { stdio: ['ignore', 'inherit', 'inherit'] });
  const t0 = Date.now();
  let stopped: number | undefined;
  const result = new Promise<LoadResult>((resolve, reject) =>
    child.on('close', (code, signal) => {
      try {
        if (code !== 0) throw new Error(`load generator exited with ${code ?? signal}`);
        if (!fs.existsSync(out)) {
          const when = stopped === undefined ? 'before it was stopped' : `${Date.now() - stopped} ms after it was stopped`;
          throw new Error(`load generator exited 0 after ${Date.now() - t0} ms, ${when}, without a result`);
        }
        resolve(JSON.parse(fs.readFileSync(out, 'utf8')) as LoadResult);
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    }),
  );
  result.catch(() => undefined); // awaited later; a failure must not crash the run before that
  return {
    result,
    stop: () => {
      stopped = Date.now();
      child.kill('SIGTERM');
    },
  };
}

interface Latency {
  readonly requests: number;
  readonly errors: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

/** Percentiles of the requests that were due in [from, to) (epoch ms). */
function between(r: LoadResult, from: number, to: number): Latency {
  const lat = r.latencies ?? [];
  const due = r.dueAt ?? [];
  const picked = Float64Array.from(lat.filter((_, i) => due[i]! >= from && due[i]! < to)).sort();
  return { requests: picked.length, errors: r.errors, p50: percentile(picked, 50), p99: percentile(picked, 99), max: picked.length ? picked[picked.length - 1]! : NaN };
}

interface AuditEvent {
  stage: string;
  verb: string;
  requestURI: string;
  user: { username: string };
  objectRef?: { resource?: string };
  requestReceivedTimestamp: string;
  stageTimestamp: string;
}

function auditEvents(cp: ControlPlane, from: number, to = Infinity, user?: string): AuditEvent[] {
  const text = fs.readFileSync(cp.auditLogPath!, 'utf8');
  const out: AuditEvent[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const e = JSON.parse(line) as AuditEvent;
    if (e.stage !== 'ResponseComplete' || Date.parse(e.requestReceivedTimestamp) < from || Date.parse(e.stageTimestamp) > to) continue;
    if (user && e.user.username !== user) continue;
    out.push(e);
  }
  return out;
}

interface ViewRun {
  readonly build: string;
  readonly namespaces: number;
  readonly readyMs: number;
  readonly state: string;
  readonly rssMiB: number;
  readonly hwmMiB: number;
  /** After the 10 s of steady load: RSS, and V8's used heap (mesh-guard's /metrics). */
  readonly rssAfterLoadMiB: number;
  readonly heapUsedMiB: number;
  readonly steady: Latency;
  readonly relist?: {
    /** From the restart until 1 s after the view is synced again (the apiserver's absence included). */
    readonly outage: Latency;
    /** From the first list request after the restart until 1 s after synced: the relist itself. */
    readonly latency: Latency;
    readonly relistMs: number;
    readonly apiDownMs: number;
    /** From the restart until the view is synced again. */
    readonly resyncMs: number;
    readonly cpuCores: number;
    readonly cpuMs: number;
    readonly lists: number;
    readonly rssAfterMiB: number;
  };
  readonly relistError?: string;
}

const mib = (kib: number) => kib / 1024;

async function measureView(cp: ControlPlane, mg: MeshGuard, build: string, namespaces: number, relist: boolean): Promise<ViewRun> {
  niceControlPlane(NICE);
  await mg.stop();
  const t0 = performance.now();
  await mg.start();
  const readyMs = performance.now() - t0;
  const state = await mg.clusterView();
  await sleep(3_000);
  const pid = mg.process().child.pid!;
  const { rssKiB, hwmKiB } = procStatus(pid);

  const steadyRun = startLoad(mg, STEADY_MS);
  const steadyResult = await steadyRun.result;
  const steady = between(steadyResult, 0, Infinity);
  if (steadyResult.errors) throw new Error(`${steadyResult.errors} admission errors at steady state: ${steadyResult.errorSamples.join('; ')}`);
  const rssAfterLoadMiB = mib(procStatus(pid).rssKiB);
  const heapUsedMiB = await heapUsed(mg);
  log(`${build} N=${namespaces}: ready ${readyMs.toFixed(0)} ms (${state}), RSS ${mib(rssKiB).toFixed(1)} MiB (${rssAfterLoadMiB.toFixed(1)} after load, heap used ${heapUsedMiB.toFixed(1)}), steady p50 ${steady.p50.toFixed(2)} p99 ${steady.p99.toFixed(2)} ms`);
  const base = { build, namespaces, readyMs, state, rssMiB: mib(rssKiB), hwmMiB: mib(hwmKiB), rssAfterLoadMiB, heapUsedMiB, steady };
  if (!relist) return base;

  try {
    return { ...base, relist: await measureRelist(cp, mg, build, namespaces, pid) };
  } catch (err) {
    log(`${build} N=${namespaces}: relist measurement failed: ${err instanceof Error ? err.message : String(err)}`);
    return { ...base, relistError: err instanceof Error ? err.message : String(err) };
  }
}

async function measureRelist(cp: ControlPlane, mg: MeshGuard, build: string, namespaces: number, pid: number): Promise<NonNullable<ViewRun['relist']>> {
  const answered0 = await metric(mg, 'mesh_guard_admission_duration_seconds_count');
  const run = startLoad(mg, 300_000);
  try {
    await sleep(2_000);
    const linesBefore = mg.lines().length;
    const samples: Array<[number, number]> = [[Date.now(), cpuMs(pid)]];
    const sampler = setInterval(() => {
      try {
        samples.push([Date.now(), cpuMs(pid)]);
      } catch {
        // mesh-guard exited: the wait below reports it
      }
    }, 100);
    const tRestart = Date.now();
    await cp.restartApiServer();
    const tUp = Date.now();
    log(`${build} N=${namespaces}: apiserver restarted in ${tUp - tRestart} ms`);
    // The view turns degraded while the apiserver is away (degradeAfterMs) and logs "synced" when its
    // informers are back. The apiserver's graceful stop keeps the watches open until it is killed, so
    // when the new one answers within degradeAfterMs of that, the view never degrades and logs
    // nothing: then the relist ends with the last list mesh-guard's informers made (audit log).
    const deadline = Date.now() + 180_000;
    let tSynced: number | undefined;
    while (Date.now() < deadline && tSynced === undefined) {
      const p = mg.process().child;
      if (p.exitCode !== null || p.signalCode !== null) throw new Error(`mesh-guard exited (${p.exitCode ?? p.signalCode}) during the relist: ${mg.process().stderr().slice(-2000)}`);
      const lines = mg.lines().slice(linesBefore);
      const synced = lines.find((l) => l['clusterView'] === 'synced');
      if (synced) tSynced = Date.parse(String(synced['time']));
      else if (Date.now() - tUp > 10_000 && !lines.some((l) => l['clusterView'] === 'degraded') && (await metric(mg, SYNCED_METRIC)) === 1) {
        const relists = auditEvents(cp, tRestart, Infinity, SA_USER).filter((e) => e.verb === 'list');
        if (relists.length > 0) tSynced = Math.max(...relists.map((e) => Date.parse(e.stageTimestamp)));
        else await sleep(100);
      } else await sleep(100);
    }
    if (tSynced === undefined) throw new Error('the cluster view did not log "synced" again within 180 s of the apiserver restart (was it ever degraded?)');
    await sleep(1_000);
    const tEnd = Date.now();
    clearInterval(sampler);
    samples.push([tEnd, cpuMs(pid)]);
    run.stop();
    const result = await run.result;
    if (result.errors) throw new Error(`${result.errors} admission errors during the relist: ${result.errorSamples.join('; ')}`);
    await sleep(500); // the audit log is written as requests complete
    const listEvents = auditEvents(cp, tRestart, tEnd, SA_USER).filter((e) => e.verb === 'list');
    const lists = listEvents.length;
    const tList = Math.min(tSynced, ...listEvents.map((e) => Date.parse(e.requestReceivedTimestamp)));
    const outage = between(result, tRestart, tEnd);
    const latency = between(result, tList, tEnd);
    // mesh-guard's CPU over the relist window, from the 100 ms samples nearest its ends.
    const at = (t: number) => samples.reduce((best, smp) => (Math.abs(smp[0] - t) < Math.abs(best[0] - t) ? smp : best));
    const [c0, c1] = [at(tList), at(tEnd)];
    const cpu = c1[1] - c0[1];
    const cpuCores = cpu / Math.max(1, c1[0] - c0[0]);
    const rssAfter = procStatus(pid).rssKiB;
    if (result.gaveUp) {
      const due = (result.unansweredDueAt ?? []).map((t) => `${Math.round(t - tRestart)} ms`).join(', ');
      const counted = (await metric(mg, 'mesh_guard_admission_duration_seconds_count')) - answered0;
      log(
        `${build} N=${namespaces}: the load generator stopped waiting 5 s after the stop (${result.unanswered} requests in flight, due at ${due} after the restart began; view synced at ${tSynced - tRestart} ms); ` +
          `mesh-guard timed ${counted} admissions, the generator got ${result.requests} answers`,
      );
    }
    log(`${build} N=${namespaces}: outage p99 ${outage.p99.toFixed(2)} ms; relist (${tEnd - tList} ms) p50 ${latency.p50.toFixed(2)} p99 ${latency.p99.toFixed(2)} ms, ${lists} list requests, CPU ${cpuCores.toFixed(2)} cores`);
    return { outage, latency, relistMs: tEnd - tList, apiDownMs: tUp - tRestart, resyncMs: tSynced - tRestart, cpuCores, cpuMs: cpu, lists, rssAfterMiB: mib(rssAfter) };
  } finally {
    run.stop(); // also when the measurement failed half-way
  }
}

/** A sample from mesh-guard's /metrics (no labels). */
async function metric(mg: MeshGuard, name: string): Promise<number> {
  const res = await mg.process().request('GET', '/metrics');
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(res.body);
  return m ? Number(m[1]) : NaN;
}

/** V8's used heap as mesh-guard's /metrics reports it (prom-client's default metrics). */
async function heapUsed(mg: MeshGuard): Promise<number> {
  return (await metric(mg, 'mesh_guard_nodejs_heap_size_used_bytes')) / 1024 / 1024;
}

interface AuditRun {
  readonly build: string;
  readonly pods: number;
  readonly namespaces: number;
  readonly wallS: number;
  readonly peakMiB: number;
  readonly exit: number;
  readonly requests: number;
  readonly byResource: Record<string, number>;
  readonly unboundedLists: number;
}

async function measureAudit(cp: ControlPlane, build: string, cli: string, pods: number, namespaces: number): Promise<AuditRun> {
  const t0 = Date.now();
  // Not execFileSync: the control plane's children write to pipes this process must keep reading.
  const child = spawn('/usr/bin/time', ['-v', process.execPath, cli, 'audit', '--kubeconfig', cp.kubeconfigPath, '-q'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const exit = await new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? -1)));
  const t1 = Date.now();
  // 0: no risk, 1: risks found (the pods carry some); anything else is a failure.
  if (exit !== 0 && exit !== 1) throw new Error(`audit exited with ${exit}: ${stderr.slice(-2000)}`);
  if (!stderr) throw new Error('no /usr/bin/time output');
  const peakKiB = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(stderr)?.[1]);
  const [m, s] = (/Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+(?:\.\d+)?)$/m.exec(stderr) ?? []).slice(1);
  const wallS = Number(m ?? 0) * 60 + Number(s ?? (t1 - t0) / 1000);
  await sleep(500);
  const events = auditEvents(cp, t0, t1 + 1_000, 'e2e-admin');
  const byResource: Record<string, number> = {};
  let unboundedLists = 0;
  for (const e of events) {
    const key = `${e.verb} ${e.objectRef?.resource ?? '?'}`;
    byResource[key] = (byResource[key] ?? 0) + 1;
    if (e.verb === 'list' && !/[?&]limit=\d+/.test(e.requestURI)) unboundedLists++;
  }
  log(`${build} audit P=${pods}: ${wallS.toFixed(1)} s, peak ${mib(peakKiB).toFixed(0)} MiB, ${events.length} requests ${JSON.stringify(byResource)}, ${unboundedLists} without limit`);
  return { build, pods, namespaces, wallS, peakMiB: mib(peakKiB), exit, requests: events.length, byResource, unboundedLists };
}

// ---- the run ---------------------------------------------------------------------------------

/** Least-squares slope of y over x. */
function slope(points: ReadonlyArray<readonly [number, number]>): number {
  const n = points.length;
  const mx = points.reduce((a, p) => a + p[0], 0) / n;
  const my = points.reduce((a, p) => a + p[1], 0) / n;
  const num = points.reduce((a, p) => a + (p[0] - mx) * (p[1] - my), 0);
  const den = points.reduce((a, p) => a + (p[0] - mx) ** 2, 0);
  return den === 0 ? NaN : num / den;
}

function report(meta: string[], views: readonly ViewRun[], audits: readonly AuditRun[]): string {
  const f = (n: number | undefined, d = 1) => (n === undefined || Number.isNaN(n) ? '-' : n.toFixed(d));
  const out = [...meta, ''];
  out.push('| build | namespaces | ready (ms) | view | RSS after sync (MiB) | RSS / heap used after load (MiB) | steady p50 / p99 (ms) | apiserver restart: p50 / p99 (ms) | relist: p50 / p99 (ms), requests | p99 relist ÷ steady | apiserver down (ms) | restart → synced (ms) | mesh-guard CPU in relist (cores) | list requests after restart | RSS after relist (MiB) |');
  out.push('|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const v of views) {
    const r = v.relist;
    out.push(
      `| ${v.build} | ${v.namespaces} | ${f(v.readyMs, 0)} | ${v.state} | ${f(v.rssMiB)} | ${f(v.rssAfterLoadMiB)} / ${f(v.heapUsedMiB)} | ${f(v.steady.p50, 2)} / ${f(v.steady.p99, 2)} | ${r ? `${f(r.outage.p50, 2)} / ${f(r.outage.p99, 2)}` : '-'} | ${r ? `${f(r.latency.p50, 2)} / ${f(r.latency.p99, 2)}, ${r.latency.requests}` : '-'} | ${r ? f(r.latency.p99 / v.steady.p99, 2) : '-'} | ${r ? r.apiDownMs : '-'} | ${r ? r.resyncMs : '-'} | ${r ? f(r.cpuCores, 2) : '-'} | ${r ? r.lists : '-'} | ${r ? f(r.rssAfterMiB) : '-'} |`,
    );
  }
  for (const v of views) if (v.relistError) out.push(`- ${v.build} at ${v.namespaces}: the relist measurement failed: ${v.relistError}`);
  out.push('');
  for (const build of [...new Set(views.map((v) => v.build))]) {
    const pts = views.filter((v) => v.build === build).map((v) => [v.namespaces, v.rssMiB * 1024] as const);
    const heap = views.filter((v) => v.build === build).map((v) => [v.namespaces, v.heapUsedMiB * 1024] as const);
    if (pts.length >= 2) {
      out.push(`- ${build}: RSS after sync grows ${f(slope(pts), 2)} KiB per namespace (least squares over ${pts.length} sizes), ${f((slope(pts) * 1000) / 1024, 2)} MiB per 1,000; V8 heap used after load ${f(slope(heap), 2)} KiB per namespace.`);
    }
  }
  out.push('');
  out.push('| build | pods | namespaces | audit wall (s) | peak RSS (MiB) | API requests | by verb and resource | lists without limit |');
  out.push('|---|---:|---:|---:|---:|---:|---|---:|');
  for (const a of audits) {
    out.push(`| ${a.build} | ${a.pods} | ${a.namespaces} | ${f(a.wallS)} | ${f(a.peakMiB, 0)} | ${a.requests} | ${Object.entries(a.byResource).map(([k, v]) => `${k}: ${v}`).join(', ')} | ${a.unboundedLists} |`);
  }
  out.push('');
  for (const build of [...new Set(audits.map((a) => a.build))]) {
    const runs = audits.filter((a) => a.build === build);
    if (runs.length >= 2) {
      out.push(`- ${build} audit: ${f(slope(runs.map((a) => [a.pods / 1000, a.wallS])), 2)} s and ${f(slope(runs.map((a) => [a.pods / 1000, a.peakMiB])), 2)} MiB per 1,000 pods.`);
    }
  }
  return out.join('\n');
}

function writeResults(block: string): void {
  const begin = '<!-- scale:begin (written by npm run bench:scale) -->';
  const end = '<!-- scale:end -->';
  const text = fs.readFileSync(OUT, 'utf8');
  const section = `${begin}\n${block}\n${end}`;
  const i = text.indexOf(begin);
  const j = text.indexOf(end);
  fs.writeFileSync(OUT, i >= 0 && j > i ? text.slice(0, i) + section + text.slice(j + end.length) : `${text.trimEnd()}\n\n## Scale (latest run)\n\n${section}\n`);
}

async function main(): Promise<void> {
  const started = new Date();
  const meta = [
    `- Run ${started.toISOString()} on ${os.availableParallelism()} CPUs, ${os.cpus()[0]?.model ?? '?'}, Node ${process.version}. Load average at start ${loadavg()}.`,
    `- Arguments: ${args.join(' ') || '(none)'}${NICE !== undefined ? ` (etcd and kube-apiserver at nice ${NICE})` : ''}.`,
  ];
  log(`load average ${loadavg()}`);
  const cp = await startControlPlane({ auditPolicy: AUDIT_POLICY, ...(NICE !== undefined ? { nice: NICE } : {}) });
  const core = cp.kc.makeApiClient(CoreV1Api);
  const start = startCommand(repoRoot);
  const env = { ...start.env, NODE_OPTIONS: start.flags.join(' ') };
  const config = 'cluster:\n  syncTimeoutMs: 120000\n';
  const builds: Array<{ name: string; entry: string }> = [{ name: 'this build', entry: MAIN_JS }];
  for (const dir of COMPARE) builds.push({ name: path.basename(path.resolve(dir, '..')), entry: path.join(path.resolve(dir), 'src/server/main.js') });
  const guards: MeshGuard[] = [];
  process.once('exit', () => guards.forEach((g) => g.process().kill('SIGKILL')));
  try {
    // The namespaces the benchmark bodies name (bench/bodies.ts), labelled as the cluster they model.
    await cp.ensureNamespace('shop', { 'dynakube.internal.dynatrace.com/instance': 'dynakube' });
    await cp.ensureNamespace('payments', { 'istio-injection': 'enabled' });
    for (const ns of ['billing', 'istio-system', 'dynatrace']) await cp.ensureNamespace(ns);
    niceControlPlane(0);
    const t = await fillNamespaces(core, 0, SERVICES); // the Services live in the first namespaces
    await fillServices(core);
    log(`${SERVICES} namespaces and ${SERVICES} Services (${ACTIVE_GATES} ActiveGates) in ${t} ms`);
    for (const b of builds) {
      guards.push(await startMeshGuard(cp, { entry: b.entry, env, configYaml: config, readyTimeoutMs: 150_000 }));
      await guards.at(-1)!.stop();
    }
    const views: ViewRun[] = [];
    let have = SERVICES;
    for (const n of NS_STEPS) {
      niceControlPlane(0);
      const ms = await fillNamespaces(core, have, n);
      log(`namespaces ${have} → ${n} in ${ms} ms (${(((n - have) / ms) * 1000).toFixed(0)}/s); load average ${loadavg()}`);
      have = Math.max(have, n);
      for (let i = 0; i < builds.length; i++) {
        // The smoke restarts the apiserver once (the slow part); a full run at every size for this build,
        // at the largest for the compared one.
        const last = n === NS_STEPS.at(-1);
        const relist = i === 0 ? !SMOKE || last : !SMOKE && last;
        views.push(await measureView(cp, guards[i]!, builds[i]!.name, n, relist));
        await guards[i]!.stop();
      }
    }

    // Pods with mesh-guard's webhook absent: no admission call per pod.
    niceControlPlane(0);
    await deleteMeshGuardWebhook(cp);
    const audits: AuditRun[] = [];
    let pods = 0;
    for (const p of POD_STEPS) {
      const ms = await fillPods(cp, core, pods, p);
      log(`pods ${pods} → ${p} in ${ms} ms (${(((p - pods) / ms) * 1000).toFixed(0)}/s); load average ${loadavg()}`);
      pods = p;
      // audit's own code is the same in the before/trim builds: this build and the first compared one.
      for (const b of builds.slice(0, 2)) audits.push(await measureAudit(cp, b.name, path.join(path.dirname(b.entry), '../cli/main.js'), p, have + POD_NAMESPACES));
    }
    meta.push(`- Load average at end ${loadavg()}. Total ${((Date.now() - started.getTime()) / 60_000).toFixed(1)} min. kube-apiserver ${cp.gitVersion}.`);
    const block = report(meta, views, audits);
    console.log(`\n${block}\n`);
    if (WRITE) writeResults(block);
    if (SMOKE) check(views, audits);
  } finally {
    for (const g of guards) await g.stop().catch(() => undefined);
    await cp.stop();
  }
}

async function deleteMeshGuardWebhook(cp: ControlPlane): Promise<void> {
  try {
    await cp.kc.makeApiClient(AdmissionregistrationV1Api).deleteMutatingWebhookConfiguration({ name: '0-mesh-guard' });
  } catch (err) {
    if ((err as { code?: number }).code !== 404) throw err;
  }
}

/** The smoke's checks: the harness measured what it claims to (no targets). */
function check(views: readonly ViewRun[], audits: readonly AuditRun[]): void {
  const problems: string[] = [];
  for (const v of views) {
    if (v.state !== 'synced') problems.push(`N=${v.namespaces}: view ${v.state} at ready`);
    if (v.steady.requests < (RATE * STEADY_MS) / 1000 / 2) problems.push(`N=${v.namespaces}: only ${v.steady.requests} steady requests`);
    if (v.relist && v.relist.lists < 2) problems.push(`N=${v.namespaces}: ${v.relist.lists} list requests after the apiserver restart (no relist?)`);
    if (v.relist && v.relist.latency.requests === 0) problems.push(`N=${v.namespaces}: no requests in the relist window`);
    if (v.relistError) problems.push(`N=${v.namespaces}: ${v.relistError}`);
  }
  for (const a of audits) {
    if (a.unboundedLists) problems.push(`audit P=${a.pods}: ${a.unboundedLists} lists without limit`);
    if (!(a.byResource['list pods'] ?? 0)) problems.push(`audit P=${a.pods}: no pod list seen in the audit log`);
  }
  if (problems.length) throw new Error(`scale smoke: ${problems.join('; ')}`);
  log('smoke checks passed');
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err instanceof Error ? err.stack : err);
    process.exit(1);
  },
);
