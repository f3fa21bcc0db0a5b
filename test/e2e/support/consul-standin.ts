/**
 * What consul-k8s's connect-inject webhook does to a pod (consul.md §1-§4, peers-2026-12.md §4),
 * as a pure function: `consulMutate(pod, namespace, options)` returns the mutated pod, "not
 * injected", or the error the real webhook answers with (admission.Errored(500, …), which the
 * API server turns into a denial).
 *
 * Source: hashicorp/consul-k8s a507b1d, control-plane/connect-inject/webhook/mesh_webhook.go
 * `Handle` unless a line says otherwise. Checks and mutations run in Handle's order, so the error
 * a broken pod gets is the one Consul would return first.
 *
 * Not modelled (none of the suite's pods use them): multi-port pods, upstream env vars, lifecycle
 * and dataplane-as-native-sidecar, probe overwriting (HTTP probes), Consul DNS, access logs,
 * OpenShift UIDs, Consul Enterprise namespaces, consul-dataplane's own flags beyond telemetry.
 */
import type { V1Container, V1ContainerPort, V1Pod } from '@kubernetes/client-node';
import {
  CONSUL_CONNECT_INJECT,
  CONSUL_CONNECT_INJECT_STATUS,
  CONSUL_INIT_CONTAINER,
  CONSUL_REDIRECT_TRAFFIC_ANNOTATION,
  CONSUL_REDIRECT_TRAFFIC_ENV,
  CONSUL_TRANSPARENT_PROXY,
  CONSUL_TRANSPARENT_PROXY_STATUS,
  parseGoBool,
} from '../../../src/admission/annotations.js';
import { CONSUL_SYSTEM_NAMESPACES } from '../../../src/rules/consul.js';
import { goJson, renderRedirectConfig } from '../../support/consul.js';

/** The injector's flags, with the Helm chart's defaults (charts/consul/values.yaml, connectInject.*). */
export interface ConsulOptions {
  /** `-default-inject` (connectInject.default: false): inject pods without the connect-inject annotation. */
  defaultInject?: boolean;
  /** `-default-enable-transparent-proxy` (connectInject.transparentProxy.defaultEnabled: true). */
  transparentProxyDefault?: boolean;
  /** connectInject.cni.enabled (false): the redirect config goes into an annotation instead of the init container's env. */
  cni?: boolean;
  /** connectInject.k8sAllowNamespaces (["*"]) and k8sDenyNamespaces ([]). */
  allowNamespaces?: readonly string[];
  denyNamespaces?: readonly string[];
  /** connectInject.metrics.defaultEnabled ("-" → global.metrics.enabled: false). */
  defaultEnableMetrics?: boolean;
  /** connectInject.metrics.defaultEnableMerging (false). */
  defaultEnableMetricsMerging?: boolean;
  /** connectInject.metrics.defaultMergedMetricsPort (20100). */
  defaultMergedMetricsPort?: string;
  /** connectInject.metrics.defaultPrometheusScrapePort (20200). */
  defaultPrometheusScrapePort?: string;
  /** connectInject.metrics.defaultPrometheusScrapePath (/metrics). */
  defaultPrometheusScrapePath?: string;
  /** The binary's version (version.GetHumanVersion) written to the version annotations. */
  version?: string;
  imageConsulK8s?: string;
  imageConsulDataplane?: string;
}

export type ConsulOutcome =
  | { readonly kind: 'patched'; readonly pod: V1Pod }
  | { readonly kind: 'skipped'; readonly message: string }
  | { readonly kind: 'error'; readonly message: string };

const A = {
  port: 'consul.hashicorp.com/connect-service-port',
  originalPod: 'consul.hashicorp.com/original-pod',
  legacyVersion: 'consul.hashicorp.com/connect-k8s-version',
  version: 'consul.hashicorp.com/consul-k8s-version',
  dualStack: 'consul.hashicorp.com/dual-stack',
  managedBy: 'consul.hashicorp.com/connect-inject-managed-by',
  enableMetrics: 'consul.hashicorp.com/enable-metrics',
  enableMetricsMerging: 'consul.hashicorp.com/enable-metrics-merging',
  mergedMetricsPort: 'consul.hashicorp.com/merged-metrics-port',
  scrapePort: 'consul.hashicorp.com/prometheus-scrape-port',
  scrapePath: 'consul.hashicorp.com/prometheus-scrape-path',
  serviceMetricsPort: 'consul.hashicorp.com/service-metrics-port',
  serviceMetricsPath: 'consul.hashicorp.com/service-metrics-path',
} as const;

