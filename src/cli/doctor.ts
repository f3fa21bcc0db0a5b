/**
 * `mesh-guard doctor`: checks the installation, read-only. One line per check (ok / warn /
 * fail, with the fix), plus the order in which the API server calls the mutating webhook
 * configurations that see pods (sorted by name, byte-wise: webhook-engineering.md §1.6,
 * istio.md §4).
 */
import { X509Certificate } from 'node:crypto';
import {
  AdmissionregistrationV1Api,
  AppsV1Api,
  CoreV1Api,
  type V1DaemonSet,
  type V1Deployment,
  type V1MutatingWebhook,
  type V1MutatingWebhookConfiguration,
  type V1Namespace,
  type V1Node,
} from '@kubernetes/client-node';
import { inspectPod } from '../admission/pod.js';
import { isDynatraceCsiDriver } from '../rules/csi-driver-guard.js';
import { detectNodeAgent } from '../rules/node-agent-guard.js';
import { podFromTemplate } from './preview.js';
import { discoveryOf, mirrorDisagreements, peerEntries, readPeerSettings, type PeerEntry } from './peers.js';
import type { PeerSettings } from '../cluster/peer-settings.js';
import { PEER_TITLE, PEERS, type WebhookDiscovery } from '../cluster/webhooks.js';
import type { Config } from '../config/schema.js';
import { effectiveMode } from '../admission/engine.js';
import {
  EXIT_FINDINGS,
  EXIT_OK,
  loadConfigFile,
  outputFormat,
  parseFlags,
  indent,
  plural,
  q,
  rejectPositionals,
  renderTable,
  type CliIO,
} from './common.js';
import {
  DEFAULT_WEBHOOK_NAME,
  KUBE_FLAGS,
  KUBE_FLAGS_HELP,
  describeKubeError,
  httpStatus,
  kubeFailure,
  kubeletMinor,
  listAll,
  loadKubeConfig,
  parseTimeout,
  seesPods,
  selectorMatches,
  withTimeout,
} from './kube.js';

export const DEFAULT_TLS_SECRET = 'mesh-guard-tls';
/** The serving certificate must outlive this (cert-manager overlay renews 30 days ahead). */
export const MIN_CERT_DAYS = 30;

export const DOCTOR_HELP = `Usage: mesh-guard doctor [flags]

Checks the mesh-guard installation in a live cluster, read-only:
  - our MutatingWebhookConfiguration exists and the API server calls it before Dynatrace
    (dynatrace-webhook, or webhook.pod.dynatrace.com-* under OLM), Istio (istio-*) and Consul
    (*-connect-injector); prints the order of every configuration that sees pods
  - its selectors cover the mesh node-agent and Dynatrace CSI driver DaemonSets
  - its failurePolicy, timeoutSeconds and reinvocationPolicy
  - the Service has ready mesh-guard pods behind it
  - its caBundle parses, and the serving certificate in the Secret chains to it, names the
    Service and does not expire within ${MIN_CERT_DAYS} days
  - istiod's ENABLE_NATIVE_SIDECARS (true, or auto with every kubelet ≥ 1.33, turns on native
    sidecars, which Dynatrace does not support)
  - whether Dynatrace was installed through OLM (its webhook then runs after Istio's)
  - the peers discovered from their webhook configurations (selectors), the settings read from
    their own objects (Istio's injector and mesh ConfigMaps, Consul's injector Deployment), and
    every config mirror (istio.*, consul.*) that disagrees with them

Flags:
      --webhook-name NAME    our MutatingWebhookConfiguration (default ${DEFAULT_WEBHOOK_NAME})
      --tls-secret NAME      the serving certificate Secret, in the Service's namespace (default ${DEFAULT_TLS_SECRET})
      --config FILE          mesh-guard config file (to know whether the native-sidecar guard is on)
  -o, --output FORMAT        table (default) or json
${KUBE_FLAGS_HELP}
  -h, --help                 this help

Permissions: list mutatingwebhookconfigurations (required); get services, endpoints and secrets in
the mesh-guard namespace, list daemonsets, deployments, namespaces and nodes, get the peers' settings
ConfigMaps and Deployment by name (optional: without them those checks warn).

Exit codes: 0 no check failed (warnings allowed); 1 at least one check failed; 2 bad flags, no
cluster, or no permission to list mutatingwebhookconfigurations.

Examples:
  mesh-guard doctor
  mesh-guard doctor --context prod -o json
  mesh-guard doctor --webhook-name 0-mesh-guard --tls-secret mesh-guard-tls --config config.yaml
`;

