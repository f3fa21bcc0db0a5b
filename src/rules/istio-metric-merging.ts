/**
 * Istio metric merging for Dynatrace scraping under strict mTLS (istio.md §0, §1, §5;
 * dynatrace.md §5).
 *
 * An ActiveGate outside the mesh cannot scrape a meshed pod's app port under STRICT mTLS,
 * but it can scrape pilot-agent's merged endpoint (:statusPort/stats/prometheus), which is
 * excluded from inbound capture. Istio only merges the app's endpoint if it finds it in
 * `prometheus.io/*` at its own admission, so before Istio this rule writes the app endpoint
 * there and points the Dynatrace annotations at the merged endpoint. After Istio
 * (`sidecar.istio.io/status` present) `prometheus.io/*` is never touched: only the Dynatrace
 * annotations may be repointed, and only when Istio already stored the app endpoint in
 * `ISTIO_PROMETHEUS_ANNOTATIONS`.
 *
 * Invariants: never write `prometheus.io/port` equal to the status port (Istio would treat
 * the pod as merged and drop the app's metrics); the output run through the rule again, before
 * or after Istio's rewrite, yields no changes.
 */
import {
  DT_EXCLUDE_MESH_FILTER,
  DT_METRICS_DEFAULT_PATH,
  DT_METRICS_FILTER,
  DT_METRICS_PATH,
  DT_METRICS_PORT,
  DT_METRICS_SCRAPE,
  ISTIO_MERGED_PATH,
  ISTIO_MERGE_METRICS,
  ISTIO_PROMETHEUS_ENV,
  ISTIO_PROXY_CONFIG,
  ISTIO_PROXY_CONTAINER,
  ISTIO_RESERVED_PORTS,
  ISTIO_STATUS,
  ISTIO_STATUS_PORT_OVERRIDE,
  PROM_PATH,
  PROM_PORT,
  PROM_SCRAPE,
  dynatraceMetricsBool,
  parseGoBool,
  parseIstioScrapeConfig,
  parsePort,
  prometheusVariants,
} from '../admission/annotations.js';
import type { IndexedContainer, PodView } from '../admission/pod.js';
import { istioMesh, istioSidecarVerdict } from './istio.js';
import { dynatraceScrapeAnnotation, plainScrapeBlocker } from './metric-merging.js';
import type { Change, Rule, RuleContext, RuleResult } from './types.js';
import { NOTHING, skip } from './types.js';

const PROM_SCRAPE_TARGETS = 'prometheus.istio.io/scrape-targets';
const q = JSON.stringify;

interface Endpoint {
  readonly port: string;
  readonly path: string;
}
const show = (e: Endpoint) => `:${e.port}${e.path}`;

/**
 * Why the pod is asking for Dynatrace scraping, or undefined when it is not. After Istio's
 * rewrite `prometheus.io/*` is Istio's own (every merged pod has scrape "true" at the status
 * port), so the user's original Prometheus request is read from ISTIO_PROMETHEUS_ANNOTATIONS.
 */
function scrapeRequest(pod: PodView, ctx: RuleContext, injected: boolean): string | undefined {
  const own = dynatraceScrapeAnnotation(pod);
  if (own) return own.asks ? own.why : undefined;
  if (!ctx.config.metricMerging.prometheusScrapeIsRequest) return undefined;
  const statusPort = String(istioMesh(pod, ctx).statusPort);
  if (injected && prometheusVariants(pod.annotations, PROM_PORT).some(([, v]) => v === statusPort)) {
    const stored = storedScrapeConfig(pod);
    const cfg = 'value' in stored ? parseIstioScrapeConfig(stored.value) : undefined;
    return cfg && parseGoBool(cfg.scrape) === true
      ? `${PROM_SCRAPE}=true (kept by Istio in ${ISTIO_PROMETHEUS_ENV}) with metricMerging.prometheusScrapeIsRequest`
      : undefined;
  }
  const scrape = prometheusVariants(pod.annotations, PROM_SCRAPE).map(([, v]) => parseGoBool(v));
  return scrape.includes(true) && !scrape.includes(false)
    ? `${PROM_SCRAPE}=true with metricMerging.prometheusScrapeIsRequest`
    : undefined;
}

/** Checks shared by both states: reasons the merged endpoint cannot serve what Dynatrace wants. */
function blocker(pod: PodView, statusPort: string): string | undefined {
  const a = pod.annotations;
  const plain = plainScrapeBlocker(pod, 'pilot-agent', 'Istio');
  if (plain) return plain;
  const override = a.get(ISTIO_STATUS_PORT_OVERRIDE);
  if (override !== undefined && override !== statusPort) {
    return `${ISTIO_STATUS_PORT_OVERRIDE}=${q(override)} moves the agent off istio.statusPort ${statusPort}, so the merged endpoint is not where Istio's annotations say`;
  }
  if (a.get(ISTIO_PROXY_CONFIG)?.includes('statusPort')) {
    return `${ISTIO_PROXY_CONFIG} sets statusPort, so the merged endpoint may not be on istio.statusPort ${statusPort}`;
  }
  return undefined;
}

