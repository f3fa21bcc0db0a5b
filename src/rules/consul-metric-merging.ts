/**
 * Consul metric merging for Dynatrace scraping under transparent proxy (issue 14 item 4;
 * peers-2026-12.md §4; consul.md §1-§3): the Consul counterpart of istio-metric-merging.
 *
 * Transparent proxy sends every inbound TCP connection of a meshed pod to Envoy, which wants
 * mTLS, so an ActiveGate outside the mesh cannot scrape the app port. With `enable-metrics`,
 * Consul excludes its Prometheus scrape port (default 20200) from that redirection (consul-k8s
 * control-plane/connect-inject/webhook/redirect_traffic.go iptablesConfigJSON) and Envoy listens
 * on it (controllers/endpoints/endpoints_controller.go createServiceRegistrations,
 * envoy_prometheus_bind_addr). With `enable-metrics-merging` and a service metrics port, that
 * listener serves consul-dataplane's merge of its own, Envoy's and the app's metrics, the app
 * scraped at http://127.0.0.1:<service-metrics-port><service-metrics-path>
 * (webhook/consul_dataplane_sidecar.go getContainerSidecarArgs; consul-dataplane
 * pkg/consuldp/metrics.go mergedMetricsHandler). So before Consul's webhook this rule turns both
 * on, names the app endpoint for consul-dataplane and points Dynatrace at the scrape endpoint,
 * as HashiCorp's support article 28538774105619 does by hand.
 *
 * Consul reads these annotations at its own admission (the dataplane arguments, the iptables
 * config), so on a pod it already injected the rule only gives a reason. Consul reads each
 * metrics annotation only when non-empty; a bool that does not ParseBool, or a port that
 * DetermineAndValidatePort refuses, rejects the pod (metrics/metrics_configuration.go,
 * common/common.go). The rule never writes such a value, and stands back where turning merging
 * on would make Consul reject a pod it accepts today (a bad merged-metrics-port, partial
 * Prometheus TLS annotations, a multi-port pod). A metrics annotation of the user's wins:
 * "false", or another port or path, stands, with a reason.
 *
 * The merged endpoint answers 500 as a whole when the app's scrape fails (mergedMetricsHandler),
 * so the app endpoint must be the one Dynatrace was given, exactly.
 *
 * Ordering: runs after consul-activegate-exclusions. The two write disjoint keys and neither
 * reads the other's, so the patch is the same either way; after, the exclusions' ops come first
 * as they always did.
 */
import {
  CONSUL_CONNECT_SERVICE,
  CONSUL_DEFAULT_MERGED_METRICS_PORT,
  CONSUL_ENABLE_METRICS,
  CONSUL_ENABLE_METRICS_MERGING,
  CONSUL_MERGED_METRICS_PORT,
  CONSUL_PROMETHEUS_SCRAPE_PATH,
  CONSUL_PROMETHEUS_SCRAPE_PORT,
  CONSUL_PROMETHEUS_TLS,
  CONSUL_REDIRECT_TRAFFIC_ANNOTATION,
  CONSUL_SERVICE_METRICS_PATH,
  CONSUL_SERVICE_METRICS_PORT,
  CONSUL_TRANSPARENT_PROXY_STATUS,
  DT_EXCLUDE_CONSUL_FILTER,
  DT_METRICS_DEFAULT_PATH,
  DT_METRICS_FILTER,
  DT_METRICS_PATH,
  DT_METRICS_PORT,
  ISTIO_STATUS,
  PROM_PATH,
  PROM_PORT,
  PROM_SCRAPE,
  consulListenerPort,
  consulMetricsBool,
  consulMetricsValue,
  isPlainUrlPath,
  parseGoBool,
  parsePort,
  prometheusVariants,
} from '../admission/annotations.js';
import type { PodView } from '../admission/pod.js';
import { consulInjector, consulInjectVerdict, consulTproxyVerdict, transparentProxy } from './consul.js';
import { dynatraceWillInject } from './dynatrace.js';
import { istioSidecarVerdict } from './istio.js';
import { dynatraceScrapeAnnotation, plainScrapeBlocker } from './metric-merging.js';
import type { Change, Rule, RuleContext, RuleResult } from './types.js';
import { NOTHING, skip } from './types.js';

const q = JSON.stringify;

interface Endpoint {
  readonly port: string;
  readonly path: string;
}
const show = (e: Endpoint) => `:${e.port}${e.path}`;

type Setting = ReturnType<typeof consulMetricsBool>;
const isOn = (s: Setting) => s.present && 'value' in s && s.value;

