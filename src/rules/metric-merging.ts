/**
 * What the two metric-merging rules (istio-metric-merging, consul-metric-merging) share: whether
 * the pod asks Dynatrace to scrape it, and what keeps a mesh's merged endpoint from serving the
 * app's metrics. Both meshes scrape the app from inside the pod over plain HTTP without
 * credentials (Istio: pilot-agent; Consul: consul-dataplane's `http://127.0.0.1:<port><path>`,
 * consul-k8s webhook/consul_dataplane_sidecar.go), so an app endpoint that needs TLS or
 * credentials cannot be merged (dynatrace.md §5 for the Dynatrace keys).
 */
import { DT_METRICS_SCRAPE, DT_METRICS_SECURE, PROM_SCHEME, dynatraceMetricsBool, prometheusVariants } from '../admission/annotations.js';
import type { PodView } from '../admission/pod.js';

const q = JSON.stringify;

/**
 * `metrics.dynatrace.com/scrape` as the ActiveGate reads it: undefined when absent (a rule may
 * then look elsewhere), else whether it asks, and how the log should say so.
 */
export function dynatraceScrapeAnnotation(pod: PodView): { readonly asks: boolean; readonly why: string } | undefined {
  const value = pod.annotations.get(DT_METRICS_SCRAPE);
  return value === undefined ? undefined : { asks: dynatraceMetricsBool(value), why: `${DT_METRICS_SCRAPE}=${q(value)}` };
}

/**
 * Why `scraper`'s plain-HTTP scrape of the app cannot stand in for Dynatrace's, or undefined.
 * `mesh` names who leaves `prometheus.io/scheme` on the pod while pointing Prometheus at the
 * merged endpoint.
 */
export function plainScrapeBlocker(pod: PodView, scraper: string, mesh: string): string | undefined {
  const a = pod.annotations;
  if (dynatraceMetricsBool(a.get(DT_METRICS_SECURE))) {
    return `${DT_METRICS_SECURE}=${q(a.get(DT_METRICS_SECURE))}: the merged endpoint and ${scraper}'s scrape of the app are plain HTTP`;
  }
  const https = prometheusVariants(a, PROM_SCHEME).find(([, v]) => v.trim().toLowerCase() === 'https');
  if (https) return `${https[0]}=${q(https[1])}: ${scraper} scrapes the app over plain HTTP only, and ${mesh} leaves the scheme on the pod`;
  const auth = [...a.keys()].find((k) => k.startsWith('metrics.dynatrace.com/tls.') || k.startsWith('metrics.dynatrace.com/http.auth'));
  if (auth) return `${auth} is set: the app endpoint needs TLS or credentials, which ${scraper}'s plain scrape of the app does not send`;
  return undefined;
}
