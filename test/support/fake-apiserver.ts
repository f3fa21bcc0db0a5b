/**
 * A fake Kubernetes API server, kept only for the faults a real one does not produce on demand.
 * Anything a working API server does (list and watch, labels, ClusterIPs, 404s, RBAC 403s, paging,
 * TLS and ServiceAccount tokens, an outage by stopping it) is tested against a real kube-apiserver in
 * test/e2e/. What this is still for (test/cluster-view.test.ts):
 *
 * - 410 Gone on demand: `expireResourceVersions()` forgets the change history, like an etcd
 *   compaction. Open watches get an ERROR event with a 410 Expired Status and end; a watch from an
 *   older resourceVersion gets the same, so the client must relist.
 * - Connection resets: `dropConnections()` destroys every open connection, watch streams mid-stream.
 * - Stalled and slow answers: `setDelay(ms, match)` holds back the requests `match` picks (a
 *   watch's response headers too): a first list that never finishes, a GET that outlasts the lookup
 *   bound, watches that stay silent while objects change.
 * - Changes while it is down: `stop()` refuses connections and cuts the watches, but the store
 *   stays writable; `start()` serves it again on the same port.
 * - What the client sent, request by request: `requests` and `watchCount()` (the real server shows
 *   this only in its audit log, after the fact).
 *
 * It serves plain HTTP on 127.0.0.1 (an ephemeral port) for the two resources the cluster view reads,
 * namespaces and services: list with `labelSelector`, get (a 404 Status for unknown names), and watch
 * (`?watch=true`: JSON lines `{type, object}`; without a resourceVersion, ADDED for every current
 * object first; from resourceVersion N, the retained changes after N; objects that start or stop
 * matching the selector arrive as ADDED / DELETED). Objects are changed through the store helpers
 * (`create`, `setLabels`, `delete`), not over HTTP.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';

/** A stored object: anything with metadata. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name?: string;
    namespace?: string;
    labels?: Record<string, string>;
    resourceVersion?: string;
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

interface ResourceType {
  /** Lower-case plural, as in the URL. */
  readonly plural: string;
  readonly kind: string;
  readonly namespaced: boolean;
}

const RESOURCES: Readonly<Record<Resource, ResourceType>> = {
  namespaces: { plural: 'namespaces', kind: 'Namespace', namespaced: false },
  services: { plural: 'services', kind: 'Service', namespaced: true },
};
export type Resource = 'namespaces' | 'services';

export interface RecordedRequest {
  readonly method: string;
  /** Path without the query string. */
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
  readonly watch: boolean;
}

interface StoredEvent {
  readonly rv: number;
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED';
  readonly object: KubeObject;
  /** For MODIFIED: the object before the change (to turn selector transitions into ADDED/DELETED). */
  readonly old?: KubeObject;
}

interface Watcher {
  readonly resource: ResourceType;
  readonly namespace: string | undefined;
  readonly selector: Selector;
  readonly res: http.ServerResponse;
}

type Selector = (obj: KubeObject) => boolean;

class HttpError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

const clone = <T>(v: T): T => structuredClone(v);

export class FakeApiServer {
  /** Every request received, in order (watch requests included). Clear it with `requests.length = 0`. */
  readonly requests: RecordedRequest[] = [];

  private readonly server: http.Server;
  private readonly sockets = new Set<Socket>();
  /** plural → namespace ('' for cluster-scoped) → name → object */
  private readonly store = new Map<string, Map<string, Map<string, KubeObject>>>();
  /** plural → retained change log */
  private readonly history = new Map<string, StoredEvent[]>();
  private readonly watchers = new Set<Watcher>();
  private readonly pendingDelays = new Set<NodeJS.Timeout>();
  private rv = 1000;
  /** Watches from a resourceVersion below this get 410 Expired. */
  private oldestRetainedRv = 0;
  private delay: { ms: number; match?: (req: RecordedRequest) => boolean } | undefined;
  private listening = false;
  private portValue = 0;

