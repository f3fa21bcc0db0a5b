/**
 * An in-test Kubernetes API server: plain node:http (or https with a self-signed cert) on
 * 127.0.0.1, an ephemeral port, an in-memory store. It follows the API conventions that
 * @kubernetes/client-node relies on (list + watch informers, typed GET/POST/PUT/PATCH/DELETE):
 *
 * - collections: core `/api/v1/...` and `/apis/<group>/<version>/...`, namespaced and cluster-scoped;
 * - list: `{kind: <Kind>List, metadata: {resourceVersion}, items}` (items without kind/apiVersion,
 *   as the real server sends them), `labelSelector` (`k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`,
 *   `k notin (a,b)`, comma = AND) and `fieldSelector` (`metadata.name=x`, any dotted path, `=`/`==`/`!=`);
 * - get: 404 `Status` (reason NotFound) for unknown objects;
 * - watch (`?watch=true`): a chunked stream of JSON lines `{type, object}` with ADDED / MODIFIED /
 *   DELETED / BOOKMARK / ERROR. Without `resourceVersion` (or "0") it first sends ADDED for every
 *   current object; with `resourceVersion=N` it replays the retained changes after N, or, when N is
 *   older than the retained history, sends an ERROR event carrying a 410 `Expired` Status and ends
 *   the stream (what kube-apiserver does for a compacted resourceVersion). `timeoutSeconds` ends the
 *   stream cleanly; `allowWatchBookmarks` is accepted (bookmarks are sent by `sendBookmarks()`).
 *   Objects that start or stop matching a selector on update are sent as ADDED / DELETED.
 * - paging: `limit` + `continue` (token = resourceVersion and offset; 410 once expired), `remainingItemCount`;
 * - failure injection: `expireResourceVersions()`, `dropConnections()`, `setDelay()`, `setForbidden()`
 *   (403 Status), `stop()` / `start()` on the same port (API server outage), optional bearer-token check (401).
 *
 * Not implemented: consistent snapshots across pages (pages come from the current state), strategic-merge semantics
 * (PATCH treats strategic-merge as JSON merge patch), subresources, dry-run, field managers.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import jsonpatch from 'fast-json-patch';
import { loopbackCert } from './tls.js';

/** A stored object: anything with metadata. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name?: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    resourceVersion?: string;
    uid?: string;
    creationTimestamp?: string;
    generateName?: string;
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

/** One API resource (collection). */
export interface ResourceType {
  /** '' for the core group. */
  readonly group: string;
  readonly version: string;
  /** Lower-case plural, as in the URL. */
  readonly plural: string;
  readonly kind: string;
  readonly namespaced: boolean;
}

/**
 * Names accepted wherever a resource is expected: the plural for core resources
 * (`'namespaces'`, `'pods'`), `'<group>/<version>/<plural>'` for the others
 * (`'apps/v1/daemonsets'`), or a `ResourceType`. More can be added with `registerResource`.
 */
export type ResourceRef = string | ResourceType;

export const BUILTIN_RESOURCES: readonly ResourceType[] = [
  { group: '', version: 'v1', plural: 'namespaces', kind: 'Namespace', namespaced: false },
  { group: '', version: 'v1', plural: 'nodes', kind: 'Node', namespaced: false },
  { group: '', version: 'v1', plural: 'services', kind: 'Service', namespaced: true },
  { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true },
  { group: '', version: 'v1', plural: 'secrets', kind: 'Secret', namespaced: true },
  { group: '', version: 'v1', plural: 'configmaps', kind: 'ConfigMap', namespaced: true },
  { group: '', version: 'v1', plural: 'serviceaccounts', kind: 'ServiceAccount', namespaced: true },
  { group: '', version: 'v1', plural: 'endpoints', kind: 'Endpoints', namespaced: true },
  { group: 'apps', version: 'v1', plural: 'daemonsets', kind: 'DaemonSet', namespaced: true },
  { group: 'apps', version: 'v1', plural: 'deployments', kind: 'Deployment', namespaced: true },
  { group: 'apps', version: 'v1', plural: 'statefulsets', kind: 'StatefulSet', namespaced: true },
  { group: 'apps', version: 'v1', plural: 'replicasets', kind: 'ReplicaSet', namespaced: true },
  {
    group: 'admissionregistration.k8s.io',
    version: 'v1',
    plural: 'mutatingwebhookconfigurations',
    kind: 'MutatingWebhookConfiguration',
    namespaced: false,
  },
  {
    group: 'admissionregistration.k8s.io',
    version: 'v1',
    plural: 'validatingwebhookconfigurations',
    kind: 'ValidatingWebhookConfiguration',
    namespaced: false,
  },
];

