/**
 * The informer-backed ClusterView: Namespaces, the Dynatrace ActiveGate Services and the
 * MutatingWebhookConfigurations, kept in memory by @kubernetes/client-node list+watch informers,
 * answered synchronously from memory at admission time (a namespace miss costs one bounded live
 * GET, deduplicated and cached).
 *
 * The webhook configurations are for peer discovery (webhooks.ts) and are kept trimmed to what
 * matching reads (no caBundles, no CEL). Their informer does not decide the view's state: without
 * RBAC for them (an older install) the view still syncs, and discovery answers "unknown".
 *
 * What client-node's ListWatch (1.4, dist/cache.js + watch.js) does and does not do, and what this
 * module adds:
 * - A watch stream that ends cleanly is re-watched from the last resourceVersion; an ERROR event
 *   with code 410 (or a 410 answer) clears the resourceVersion and relists. Kept as is.
 * - Any other failure (list error, refused connection, "Premature close" of a dropped stream,
 *   non-200 watch answer) fires the `error` callback and the informer STOPS for good
 *   (kubernetes-client/javascript#836, #1933). Added: restart with capped exponential backoff + jitter.
 * - The watch request has no timeout (watch.js builds a 30 s signal and then overwrites it), so a
 *   half-open connection can go stale silently (#364, #958). Added: `timeoutSeconds` of 5-10 min
 *   (client-go's reflector does the same), so the server ends every watch and it is renewed.
 * - `allowWatchBookmarks` is not sent. Added (ListWatch already records a BOOKMARK's resourceVersion).
 * - An exception thrown before the fetch (e.g. unreadable token file) rejects an un-awaited promise
 *   inside ListWatch. Added: caught and turned into an `error` (then restart).
 * - A list has no timeout. Added: a 30 s bound through a request middleware that sets an AbortSignal.
 * - Whether a (re)connection worked is not reported (`connect` fires before trying). Added: the
 *   informer counts as healthy once a watch request is answered 200 after its list.
 */
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import {
  AdmissionregistrationV1Api,
  AppsV1Api,
  CoreV1Api,
  KubeConfig,
  ListWatch,
  Observable,
  Watch,
  type ConfigurationOptions,
  type KubernetesListObject,
  type KubernetesObject,
  type RequestContext,
  type ResponseContext,
  type V1MutatingWebhookConfiguration,
  type V1Namespace,
  type V1Service,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { Gauge, type Registry } from 'prom-client';
import type { Config } from '../config/schema.js';
import { offlineClusterView, type ClusterView, type ClusterViewState, type NamespaceLookup } from './view.js';
import {
  knownDiscovery,
  summarizeConfiguration,
  trimConfiguration,
  type WebhookConfigurationSummary,
  type WebhookDiscovery,
} from './webhooks.js';
import {
  describeRef,
  PARSERS,
  settingsKey,
  settingsLookupOf,
  wantedSettings,
  type PeerSettings,
  type SettingsLookup,
  type SettingsRef,
} from './peer-settings.js';
import { pagedList, type PageParams } from './paged-list.js';
import { trimNamespace, trimService } from './trim.js';

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
export const SYNCED_METRIC = 'mesh_guard_cluster_view_synced';

/** Internal timings; tests shorten them. */
export interface ClusterViewTiming {
  /** First restart delay after an informer error; doubles per consecutive error. */
  readonly backoffInitialMs: number;
  readonly backoffMaxMs: number;
  /** A broken informer must stay broken this long before the view turns degraded (no flapping on a single drop). */
  readonly degradeAfterMs: number;
  /** Bound for one list request. */
  readonly listTimeoutMs: number;
  /** Watch `timeoutSeconds` is drawn from [min, max]. */
  readonly watchTimeoutSeconds: readonly [number, number];
  /** How long a live-GET answer is reused when the informer has not (yet) seen the namespace. */
  readonly liveKnownTtlMs: number;
  readonly liveAbsentTtlMs: number;
  readonly liveUnknownTtlMs: number;
}

export const DEFAULT_TIMING: ClusterViewTiming = {
  backoffInitialMs: 500,
  backoffMaxMs: 30_000,
  degradeAfterMs: 2_000,
  listTimeoutMs: 30_000,
  watchTimeoutSeconds: [300, 600],
  liveKnownTtlMs: 30_000,
  liveAbsentTtlMs: 5_000,
  liveUnknownTtlMs: 5_000,
};

export interface ClusterViewDeps {
  readonly log: Logger;
  readonly registry: Registry;
  /** Defaults to process.env. Read: KUBECONFIG, KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT. */
  readonly env?: NodeJS.ProcessEnv;
  /** Use this config instead of looking at the environment (tests, CLI). */
  readonly kubeConfig?: KubeConfig;
  /** Where the in-cluster service-account files live (tests). */
  readonly serviceAccountDir?: string;
  readonly timing?: Partial<ClusterViewTiming>;
}

export type ConnectionSource = 'in-cluster' | 'kubeconfig' | 'provided';
export type Connection =
  | { readonly kind: 'on'; readonly kc: KubeConfig; readonly source: ConnectionSource }
  | { readonly kind: 'off'; readonly reason: string };

/**
 * Finds the cluster connection: an explicit KUBECONFIG wins (as in client-node's loadFromDefault and
 * controller-runtime), else the in-cluster service account. ~/.kube/config is deliberately NOT used:
 * a plain `npm start` on a laptop runs without a cluster.
 */
export function resolveConnection(
  env: NodeJS.ProcessEnv,
  serviceAccountDir: string = SERVICE_ACCOUNT_DIR,
): Connection {
  const kubeconfig = env['KUBECONFIG'];
  if (kubeconfig) {
    const files = kubeconfig.split(path.delimiter).filter((f) => f && existsSync(f));
    if (files.length === 0) return { kind: 'off', reason: 'KUBECONFIG is set but names no existing file' };
    try {
      return { kind: 'on', kc: loadKubeconfigFiles(files), source: 'kubeconfig' };
    } catch (err) {
      return { kind: 'off', reason: `KUBECONFIG could not be loaded: ${errorText(err)}` };
    }
  }
  const host = env['KUBERNETES_SERVICE_HOST'];
  const port = env['KUBERNETES_SERVICE_PORT'];
  const tokenFile = path.join(serviceAccountDir, 'token');
  if (host && port && existsSync(tokenFile)) {
    const kc = new KubeConfig();
    const server = `https://${net.isIPv6(host) ? `[${host}]` : host}:${port}`;
    kc.loadFromOptions({
      clusters: [{ name: 'in-cluster', server, caFile: path.join(serviceAccountDir, 'ca.crt'), skipTLSVerify: false }],
      // The tokenFile auth provider re-reads the (rotating, projected) token when it expires.
      users: [{ name: 'in-cluster', authProvider: { name: 'tokenFile', config: { tokenFile } } }],
      contexts: [{ name: 'in-cluster', cluster: 'in-cluster', user: 'in-cluster' }],
      currentContext: 'in-cluster',
    });
    return { kind: 'on', kc, source: 'in-cluster' };
  }
  if (host && port) return { kind: 'off', reason: 'KUBERNETES_SERVICE_HOST is set but there is no service-account token' };
  return { kind: 'off', reason: 'no in-cluster service account and no KUBECONFIG' };
}

/** Loads one or more kubeconfig files; like kubectl, the first definition of a name wins. */
function loadKubeconfigFiles(files: readonly string[]): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(files[0]!);
  if (files.length === 1) return kc;
  const clusters = [...kc.getClusters()];
  const users = [...kc.getUsers()];
  const contexts = [...kc.getContexts()];
  let current = kc.getCurrentContext();
  for (const f of files.slice(1)) {
    const more = new KubeConfig();
    more.loadFromFile(f);
    for (const c of more.getClusters()) if (!clusters.some((x) => x.name === c.name)) clusters.push(c);
    for (const u of more.getUsers()) if (!users.some((x) => x.name === u.name)) users.push(u);
    for (const c of more.getContexts()) if (!contexts.some((x) => x.name === c.name)) contexts.push(c);
    if (!current) current = more.getCurrentContext();
  }
  const merged = new KubeConfig();
  merged.loadFromOptions({ clusters, users, contexts, currentContext: current });
  return merged;
}

