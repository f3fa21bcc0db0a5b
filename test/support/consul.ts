/**
 * Shared by the Consul tests: a meshed pod, an admit-apply-readmit round trip over HTTPS, and
 * consul-k8s's rendering of the transparent-proxy redirect config (used by the unit tables and
 * by the Consul stand-in of the end-to-end suite, test/e2e/support/consul-standin.ts).
 */
import type { V1Pod } from '@kubernetes/client-node';
import { expect } from 'vitest';
import { CONSUL_EXCLUDE_OUTBOUND_CIDRS, CONSUL_EXCLUDE_OUTBOUND_PORTS, consulCommaItems } from '../../src/admission/annotations.js';
import { applyOps, decodePatch, review, type ReviewResponse } from './review.js';
import type { TestServer } from './server.js';

export const RULE = 'consul-activegate-exclusions';
export const PORTS = 'consul.hashicorp.com/transparent-proxy-exclude-outbound-ports';
export const CIDRS = 'consul.hashicorp.com/transparent-proxy-exclude-outbound-cidrs';
export const DT_NS = 'dynakube.internal.dynatrace.com/instance';
/** The two exclusion keys mesh-guard never writes (constants/annotations_and_labels.go). */
export const CONSUL_EXCLUDE_INBOUND_PORTS = 'consul.hashicorp.com/transparent-proxy-exclude-inbound-ports';
export const CONSUL_EXCLUDE_UIDS = 'consul.hashicorp.com/transparent-proxy-exclude-uids';

export function consulPod(namespace: string, annotations: Record<string, string> = {}): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { generateName: 'web-', namespace, annotations: { 'consul.hashicorp.com/connect-inject': 'true', ...annotations } },
    spec: { containers: [{ name: 'web', image: 'nginx:1.27' }] },
  };
}

/** Admits over HTTPS, applies the patch, admits the output again and expects no patch. */
export async function admitOverHttps(s: TestServer, pod: V1Pod) {
  const res = await s.mutate(review(pod)).expect(200);
  const response = res.body.response as ReviewResponse;
  expect(response.allowed).toBe(true);
  const ops = decodePatch(response);
  const patched = ops.length ? applyOps(pod, ops) : pod;
  const again = (await s.mutate(review(patched)).expect(200)).body.response as ReviewResponse;
  expect(again.patch, 'a re-run on the output must yield no ops').toBeUndefined();
  return { response, ops, annotations: (patched.metadata?.annotations ?? {}) as Record<string, string> };
}

/**
 * The reasons `rule` logged for the first admission of the latest admitOverHttps round trip in
 * `namespace` (the line before the re-run's).
 */
export function ruleReasons(s: TestServer, namespace: string, rule: string): string {
  const lines = s.logs.filter((l) => l.msg === 'admission' && l.namespace === namespace);
  const rules = (lines.at(-2)?.rules ?? []) as Array<{ rule: string; reasons?: string[] }>;
  return rules.find((r) => r.rule === rule)?.reasons?.join(' | ') ?? '';
}

/**
 * consul-k8s's iptables.Config as `iptablesConfigJSON` fills it (control-plane/connect-inject/
 * webhook/redirect_traffic.go), before json.Marshal. Fields in Go struct order (consul sdk
 * v0.18.1 sdk/iptables Config, no json tags): json.Marshal writes them in this order, nil
 * slices as null.
 */
export interface IptablesConfig {
  ConsulDNSIP: string;
  ConsulDNSPort: number;
  ProxyUserID: string;
  ProxyInboundPort: number;
  ProxyOutboundPort: number;
  ExcludeInboundPorts: string[] | null;
  ExcludeOutboundPorts: string[] | null;
  ExcludeOutboundCIDRs: string[] | null;
  ExcludeUIDs: string[] | null;
  NetNS: string;
  IptablesProvider: null;
}

/** What `iptablesConfigJSON` reads besides the pod's exclusion annotations. */
export interface RedirectInputs {
  /** The metrics scrape port when metrics are enabled for the pod (MetricsConfig.PrometheusScrapePort), else undefined. */
  prometheusScrapePort?: string;
  /** Consul DNS on (consulDNSEnabled): ConsulDNSIP 127.0.0.1, port 8600 (consulDataplaneDNSBindHost/Port). */
  consulDNS?: boolean;
}

