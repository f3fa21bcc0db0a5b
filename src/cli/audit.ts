/**
 * `mesh-guard audit`: a read-only look at the pods of a live cluster.
 *
 * 1. Pods the webhook would change now: the same `admit()` and rules as the webhook, run on
 *    each pod as it exists. A running pod is already past admission (Istio, Consul and
 *    Dynatrace have had their turn), so this is what the webhook would do on a re-invocation
 *    of that pod; rules that can only act before the injectors say so instead of changing
 *    anything. Nothing is changed in the cluster: the fix reaches a pod when it is re-created.
 * 2. Deadlock risks in place: mesh node agents that already carry OneAgent, and Dynatrace CSI
 *    driver pods that already carry a mesh sidecar.
 * 3. Meshed pods where Dynatrace scrapes a port the sidecar captures (strict mTLS refuses the
 *    ActiveGate), instead of the merged endpoint on the status port.
 * 4. Consul transparent-proxy pods with OneAgent whose rendered traffic redirection does not
 *    exclude the ActiveGate.
 */
import {
  AdmissionregistrationV1Api,
  CoreV1Api,
  type V1MutatingWebhook,
  type V1MutatingWebhookConfiguration,
  type V1Namespace,
  type V1Pod,
  type V1Service,
} from '@kubernetes/client-node';
import { admit } from '../admission/handler.js';
import {
  CONSUL_CONNECT_INJECT_STATUS,
  CONSUL_INIT_CONTAINER,
  CONSUL_REDIRECT_TRAFFIC_ANNOTATION,
  CONSUL_REDIRECT_TRAFFIC_ENV,
  CONSUL_TRANSPARENT_PROXY_STATUS,
  DT_METRICS_PORT,
  DT_METRICS_SCRAPE,
  ISTIO_PROXY_CONTAINER,
  ISTIO_STATUS,
  ISTIO_STATUS_PORT_OVERRIDE,
  dynatraceMetricsBool,
  parsePort,
} from '../admission/annotations.js';
import { describeChange } from '../admission/patch.js';
import { imageName, inspectPod, type PodView } from '../admission/pod.js';
import { clusterIPsOf } from '../cluster/kube-view.js';
import type { PeerSettings } from '../cluster/peer-settings.js';
import type { ClusterView, NamespaceLookup } from '../cluster/view.js';
import type { WebhookDiscovery } from '../cluster/webhooks.js';
import type { Config } from '../config/schema.js';
import { addToRenderedConfig } from '../rules/consul.js';
import { wantedEntries } from '../rules/consul-activegate-exclusions.js';
import { isDynatraceCsiDriver } from '../rules/csi-driver-guard.js';
import { allRules } from '../rules/index.js';
import { detectNodeAgent } from '../rules/node-agent-guard.js';
import { discoveryOf, readPeerSettings } from './peers.js';
import {
  CliError,
  EXIT_FINDINGS,
  EXIT_OK,
  loadConfigFile,
  outputFormat,
  parseFlags,
  plural,
  q,
  indent,
  renderTable,
  rejectPositionals,
  type CliIO,
} from './common.js';
import {
  DEFAULT_WEBHOOK_NAME,
  KUBE_FLAGS,
  KUBE_FLAGS_HELP,
  describeKubeError,
  eachPage,
  httpStatus,
  kubeFailure,
  listAll,
  pageOptions,
  loadKubeConfig,
  parseTimeout,
  seesPods,
  selectorMatches,
  withTimeout,
} from './kube.js';