/**
 * Builds the cluster view. Without a cluster (or with `cluster.mode: off`) it logs one info line and
 * returns `offlineClusterView`. Never throws for connection problems: they show as state 'degraded'.
 */
export function createClusterView(cfg: Config['cluster'], deps: ClusterViewDeps): ClusterView {
  const log = deps.log.child({ component: 'cluster-view' });
  if (cfg.mode === 'off') {
    log.info({ clusterView: 'off' }, 'cluster view is off (cluster.mode: off); rules that need namespace labels or ActiveGate IPs use their fallbacks');
    return offlineClusterView;
  }
  const conn: Connection = deps.kubeConfig
    ? { kind: 'on', kc: deps.kubeConfig, source: 'provided' }
    : resolveConnection(deps.env ?? process.env, deps.serviceAccountDir);
  if (conn.kind === 'off') {
    log.info({ clusterView: 'off' }, `cluster view is off: ${conn.reason}; rules that need namespace labels or ActiveGate IPs use their fallbacks`);
    return offlineClusterView;
  }
  if (!conn.kc.getCurrentCluster()) {
    log.info({ clusterView: 'off' }, 'cluster view is off: the kubeconfig has no current cluster; rules use their fallbacks');
    return offlineClusterView;
  }
  return new KubeClusterView(cfg, conn.kc, conn.source, log, deps.registry, { ...DEFAULT_TIMING, ...deps.timing });
}

// ---------------------------------------------------------------------------------------------

