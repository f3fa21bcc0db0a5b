/**
 * Test-only stand-in for Istio's sidecar injector, limited to what the Istio rules care
 * about: the `sidecar.istio.io/status` annotation, an `istio-proxy` container (regular or
 * native), and a faithful reimplementation of `applyPrometheusMerge` (istio.md §1,
 * pkg/kube/inject/webhook.go) including the 1.31 port validation.
 */
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { expect } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { parseGoBool, sanitizePrometheusLabelName } from '../../src/admission/annotations.js';
import { inspectPod } from '../../src/admission/pod.js';
import type { NamespaceLookup } from '../../src/cluster/view.js';
import { parseConfig } from '../../src/config/load.js';
import type { Rule, RuleResult } from '../../src/rules/types.js';

export interface IstioOptions {
  /** Mesh defaultConfig.statusPort. */
  statusPort?: number;
  /** Mesh enablePrometheusMerge. */
  enablePrometheusMerge?: boolean;
  /** ENABLE_NATIVE_SIDECARS resolved for the node (1.27+ "auto" on ≥1.33 kubelets is true). */
  nativeSidecars?: boolean;
  /** Apply the 1.31 prometheus.io/port validation (reject → throws). */
  validatePorts?: boolean;
}

const RESERVED = [15000, 15001, 15004, 15006, 15008, 15020, 15021, 15053, 15090];
const SCRAPE = 'prometheus_io_scrape';
const PORT = 'prometheus_io_port';
const PATH = 'prometheus_io_path';

export class IstioRejected extends Error {}

/** Annotation entries in a stable order (Go map order is random; tests avoid depending on it). */
const entries = (a: Record<string, string>) => Object.entries(a).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0));

function getPrometheusScrape(a: Record<string, string>): boolean {
  for (const [k, v] of entries(a)) {
    if (sanitizePrometheusLabelName(k) !== SCRAPE) continue;
    const b = parseGoBool(v);
    if (b !== undefined) return b;
  }
  return true;
}

function enablePrometheusMerge(mesh: boolean, a: Record<string, string>): boolean {
  const raw = a['prometheus.istio.io/merge-metrics'];
  if (raw !== undefined) {
    const b = parseGoBool(raw);
    if (b === undefined) throw new IstioRejected(`invalid prometheus.istio.io/merge-metrics ${raw}`);
    return b;
  }
  return mesh;
}

function findSidecar(pod: V1Pod): V1Container | undefined {
  return [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])].find((c) => c.name === 'istio-proxy');
}

/** applyPrometheusMerge, mutating `pod`. */
export function applyPrometheusMerge(pod: V1Pod, opts: IstioOptions = {}): void {
  const statusPort = opts.statusPort ?? 15020;
  const a = (pod.metadata!.annotations ??= {});
  if (!(getPrometheusScrape(a) && enablePrometheusMerge(opts.enablePrometheusMerge ?? true, a))) return;
  const target = String(statusPort);
  const cur = entries(a).find(([k]) => sanitizePrometheusLabelName(k) === PORT);
  if (cur) {
    if (cur[1] === target) return;
    if (opts.validatePorts ?? true) {
      if (!/^[+-]?[0-9]+$/.test(cur[1])) throw new IstioRejected(`prometheus.io/port ${cur[1]} is not an integer`);
      const n = Number(cur[1]);
      if (n < 1 || n > 65535 || n === statusPort || RESERVED.includes(n)) throw new IstioRejected(`prometheus.io/port ${cur[1]} is reserved or out of range`);
    }
  }
  const scrape = { scrape: '', path: '', port: '' };
  for (const [k, v] of entries(a)) {
    const s = sanitizePrometheusLabelName(k);
    if (s === PORT) scrape.port = v;
    else if (s === SCRAPE) scrape.scrape = v;
    else if (s === PATH) scrape.path = v;
  }
  const sidecar = findSidecar(pod);
  if (sidecar && (scrape.scrape || scrape.path || scrape.port)) {
    // Go json.Marshal of status.PrometheusScrapeConfiguration: field order scrape, path, port.
    (sidecar.env ??= []).push({ name: 'ISTIO_PROMETHEUS_ANNOTATIONS', value: JSON.stringify(scrape) });
  }
  for (const k of Object.keys(a)) if ([SCRAPE, PORT, PATH].includes(sanitizePrometheusLabelName(k))) delete a[k];
  a['prometheus.io/port'] = target;
  a['prometheus.io/path'] = '/stats/prometheus';
  a['prometheus.io/scrape'] = 'true';
}

/**
 * A minimal sidecar injection of an already-admitted pod: istio-init + istio-proxy
 * (native per the 1.27+ template rule), the status annotation, then the metric merge.
 * A pod that already carries sidecar.istio.io/status is only re-merged (like stripPod +
 * re-injection keeping the existing proxy).
 */