export interface RecordedRequest {
  readonly method: string;
  /** Path without the query string. */
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
  readonly watch: boolean;
  /** Value of the Authorization header, if any (tests only; never real credentials). */
  readonly authorization?: string;
}

export interface FakeApiServerOptions {
  /** Serve HTTPS with a self-signed certificate for 127.0.0.1/localhost (default false: plain HTTP). */
  readonly tls?: boolean;
  /** When set, requests without `Authorization: Bearer <token>` get 401. */
  readonly token?: string;
  /** Port to listen on (default 0: ephemeral). */
  readonly port?: number;
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
  readonly bookmarks: boolean;
  readonly res: http.ServerResponse;
  timer?: NodeJS.Timeout;
}

type Selector = (obj: KubeObject) => boolean;

class HttpError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}

const clone = <T>(v: T): T => structuredClone(v);

export class FakeApiServer {
  /** Every request received, in order (watch requests included). Clear it with `requests.length = 0`. */
  readonly requests: RecordedRequest[] = [];
  /** The self-signed CA/serving certificate (PEM) when serving TLS. */
  readonly caCert: string | undefined;

  private readonly server: http.Server;
  private readonly sockets = new Set<Socket>();
  private readonly resources = new Map<string, ResourceType>();
  /** key(resource) → namespace ('' for cluster-scoped) → name → object */
  private readonly store = new Map<string, Map<string, Map<string, KubeObject>>>();
  /** key(resource) → retained change log */
  private readonly history = new Map<string, StoredEvent[]>();
  private readonly watchers = new Set<Watcher>();
  private readonly pendingDelays = new Set<NodeJS.Timeout>();
  private rv = 1000;
  /** Watches from a resourceVersion below this get 410 Expired. */
  private oldestRetainedRv = 0;
  private delay: { ms: number; match?: (req: RecordedRequest) => boolean } | undefined;
  private forbidden: ((req: RecordedRequest) => boolean) | undefined;
  private listening = false;
  private portValue = 0;

