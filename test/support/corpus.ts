/**
 * Where the tests find Istio's fixtures, read at run time and never copied into the project.
 *
 * `istio-inject/<name>` is a file of istio/istio `pkg/kube/inject/testdata/inject/`. Those ship inside
 * the istio.io/istio module, so they come first from the Go module cache, at the version the end-to-end
 * Istio injector pins (test/e2e/istio-injector/go.mod, so the version is written once), and only then
 * from ../shared/corpus. Everything else (`istio-inject/classic-1.26.8/`, from tag 1.26.8, and the
 * hand-written node-agent pods of `istio-charts/`) exists only in ../shared/corpus.
 *
 * The module is looked up with `go mod download -json` and GOPROXY=off: the cache is read, nothing is
 * downloaded behind the back of `npm test`, and a machine without Go falls back to ../shared silently.
 *
 * A test that needs a missing file is skipped (test/support/corpus-setup.ts prints the one line saying
 * why); under CI=true it runs and fails instead.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** ../shared beside the repo (CI has it there). */
export const sharedDir = path.resolve(repoRoot, '../shared');
const sharedCorpus = path.join(sharedDir, 'corpus');
const injectorModule = path.join(repoRoot, 'test/e2e/istio-injector');
const ISTIO_INJECT = 'istio-inject/';

/**
 * The top-level files of ../shared/corpus/istio-inject (its README: istio/istio master 86c9f01, 2026-08-22).
 * The module at the pinned version has each under the same name; its `.injected` outputs differ only by
 * the GOMAXPROCS env of istio-proxy (added upstream a few days later). test/corpus.test.ts checks this list
 * against both places when both are present.
 */
export const ISTIO_INJECT_FILES: readonly string[] = [
  'custom-template.iop.yaml', 'custom-template.yaml', 'custom-template.yaml.injected',
  'daemonset.yaml', 'daemonset.yaml.injected', 'gateway.yaml', 'gateway.yaml.injected',
  'hello-host-network-with-ns.yaml', 'hello-host-network-with-ns.yaml.injected',
  'hello-host-network.yaml', 'hello-host-network.yaml.injected', 'hello-ignore.yaml', 'hello-ignore.yaml.injected',
  'hello-multiport-metrics.yaml', 'hello-multiport-metrics.yaml.injected', 'hello-old-version.yaml.injected',
  'hello-probes.yaml', 'hello-probes.yaml.injected', 'hello.yaml', 'hello.yaml.cni.injected', 'hello.yaml.injected',
  'init-no-intercept-no-native-sidecar.yaml', 'init-no-intercept-no-native-sidecar.yaml.injected',
  'merge-probers.yaml', 'merge-probers.yaml.injected', 'multi-init.yaml', 'multi-init.yaml.injected',
  'native-sidecar-old-version.yaml.injected', 'native-sidecar-opt-in.yaml', 'native-sidecar-opt-in.yaml.injected',
  'native-sidecar-opt-out.yaml', 'native-sidecar-opt-out.yaml.injected', 'native-sidecar.yaml',
  'native-sidecar.yaml.injected', 'pod-old-version.yaml.injected', 'pod.yaml', 'pod.yaml.injected',
  'prometheus-scrape.yaml', 'prometheus-scrape.yaml.injected', 'prometheus-scrape2.yaml',
  'prometheus-scrape2.yaml.injected', 'status_annotations.yaml', 'status_annotations.yaml.injected',
  'traffic-annotations-bad-excludeinboundports.yaml', 'traffic-annotations-bad-excludeipranges.yaml',
  'traffic-annotations-bad-excludeoutboundports.yaml', 'traffic-annotations-bad-includeinboundports.yaml',
  'traffic-annotations-bad-includeipranges.yaml', 'traffic-annotations-empty-includes.yaml',
  'traffic-annotations-empty-includes.yaml.injected', 'traffic-annotations-wildcards.yaml',
  'traffic-annotations-wildcards.yaml.injected', 'traffic-annotations.yaml', 'traffic-annotations.yaml.injected',
  'traffic-params.yaml', 'traffic-params.yaml.injected',
];
const fromModule = new Set(ISTIO_INJECT_FILES);

