/**
 * mesh-guard as users run it (dist/src/server/main.js, npm start's entry point) against the real
 * control plane: KUBECONFIG holds a token of the shipped ServiceAccount mesh-guard/mesh-guard, so its
 * cluster view runs on real list/watch with exactly the RBAC that deploy/base grants. The serving
 * certificate is signed by the control plane's CA, which is the webhook's caBundle, so a restart on
 * the same port needs no re-registration.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, spawnServer, waitReady, type ServerProcess } from '../../support/process.js';
import type { ControlPlane } from './controlplane.js';
import { serviceAccountToken, tokenKubeconfig } from './users.js';
import { applyDeployBase } from './webhooks.js';

export interface MeshGuard {
  readonly port: number;
  readonly url: string;
  /** The config file it runs with: rewrite it (writeConfig) as kubelet syncs a changed ConfigMap. */
  readonly configFile: string;
  /** Replaces the config file's content below the server section; the server polls and reloads it. */
  writeConfig(configYaml: string): void;
  /** The running process; replaced by start(). */
  process(): ServerProcess;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** readyz's clusterView state. */
  clusterView(): Promise<string>;
  /** JSON log lines of every process started so far. */
  lines(): Array<Record<string, unknown>>;
}

export interface MeshGuardOptions {
  /** Extra config YAML, appended to the server section written here (top-level keys only). */
  readonly configYaml?: string;
  /**
   * The webhook configuration is already installed (e.g. by `helm install`) and calls this port:
   * deploy/base is not applied, and mesh-guard listens there.
   */
  readonly installedFor?: { port: number };
  /** The serving certificate for 127.0.0.1 and localhost, and its CA; by default issued by the control plane's CA. */
  readonly tls?: { cert: string; key: string; caPem: string };
  /** Another build's server entry point (bench/scale.ts compares builds); dist/src/server/main.js by default. */
  readonly entry?: string;
  /** Extra environment (e.g. npm start's MALLOC_ARENA_MAX). */
  readonly env?: Readonly<Record<string, string>>;
  /** How long start() waits for /readyz (default 30 s). */
  readonly readyTimeoutMs?: number;
}

/** Applies deploy/base (webhook pointed at a free loopback port), then starts mesh-guard there. */
export async function startMeshGuard(cp: ControlPlane, opts: MeshGuardOptions = {}): Promise<MeshGuard> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-guard-e2e-mg-'));
  const port = opts.installedFor?.port ?? (await freePort());
  const url = `https://127.0.0.1:${port}`;
  if (!opts.installedFor) await applyDeployBase(cp.kc, url, cp.caPem);
  const { cert, key, caPem } = opts.tls ?? (await cp.issueServingCert());
  fs.writeFileSync(path.join(dir, 'tls.crt'), cert);
  fs.writeFileSync(path.join(dir, 'tls.key'), key, { mode: 0o600 });
  const configFile = path.join(dir, 'config.yaml');
  const writeConfig = (configYaml: string) =>
    fs.writeFileSync(
      configFile,
      [
        'server:',
        '  host: 127.0.0.1',
        '  shutdownDelayMs: 200',
        '  tls:',
        `    certFile: ${path.join(dir, 'tls.crt')}`,
        `    keyFile: ${path.join(dir, 'tls.key')}`,
        configYaml,
        '',
      ].join('\n'),
    );
  writeConfig(opts.configYaml ?? '');
  const kubeconfig = tokenKubeconfig(cp, await serviceAccountToken(cp, 'mesh-guard', 'mesh-guard'), dir, 'mesh-guard', 'mesh-guard');
  const all: ServerProcess[] = [];
  let current: ServerProcess | undefined;
  const runDir = process.env.MESH_GUARD_E2E_RUN_DIR;

  const mg: MeshGuard = {
    port,
    url,
    configFile,
    writeConfig,
    process: () => current!,
    async start() {
      const p = await spawnServer({ ...opts.env, PORT: String(port), CONFIG_FILE: configFile, KUBECONFIG: kubeconfig }, opts.entry);
      fs.writeFileSync(path.join(p.dir, 'ca.crt'), caPem);
      if (runDir && p.child.pid) fs.writeFileSync(path.join(runDir, `mesh-guard-${p.child.pid}.pid`), String(p.child.pid));
      void p.exited.then(() => runDir && fs.rmSync(path.join(runDir, `mesh-guard-${p.child.pid}.pid`), { force: true }));
      all.push(p);
      current = p;
      await waitReady(p, opts.readyTimeoutMs ?? 30_000);
    },
    async stop() {
      const p = current;
      if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
      p.kill('SIGTERM');
      const timer = setTimeout(() => p.kill('SIGKILL'), 10_000);
      await p.exited;
      clearTimeout(timer);
    },
    async clusterView() {
      const res = await current!.request('GET', '/readyz');
      return (JSON.parse(res.body) as { clusterView: string }).clusterView;
    },
    lines: () => all.flatMap((p) => p.lines),
  };
  await mg.start();
  return mg;
}