  private constructor(
    private readonly opts: FakeApiServerOptions,
    tlsMaterial: { key: string; cert: string } | undefined,
  ) {
    for (const r of BUILTIN_RESOURCES) this.registerResource(r);
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => this.handle(req, res);
    this.server = tlsMaterial ? https.createServer({ ...tlsMaterial }, handler) : http.createServer(handler);
    this.caCert = tlsMaterial?.cert;
    this.server.keepAliveTimeout = 60_000;
    this.server.on(tlsMaterial ? 'secureConnection' : 'connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    // Count plain TCP connections too (a TLS handshake may never finish when we drop).
    if (tlsMaterial) {
      this.server.on('connection', (s: Socket) => {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
      });
    }
  }

  /** Starts a server on 127.0.0.1 (ephemeral port unless `port` is given). */
  static async start(opts: FakeApiServerOptions = {}): Promise<FakeApiServer> {
    const tlsMaterial = opts.tls ? await loopbackCert() : undefined;
    const s = new FakeApiServer(opts, tlsMaterial);
    s.portValue = opts.port ?? 0;
    await s.start();
    return s;
  }

  get port(): number {
    return this.portValue;
  }

  /** `http://127.0.0.1:<port>` or `https://127.0.0.1:<port>`. */
  get url(): string {
    return `${this.caCert ? 'https' : 'http'}://127.0.0.1:${this.portValue}`;
  }

  get isListening(): boolean {
    return this.listening;
  }

  /** Current global resourceVersion (the last one handed out). */
  get resourceVersion(): string {
    return String(this.rv);
  }

  /** Number of currently open watch streams (all resources, or one). */
  watchCount(resource?: ResourceRef): number {
    if (resource === undefined) return this.watchers.size;
    const r = this.resolve(resource);
    let n = 0;
    for (const w of this.watchers) if (w.resource === r) n++;
    return n;
  }

  /** (Re)starts listening on the same port as before (after `stop()`), or on the initial port. */
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
   * API server outage: stops listening (connections are refused) and destroys every open
   * connection, watch streams included. The store is kept; `start()` brings it back on the same port.
   */
  async stop(): Promise<void> {
    if (!this.listening) return;
    this.listening = false;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.closeWatchers(false);
    this.destroySockets();
    this.clearDelays();
    await closed;
  }

  /** Stops for good (same as stop; kept as the name tests call in afterEach). */
  async close(): Promise<void> {
    this.delay = undefined;
    await this.stop();
  }

  /** Abruptly destroys every open connection (watch streams see a premature close). Keeps listening. */
  dropConnections(): void {
    this.closeWatchers(false);
    this.destroySockets();
  }

  /**
   * Delays every answer (or those `match` selects) by `ms`: a slow API server. `setDelay(0)` clears.
   * For watches, the response headers are delayed too.
   */
  setDelay(ms: number, match?: (req: RecordedRequest) => boolean): void {
    this.delay = ms > 0 ? { ms, match } : undefined;
  }

  /**
   * RBAC denial: requests `match` selects get 403 Forbidden with a Status like the real server's
   * (`<resource> is forbidden: User "…" cannot <verb> resource …`). `setForbidden(undefined)` clears.
   */
  setForbidden(match: ((req: RecordedRequest) => boolean) | undefined): void {
    this.forbidden = match;
  }

  /**
   * Forgets the change history, like an etcd compaction: every resourceVersion handed out so far
   * becomes too old. Open watches get an ERROR event with a 410 Expired Status and are ended (unless
   * `closeWatches: false`); later watches from an old resourceVersion get the same.
   */
  expireResourceVersions(opts: { closeWatches?: boolean } = {}): void {
    this.rv++;
    this.oldestRetainedRv = this.rv;
    for (const h of this.history.values()) h.length = 0;
    if (opts.closeWatches ?? true) {
      for (const w of [...this.watchers]) {
        this.writeEvent(w, { type: 'ERROR', object: this.expiredStatus('0') });
        this.endWatcher(w);
      }
    }
  }

  /** Sends a BOOKMARK with the current resourceVersion to watches that allowed bookmarks. */
  sendBookmarks(): void {
    for (const w of this.watchers) {
      if (!w.bookmarks) continue;
      this.writeEvent(w, {
        type: 'BOOKMARK',
        object: { kind: w.resource.kind, apiVersion: apiVersionOf(w.resource), metadata: { resourceVersion: String(this.rv) } },
      });
    }
  }

  /** Adds a resource type (e.g. a CRD such as `dynatrace.com/v1beta5/dynakubes`). */
  registerResource(r: ResourceType): void {
    this.resources.set(resourceKey(r), r);
    if (!r.group && !this.resources.has(r.plural)) this.resources.set(r.plural, r);
  }

  // ---- store helpers (tests) -------------------------------------------------------------

  /** Creates an object; fills uid, creationTimestamp, resourceVersion, apiVersion and kind. Throws on conflict. */
  create<T extends KubeObject>(resource: ResourceRef, obj: T): T {
    const r = this.resolve(resource);
    const o = clone(obj) as KubeObject;
    const ns = this.namespaceOf(r, o.metadata.namespace);
    if (!o.metadata.name && o.metadata.generateName) o.metadata.name = o.metadata.generateName + randomUUID().slice(0, 5);
    const name = o.metadata.name;
    if (!name) throw new HttpError(422, 'Invalid', `${r.kind} must have metadata.name`);
    const bucket = this.bucket(r, ns, true);
    if (bucket.has(name)) throw new HttpError(409, 'AlreadyExists', `${r.plural} "${name}" already exists`, { name, kind: r.plural });
    o.apiVersion = apiVersionOf(r);
    o.kind = r.kind;
    if (r.namespaced) o.metadata.namespace = ns;
    else delete o.metadata.namespace;
    o.metadata.uid ??= randomUUID();
    o.metadata.creationTimestamp ??= new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
    o.metadata.resourceVersion = String(++this.rv);
    bucket.set(name, o);
    this.record(r, { rv: this.rv, type: 'ADDED', object: o });
    return clone(o) as T;
  }

  /** Replaces an object (identified by its metadata.name/namespace); bumps resourceVersion. Throws 404. */
  update<T extends KubeObject>(resource: ResourceRef, obj: T): T {
    const r = this.resolve(resource);
    const ns = this.namespaceOf(r, obj.metadata.namespace);
    const name = obj.metadata.name ?? '';
    const old = this.bucket(r, ns, false)?.get(name);
    if (!old) throw this.notFound(r, name);
    const o = clone(obj) as KubeObject;
    o.apiVersion = apiVersionOf(r);
    o.kind = r.kind;
    if (r.namespaced) o.metadata.namespace = ns;
    o.metadata.uid = old.metadata.uid;
    o.metadata.creationTimestamp = old.metadata.creationTimestamp;
    o.metadata.resourceVersion = String(++this.rv);
    this.bucket(r, ns, true).set(name, o);
    this.record(r, { rv: this.rv, type: 'MODIFIED', object: o, old });
    return clone(o) as T;
  }

  /** Reads, changes (mutate in place or return a new object) and writes back an object. */
  modify<T extends KubeObject = KubeObject>(
    resource: ResourceRef,
    namespace: string | undefined,
    name: string,
    change: (obj: T) => T | void,
  ): T {
    const cur = this.get<T>(resource, namespace, name);
    if (!cur) throw this.notFound(this.resolve(resource), name);
    const next = change(cur) ?? cur;
    return this.update(resource, next);
  }

  /** Sets (or with `null` removes) labels of an object. */
  setLabels(resource: ResourceRef, namespace: string | undefined, name: string, labels: Record<string, string | null>): KubeObject {
    return this.modify(resource, namespace, name, (o) => {
      const l = { ...(o.metadata.labels ?? {}) };
      for (const [k, v] of Object.entries(labels)) {
        if (v === null) delete l[k];
        else l[k] = v;
      }
      o.metadata.labels = l;
    });
  }

  /** Deletes an object; returns false when it did not exist. */
  delete(resource: ResourceRef, namespace: string | undefined, name: string): boolean {
    const r = this.resolve(resource);
    const ns = this.namespaceOf(r, namespace);
    const bucket = this.bucket(r, ns, false);
    const old = bucket?.get(name);
    if (!bucket || !old) return false;
    bucket.delete(name);
    const o = clone(old);
    o.metadata.resourceVersion = String(++this.rv);
    this.record(r, { rv: this.rv, type: 'DELETED', object: o });
    return true;
  }

  get<T extends KubeObject = KubeObject>(resource: ResourceRef, namespace: string | undefined, name: string): T | undefined {
    const r = this.resolve(resource);
    const o = this.bucket(r, this.namespaceOf(r, namespace), false)?.get(name);
    return o ? (clone(o) as T) : undefined;
  }

  /** Objects of a resource, in one namespace or all, sorted by namespace/name. */
  list<T extends KubeObject = KubeObject>(resource: ResourceRef, namespace?: string): T[] {
    const r = this.resolve(resource);
    return this.select(r, namespace, () => true).map((o) => clone(o) as T);
  }

  // ---- kubeconfig --------------------------------------------------------------------------

  /** A KubeConfig object pointing at this server (skip-TLS-verify for http, the CA for https). */
  kubeConfig(): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromString(this.kubeconfigText());
    return kc;
  }

