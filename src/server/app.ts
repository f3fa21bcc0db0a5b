/**
 * The HTTP transport: parse, time, answer, log. Admission logic lives in
 * src/admission/handler.ts and never sees a socket.
 *
 * fastify is the server framework: it owns the HTTPS server's lifecycle (listen, close),
 * routing, /healthz, /readyz, /metrics, 404s and every error answer. The one hot route,
 * a well-formed `POST /mutate` (the API server's call), is served by a lean path in the
 * request listener of the server we hand fastify through `serverFactory`; everything it
 * does not take, fastify serves exactly as before. Measured reason: fastify's per-request
 * machinery (Request/Reply objects, routing, the content-type parser's AsyncResource,
 * hooks, reply serialisation) cost about 0.2× of the bare-Node floor's CPU per review and
 * made enough garbage to grow V8's young generation to its 32 MiB maximum (see
 * bench/RESULTS.md). The lean path answers byte-for-byte what fastify answered: same
 * status codes, headers, error bodies, `Connection: close` after a body that could not
 * be parsed, log lines and metrics (tests pin them).
 */
import { isUtf8 } from 'node:buffer';
import type { IncomingMessage, ServerResponse } from 'node:http';
import https from 'node:https';
import Fastify, { type FastifyInstance } from 'fastify';
import type { ClusterView } from '../cluster/view.js';
import type { Config } from '../config/schema.js';
import type { Rule } from '../rules/types.js';
import { admit, decodeReview, type AdmissionResult } from '../admission/handler.js';
import { answerThenClose, lingerBytes } from './linger.js';
import { infoLine, type Logger } from './logger.js';
import { parseReviewJson } from './review-json.js';
import type { Metrics } from './metrics.js';
import type { Counter } from 'prom-client';

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

const JSON_TYPE = 'application/json; charset=utf-8';

const noSchemas = (): never => {
  throw new Error('mesh-guard routes declare no schemas');
};

const asError = (e: unknown): Error => (e instanceof Error ? e : new Error(String(e)));

/** Parses a request body the way the `application/json` content-type parser always has. */
function parseJsonBody(body: Buffer): { ok: true; value: unknown } | { ok: false; error: HttpError } {
  if (!isUtf8(body)) return { ok: false, error: new HttpError(400, 'body is not valid UTF-8') };
  try {
    return { ok: true, value: parseReviewJson(body) };
  } catch (err) {
    const detail = err instanceof RangeError ? 'JSON is nested too deeply' : 'body is not valid JSON';
    return { ok: false, error: new HttpError(400, detail) };
  }
}

/** Bound label children, so the hot path does not hash a label object on every call. */
function boundCounter<L extends string>(counter: Counter<L>, ...names: L[]): (...values: string[]) => { inc(n?: number): void } {
  const children = new Map<string, { inc(n?: number): void }>();
  return (...values) => {
    const key = values.length === 1 ? values[0]! : values.join('\u0000');
    let child = children.get(key);
    if (!child) {
      const labels = {} as Record<L, string>;
      names.forEach((n, i) => (labels[n] = values[i]!));
      child = counter.labels(labels);
      children.set(key, child);
    }
    return child;
  };
}

