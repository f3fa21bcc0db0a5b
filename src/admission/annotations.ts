/**
 * The one place that reads annotation and label values, parsed exactly the way each
 * consumer parses them. A value that one consumer reads as "false" may mean "default"
 * to another, so every reader names its consumer.
 */

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
