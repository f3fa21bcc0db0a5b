/**
 * The one place that reads annotation and label values, parsed exactly the way each
 * consumer parses them. A value that one consumer reads as "false" may mean "default"
 * to another, so every reader names its consumer.
 */
import { isMap, isScalar, parseDocument, Scalar, type YAMLMap } from 'yaml';

/** Go's strconv.ParseBool: 1 t T TRUE true True / 0 f F FALSE false False; anything else is an error (undefined). */
export function parseGoBool(value: string | undefined): boolean | undefined {
  switch (value) {
    case '1': case 't': case 'T': case 'TRUE': case 'true': case 'True':
      return true;
    case '0': case 'f': case 'F': case 'FALSE': case 'false': case 'False':
      return false;
    default:
      return undefined;
  }
}

/**
 * Dynatrace Operator's GetFieldBool (dynatrace.md §1.3): absent, empty or unparseable
 * means the default; only a ParseBool value counts.
 */
export function dynatraceBool(value: string | undefined, defaultValue: boolean): boolean {
  return parseGoBool(value) ?? defaultValue;
}

/**
 * Istio's `sidecar.istio.io/inject` object selector (istio.md §5): the pod label wins,
 * else the deprecated annotation. Istio 1.27+ accepts only "true"/"false"; anything else
 * falls back to the default, which we report as undefined.
 */
export function istioInjectSelector(labels: ReadonlyMap<string, string>, annotations: ReadonlyMap<string, string>): boolean | undefined {
  const raw = labels.has(ISTIO_INJECT) ? labels.get(ISTIO_INJECT) : annotations.get(ISTIO_INJECT);
  return raw === 'true' ? true : raw === 'false' ? false : undefined;
}

/**
 * Consul's annotation booleans (consul.md §1-2): strconv.ParseBool, where an unparseable
 * value makes Consul's webhook reject the pod.
 */
export function consulBool(value: string | undefined): { present: false } | { present: true; value: boolean } | { present: true; invalid: true } {
  if (value === undefined) return { present: false };
  const parsed = parseGoBool(value);
  return parsed === undefined ? { present: true, invalid: true } : { present: true, value: parsed };
}

export const ISTIO_INJECT = 'sidecar.istio.io/inject';
export const ISTIO_STATUS = 'sidecar.istio.io/status';
export const ISTIO_NATIVE_SIDECAR = 'sidecar.istio.io/nativeSidecar';
export const DT_INJECT = 'dynatrace.com/inject';
export const DT_ONEAGENT_INJECT = 'oneagent.dynatrace.com/inject';
export const DT_NAMESPACE_INSTANCE = 'dynakube.internal.dynatrace.com/instance';
/** Code-module delivery per pod: "csi" or "ephemeral" (operator mutator/oneagent/config.go AnnotationVolumeType), "image" since 1.11 (docs). */
export const DT_VOLUME_TYPE = 'oneagent.dynatrace.com/volume-type';

/**
 * The per-container OneAgent opt-out, `container.inject.dynatrace.com/<container>`. The operator
 * (pkg/webhook/mutation/pod/mutator/container.go checkInjectionAnnotation) excludes the container
 * only when the value is exactly "false": no ParseBool here.
 */
