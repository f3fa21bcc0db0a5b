/**
 * What the cluster view retains per namespace, after a full garbage collection: the part of
 * resident memory that stays, without the first sync's floating garbage that RSS after sync also
 * counts (bench/scale.ts measures RSS against the real API server; this explains it).
 *
 *   npm run bench:retained -- [--ns=10000] [--compare=DIR,...]   (DIR: another build's dist)
 *
 * Per build, in its own process with --expose-gc: the in-test API server (test/support/fake-apiserver.ts)
 * is filled with N namespaces shaped as bench/scale.ts creates them (labels, the last-applied
 * annotation, a managedFields entry), the heap is collected, then the build's createClusterView syncs
 * against it; retained = heap used after a collection with the view synced − before it, over N.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { Registry } from 'prom-client';
import { FakeApiServer } from '../test/support/fake-apiserver.js';
import { defaultConfig } from '../src/config/schema.js';
import type { ClusterView } from '../src/cluster/view.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const flag = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const N = Number(flag('ns') ?? 10_000);
const dirs = [path.join(repoRoot, 'dist'), ...(flag('compare')?.split(',').filter(Boolean) ?? [])];

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc (npm run bench:retained does)');
const heapUsed = () => {
  for (let i = 0; i < 3; i++) gc();
  return process.memoryUsage().heapUsed;
};

function namespace(i: number) {
  const metadata = { name: `team-${String(i).padStart(5, '0')}`, labels: { 'team.example.com/owner': `team-${i % 97}`, environment: 'production', ...(i % 3 === 0 ? { 'istio-injection': 'enabled' } : {}) } };
  return {
    metadata: {
      ...metadata,
      labels: { ...metadata.labels, 'kubernetes.io/metadata.name': metadata.name },
      annotations: { 'kubectl.kubernetes.io/last-applied-configuration': `${JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata })}\n` },
      managedFields: [{ manager: 'kubectl-client-side-apply', operation: 'Update', apiVersion: 'v1', time: '2026-12-04T03:00:00Z', fieldsType: 'FieldsV1', fieldsV1: { 'f:metadata': { 'f:annotations': { '.': {}, 'f:kubectl.kubernetes.io/last-applied-configuration': {} }, 'f:labels': { '.': {}, 'f:environment': {}, 'f:team.example.com/owner': {} } } } }],
    },
    spec: { finalizers: ['kubernetes'] },
    status: { phase: 'Active' },
  };
}

/**
 * One build per process (a closed view is not freed at once: its timers and sockets hold it for a
 * while). Its code is compiled lazily onto the same heap, so a first view syncs one namespace from a
 * second server and stays open before the measured one starts.
 */
async function measure(dir: string): Promise<number> {
  const { createClusterView } = (await import(path.join(dir, 'src/cluster/kube-view.js'))) as typeof import('../src/cluster/kube-view.js');
  const sync = async (server: FakeApiServer): Promise<ClusterView> => {
    const view = createClusterView({ ...defaultConfig.cluster, syncTimeoutMs: 60_000 }, { log: pino({ level: 'silent' }), registry: new Registry(), kubeConfig: server.kubeConfig() });
    await view.ready();
    if (view.state !== 'synced') throw new Error(`${dir}: view ${view.state}`);
    await new Promise((r) => setTimeout(r, 500));
    return view;
  };
  const warm = await FakeApiServer.start();
  warm.create('namespaces', namespace(0));
  await sync(warm);
  const server = await FakeApiServer.start();
  for (let i = 0; i < N; i++) server.create('namespaces', namespace(i));
  const before = heapUsed();
  await sync(server);
  return heapUsed() - before;
}

async function main(): Promise<void> {
  const one = flag('one');
  if (one) {
    console.log(JSON.stringify({ retained: await measure(one) }));
    return;
  }
  console.log(`| build | namespaces | retained (MiB) | per namespace (bytes) |`);
  console.log(`|---|---:|---:|---:|`);
  for (const dir of dirs) {
    const out = execFileSync(process.execPath, [...process.execArgv, process.argv[1]!, fileURLToPath(import.meta.url), `--ns=${N}`, `--one=${dir}`], { encoding: 'utf8' });
    const { retained } = JSON.parse(out.trim().split('\n').at(-1)!) as { retained: number };
    const name = dir === dirs[0] ? 'this build' : path.basename(path.resolve(dir, '..'));
    console.log(`| ${name} | ${N} | ${(retained / 1024 / 1024).toFixed(1)} | ${Math.round(retained / N)} |`);
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err instanceof Error ? err.stack : err);
    process.exit(1);
  },
);