export type Status = 'ok' | 'warn' | 'fail';

export interface Check {
  readonly check: string;
  readonly status: Status;
  readonly message: string;
  readonly fix?: string;
}

export interface OrderEntry {
  readonly position: number;
  readonly name: string;
  /** Who installs it, when recognised. */
  readonly owner: string;
  readonly failurePolicy: string;
  readonly reinvocationPolicy: string;
}

export interface DoctorReport {
  readonly order: readonly OrderEntry[];
  /** What peer discovery sees: each peer's webhooks and the settings read (src/cli/peers.ts). */
  readonly peers?: readonly PeerEntry[];
  readonly checks: readonly Check[];
}

/** Checks from peer discovery: settings that could not be read, and config mirrors that disagree with the cluster. */
export function checkPeers(discovery: WebhookDiscovery, settings: PeerSettings, config: Config): Check[] {
  if (discovery.state !== 'known') return [];
  const found = PEERS.filter((p) => discovery.peers[p].length > 0).map((p) => PEER_TITLE[p]);
  const checks: Check[] = [
    found.length
      ? { check: 'peers', status: 'ok', message: `discovered ${found.join(', ')} from their webhook configurations; predictions follow them` }
      : { check: 'peers', status: 'ok', message: 'no Istio, Consul or Dynatrace pod webhook found by name (docs/install.md, "What mesh-guard reads"); predictions use the config mirrors' },
  ];
  for (const [, l] of settings) {
    if (l.state === 'unknown') checks.push({ check: 'peerSettings', status: 'warn', message: `${l.reason}; the config mirrors stand in for it`, fix: 'grant list/watch by resourceNames (deploy/base/rbac.yaml)' });
  }
  for (const d of mirrorDisagreements(discovery, settings, config)) {
    checks.push({
      check: 'mirror',
      status: 'warn',
      message: `config ${d.key} is ${d.mirror}, but ${d.source} is ${d.cluster}; mesh-guard follows the cluster and uses ${d.key} only where discovery has no answer`,
      fix: `set ${d.key} to ${d.cluster} in the config`,
    });
  }
  return checks;
}