  /** The kubeconfig as text (JSON, which is valid YAML). */
  kubeconfigText(): string {
    const cluster: Record<string, unknown> = { server: this.url };
    if (this.caCert) cluster['certificate-authority-data'] = Buffer.from(this.caCert).toString('base64');
    // client-node refuses an http:// server unless TLS verification is explicitly skipped.
    else cluster['insecure-skip-tls-verify'] = true;
    const user: Record<string, unknown> = this.opts.token ? { token: this.opts.token } : {};
    return JSON.stringify(
      {
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'fake', cluster }],
        users: [{ name: 'fake', user }],
        contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'fake' } }],
        'current-context': 'fake',
      },
      null,
      2,
    );
  }

  // ---- HTTP ------------------------------------------------------------------------------

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const query: Record<string, string> = {};
    for (const [k, v] of url.searchParams) query[k] = v;
    const isWatch = query['watch'] === 'true' || query['watch'] === '1';
    const rec: RecordedRequest = {
      method: req.method ?? 'GET',
      path: url.pathname,
      query,
      watch: isWatch,
      ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
    };
    this.requests.push(rec);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const run = () => {
        if (res.destroyed || !this.listening) return;
        try {
          this.route(rec, Buffer.concat(chunks).toString('utf8'), res);
        } catch (err) {
          const e = err instanceof HttpError ? err : new HttpError(500, 'InternalError', String(err));
          sendStatus(res, e);
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

  private route(rec: RecordedRequest, body: string, res: http.ServerResponse): void {
    if (this.opts.token && rec.authorization !== `Bearer ${this.opts.token}`) {
      throw new HttpError(401, 'Unauthorized', 'Unauthorized');
    }
    if (this.forbidden?.(rec)) throw forbiddenError(rec);
    if (rec.path === '/version') {
      sendJson(res, 200, { major: '1', minor: '33', gitVersion: 'v1.33.0-fake', platform: 'linux/amd64' });
      return;
    }
    if (rec.path === '/healthz' || rec.path === '/readyz' || rec.path === '/livez') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
      return;
    }
    const seg = rec.path.split('/').filter(Boolean).map(decodeURIComponent);
    let group: string;
    let version: string;
    let rest: string[];
    if (seg[0] === 'api' && seg.length >= 2) {
      group = '';
      version = seg[1]!;
      rest = seg.slice(2);
    } else if (seg[0] === 'apis' && seg.length >= 3) {
      group = seg[1]!;
      version = seg[2]!;
      rest = seg.slice(3);
    } else {
      throw new HttpError(404, 'NotFound', `the server could not find the requested resource`);
    }
    // rest: [plural] | [plural, name] | ['namespaces', ns, plural] | ['namespaces', ns, plural, name]
    let namespace: string | undefined;
    let plural: string;
    let name: string | undefined;
    if (rest[0] === 'namespaces' && rest.length >= 3) {
      namespace = rest[1];
      plural = rest[2]!;
      name = rest[3];
      if (rest.length > 4) throw new HttpError(404, 'NotFound', 'subresources are not supported by the fake API server');
    } else if (rest.length === 1 || rest.length === 2) {
      plural = rest[0]!;
      name = rest[1];
    } else {
      throw new HttpError(404, 'NotFound', 'the server could not find the requested resource');
    }
    const r = this.resources.get(resourceKey({ group, version, plural }));
    if (!r) throw new HttpError(404, 'NotFound', `the server could not find the requested resource (${plural})`);
    if (namespace !== undefined && !r.namespaced) {
      throw new HttpError(404, 'NotFound', `the server could not find the requested resource`);
    }

    switch (rec.method) {
      case 'GET':
        if (name !== undefined) {
          const o = this.bucket(r, this.namespaceOf(r, namespace), false)?.get(name);
          if (!o) throw this.notFound(r, name);
          sendJson(res, 200, o);
        } else if (rec.watch) {
          this.startWatch(r, namespace, rec.query, res);
        } else {
          const selector = parseSelectors(rec.query['labelSelector'], rec.query['fieldSelector']);
          let all = this.select(r, namespace, selector);
          // Paging: `continue` is "<rv>:<offset>" in base64url; the pages come from the current state.
          let listRv = String(this.rv);
          let offset = 0;
          const token = rec.query['continue'];
          if (token) {
            const [tokRv, tokOffset] = Buffer.from(token, 'base64url').toString('utf8').split(':');
            if (!tokRv || !tokOffset || !/^\d+$/.test(tokOffset)) throw new HttpError(400, 'BadRequest', 'invalid continue token');
            if (Number(tokRv) < this.oldestRetainedRv) {
              throw new HttpError(410, 'Expired', 'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.');
            }
            listRv = tokRv;
            offset = Number(tokOffset);
          }
          const limit = Number(rec.query['limit'] ?? '0');
          const metadata: Record<string, unknown> = { resourceVersion: listRv };
          if (Number.isInteger(limit) && limit > 0) {
            if (offset + limit < all.length) {
              metadata['continue'] = Buffer.from(`${listRv}:${offset + limit}`).toString('base64url');
              metadata['remainingItemCount'] = all.length - offset - limit;
            }
            all = all.slice(offset, offset + limit);
          } else if (offset > 0) all = all.slice(offset);
          const items = all.map((o) => {
            const { apiVersion: _a, kind: _k, ...item } = o;
            return item;
          });
          sendJson(res, 200, { kind: `${r.kind}List`, apiVersion: apiVersionOf(r), metadata, items });
        }
        return;
      case 'POST': {
        if (name !== undefined) throw new HttpError(405, 'MethodNotAllowed', 'POST to a named object is not allowed');
        const obj = parseBody(body);
        if (namespace !== undefined) obj.metadata.namespace = namespace;
        sendJson(res, 201, this.create(r, obj));
        return;
      }
      case 'PUT': {
        if (name === undefined) throw new HttpError(405, 'MethodNotAllowed', 'PUT needs a name');
        const obj = parseBody(body);
        if (obj.metadata.name !== name) throw new HttpError(400, 'BadRequest', 'the name of the object does not match the URL');
        if (namespace !== undefined) obj.metadata.namespace = namespace;
        const cur = this.bucket(r, this.namespaceOf(r, namespace), false)?.get(name);
        if (cur && obj.metadata.resourceVersion && obj.metadata.resourceVersion !== cur.metadata.resourceVersion) {
          throw new HttpError(409, 'Conflict', `Operation cannot be fulfilled on ${r.plural} "${name}": the object has been modified`);
        }
        sendJson(res, 200, this.update(r, obj));
        return;
      }
      case 'PATCH': {
        if (name === undefined) throw new HttpError(405, 'MethodNotAllowed', 'PATCH needs a name');
        const cur = this.bucket(r, this.namespaceOf(r, namespace), false)?.get(name);
        if (!cur) throw this.notFound(r, name);
        let patched: KubeObject;
        const patch: unknown = JSON.parse(body || 'null');
        if (Array.isArray(patch)) {
          try {
            patched = jsonpatch.applyPatch(clone(cur), patch as jsonpatch.Operation[], true, false).newDocument;
          } catch (err) {
            throw new HttpError(422, 'Invalid', `json patch: ${String(err)}`);
          }
        } else {
          patched = mergePatch(clone(cur), patch) as KubeObject;
        }
        patched.metadata.name = name;
        if (namespace !== undefined) patched.metadata.namespace = namespace;
        sendJson(res, 200, this.update(r, patched));
        return;
      }
      case 'DELETE': {
        if (name === undefined) throw new HttpError(405, 'MethodNotAllowed', 'deletecollection is not supported');
        const cur = this.bucket(r, this.namespaceOf(r, namespace), false)?.get(name);
        if (!cur) throw this.notFound(r, name);
        this.delete(r, namespace, name);
        sendJson(res, 200, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details: { name, kind: r.plural, uid: cur.metadata.uid } });
        return;
      }
      default:
        throw new HttpError(405, 'MethodNotAllowed', `method ${rec.method} not allowed`);
    }
  }

  private startWatch(r: ResourceType, namespace: string | undefined, query: Record<string, string>, res: http.ServerResponse): void {
    const selector = parseSelectors(query['labelSelector'], query['fieldSelector']);
    const w: Watcher = {
      resource: r,
      namespace,
      selector,
      bookmarks: query['allowWatchBookmarks'] === 'true',
      res,
    };
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked', 'cache-control': 'no-cache, private' });
    res.flushHeaders();
    const rvText = query['resourceVersion'] ?? '';
    if (rvText === '' || rvText === '0') {
      // "Start at most recent" with the current state first, as synthetic ADDED events.
      for (const o of this.select(r, namespace, selector)) this.writeEvent(w, { type: 'ADDED', object: o });
    } else {
      const from = Number(rvText);
      if (!Number.isInteger(from) || from < 0) {
        this.writeEvent(w, { type: 'ERROR', object: statusBody(new HttpError(400, 'BadRequest', `invalid resourceVersion "${rvText}"`)) });
        res.end();
        return;
      }
      if (from < this.oldestRetainedRv) {
        this.writeEvent(w, { type: 'ERROR', object: this.expiredStatus(rvText) });
        res.end();
        return;
      }
      for (const ev of this.history.get(resourceKey(r)) ?? []) {
        if (ev.rv > from) this.deliver(w, ev);
      }
    }
    this.watchers.add(w);
    res.on('close', () => {
      this.watchers.delete(w);
      if (w.timer) clearTimeout(w.timer);
    });
    const timeout = Number(query['timeoutSeconds'] ?? '');
    if (Number.isFinite(timeout) && timeout > 0) {
      w.timer = setTimeout(() => this.endWatcher(w), timeout * 1000);
      w.timer.unref();
    }
  }

  private expiredStatus(rv: string): KubeObject {
    return statusBody(new HttpError(410, 'Expired', `too old resource version: ${rv} (${this.oldestRetainedRv})`));
  }

  private record(r: ResourceType, ev: StoredEvent): void {
    const key = resourceKey(r);
    let h = this.history.get(key);
    if (!h) this.history.set(key, (h = []));
    h.push(ev);
    if (h.length > 10_000) h.splice(0, h.length - 10_000);
    for (const w of this.watchers) if (w.resource === r) this.deliver(w, ev);
  }

  /** Sends one change to one watcher, applying its namespace and selectors. */
  private deliver(w: Watcher, ev: StoredEvent): void {
    const inScope = (o: KubeObject | undefined) =>
      o !== undefined && (w.namespace === undefined || o.metadata.namespace === w.namespace) && w.selector(o);
    if (ev.type === 'MODIFIED') {
      const now = inScope(ev.object);
      const before = inScope(ev.old);
      if (now && before) this.writeEvent(w, { type: 'MODIFIED', object: ev.object });
      else if (now) this.writeEvent(w, { type: 'ADDED', object: ev.object });
      else if (before) this.writeEvent(w, { type: 'DELETED', object: ev.object });
    } else if (inScope(ev.object)) {
      this.writeEvent(w, { type: ev.type, object: ev.object });
    }
  }

  private writeEvent(w: Watcher, ev: { type: string; object: unknown }): void {
    if (!w.res.destroyed && !w.res.writableEnded) w.res.write(JSON.stringify(ev) + '\n');
  }

  private endWatcher(w: Watcher): void {
    this.watchers.delete(w);
    if (w.timer) clearTimeout(w.timer);
    if (!w.res.writableEnded) w.res.end();
  }

  private closeWatchers(graceful: boolean): void {
    for (const w of [...this.watchers]) {
      if (graceful) this.endWatcher(w);
      else {
        this.watchers.delete(w);
        if (w.timer) clearTimeout(w.timer);
        w.res.destroy();
      }
    }
  }

  private destroySockets(): void {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  private clearDelays(): void {
    for (const t of this.pendingDelays) clearTimeout(t);
    this.pendingDelays.clear();
  }

  // ---- store internals -------------------------------------------------------------------

  private resolve(ref: ResourceRef): ResourceType {
    if (typeof ref !== 'string') {
      const known = this.resources.get(resourceKey(ref));
      if (known) return known;
      this.registerResource(ref);
      return ref;
    }
    const r = this.resources.get(ref) ?? this.resources.get(`/v1/${ref}`);
    if (!r) throw new Error(`fake-apiserver: unknown resource "${ref}" (use registerResource)`);
    return r;
  }

  private namespaceOf(r: ResourceType, ns: string | undefined): string {
    if (!r.namespaced) return '';
    return ns || 'default';
  }

  private bucket(r: ResourceType, ns: string, create: true): Map<string, KubeObject>;
  private bucket(r: ResourceType, ns: string, create: false): Map<string, KubeObject> | undefined;
  private bucket(r: ResourceType, ns: string, create: boolean): Map<string, KubeObject> | undefined {
    const key = resourceKey(r);
    let byNs = this.store.get(key);
    if (!byNs) {
      if (!create) return undefined;
      this.store.set(key, (byNs = new Map()));
    }
    let b = byNs.get(ns);
    if (!b && create) byNs.set(ns, (b = new Map()));
    return b;
  }

  private select(r: ResourceType, namespace: string | undefined, selector: Selector): KubeObject[] {
    const byNs = this.store.get(resourceKey(r));
    if (!byNs) return [];
    const out: KubeObject[] = [];
    for (const [ns, b] of byNs) {
      if (namespace !== undefined && r.namespaced && ns !== namespace) continue;
      for (const o of b.values()) if (selector(o)) out.push(o);
    }
    return out.sort((a, b) =>
      `${a.metadata.namespace ?? ''}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace ?? ''}/${b.metadata.name}`),
    );
  }

  private notFound(r: ResourceType, name: string): HttpError {
    const gr = r.group ? `${r.plural}.${r.group}` : r.plural;
    return new HttpError(404, 'NotFound', `${gr} "${name}" not found`, { name, kind: r.plural, ...(r.group ? { group: r.group } : {}) });
  }
}