export const AUDIT_HELP = `Usage: mesh-guard audit [flags]

Checks the pods of a live cluster, read-only (get/list only), and reports:
  1. pods the webhook would change now, per rule (the same rules as the webhook, run on each pod
     as it exists; a running pod only gets the change when it is re-created);
  2. deadlock risks in place: mesh node-agent pods (Istio CNI, ztunnel, Consul CNI, linkerd-cni)
     that already carry OneAgent, and Dynatrace CSI driver pods that carry a mesh sidecar;
  3. meshed pods where Dynatrace scrapes an application port directly (strict mTLS refuses it);
  4. Consul transparent-proxy pods with OneAgent whose traffic redirection does not exclude the
     Dynatrace ActiveGate.

Flags:
  -n, --namespace NS         only this namespace (default: all namespaces)
  -o, --output FORMAT        table (default) or json
      --config FILE          mesh-guard config file (rule modes, Istio/Consul mirrors, ActiveGate ports)
      --page-size N          pods per list request (default 500)
      --webhook-name NAME    our MutatingWebhookConfiguration, for its selectors (default 0-mesh-guard):
                             pods it does not select are not evaluated for changes
  -q, --quiet                no progress on stderr
${KUBE_FLAGS_HELP}
  -h, --help                 this help

Permissions: list pods (cluster-wide, or in NS), and optionally list namespaces (for namespace
labels), services (to find the ActiveGate ClusterIPs), list mutatingwebhookconfigurations (for
the webhook's selectors and the peers' webhooks) and get the peers' settings ConfigMaps and
Deployment by name (the predictions the webhook makes); without those the rules use their
fallbacks and the report says so.

Exit codes: 0 no risk found; 1 at least one risk (2-4 above); 2 bad flags, no cluster, or
missing permission to list pods.

Examples:
  mesh-guard audit
  mesh-guard audit -n shop -o json | jq '.risks'
  KUBECONFIG=~/.kube/prod mesh-guard audit --context prod --config mesh-guard-config.yaml
`;

export type RiskType = 'node-agent-oneagent' | 'csi-driver-sidecar' | 'scrape-app-port' | 'consul-activegate-exclusions';

export const RISK_TEXT: Record<RiskType, { title: string; fix: string }> = {
  'node-agent-oneagent': {
    title: 'mesh node agents with OneAgent injected: a new node can deadlock (the CNI agent waits for the Dynatrace CSI volume, the CSI driver waits for the CNI)',
    fix: 'annotate the DaemonSet pod template with oneagent.dynatrace.com/inject: "false" (mesh-guard\'s node-agent-guard does this at admission), then restart it',
  },
  'csi-driver-sidecar': {
    title: 'Dynatrace CSI driver pods with a mesh sidecar: a new node can deadlock (the driver waits for the mesh CNI)',
    fix: 'label the CSI driver pod template sidecar.istio.io/inject: "false" and annotate consul.hashicorp.com/connect-inject: "false" (mesh-guard\'s csi-driver-guard does this at admission), then restart it',
  },
  'scrape-app-port': {
    title: 'meshed pods where Dynatrace scrapes an application port directly: the sidecar captures it and strict mTLS refuses the ActiveGate',
    fix: 'scrape the merged endpoint instead: metrics.dynatrace.com/port: "15020" and metrics.dynatrace.com/path: /stats/prometheus (mesh-guard\'s istio-metric-merging does this for new pods), then re-create the pods',
  },
  'consul-activegate-exclusions': {
    title: 'Consul transparent-proxy pods with OneAgent whose traffic redirection does not exclude the ActiveGate: OneAgent cannot report',
    fix: 'add consul.hashicorp.com/transparent-proxy-exclude-outbound-ports/-cidrs for the ActiveGate to the pod template (mesh-guard\'s consul-activegate-exclusions does this at admission), then re-create the pods',
  },
};

export interface PodRef {
  readonly namespace: string;
  readonly name: string;
  /** "Kind/name" of the controlling owner, if any. */
  readonly owner: string | null;
}

export interface AuditChange {
  readonly rule: string;
  readonly mode: 'enforce' | 'dry-run';
  readonly change: string;
  readonly reason: string;
}

export interface AuditRisk extends PodRef {
  readonly type: RiskType;
  readonly detail: string;
}

export interface AuditReport {
  readonly scope: { readonly namespace: string | null };
  readonly pods: number;
  readonly namespaces: number;
  readonly wouldChange: {
    readonly byRule: Readonly<Record<string, number>>;
    readonly pods: ReadonlyArray<PodRef & { readonly changes: readonly AuditChange[] }>;
  };
  readonly risks: readonly AuditRisk[];
  readonly notes: readonly string[];
}

/** OneAgent injection markers (dynatrace.md §4). */
export function oneAgentMarkers(pod: PodView): string[] {
  const out: string[] = [];
  for (const c of pod.initContainers) if (c.name === 'dynatrace-operator' || c.name === 'install-oneagent') out.push(`init container ${c.name}`);
  if (pod.volumeNames.includes('oneagent-bin')) out.push('volume oneagent-bin');
  if (pod.annotations.get('oneagent.dynatrace.com/injected') === 'true') out.push('annotation oneagent.dynatrace.com/injected: "true"');
  return out;
}