  private constructor() {
    this.server = http.createServer((req, res) => this.handle(req, res));
    this.server.keepAliveTimeout = 60_000;
    this.server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  /** Starts a server on 127.0.0.1, on an ephemeral port. */
  static async start(): Promise<FakeApiServer> {
    const s = new FakeApiServer();
    await s.start();
    return s;
  }

  get url(): string {
    return `http://127.0.0.1:${this.portValue}`;
  }

  /** Current global resourceVersion (the last one handed out). */
  get resourceVersion(): string {
    return String(this.rv);
  }

  /** Number of currently open watch streams of one resource. */
  watchCount(resource: Resource): number {
    let n = 0;
    for (const w of this.watchers) if (w.resource === RESOURCES[resource]) n++;
    return n;
  }

  /** (Re)starts listening, on the same port as before after `stop()`. */
  async start(): Promise<void> {
    if (this.listening) return;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.server.once('error', onError);
      this.server.listen(this.portValue, '127.0.0.1', () => {
        this.server.off('error', onError);
        resolve();
      });
    });
    this.portValue = (this.server.address() as AddressInfo).port;
    this.listening = true;
  }

  /**
   * API server down: stops listening (connections are refused) and destroys every open connection,
   * watch streams included. The store stays, and can be changed; `start()` serves it again.
   */
  async stop(): Promise<void> {
    if (!this.listening) return;
    this.listening = false;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.dropConnections();
    for (const t of this.pendingDelays) clearTimeout(t);
    this.pendingDelays.clear();
    await closed;
  }

  /** Stops for good (the name tests call in afterEach). */
  async close(): Promise<void> {
    this.delay = undefined;
    await this.stop();
  }

  /** Abruptly destroys every open connection (watch streams see a premature close). Keeps listening. */
  dropConnections(): void {
    for (const w of this.watchers) w.res.destroy();
    this.watchers.clear();
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  /**
   * Delays every answer (or those `match` selects) by `ms`: a slow or stalled API server.
   * `setDelay(0)` clears. For watches, the response headers are delayed too.
   */
  setDelay(ms: number, match?: (req: RecordedRequest) => boolean): void {
    this.delay = ms > 0 ? { ms, match } : undefined;
  }

  /**
   * Forgets the change history, like an etcd compaction: every resourceVersion handed out so far
   * becomes too old. Open watches get an ERROR event with a 410 Expired Status and are ended; later
   * watches from an old resourceVersion get the same.
   */
  expireResourceVersions(): void {
    this.rv++;
    this.oldestRetainedRv = this.rv;
    for (const h of this.history.values()) h.length = 0;
    for (const w of [...this.watchers]) {
      writeEvent(w, { type: 'ERROR', object: this.expiredStatus('0') });
      this.watchers.delete(w);
      w.res.end();
    }
  }

  // ---- store helpers (tests) -------------------------------------------------------------

  /** Creates an object; fills uid, creationTimestamp, resourceVersion, apiVersion and kind. */
  create<T extends KubeObject>(resource: Resource, obj: T): T {
    const r = RESOURCES[resource];
    const o = clone(obj) as KubeObject;
    const name = o.metadata.name;
    if (!name) throw new Error(`fake-apiserver: ${r.kind} needs metadata.name`);
    const bucket = this.bucket(r, o.metadata.namespace);
    if (bucket.has(name)) throw new Error(`fake-apiserver: ${r.plural} "${name}" already exists`);
    o.apiVersion = 'v1';
    o.kind = r.kind;
    if (!r.namespaced) delete o.metadata.namespace;
    o.metadata.uid ??= randomUUID();
    o.metadata.creationTimestamp ??= new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
    o.metadata.resourceVersion = String(++this.rv);
    bucket.set(name, o);
    this.record(r, { rv: this.rv, type: 'ADDED', object: o });
    return clone(o) as T;
  }

  /** Sets (or with `null` removes) labels of an object; bumps its resourceVersion. */
  setLabels(resource: Resource, namespace: string | undefined, name: string, labels: Record<string, string | null>): void {
    const r = RESOURCES[resource];
    const bucket = this.bucket(r, namespace);
    const old = bucket.get(name);
    if (!old) throw new Error(`fake-apiserver: ${r.plural} "${name}" not found`);
    const o = clone(old);
    const l = { ...(o.metadata.labels ?? {}) };
    for (const [k, v] of Object.entries(labels)) {
      if (v === null) delete l[k];
      else l[k] = v;
    }
    o.metadata.labels = l;
    o.metadata.resourceVersion = String(++this.rv);
    bucket.set(name, o);
    this.record(r, { rv: this.rv, type: 'MODIFIED', object: o, old });
  }

  /** Deletes an object; returns false when it did not exist. */
  delete(resource: Resource, namespace: string | undefined, name: string): boolean {
    const r = RESOURCES[resource];
    const bucket = this.bucket(r, namespace);
    const old = bucket.get(name);
    if (!old) return false;
    bucket.delete(name);
    const o = clone(old);
    o.metadata.resourceVersion = String(++this.rv);
    this.record(r, { rv: this.rv, type: 'DELETED', object: o });
    return true;
  }

  /** A KubeConfig pointing at this server (client-node refuses http:// unless TLS verification is skipped). */
  kubeConfig(): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'fake', server: this.url, skipTLSVerify: true }],
      users: [{ name: 'fake' }],
      contexts: [{ name: 'fake', cluster: 'fake', user: 'fake' }],
      currentContext: 'fake',
    });
    return kc;
  }

  // ---- HTTP ------------------------------------------------------------------------------

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const query: Record<string, string> = Object.fromEntries(url.searchParams);
    const rec: RecordedRequest = { method: req.method ?? 'GET', path: url.pathname, query, watch: query['watch'] === 'true' || query['watch'] === '1' };
    this.requests.push(rec);
    req.resume();
    req.on('end', () => {
      const run = () => {
        if (res.destroyed || !this.listening) return;
        try {
          this.route(rec, res);
        } catch (err) {
          const e = err instanceof HttpError ? err : new HttpError(500, 'InternalError', String(err));
          if (res.headersSent) res.destroy();
          else sendJson(res, e.code, statusBody(e));
        }
      };
      const d = this.delay;
      if (d && (!d.match || d.match(rec))) {
        const t = setTimeout(() => {
          this.pendingDelays.delete(t);
          run();
        }, d.ms);
        this.pendingDelays.add(t);
      } else run();
    });
  }

  /** `/api/v1/<plural>[/<name>]` and `/api/v1/namespaces/<ns>/<plural>[/<name>]`, GET only. */
  private route(rec: RecordedRequest, res: http.ServerResponse): void {
    if (rec.method !== 'GET') throw new HttpError(405, 'MethodNotAllowed', `the fake API server only answers GET, not ${rec.method}`);
    const seg = rec.path.split('/').filter(Boolean).map(decodeURIComponent);
    if (seg[0] !== 'api' || seg[1] !== 'v1') throw new HttpError(404, 'NotFound', 'the server could not find the requested resource');
    const rest = seg.slice(2);
    let namespace: string | undefined;
    if (rest[0] === 'namespaces' && rest.length >= 3) {
      namespace = rest[1];
      rest.splice(0, 2);
    }
    const r = RESOURCES[rest[0] as Resource] as ResourceType | undefined;
    if (!r || rest.length > 2 || (namespace !== undefined && !r.namespaced)) {
      throw new HttpError(404, 'NotFound', 'the server could not find the requested resource');
    }
    const name = rest[1];
    if (name !== undefined) {
      const o = this.bucket(r, namespace).get(name);
      if (!o) throw new HttpError(404, 'NotFound', `${r.plural} "${name}" not found`);
      sendJson(res, 200, o);
    } else if (rec.watch) {
      this.startWatch(r, namespace, rec.query, res);
    } else {
      // Items without kind/apiVersion, as the real server lists them.
      const items = this.select(r, namespace, parseLabelSelector(rec.query['labelSelector'])).map(({ apiVersion: _a, kind: _k, ...item }) => item);
      sendJson(res, 200, { kind: `${r.kind}List`, apiVersion: 'v1', metadata: { resourceVersion: String(this.rv) }, items });
    }
  }

  private startWatch(r: ResourceType, namespace: string | undefined, query: Record<string, string>, res: http.ServerResponse): void {
    const w: Watcher = { resource: r, namespace, selector: parseLabelSelector(query['labelSelector']), res };
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders();
    const from = query['resourceVersion'] ?? '';
    if (from === '' || from === '0') {
      // "Start at most recent", with the current state first as synthetic ADDED events.
      for (const o of this.select(r, namespace, w.selector)) writeEvent(w, { type: 'ADDED', object: o });
    } else if (Number(from) < this.oldestRetainedRv) {
      writeEvent(w, { type: 'ERROR', object: this.expiredStatus(from) });
      res.end();
      return;
    } else {
      for (const ev of this.history.get(r.plural) ?? []) if (ev.rv > Number(from)) this.deliver(w, ev);
    }
    this.watchers.add(w);
    res.on('close', () => this.watchers.delete(w));
  }

  private expiredStatus(rv: string): KubeObject {
    return statusBody(new HttpError(410, 'Expired', `too old resource version: ${rv} (${this.oldestRetainedRv})`));
  }

  private record(r: ResourceType, ev: StoredEvent): void {
    let h = this.history.get(r.plural);
    if (!h) this.history.set(r.plural, (h = []));
    h.push(ev);
    for (const w of this.watchers) if (w.resource === r) this.deliver(w, ev);
  }

  /** Sends one change to one watcher, applying its namespace and selector. */
  private deliver(w: Watcher, ev: StoredEvent): void {
    const inScope = (o: KubeObject | undefined) =>
      o !== undefined && (w.namespace === undefined || o.metadata.namespace === w.namespace) && w.selector(o);
    if (ev.type === 'MODIFIED') {
      const now = inScope(ev.object);
      const before = inScope(ev.old);
      if (now && before) writeEvent(w, { type: 'MODIFIED', object: ev.object });
      else if (now) writeEvent(w, { type: 'ADDED', object: ev.object });
      else if (before) writeEvent(w, { type: 'DELETED', object: ev.object });
    } else if (inScope(ev.object)) {
      writeEvent(w, { type: ev.type, object: ev.object });
    }
  }

  private bucket(r: ResourceType, namespace: string | undefined): Map<string, KubeObject> {
    const ns = r.namespaced ? namespace || 'default' : '';
    let byNs = this.store.get(r.plural);
    if (!byNs) this.store.set(r.plural, (byNs = new Map()));
    let b = byNs.get(ns);
    if (!b) byNs.set(ns, (b = new Map()));
    return b;
  }

  /** Objects in one namespace (or all) that match, sorted by namespace/name as the real server lists them. */
  private select(r: ResourceType, namespace: string | undefined, selector: Selector): KubeObject[] {
    const out: KubeObject[] = [];
    for (const [ns, b] of this.store.get(r.plural) ?? []) {
      if (namespace !== undefined && ns !== namespace) continue;
      for (const o of b.values()) if (selector(o)) out.push(o);
    }
    return out.sort((a, b) => `${a.metadata.namespace ?? ''}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace ?? ''}/${b.metadata.name}`));
  }
}

