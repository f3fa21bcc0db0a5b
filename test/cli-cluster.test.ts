/**
 * The parts of `mesh-guard audit` and `mesh-guard doctor` that need no cluster: the analyser on
 * pods handed to it, and the one-line errors for an unreachable cluster, no cluster and bad flags.
 * Both commands against a cluster (risks, doctor's checks, RBAC denials, paging) run against a real
 * kube-apiserver in test/e2e/cli.e2e.ts.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { V1Pod } from '@kubernetes/client-node';
import { afterAll, describe, expect, it } from 'vitest';
import { analyse, renderAuditTable } from '../src/cli/audit.js';
import { memoryIO } from '../src/cli/common.js';
import { discoveryOf } from '../src/cli/peers.js';
import { run } from '../src/cli/main.js';
import { settingsFromObjects } from '../src/cluster/peer-settings.js';
import { parseConfig } from '../src/config/load.js';
import { ledgerPod, oneAgentInit, owner } from './support/audit-seeds.js';
import { consulInjectorDeployment } from './support/peer-settings.js';
import { configurationObject, CONSUL } from './support/peer-webhooks.js';
import { repoRoot } from './support/review.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mg-cli-cluster-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A kubeconfig for a server nobody listens on. */
function deadKubeconfig(name: string): string {
  const file = path.join(tmp, `${name}.kubeconfig`);
  fs.writeFileSync(
    file,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'c', cluster: { server: 'http://127.0.0.1:1', 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'u', user: {} }],
      contexts: [{ name: 'ctx', context: { cluster: 'c', user: 'u' } }],
      'current-context': 'ctx',
    }),
  );
  return file;
}

async function cli(args: string[], env: NodeJS.ProcessEnv) {
  const io = memoryIO({ env: { HOME: tmp, ...env } });
  const code = await run(args, io);
  return { code, stdout: io.stdout(), stderr: io.stderr() };
}

describe('audit', () => {
  it("predicts with the peers' webhooks and settings as the webhook does: -default-inject=true meshes a pod without the annotation", async () => {
    const pod = { metadata: { name: 'web-1', namespace: 'meshed' }, spec: { containers: [{ name: 'web', image: 'shop:1' }] } } as V1Pod;
    const ctx = { pods: [pod], namespaces: new Map([['meshed', { 'dynakube.internal.dynatrace.com/instance': 'dk' }]]), activeGateIPs: [], scope: null };
    const mirrorOnly = await analyse(ctx, parseConfig('', {}));
    expect(mirrorOnly.wouldChange.pods).toEqual([]);
    const discovery = discoveryOf([configurationObject(CONSUL) as never]);
    const settings = settingsFromObjects(discovery, [consulInjectorDeployment({ defaultInject: true })]);
    const withPeers = await analyse({ ...ctx, discovery, settings }, parseConfig('', {}));
    const changes = withPeers.wouldChange.pods[0]!.changes;
    expect(changes.map((c) => c.rule)).toContain('consul-activegate-exclusions');
  });

  it('groups replicas of one owner in the table, keeps every pod in JSON', async () => {
    const replicas = ['a', 'b', 'c'].map((x) => ({
      metadata: { name: `istio-cni-node-${x}`, namespace: 'kube-system', labels: { 'k8s-app': 'istio-cni-node' }, ownerReferences: owner('DaemonSet', 'istio-cni-node') },
      spec: { initContainers: [oneAgentInit], containers: [{ name: 'install-cni', image: 'install-cni:1.27' }] },
    }));
    const report = await analyse({ pods: replicas, namespaces: new Map([['kube-system', {}]]), activeGateIPs: [], scope: null }, parseConfig('', {}));
    expect(report.risks).toHaveLength(3);
    expect(report.wouldChange.pods).toHaveLength(3);
    const table = renderAuditTable(report);
    expect(table).toMatch(/\nkube-system\/istio-cni-node-a \(\+2 more\) +DaemonSet\/istio-cni-node +node-agent-guard +oneagent\.dynatrace\.com\/inject: \(unset\) → "false"\n/);
    expect(table).toMatch(/\n {2}kube-system\/istio-cni-node-a \(\+2 more\) +DaemonSet\/istio-cni-node +Istio CNI node agent/);
  });

  it('Consul exclusions: only ActiveGate ClusterIPs of activeGate.clusterIPFamilies count, as in the rule', async () => {
    const ctx = { namespaces: new Map([['payments', {}]]), activeGateIPs: ['10.96.12.7', 'fd00::7'], scope: null };
    const v4 = await analyse({ ...ctx, pods: [ledgerPod] }, parseConfig('', {}));
    expect(v4.risks[0]!.detail).toMatch(/lacks ports 9999 and CIDRs 10\.96\.12\.7\/32$/);
    const both = await analyse({ ...ctx, pods: [ledgerPod] }, parseConfig('activeGate:\n  clusterIPFamilies: [IPv4, IPv6]\n', {}));
    expect(both.risks[0]!.detail).toMatch(/lacks ports 9999 and CIDRs 10\.96\.12\.7\/32,fd00::7\/128$/);
  });

  it('unreachable cluster, no cluster, bad flags: one line, exit 2', async () => {
    const kc = deadKubeconfig('dead');
    const dead = await cli(['audit'], { KUBECONFIG: kc });
    expect(dead).toEqual({ code: 2, stdout: '', stderr: 'mesh-guard: cannot list pods in all namespaces: cannot reach the API server at http://127.0.0.1:1: connection refused\n' });
    const none = await cli(['audit'], {});
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/^mesh-guard: no cluster to talk to: .*\(set KUBECONFIG, pass --kubeconfig, or run in a pod\)\n$/);
    const ctx = await cli(['audit', '--context', 'nope'], { KUBECONFIG: kc });
    expect(ctx).toEqual({ code: 2, stdout: '', stderr: 'mesh-guard: context "nope" is not in the kubeconfig\n' });
    const bad = await cli(['audit', '-o', 'yaml'], { KUBECONFIG: kc });
    expect(bad.stderr).toBe('mesh-guard: audit: -o must be one of table, json, got "yaml"\n');
  });
});

describe('doctor', () => {
  it('as the compiled program, an unreachable cluster is one line, exit 2', async () => {
    const bin = path.join(repoRoot, 'dist/src/cli/main.js');
    const dead = await promisify(execFile)(process.execPath, [bin, 'doctor'], { env: { PATH: process.env.PATH, HOME: tmp, KUBECONFIG: deadKubeconfig('dead2') } }).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
    );
    expect(dead).toEqual({ code: 2, stderr: 'mesh-guard: cannot list mutatingwebhookconfigurations: cannot reach the API server at http://127.0.0.1:1: connection refused\n' });
  });
});