function portProblem(port: string, statusPort: number): string | undefined {
  const n = parsePort(port);
  if (n === undefined) return `${q(port)} is not a port number from 1 to 65535 in plain decimal`;
  if (n === statusPort || ISTIO_RESERVED_PORTS.includes(n)) return `${port} is an Istio-reserved port`;
  return undefined;
}

function dynatraceChanges(pod: PodView, ctx: RuleContext, withFilter: boolean, why: string): Change[] {
  const a = pod.annotations;
  const statusPort = String(istioMesh(pod, ctx).statusPort);
  const changes: Change[] = [];
  const set = (key: string, value: string, reason: string) => {
    if (a.get(key) !== value) changes.push({ kind: 'annotation', key, value, reason });
  };
  if (!dynatraceMetricsBool(a.get(DT_METRICS_SCRAPE))) set(DT_METRICS_SCRAPE, 'true', why);
  set(DT_METRICS_PORT, statusPort, `${why}: Dynatrace scrapes the merged endpoint, which inbound capture (and so mTLS) does not cover`);
  set(DT_METRICS_PATH, ISTIO_MERGED_PATH, `${why}: the merged endpoint's path`);
  if (withFilter && ctx.config.metricMerging.excludeMeshMetrics && !a.has(DT_METRICS_FILTER)) {
    set(DT_METRICS_FILTER, DT_EXCLUDE_MESH_FILTER, 'metricMerging.excludeMeshMetrics: keep the app metrics, drop istio_* and envoy_* from the merged endpoint');
  }
  return changes;
}

function result(changes: Change[], reason: string): RuleResult {
  return { changes, reasons: [reason] };
}

