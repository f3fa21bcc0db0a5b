/**
 * `mesh-guard preview`: goldens per workload kind, the preview ≡ /mutate property over real
 * HTTPS (our fixtures and Istio's injection corpus), output formats, exit codes and errors.
 * Regenerate the goldens with UPDATE_GOLDEN=1 and review the diff by eye.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { memoryIO } from '../src/cli/common.js';
import { run } from '../src/cli/main.js';
import { namespaceResolver, parseManifests, podFromTemplate, runPreview, TEMPLATE_PATHS, getIn, type PreviewObject } from '../src/cli/preview.js';
import { staticClusterView } from '../src/cluster/view.js';
import { parseConfig } from '../src/config/load.js';
import { WARN_KEPT_NATIVE } from '../src/rules/istio-native-sidecar-guard.js';
import { ISTIO_INJECT_FILES, corpusFile, skipWithout } from './support/corpus.js';
import { istioInjectorConfigMap, istioMeshConfigMap } from './support/peer-settings.js';
import { ISTIO_CANARY } from './support/peer-webhooks.js';
import { applyOps, decodePatch, repoRoot, review, type Op, type ReviewResponse } from './support/review.js';
import { startTestServer, type TestServer } from './support/server.js';

const golden = path.join(repoRoot, 'test/cli-golden');
const input = path.join(golden, 'workloads.yaml');
const AG_IP = '10.96.12.7';
const update = process.env.UPDATE_GOLDEN === '1';

async function cli(args: string[], stdin?: string) {
  const io = memoryIO({ stdin });
  const code = await run(args, io);
  return { code, stdout: io.stdout(), stderr: io.stderr() };
}

function expectGolden(name: string, actual: string): void {
  const file = path.join(golden, name);
  if (update || !fs.existsSync(file)) fs.writeFileSync(file, actual);
  expect(actual, `golden ${name} (UPDATE_GOLDEN=1 regenerates)`).toBe(fs.readFileSync(file, 'utf8'));
}

describe('preview goldens', () => {
  const args = ['preview', '-f', input, '--activegate-ip', AG_IP];

  it('table', async () => {
    const r = await cli(args);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expectGolden('workloads.table.txt', r.stdout);
  });

  it('json', async () => {
    const r = await cli([...args, '-o', 'json']);
    expect(r.code).toBe(0);
    expectGolden('workloads.json', r.stdout);
  });

  it('yaml', async () => {
    const r = await cli([...args, '-o', 'yaml']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^mesh-guard preview: 5 objects changed/);
    expectGolden('workloads.out.yaml', r.stdout);
  });
});

describe('preview output', () => {
  it('reports every supported kind against the workload, with the pod template path', async () => {
    const r = await cli(['preview', '-f', input, '--activegate-ip', AG_IP, '-o', 'json']);
    const out = JSON.parse(r.stdout) as { objects: PreviewObject[]; skipped: Array<{ kind: string; reason: string }>; namespaces: string[]; summary: Record<string, number> };
    const byKind = Object.fromEntries(out.objects.map((o) => [`${o.kind}/${o.name}`, o]));
    expect(Object.keys(byKind).sort()).toEqual(
      ['CronJob/report', 'DaemonSet/dynatrace-oneagent-csi-driver', 'DaemonSet/istio-cni-node', 'Deployment/web', 'Job/migrate', 'Pod/debug', 'Pod/toolbox', 'ReplicaSet/worker', 'StatefulSet/ledger'].sort(),
    );
    expect(byKind['CronJob/report']!.podTemplatePath).toBe('/spec/jobTemplate/spec/template');
    expect(byKind['Deployment/web']!.podTemplatePath).toBe('/spec/template');
    expect(byKind['Pod/debug']!.podTemplatePath).toBe('');
    expect(byKind['Pod/debug']!.outcome).toBe('opted-out');
    expect(byKind['Job/migrate']!.patch).toEqual([]);
    expect(byKind['Job/migrate']!.notes[0]!.note).toMatch(/left alone/);
    expect(out.skipped).toEqual([{ document: 11, kind: 'Service', namespace: 'shop', name: 'web', reason: 'kind Service has no pod template' }]);
    expect(out.namespaces).toEqual(['shop', 'payments']);
    expect(out.summary).toEqual({ objects: 9, changed: 5, unchanged: 4, skipped: 1 });
    // The CronJob's pods run to completion: they keep native sidecars, and kubectl would show why.
    expect(byKind['CronJob/report']!.manifestPatch).toEqual([]);
    expect(byKind['CronJob/report']!.warnings).toEqual([WARN_KEPT_NATIVE]);
    expect(byKind['Deployment/web']!.warnings).toEqual([]);
  });

  it("predicts with the peers' objects in the input: webhook configurations and the settings they point at", async () => {
    const DT = { 'metrics.dynatrace.com/scrape': 'true', 'metrics.dynatrace.com/port': '8080' };
    const deployment = (namespace: string) => ({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'web', namespace },
      spec: { selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' }, annotations: DT }, spec: { containers: [{ name: 'web', image: 'shop:1' }] } } },
    });
    const docs = [
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'stale', labels: { 'istio-injection': 'enabled' } } },
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'canary', labels: { 'istio.io/rev': 'canary' } } },
      parse(ISTIO_CANARY),
      istioInjectorConfigMap({ revision: 'canary' }),
      istioMeshConfigMap('canary', { defaultConfig: '  statusPort: 15030' }),
      deployment('stale'),
      deployment('canary'),
    ];
    const text = docs.map((d) => stringify(d)).join('---\n');
    const result = await runPreview(parseManifests(text, 'peers.yaml'), { config: parseConfig('', {}), namespaces: { flagLabels: {} }, activeGateIPs: [] });
    expect(result.peerObjects).toEqual(['MutatingWebhookConfiguration istio-sidecar-injector-canary', 'ConfigMap istio-system/istio-sidecar-injector-canary', 'ConfigMap istio-system/istio-canary']);
    expect(result.skipped).toEqual([]);
    const [stale, canary] = result.objects;
    expect(stale!.patch).toEqual([]);
    expect(JSON.stringify(stale!.notes)).toContain('no Istio webhook sees the pod');
    expect(canary!.changes).toContainEqual(expect.objectContaining({ key: 'metrics.dynatrace.com/port', new: '15030' }));
    // Without the peers' objects the mirrors answer: the stale label counts and the port is istio.statusPort.
    const mirrors = await runPreview(parseManifests(docs.slice(0, 2).concat(docs.slice(5)).map((d) => stringify(d)).join('---\n'), 'app.yaml'), {
      config: parseConfig('', {}),
      namespaces: { flagLabels: {} },
      activeGateIPs: [],
    });
    expect(mirrors.objects.map((o) => o.changes.find((c) => c.key === 'metrics.dynatrace.com/port')?.new)).toEqual(['15020', '15020']);
  });

  it('manifestPatch applies to the manifest and gives the same template as the pod patch gives the pod', async () => {
    const parsed = parseManifests(fs.readFileSync(input, 'utf8'), input);
    const result = await runPreview(parsed, { config: parseConfig('', {}), namespaces: { flagLabels: {} }, activeGateIPs: [AG_IP] });
    for (const o of result.objects.filter((x) => x.patch.length)) {
      const manifest = parsed.objects.find((x) => x.doc === o.document)!.object;
      const patchedManifest = applyOps(manifest, o.manifestPatch as Op[]);
      const tpl = TEMPLATE_PATHS[o.kind]!;
      const pod = o.kind === 'Pod' ? manifest : podFromTemplate(o.kind, o.name, o.namespace, getIn(manifest, tpl) as Record<string, unknown>);
      const patchedPod = applyOps(pod, o.patch as Op[]) as { metadata: Record<string, unknown>; spec: unknown };
      const patchedTpl = (tpl.length ? getIn(patchedManifest, tpl) : patchedManifest) as { metadata: Record<string, unknown>; spec: unknown };
      expect(patchedTpl.metadata.annotations ?? {}, `${o.kind}/${o.name}`).toEqual(patchedPod.metadata.annotations ?? {});
      expect(patchedTpl.metadata.labels ?? {}).toEqual(patchedPod.metadata.labels ?? {});
      expect(patchedTpl.spec).toEqual(patchedPod.spec);
    }
  });

  it('-o yaml keeps comments and untouched documents, and previewing its output changes nothing', async () => {
    const first = await cli(['preview', '-f', input, '--activegate-ip', AG_IP, '-o', 'yaml']);
    expect(first.stdout).toContain('# Opted out: left alone.');
    expect(first.stdout).toContain('  schedule: "0 3 * * *"');
    expect(parseAllDocuments(first.stdout).length).toBe(12);
    const second = await cli(['preview', '-f', '-', '--activegate-ip', AG_IP, '--fail-on-change', '-o', 'json'], first.stdout);
    expect(second.code).toBe(0);
    expect(JSON.parse(second.stdout).summary.changed).toBe(0);
  });

  it('a rule in dry-run mode shows its change but gives no patch; a comment-only document survives -o yaml', async () => {
    const cfg = path.join(os.tmpdir(), `mg-dry-${process.pid}.yaml`);
    fs.writeFileSync(cfg, 'rules:\n  node-agent-guard: dry-run\n');
    try {
      const r = await cli(['preview', '-f', input, '--config', cfg, '-o', 'json']);
      const cni = (JSON.parse(r.stdout) as { objects: PreviewObject[] }).objects.find((o) => o.name === 'istio-cni-node')!;
      expect(cni.patch).toEqual([]);
      expect(cni.changes).toMatchObject([{ rule: 'node-agent-guard', mode: 'dry-run', key: 'oneagent.dynatrace.com/inject', old: null, new: 'false' }]);
      expect((await cli(['preview', '-f', input, '--config', cfg])).stdout).toMatch(/DaemonSet kube-system\/istio-cni-node +node-agent-guard \(dry-run\) +oneagent\.dynatrace\.com\/inject/);
    } finally {
      fs.rmSync(cfg, { force: true });
    }
    const y = await cli(['preview', '-f', '-', '-o', 'yaml'], '# Copyright header\n---\nkind: Pod\nmetadata: {name: a}\n---\n');
    expect(y.stdout).toBe('# Copyright header\n---\nkind: Pod\nmetadata: {name: a}\n');
  });

  it('--fail-on-change exits 1 when something would change, 0 otherwise', async () => {
    expect((await cli(['preview', '-f', input, '--fail-on-change'])).code).toBe(1);
    const quiet = 'apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: x}]}\n';
    expect((await cli(['preview', '-f', '-', '--fail-on-change'], quiet)).code).toBe(0);
  });

  it('takes namespace context from flags, a List and JSON input', async () => {
    const list = {
      apiVersion: 'v1',
      kind: 'List',
      items: [{ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'api' }, spec: { template: { metadata: { labels: { app: 'api' } }, spec: { containers: [{ name: 'api', image: 'x' }] } } } }],
    };
    const flags = ['-n', 'shop', '--namespace-label', 'istio-injection=enabled', '--namespace-label', 'dynakube.internal.dynatrace.com/instance=dk'];
    const r = await cli(['preview', '-f', '-', ...flags, '-o', 'json'], JSON.stringify(list));
    const out = JSON.parse(r.stdout) as { objects: PreviewObject[] };
    expect(out.objects[0]).toMatchObject({ kind: 'Deployment', namespace: 'shop', name: 'api' });
    const added = { 'sidecar.istio.io/nativeSidecar': 'false', 'proxy.istio.io/config': 'holdApplicationUntilProxyStarts: true' };
    expect(out.objects[0]!.patch).toEqual([{ op: 'add', path: '/metadata/annotations', value: added }]);
    // Paths from the object's own root, also for an item of a List.
    expect(out.objects[0]!.manifestPatch).toEqual([{ op: 'add', path: '/spec/template/metadata/annotations', value: added }]);
    // -o yaml of JSON input is YAML of the mutated value.
    const y = await cli(['preview', '-f', '-', ...flags, '-o', 'yaml'], JSON.stringify(list));
    expect(y.stdout).toContain('sidecar.istio.io/nativeSidecar: "false"');
    // Without labels the namespace is unknown: a pod that asks for a sidecar is told why nothing happens.
    const asking = structuredClone(list);
    asking.items[0]!.spec.template.metadata.labels = { app: 'api', 'sidecar.istio.io/inject': 'true' } as { app: string };
    const unknown = await cli(['preview', '-f', '-'], JSON.stringify(asking));
    expect(unknown.stdout).toMatch(/namespace labels unknown \(no labels for namespace "default"/);
    expect(unknown.stdout).toMatch(/No changes/);
  });

  it('namespaceResolver: input Namespace objects, flag labels on top, unknown otherwise', () => {
    const parsed = parseManifests('kind: Namespace\nmetadata: {name: a, labels: {x: "1"}}\n', 't');
    const withNs = namespaceResolver(parsed.objects, { flagNamespace: 'a', flagLabels: { y: '2' } });
    expect(withNs('a')).toEqual({ state: 'known', labels: { x: '1', y: '2', 'kubernetes.io/metadata.name': 'a' } });
    expect(withNs('b').state).toBe('unknown');
    const noNs = namespaceResolver(parsed.objects, { flagLabels: { y: '2' } });
    expect(noNs('b')).toEqual({ state: 'known', labels: { y: '2', 'kubernetes.io/metadata.name': 'b' } });
    expect(noNs('a')).toEqual({ state: 'known', labels: { x: '1', y: '2', 'kubernetes.io/metadata.name': 'a' } });
    expect(namespaceResolver([], { flagLabels: {} })('a').state).toBe('unknown');
  });
});

describe('preview errors: one line on stderr, exit 2', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mg-cli-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it.each([
    [['preview'], /^mesh-guard: preview: -f FILE \(or -f - for stdin\) is required/],
    [['preview', '-f', '/nonexistent/x.yaml'], /^mesh-guard: preview: cannot read \/nonexistent\/x.yaml: no such file\n$/],
    [['preview', '-f', '-', '--bogus'], /^mesh-guard: preview: Unknown option '--bogus'/],
    [['preview', '-f', '-', '-o', 'xml'], /^mesh-guard: preview: -o must be one of table, json, yaml, got "xml"\n$/],
    [['preview', '-f', '-', '--namespace-label', 'no-equals'], /^mesh-guard: preview: --namespace-label "no-equals" is not a valid label KEY=VALUE\n$/],
    [['preview', '-f', '-', '--config', '/nonexistent/c.yaml'], /^mesh-guard: cannot read config file \/nonexistent\/c.yaml: no such file\n$/],
    [['frobnicate'], /^mesh-guard: unknown command "frobnicate"/],
  ])('%j', async (args, message) => {
    const r = await cli(args as string[], '');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stdout).toBe('');
  });

  it('bad YAML names the line; a bad config names the key', async () => {
    const bad = await cli(['preview', '-f', '-'], 'kind: Pod\nmetadata: [\nspec: x');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^mesh-guard: preview: stdin: not valid YAML \(line \d+, column \d+\): /);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    const cfg = path.join(tmp, 'c.yaml');
    fs.writeFileSync(cfg, 'istio:\n  statusPort: 99999\n');
    const r = await cli(['preview', '-f', '-', '--config', cfg], 'kind: Pod\n');
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('mesh-guard: config: istio.statusPort: expected an integer from 1 to 65535, got number 99999\n');
  });

  it('--help on every command, with examples, quoted verbatim in docs/cli.md', async () => {
    const docs = fs.readFileSync(path.join(repoRoot, 'docs/cli.md'), 'utf8');
    for (const c of ['preview', 'audit', 'doctor']) {
      const r = await cli([c, '--help']);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^Usage: mesh-guard ${c}`));
      expect(r.stdout).toMatch(/Examples:\n {2}mesh-guard /);
      expect(docs, `docs/cli.md has the current ${c} --help`).toContain(r.stdout.trimEnd());
    }
    expect((await cli(['--help'])).stdout).toMatch(/Commands:/);
  });
});

describe('preview ≡ /mutate (real HTTPS server, same namespace labels)', () => {
  let server: TestServer;
  const labels = { 'istio-injection': 'enabled', 'dynakube.internal.dynatrace.com/instance': 'dynakube' };
  const cases: Array<{ file: string; text: string }> = [];

  beforeAll(async () => {
    cases.push({ file: 'workloads.yaml', text: fs.readFileSync(input, 'utf8') });
    // Istio's injection fixtures (test/support/corpus.ts says where they are found).
    for (const f of ISTIO_INJECT_FILES) {
      const file = corpusFile(`istio-inject/${f}`);
      if (file) cases.push({ file: f, text: fs.readFileSync(file, 'utf8') });
    }
  });

  it.skipIf(skipWithout('istio-inject/hello.yaml'))('gives the patches /mutate gives, for every pod and pod template', async () => {
    const config = parseConfig('', {});
    let compared = 0;
    let patched = 0;
    const namespaces = new Map<string, Record<string, string>>();
    const results: Array<{ file: string; o: PreviewObject; pod: unknown }> = [];
    for (const c of cases) {
      let parsed;
      try {
        parsed = parseManifests(c.text, c.file);
      } catch {
        continue; // a corpus file that is not plain YAML for us; nothing to compare
      }
      const lookup = namespaceResolver(parsed.objects, { flagLabels: labels });
      const res = await runPreview(parsed, { config, namespaces: { flagLabels: labels }, activeGateIPs: [AG_IP] });
      res.objects.forEach((o, i) => {
        const l = lookup(o.namespace);
        if (l.state === 'known') namespaces.set(o.namespace, { ...l.labels });
        results.push({ file: c.file, o, pod: res.admittedPods[i] });
      });
    }
    server = await startTestServer({ cluster: staticClusterView(Object.fromEntries(namespaces), [AG_IP]), config });
    try {
      for (const { file, o, pod } of results) {
        const res = await server.mutate(review(pod, { namespace: o.namespace })).expect(200);
        const ops = decodePatch(res.body.response as ReviewResponse);
        expect(o.patch, `${file}: ${o.kind}/${o.name}`).toEqual(ops);
        compared++;
        if (ops.length) patched++;
      }
    } finally {
      await server.close();
    }
    expect(compared).toBeGreaterThan(40);
    expect(patched).toBeGreaterThan(10);
  });
});

describe('compiled CLI (dist/src/cli/main.js)', () => {
  const exec = promisify(execFile);
  const bin = path.join(repoRoot, 'dist/src/cli/main.js');

  it('has a shebang and runs preview as a program', async () => {
    expect(fs.readFileSync(bin, 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
    const ok = await exec(process.execPath, [bin, 'preview', '-f', input, '-o', 'json', '--activegate-ip', AG_IP]);
    expect(JSON.parse(ok.stdout).summary).toEqual({ objects: 9, changed: 5, unchanged: 4, skipped: 1 });
    const fail = await exec(process.execPath, [bin, 'preview', '-f', input, '--fail-on-change']).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
    );
    expect(fail.code).toBe(1);
    const bad = await exec(process.execPath, [bin, 'preview', '-f', '/nonexistent.yaml']).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
    );
    expect(bad).toEqual({ code: 2, stderr: 'mesh-guard: preview: cannot read /nonexistent.yaml: no such file\n' });
  });
});