/** `splitCommaSeparatedItemsFromAnnotation` (webhook/container_init.go): absent → nothing, else strings.Split, no trimming. */
function splitItems(annotations: Readonly<Record<string, string>>, key: string): string[] {
  const raw = annotations[key];
  return raw === undefined ? [] : consulCommaItems(raw);
}

/** `append` onto a nil slice stays nil when nothing is appended, which json.Marshal writes as null. */
const orNull = (items: string[]): string[] | null => (items.length ? items : null);

/**
 * `iptablesConfigJSON` for a non-OpenShift install, from the exclusion annotations present on the
 * pod at that moment: ProxyUserID 5995 and init UID 5996 (sidecarUserAndGroupID,
 * initContainersUserAndGroupID), inbound 20000 (ProxyDefaultInboundPort), outbound 15001
 * (iptables.DefaultTProxyOutboundPort); the scrape port first in ExcludeInboundPorts when metrics
 * are on. Not modelled: proxy health check port 21000 and overwritten HTTP probe ports.
 */
export function iptablesConfig(annotations: Readonly<Record<string, string>>, inputs: RedirectInputs = {}): IptablesConfig {
  const inbound = inputs.prometheusScrapePort === undefined ? [] : [inputs.prometheusScrapePort];
  return {
    ConsulDNSIP: inputs.consulDNS ? '127.0.0.1' : '',
    ConsulDNSPort: inputs.consulDNS ? 8600 : 0,
    ProxyUserID: '5995',
    ProxyInboundPort: 20000,
    ProxyOutboundPort: 15001,
    ExcludeInboundPorts: orNull([...inbound, ...splitItems(annotations, CONSUL_EXCLUDE_INBOUND_PORTS)]),
    ExcludeOutboundPorts: orNull(splitItems(annotations, CONSUL_EXCLUDE_OUTBOUND_PORTS)),
    ExcludeOutboundCIDRs: orNull(splitItems(annotations, CONSUL_EXCLUDE_OUTBOUND_CIDRS)),
    ExcludeUIDs: ['5996', ...splitItems(annotations, CONSUL_EXCLUDE_UIDS)],
    NetNS: '',
    IptablesProvider: null,
  };
}

/** Go's json.Marshal text: like JSON.stringify, but with <, >, & and U+2028/U+2029 escaped (encoding/json HTMLEscape). */
export function goJson(value: unknown): string {
  return JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** The rendered redirect config, exactly as consul-k8s writes it into CONSUL_REDIRECT_TRAFFIC_CONFIG / redirect-traffic-config. */
export const renderRedirectConfig = (annotations: Readonly<Record<string, string>>, inputs: RedirectInputs = {}): string =>
  goJson(iptablesConfig(annotations, inputs));

/**
 * Go's json.Marshal of iptables.Config as iptablesConfigJSON renders it, written out by hand
 * as the ground truth for renderRedirectConfig: a pod without exclude annotations (nil slices
 * are null) ...
 */
export const GO_NULLS =
  '{"ConsulDNSIP":"","ConsulDNSPort":0,"ProxyUserID":"5995","ProxyInboundPort":20000,"ProxyOutboundPort":15001,' +
  '"ExcludeInboundPorts":null,"ExcludeOutboundPorts":null,"ExcludeOutboundCIDRs":null,"ExcludeUIDs":["5996"],"NetNS":"","IptablesProvider":null}';
/**
 * ... and exclude annotations "1111,11111", "2222,22222", "3.3.3.3,3.3.3.3/24", "4444,44444" with
 * DNS on (the case of consul-k8s redirect_traffic_test.go). ExcludeUIDs starts with 5996: the code
 * appends the annotation's UIDs after it. That test expects "4444","44444","5996", but it calls
 * assert.ObjectsAreEqual (which only returns a bool), so its order was never checked.
 */
export const GO_LISTS =
  '{"ConsulDNSIP":"127.0.0.1","ConsulDNSPort":8600,"ProxyUserID":"5995","ProxyInboundPort":20000,"ProxyOutboundPort":15001,' +
  '"ExcludeInboundPorts":["1111","11111"],"ExcludeOutboundPorts":["2222","22222"],"ExcludeOutboundCIDRs":["3.3.3.3","3.3.3.3/24"],' +
  '"ExcludeUIDs":["5996","4444","44444"],"NetNS":"","IptablesProvider":null}';
