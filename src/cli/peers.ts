/**
 * The discovered peers for the CLIs: `doctor` shows them, `audit` predicts with them, as the
 * webhook's cluster view does (src/cluster/webhooks.ts, src/cluster/peer-settings.ts).
 *
 * The CLIs read each settings object with one GET by name (the webhook watches them instead),
 * and compare what the cluster says with the config mirrors: a mirror that disagrees is only
 * used where discovery has no answer, so it is a warning, not a failure.
 */
import { AppsV1Api, CoreV1Api, type KubeConfig, type V1MutatingWebhookConfiguration } from '@kubernetes/client-node';
import {
  describeRef,
  PARSERS,
  settingsKey,
  settingsLookupOf,
  wantedSettings,
  type ConsulInjectorSettings,
  type IstioInjectorSettings,
  type IstioMeshSettings,
  type PeerSettings,
  type SettingsLookup,
  type SettingsRef,
} from '../cluster/peer-settings.js';
import { selectorString, type InvalidSelector, type Selector } from '../cluster/selectors.js';
import {
  describeWebhook,
  knownDiscovery,
  PEER_TITLE,
  PEERS,
  summarizeConfiguration,
  type Peer,
  type WebhookConfigurationSummary,
  type WebhookDiscovery,
} from '../cluster/webhooks.js';
import type { Config } from '../config/schema.js';
import { describeKubeError, httpStatus, withTimeout } from './kube.js';

/** The discovery answer for a list of configurations, as the cluster view builds it. */
export function discoveryOf(mwcs: readonly V1MutatingWebhookConfiguration[]): WebhookDiscovery {
  return knownDiscovery(mwcs.map((m) => summarizeConfiguration(m)).filter((s): s is WebhookConfigurationSummary => s !== undefined));
}

/** One GET per settings object the discovered webhooks point at; refusals and misses become "unknown" with why. */
export async function readPeerSettings(kc: KubeConfig, discovery: WebhookDiscovery, timeoutMs: number): Promise<PeerSettings> {
  const core = kc.makeApiClient(CoreV1Api);
  const apps = kc.makeApiClient(AppsV1Api);
  const server = kc.getCurrentCluster()?.server;
  const out = new Map<string, SettingsLookup>();
  for (const ref of wantedSettings(discovery)) {
    const req = { name: ref.name, namespace: ref.namespace };
    try {
      const obj = ref.kind === 'consul-injector' ? await apps.readNamespacedDeployment(req, withTimeout(timeoutMs)) : await core.readNamespacedConfigMap(req, withTimeout(timeoutMs));
      out.set(settingsKey(ref), settingsLookupOf(ref, PARSERS[ref.kind](obj)));
    } catch (err) {
      out.set(
        settingsKey(ref),
        httpStatus(err) === 404 ? settingsLookupOf(ref, undefined) : { state: 'unknown', reason: describeKubeError(err, `cannot read ${describeRef(ref)}`, server) },
      );
    }
  }
  return out;
}

export interface PeerEntry {
  readonly peer: string;
  /** One line per webhook of the peer, with its selectors. */
  readonly webhooks: readonly string[];
  /** One line per settings object: what was read, or why not. */
  readonly settings: readonly string[];
}

export interface MirrorDisagreement {
  readonly key: string;
  readonly mirror: string;
  readonly cluster: string;
  readonly source: string;
}

const show = (v: unknown) => (Array.isArray(v) ? `[${v.join(', ')}]` : String(v));
const selectors = (list: readonly (Selector | InvalidSelector)[]) => `[${list.map((s) => (s.ok ? selectorString(s) : `invalid: ${s.error}`)).join('; ')}]`;