/** The istio.io/istio version test/e2e/istio-injector/go.mod requires. */
export function pinnedIstioVersion(): string {
  const goMod = fs.readFileSync(path.join(injectorModule, 'go.mod'), 'utf8');
  const m = /^\s*(?:require\s+)?istio\.io\/istio\s+(v\S+)/m.exec(goMod);
  if (!m) throw new Error('test/e2e/istio-injector/go.mod does not require istio.io/istio');
  return m[1]!;
}

/**
 * The root of the pinned istio.io/istio in the Go module cache, from `go mod download -json` run in the
 * injector's module. offline (GOPROXY=off) only reads the cache; otherwise go may download it. Undefined
 * where go is missing or the module cannot be had.
 */
export function istioModuleDir(opts: { offline: boolean }): string | undefined {
  try {
    const out = execFileSync('go', ['mod', 'download', '-json', `istio.io/istio@${pinnedIstioVersion()}`], {
      cwd: injectorModule,
      env: opts.offline ? { ...process.env, GOPROXY: 'off' } : process.env,
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: opts.offline ? 30_000 : 600_000,
    });
    const dir = (JSON.parse(out.toString('utf8')) as { Dir?: string }).Dir;
    return dir && fs.existsSync(dir) ? dir : undefined;
  } catch {
    return undefined; // no go, or (offline) not in the cache: go mod download exits non-zero
  }
}

let testdataDir: string | null | undefined;
/** pkg/kube/inject/testdata/inject of the pinned istio.io/istio, if the module cache has it. */
export function moduleTestdata(): string | undefined {
  if (testdataDir === undefined) {
    const dir = istioModuleDir({ offline: true });
    const testdata = dir && path.join(dir, 'pkg/kube/inject/testdata/inject');
    testdataDir = testdata && fs.existsSync(testdata) ? testdata : null;
  }
  return testdataDir ?? undefined;
}

/** The file for a corpus path such as `istio-inject/hello.yaml`, or undefined where neither place has it. */
export function corpusFile(relative: string): string | undefined {
  const name = relative.startsWith(ISTIO_INJECT) ? relative.slice(ISTIO_INJECT.length) : undefined;
  const testdata = name !== undefined && fromModule.has(name) ? moduleTestdata() : undefined;
  for (const file of [testdata && path.join(testdata, name!), path.join(sharedCorpus, relative)]) {
    if (file && fs.existsSync(file)) return file;
  }
  return undefined;
}

/** Under CI a missing corpus is a failure, never a skip. */
export const corpusRequired = /^(true|1)$/i.test(process.env.CI ?? '');

/** True when a test needing these corpus files is to be skipped: one is missing and this is not CI. */
export function skipWithout(...relatives: string[]): boolean {
  return !corpusRequired && relatives.some((r) => corpusFile(r) === undefined);
}

/** Reads a corpus file; a missing one is an error that names both places looked in. */
export function readCorpus(relative: string): string {
  const file = corpusFile(relative);
  if (!file) {
    throw new Error(`corpus file ${relative} not found in the Go module cache (istio.io/istio@${pinnedIstioVersion()}) nor in ${sharedCorpus}`);
  }
  return fs.readFileSync(file, 'utf8');
}

/** Which corpus parts are missing, for the one line corpus-setup.ts prints; empty when all are found. */
export function missingCorpus(): string[] {
  const missing: string[] = [];
  if (!corpusFile('istio-inject/hello.yaml')) missing.push('istio-inject');
  if (!corpusFile('istio-inject/classic-1.26.8/hello.yaml')) missing.push('istio-inject/classic-1.26.8');
  if (!corpusFile('istio-charts/examples/istio-cni-node-pod.admission.yaml')) missing.push('istio-charts');
  return missing;
}
