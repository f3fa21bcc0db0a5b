/**
 * The HTTP transport: parse, time, answer, log. Admission logic lives in
 * src/admission/handler.ts and never sees a socket.
 */
import { isUtf8 } from 'node:buffer';
import Fastify, { type FastifyInstance } from 'fastify';
import type { ClusterView } from '../cluster/view.js';
import type { Config } from '../config/schema.js';
import type { Rule } from '../rules/types.js';
import { admit, decodeReview, type AdmissionResult } from '../admission/handler.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';

export type Phase = 'starting' | 'ready' | 'draining';

export interface AppOptions {
  /** Read on every request, so a config reload takes effect without a restart. */
  readonly config: () => Config;
  readonly cluster: ClusterView;
  readonly rules: readonly Rule[];
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly tls: { key: string; cert: string };
  /** Server options are read once: changing them needs a restart. */
  readonly server: Config['server'];
}

export interface App {
  readonly fastify: FastifyInstance;
  phase: Phase;
}

class HttpError extends Error {
  constructor(readonly statusCode: number, message: string) {
    super(message);
  }
}

export async function buildApp(opts: AppOptions): Promise<App> {
  const { log, metrics, server } = opts;
  const fastify = Fastify({
    https: {
      key: opts.tls.key,
      cert: opts.tls.cert,
      minVersion: 'TLSv1.2',
      // Node checks headersTimeout/requestTimeout only every connectionsCheckingInterval
      // (default 30 s), so a slowloris with a 10 s header timeout would live 40 s.
      connectionsCheckingInterval: 1_000,
      // A TCP connection that never completes the TLS handshake (default bound: 120 s).
      handshakeTimeout: server.headersTimeoutMs,
    },
    logger: false,
    bodyLimit: server.bodyLimitBytes,
    // The API server reuses idle keep-alive connections for 90 s; closing earlier races it (EOFs).
    keepAliveTimeout: server.keepAliveTimeoutMs,
    requestTimeout: server.requestTimeoutMs,
    // Keep answering requests that arrive on open connections while draining.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
  });
  fastify.server.headersTimeout = server.headersTimeoutMs;
  // headersTimeout only starts with the first byte of a request: a TLS connection that never
  // sends one would stay open for good. Bound that idle time by the header timeout, until the
  // first request's headers are in (then requestTimeout, and after the response Node's
  // keep-alive timer, govern the socket).
  fastify.server.on('secureConnection', (socket: import('node:tls').TLSSocket) => socket.setTimeout(server.headersTimeoutMs));
  fastify.server.on('request', (req: import('node:http').IncomingMessage) => {
    if (req.socket.timeout === server.headersTimeoutMs) req.socket.setTimeout(0);
  });
  const app: App = { fastify, phase: 'starting' };

  fastify.removeAllContentTypeParsers();
  fastify.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_req, body: Buffer, done) => {
    if (!isUtf8(body)) return done(new HttpError(400, 'body is not valid UTF-8'), undefined);
    try {
      done(null, JSON.parse(body.toString('utf8')));
    } catch (err) {
      const detail = err instanceof RangeError ? 'JSON is nested too deeply' : 'body is not valid JSON';
      done(new HttpError(400, detail), undefined);
    }
  });

  fastify.setErrorHandler((err: Error & { statusCode?: number; code?: string }, req, reply) => {
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    const message =
      status === 413 ? `body larger than ${server.bodyLimitBytes} bytes`
      : status === 415 ? 'content type must be application/json'
      : status < 500 ? err.message
      : 'internal error';
    if (req.url.startsWith('/mutate')) metrics.admissions.inc({ outcome: status < 500 ? 'bad-request' : 'internal-error' });
    log.warn({ status, method: req.method, url: req.url, error: message, code: err.code }, 'request rejected');
    void reply.code(status).type('application/json; charset=utf-8').send(JSON.stringify({ error: message, status }));
  });
  fastify.setNotFoundHandler((req, reply) => {
    void reply.code(404).type('application/json; charset=utf-8').send(JSON.stringify({ error: `no route ${req.method} ${req.url}`, status: 404 }));
  });

  fastify.post('/mutate', async (req, reply) => {
    const start = process.hrtime.bigint();
    const decoded = decodeReview(req.body);
    if (!decoded.ok) throw new HttpError(400, decoded.error);
    const config = opts.config();
    let result: AdmissionResult;
    try {
      result = await admit(decoded.request, { config, cluster: opts.cluster, rules: opts.rules });
    } catch (err) {
      // Never a 500 for a well-formed review: admit unchanged and say why.
      metrics.admissions.inc({ outcome: 'internal-error' });
      log.error({ uid: decoded.request.uid, error: err instanceof Error ? err.message : 'unknown' }, 'admission failed; admitting unchanged');
      return reply.type('application/json; charset=utf-8').send(
        JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: decoded.request.uid, allowed: true } }),
      );
    }
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    metrics.admissions.inc({ outcome: result.outcome });
    metrics.duration.observe(seconds);
    for (const o of result.outcomes) if (o.changes.length) metrics.ruleChanges.inc({ rule: o.rule, mode: o.mode }, o.changes.length);
    log.info({ ...result.log, dryRun: config.dryRun || undefined, durationMs: Math.round(seconds * 1e6) / 1e3 }, 'admission');
    return reply.type('application/json; charset=utf-8').send(JSON.stringify(result.review));
  });

  fastify.get('/healthz', async (_req, reply) => reply.send({ status: 'ok' }));
  fastify.get('/readyz', async (_req, reply) => {
    const ready = app.phase === 'ready';
    return reply.code(ready ? 200 : 503).send({ status: app.phase, clusterView: opts.cluster.state });
  });
  fastify.get('/metrics', async (_req, reply) => {
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });

  await fastify.ready();
  return app;
}