interface LiveEntry {
  readonly answer: Promise<NamespaceLookup>;
  /** The answer, once the lookup has settled. */
  settled?: NamespaceLookup;
  /** ms timestamp; Infinity while the lookup is in flight. */
  expires: number;
}

const MAX_LIVE_ENTRIES = 1024;
const ABSENT: NamespaceLookup = Object.freeze({ state: 'absent' });

/** A Namespace's labels as a lookup answer: a frozen map with no prototype, values as strings. */
function knownLookup(ns: V1Namespace): NamespaceLookup {
  const labels: Record<string, string> = Object.create(null);
  for (const [k, v] of Object.entries(ns.metadata?.labels ?? {})) labels[k] = String(v);
  return Object.freeze({ state: 'known', labels: Object.freeze(labels) });
}

class KubeClusterView implements ClusterView {
  private stateValue: ClusterViewState = 'syncing';
  /** Informer-backed answers: one frozen answer per namespace, reused by every admission. */
  private readonly namespaces = new Map<string, NamespaceLookup>();
  /** Live-GET answers for namespaces the informer has not seen. */
  private readonly live = new Map<string, LiveEntry>();
  private activeGateIPs: readonly string[] | null = null;
  /** One summary per webhook configuration; the discovery answer is rebuilt from them after a change. */
  private readonly webhookConfigs = new Map<string, WebhookConfigurationSummary>();
  private discovery: WebhookDiscovery | undefined;
  private forbiddenWarned = false;
  private readonly nsInformer: ManagedInformer<V1Namespace>;
  private readonly svcInformer: ManagedInformer<V1Service>;
  private readonly mwcInformer: ManagedInformer<V1MutatingWebhookConfiguration>;
  private readonly settingsWatcher: SettingsWatcher;
  private readonly core: CoreV1Api;
  private readonly gauge: Gauge;
  private readonly readyPromise: Promise<void>;
  private resolveReady!: () => void;
  private syncTimer: NodeJS.Timeout | undefined;
  private degradeTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly cfg: Config['cluster'],
    kc: KubeConfig,
    source: ConnectionSource,
    private readonly log: Logger,
    private readonly registry: Registry,
    private readonly timing: ClusterViewTiming,
  ) {
    this.core = kc.makeApiClient(CoreV1Api);
    this.readyPromise = new Promise<void>((resolve) => (this.resolveReady = resolve));

    registry.removeSingleMetric(SYNCED_METRIC);
    this.gauge = new Gauge({
      name: SYNCED_METRIC,
      help: '1 when the cluster view (namespaces, ActiveGate Services) is synced with the API server, 0 while syncing or degraded',
      registers: [registry],
    });
    this.gauge.set(0);

    const hooks: InformerHooks = {
      isClosed: () => this.closed,
      onHealthChange: () => this.evaluate(),
      log,
      timing,
    };
    this.nsInformer = new ManagedInformer<V1Namespace>('namespaces', kc, '/api/v1/namespaces', (page, o) => this.core.listNamespace(page, o), undefined, hooks, trimNamespace);
    const agNs = cfg.activeGateNamespace;
    const selector = cfg.activeGateLabelSelector;
    this.svcInformer = agNs
      ? new ManagedInformer<V1Service>(
          'activegate-services',
          kc,
          `/api/v1/namespaces/${encodeURIComponent(agNs)}/services`,
          (page, o) => this.core.listNamespacedService({ namespace: agNs, labelSelector: selector, ...page }, o),
          selector,
          hooks,
          trimService,
        )
      : new ManagedInformer<V1Service>(
          'activegate-services',
          kc,
          '/api/v1/services',
          (page, o) => this.core.listServiceForAllNamespaces({ labelSelector: selector, ...page }, o),
          selector,
          hooks,
          trimService,
        );

    const admission = kc.makeApiClient(AdmissionregistrationV1Api);
    this.mwcInformer = new ManagedInformer<V1MutatingWebhookConfiguration>(
      'mutatingwebhookconfigurations',
      kc,
      '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations',
      (page, o) => admission.listMutatingWebhookConfiguration(page, o),
      undefined,
      hooks,
      trimConfiguration,
    );

    const lw = this.nsInformer.lw;
    lw.on('add', (ns) => this.setNamespace(ns));
    lw.on('update', (ns) => this.setNamespace(ns));
    lw.on('delete', (ns) => {
      const name = ns.metadata?.name;
      if (name) {
        this.namespaces.delete(name);
        this.live.delete(name);
      }
    });
    const recompute = () => this.recomputeActiveGateIPs();
    this.svcInformer.lw.on('add', recompute);
    this.svcInformer.lw.on('update', recompute);
    this.svcInformer.lw.on('delete', recompute);
    const setConfig = (c: V1MutatingWebhookConfiguration) => {
      const summary = summarizeConfiguration(c);
      if (summary) this.webhookConfigs.set(summary.name, summary);
      this.discovery = undefined;
    };
    this.mwcInformer.lw.on('add', setConfig);
    this.mwcInformer.lw.on('update', setConfig);
    this.mwcInformer.lw.on('delete', (c) => {
      if (c.metadata?.name) this.webhookConfigs.delete(c.metadata.name);
      this.discovery = undefined;
    });
    this.settingsWatcher = new SettingsWatcher(kc, hooks, () => this.mutatingWebhooks());
    for (const event of ['add', 'update', 'delete'] as const) this.mwcInformer.lw.on(event, () => this.settingsWatcher.reconcileSoon());

    log.info(
      { clusterView: 'syncing', source, activeGateNamespace: agNs || '(all)', activeGateLabelSelector: selector },
      `cluster view: connecting (${source === 'in-cluster' ? 'in-cluster service account' : source === 'kubeconfig' ? 'KUBECONFIG' : 'provided kubeconfig'})`,
    );
    this.syncTimer = setTimeout(() => this.onSyncTimeout(), cfg.syncTimeoutMs);
    this.nsInformer.start();
    this.svcInformer.start();
    this.mwcInformer.start();
  }

  get state(): ClusterViewState {
    return this.stateValue;
  }

  namespaceLabels(name: string): NamespaceLookup | Promise<NamespaceLookup> {
    const known = this.namespaces.get(name);
    if (known !== undefined) return known;
    const cached = this.live.get(name);
    if (cached !== undefined && cached.expires > Date.now()) return cached.settled ?? cached.answer;
    if (this.closed) return { state: 'unknown', reason: 'cluster view is closed' };
    return this.liveLookup(name);
  }

  activeGateServiceIPs(): readonly string[] | null {
    return this.activeGateIPs;
  }

  /** Known once listed; afterwards served from memory through outages, like namespace labels. */
  mutatingWebhooks(): WebhookDiscovery {
    if (this.discovery) return this.discovery;
    const mwc = this.mwcInformer;
    if (!mwc.synced) {
      return {
        state: 'unknown',
        reason:
          mwc.lastErrorCode === 403 ? `not allowed to list mutatingwebhookconfigurations (${mwc.lastError})`
          : mwc.lastError ? `mutatingwebhookconfigurations could not be listed (${mwc.lastError})`
          : 'mutatingwebhookconfigurations not listed yet',
      };
    }
    this.discovery = knownDiscovery(this.webhookConfigs.values());
    return this.discovery;
  }

  /** The peers' settings objects the discovered webhooks point at, from memory (peer-settings.ts). */
  peerSettings(): PeerSettings {
    return this.settingsWatcher.snapshot();
  }

  ready(): Promise<void> {
    return this.readyPromise;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.syncTimer);
    clearTimeout(this.degradeTimer);
    this.syncTimer = this.degradeTimer = undefined;
    await Promise.all([this.nsInformer.stop(), this.svcInformer.stop(), this.mwcInformer.stop(), this.settingsWatcher.stop()]);
    this.resolveReady();
    if (this.registry.getSingleMetric(SYNCED_METRIC) === this.gauge) this.registry.removeSingleMetric(SYNCED_METRIC);
  }

  // ---- namespaces ---------------------------------------------------------------------------

  private setNamespace(ns: V1Namespace): void {
    const name = ns.metadata?.name;
    if (!name) return;
    this.namespaces.set(name, knownLookup(ns));
    this.live.delete(name);
  }

  /** One bounded GET; concurrent callers share it; the answer is cached for a short while. */
  private liveLookup(name: string): Promise<NamespaceLookup> {
    const entry: LiveEntry = { answer: this.fetchNamespace(name), expires: Infinity };
    if (this.live.size >= MAX_LIVE_ENTRIES) {
      const oldest = this.live.keys().next();
      if (!oldest.done) this.live.delete(oldest.value);
    }
    this.live.set(name, entry);
    void entry.answer.then((a) => {
      entry.settled = a;
      const ttl = a.state === 'known' ? this.timing.liveKnownTtlMs : a.state === 'absent' ? this.timing.liveAbsentTtlMs : this.timing.liveUnknownTtlMs;
      entry.expires = Date.now() + ttl;
    });
    return entry.answer;
  }

  private async fetchNamespace(name: string): Promise<NamespaceLookup> {
    const bound = this.cfg.liveLookupTimeoutMs;
    const ctrl = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<NamespaceLookup>((resolve) => {
      timer = setTimeout(() => {
        ctrl.abort();
        resolve({ state: 'unknown', reason: `namespace lookup timed out after ${bound} ms` });
      }, bound);
    });
    const request = this.core.readNamespace({ name }, withSignal(ctrl.signal)).then(
      (ns): NamespaceLookup => {
        // An informer event may have arrived meanwhile; it is at least as fresh.
        const fromInformer = this.namespaces.get(name);
        if (fromInformer) return fromInformer;
        return knownLookup(ns);
      },
      (err: unknown): NamespaceLookup => {
        if (statusCode(err) === 404) return ABSENT;
        return { state: 'unknown', reason: `namespace lookup failed: ${errorText(err)}` };
      },
    );
    try {
      return await Promise.race([request, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  // ---- ActiveGate Services ------------------------------------------------------------------

  private recomputeActiveGateIPs(): void {
    this.activeGateIPs = clusterIPsOf(this.svcInformer.lw.list());
  }

  // ---- state --------------------------------------------------------------------------------

  private get informersHealthy(): boolean {
    return this.nsInformer.healthy && this.svcInformer.healthy;
  }

  private evaluate(): void {
    if (this.closed) return;
    const healthy = this.informersHealthy;
    if (this.svcInformer.synced && this.activeGateIPs === null) this.recomputeActiveGateIPs();
    this.warnIfWebhooksForbidden();
    if (this.mwcInformer.synced) this.settingsWatcher.reconcileSoon();
    if (this.stateValue === 'syncing') {
      // The first sync waits for the webhook configurations too, but only until their first answer:
      // a refusal (no RBAC for them) must not hold the view back.
      const webhooksSettled = this.mwcInformer.synced || this.mwcInformer.lastError !== undefined;
      if (healthy && webhooksSettled) {
        clearTimeout(this.syncTimer);
        this.syncTimer = undefined;
        this.setState('synced');
        this.resolveReady();
      }
      return;
    }
    if (healthy) {
      clearTimeout(this.degradeTimer);
      this.degradeTimer = undefined;
      this.setState('synced');
    } else if (this.stateValue === 'synced' && this.degradeTimer === undefined) {
      this.degradeTimer = setTimeout(() => {
        this.degradeTimer = undefined;
        if (!this.closed && !this.informersHealthy) this.setState('degraded');
      }, this.timing.degradeAfterMs);
    }
  }

  private warnIfWebhooksForbidden(): void {
    if (this.forbiddenWarned || !refusedForGood(this.mwcInformer)) return;
    this.forbiddenWarned = true;
    this.log.warn(
      { clusterView: 'webhooks-forbidden', err: this.mwcInformer.lastError },
      'cluster view: not allowed to list mutatingwebhookconfigurations (grant get/list/watch, see deploy/base/rbac.yaml); peer predictions use the config mirrors',
    );
  }

  private onSyncTimeout(): void {
    this.syncTimer = undefined;
    if (this.closed || this.stateValue !== 'syncing') return;
    this.setState('degraded', `first sync did not finish within ${this.cfg.syncTimeoutMs} ms`);
    this.resolveReady();
  }

  private setState(next: ClusterViewState, why?: string): void {
    if (this.stateValue === next) return;
    this.stateValue = next;
    this.gauge.set(next === 'synced' ? 1 : 0);
    if (next === 'synced') {
      this.log.info(
        {
          clusterView: 'synced',
          namespaces: this.namespaces.size,
          activeGateIPs: this.activeGateIPs?.length ?? 0,
          webhookConfigurations: this.mwcInformer.synced ? this.webhookConfigs.size : null,
        },
        'cluster view synced',
      );
    } else if (next === 'degraded') {
      const problems = [this.nsInformer, this.svcInformer].filter((i) => !i.healthy).map((i) => `${i.name}: ${i.lastError ?? 'not connected yet'}`);
      this.log.warn(
        { clusterView: 'degraded', problems },
        `cluster view degraded (${why ?? 'watch broken'}); serving cached answers, unknown namespaces use rule fallbacks; retrying with backoff`,
      );
    }
  }
}

/** ClusterIPs of Services (IPv4 and IPv6), without "None"/"", deduplicated, ordered by namespace/name. */
export function clusterIPsOf(services: readonly V1Service[]): readonly string[] {
  const sorted = [...services].sort((a, b) => {
    const ka = `${a.metadata?.namespace ?? ''}/${a.metadata?.name ?? ''}`;
    const kb = `${b.metadata?.namespace ?? ''}/${b.metadata?.name ?? ''}`;
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  });
  const out: string[] = [];
  for (const s of sorted) {
    const spec = s.spec;
    const ips = spec?.clusterIPs && spec.clusterIPs.length > 0 ? spec.clusterIPs : spec?.clusterIP ? [spec.clusterIP] : [];
    for (const ip of ips) {
      if (ip && ip !== 'None' && net.isIP(ip) !== 0 && !out.includes(ip)) out.push(ip);
    }
  }
  return Object.freeze(out);
}

// ---- informer management ----------------------------------------------------------------------

interface InformerHooks {
  isClosed(): boolean;
  onHealthChange(): void;
  readonly log: Logger;
  readonly timing: ClusterViewTiming;
}

/** One page of an informer's list (paged-list.ts); the informer trims each page before the next. */
type ListCall<T extends KubernetesObject> = (page: PageParams, options: ConfigurationOptions) => Promise<KubernetesListObject<T>>;

/** What GuardedWatch needs from its informer. */
interface WatchOwner {
  isClosed(): boolean;
  spinDelayMs(): number;
  sleep(ms: number): Promise<void>;
  watchParams(): { allowWatchBookmarks: boolean; timeoutSeconds: number };
  onWatchConnected(): void;
  onWatchEnded(err: unknown, startedAt: number): void;
  /** Applied to each watched object before the cache sees it. */
  readonly trim?: (obj: any) => any;
}

/** A client-node ListWatch plus what it lacks: restart with backoff, health, bounded requests. */
/**
 * A 403 is missing RBAC, except briefly after an API server (re)start: it serves requests before
 * its RBAC authorizer has loaded the roles and denies until then (seen against kube-apiserver
 * v1.36.3 in test/e2e/cluster-view.e2e.ts, a second or two after the restart). So an informer that
 * has listed before warns only after this many 403s in a row (at least 3.5 s of backoff, more
 * after an outage); one that never listed warns at the first 403.
 */
const REFUSALS_ONCE_LISTED = 4;

export function refusedForGood(informer: Pick<ManagedInformer<KubernetesObject>, 'lastErrorCode' | 'synced' | 'refusals'>): boolean {
  return informer.lastErrorCode === 403 && (!informer.synced || informer.refusals >= REFUSALS_ONCE_LISTED);
}

class ManagedInformer<T extends KubernetesObject> implements WatchOwner {
  readonly lw: ListWatch<T>;
  /** A watch was answered 200 after a successful list at least once. */
  synced = false;
  /** The last list/watch attempt worked and no error since. */
  healthy = false;
  lastError: string | undefined;
  /** HTTP status of the last error, when it had one (403: RBAC). */
  lastErrorCode: number | undefined;
  private failures = 0;
  /** 403s in a row, since the last success or other error. */
  refusals = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private readonly inflight = new Set<AbortController>();
  private readonly sleepers = new Set<{ timer: NodeJS.Timeout; wake: () => void }>();
  private shortWatches = 0;

  constructor(
    readonly name: string,
    kc: KubeConfig,
    apiPath: string,
    list: ListCall<T>,
    labelSelector: string | undefined,
    private readonly hooks: InformerHooks,
    /** What of each object the cache keeps (metadata.name, namespace and resourceVersion at least); all by default. */
    readonly trim?: (obj: T) => T,
    fieldSelector?: string,
  ) {
    const listFn = async (): Promise<KubernetesListObject<T>> => {
      const ctrl = new AbortController();
      this.inflight.add(ctrl);
      const timer = setTimeout(() => ctrl.abort(), hooks.timing.listTimeoutMs);
      try {
        const options = withSignal(ctrl.signal);
        return await pagedList((page) => list(page, options), trim ?? ((o) => o));
      } finally {
        clearTimeout(timer);
        this.inflight.delete(ctrl);
      }
    };
    this.lw = new ListWatch<T>(apiPath, new GuardedWatch(kc, this), listFn, false, labelSelector, fieldSelector);
    this.lw.on('error', (err: unknown) => this.onError(err));
  }

  start(): void {
    this.lw.start().catch((err: unknown) => this.onError(err));
  }

  async stop(): Promise<void> {
    clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    for (const s of this.sleepers) {
      clearTimeout(s.timer);
      s.wake();
    }
    this.sleepers.clear();
    for (const c of this.inflight) c.abort();
    await this.lw.stop();
  }

  // Called by GuardedWatch.
  watchParams(): { allowWatchBookmarks: boolean; timeoutSeconds: number } {
    const [min, max] = this.hooks.timing.watchTimeoutSeconds;
    return { allowWatchBookmarks: true, timeoutSeconds: Math.round(min + Math.random() * (max - min)) };
  }

  onWatchConnected(): void {
    this.failures = 0;
    this.refusals = 0;
    this.lastError = undefined;
    this.lastErrorCode = undefined;
    const changed = !this.healthy || !this.synced;
    this.healthy = true;
    this.synced = true;
    if (changed) this.hooks.onHealthChange();
  }

  onWatchEnded(err: unknown, startedAt: number): void {
    if (err) return; // handled through the `error` callback
    this.shortWatches = Date.now() - startedAt < 1000 ? this.shortWatches + 1 : 0;
  }

  /** Delay before the next watch when the server keeps ending watches right away (no hot loop). */
  spinDelayMs(): number {
    return this.shortWatches < 2 ? 0 : this.backoffMs(this.shortWatches - 2);
  }

  /** Exponential backoff: the initial delay doubled per step, up to the maximum. */
  private backoffMs(step: number): number {
    const { backoffInitialMs, backoffMaxMs } = this.hooks.timing;
    return Math.min(backoffMaxMs, backoffInitialMs * 2 ** Math.min(step, 16));
  }

  isClosed(): boolean {
    return this.hooks.isClosed();
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const s = {
        timer: setTimeout(() => {
          this.sleepers.delete(s);
          resolve();
        }, ms),
        wake: resolve,
      };
      this.sleepers.add(s);
    });
  }

  private onError(err: unknown): void {
    if (this.hooks.isClosed()) return;
    this.failures++;
    this.lastError = errorText(err);
    this.lastErrorCode = statusCode(err);
    this.refusals = this.lastErrorCode === 403 ? this.refusals + 1 : 0;
    this.healthy = false;
    const base = this.backoffMs(this.failures - 1);
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    this.hooks.log.debug({ informer: this.name, err: this.lastError, retryInMs: delay, failures: this.failures }, 'cluster view: list/watch failed, restarting');
    if (this.restartTimer === undefined) {
      this.restartTimer = setTimeout(() => {
        this.restartTimer = undefined;
        if (!this.hooks.isClosed()) this.start();
      }, delay);
    }
    // Also when it was not healthy: a first failure settles a first sync that waits for this
    // informer's first answer, and a refusal (403) gets its warning. evaluate() is idempotent.
    this.hooks.onHealthChange();
  }
}

/** client-node's Watch with bookmarks, a server-side timeout, connect reporting and no unhandled rejections. */
class GuardedWatch extends Watch {
  constructor(
    kc: KubeConfig,
    private readonly owner: WatchOwner,
  ) {
    super(kc);
  }

  override async watch(
    apiPath: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: any, watchObj?: any) => void,
    done: (err: any) => void,
  ): Promise<AbortController> {
    const owner = this.owner;
    const spin = owner.spinDelayMs();
    if (spin > 0) await owner.sleep(spin);
    if (owner.isClosed()) return new AbortController(); // stopped while listing/sleeping: end the loop quietly
    const startedAt = Date.now();
    let failed = false;
    const wrappedDone = (err: unknown) => {
      if (err) failed = true;
      owner.onWatchEnded(err, startedAt);
      done(err);
    };
    const trim = owner.trim;
    const trimmed = trim
      ? (phase: string, apiObj: any, watchObj?: any) =>
          callback(phase, phase === 'ADDED' || phase === 'MODIFIED' || phase === 'DELETED' ? trim(apiObj) : apiObj, watchObj)
      : callback;
    try {
      const ctrl = await super.watch(apiPath, { ...queryParams, ...owner.watchParams() }, trimmed, wrappedDone);
      if (!failed && !owner.isClosed()) owner.onWatchConnected();
      return ctrl;
    } catch (err) {
      if (!failed) wrappedDone(err);
      return new AbortController();
    }
  }
}

