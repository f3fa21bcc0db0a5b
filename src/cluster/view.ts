import type { PeerSettings } from './peer-settings.js';
import type { WebhookDiscovery } from './webhooks.js';

/**
 * The read-only slice of cluster state that rules may consult at admission time.
 *
 * An AdmissionReview carries the pod but not its namespace, and most decisions hang on
 * namespace labels, so the answer distinguishes "known", "the namespace does not exist"
 * and "unknown" (no cluster access, or not synced): rules fall back to configured
 * defaults on "unknown" and say so in their reasons.
 */
export type NamespaceLookup =
  | { readonly state: 'known'; readonly labels: Readonly<Record<string, string>> }
  | { readonly state: 'absent' }
  | { readonly state: 'unknown'; readonly reason: string };

/** off: no cluster configured; syncing: before first sync; synced; degraded: watch broken or sync timed out. */
export type ClusterViewState = 'off' | 'syncing' | 'synced' | 'degraded';

export interface ClusterView {
  readonly state: ClusterViewState;
  /**
   * Labels of a namespace. An answer held in memory is returned as is, so an admission that
   * needs no API call finishes in the tick its request arrived in. On a cache miss an
   * implementation may do one bounded live GET (never longer than its configured timeout,
   * never retried in a loop) and return its promise.
   */
  namespaceLabels(name: string): NamespaceLookup | Promise<NamespaceLookup>;
  /** ClusterIPs (IPv4 and IPv6) of the Dynatrace ActiveGate Services; null when unknown. */
  activeGateServiceIPs(): readonly string[] | null;
  /**
   * The mutating webhook configurations, as far as matching needs them, from memory. Optional:
   * views that do not watch them (the offline view, fixed views in tests, the CLIs) leave it out,
   * and the predictions then use the config mirrors without mentioning discovery.
   */
  mutatingWebhooks?(): WebhookDiscovery;
  /**
   * The peers' own settings (Istio's injector and mesh ConfigMaps, Consul's injector flags) that the
   * discovered webhooks point at, from memory. Optional like `mutatingWebhooks`; without it the
   * predictions use the config mirrors for these settings.
   */
  peerSettings?(): PeerSettings;
  /** Resolves after the first sync, or after the bounded wait; never rejects. */
  ready(): Promise<void>;
  close(): Promise<void>;
}

const OFF_LOOKUP: NamespaceLookup = Object.freeze({
  state: 'unknown',
  reason: 'cluster view is off (no in-cluster config and no KUBECONFIG)',
});

/** The view used when no cluster is reachable: every answer is "unknown". */
export const offlineClusterView: ClusterView = {
  state: 'off',
  namespaceLabels: () => OFF_LOOKUP,
  activeGateServiceIPs: () => null,
  ready: async () => undefined,
  close: async () => undefined,
};

/** A fixed view, for tests and for the offline `preview` CLI. */
export function staticClusterView(
  namespaces: Readonly<Record<string, Readonly<Record<string, string>>>>,
  activeGateIPs: readonly string[] | null = [],
  webhooks?: WebhookDiscovery,
  settings?: PeerSettings,
): ClusterView {
  return {
    state: 'synced',
    namespaceLabels: (name) => {
      const labels = Object.hasOwn(namespaces, name) ? namespaces[name] : undefined;
      return labels ? { state: 'known', labels } : { state: 'absent' };
    },
    activeGateServiceIPs: () => activeGateIPs,
    ...(webhooks ? { mutatingWebhooks: () => webhooks } : {}),
    ...(settings ? { peerSettings: () => settings } : {}),
    ready: async () => undefined,
    close: async () => undefined,
  };
}