function beforeIstio(pod: PodView, ctx: RuleContext, request: string): RuleResult {
  const a = pod.annotations;
  const statusPortNum = istioMesh(pod, ctx).statusPort;
  const statusPort = String(statusPortNum);
  const verdict = istioSidecarVerdict(pod, ctx);
  if (verdict.state !== 'yes') return skip(`${request}, but not preparing metric merging: ${verdict.reason}`);

  const mergeRaw = a.get(ISTIO_MERGE_METRICS);
  const merge = parseGoBool(mergeRaw);
  if (mergeRaw !== undefined && merge === undefined) {
    return skip(`${request}, but ${ISTIO_MERGE_METRICS}=${q(mergeRaw)} is not a bool, so Istio's injection rejects the pod`);
  }
  if (merge === false) return skip(`${request}, but ${ISTIO_MERGE_METRICS}=${q(mergeRaw)}: Istio does not merge metrics for this pod`);
  const mesh = istioMesh(pod, ctx);
  if (merge === undefined && !mesh.prometheusMerge) {
    const where = mesh.source ? `enablePrometheusMerge is false in ${mesh.source}` : 'istio.prometheusMerge is false (mesh enablePrometheusMerge off)';
    return skip(`${request}, but ${where}: Istio does not merge metrics`);
  }
  const promScrape = prometheusVariants(a, PROM_SCRAPE);
  const scrapeOff = promScrape.find(([, v]) => parseGoBool(v) === false);
  if (scrapeOff) {
    return skip(`${request}, but ${scrapeOff[0]}=${q(scrapeOff[1])}: Istio does not merge, and Prometheus' opt-out is not overridden`);
  }
  const targets = prometheusVariants(a, PROM_SCRAPE_TARGETS)[0];
  if (targets) return skip(`${request}, but ${targets[0]} is set: the pod lists its own merge targets (Istio ≥1.31), left as they are`);
  const blocked = blocker(pod, statusPort);
  if (blocked) return skip(`${request}, but not preparing metric merging: ${blocked}`);

  const promPorts = prometheusVariants(a, PROM_PORT);
  const promPaths = prometheusVariants(a, PROM_PATH);
  // prometheus.io/port already at the status port before Istio: Istio would take the pod as
  // merged and store no app endpoint. Those keys are placeholders, not a Prometheus target.
  const preMerged = promPorts.length > 0 && promPorts.every(([, v]) => v === statusPort);
  const appPorts = [...new Set(promPorts.filter(([, v]) => v !== statusPort).map(([, v]) => v))];
  const appPaths = preMerged ? [] : [...new Set(promPaths.map(([, v]) => v))];
  if (appPorts.length > 1 || (promPorts.length > 1 && appPorts.length === 1 && promPorts.some(([, v]) => v === statusPort))) {
    return skip(`${request}, but the prometheus.io/port variants disagree (${promPorts.map(([k, v]) => `${k}=${q(v)}`).join(', ')}): Istio would pick one at random`);
  }
  if (appPaths.length > 1) {
    return skip(`${request}, but the prometheus.io/path variants disagree (${promPaths.map(([k, v]) => `${k}=${q(v)}`).join(', ')}): Istio would pick one at random`);
  }
  const promPort = appPorts[0];
  const promPath = appPaths[0];

  const dtPort = a.get(DT_METRICS_PORT);
  let app: (Endpoint & { from: string }) | undefined;
  if (dtPort !== undefined && dtPort !== statusPort) {
    app = { port: dtPort, path: a.get(DT_METRICS_PATH) || DT_METRICS_DEFAULT_PATH, from: DT_METRICS_PORT };
    const problem = portProblem(dtPort, statusPortNum);
    if (problem) {
      return skip(`${request}, but ${DT_METRICS_PORT}: ${problem}; as prometheus.io/port it would make Istio ≥1.31 reject the pod`);
    }
    if (promPort !== undefined && promPort !== app.port) {
      return skip(`${request}, but ${PROM_PORT}=${q(promPort)} differs from the Dynatrace app port ${app.port}: Prometheus' endpoint is not changed`);
    }
    if (promPath !== undefined && promPath !== app.path) {
      return skip(`${request}, but ${PROM_PATH}=${q(promPath)} differs from the Dynatrace app path ${app.path}: Prometheus' endpoint is not changed`);
    }
  } else if (promPort !== undefined) {
    app = { port: promPort, path: promPath || DT_METRICS_DEFAULT_PATH, from: PROM_PORT };
    const problem = portProblem(promPort, statusPortNum);
    if (problem) return skip(`${request}, but ${PROM_PORT}: ${problem}; Istio ≥1.31 rejects the pod`);
  }

  const why = `${request}; ${verdict.reason}`;
  const merged = `:${statusPort}${ISTIO_MERGED_PATH}`;
  if (!app) {
    const changes = dynatraceChanges(pod, ctx, false, `${request}: no app metrics port`);
    const note = preMerged
      ? `; ${PROM_PORT} is already ${statusPort} before Istio, so Istio stores no app endpoint`
      : promScrape.length > 0 && promPorts.length === 0
        ? `; with ${PROM_SCRAPE} but no port, pilot-agent scrapes the app at :80/metrics`
        : '';
    return result(
      changes,
      `${why}; neither ${DT_METRICS_PORT} nor ${PROM_PORT} names an app port, so Dynatrace ${changes.length ? 'is pointed' : 'points'} at the merged endpoint ${merged}, which then serves only Istio's own metrics (no exclude filter added)${note}`,
    );
  }

  const changes: Change[] = [];
  const toIstio = `app endpoint ${show(app)} (from ${app.from}) for Istio to merge`;
  if (promScrape.length === 0) {
    changes.push({ kind: 'annotation', key: PROM_SCRAPE, value: 'true', reason: toIstio });
  }
  if (preMerged) {
    for (const [k] of promPorts) {
      changes.push({ kind: 'annotation', key: k, value: app.port, reason: `${toIstio}; ${statusPort} before Istio would make it skip the merge and lose the app's metrics` });
    }
    for (const [k, v] of promPaths) {
      if (v !== app.path) changes.push({ kind: 'annotation', key: k, value: app.path, reason: toIstio });
    }
    if (promPaths.length === 0) changes.push({ kind: 'annotation', key: PROM_PATH, value: app.path, reason: toIstio });
  } else {
    if (promPorts.length === 0) changes.push({ kind: 'annotation', key: PROM_PORT, value: app.port, reason: toIstio });
    if (promPaths.length === 0) changes.push({ kind: 'annotation', key: PROM_PATH, value: app.path, reason: toIstio });
  }
  changes.push(...dynatraceChanges(pod, ctx, true, `${request}: scrape via Istio's merged endpoint`));
  return result(
    changes,
    changes.length
      ? `${why}; prometheus.io/* carries the ${toIstio}, Dynatrace scrapes the merged endpoint ${merged}` +
          (preMerged ? `; ${PROM_PORT} was ${statusPort}, which before Istio would make it skip the merge and lose the app's metrics` : '')
      : `${why}; already prepared: prometheus.io/* carries the ${toIstio}, Dynatrace scrapes ${merged}`,
  );
}