class ConsulError extends Error {}

/** Go's `strconv.ParseBool` error text. */
function parseBool(raw: string): boolean {
  const b = parseGoBool(raw);
  if (b === undefined) throw new ConsulError(`strconv.ParseBool: parsing ${JSON.stringify(raw)}: invalid syntax`);
  return b;
}

/** common.PortValue: a named port of any container, else strconv.ParseInt(value, 0, 32) of the first comma item. */
function portValue(pod: V1Pod, value: string): number | undefined {
  const first = value.split(',')[0] ?? '';
  for (const c of pod.spec?.containers ?? []) for (const p of c.ports ?? []) if (p.name === first) return p.containerPort;
  return goParseInt32(first);
}

/** strconv.ParseInt(s, 0, 32): sign, then 0x/0b/0o or a leading 0 (octal), else decimal; underscores not modelled. */
function goParseInt32(s: string): number | undefined {
  const m = /^([+-]?)(0[xX][0-9a-fA-F]+|0[bB][01]+|0[oO][0-7]+|0[0-7]*|[1-9][0-9]*)$/.exec(s);
  if (!m) return undefined;
  const digits = m[2] as string;
  const magnitude = /^0[0-7]+$/.test(digits) ? BigInt(`0o${digits.slice(1)}`) : BigInt(digits);
  const n = m[1] === '-' ? -magnitude : magnitude;
  return n >= -(2n ** 31n) && n < 2n ** 31n ? Number(n) : undefined;
}

/** common.DetermineAndValidatePort. */
function determinePort(pod: V1Pod, key: string, defaultPort: string, privileged: boolean): string {
  const raw = pod.metadata?.annotations?.[key];
  if (raw !== undefined && raw !== '') {
    const port = portValue(pod, raw);
    if (port === undefined) throw new ConsulError(`${key} annotation value of ${raw} is not a valid integer`);
    if (privileged && (port < 1 || port > 65535)) throw new ConsulError(`${key} annotation value of ${port} is not in the valid port range 1-65535`);
    if (!privileged && (port < 1024 || port > 65535)) throw new ConsulError(`${key} annotation value of ${port} is not in the unprivileged port range 1024-65535`);
    return String(port);
  }
  if (defaultPort !== '') {
    const port = portValue(pod, defaultPort);
    if (port === undefined) throw new ConsulError(`${defaultPort} is not a valid port on the pod ${pod.metadata?.name ?? ''}`);
    return String(port);
  }
  return '';
}

/** control-plane/connect-inject/metrics/metrics_configuration.go `Config`: an empty annotation means the default. */
class MetricsConfig {
  constructor(private readonly o: Required<ConsulOptions>) {}