/** The user's enable-metrics / enable-metrics-merging, when they keep Consul from merging. */
function userSaysNo(pod: PodView): string | undefined {
  for (const key of [CONSUL_ENABLE_METRICS, CONSUL_ENABLE_METRICS_MERGING]) {
    const raw = pod.annotations.get(key);
    const s = consulMetricsBool(raw);
    if (!s.present) continue;
    if ('invalid' in s) return `${key}=${q(raw)} is not a Go bool, so Consul's webhook rejects the pod`;
    if (!s.value) return `${key}=${q(raw)} is the owner's choice: Consul does not merge the app's metrics, and that stands`;
  }
  return undefined;
}

/** What would make Consul reject the pod once merging is on, or keep the merged endpoint from serving Dynatrace. */
function blocker(pod: PodView): string | undefined {
  const a = pod.annotations;
  const service = a.get(CONSUL_CONNECT_SERVICE);
  if (service?.includes(',')) {
    return `${CONSUL_CONNECT_SERVICE}=${q(service)} names several services: Consul refuses metrics and transparent proxy on multi-port pods`;
  }
  const tls = CONSUL_PROMETHEUS_TLS.find((k) => consulMetricsValue(a.get(k)) !== undefined);
  if (tls) return `${tls} is set: with merging on, the scrape endpoint serves TLS (and Consul rejects the pod if the set is incomplete), which Dynatrace is not set up for`;
  return plainScrapeBlocker(pod, 'consul-dataplane', 'Consul');
}

/** Where consul-dataplane serves the merged metrics: the pod's own annotations, else the configured defaults. */
function scrapeEndpoint(pod: PodView, ctx: RuleContext): Endpoint | { readonly problem: string } {
  const rawPort = consulMetricsValue(pod.annotations.get(CONSUL_PROMETHEUS_SCRAPE_PORT));
  if (rawPort !== undefined && consulListenerPort(rawPort) === undefined) {
    return { problem: `${CONSUL_PROMETHEUS_SCRAPE_PORT}=${q(rawPort)} is not a port from 1024 to 65535 in plain decimal (Consul rejects other numbers; Dynatrace needs the number)` };
  }
  const rawPath = consulMetricsValue(pod.annotations.get(CONSUL_PROMETHEUS_SCRAPE_PATH));
  if (rawPath !== undefined && !isPlainUrlPath(rawPath)) {
    return { problem: `${CONSUL_PROMETHEUS_SCRAPE_PATH}=${q(rawPath)} is not a plain URL path, which consul-dataplane matches exactly` };
  }
  // The injector refuses to start with a port outside 1024-65535 (ValidateUnprivilegedPort), so a
  // read flag is a usable port; a path that is not plain leaves the configured one in charge.
  const flags = consulInjector(pod, ctx).flags;
  const flagPath = flags && isPlainUrlPath(flags.prometheusScrapePath) ? flags.prometheusScrapePath : undefined;
  const flagPort = flags && consulListenerPort(flags.prometheusScrapePort) !== undefined ? flags.prometheusScrapePort : undefined;
  return {
    port: rawPort ?? flagPort ?? String(ctx.config.consul.prometheusScrapePort),
    path: rawPath ?? flagPath ?? ctx.config.consul.prometheusScrapePath,
  };
}

function endpointProblem(app: Endpoint, scrape: Endpoint, mergedPort: string): string | undefined {
  if (parsePort(app.port) === undefined) return `${q(app.port)} is not a port number from 1 to 65535 in plain decimal`;
  if (app.port === scrape.port) return `${app.port} is Consul's Prometheus scrape port`;
  if (app.port === mergedPort) return `${app.port} is consul-dataplane's merged-metrics port`;
  if (!isPlainUrlPath(app.path)) return `path ${q(app.path)} is not a plain URL path, which consul-dataplane appends to http://127.0.0.1:${app.port}`;
  return undefined;
}

/**
 * The app endpoint to merge. Dynatrace at Consul's scrape port already (this rule's output, or
 * the recipe applied by hand): the app endpoint is the one Consul was given.
 */