export async function buildApp(opts: AppOptions): Promise<App> {
  const { log, metrics, server } = opts;
  const admissions = boundCounter(metrics.admissions, 'outcome');
  const ruleChanges = boundCounter(metrics.ruleChanges, 'rule', 'mode');
  const httpsOptions: https.ServerOptions = {
    key: opts.tls.key,
    cert: opts.tls.cert,
    minVersion: 'TLSv1.2',
    // Node checks headersTimeout/requestTimeout only every connectionsCheckingInterval
    // (default 30 s), so a slowloris with a 10 s header timeout would live 40 s.
    connectionsCheckingInterval: 1_000,
    // A TCP connection that never completes the TLS handshake (default bound: 120 s).
    handshakeTimeout: server.headersTimeoutMs,
  };
  // Set in the server factory, called by Fastify() below; the lean path is defined further down.
  let serveMutate: (req: IncomingMessage, res: ServerResponse, contentLength: number) => void = () => undefined;
  const fastify = Fastify({
    https: httpsOptions,
    serverFactory: (handler) => {
      const s = https.createServer(httpsOptions, (req, res) => {
        // The first request's headers are in: requestTimeout and keep-alive govern the socket now
        // (see the 'secureConnection' listener below).
        if (req.socket.timeout === server.headersTimeoutMs) req.socket.setTimeout(0);
        const leanLength = leanPathLength(req);
        if (leanLength > 0) serveMutate(req, res, leanLength);
        else handler(req, res);
      });
      // fastify applies its keepAliveTimeout/requestTimeout options only to a server it creates
      // itself, so every server timeout is set here.
      // The API server reuses idle keep-alive connections for 90 s; closing earlier races it (EOFs).
      s.keepAliveTimeout = server.keepAliveTimeoutMs;
      s.requestTimeout = server.requestTimeoutMs;
      s.headersTimeout = server.headersTimeoutMs;
      return s;
    },
    logger: false,
    // No route declares a schema. fastify loads Ajv and fast-json-stringify only for the default
    // compilers (about 3 MiB of heap held for good, and start-up time), so it gets compilers that
    // refuse instead.
    schemaController: { compilersFactory: { buildValidator: noSchemas, buildSerializer: noSchemas } },
    bodyLimit: server.bodyLimitBytes,
    // Keep answering requests that arrive on open connections while draining.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
  });
  // headersTimeout only starts with the first byte of a request: a TLS connection that never
  // sends one would stay open for good. Bound that idle time by the header timeout, until the
  // first request's headers are in (then requestTimeout, and after the response Node's
  // keep-alive timer, govern the socket).
  fastify.server.on('secureConnection', (socket: import('node:tls').TLSSocket) => socket.setTimeout(server.headersTimeoutMs));
  const app: App = { fastify, phase: 'starting' };

  /**
   * The lean path takes only what fastify would route to POST /mutate and hand to the
   * application/json parser with a body within the limit: the API server's requests.
   * Anything else (other content types, no or an oversized Content-Length, chunked
   * bodies, an empty body) goes to fastify, which answers as it always has.
   * Returns the request's Content-Length when the lean path takes it, else 0.
   */
  function leanPathLength(req: IncomingMessage): number {
    if (req.method !== 'POST') return 0;
    const url = req.url!;
    if (url !== '/mutate' && !url.startsWith('/mutate?')) return 0;
    const type = req.headers['content-type'];
    if (type !== 'application/json' && type !== 'application/json; charset=utf-8') return 0;
    if (req.headers['transfer-encoding'] !== undefined) return 0;
    const length = Number(req.headers['content-length']);
    return length > 0 && length <= server.bodyLimitBytes ? length : 0;
  }

  /** The error answer, log line and metric, for fastify's error handler and the lean path alike. */
  function rejected(method: string | undefined, url: string, err: Error & { statusCode?: number; code?: string }): { status: number; body: string } {
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    const message =
      status === 413 ? `body larger than ${server.bodyLimitBytes} bytes`
      : status === 415 ? 'content type must be application/json'
      : status < 500 ? err.message
      : 'internal error';
    if (url.startsWith('/mutate')) admissions(status < 500 ? 'bad-request' : 'internal-error').inc();
    log.warn({ status, method, url, error: message, code: err.code }, 'request rejected');
    return { status, body: JSON.stringify({ error: message, status }) };
  }

  /** A 413 is answered before its body is read: answered so that the client still reads it (linger.ts). */
  const lingerMaxBytes = lingerBytes(server.bodyLimitBytes);
  function tooLarge(req: IncomingMessage, res: ServerResponse, r: { status: number; body: string }): void {
    answerThenClose(req, res, r.status, { 'content-type': JSON_TYPE }, r.body, lingerMaxBytes, (cut) =>
      log.warn({ url: req.url, ...cut }, 'client kept sending after the 413; connection closed'),
    );
  }

  /**
   * Admits a parsed body: the response body to send (a promise of it only when the admission
   * waits on the API server), or throws the error for the error answer.
   */
  function mutate(body: unknown): string | Promise<string> {
    const start = process.hrtime.bigint();
    const decoded = decodeReview(body);
    if (!decoded.ok) throw new HttpError(400, decoded.error);
    const config = opts.config();
    const uid = decoded.request.uid;
    let result: AdmissionResult | Promise<AdmissionResult>;
    try {
      result = admit(decoded.request, { config, cluster: opts.cluster, rules: opts.rules });
    } catch (err) {
      return admitFailed(uid, err);
    }
    if (result instanceof Promise) return result.then((r) => answer(r, start, config), (err: unknown) => admitFailed(uid, err));
    return answer(result, start, config);
  }

  /** Never a 500 for a well-formed review: admit unchanged and say why. */
  function admitFailed(uid: string, err: unknown): string {
    admissions('internal-error').inc();
    log.error({ uid, error: err instanceof Error ? err.message : 'unknown' }, 'admission failed; admitting unchanged');
    return JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid, allowed: true } });
  }

  /** Counts, times and logs an admission; returns the response body. */
  function answer(result: AdmissionResult, start: bigint, config: Config): string {
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    admissions(result.outcome).inc();
    metrics.duration.observe(seconds);
    for (const o of result.outcomes) if (o.changes.length) ruleChanges(o.rule, o.mode).inc(o.changes.length);
    const line = result.log;
    if (config.dryRun) line.dryRun = true;
    line.durationMs = Math.round(seconds * 1e6) / 1e3;
    infoLine(log, line, 'admission');
    return JSON.stringify(result.review);
  }

  serveMutate = (req, res, contentLength) => {
    const send = (status: number, body: string, close: boolean) => {
      const headers: Record<string, string | number> = { 'content-type': JSON_TYPE, 'content-length': Buffer.byteLength(body) };
      // As fastify does after a body it could not read or parse: the client may send more.
      if (close) headers.connection = 'close';
      res.writeHead(status, headers).end(body);
    };
    const fail = (err: Error, close: boolean) => {
      const r = rejected(req.method, req.url!, err);
      if (r.status === 413) tooLarge(req, res, r);
      else send(r.status, r.body, close);
    };
    const chunks: Buffer[] = [];
    let received = 0;
    const onData = (chunk: Buffer) => {
      received += chunk.length;
      if (received > server.bodyLimitBytes) {
        done();
        fail(Object.assign(new HttpError(413, 'Request body is too large'), { code: 'FST_ERR_CTP_BODY_TOO_LARGE' }), true);
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (err?: Error & { statusCode?: number }) => {
      done();
      if (err != null) {
        if (!(typeof err.statusCode === 'number' && err.statusCode >= 400)) err.statusCode = 400;
        return fail(err, true);
      }
      if (received !== contentLength) {
        return fail(Object.assign(new HttpError(400, 'Request body size did not match Content-Length'), { code: 'FST_ERR_CTP_INVALID_CONTENT_LENGTH' }), true);
      }
      const parsed = parseJsonBody(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, received));
      if (!parsed.ok) return fail(parsed.error, true);
      let body: string | Promise<string>;
      try {
        body = mutate(parsed.value);
      } catch (e) {
        return fail(asError(e), false);
      }
      if (typeof body === 'string') send(200, body, false);
      else body.then((b) => send(200, b, false), (e: unknown) => fail(asError(e), false));
    };
    const done = () => {
      req.removeListener('data', onData);
      req.removeListener('end', onEnd);
      req.removeListener('error', onEnd);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onEnd);
    req.resume();
  };

  fastify.removeAllContentTypeParsers();
  fastify.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_req, body: Buffer, done) => {
    const parsed = parseJsonBody(body);
    if (parsed.ok) done(null, parsed.value);
    else done(parsed.error, undefined);
  });

  fastify.setErrorHandler((err: Error & { statusCode?: number; code?: string }, req, reply) => {
    const r = rejected(req.method, req.url, err);
    if (r.status === 413) {
      reply.hijack();
      tooLarge(req.raw, reply.raw, r);
      return;
    }
    void reply.code(r.status).type(JSON_TYPE).send(r.body);
  });
  fastify.setNotFoundHandler((req, reply) => {
    void reply.code(404).type(JSON_TYPE).send(JSON.stringify({ error: `no route ${req.method} ${req.url}`, status: 404 }));
  });

  // Requests the lean path does not take (see leanPathLength).
  fastify.post('/mutate', async (req, reply) => reply.type(JSON_TYPE).send(await mutate(req.body)));

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