/** Mesh sidecar markers: Istio (status annotation, or an istio-proxy that is a sidecar, not ztunnel) and Consul. */
export function sidecarMarkers(pod: PodView): string[] {
  const out: string[] = [];
  if (pod.annotations.has(ISTIO_STATUS)) out.push(`annotation ${ISTIO_STATUS}`);
  const proxy = pod.containers.find((c) => c.name === ISTIO_PROXY_CONTAINER && imageName(c.image) !== 'ztunnel');
  if (proxy) out.push(`container ${ISTIO_PROXY_CONTAINER}`);
  const native = pod.initContainers.find((c) => c.name === ISTIO_PROXY_CONTAINER && c.container.restartPolicy === 'Always');
  if (native) out.push(`native sidecar ${ISTIO_PROXY_CONTAINER}`);
  const consul = pod.annotations.get(CONSUL_CONNECT_INJECT_STATUS);
  if (consul) out.push(`Consul ${CONSUL_CONNECT_INJECT_STATUS}=${q(consul)}`);
  if (pod.containers.some((c) => c.name === 'consul-dataplane') || pod.initContainers.some((c) => c.name === 'consul-dataplane')) {
    out.push('container consul-dataplane');
  }
  return out;
}

function ownerOf(pod: V1Pod): string | null {
  const refs = pod.metadata?.ownerReferences ?? [];
  const ref = refs.find((r) => r.controller) ?? refs[0];
  return ref ? `${ref.kind}/${ref.name}` : null;
}

/** Ports the sidecar does not capture inbound (istio.md §0.4): status port, 15021, 15090, and excludeInboundPorts. */
function uncapturedPorts(pod: PodView, config: Config): { ports: Set<number>; statusPort: number } {
  const statusPort = parsePort(pod.annotations.get(ISTIO_STATUS_PORT_OVERRIDE)) ?? config.istio.statusPort;
  const ports = new Set([statusPort, 15021, 15090]);
  for (const p of (pod.annotations.get('traffic.sidecar.istio.io/excludeInboundPorts') ?? '').split(',')) {
    const n = parsePort(p.trim());
    if (n) ports.add(n);
  }
  return { ports, statusPort };
}

function firstTcpPort(pod: PodView): number | undefined {
  for (const c of pod.containers) {
    if (c.name === ISTIO_PROXY_CONTAINER) continue;
    for (const p of c.container.ports ?? []) if ((p.protocol ?? 'TCP') === 'TCP' && typeof p.containerPort === 'number') return p.containerPort;
  }
  return undefined;
}

export interface AuditContext {
  /** null when namespaces could not be listed. */
  readonly namespaces: ReadonlyMap<string, Readonly<Record<string, string>>> | null;
  readonly namespacesUnknownReason?: string;
  readonly activeGateIPs: readonly string[] | null;
  readonly scope: string | null;
  readonly notes?: readonly string[];
  /**
   * Our webhook's pod webhooks, for their namespace/object selectors: a pod none of them
   * selects never reaches mesh-guard, so it is not evaluated for changes. null: unknown
   * (not installed or not readable), every pod is evaluated.
   */
  readonly webhooks?: readonly V1MutatingWebhook[] | null;
  /** The peers' webhook configurations and settings, so the rules predict as the webhook does; absent: the config mirrors. */
  readonly discovery?: WebhookDiscovery;
  readonly settings?: PeerSettings;
}


/** The analysis of a whole list at once (tests, embedding). */
export async function analyse(input: AuditContext & { readonly pods: readonly V1Pod[] }, config: Config): Promise<AuditReport> {
  const a = createAnalyser(input, config);
  for (const pod of input.pods) await a.add(pod);
  return a.report();
}

/**
 * The analysis, separate from the API calls so it is testable on plain objects, and
 * incremental: the command feeds it one page of pods at a time, so a big cluster is never
 * held in memory as a whole.
 */