function appEndpoint(pod: PodView, scrape: Endpoint): (Endpoint & { readonly from: string }) | { readonly problem: string } {
  const a = pod.annotations;
  const dtPort = a.get(DT_METRICS_PORT);
  const smPort = consulMetricsValue(a.get(CONSUL_SERVICE_METRICS_PORT));
  const smPath = consulMetricsValue(a.get(CONSUL_SERVICE_METRICS_PATH));
  if (dtPort === undefined) return { problem: `no ${DT_METRICS_PORT} names the app's metrics port to merge` };
  if (dtPort === scrape.port) {
    if (smPort === undefined) {
      return { problem: `${DT_METRICS_PORT} is already Consul's scrape port ${scrape.port}, and no ${CONSUL_SERVICE_METRICS_PORT} names the app's metrics port: left as is` };
    }
    return { port: smPort, path: smPath ?? DT_METRICS_DEFAULT_PATH, from: CONSUL_SERVICE_METRICS_PORT };
  }
  const app = { port: dtPort, path: a.get(DT_METRICS_PATH) || DT_METRICS_DEFAULT_PATH, from: DT_METRICS_PORT };
  if (smPort !== undefined && smPort !== app.port) {
    return { problem: `${CONSUL_SERVICE_METRICS_PORT}=${q(smPort)} differs from the Dynatrace app port ${app.port}: the owner's choice stands` };
  }
  if (smPath !== undefined && smPath !== app.path) {
    return { problem: `${CONSUL_SERVICE_METRICS_PATH}=${q(smPath)} differs from the Dynatrace app path ${app.path}: the owner's choice stands` };
  }
  return app;
}

/**
 * With metrics on, Consul overwrites prometheus.io/scrape|port|path with its scrape endpoint
 * (webhook/mesh_webhook.go prometheusAnnotations). Where the pod does not turn metrics on
 * itself, that rewrite is ours, so it must not take a Prometheus opt-out or another target away
 * (the app endpoint, or the scrape endpoint itself as in HashiCorp's recipe, are no loss).
 */
function prometheusLoss(pod: PodView, app: Endpoint, scrape: Endpoint): string | undefined {
  const a = pod.annotations;
  const off = prometheusVariants(a, PROM_SCRAPE).find(([, v]) => parseGoBool(v) === false);
  const other =
    prometheusVariants(a, PROM_PORT).find(([, v]) => v !== app.port && v !== scrape.port) ??
    prometheusVariants(a, PROM_PATH).find(([, v]) => v !== app.path && v !== scrape.path);
  const found = off ?? other;
  if (!found) return undefined;
  return `${found[0]}=${q(found[1])}: with metrics on, Consul rewrites prometheus.io/* to its scrape endpoint, and Prometheus would lose ${off ? 'its opt-out' : `the endpoint it scrapes now (not the app endpoint ${show(app)})`}`;
}

function beforeConsul(pod: PodView, ctx: RuleContext, request: string, consulReason: string): RuleResult {
  const a = pod.annotations;
  const back = (why: string) => skip(`${request}, but not preparing Consul metric merging: ${why}`);
  const dynatrace = dynatraceWillInject(pod, ctx);
  if (!dynatrace.yes) return back(`Dynatrace does not inject OneAgent: ${dynatrace.reason}`);
  const istio = istioSidecarVerdict(pod, ctx);
  if (istio.state === 'yes') return back(`${istio.reason} as well, and istio-metric-merging owns the Dynatrace annotations of such a pod`);

  const problem = userSaysNo(pod) ?? blocker(pod);
  if (problem) return back(problem);
  const scrape = scrapeEndpoint(pod, ctx);
  if ('problem' in scrape) return back(scrape.problem);
  const rawMerged = consulMetricsValue(a.get(CONSUL_MERGED_METRICS_PORT));
  if (rawMerged !== undefined && consulListenerPort(rawMerged) === undefined) {
    return back(`${CONSUL_MERGED_METRICS_PORT}=${q(rawMerged)} is not a port from 1024 to 65535 in plain decimal, and with merging on Consul rejects the pod for a bad one`);
  }
  const mergedPort = rawMerged ?? String(CONSUL_DEFAULT_MERGED_METRICS_PORT);
  if (scrape.port === mergedPort) return back(`the scrape port ${scrape.port} is also consul-dataplane's merged-metrics port: the two listeners would clash`);
  const app = appEndpoint(pod, scrape);
  if ('problem' in app) return back(app.problem);
  const bad = endpointProblem(app, scrape, mergedPort);
  if (bad) return back(`${app.from}: ${bad}`);
  const metrics = consulMetricsBool(a.get(CONSUL_ENABLE_METRICS));
  const loss = isOn(metrics) ? undefined : prometheusLoss(pod, app, scrape);
  if (loss) return back(loss);

  const changes: Change[] = [];
  const set = (key: string, value: string, reason: string) => {
    if (a.get(key) !== value) changes.push({ kind: 'annotation', key, value, reason });
  };
  const toConsul = `app endpoint ${show(app)} (from ${app.from}) for consul-dataplane to merge`;
  if (!isOn(metrics)) set(CONSUL_ENABLE_METRICS, 'true', `${toConsul}; Consul then serves ${show(scrape)}, outside inbound redirection`);
  if (!isOn(consulMetricsBool(a.get(CONSUL_ENABLE_METRICS_MERGING)))) set(CONSUL_ENABLE_METRICS_MERGING, 'true', toConsul);
  if (consulMetricsValue(a.get(CONSUL_SERVICE_METRICS_PORT)) === undefined) set(CONSUL_SERVICE_METRICS_PORT, app.port, toConsul);
  if (consulMetricsValue(a.get(CONSUL_SERVICE_METRICS_PATH)) === undefined) set(CONSUL_SERVICE_METRICS_PATH, app.path, toConsul);
  const viaMerged = `${request}: scrape via Consul's merged endpoint`;
  set(DT_METRICS_PORT, scrape.port, `${viaMerged}, which transparent proxy does not redirect (so no mTLS)`);
  set(DT_METRICS_PATH, scrape.path, `${viaMerged}: its path`);
  if (ctx.config.metricMerging.excludeMeshMetrics && !a.has(DT_METRICS_FILTER)) {
    set(DT_METRICS_FILTER, DT_EXCLUDE_CONSUL_FILTER, 'metricMerging.excludeMeshMetrics: keep the app metrics, drop envoy_* and consul_dataplane_* from the merged endpoint');
  }
  const why = `${request}; ${consulReason}; ${dynatrace.reason}`;
  return {
    changes,
    reasons: [
      changes.length
        ? `${why}; Consul's metrics annotations carry the ${toConsul}, Dynatrace scrapes the merged endpoint ${show(scrape)}`
        : `${why}; already prepared: Consul's metrics annotations carry the ${toConsul}, Dynatrace scrapes ${show(scrape)}`,
    ],
  };
}