  private bool(pod: V1Pod, key: string, def: boolean): boolean {
    const raw = pod.metadata?.annotations?.[key];
    if (raw === undefined || raw === '') return def;
    try {
      return parseBool(raw);
    } catch (e) {
      throw new ConsulError(`${key} annotation value of ${raw} was invalid: ${(e as Error).message}`);
    }
  }
  enableMetrics = (pod: V1Pod) => this.bool(pod, A.enableMetrics, this.o.defaultEnableMetrics);
  enableMetricsMerging = (pod: V1Pod) => this.bool(pod, A.enableMetricsMerging, this.o.defaultEnableMetricsMerging);
  mergedMetricsPort = (pod: V1Pod) => determinePort(pod, A.mergedMetricsPort, this.o.defaultMergedMetricsPort, false);
  prometheusScrapePort = (pod: V1Pod) => determinePort(pod, A.scrapePort, this.o.defaultPrometheusScrapePort, false);
  prometheusScrapePath(pod: V1Pod): string {
    const raw = pod.metadata?.annotations?.[A.scrapePath];
    return raw !== undefined && raw !== '' ? raw : this.o.defaultPrometheusScrapePath || '/metrics';
  }
  serviceMetricsPort(pod: V1Pod): string {
    const raw = pod.metadata?.annotations?.[A.port];
    return determinePort(pod, A.serviceMetricsPort, raw !== undefined && raw !== '' ? raw : '0', true);
  }
  serviceMetricsPath(pod: V1Pod): string {
    const raw = pod.metadata?.annotations?.[A.serviceMetricsPath];
    return raw !== undefined && raw !== '' ? raw : '/metrics';
  }
  shouldRunMergedMetricsServer(pod: V1Pod): boolean {
    const metrics = this.enableMetrics(pod);
    const merging = this.enableMetricsMerging(pod);
    const smp = Number(this.serviceMetricsPort(pod)) || 0;
    return metrics && merging && smp > 0;
  }
}

export function resolveConsulOptions(o: ConsulOptions = {}): Required<ConsulOptions> {
  return {
    defaultInject: o.defaultInject ?? false,
    transparentProxyDefault: o.transparentProxyDefault ?? true,
    cni: o.cni ?? false,
    allowNamespaces: o.allowNamespaces ?? ['*'],
    denyNamespaces: o.denyNamespaces ?? [],
    defaultEnableMetrics: o.defaultEnableMetrics ?? false,
    defaultEnableMetricsMerging: o.defaultEnableMetricsMerging ?? false,
    defaultMergedMetricsPort: o.defaultMergedMetricsPort ?? '20100',
    defaultPrometheusScrapePort: o.defaultPrometheusScrapePort ?? '20200',
    defaultPrometheusScrapePath: o.defaultPrometheusScrapePath ?? '/metrics',
    version: o.version ?? '1.9.0',
    imageConsulK8s: o.imageConsulK8s ?? 'hashicorp/consul-k8s-control-plane:1.9.0',
    imageConsulDataplane: o.imageConsulDataplane ?? 'hashicorp/consul-dataplane:1.9.0',
  };
}

/** `shouldInject`: system namespaces, deny and allow lists, already injected, then the annotation or the default. */
function shouldInject(pod: V1Pod, namespace: string, o: Required<ConsulOptions>): boolean {
  if (CONSUL_SYSTEM_NAMESPACES.includes(namespace)) return false;
  if (o.denyNamespaces.includes(namespace)) return false;
  if (!o.allowNamespaces.includes('*') && !o.allowNamespaces.includes(namespace)) return false;
  const a = pod.metadata?.annotations ?? {};
  if ((a[CONSUL_CONNECT_INJECT_STATUS] ?? '') !== '') return false;
  const raw = a[CONSUL_CONNECT_INJECT];
  if (raw !== undefined) return parseBool(raw);
  return o.defaultInject;
}

/** common.TransparentProxyEnabled: pod annotation, then the namespace label, then the flag. */
function transparentProxyEnabled(pod: V1Pod, nsLabels: Readonly<Record<string, string>>, o: Required<ConsulOptions>): boolean {
  const own = pod.metadata?.annotations?.[CONSUL_TRANSPARENT_PROXY];
  if (own !== undefined) return parseBool(own);
  const label = nsLabels[CONSUL_TRANSPARENT_PROXY];
  if (label !== undefined) return parseBool(label);
  return o.transparentProxyDefault;
}

/** `defaultConnectServicePortsAnnotation`: the first container's port names (or numbers), comma-joined. */
function defaultServicePorts(pod: V1Pod): string {
  const ports = pod.spec?.containers?.[0]?.ports ?? [];
  return ports.flatMap((p) => (p.name ? [p.name] : p.containerPort > 0 ? [String(p.containerPort)] : [])).join(',');
}

/** iptablesConfigJSON (webhook/redirect_traffic.go), reading the exclusion annotations of `pod` as they are now. */
function redirectConfig(pod: V1Pod, m: MetricsConfig): string {
  const scrapePort = m.enableMetrics(pod) ? m.prometheusScrapePort(pod) : undefined;
  return renderRedirectConfig(pod.metadata?.annotations ?? {}, { prometheusScrapePort: scrapePort });
}