// ---- peer settings ----------------------------------------------------------------------------

/** A settings object as the cache keeps it: its metadata and what peer-settings.ts parsed from it. */
interface TrimmedSettings extends KubernetesObject {
  readonly parsed: ReturnType<(typeof PARSERS)[keyof typeof PARSERS]>;
}

/**
 * One informer per settings object the discovered peer webhooks point at (Istio's injector and mesh
 * ConfigMaps per revision, Consul's connect-injector Deployment), each a list+watch in the object's
 * namespace with `fieldSelector=metadata.name=<name>`, which the API server authorizes as a request
 * for that one name (apiserver `pkg/endpoints/request/requestinfo.go`), so RBAC can grant exactly
 * these names. The cache keeps only the parsed settings. These informers never change the view's
 * state: until one answers, or when it is refused, the predictions use the config mirrors.
 */
class SettingsWatcher {
  private readonly informers = new Map<string, { readonly ref: SettingsRef; readonly informer: ManagedInformer<TrimmedSettings> }>();
  private readonly warned = new Set<string>();
  private readonly core: CoreV1Api;
  private readonly apps: AppsV1Api;
  private cached: PeerSettings | undefined;
  private pending = false;
  private stopped = false;

  constructor(
    private readonly kc: KubeConfig,
    private readonly hooks: InformerHooks,
    private readonly discovery: () => WebhookDiscovery,
  ) {
    this.core = kc.makeApiClient(CoreV1Api);
    this.apps = kc.makeApiClient(AppsV1Api);
  }