/** Consul fixed the pod's metrics at its admission: nothing can change any more. */
function afterConsul(pod: PodView, ctx: RuleContext, request: string, consulReason: string): RuleResult {
  const a = pod.annotations;
  if (!a.has(CONSUL_TRANSPARENT_PROXY_STATUS) && !a.has(CONSUL_REDIRECT_TRAFFIC_ANNOTATION)) return NOTHING; // no redirection: the app port is reachable
  const scrape = scrapeEndpoint(pod, ctx);
  const prepared =
    !('problem' in scrape) &&
    a.get(DT_METRICS_PORT) === scrape.port &&
    (a.get(DT_METRICS_PATH) || DT_METRICS_DEFAULT_PATH) === scrape.path &&
    isOn(consulMetricsBool(a.get(CONSUL_ENABLE_METRICS))) &&
    isOn(consulMetricsBool(a.get(CONSUL_ENABLE_METRICS_MERGING)));
  if (prepared) return NOTHING;
  return skip(
    `${request}, but ${consulReason}, which fixed its metrics settings then: nothing changed ` +
      `(unless this is a re-invocation, Consul's webhook ran first: mesh-guard's configuration must sort before Consul's connect-injector)`,
  );
}

/** consulTproxyVerdict's tproxy-off reason speaks of outbound exclusions; inbound is what counts here. */
function tproxyOff(pod: PodView, ctx: RuleContext): string | undefined {
  if (consulInjectVerdict(pod, ctx).kind !== 'will-inject') return undefined;
  const tproxy = transparentProxy(pod, ctx);
  return 'on' in tproxy && !tproxy.on
    ? `Consul injects without transparent proxy (${tproxy.why}), so inbound traffic reaches the app port directly and needs no merged endpoint`
    : undefined;
}

export const consulMetricMerging: Rule = {
  name: 'consul-metric-merging',
  summary:
    "Before Consul injects a transparent-proxy pod that asks for Dynatrace scraping, turns on Consul's metric merging for its app endpoint and points Dynatrace at the merged :20200/metrics endpoint, which transparent proxy does not redirect.",
  evaluate(pod, ctx): RuleResult {
    const own = dynatraceScrapeAnnotation(pod);
    if (!own?.asks) return NOTHING;
    const consul = consulTproxyVerdict(pod, ctx);
    if (consul.kind === 'not-consul') return NOTHING;
    if (consul.kind === 'skip') return skip(`${own.why}, but not preparing Consul metric merging: ${tproxyOff(pod, ctx) ?? consul.reason}`);
    if (pod.annotations.has(ISTIO_STATUS)) return skip(`${own.why}, but Istio has injected the pod too, and istio-metric-merging owns its Dynatrace annotations`);
    return consul.kind === 'injected' ? afterConsul(pod, ctx, own.why, consul.reason) : beforeConsul(pod, ctx, own.why, consul.reason);
  },
};