export function createAnalyser(input: AuditContext, config: Config): { add(pod: V1Pod): Promise<void>; report(): AuditReport } {
  const nsLookup = (name: string): NamespaceLookup => {
    if (!input.namespaces) return { state: 'unknown', reason: input.namespacesUnknownReason ?? 'namespaces could not be listed' };
    const labels = input.namespaces.get(name);
    return labels ? { state: 'known', labels } : { state: 'absent' };
  };
  const cluster: ClusterView = {
    state: 'synced',
    namespaceLabels: async (n) => nsLookup(n),
    activeGateServiceIPs: () => input.activeGateIPs,
    ...(input.discovery ? { mutatingWebhooks: () => input.discovery! } : {}),
    ...(input.settings ? { peerSettings: () => input.settings! } : {}),
    ready: async () => undefined,
    close: async () => undefined,
  };
  const byRule: Record<string, number> = {};
  const changed: Array<PodRef & { changes: AuditChange[] }> = [];
  const risks: AuditRisk[] = [];
  const baseNotes: string[] = [...(input.notes ?? [])];
  const namespaces = new Set<string>();
  const { ports: wantedPorts, cidrs: wantedCidrs } = wantedEntries(config, input.activeGateIPs);
  let consulUnclear = 0;
  let unseen = 0;
  let count = 0;

  let uid = 0;
  const add = async (pod: V1Pod): Promise<void> => {
    count++;
    const ns = pod.metadata?.namespace ?? '';
    namespaces.add(ns);
    const ref: PodRef = { namespace: ns, name: pod.metadata?.name ?? '', owner: ownerOf(pod) };
    const inspected = inspectPod(pod, ns);
    if (!inspected.ok) {
      baseNotes.push(`${ns}/${ref.name}: not checked (${inspected.reason})`);
      return;
    }
    const view = inspected.pod;

    // 1. What the webhook would do, as on a re-invocation of this pod (only pods it sees).
    const nsLabels = input.namespaces?.get(ns);
    const seen =
      !input.webhooks ||
      input.webhooks.some((w) => (nsLabels === undefined || selectorMatches(w.namespaceSelector, nsLabels)) && selectorMatches(w.objectSelector, pod.metadata?.labels ?? {}));
    if (!seen) unseen++;
    const result = !seen ? { outcomes: [] } : await admit(
      { uid: `audit-${++uid}`, kind: { group: '', version: 'v1', kind: 'Pod' }, resource: { group: '', version: 'v1', resource: 'pods' }, operation: 'CREATE', namespace: ns, object: pod },
      { config, cluster, rules: allRules },
    );
    const changes: AuditChange[] = [];
    for (const o of result.outcomes) {
      if (o.changes.length === 0) continue;
      byRule[o.rule] = (byRule[o.rule] ?? 0) + 1;
      for (const c of o.changes) changes.push({ rule: o.rule, mode: o.mode, change: describeChange(c), reason: c.change.reason });
    }
    if (changes.length) changed.push({ ...ref, changes });

    // 2. Deadlock risks in place.
    const oneAgent = oneAgentMarkers(view);
    const agent = detectNodeAgent(view, config.nodeAgentGuard.extraSelectors);
    if (agent && oneAgent.length) risks.push({ ...ref, type: 'node-agent-oneagent', detail: `${agent}; OneAgent: ${oneAgent.join(', ')}` });
    const sidecar = sidecarMarkers(view);
    if (isDynatraceCsiDriver(view) && sidecar.length) risks.push({ ...ref, type: 'csi-driver-sidecar', detail: `sidecar: ${sidecar.join(', ')}` });

    // 3. Meshed pod, Dynatrace scraping a captured port.
    if (view.annotations.has(ISTIO_STATUS) && dynatraceMetricsBool(view.annotations.get(DT_METRICS_SCRAPE))) {
      const { ports, statusPort } = uncapturedPorts(view, config);
      const raw = view.annotations.get(DT_METRICS_PORT);
      const port = parsePort(raw);
      if (raw === undefined) {
        const first = firstTcpPort(view);
        if (first === undefined || !ports.has(first)) {
          risks.push({ ...ref, type: 'scrape-app-port', detail: `${DT_METRICS_SCRAPE} is true without ${DT_METRICS_PORT}, so Dynatrace scrapes the first exposed TCP port${first !== undefined ? ` (${first})` : ''}, not the merged endpoint on ${statusPort}` });
        }
      } else if (port === undefined) {
        risks.push({ ...ref, type: 'scrape-app-port', detail: `${DT_METRICS_PORT}=${q(raw)} is not a port; the merged endpoint is on ${statusPort}` });
      } else if (!ports.has(port)) {
        risks.push({ ...ref, type: 'scrape-app-port', detail: `Dynatrace scrapes port ${port}, which the sidecar captures; the merged endpoint is on ${statusPort}` });
      }
    }

    // 4. Consul tproxy + OneAgent without the ActiveGate exclusions (in the rendered config).
    const consulStatus = view.annotations.get(CONSUL_CONNECT_INJECT_STATUS);
    const tproxy = view.annotations.get(CONSUL_TRANSPARENT_PROXY_STATUS) === 'enabled' || view.annotations.has(CONSUL_REDIRECT_TRAFFIC_ANNOTATION);
    if (consulStatus && tproxy && oneAgent.length) {
      const rendered: Array<{ where: string; json: string }> = [];
      const ann = view.annotations.get(CONSUL_REDIRECT_TRAFFIC_ANNOTATION);
      if (ann !== undefined) rendered.push({ where: `annotation ${CONSUL_REDIRECT_TRAFFIC_ANNOTATION}`, json: ann });
      for (const c of view.initContainers) {
        if (c.name !== CONSUL_INIT_CONTAINER && !c.name.startsWith(`${CONSUL_INIT_CONTAINER}-`)) continue;
        for (const e of c.env) if (e.name === CONSUL_REDIRECT_TRAFFIC_ENV) rendered.push({ where: `env ${e.name} of ${c.name}`, json: e.value });
      }
      const missing: string[] = [];
      for (const r of rendered) {
        const edit = addToRenderedConfig(r.json, { ExcludeOutboundPorts: wantedPorts, ExcludeOutboundCIDRs: wantedCidrs });
        if (!edit.ok) {
          baseNotes.push(`${ns}/${ref.name}: Consul ${r.where} ${edit.reason}; ActiveGate exclusions not checked`);
          continue;
        }
        const lacks = [
          ...(edit.added.ExcludeOutboundPorts.length ? [`ports ${edit.added.ExcludeOutboundPorts.join(',')}`] : []),
          ...(edit.added.ExcludeOutboundCIDRs.length ? [`CIDRs ${edit.added.ExcludeOutboundCIDRs.join(',')}`] : []),
        ];
        if (lacks.length) missing.push(`${r.where} lacks ${lacks.join(' and ')}`);
      }
      if (rendered.length === 0) consulUnclear++;
      if (missing.length) risks.push({ ...ref, type: 'consul-activegate-exclusions', detail: `OneAgent: ${oneAgent[0]}; ${missing.join('; ')}` });
    }
  };
  const report = (): AuditReport => {
    const notes: string[] = [...baseNotes];
    if (unseen) notes.push(`${plural(unseen, 'pod')} outside the webhook's namespace/object selectors: not evaluated for changes (risks still checked)`);
    if (consulUnclear) notes.push(`${plural(consulUnclear, 'Consul transparent-proxy pod')} with OneAgent had no readable traffic config (env from a Secret/ConfigMap?); ActiveGate exclusions not checked there`);
    if (input.activeGateIPs === null) notes.push('ActiveGate Services unknown: Consul exclusions checked for the configured ports and CIDRs only');
    return {
      scope: { namespace: input.scope },
      pods: count,
      namespaces: namespaces.size,
      wouldChange: { byRule, pods: changed },
      risks,
      notes,
    };
  };
  return { add, report };
}