  /** After a webhook configuration changes: start informers for new objects, stop those no longer pointed at. */
  reconcileSoon(): void {
    if (this.pending || this.stopped) return;
    this.pending = true;
    setImmediate(() => {
      this.pending = false;
      if (!this.stopped && !this.hooks.isClosed()) this.reconcile();
    });
  }

  private reconcile(): void {
    const wanted = new Map(wantedSettings(this.discovery()).map((r) => [settingsKey(r), r]));
    for (const [key, { informer }] of this.informers) {
      if (wanted.has(key)) continue;
      this.informers.delete(key);
      void informer.stop();
    }
    for (const [key, ref] of wanted) {
      if (this.informers.has(key)) continue;
      const informer = this.informerFor(ref);
      this.informers.set(key, { ref, informer });
      informer.start();
    }
    this.cached = undefined;
  }

  private informerFor(ref: SettingsRef): ManagedInformer<TrimmedSettings> {
    const parse = PARSERS[ref.kind];
    const trim = (obj: TrimmedSettings): TrimmedSettings => {
      const md = obj.metadata ?? {};
      return { metadata: { name: md.name, namespace: md.namespace, uid: md.uid, resourceVersion: md.resourceVersion }, parsed: parse(obj) } as TrimmedSettings;
    };
    const fieldSelector = `metadata.name=${ref.name}`;
    const { namespace } = ref;
    const onHealthChange = () => {
      this.cached = undefined;
      this.warnIfForbidden(ref);
    };
    const hooks: InformerHooks = { ...this.hooks, onHealthChange };
    // The list answers full Deployments / ConfigMaps; ManagedInformer trims every item before the cache sees it.
    type FullList = Promise<KubernetesListObject<KubernetesObject>>;
    const [apiPath, list]: [string, (page: PageParams, o: ConfigurationOptions) => FullList] =
      ref.kind === 'consul-injector'
        ? [`/apis/apps/v1/namespaces/${namespace}/deployments`, (page, o) => this.apps.listNamespacedDeployment({ namespace, fieldSelector, ...page }, o)]
        : [`/api/v1/namespaces/${namespace}/configmaps`, (page, o) => this.core.listNamespacedConfigMap({ namespace, fieldSelector, ...page }, o)];
    const informer = new ManagedInformer<TrimmedSettings>(describeRef(ref), this.kc, apiPath, list as ListCall<TrimmedSettings>, undefined, hooks, trim, fieldSelector);
    for (const event of ['add', 'update', 'delete'] as const) informer.lw.on(event, () => (this.cached = undefined));
    return informer;
  }