export const dynatraceContainerOptOutKey = (container: string): string => `container.inject.dynatrace.com/${container}`;
export const dynatraceContainerExcluded = (value: string | undefined): boolean => value === 'false';
export const CONSUL_CONNECT_INJECT = 'consul.hashicorp.com/connect-inject';
/** Set by Consul's webhook once it injected the pod (consul.md §3); it then never runs again. */
export const CONSUL_CONNECT_INJECT_STATUS = 'consul.hashicorp.com/connect-inject-status';
/** Pod annotation and namespace label of the same key (consul.md §2). */
export const CONSUL_TRANSPARENT_PROXY = 'consul.hashicorp.com/transparent-proxy';
/** Output of Consul's webhook, set only when transparent proxy is on (consul.md §1, §3). */
export const CONSUL_TRANSPARENT_PROXY_STATUS = 'consul.hashicorp.com/transparent-proxy-status';
export const CONSUL_EXCLUDE_OUTBOUND_PORTS = 'consul.hashicorp.com/transparent-proxy-exclude-outbound-ports';
export const CONSUL_EXCLUDE_OUTBOUND_CIDRS = 'consul.hashicorp.com/transparent-proxy-exclude-outbound-cidrs';
/** CNI mode: the rendered iptables.Config JSON (consul.md §4-5). */
export const CONSUL_REDIRECT_TRAFFIC_ANNOTATION = 'consul.hashicorp.com/redirect-traffic-config';
/** Non-CNI mode: the rendered iptables.Config JSON, on the init container below. */
export const CONSUL_REDIRECT_TRAFFIC_ENV = 'CONSUL_REDIRECT_TRAFFIC_CONFIG';
/** `consul-connect-inject-init`, or `consul-connect-inject-init-<svc>` for multi-port pods. */
export const CONSUL_INIT_CONTAINER = 'consul-connect-inject-init';

/**
 * Consul's splitCommaSeparatedItemsFromAnnotation (consul.md §1): strings.Split(raw, ","),
 * no trimming, no validation, so "9999, 443" yields " 443" and "" yields [""]. Items go to
 * iptables verbatim.
 */
export function consulCommaItems(value: string): string[] {
  return value.split(',');
}

/** Whether Consul's iptables setup would choke on an item (a space or an empty item). */
export function isBrokenConsulItem(item: string): boolean {
  return item === '' || item.trim() !== item;
}

/** Our own per-pod opt-out. */
export const SKIP_ANNOTATION = 'mesh-guard.io/skip';

/** Escapes a key for a JSON Pointer segment (RFC 6901): "~" → "~0", then "/" → "~1". */
export function escapePointer(segment: string): string {
  return segment.indexOf('~') === -1 && segment.indexOf('/') === -1
    ? segment
    : segment.replace(/~/g, '~0').replace(/\//g, '~1');
}

const NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Kubernetes IsQualifiedName: optional DNS-subdomain prefix (≤253) + "/" + name (≤63). */
export function isQualifiedName(key: string): boolean {
  const slash = key.indexOf('/');
  const name = slash === -1 ? key : key.slice(slash + 1);
  if (slash !== -1) {
    const prefix = key.slice(0, slash);
    if (prefix.length === 0 || prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix)) return false;
  }
  return name.length > 0 && name.length <= 63 && NAME.test(name);
}

const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/** Kubernetes IsValidLabelValue. */
export function isValidLabelValue(value: string): boolean {
  return value.length <= 63 && LABEL_VALUE.test(value);
}

// ---------------------------------------------------------------------------------------
// Istio metric merging and native sidecars (istio.md §1, §2, §5), Dynatrace scraping
// annotations (dynatrace.md §5).