/** The last literal ISTIO_PROMETHEUS_ANNOTATIONS on istio-proxy (the kubelet lets the last duplicate win). */
function storedScrapeConfig(pod: PodView): { value: string } | { problem: string } {
  const proxy: IndexedContainer | undefined = [...pod.containers, ...pod.initContainers].find((c) => c.name === ISTIO_PROXY_CONTAINER);
  if (!proxy) return { problem: `no ${ISTIO_PROXY_CONTAINER} container in containers or initContainers` };
  const raw = Array.isArray(proxy.container.env) ? (proxy.container.env as unknown[]) : [];
  let last = -1;
  raw.forEach((e, i) => {
    if (typeof e === 'object' && e !== null && (e as { name?: unknown }).name === ISTIO_PROMETHEUS_ENV) last = i;
  });
  if (last === -1) return { problem: `${ISTIO_PROXY_CONTAINER} has no ${ISTIO_PROMETHEUS_ENV}, so Istio merged no app endpoint` };
  const literal = proxy.env.find((e) => e.index === last);
  if (!literal) return { problem: `${ISTIO_PROMETHEUS_ENV} on ${ISTIO_PROXY_CONTAINER} has no literal value` };
  return { value: literal.value };
}

function afterIstio(pod: PodView, ctx: RuleContext, request: string): RuleResult {
  const a = pod.annotations;
  const statusPort = String(istioMesh(pod, ctx).statusPort);
  const dtPort = a.get(DT_METRICS_PORT);
  const dtPath = a.get(DT_METRICS_PATH);
  if (dtPort === statusPort && dtPath === ISTIO_MERGED_PATH) return NOTHING;
  const late =
    `${request}, but Istio has already injected (${ISTIO_STATUS} present), so prometheus.io/* is not touched ` +
    `(unless this is a re-invocation, Istio's webhook ran first: mesh-guard's configuration must sort before istio-revision-tag-)`;
  const blocked = blocker(pod, statusPort);
  if (blocked) return skip(`${late}; Dynatrace annotations left alone: ${blocked}`);
  const stored = storedScrapeConfig(pod);
  if ('problem' in stored) return skip(`${late}; Dynatrace annotations left alone: ${stored.problem}`);
  const cfg = parseIstioScrapeConfig(stored.value);
  if (!cfg) return skip(`${late}; Dynatrace annotations left alone: ${ISTIO_PROMETHEUS_ENV} is not the JSON pilot-agent reads`);
  if (parseGoBool(cfg.scrape) === false) {
    return skip(`${late}; Dynatrace annotations left alone: ${ISTIO_PROMETHEUS_ENV} says scrape "false", so the app is not merged`);
  }
  const endpoints: Endpoint[] = cfg.targets.length
    ? cfg.targets.map((t) => ({ port: t.port, path: t.path || DT_METRICS_DEFAULT_PATH }))
    : cfg.port !== ''
      ? [{ port: cfg.port, path: cfg.path || DT_METRICS_DEFAULT_PATH }]
      : [];
  let app: Endpoint | undefined;
  if (dtPort !== undefined && dtPort !== statusPort) {
    const want = { port: dtPort, path: dtPath || DT_METRICS_DEFAULT_PATH };
    app = endpoints.find((e) => e.port === want.port && e.path === want.path);
    if (!app) {
      return skip(
        `${late}; Dynatrace still points at the app ${show(want)}, which strict mTLS blocks, and ${ISTIO_PROMETHEUS_ENV} holds ` +
          `${endpoints.length ? endpoints.map(show).join(', ') : 'no app port'}, not that endpoint: left alone`,
      );
    }
  } else {
    app = endpoints[0];
    if (!app) return skip(`${late}; Dynatrace annotations left alone: ${ISTIO_PROMETHEUS_ENV} names no app port`);
  }
  const changes = dynatraceChanges(pod, ctx, true, `${request}: Istio already merged the app endpoint ${show(app)}`);
  return result(
    changes,
    `${late}; ${ISTIO_PROMETHEUS_ENV} already holds the app endpoint ${show(app)}, so only Dynatrace is repointed at the merged endpoint :${statusPort}${ISTIO_MERGED_PATH}`,
  );
}

export const istioMetricMerging: Rule = {
  name: 'istio-metric-merging',
  summary:
    'Before Istio injects a pod that asks for Dynatrace scraping, puts its app endpoint in prometheus.io/* for Istio to merge and points Dynatrace at the merged :15020/stats/prometheus endpoint, which works under strict mTLS.',
  evaluate(pod, ctx): RuleResult {
    const injected = pod.annotations.has(ISTIO_STATUS);
    const request = scrapeRequest(pod, ctx, injected);
    if (!request) return NOTHING;
    return injected ? afterIstio(pod, ctx, request) : beforeIstio(pod, ctx, request);
  },
};
