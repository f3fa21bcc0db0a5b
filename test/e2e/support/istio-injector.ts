/**
 * Istio's real sidecar injector (test/e2e/istio-injector, built into .build/bin by test/e2e/build.sh)
 * as a process on a free loopback port, serving HTTPS at `${url}/inject`.
 *
 * It renders the istio-discovery chart of the pinned istio.io/istio at start, from that module's
 * manifests/ in the Go module cache (located with `go mod download -json`, as the unit suite's corpus
 * is: test/support/corpus.ts). Every AdmissionReview request it is shown is appended to a JSON-lines
 * file; requests() reads them back, so a test can assert what Istio saw.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { istioModuleDir, pinnedIstioVersion } from '../../support/corpus.js';
import { repoRoot } from '../../support/review.js';
import { loopbackCert } from '../../support/tls.js';

export const ISTIO_INJECTOR_BIN = path.join(repoRoot, '.build/bin/istio-injector');

export interface IstioInjectorOptions {
  /** ENABLE_NATIVE_SIDECARS (default true, as Istio 1.27+ decides on kubelets >= 1.33). */
  nativeSidecars?: boolean;
  /** Serving certificate and key (PEM) with its CA; default: a fresh self-signed one for 127.0.0.1. */
  tls?: { cert: string; key: string; ca: string };
}

/** The `request` of an AdmissionReview as the injector received it. */
export interface InjectorRequest {
  uid: string;
  namespace?: string;
  operation: string;
  dryRun?: boolean;
  object: Record<string, unknown>;
  [k: string]: unknown;
}

export interface IstioInjector {
  /** https://127.0.0.1:<port>; the webhook path is /inject (as istiod serves it). */
  readonly url: string;
  /** PEM of the CA that signed the serving certificate: the caBundle to register. */
  readonly caPem: string;
  /** Every request received so far, in order. */
  requests(): InjectorRequest[];
  /** Stops the process (SIGTERM, then SIGKILL) and removes its files. */
  stop(): Promise<void>;
}

export async function startIstioInjector(opts: IstioInjectorOptions = {}): Promise<IstioInjector> {
  if (!fs.existsSync(ISTIO_INJECTOR_BIN)) throw new Error(`${ISTIO_INJECTOR_BIN} is missing: run npm run build:go`);
  const moduleDir = istioModuleDir({ offline: false });
  if (!moduleDir) throw new Error(`istio.io/istio@${pinnedIstioVersion()} not found with go mod download -json`);
  const own = await loopbackCert();
  const tls = opts.tls ?? { ...own, ca: own.cert };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'istio-injector-'));
  const files = { cert: path.join(dir, 'tls.crt'), key: path.join(dir, 'tls.key'), record: path.join(dir, 'requests.jsonl') };
  fs.writeFileSync(files.cert, tls.cert);
  fs.writeFileSync(files.key, tls.key, { mode: 0o600 });

  const child = spawn(
    ISTIO_INJECTOR_BIN,
    [
      '-listen=127.0.0.1:0',
      `-tls-cert=${files.cert}`,
      `-tls-key=${files.key}`,
      `-manifests=${path.join(moduleDir, 'manifests')}`,
      `-record=${files.record}`,
      `-native-sidecars=${opts.nativeSidecars ?? true}`,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  // The e2e global teardown kills what is listed in its run directory, so a failed test leaves nothing.
  const runDir = process.env.MESH_GUARD_E2E_RUN_DIR;
  const pidFile = runDir && child.pid ? path.join(runDir, `istio-injector-${child.pid}.pid`) : undefined;
  if (pidFile) fs.writeFileSync(pidFile, String(child.pid));
  child.once('exit', () => pidFile && fs.rmSync(pidFile, { force: true }));
  let url: string;
  try {
    url = await listening(child);
  } catch (err) {
    await stopProcess(child);
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    url,
    caPem: tls.ca,
    requests: () =>
      fs.existsSync(files.record)
        ? fs.readFileSync(files.record, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as InjectorRequest)
        : [],
    stop: async () => {
      await stopProcess(child);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Resolves with the URL from the injector's one stdout line; rejects with its stderr if it exits first. */
function listening(child: ChildProcess, timeoutMs = 120_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => reject(new Error(`istio-injector did not listen within ${timeoutMs} ms:\n${stderr}`)), timeoutMs);
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr = (stderr + c).slice(-8192)));
    let found = false;
    child.stdout!.setEncoding('utf8').on('data', (c: string) => {
      if (found) return; // drained, not kept
      stdout += c;
      const m = /listening on (https:\/\/\S+)\n/.exec(stdout);
      if (m) {
        found = true;
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`istio-injector exited (${code ?? signal}) before listening:\n${stderr}`));
    });
  });
}

function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), 5_000);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