export const ISTIO_INJECTION_LABEL = 'istio-injection';
export const ISTIO_REV = 'istio.io/rev';
export const ISTIO_DATAPLANE_MODE = 'istio.io/dataplane-mode';
export const ISTIO_MERGE_METRICS = 'prometheus.istio.io/merge-metrics';
/** Per-pod agent status port; the merged endpoint moves with it, the annotation Istio writes does not (istio.md §0.4). */
export const ISTIO_STATUS_PORT_OVERRIDE = 'status.sidecar.istio.io/port';
export const ISTIO_PROXY_CONFIG = 'proxy.istio.io/config';
export const ISTIO_PROXY_CONTAINER = 'istio-proxy';
/** ProxyConfig field; jsonpb also takes the proto name (istio.md §2, injection-template.yaml `$holdProxy`). */
export const ISTIO_HOLD_APPLICATION = 'holdApplicationUntilProxyStarts';
const ISTIO_HOLD_APPLICATION_PROTO = 'hold_application_until_proxy_starts';
export const ISTIO_PROMETHEUS_ENV = 'ISTIO_PROMETHEUS_ANNOTATIONS';
/** Namespaces Istio's injector never injects (istio.md §5 step 2, initializer.go IgnoredNamespaces). */
export const ISTIO_IGNORED_NAMESPACES: readonly string[] = ['kube-system', 'kube-public', 'kube-node-lease', 'local-path-storage'];
/** Ports Istio ≥1.31 refuses as prometheus.io/port (istio.md §1, status.IstioReservedPortReason). */
export const ISTIO_RESERVED_PORTS: readonly number[] = [15000, 15001, 15004, 15006, 15008, 15020, 15021, 15053, 15090];
export const ISTIO_MERGED_PATH = '/stats/prometheus';

export const PROM_SCRAPE = 'prometheus.io/scrape';
export const PROM_PORT = 'prometheus.io/port';
export const PROM_PATH = 'prometheus.io/path';
export const PROM_SCHEME = 'prometheus.io/scheme';

export const DT_METRICS_SCRAPE = 'metrics.dynatrace.com/scrape';
export const DT_METRICS_PORT = 'metrics.dynatrace.com/port';
export const DT_METRICS_PATH = 'metrics.dynatrace.com/path';
export const DT_METRICS_SECURE = 'metrics.dynatrace.com/secure';
export const DT_METRICS_FILTER = 'metrics.dynatrace.com/filter';
/** Dynatrace's documented default path (dynatrace.md §5). */
export const DT_METRICS_DEFAULT_PATH = '/metrics';
/** The filter Dynatrace's Istio guide gives for dropping mesh metrics (dynatrace.md §5), byte for byte. */
export const DT_EXCLUDE_MESH_FILTER = '{"mode":"exclude","names":["istio_*","envoy_*"]}';

export type ProxyConfigEdit =
  | { readonly kind: 'set'; readonly value: string }
  /** The user's own holdApplicationUntilProxyStarts, true or false: it stays. */
  | { readonly kind: 'present'; readonly value: string }
  | { readonly kind: 'invalid'; readonly why: string };

/**
 * `proxy.istio.io/config` with `holdApplicationUntilProxyStarts: true` merged in. Istio reads the
 * annotation with protomarshal.ApplyYAML (sigs.k8s.io/yaml to JSON, then jsonpb into ProxyConfig,
 * unknown fields allowed: istio pkg/config/mesh/mesh.go MergeProxyConfig), so YAML 1.1 or JSON,
 * one document, a map. The document is edited in place, so every other field, comment and the
 * flow (JSON) or block style stay as written; in a JSON document the new key is quoted, so the
 * value is still JSON. Anything that does not parse as one map is left to its owner.
 */
export function istioProxyConfigWithHold(raw: string | undefined): ProxyConfigEdit {
  if (raw === undefined || raw.trim() === '') return { kind: 'set', value: `${ISTIO_HOLD_APPLICATION}: true` };
  const doc = parseDocument(raw, { version: '1.1' });
  if (doc.errors.length) return { kind: 'invalid', why: `does not parse as YAML (${doc.errors[0]!.code})` };
  const map = doc.contents;
  if (!isMap(map)) return { kind: 'invalid', why: 'is not a map' };
  for (const key of [ISTIO_HOLD_APPLICATION, ISTIO_HOLD_APPLICATION_PROTO]) {
    if (map.has(key)) return { kind: 'present', value: `${key}: ${String(map.get(key))}` };
  }
  const pair = doc.createPair(ISTIO_HOLD_APPLICATION, true);
  if (map.flow && isScalar(pair.key)) pair.key.type = Scalar.QUOTE_DOUBLE;
  (map as YAMLMap<unknown, unknown>).add(pair);
  const text = doc.toString({ lineWidth: 0 });
  return { kind: 'set', value: raw.endsWith('\n') ? text : text.replace(/\n$/, '') };
}