/** Byte-wise, like Go's `<` on strings (the API server's MutatingWebhookConfigurationSorter). */
export function byteCompare(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Who installed a configuration, from its name. */
export function recognise(name: string, ours: string): string {
  if (name === ours) return 'mesh-guard';
  if (name === 'dynatrace-webhook') return 'Dynatrace (Helm/manifests)';
  if (name.startsWith('webhook.pod.dynatrace.com')) return 'Dynatrace (OLM)';
  if (name.startsWith('istio-')) return 'Istio';
  if (name.endsWith('-connect-injector')) return 'Consul';
  return '';
}

/** Names that must sort after ours when present (Dynatrace, Istio, Consul). */
function mustFollow(name: string, ours: string): boolean {
  return recognise(name, ours) !== '' && name !== ours;
}

/** Well-known names that must follow ours even when not installed yet. */
const KNOWN_NAMES = ['dynatrace-webhook', 'webhook.pod.dynatrace.com-', 'istio-revision-tag-', 'istio-sidecar-injector'];


function policies(m: V1MutatingWebhookConfiguration, pick: (w: V1MutatingWebhook) => string | undefined, dflt: string): string {
  const vals = [...new Set((m.webhooks ?? []).filter(seesPods).map((w) => pick(w) ?? dflt))];
  return vals.join(',') || '-';
}

/** Checks on the list of configurations: existence, order, settings, OLM. */
export function checkConfigurations(all: readonly V1MutatingWebhookConfiguration[], ours: string): { order: OrderEntry[]; checks: Check[]; mine?: V1MutatingWebhookConfiguration } {
  const checks: Check[] = [];
  const podMwcs = all
    .filter((m) => (m.webhooks ?? []).some(seesPods))
    .sort((a, b) => byteCompare(a.metadata?.name ?? '', b.metadata?.name ?? ''));
  const order: OrderEntry[] = podMwcs.map((m, i) => ({
    position: i + 1,
    name: m.metadata?.name ?? '',
    owner: recognise(m.metadata?.name ?? '', ours),
    failurePolicy: policies(m, (w) => w.failurePolicy, 'Fail'),
    reinvocationPolicy: policies(m, (w) => w.reinvocationPolicy, 'Never'),
  }));
  const mine = all.find((m) => m.metadata?.name === ours);

  if (!mine) {
    checks.push({ check: 'webhook', status: 'fail', message: `MutatingWebhookConfiguration ${ours} not found`, fix: 'install it: kubectl apply -k deploy/base (or pass --webhook-name)' });
  } else if (!(mine.webhooks ?? []).some(seesPods)) {
    checks.push({ check: 'webhook', status: 'fail', message: `${ours} has no webhook for pod CREATE`, fix: 'its rules must include operations [CREATE], apiGroups [""], resources [pods] (see deploy/base)' });
  } else {
    checks.push({ check: 'webhook', status: 'ok', message: `${ours} exists (${plural((mine.webhooks ?? []).length, 'webhook')})` });
  }

  // Order: every present Dynatrace/Istio/Consul configuration must sort after ours.
  const before = podMwcs.map((m) => m.metadata?.name ?? '').filter((n) => mustFollow(n, ours) && byteCompare(n, ours) < 0);
  const after = podMwcs.map((m) => m.metadata?.name ?? '').filter((n) => mustFollow(n, ours) && byteCompare(n, ours) > 0);
  const knownBefore = KNOWN_NAMES.filter((n) => byteCompare(n, ours) < 0);
  if (before.length) {
    checks.push({
      check: 'order',
      status: 'fail',
      message: `${before.join(', ')} ${before.length === 1 ? 'runs' : 'run'} before ${ours}, so mesh-guard prepares pods too late`,
      fix: `rename ${ours} so it sorts byte-wise before ${before[0]} (the default name 0-mesh-guard does)`,
    });
  } else if (knownBefore.length) {
    checks.push({
      check: 'order',
      status: 'warn',
      message: `${ours} sorts after ${knownBefore.join(', ')}: not installed now, but would run before mesh-guard if installed`,
      fix: 'use the default name 0-mesh-guard',
    });
  } else if (mine) {
    checks.push({ check: 'order', status: 'ok', message: after.length ? `${ours} runs before ${after.join(', ')}` : `${ours} sorts before Dynatrace, Istio and Consul names (none installed)` });
  }

  if (mine) {
    const hooks = (mine.webhooks ?? []).filter(seesPods);
    const fp = hooks.filter((w) => (w.failurePolicy ?? 'Fail') !== 'Ignore');
    checks.push(
      fp.length
        ? { check: 'failurePolicy', status: 'warn', message: `${fp.map((w) => w.name).join(', ')}: failurePolicy ${fp[0]!.failurePolicy ?? 'Fail (default)'}: no pod can be created while mesh-guard is down`, fix: 'set failurePolicy: Ignore (mesh-guard only ever helps; deploy/base uses Ignore)' }
        : { check: 'failurePolicy', status: 'ok', message: 'Ignore: pods are created unchanged if mesh-guard is down' },
    );
    const slow = hooks.filter((w) => (w.timeoutSeconds ?? 10) > 5);
    checks.push(
      slow.length
        ? { check: 'timeout', status: 'warn', message: `${slow.map((w) => w.name).join(', ')}: timeoutSeconds ${slow[0]!.timeoutSeconds ?? '10 (default)'}; mutating webhooks run in series, and this one may run twice`, fix: 'set timeoutSeconds: 3 (deploy/base)' }
        : { check: 'timeout', status: 'ok', message: `timeoutSeconds ${[...new Set(hooks.map((w) => w.timeoutSeconds ?? 10))].join(',')}` },
    );
    const never = hooks.filter((w) => (w.reinvocationPolicy ?? 'Never') !== 'IfNeeded');
    checks.push(
      never.length
        ? { check: 'reinvocationPolicy', status: 'warn', message: `${never.map((w) => w.name).join(', ')}: reinvocationPolicy ${never[0]!.reinvocationPolicy ?? 'Never (default)'}: not re-run when a later webhook changes the pod`, fix: 'set reinvocationPolicy: IfNeeded (the order is an implementation detail; re-invocation is the API guarantee)' }
        : { check: 'reinvocationPolicy', status: 'ok', message: 'IfNeeded' },
    );
  }

  // Dynatrace through OLM.
  const olm = all.map((m) => m.metadata?.name ?? '').filter((n) => n.startsWith('webhook.pod.dynatrace.com'));
  const helm = all.some((m) => m.metadata?.name === 'dynatrace-webhook');
  if (olm.length) {
    const istio = podMwcs.map((m) => m.metadata?.name ?? '').filter((n) => n.startsWith('istio-'));
    checks.push({
      check: 'dynatrace',
      status: 'warn',
      message: `Dynatrace installed through OLM (${olm.join(', ')}): its webhook sees pods in all namespaces${istio.length ? ` and runs after ${istio.join(', ')}, so Istio injects before Dynatrace` : ' and sorts after Istio\'s names'}`,
      fix: 'keep mesh-guard first (it is) and reinvocationPolicy IfNeeded; prefer the Helm/manifest install (dynatrace-webhook) for a predictable order',
    });
  } else {
    checks.push({ check: 'dynatrace', status: 'ok', message: helm ? 'Dynatrace webhook dynatrace-webhook (Helm/manifests)' : 'no Dynatrace webhook found' });
  }
  return { order, checks, mine };
}

// ---- scope -----------------------------------------------------------------------------------

/**
 * The guards only protect what the webhook sees: a node-agent or CSI-driver DaemonSet outside
 * our namespace/object selectors (e.g. kube-system excluded, where Istio CNI runs on GKE and
 * OpenShift) keeps the deadlock risk.
 */
export function checkScope(
  hooks: readonly V1MutatingWebhook[],
  daemonSets: readonly V1DaemonSet[],
  namespaceLabels: ReadonlyMap<string, Readonly<Record<string, string>>>,
  config: Config,
): Check {
  const relevant: string[] = [];
  const outside: string[] = [];
  for (const ds of daemonSets) {
    const name = ds.metadata?.name ?? '';
    const ns = ds.metadata?.namespace ?? '';
    const template = ds.spec?.template as unknown as Record<string, unknown> | undefined;
    if (!template) continue;
    const inspected = inspectPod(podFromTemplate('DaemonSet', name, ns, template), ns);
    if (!inspected.ok) continue;
    const what = detectNodeAgent(inspected.pod, config.nodeAgentGuard.extraSelectors) ?? (isDynatraceCsiDriver(inspected.pod) ? 'Dynatrace CSI driver' : undefined);
    if (!what) continue;
    relevant.push(`${ns}/${name}`);
    const nsLabels = namespaceLabels.get(ns) ?? { 'kubernetes.io/metadata.name': ns };
    const labels = Object.fromEntries(inspected.pod.labels);
    if (!hooks.some((w) => selectorMatches(w.namespaceSelector, nsLabels) && selectorMatches(w.objectSelector, labels))) outside.push(`${ns}/${name} (${what})`);
  }
  if (outside.length) {
    return {
      check: 'scope',
      status: 'fail',
      message: `the webhook's selectors leave out ${outside.join(', ')}: the guards cannot protect ${outside.length === 1 ? 'it' : 'them'} from the CSI/CNI deadlock`,
      fix: 'do not exclude these namespaces (kube-system included) in namespaceSelector; deploy/base only excludes mesh-guard',
    };
  }
  return {
    check: 'scope',
    status: 'ok',
    message: relevant.length ? `node-agent and CSI driver DaemonSets in scope: ${relevant.join(', ')}` : 'no mesh node-agent or Dynatrace CSI driver DaemonSet found',
  };
}

// ---- certificates ------------------------------------------------------------------------

export function parsePemBundle(pem: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((b) => new X509Certificate(b));
}

function daysLeft(cert: X509Certificate, now: Date): number {
  return (new Date(cert.validTo).getTime() - now.getTime()) / 86_400_000;
}

/** caBundle: base64 of PEM. */
export function checkCaBundle(caBundle: string | undefined, now: Date): { check: Check; cas: X509Certificate[] } {
  if (!caBundle) {
    return { check: { check: 'caBundle', status: 'fail', message: 'the webhook has no caBundle, so the API server cannot verify mesh-guard (calls fail and pods pass unchanged)', fix: 'run certs-scripts/create.sh, or use the cert-manager overlay (cainjector fills it)' }, cas: [] };
  }
  let cas: X509Certificate[] = [];
  try {
    cas = parsePemBundle(Buffer.from(caBundle, 'base64').toString('utf8'));
  } catch {
    cas = [];
  }
  if (!cas.length) {
    return { check: { check: 'caBundle', status: 'fail', message: 'caBundle is not a base64-encoded PEM certificate', fix: 'set it to base64 of the CA certificate (certs-scripts/create.sh does)' }, cas: [] };
  }
  const soon = cas.filter((c) => daysLeft(c, now) < MIN_CERT_DAYS);
  if (soon.length) {
    const d = Math.floor(daysLeft(soon[0]!, now));
    return { check: { check: 'caBundle', status: d < 0 ? 'fail' : 'warn', message: `CA ${soon[0]!.subject.replace(/\n/g, ',')} ${d < 0 ? 'has expired' : `expires in ${d} days`} (${soon[0]!.validTo})`, fix: 'rotate the CA and the serving certificate' }, cas };
  }
  return { check: { check: 'caBundle', status: 'ok', message: `${plural(cas.length, 'CA certificate')}, valid until ${cas.map((c) => c.validTo).join(', ')}` }, cas };
}

/** The serving certificate: chains to a CA of the bundle, names the Service, outlives MIN_CERT_DAYS. */
export function checkServingCert(tlsCrtPem: string, cas: readonly X509Certificate[], host: string, now: Date): Check {
  let chain: X509Certificate[];
  try {
    chain = parsePemBundle(tlsCrtPem);
  } catch {
    chain = [];
  }
  const leaf = chain[0];
  if (!leaf) return { check: 'servingCert', status: 'fail', message: 'tls.crt in the Secret is not a PEM certificate', fix: 're-create the Secret (certs-scripts/create.sh)' };
  const problems: string[] = [];
  if (cas.length) {
    const pool = [...chain.slice(1), ...cas];
    let cur = leaf;
    let chained = false;
    for (let depth = 0; depth < 6; depth++) {
      if (cas.some((ca) => cur.checkIssued(ca) && cur.verify(ca.publicKey))) {
        chained = true;
        break;
      }
      const next = pool.find((c) => c !== cur && cur.checkIssued(c) && cur.verify(c.publicKey));
      if (!next) break;
      cur = next;
    }
    if (!chained) problems.push('does not chain to the caBundle (the API server rejects it)');
  }
  if (!leaf.checkHost(host)) problems.push(`does not name ${host}`);
  const d = daysLeft(leaf, now);
  const whenText = d < 0 ? `expired on ${leaf.validTo}` : `expires in ${Math.floor(d)} days (${leaf.validTo})`;
  if (d < MIN_CERT_DAYS) problems.push(whenText);
  if (problems.length) {
    return { check: 'servingCert', status: 'fail', message: `serving certificate ${problems.join('; ')}`, fix: d < MIN_CERT_DAYS && problems.length === 1 ? 'renew it: certs-scripts/create.sh, or check cert-manager (it renews 30 days ahead)' : 're-issue it for the Service name from the CA in the caBundle (certs-scripts/create.sh)' };
  }
  return { check: 'servingCert', status: 'ok', message: `chains to the caBundle, names ${host}, ${whenText}` };
}

// ---- native sidecars --------------------------------------------------------------------------

/** istio.md §2: istiod's ENABLE_NATIVE_SIDECARS and the kubelets decide whether sidecars are native. */
export function checkNativeSidecars(istiods: readonly V1Deployment[], nodes: readonly V1Node[] | string, config: Config): Check {
  const guardOn = config.istio.nativeSidecarGuard && effectiveMode(config, 'istio-native-sidecar-guard') === 'enforce';
  const covered = guardOn
    ? "mesh-guard's istio-native-sidecar-guard covers it: it sets sidecar.istio.io/nativeSidecar: \"false\" on pods that get both a sidecar and OneAgent"
    : 'and the istio-native-sidecar-guard is OFF in this config';
  const onStatus: Status = guardOn ? 'warn' : 'fail';
  const onFix = guardOn ? 'nothing to do while the guard is on; or set ENABLE_NATIVE_SIDECARS=false on istiod' : 'turn the guard on (rules.istio-native-sidecar-guard: enforce, istio.nativeSidecarGuard: true) or set ENABLE_NATIVE_SIDECARS=false on istiod';
  if (!istiods.length) return { check: 'nativeSidecars', status: 'ok', message: 'no istiod Deployment found (label app=istiod)' };
  const results: Check[] = [];
  for (const d of istiods) {
    const where = `${d.metadata?.namespace}/${d.metadata?.name}`;
    const containers = d.spec?.template?.spec?.containers ?? [];
    const c = containers.find((x) => x.name === 'discovery') ?? containers[0];
    const env = c?.env?.find((e) => e.name === 'ENABLE_NATIVE_SIDECARS');
    const version = /:(\d+)\.(\d+)/.exec(c?.image ?? '');
    const minor = version ? Number(version[1]) * 1000 + Number(version[2]) : undefined;
    if (env?.valueFrom) {
      results.push({ check: 'nativeSidecars', status: 'warn', message: `${where}: ENABLE_NATIVE_SIDECARS comes from a reference; cannot tell`, fix: 'check it by hand' });
      continue;
    }
    const value = env?.value ?? (minor !== undefined && minor < 1027 ? 'false' : 'auto');
    const shown = env ? `ENABLE_NATIVE_SIDECARS=${q(env.value ?? '')}` : `ENABLE_NATIVE_SIDECARS unset (${value} for Istio ${version ? `${version[1]}.${version[2]}` : '≥1.27 assumed'})`;
    if (value === 'true') {
      results.push({ check: 'nativeSidecars', status: onStatus, message: `${where}: ${shown}: native sidecars are on, which Dynatrace does not support; ${covered}`, fix: onFix });
    } else if (value === 'auto') {
      if (typeof nodes === 'string') {
        results.push({ check: 'nativeSidecars', status: 'warn', message: `${where}: ${shown}, and kubelet versions are unknown (${nodes}); native sidecars are on once every kubelet is ≥1.33; ${covered}`, fix: onFix });
        continue;
      }
      const versions = nodes.map((n) => kubeletMinor(n.status?.nodeInfo?.kubeletVersion));
      const old = versions.filter((v) => !v || v.major < 1 || (v.major === 1 && v.minor < 33)).length;
      if (nodes.length && old === 0) {
        results.push({ check: 'nativeSidecars', status: onStatus, message: `${where}: ${shown} and all ${nodes.length} kubelets are ≥1.33: native sidecars are on, which Dynatrace does not support; ${covered}`, fix: onFix });
      } else {
        results.push({ check: 'nativeSidecars', status: 'ok', message: `${where}: ${shown}; ${old} of ${nodes.length} kubelets are <1.33, so native sidecars stay off for now (they turn on when all are upgraded${guardOn ? '; the guard covers that' : ''})` });
      }
    } else {
      results.push({ check: 'nativeSidecars', status: 'ok', message: `${where}: ${shown}: no native sidecars` });
    }
  }
  const rank: Record<Status, number> = { ok: 0, warn: 1, fail: 2 };
  return results.sort((a, b) => rank[b.status] - rank[a.status])[0]!;
}

// ---- rendering -----------------------------------------------------------------------------

export function renderDoctorTable(r: DoctorReport): string {
  let text = 'Mutating webhook configurations that see pods, in the order the API server calls them:\n';
  text += r.order.length
    ? indent(renderTable(['#', 'NAME', 'OWNER', 'FAILURE', 'REINVOCATION'], r.order.map((o) => [String(o.position), o.name, o.owner || '-', o.failurePolicy, o.reinvocationPolicy])))
    : '  (none)\n';
  text += '\n';
  const peers = (r.peers ?? []).filter((p) => p.webhooks.length > 0);
  if (peers.length) {
    text += 'Peers discovered (webhook selectors, and the settings read from their own objects):\n';
    for (const p of peers) text += `  ${p.peer}:\n${[...p.webhooks, ...p.settings].map((l) => `    ${l}\n`).join('')}`;
    text += '\n';
  }
  text += renderTable(
    ['STATUS', 'CHECK', 'RESULT'],
    r.checks.map((c) => [c.status, c.check, c.fix && c.status !== 'ok' ? `${c.message}. Fix: ${c.fix}` : c.message]),
  );
  const fails = r.checks.filter((c) => c.status === 'fail').length;
  const warns = r.checks.filter((c) => c.status === 'warn').length;
  text += `\n${fails ? `${fails} failed` : 'No check failed'}${warns ? `, ${plural(warns, 'warning')}` : ''}.\n`;
  return text;
}

// ---- command -------------------------------------------------------------------------------

export async function doctorCommand(args: readonly string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseFlags('doctor', args, {
    'webhook-name': { type: 'string' },
    'tls-secret': { type: 'string' },
    config: { type: 'string' },
    output: { type: 'string', short: 'o' },
    ...KUBE_FLAGS,
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    io.out(DOCTOR_HELP);
    return EXIT_OK;
  }
  rejectPositionals('doctor', positionals);
  const format = outputFormat('doctor', values.output, ['table', 'json']);
  const ours = values['webhook-name'] ?? DEFAULT_WEBHOOK_NAME;
  const secretName = values['tls-secret'] ?? DEFAULT_TLS_SECRET;
  const timeoutMs = parseTimeout(values['request-timeout']);
  const config = loadConfigFile(values.config);
  const { kc } = loadKubeConfig(values, io.env);
  const server = kc.getCurrentCluster()?.server;
  const admission = kc.makeApiClient(AdmissionregistrationV1Api);
  const core = kc.makeApiClient(CoreV1Api);
  const apps = kc.makeApiClient(AppsV1Api);
  const t = () => withTimeout(timeoutMs);
  const now = io.now();

  let mwcs: V1MutatingWebhookConfiguration[];
  try {
    mwcs = await listAll(500, (page) => admission.listMutatingWebhookConfiguration(page, t()));
  } catch (err) {
    throw kubeFailure(err, 'cannot list mutatingwebhookconfigurations', server);
  }
  const { order, checks, mine } = checkConfigurations(mwcs, ours);
  const discovery = discoveryOf(mwcs);
  const settings = await readPeerSettings(kc, discovery, timeoutMs);
  checks.push(...checkPeers(discovery, settings, config));

  // Certificates: caBundle, Service, serving cert in the Secret.
  const hook = mine?.webhooks?.find(seesPods);
  if (hook) {
    const ca = checkCaBundle(hook.clientConfig?.caBundle, now);
    checks.push(ca.check);
    const svc = hook.clientConfig?.service;
    if (!svc) {
      checks.push({ check: 'service', status: 'warn', message: `${ours} calls a URL (${hook.clientConfig?.url ?? '?'}), not a Service; serving certificate not checked` });
    } else {
      const host = `${svc.name}.${svc.namespace}.svc`;
      let serviceOk = true;
      try {
        await core.readNamespacedService({ name: svc.name, namespace: svc.namespace }, t());
        checks.push({ check: 'service', status: 'ok', message: `Service ${svc.namespace}/${svc.name} exists` });
      } catch (err) {
        const code = httpStatus(err);
        if (code === 404) {
          serviceOk = false;
          checks.push({ check: 'service', status: 'fail', message: `Service ${svc.namespace}/${svc.name} not found: every call fails and pods pass unchanged`, fix: 'kubectl apply -k deploy/base' });
        } else checks.push({ check: 'service', status: 'warn', message: describeKubeError(err, `cannot read Service ${svc.namespace}/${svc.name}`, server) });
      }
      if (serviceOk) {
        try {
          const ep = await core.readNamespacedEndpoints({ name: svc.name, namespace: svc.namespace }, t());
          const ready = (ep.subsets ?? []).reduce((n, sub) => n + (sub.addresses?.length ?? 0), 0);
          checks.push(
            ready > 0
              ? { check: 'endpoints', status: 'ok', message: `${plural(ready, 'ready mesh-guard pod')} behind the Service` }
              : { check: 'endpoints', status: 'fail', message: 'no ready mesh-guard pod behind the Service: every call fails and pods pass unchanged', fix: `kubectl -n ${svc.namespace} get pods,events (is the Deployment running and ready?)` },
          );
        } catch (err) {
          const code = httpStatus(err);
          checks.push(
            code === 404
              ? { check: 'endpoints', status: 'fail', message: `no Endpoints for Service ${svc.namespace}/${svc.name}: no mesh-guard pod has ever been ready`, fix: `kubectl -n ${svc.namespace} get pods,events` }
              : { check: 'endpoints', status: 'warn', message: describeKubeError(err, `cannot read Endpoints ${svc.namespace}/${svc.name}`, server) },
          );
        }
        try {
          const secret = await core.readNamespacedSecret({ name: secretName, namespace: svc.namespace }, t());
          const crt = secret.data?.['tls.crt'];
          if (!crt) checks.push({ check: 'servingCert', status: 'fail', message: `Secret ${svc.namespace}/${secretName} has no tls.crt`, fix: 're-create it (certs-scripts/create.sh)' });
          else checks.push(checkServingCert(Buffer.from(crt, 'base64').toString('utf8'), ca.cas, host, now));
        } catch (err) {
          const code = httpStatus(err);
          if (code === 403) {
            checks.push({ check: 'servingCert', status: 'warn', message: `not allowed to read Secret ${svc.namespace}/${secretName} (403); serving certificate not checked`, fix: `run with "get secrets" in ${svc.namespace}, or pass --tls-secret` });
          } else if (code === 404) {
            checks.push({ check: 'servingCert', status: 'fail', message: `Secret ${svc.namespace}/${secretName} not found: mesh-guard cannot start`, fix: 'create it with certs-scripts/create.sh or the cert-manager overlay (or pass --tls-secret)' });
          } else checks.push({ check: 'servingCert', status: 'warn', message: describeKubeError(err, `cannot read Secret ${svc.namespace}/${secretName}`, server) });
        }
      }
    }
  }

  // Scope: node-agent and CSI driver DaemonSets inside our selectors.
  const hooks = (mine?.webhooks ?? []).filter(seesPods);
  if (hooks.length) {
    try {
      const daemonSets = await listAll<V1DaemonSet>(500, (page) => apps.listDaemonSetForAllNamespaces(page, t()));
      const labels = new Map<string, Readonly<Record<string, string>>>();
      try {
        const nss = await listAll<V1Namespace>(500, (page) => core.listNamespace(page, t()));
        for (const n of nss) if (n.metadata?.name) labels.set(n.metadata.name, { ...(n.metadata.labels ?? {}) });
      } catch {
        // Without namespace labels, kubernetes.io/metadata.name (always set) is still known.
      }
      checks.push(checkScope(hooks, daemonSets, labels, config));
    } catch (err) {
      checks.push({ check: 'scope', status: 'warn', message: describeKubeError(err, 'cannot list daemonsets to check the webhook covers the node agents', server) });
    }
  }

  // Native sidecars: istiod's env and the kubelets.
  try {
    const istiods = await listAll<V1Deployment>(500, (page) => apps.listDeploymentForAllNamespaces({ labelSelector: 'app=istiod', ...page }, t()));
    let nodes: V1Node[] | string;
    try {
      nodes = istiods.length ? await listAll<V1Node>(500, (page) => core.listNode(page, t())) : [];
    } catch (err) {
      nodes = describeKubeError(err, 'cannot list nodes', server);
    }
    checks.push(checkNativeSidecars(istiods, nodes, config));
  } catch (err) {
    checks.push({ check: 'nativeSidecars', status: 'warn', message: describeKubeError(err, 'cannot list deployments to find istiod', server), fix: 'grant list on deployments, or check ENABLE_NATIVE_SIDECARS on istiod by hand' });
  }

  const report: DoctorReport = { order, peers: peerEntries(discovery, settings), checks: sortChecks(checks) };
  io.out(format === 'json' ? `${JSON.stringify(report, null, 2)}\n` : renderDoctorTable(report));
  if (!mine && mwcs.length === 0) io.err('mesh-guard doctor: note: the cluster has no mutating webhook configurations at all\n');
  return report.checks.some((c) => c.status === 'fail') ? EXIT_FINDINGS : EXIT_OK;
}

const CHECK_ORDER = ['webhook', 'order', 'peers', 'peerSettings', 'mirror', 'scope', 'failurePolicy', 'timeout', 'reinvocationPolicy', 'caBundle', 'service', 'endpoints', 'servingCert', 'nativeSidecars', 'dynatrace'];
function sortChecks(checks: Check[]): Check[] {
  return [...checks].sort((a, b) => CHECK_ORDER.indexOf(a.check) - CHECK_ORDER.indexOf(b.check));
}