function describeSettings(ref: SettingsRef, l: SettingsLookup): string {
  if (l.state !== 'known') return `${describeRef(ref)}: not read (${l.reason})`;
  let fields: string;
  if (ref.kind === 'istio-injector') {
    const i = l.value as IstioInjectorSettings;
    fields = `policy ${i.policy || '(none)'}, neverInjectSelector ${selectors(i.neverInjectSelector)}, alwaysInjectSelector ${selectors(i.alwaysInjectSelector)}, ENABLE_NATIVE_SIDECARS ${i.nativeSidecars}, holdApplicationUntilProxyStarts ${i.holdApplicationUntilProxyStarts}`;
  } else if (ref.kind === 'istio-mesh') {
    const m = l.value as IstioMeshSettings;
    fields = `enablePrometheusMerge ${m.enablePrometheusMerge}, defaultConfig.statusPort ${m.statusPort}, defaultConfig.holdApplicationUntilProxyStarts ${m.holdApplicationUntilProxyStarts}`;
  } else {
    const c = l.value as ConsulInjectorSettings;
    fields =
      `-default-inject=${c.defaultInject} -default-enable-transparent-proxy=${c.transparentProxy} -allow-k8s-namespace ${show(c.allowNamespaces)} ` +
      `-deny-k8s-namespace ${show(c.denyNamespaces)} -default-prometheus-scrape-port=${c.prometheusScrapePort} -default-prometheus-scrape-path=${c.prometheusScrapePath}`;
  }
  return `${describeRef(ref)}: ${fields}`;
}

const sameSet = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x) => b.includes(x));

/** Where a config mirror says something else than the object it stands in for. */
export function mirrorDisagreements(discovery: WebhookDiscovery, settings: PeerSettings, config: Config): MirrorDisagreement[] {
  const out: MirrorDisagreement[] = [];
  const add = (key: string, mirror: unknown, cluster: unknown, source: string) => {
    if (show(mirror) !== show(cluster)) out.push({ key, mirror: show(mirror), cluster: show(cluster), source });
  };
  for (const ref of wantedSettings(discovery)) {
    const l = settings.get(settingsKey(ref));
    if (l?.state !== 'known') continue;
    if (ref.kind === 'istio-mesh') {
      const m = l.value as IstioMeshSettings;
      add('istio.prometheusMerge', config.istio.prometheusMerge, m.enablePrometheusMerge, `${l.source} enablePrometheusMerge`);
      add('istio.statusPort', config.istio.statusPort, m.statusPort, `${l.source} defaultConfig.statusPort`);
    } else if (ref.kind === 'consul-injector') {
      const c = l.value as ConsulInjectorSettings;
      add('consul.injectByDefault', config.consul.injectByDefault, c.defaultInject, `${l.source} -default-inject`);
      add('consul.transparentProxyDefault', config.consul.transparentProxyDefault, c.transparentProxy, `${l.source} -default-enable-transparent-proxy`);
      if (!sameSet(config.consul.denyNamespaces, c.denyNamespaces)) add('consul.denyNamespaces', config.consul.denyNamespaces, c.denyNamespaces, `${l.source} -deny-k8s-namespace`);
      add('consul.prometheusScrapePort', config.consul.prometheusScrapePort, c.prometheusScrapePort, `${l.source} -default-prometheus-scrape-port`);
      add('consul.prometheusScrapePath', config.consul.prometheusScrapePath, c.prometheusScrapePath, `${l.source} -default-prometheus-scrape-path`);
    }
  }
  if (discovery.state === 'known' && discovery.peers.istio.length > 0) {
    // Istio renders the auto webhook only with enableNamespacesByDefault (mutatingwebhook.yaml).
    const auto = discovery.peers.istio.find((w) => w.name === 'auto.sidecar-injector.istio.io');
    add('istio.injectByDefault', config.istio.injectByDefault, auto !== undefined, auto ? `webhook ${auto.configuration}/${auto.name}` : 'no auto.sidecar-injector.istio.io webhook');
  }
  return out;
}

/** Each peer's webhooks and settings, for `doctor`. */
export function peerEntries(discovery: WebhookDiscovery, settings: PeerSettings): PeerEntry[] {
  if (discovery.state !== 'known') return [];
  const refsOf = (p: Peer) => wantedSettings({ ...discovery, peers: { istio: [], consul: [], dynatrace: [], [p]: discovery.peers[p] } });
  return PEERS.map((p) => ({
    peer: PEER_TITLE[p],
    webhooks: discovery.peers[p].map(describeWebhook),
    settings: refsOf(p).map((r) => describeSettings(r, settings.get(settingsKey(r)) ?? settingsLookupOf(r, undefined))),
  }));
}
