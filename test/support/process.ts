/** Runs the compiled server (dist/src/server/main.js) as a child process, as `npm start` does. */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { repoRoot } from './repo-root.js';

export interface ServerProcess {
  readonly child: ChildProcess;
  readonly port: number;
  readonly dir: string;
  readonly ca: () => string;
  /** stdout lines parsed as JSON (non-JSON lines are kept as { raw }). */
  readonly lines: Array<Record<string, unknown>>;
  readonly stderr: () => string;
  readonly exited: Promise<number | null>;
  request(method: string, urlPath: string, body?: string): Promise<{ status: number; body: string }>;
  kill(signal?: NodeJS.Signals): void;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

export async function spawnServer(env: NodeJS.ProcessEnv = {}, entry = path.join(repoRoot, 'dist/src/server/main.js'), cwd = repoRoot): Promise<ServerProcess> {
  // A caller that sets PORT keeps it across restarts (the end-to-end suite's webhook url names it).
  const port = env.PORT ? Number(env.PORT) : await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-guard-proc-'));
  const configFile = path.join(dir, 'config.yaml');
  if (!env.CONFIG_FILE) fs.writeFileSync(configFile, `server:\n  tls:\n    selfSignedDir: ${dir}\n  shutdownDelayMs: 200\n`);
  const child = spawn(process.execPath, [entry], {
    cwd,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, PORT: String(port), CONFIG_FILE: configFile, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Array<Record<string, unknown>> = [];
  let stderr = '';
  let partial = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    partial += chunk;
    const parts = partial.split('\n');
    partial = parts.pop()!;
    for (const l of parts) {
      if (!l.trim()) continue;
      try {
        lines.push(JSON.parse(l));
      } catch {
        lines.push({ raw: l });
      }
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const ca = () => fs.readFileSync(path.join(dir, 'ca.crt'), 'utf8');
  return {
    child,
    port,
    dir,
    ca,
    lines,
    stderr: () => stderr,
    exited,
    request: (method, urlPath, body) => httpsRequest({ port, ca: ca(), method, path: urlPath, body }),
    kill: (signal = 'SIGTERM') => child.kill(signal),
  };
}

/** One HTTPS request on a fresh connection; a body is sent as application/json. */
export function httpsRequest(opts: { port: number; ca: string; method: string; path: string; body?: string | Buffer }): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port: opts.port,
        path: opts.path,
        method: opts.method,
        ca: opts.ca,
        servername: 'localhost',
        headers: opts.body !== undefined ? { 'content-type': 'application/json' } : {},
        agent: false,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode!, body: text }));
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Polls /readyz until 200. */
export async function waitReady(p: ServerProcess, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      if ((await p.request('GET', '/readyz')).status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > until) throw new Error(`server not ready in time; stderr: ${p.stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
