/**
 * Wires config, TLS, cluster view, rules and the HTTP app into a running server, and
 * owns the lifecycle: ready after the first cluster sync (bounded), and on shutdown
 * /readyz turns 503 at once, requests are still served for the drain delay, then idle
 * keep-alive connections close and in-flight requests finish.
 */
import type { AddressInfo } from 'node:net';
import { offlineClusterView, type ClusterView } from '../cluster/view.js';
import type { Config } from '../config/schema.js';
import { watchConfig, type ConfigWatcher } from '../config/load.js';
import { allRules } from '../rules/index.js';
import type { Rule } from '../rules/types.js';
import { buildApp, type App } from './app.js';
import type { Logger } from './logger.js';
import { Metrics } from './metrics.js';
import { loadOrCreateTls, type TlsMaterial } from './tls.js';

export interface StartOptions {
  readonly config: Config;
  readonly log: Logger;
  /** Watched for changes when set. */
  readonly configFile?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Defaults to a view built from the environment (in-cluster config or KUBECONFIG). */
  readonly cluster?: ClusterView;
  readonly rules?: readonly Rule[];
  readonly metrics?: Metrics;
  readonly configPollMs?: number;
}

export interface RunningServer {
  readonly app: App;
  readonly port: number;
  readonly url: string;
  readonly tls: TlsMaterial;
  readonly metrics: Metrics;
  readonly cluster: ClusterView;
  config(): Config;
  /** The SIGTERM path. Resolves when the server has stopped. */
  shutdown(): Promise<void>;
}

export async function startServer(opts: StartOptions): Promise<RunningServer> {
  const { log } = opts;
  const env = opts.env ?? process.env;
  let config = opts.config;
  const metrics = opts.metrics ?? new Metrics();
  const tls = await loadOrCreateTls(config.server.tls);
  metrics.certificateExpiry.set(tls.notAfter.getTime() / 1000);
  const cluster = opts.cluster ?? (await clusterFromEnv(config, log, metrics, env));
  const app = await buildApp({
    config: () => config,
    cluster,
    rules: opts.rules ?? allRules,
    log,
    metrics,
    tls,
    server: config.server,
  });
  await app.fastify.listen({ port: config.server.port, host: config.server.host });
  const port = (app.fastify.server.address() as AddressInfo).port;
  const url = `https://localhost:${port}`;
  if (tls.source === 'self-signed') {
    log.info({ port, caFile: tls.caFile, certFile: tls.certFile }, `listening on ${url} with a self-signed certificate; try: curl --cacert ${tls.caFile} ${url}/healthz`);
  } else {
    log.info({ port, certFile: tls.certFile }, `listening on ${url}`);
  }

  const closers: Array<{ close(): void }> = [];
  if (opts.configFile) closers.push(watchConfigFile(opts.configFile, env, opts.configPollMs ?? 2_000, log, metrics, (c) => {
    config = c;
    log.level = c.logLevel;
  }));
  if (tls.source === 'files' && tls.certFile && tls.keyFile) {
    closers.push(await watchServingCertificate(app, tls, config, log, metrics));
  }

  void cluster.ready().then(() => {
    if (app.phase === 'starting') {
      app.phase = 'ready';
      log.info({ clusterView: cluster.state, dryRun: config.dryRun }, 'ready');
    }
  });

  let stopping: Promise<void> | undefined;
  const shutdown = () =>
    (stopping ??= (async () => {
      app.phase = 'draining';
      log.info({ drainDelayMs: config.server.shutdownDelayMs }, 'shutting down: readiness off, draining');
      await delay(config.server.shutdownDelayMs);
      for (const c of closers) c.close();
      const closed = app.fastify.close();
      // close() closes the connections idle at that moment; one whose request was still in
      // flight becomes idle only after its response, and would then be held open until the
      // keep-alive timeout (95 s), past the shutdown bound. Sweep those as they go idle.
      const sweeper = setInterval(() => app.fastify.server.closeIdleConnections(), 50);
      const timedOut = await Promise.race([closed.then(() => false), delay(config.server.shutdownTimeoutMs).then(() => true)]);
      clearInterval(sweeper);
      if (timedOut) {
        log.warn('in-flight requests did not finish in time; closing connections');
        app.fastify.server.closeAllConnections();
      }
      await cluster.close();
      log.info('stopped');
    })());

  return { app, port, url, tls, metrics, cluster, config: () => config, shutdown };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function watchConfigFile(
  file: string,
  env: NodeJS.ProcessEnv,
  intervalMs: number,
  log: Logger,
  metrics: Metrics,
  apply: (c: Config) => void,
): ConfigWatcher {
  return watchConfig(file, env, intervalMs, (result) => {
    if ('error' in result) {
      metrics.configReloads.inc({ result: 'invalid' });
      log.error({ error: result.error.message }, 'config change rejected; the previous config stays in force');
      return;
    }
    metrics.configReloads.inc({ result: 'applied' });
    apply(result.config);
    log.info({ dryRun: result.config.dryRun, rules: result.config.rules }, 'config reloaded (server.* settings need a restart)');
  });
}

async function watchServingCertificate(app: App, tls: TlsMaterial, config: Config, log: Logger, metrics: Metrics): Promise<{ close(): void }> {
  const { watchCertificates } = await import('./cert-reload.js');
  return watchCertificates({
    server: app.fastify.server as unknown as import('node:tls').Server,
    certFile: tls.certFile!,
    keyFile: tls.keyFile!,
    intervalMs: config.server.tls.reloadIntervalMs,
    log,
    onReload: ({ notAfter }) => metrics.certificateExpiry.set(notAfter.getTime() / 1000),
  });
}

/**
 * Loads the informer-backed view only when a cluster may be configured, to keep start-up fast.
 * createClusterView makes the final call (e.g. a KUBECONFIG that cannot be read) and logs it.
 */
async function clusterFromEnv(config: Config, log: Logger, metrics: Metrics, env: NodeJS.ProcessEnv): Promise<ClusterView> {
  const configured = config.cluster.mode !== 'off' && (env.KUBECONFIG || (env.KUBERNETES_SERVICE_HOST && env.KUBERNETES_SERVICE_PORT));
  if (!configured) {
    log.info(
      { clusterView: 'off' },
      config.cluster.mode === 'off'
        ? 'cluster view is off (cluster.mode: off); rules that need namespace labels use their fallbacks'
        : 'cluster view is off: no in-cluster service account and no KUBECONFIG; rules that need namespace labels use their fallbacks',
    );
    return offlineClusterView;
  }
  // Imported here, not at the top: client-node is heavy, and a laptop `npm start` never needs it.
  const { createClusterView } = await import('../cluster/kube-view.js');
  return createClusterView(config.cluster, { log, registry: metrics.registry, env });
}