function writeEvent(w: Watcher, ev: { type: string; object: unknown }): void {
  if (!w.res.destroyed && !w.res.writableEnded) w.res.write(JSON.stringify(ev) + '\n');
}

// ---- label selectors --------------------------------------------------------------------------

/**
 * Equality-based label selectors, comma = AND: `k=v`, `k==v`, `k!=v`, `k`, `!k` (the cluster
 * view's ActiveGate selector is `k=v,k=v`). Throws 400 on anything else.
 */
export function parseLabelSelector(selector: string | undefined): Selector {
  const preds = (selector ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map(parseRequirement);
  return (o) => preds.every((p) => p(o.metadata.labels ?? {}));
}

function parseRequirement(req: string): (labels: Record<string, string>) => boolean {
  let m = /^!\s*([^\s=!]+)$/.exec(req);
  if (m) {
    const k = m[1]!;
    return (l) => !Object.hasOwn(l, k);
  }
  m = /^([^\s=!]+)\s*(==|=|!=)\s*([^\s=!]*)$/.exec(req);
  if (m) {
    const [, k, op, v] = m as unknown as [string, string, string, string];
    return op === '!=' ? (l) => !Object.hasOwn(l, k) || l[k] !== v : (l) => Object.hasOwn(l, k) && l[k] === v;
  }
  m = /^([^\s=!]+)$/.exec(req);
  if (m) {
    const k = m[1]!;
    return (l) => Object.hasOwn(l, k);
  }
  throw new HttpError(400, 'BadRequest', `unable to parse requirement: ${JSON.stringify(req)}`);
}

// ---- small helpers ----------------------------------------------------------------------------

function statusBody(e: HttpError): KubeObject {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: e.message, reason: e.reason, code: e.code };
}

function sendJson(res: http.ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