  private warnIfForbidden(ref: SettingsRef): void {
    const key = settingsKey(ref);
    const informer = this.informers.get(key)?.informer;
    if (!informer || !refusedForGood(informer) || this.warned.has(key)) return;
    this.warned.add(key);
    this.hooks.log.warn(
      { clusterView: 'settings-forbidden', object: describeRef(ref), err: informer.lastError },
      `cluster view: not allowed to read ${describeRef(ref)} (add "${ref.name}" to the resourceNames in deploy/base/rbac.yaml); predictions for it use the config mirrors`,
    );
  }

  snapshot(): PeerSettings {
    if (this.cached) return this.cached;
    const out = new Map<string, SettingsLookup>();
    for (const [key, { ref, informer }] of this.informers) out.set(key, lookupOf(ref, informer));
    this.cached = out;
    return out;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all([...this.informers.values()].map(({ informer }) => informer.stop()));
  }
}

function lookupOf(ref: SettingsRef, informer: ManagedInformer<TrimmedSettings>): SettingsLookup {
  const what = describeRef(ref);
  if (!informer.synced) {
    return {
      state: 'unknown',
      reason:
        informer.lastErrorCode === 403 ? `not allowed to read ${what} (${informer.lastError})`
        : informer.lastError ? `${what} could not be read (${informer.lastError})`
        : `${what} not read yet`,
    };
  }
  return settingsLookupOf(ref, informer.lw.list().find((o) => o.metadata?.name === ref.name)?.parsed);
}