/** containerInit (webhook/container_init.go), single-port, non-OpenShift. */
function initContainer(pod: V1Pod, tproxy: boolean, m: MetricsConfig, o: Required<ConsulOptions>): V1Container {
  const container: V1Container = {
    name: CONSUL_INIT_CONTAINER,
    image: o.imageConsulK8s,
    env: [
      { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
      { name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
      { name: 'CONSUL_ADDRESSES', value: 'consul-consul-server.consul.svc' },
      { name: 'CONSUL_GRPC_PORT', value: '8502' },
      { name: 'CONSUL_HTTP_PORT', value: '8500' },
      { name: 'CONSUL_API_TIMEOUT', value: '5m0s' },
      { name: 'CONSUL_NODE_NAME', value: '$(NODE_NAME)-virtual' },
    ],
    volumeMounts: [{ name: 'consul-connect-inject-data', mountPath: '/consul/connect-inject' }],
    command: ['/bin/sh', '-ec', 'consul-k8s-control-plane connect-init -pod-name=${POD_NAME} -pod-namespace=${POD_NAMESPACE} \\\n  -log-level=info \\\n  -log-json=false \\\n  -service-account-name="default" \\\n  -service-name="" \\\n  -proxy-id-file=/consul/connect-inject/proxyid'],
  };
  if (tproxy && o.cni) {
    container.securityContext = {
      seccompProfile: { type: 'RuntimeDefault' }, runAsUser: 5996, runAsGroup: 5996, runAsNonRoot: true, privileged: false,
      capabilities: { drop: ['ALL'] }, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false,
    };
  } else if (tproxy) {
    // The config is rendered here, from the annotations present now: later edits never reach iptables.
    container.env!.push({ name: CONSUL_REDIRECT_TRAFFIC_ENV, value: redirectConfig(pod, m) });
    container.securityContext = { runAsUser: 0, runAsGroup: 0, runAsNonRoot: false, privileged: false, capabilities: { add: ['NET_ADMIN'] } };
  } else {
    container.securityContext = {
      allowPrivilegeEscalation: false, capabilities: { add: [], drop: ['ALL'] }, readOnlyRootFilesystem: true, runAsNonRoot: true,
      seccompProfile: { type: 'RuntimeDefault' },
    };
  }
  return container;
}

/** consulDataplaneSidecar (webhook/consul_dataplane_sidecar.go): the telemetry flags of getContainerSidecarArgs and getMetricsPorts. */
function dataplaneSidecar(pod: V1Pod, m: MetricsConfig, o: Required<ConsulOptions>): V1Container {
  const args = ['-addresses=consul-consul-server.consul.svc', '-grpc-port=8502', '-proxy-service-id-path=/consul/connect-inject/proxyid', '-log-level=info', '-log-json=false', '-envoy-concurrency=2'];
  args.push(`-telemetry-prom-scrape-path=${m.prometheusScrapePath(pod)}`);
  let merged: boolean;
  try {
    merged = m.shouldRunMergedMetricsServer(pod);
  } catch (e) {
    throw new ConsulError(`unable to determine if merged metrics is enabled: ${(e as Error).message}`);
  }
  if (merged) {
    args.push(`-telemetry-prom-merge-port=${m.mergedMetricsPort(pod)}`);
    const path = m.serviceMetricsPath(pod);
    const port = m.serviceMetricsPort(pod);
    if (path !== '' && port !== '') args.push(`-telemetry-prom-service-metrics-url=http://127.0.0.1:${port}${path}`);
  }
  let ports: V1ContainerPort[] = [];
  let metrics: boolean;
  try {
    metrics = m.enableMetrics(pod);
  } catch (e) {
    throw new ConsulError(`error determining if metrics are enabled: ${(e as Error).message}`);
  }
  if (metrics) {
    const scrape = m.prometheusScrapePort(pod);
    if (scrape !== '') ports = [{ name: 'prometheus', containerPort: Number(scrape), protocol: 'TCP' }];
  }
  return {
    name: 'consul-dataplane',
    image: o.imageConsulDataplane,
    args,
    ...(ports.length ? { ports } : {}),
    volumeMounts: [{ name: 'consul-connect-inject-data', mountPath: '/consul/connect-inject' }],
    readinessProbe: { tcpSocket: { port: 20000 }, failureThreshold: 3, initialDelaySeconds: 1, periodSeconds: 10, successThreshold: 1, timeoutSeconds: 1 },
    securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] }, readOnlyRootFilesystem: true, runAsGroup: 5995, runAsNonRoot: true, runAsUser: 5995 },
  };
}