// ---- rendering -----------------------------------------------------------------------------

const podLabel = (p: PodRef) => `${p.namespace}/${p.name}`;

export function renderAuditTable(r: AuditReport): string {
  const parts: string[] = [];
  const scope = r.scope.namespace ? `namespace ${r.scope.namespace}` : plural(r.namespaces, 'namespace');
  parts.push(`Audited ${plural(r.pods, 'pod')} in ${scope}.\n`);

  if (r.wouldChange.pods.length) {
    parts.push(
      `\nPods the webhook would change (${plural(r.wouldChange.pods.length, 'pod')}). Computed as if each pod were admitted now;\n` +
        `running pods are not changed: the change reaches a pod when it is re-created (e.g. kubectl rollout restart).\n\n`,
    );
    parts.push(renderTable(['RULE', 'PODS'], Object.entries(r.wouldChange.byRule).map(([k, v]) => [k, String(v)])));
    parts.push('\n');
    const rows = r.wouldChange.pods.flatMap((p) => p.changes.map((c) => ({ pod: p, cells: [p.owner ?? '-', c.mode === 'enforce' ? c.rule : `${c.rule} (dry-run)`, shorten(c.change)] })));
    parts.push(renderTable(['POD', 'OWNER', 'RULE', 'CHANGE'], groupByOwner(rows)));
  } else {
    parts.push('\nNo pod the webhook would change.\n');
  }

  if (r.risks.length) {
    const byType = new Map<RiskType, AuditRisk[]>();
    for (const k of r.risks) byType.set(k.type, [...(byType.get(k.type) ?? []), k]);
    parts.push(`\nRisks found (${plural(r.risks.length, 'pod')}):\n`);
    for (const [type, list] of byType) {
      parts.push(`\nRISK ${type} (${plural(list.length, 'pod')}): ${RISK_TEXT[type].title}\n  fix: ${RISK_TEXT[type].fix}\n`);
      parts.push(indent(renderTable(['POD', 'OWNER', 'DETAIL'], groupByOwner(list.map((k) => ({ pod: k, cells: [k.owner ?? '-', k.detail] }))))));
    }
  } else {
    parts.push('\nNo risks found (node agents, CSI driver, Dynatrace scraping of meshed pods, Consul ActiveGate exclusions).\n');
  }
  if (r.notes.length) parts.push(`\nNotes:\n${r.notes.map((n) => `  ${n}`).join('\n')}\n`);
  return parts.join('');
}