/**
 * Prometheus strutil.SanitizeLabelName, as Istio uses it to match annotation keys
 * (istio.md §1): every character outside [a-zA-Z0-9_] becomes "_", case-sensitively.
 * "prometheus.io/port", "prometheus.io.port" and "prometheus-io/port" are the same key.
 */
export function sanitizePrometheusLabelName(key: string): string {
  return key.replace(/[^a-zA-Z0-9_]/g, '_');
}

/**
 * Every annotation Istio (and a Prometheus pod scrape config) reads as the same key as
 * `canonical`, in key order, e.g. prometheusVariants(a, PROM_PORT) → [["prometheus.io.port","9090"]].
 */
export function prometheusVariants(annotations: ReadonlyMap<string, string>, canonical: string): Array<[key: string, value: string]> {
  const want = sanitizePrometheusLabelName(canonical);
  const out: Array<[string, string]> = [];
  for (const [k, v] of annotations) if (sanitizePrometheusLabelName(k) === want) out.push([k, v]);
  return out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

/**
 * A port written the one way every reader agrees on: decimal digits, no sign, no leading
 * zero, 1-65535. Istio ≥1.31 also rejects "015020"-style spellings of the status port.
 */
export function parsePort(value: string | undefined): number | undefined {
  if (value === undefined || !/^[1-9][0-9]{0,4}$/.test(value)) return undefined;
  const n = Number(value);
  return n <= 65535 ? n : undefined;
}

/**
 * `metrics.dynatrace.com/scrape` and `/secure`: the docs only give 'true'/'false'
 * (dynatrace.md §5); read with Go ParseBool like the operator's other booleans, so
 * "True"/"1" count too and anything else means the default.
 */
export function dynatraceMetricsBool(value: string | undefined): boolean {
  return dynatraceBool(value, false);
}

/** One `ISTIO_PROMETHEUS_ANNOTATIONS` value as pilot-agent reads it (istio.md §1). */
export interface IstioScrapeConfig {
  readonly scrape: string;
  readonly path: string;
  readonly port: string;
  readonly targets: ReadonlyArray<{ readonly port: string; readonly path: string }>;
}

/**
 * Parses the env JSON defensively: a non-object, or a field of the wrong type, gives
 * undefined rather than a guess. Missing fields are "" like Go's zero value.
 */
export function parseIstioScrapeConfig(value: string): IstioScrapeConfig | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
  const o = parsed as Record<string, unknown>;
  const str = (v: unknown): string | undefined => (v === undefined || v === null ? '' : typeof v === 'string' ? v : undefined);
  const scrape = str(o.scrape);
  const path = str(o.path);
  const port = str(o.port);
  if (scrape === undefined || path === undefined || port === undefined) return undefined;
  const targets: Array<{ port: string; path: string }> = [];
  if (o.targets !== undefined && o.targets !== null) {
    if (!Array.isArray(o.targets)) return undefined;
    for (const t of o.targets) {
      if (typeof t !== 'object' || t === null) return undefined;
      const tp = str((t as Record<string, unknown>).port);
      const tpath = str((t as Record<string, unknown>).path);
      if (tp === undefined || tpath === undefined) return undefined;
      targets.push({ port: tp, path: tpath });
    }
  }
  return { scrape, path, port, targets };
}

// ---------------------------------------------------------------------------------------
// Consul metrics and metric merging (peers-2026-12.md §4). Keys: consul-k8s
// control-plane/connect-inject/constants/annotations_and_labels.go; reading:
// control-plane/connect-inject/metrics/metrics_configuration.go and common/common.go.