export function istioInject(input: V1Pod, opts: IstioOptions = {}): V1Pod {
  const pod = structuredClone(input);
  pod.metadata ??= {};
  const a = (pod.metadata.annotations ??= {});
  pod.spec ??= { containers: [] };
  if (a['sidecar.istio.io/status'] === undefined) {
    const annotation = a['sidecar.istio.io/nativeSidecar'];
    // 1.27+ template: ne (annotation | default .NativeSidecars) "false".
    const native = annotation ? annotation !== 'false' : (opts.nativeSidecars ?? true);
    const proxy: V1Container = {
      name: 'istio-proxy',
      image: 'registry.istio.io/release/proxyv2:1.31.0',
      args: ['proxy', 'sidecar'],
      env: [{ name: 'PILOT_CERT_PROVIDER', value: 'istiod' }],
      ...(native ? { restartPolicy: 'Always' } : {}),
    };
    const init: V1Container = { name: 'istio-init', image: 'registry.istio.io/release/proxyv2:1.31.0', args: ['istio-iptables'] };
    const others = pod.spec.initContainers ?? [];
    pod.spec.initContainers = native ? [init, proxy, ...others] : [...others, init];
    // reorderPod: a classic proxy goes last, or first when the pod's ProxyConfig holds the app.
    if (!native) pod.spec.containers = holdsApplication(a) ? [proxy, ...pod.spec.containers] : [...pod.spec.containers, proxy];
    a['sidecar.istio.io/status'] = JSON.stringify({
      initContainers: native ? ['istio-init', 'istio-proxy'] : ['istio-init'],
      containers: native ? null : ['istio-proxy'],
      volumes: ['istio-envoy'],
      imagePullSecrets: null,
      revision: 'default',
    });
  }
  applyPrometheusMerge(pod, opts);
  return pod;
}

/** proxy.istio.io/config's holdApplicationUntilProxyStarts, as YAML 1.1 reads it (mesh default false). */
function holdsApplication(a: Record<string, string>): boolean {
  const raw = a['proxy.istio.io/config'];
  if (!raw) return false;
  const config = parseYaml(raw, { version: '1.1' }) as Record<string, unknown> | null;
  return config?.holdApplicationUntilProxyStarts === true;
}

/** Every ISTIO_PROMETHEUS_ANNOTATIONS value on istio-proxy, in order. */
export function storedScrapeEnv(pod: V1Pod): string[] {
  const proxy = findSidecar(pod);
  return (proxy?.env ?? []).filter((e) => e.name === 'ISTIO_PROMETHEUS_ANNOTATIONS').map((e) => e.value ?? '');
}

/** Namespace labels used across the Istio tests. */
export const NS = {
  /** istio-injection=enabled and Dynatrace-injected. */
  meshed: { 'istio-injection': 'enabled', 'dynakube.internal.dynatrace.com/instance': 'dynakube' },
  /** istio-injection=enabled, no Dynatrace. */
  meshedOnly: { 'istio-injection': 'enabled' },
} as const;

/** A pod and its surroundings for the Istio rules' case tables. */
export interface PodCase {
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
  /** Namespace labels, or the lookup state; defaults to the table's own. */
  ns?: Record<string, string> | 'unknown' | 'absent';
  /** Namespace name, "shop" unless given. */
  namespace?: string;
  hostNetwork?: boolean;
  restartPolicy?: 'Always' | 'OnFailure' | 'Never';
  /** Config YAML text. */
  config?: string;
  containers?: V1Container[];
  initContainers?: V1Container[];
}

export function podOf(c: PodCase): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { generateName: 'app-', namespace: c.namespace ?? 'shop', annotations: c.annotations, labels: c.labels },
    spec: { containers: c.containers ?? [{ name: 'app', image: 'shop:1' }], initContainers: c.initContainers, hostNetwork: c.hostNetwork, restartPolicy: c.restartPolicy },
  };
}

/** Runs one rule on a case directly (no engine), so tables can check changes and reasons. */
export function evaluateCase(rule: Rule, c: PodCase, defaultNs: Record<string, string>): RuleResult {
  const inspected = inspectPod(podOf(c), c.namespace ?? 'shop');
  if (!inspected.ok) throw new Error(inspected.reason);
  const ns = c.ns ?? defaultNs;
  const lookup: NamespaceLookup =
    ns === 'unknown' ? { state: 'unknown', reason: 'cluster view is off' } : ns === 'absent' ? { state: 'absent' } : { state: 'known', labels: ns };
  return rule.evaluate(inspected.pod, { config: parseConfig(c.config ?? ''), namespace: lookup, activeGateIPs: [] });
}

/** A metric-merging rule stood back: no changes, one reason that names the request, then `reason`. */
export function expectStoodBack(r: RuleResult, reason: RegExp): void {
  expect(r.changes).toEqual([]);
  expect(r.reasons).toHaveLength(1);
  expect(r.reasons[0]).toMatch(/^metrics.dynatrace.com\/scrape="true", but /);
  expect(r.reasons[0]).toMatch(reason);
}
