/**
 * Starts the real server in-process on an ephemeral port over HTTPS, with logs captured
 * in memory so tests can assert on the admission log line.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import request from 'supertest';
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { offlineClusterView, type ClusterView } from '../../src/cluster/view.js';
import { createLogger } from '../../src/server/logger.js';
import { startServer, type RunningServer } from '../../src/server/server.js';
import type { Rule } from '../../src/rules/types.js';

export interface TestServer {
  readonly server: RunningServer;
  readonly url: string;
  readonly ca: string;
  /** Parsed JSON log lines, in order. */
  readonly logs: Array<Record<string, unknown>>;
  /** POST a JSON body (object or raw string) to /mutate. */
  mutate(body: unknown): request.Test;
  get(path: string): request.Test;
  close(): Promise<void>;
}

export interface TestServerOptions {
  /** YAML text of the config file (env overrides are not applied). */
  configYaml?: string;
  config?: Config;
  cluster?: ClusterView;
  rules?: readonly Rule[];
  configFile?: string;
  /** Drain delay on shutdown; 0 unless a test exercises draining. */
  shutdownDelayMs?: number;
}

export async function startTestServer(opts: TestServerOptions = {}): Promise<TestServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-guard-test-'));
  const base = opts.config ?? parseConfig(opts.configYaml ?? '', {});
  const config: Config = {
    ...base,
    server: { ...base.server, port: 0, host: '127.0.0.1', shutdownDelayMs: opts.shutdownDelayMs ?? 0, tls: { ...base.server.tls, selfSignedDir: base.server.tls.selfSignedDir || dir } },
  };
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) if (line.trim()) logs.push(JSON.parse(line));
      cb();
    },
  });
  const log = createLogger(config.logLevel, sink);
  const server = await startServer({
    config,
    log,
    cluster: opts.cluster ?? offlineClusterView,
    rules: opts.rules,
    // Never the test process's env: a cluster view comes only from `cluster`.
    env: {},
    configFile: opts.configFile,
    configPollMs: 50,
  });
  await waitFor(() => server.app.phase === 'ready');
  const ca = fs.readFileSync(server.tls.caFile ?? server.tls.certFile!, 'utf8');
  const url = `https://localhost:${server.port}`;
  return {
    server,
    url,
    ca,
    logs,
    mutate: (body) => {
      const req = request(url).post('/mutate').ca(ca).set('content-type', 'application/json');
      return req.send(typeof body === 'string' ? body : JSON.stringify(body));
    },
    get: (p) => request(url).get(p).ca(ca),
    close: async () => {
      await server.shutdown();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function waitFor(check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