/**
 * Rows that differ only in the pod of one owner (replicas of a Deployment, DaemonSet pods)
 * collapse into one: "ns/first-pod (+N more)". JSON output keeps every pod.
 */
function groupByOwner(rows: ReadonlyArray<{ pod: PodRef; cells: readonly string[] }>): string[][] {
  const groups = new Map<string, { first: PodRef; count: number; cells: readonly string[] }>();
  for (const row of rows) {
    const key = row.pod.owner ? JSON.stringify([row.pod.namespace, ...row.cells]) : JSON.stringify([row.pod.namespace, row.pod.name, ...row.cells]);
    const g = groups.get(key);
    if (g) g.count++;
    else groups.set(key, { first: row.pod, count: 1, cells: row.cells });
  }
  return [...groups.values()].map((g) => [`${podLabel(g.first)}${g.count > 1 ? ` (+${g.count - 1} more)` : ''}`, ...g.cells]);
}

function shorten(s: string, max = 110): string {
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

// ---- command -------------------------------------------------------------------------------

export async function auditCommand(args: readonly string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseFlags('audit', args, {
    namespace: { type: 'string', short: 'n' },
    output: { type: 'string', short: 'o' },
    config: { type: 'string' },
    'page-size': { type: 'string' },
    'webhook-name': { type: 'string' },
    quiet: { type: 'boolean', short: 'q' },
    ...KUBE_FLAGS,
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    io.out(AUDIT_HELP);
    return EXIT_OK;
  }
  rejectPositionals('audit', positionals);
  const format = outputFormat('audit', values.output, ['table', 'json']);
  const pageSize = values['page-size'] === undefined ? 500 : Number(values['page-size']);
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 10_000) throw new CliError(`audit: --page-size must be an integer from 1 to 10000, got ${q(values['page-size'])}`);
  const timeoutMs = parseTimeout(values['request-timeout']);
  const config = loadConfigFile(values.config);
  const { kc } = loadKubeConfig(values, io.env);
  const server = kc.getCurrentCluster()?.server;
  const core = kc.makeApiClient(CoreV1Api);
  const scope = values.namespace ?? null;
  const progress = (text: string) => {
    if (!values.quiet) io.err(`mesh-guard audit: ${text}\n`);
  };
  const notes: string[] = [];

  // The first page of pods first: without pods there is nothing to say, and this call proves access.
  // The rest is fed to the analyser page by page, so a big cluster is never held in memory whole.
  const podsWhat = scope ? `cannot list pods in namespace ${scope}` : 'cannot list pods in all namespaces';
  const listPods = async (cont: string | undefined) => {
    const opts = pageOptions(pageSize, cont);
    try {
      return scope
        ? await core.listNamespacedPod({ namespace: scope, ...opts }, withTimeout(timeoutMs))
        : await core.listPodForAllNamespaces(opts, withTimeout(timeoutMs));
    } catch (err) {
      throw kubeFailure(err, podsWhat, server);
    }
  };
  const firstPage = await listPods(undefined);
  /** Optional reads may be refused (RBAC) but a broken connection ends the run: one error line, not a stream of warnings. */
  const optional = (err: unknown, what: string): string => {
    if (httpStatus(err) === undefined) throw kubeFailure(err, what, server);
    return describeKubeError(err, what, server);
  };

  // Namespace labels (for the rules); optional.
  let namespaces: Map<string, Readonly<Record<string, string>>> | null = new Map();
  let namespacesUnknownReason: string | undefined;
  // Page by page, keeping only the labels: 10,000 full namespaces would otherwise be held at once.
  const keepLabels = (list: readonly V1Namespace[]) => {
    for (const n of list) if (n.metadata?.name) namespaces!.set(n.metadata.name, { ...(n.metadata.labels ?? {}) });
  };
  try {
    if (scope) keepLabels([await core.readNamespace({ name: scope }, withTimeout(timeoutMs))]);
    else await eachPage<V1Namespace>(pageSize, (page) => core.listNamespace(page, withTimeout(timeoutMs)), keepLabels);
  } catch (err) {
    namespaces = null;
    namespacesUnknownReason = optional(err, scope ? `cannot read namespace ${scope}` : 'cannot list namespaces');
    notes.push(`${namespacesUnknownReason}; rules use their fallbacks for namespace labels`);
    io.err(`mesh-guard audit: warning: ${namespacesUnknownReason}\n`);
  }

  // ActiveGate Services (for the Consul exclusions); optional.
  let activeGateIPs: readonly string[] | null = null;
  try {
    const selector = config.cluster.activeGateLabelSelector;
    const agNs = config.cluster.activeGateNamespace;
    const services: V1Service[] = await listAll<V1Service>(pageSize, (page) => {
      const opts = { labelSelector: selector, ...page };
      return agNs ? core.listNamespacedService({ namespace: agNs, ...opts }, withTimeout(timeoutMs)) : core.listServiceForAllNamespaces(opts, withTimeout(timeoutMs));
    });
    activeGateIPs = clusterIPsOf(services);
  } catch (err) {
    const why = optional(err, 'cannot list the ActiveGate Services');
    io.err(`mesh-guard audit: warning: ${why}\n`);
  }

  // Our webhook's selectors (which pods it sees at all); optional.
  const webhookName = values['webhook-name'] ?? DEFAULT_WEBHOOK_NAME;
  let webhooks: V1MutatingWebhook[] | null = null;
  try {
    const mwc = await kc.makeApiClient(AdmissionregistrationV1Api).readMutatingWebhookConfiguration({ name: webhookName }, withTimeout(timeoutMs));
    webhooks = (mwc.webhooks ?? []).filter(seesPods);
  } catch (err) {
    const why =
      httpStatus(err) === 404 ? `MutatingWebhookConfiguration ${webhookName} not found (mesh-guard not installed yet?)`
      : optional(err, `cannot read MutatingWebhookConfiguration ${webhookName}`);
    notes.push(`${why}; every pod evaluated as if the webhook saw it`);
  }

  // The peers' webhook configurations and settings (the same predictions as the webhook); optional.
  let peers: { discovery: WebhookDiscovery; settings: PeerSettings } | undefined;
  try {
    const all = await listAll<V1MutatingWebhookConfiguration>(pageSize, (page) => kc.makeApiClient(AdmissionregistrationV1Api).listMutatingWebhookConfiguration(page, withTimeout(timeoutMs)));
    const discovery = discoveryOf(all);
    peers = { discovery, settings: await readPeerSettings(kc, discovery, timeoutMs) };
    for (const [, l] of peers.settings) if (l.state === 'unknown') notes.push(`${l.reason}; the config mirrors stand in for it`);
  } catch (err) {
    notes.push(`${optional(err, 'cannot list mutatingwebhookconfigurations')}; predictions use the config mirrors (istio.*, consul.*)`);
  }

  const analyser = createAnalyser(
    { namespaces, ...(namespacesUnknownReason ? { namespacesUnknownReason } : {}), activeGateIPs, scope, notes, webhooks, ...(peers ?? {}) },
    config,
  );
  let page = firstPage;
  let listed = 0;
  for (let n = 1; ; n++) {
    for (const pod of page.items) await analyser.add(pod);
    listed += page.items.length;
    const cont = page.metadata?._continue || undefined;
    if (cont || n > 1) progress(`listed ${listed} pods${cont ? '…' : ''}`);
    if (!cont) break;
    page = await listPods(cont);
  }
  const report = analyser.report();
  io.out(format === 'json' ? `${JSON.stringify(report, null, 2)}\n` : renderAuditTable(report));
  return report.risks.length ? EXIT_FINDINGS : EXIT_OK;
}