export const CONSUL_ENABLE_METRICS = 'consul.hashicorp.com/enable-metrics';
export const CONSUL_ENABLE_METRICS_MERGING = 'consul.hashicorp.com/enable-metrics-merging';
/** consul-dataplane's internal merged-metrics server (Helm `defaultMergedMetricsPort`). */
export const CONSUL_MERGED_METRICS_PORT = 'consul.hashicorp.com/merged-metrics-port';
export const CONSUL_PROMETHEUS_SCRAPE_PORT = 'consul.hashicorp.com/prometheus-scrape-port';
export const CONSUL_PROMETHEUS_SCRAPE_PATH = 'consul.hashicorp.com/prometheus-scrape-path';
export const CONSUL_SERVICE_METRICS_PORT = 'consul.hashicorp.com/service-metrics-port';
export const CONSUL_SERVICE_METRICS_PATH = 'consul.hashicorp.com/service-metrics-path';
/** Any of these non-empty turns TLS on for the scrape listener (consul_dataplane_sidecar.go, consul-dataplane bootstrap_config.go). */
export const CONSUL_PROMETHEUS_TLS: readonly string[] = [
  'consul.hashicorp.com/prometheus-ca-file',
  'consul.hashicorp.com/prometheus-ca-path',
  'consul.hashicorp.com/prometheus-cert-file',
  'consul.hashicorp.com/prometheus-key-file',
];
/** A comma in it makes a multi-port pod (mesh_webhook.go annotatedServiceNames). */
export const CONSUL_CONNECT_SERVICE = 'consul.hashicorp.com/connect-service';
/** Helm `connectInject.metrics.defaultMergedMetricsPort` and the injector flag's default. */
export const CONSUL_DEFAULT_MERGED_METRICS_PORT = 20100;
/**
 * What the merged endpoint adds to the app's metrics: Envoy's, all named `envoy_*` (envoy
 * source/server/admin/prometheus_stats.cc PrometheusStatsFormatter::metricName), and
 * consul-dataplane's own, all `consul_dataplane_*` (consul-dataplane pkg/consuldp/metrics.go
 * getPromDefaults, WrapRegistererWithPrefix).
 */
export const DT_EXCLUDE_CONSUL_FILTER = '{"mode":"exclude","names":["envoy_*","consul_dataplane_*"]}';

/**
 * Consul's metrics annotations count only when non-empty (`ok && raw != ""` in every reader of
 * metrics_configuration.go): an empty value means the injector's default, unlike
 * `connect-inject`, where "" is a ParseBool error.
 */
export function consulMetricsValue(value: string | undefined): string | undefined {
  return value === '' ? undefined : value;
}

/** `enable-metrics` / `enable-metrics-merging`: ParseBool on a non-empty value, an error rejects the pod. */
export function consulMetricsBool(value: string | undefined): ReturnType<typeof consulBool> {
  return consulBool(consulMetricsValue(value));
}

/**
 * A port Consul, Dynatrace and mesh-guard read alike: plain decimal (`parsePort`) and, for
 * Consul's own listeners, in the unprivileged range that DetermineAndValidatePort demands
 * (1024-65535; anything else rejects the pod). Consul would also take a container port name
 * or "0x4e20" (PortValue, ParseInt base 0), which Dynatrace would not: those are refused here.
 */
export function consulListenerPort(value: string | undefined): number | undefined {
  const n = parsePort(value);
  return n !== undefined && n >= 1024 ? n : undefined;
}

const PLAIN_PATH = /^\/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*$/;

/**
 * An absolute URL path of RFC 3986 path characters only: no query, fragment, space, quote or
 * backslash. consul-dataplane pastes the scrape path unescaped into Envoy's bootstrap JSON and
 * matches it exactly (bootstrap_config.go generateListenerConfig), and appends the service path
 * to `http://127.0.0.1:<port>`; the config schema holds `consul.prometheusScrapePath` to it too.
 */
export function isPlainUrlPath(value: string): boolean {
  return PLAIN_PATH.test(value);
}