/**
 * Handle: the pod after Consul's injection, "does not require injection", or the error the
 * real webhook returns (each step's own prefix, as in Handle).
 */
export function consulMutate(input: V1Pod, namespace: string, nsLabels: Readonly<Record<string, string>>, options: ConsulOptions = {}): ConsulOutcome {
  const o = resolveConsulOptions(options);
  const m = new MetricsConfig(o);
  const pod = structuredClone(input);
  // Go's json.Marshal(pod) of the decoded object, taken before any change.
  const original = goJson(input);
  const step = <T>(prefix: string, f: () => T): T => {
    try {
      return f();
    } catch (e) {
      if (e instanceof ConsulError) throw new ConsulError(`${prefix}: ${e.message}`);
      throw e;
    }
  };
  try {
    pod.metadata ??= {};
    const a = (pod.metadata.annotations ??= {});
    // defaultAnnotations runs before shouldInject, but its changes only reach the patch when the pod is injected.
    if (!(A.port in a)) {
      const ports = defaultServicePorts(pod);
      if (ports !== '') a[A.port] = ports;
    }
    a[A.originalPod] = original;
    a[A.legacyVersion] = o.version;
    a[A.version] = o.version;
    if (!step('error checking if should inject', () => shouldInject(pod, namespace, o))) {
      return { kind: 'skipped', message: `Pod ${pod.metadata.name ?? ''} does not require injection` };
    }
    pod.spec ??= { containers: [] };
    (pod.spec.volumes ??= []).push({ name: 'consul-connect-inject-data', emptyDir: { medium: 'Memory' } });
    const tproxyForInit = step('error configuring injection init container', () => transparentProxyEnabled(pod, nsLabels, o));
    const init = step('error configuring injection init container', () => initContainer(pod, tproxyForInit, m, o));
    (pod.spec.initContainers ??= []).push(init);
    const sidecar = step('error configuring injection sidecar container', () => dataplaneSidecar(pod, m, o));
    pod.spec.containers.push(sidecar);
    a[CONSUL_CONNECT_INJECT_STATUS] = 'injected';
    const tproxy = step('error determining if transparent proxy is enabled', () => transparentProxyEnabled(pod, nsLabels, o));
    if (tproxy) a[CONSUL_TRANSPARENT_PROXY_STATUS] = 'enabled';
    step('error configuring prometheus annotations', () => {
      const metrics = m.enableMetrics(pod);
      const port = m.prometheusScrapePort(pod);
      const path = m.prometheusScrapePath(pod);
      if (metrics) {
        a['prometheus.io/scrape'] = 'true';
        a['prometheus.io/port'] = port;
        a['prometheus.io/path'] = path;
      }
    });
    const labels = (pod.metadata.labels ??= {});
    labels[CONSUL_CONNECT_INJECT_STATUS] = 'injected';
    labels[A.managedBy] = 'consul-k8s-endpoints-controller';
    if (o.cni && tproxy) {
      a[CONSUL_REDIRECT_TRAFFIC_ANNOTATION] = step('error configuring annotation for CNI traffic redirection', () => redirectConfig(pod, m));
    }
    // addDualStackAnnotation: IPv4 unless the pod IP env says otherwise (constants.Getv4orv6Str).
    a[A.dualStack] = 'false';
    return { kind: 'patched', pod };
  } catch (e) {
    if (e instanceof ConsulError) return { kind: 'error', message: e.message };
    throw e;
  }
}