// ---- helpers ----------------------------------------------------------------------------------

/** Per-request options that attach an AbortSignal (ObjectParamAPI takes Observable-style middleware). */
function withSignal(signal: AbortSignal): ConfigurationOptions {
  return {
    middleware: [
      {
        pre: (ctx: RequestContext) => {
          ctx.setSignal(signal);
          return new Observable(Promise.resolve(ctx));
        },
        post: (rsp: ResponseContext) => new Observable(Promise.resolve(rsp)),
      },
    ],
    middlewareMergeStrategy: 'append',
  };
}

function statusCode(err: unknown): number | undefined {
  if (err && typeof err === 'object') {
    const e = err as { code?: unknown; statusCode?: unknown };
    if (typeof e.code === 'number') return e.code;
    if (typeof e.statusCode === 'number') return e.statusCode;
  }
  return undefined;
}

/** A short, single-line description of an error (ApiException messages embed headers and bodies). */
function errorText(err: unknown): string {
  const code = statusCode(err);
  if (code !== undefined) {
    const body = (err as { body?: unknown }).body;
    let message = '';
    if (typeof body === 'string') {
      try {
        message = String((JSON.parse(body) as { message?: unknown }).message ?? '');
      } catch {
        message = '';
      }
    } else if (body && typeof body === 'object') message = String((body as { message?: unknown }).message ?? '');
    return `HTTP ${code}${message ? `: ${message}` : ''}`;
  }
  if (err instanceof Error) {
    const c = (err as { code?: unknown }).code;
    const first = err.message.split('\n')[0] ?? '';
    return `${err.name === 'Error' ? '' : `${err.name}: `}${first}${typeof c === 'string' && !first.includes(c) ? ` (${c})` : ''}`.slice(0, 300);
  }
  return String(err).slice(0, 300);
}