/** Writes a kubeconfig file for the server into a fresh temp dir (or `dir`) and returns its path. */
export function kubeconfigFor(server: FakeApiServer, dir?: string): string {
  const d = dir ?? mkdtempSync(path.join(tmpdir(), 'fake-kubeconfig-'));
  const file = path.join(d, 'kubeconfig');
  writeFileSync(file, server.kubeconfigText(), { mode: 0o600 });
  return file;
}

// ---- selectors -------------------------------------------------------------------------------

/** Parses labelSelector and fieldSelector query values into one predicate (AND). Throws 400 on bad syntax. */
export function parseSelectors(labelSelector?: string, fieldSelector?: string): Selector {
  const preds: Selector[] = [];
  if (labelSelector) for (const req of splitSelector(labelSelector)) preds.push(parseLabelRequirement(req));
  if (fieldSelector) for (const req of splitSelector(fieldSelector)) preds.push(parseFieldRequirement(req));
  return (o) => preds.every((p) => p(o));
}

function splitSelector(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur.trim());
      cur = '';
    } else cur += ch;
  }
  if (cur.trim()) out.push(cur.trim());
  return out.filter((x) => x.length > 0);
}

function parseLabelRequirement(req: string): Selector {
  const labels = (o: KubeObject) => o.metadata.labels ?? {};
  let m = /^!\s*([^\s=!(),]+)$/.exec(req);
  if (m) {
    const k = m[1]!;
    return (o) => !Object.hasOwn(labels(o), k);
  }
  m = /^([^\s=!(),]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(req);
  if (m) {
    const k = m[1]!;
    const values = new Set(m[3]!.split(',').map((v) => v.trim()));
    return m[2] === 'in'
      ? (o) => Object.hasOwn(labels(o), k) && values.has(labels(o)[k]!)
      : (o) => !Object.hasOwn(labels(o), k) || !values.has(labels(o)[k]!);
  }
  m = /^([^\s=!(),]+)\s*(==|=|!=)\s*([^\s=!(),]*)$/.exec(req);
  if (m) {
    const k = m[1]!;
    const v = m[3]!;
    return m[2] === '!='
      ? (o) => labels(o)[k] !== v || !Object.hasOwn(labels(o), k)
      : (o) => Object.hasOwn(labels(o), k) && labels(o)[k] === v;
  }
  m = /^([^\s=!(),]+)$/.exec(req);
  if (m) {
    const k = m[1]!;
    return (o) => Object.hasOwn(labels(o), k);
  }
  throw new HttpError(400, 'BadRequest', `unable to parse requirement: ${JSON.stringify(req)}`);
}

function parseFieldRequirement(req: string): Selector {
  const m = /^([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*)$/.exec(req);
  if (!m) throw new HttpError(400, 'BadRequest', `invalid field selector: ${JSON.stringify(req)}`);
  const fieldPath = m[1]!.split('.');
  const v = m[3]!;
  const get = (o: KubeObject): string => {
    let cur: unknown = o;
    for (const p of fieldPath) cur = cur && typeof cur === 'object' ? (cur as Record<string, unknown>)[p] : undefined;
    return cur === undefined || cur === null ? '' : String(cur);
  };
  return m[2] === '!=' ? (o) => get(o) !== v : (o) => get(o) === v;
}

// ---- small helpers ----------------------------------------------------------------------------

function resourceKey(r: { group: string; version: string; plural: string }): string {
  return `${r.group}/${r.version}/${r.plural}`;
}

function apiVersionOf(r: ResourceType): string {
  return r.group ? `${r.group}/${r.version}` : r.version;
}

function forbiddenError(rec: RecordedRequest): HttpError {
  const seg = rec.path.split('/').filter(Boolean);
  const core = seg[0] === 'api';
  const group = core ? '' : (seg[1] ?? '');
  const rest = seg.slice(core ? 2 : 3);
  const nsIdx = rest[0] === 'namespaces' && rest.length >= 3 ? 1 : -1;
  const resource = nsIdx === 1 ? rest[2] : rest[0];
  const named = nsIdx === 1 ? rest.length >= 4 : rest.length >= 2;
  const verb = rec.watch ? 'watch' : rec.method === 'GET' ? (named ? 'get' : 'list') : rec.method === 'POST' ? 'create' : rec.method === 'PUT' ? 'update' : rec.method.toLowerCase();
  const scope = nsIdx === 1 ? `in the namespace "${rest[1]}"` : 'at the cluster scope';
  return new HttpError(
    403,
    'Forbidden',
    `${resource ?? rec.path} is forbidden: User "system:serviceaccount:mesh-guard:mesh-guard" cannot ${verb} resource "${resource ?? ''}" in API group "${group}" ${scope}`,
    { kind: resource ?? '' },
  );
}

function statusBody(e: HttpError): KubeObject {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: e.message,
    reason: e.reason,
    ...(e.details ? { details: e.details } : {}),
    code: e.code,
  };
}

function sendStatus(res: http.ServerResponse, e: HttpError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, e.code, statusBody(e));
}

function sendJson(res: http.ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function parseBody(body: string): KubeObject {
  let obj: unknown;
  try {
    obj = JSON.parse(body);
  } catch {
    throw new HttpError(400, 'BadRequest', 'request body is not JSON');
  }
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new HttpError(400, 'BadRequest', 'request body must be an object');
  const o = obj as KubeObject;
  o.metadata ??= {};
  return o;
}

/** RFC 7386 JSON merge patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (!patch || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> =
    target && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}
