/**
 * The configuration schema: one typed object, every key with a default, validated strictly.
 *
 * The schema is data (a tree of field specs) so that validation, defaults, the error
 * messages and the TypeScript type all come from the same place. A bad key, type or value
 * produces one line that names the dotted key.
 */
import net from 'node:net';
import { isPlainUrlPath } from '../admission/annotations.js';

export class ConfigError extends Error {
  constructor(readonly key: string, detail: string) {
    super(`config: ${key}: ${detail}`);
    this.name = 'ConfigError';
  }
}

interface Field<T> {
  readonly defaultValue: () => T;
  parse(value: unknown, key: string): T;
}

type Shape = Record<string, Field<unknown>>;
export type Infer<F> = F extends Field<infer T> ? T : never;
type InferShape<S extends Shape> = { readonly [K in keyof S]: Infer<S[K]> };

const describe = (v: unknown): string =>
  v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v === 'object' ? 'a map' : `${typeof v} ${JSON.stringify(v)}`;

export function bool(def: boolean): Field<boolean> {
  return {
    defaultValue: () => def,
    parse(v, key) {
      if (typeof v !== 'boolean') throw new ConfigError(key, `expected true or false, got ${describe(v)}`);
      return v;
    },
  };
}

export function int(def: number, min: number, max: number): Field<number> {
  return {
    defaultValue: () => def,
    parse(v, key) {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
        throw new ConfigError(key, `expected an integer from ${min} to ${max}, got ${describe(v)}`);
      }
      return v;
    },
  };
}

export function str(def: string, check?: (s: string) => string | undefined): Field<string> {
  return {
    defaultValue: () => def,
    parse(v, key) {
      if (typeof v !== 'string') throw new ConfigError(key, `expected a string, got ${describe(v)}`);
      const problem = check?.(v);
      if (problem) throw new ConfigError(key, problem);
      return v;
    },
  };
}

export function oneOf<const T extends string>(values: readonly T[], def: T): Field<T> {
  return {
    defaultValue: () => def,
    parse(v, key) {
      if (typeof v !== 'string' || !values.includes(v as T)) {
        throw new ConfigError(key, `expected one of ${values.join(', ')}, got ${describe(v)}`);
      }
      return v as T;
    },
  };
}

export function list<T>(item: Field<T>, def: readonly T[]): Field<readonly T[]> {
  return {
    defaultValue: () => [...def],
    parse(v, key) {
      if (!Array.isArray(v)) throw new ConfigError(key, `expected a list, got ${describe(v)}`);
      return Object.freeze(v.map((x, i) => item.parse(x, `${key}[${i}]`)));
    },
  };
}

/** A map of string to string (label selectors). */
export function stringMap(): Field<Readonly<Record<string, string>>> {
  return {
    defaultValue: () => ({}),
    parse(v, key) {
      if (!isPlainObject(v)) throw new ConfigError(key, `expected a map of strings, got ${describe(v)}`);
      const out: Record<string, string> = Object.create(null);
      for (const [k, val] of Object.entries(v)) {
        if (typeof val !== 'string') throw new ConfigError(`${key}.${k}`, `expected a string, got ${describe(val)}`);
        out[k] = val;
      }
      if (Object.keys(out).length === 0) throw new ConfigError(key, 'a selector needs at least one label');
      return Object.freeze(out);
    },
  };
}

export function obj<S extends Shape>(shape: S): Field<InferShape<S>> {
  return {
    defaultValue: () => {
      const out: Record<string, unknown> = {};
      for (const [k, f] of Object.entries(shape)) out[k] = f.defaultValue();
      return Object.freeze(out) as InferShape<S>;
    },
    parse(v, key) {
      if (v === undefined || v === null) v = {};
      if (!isPlainObject(v)) throw new ConfigError(key || '(root)', `expected a map, got ${describe(v)}`);
      const src = v as Record<string, unknown>;
      for (const k of Object.keys(src)) {
        if (!Object.hasOwn(shape, k)) {
          const known = Object.keys(shape).join(', ');
          throw new ConfigError(key ? `${key}.${k}` : k, `unknown key (known keys here: ${known})`);
        }
      }
      const out: Record<string, unknown> = {};
      for (const [k, f] of Object.entries(shape)) {
        const childKey = key ? `${key}.${k}` : k;
        out[k] = src[k] === undefined ? f.defaultValue() : f.parse(src[k], childKey);
      }
      return Object.freeze(out) as InferShape<S>;
    },
  };
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

const port = int(0, 1, 65535);

function cidr(): Field<string> {
  return str('', (s) => (parseCidr(s) ? undefined : `"${s}" is not a CIDR (expected e.g. 10.0.0.0/8 or fd00::/8)`));
}

/** Parses an IPv4 or IPv6 CIDR the way Go's netip.ParsePrefix does (no spaces, prefix in range). */
export function parseCidr(s: string): { ip: string; bits: number; family: 4 | 6 } | undefined {
  const slash = s.indexOf('/');
  if (slash < 0) return undefined;
  const ip = s.slice(0, slash);
  const bitsText = s.slice(slash + 1);
  if (!/^(0|[1-9][0-9]{0,2})$/.test(bitsText)) return undefined;
  const bits = Number(bitsText);
  const family = net.isIPv4(ip) ? 4 : net.isIPv6(ip) && !ip.includes('%') ? 6 : 0;
  if (family === 0 || bits > (family === 4 ? 32 : 128)) return undefined;
  return { ip, bits, family };
}

export const RULE_NAMES = [
  'node-agent-guard',
  'csi-driver-guard',
  'istio-metric-merging',
  'istio-native-sidecar-guard',
  'consul-activegate-exclusions',
  'consul-metric-merging',
  'mesh-proxy-instrumentation-guard',
] as const;
export type RuleName = (typeof RULE_NAMES)[number];
export const RULE_MODES = ['enforce', 'dry-run', 'off'] as const;
export type RuleMode = (typeof RULE_MODES)[number];

/**
 * Rules that are off unless a user turns them on. mesh-proxy-instrumentation-guard also turns
 * off Dynatrace's monitoring of the mesh proxies, which users may want.
 */
const OFF_BY_DEFAULT: ReadonlySet<RuleName> = new Set<RuleName>(['mesh-proxy-instrumentation-guard']);

const ruleModes = obj(
  Object.fromEntries(RULE_NAMES.map((n) => [n, oneOf(RULE_MODES, OFF_BY_DEFAULT.has(n) ? 'off' : 'enforce')])) as Record<RuleName, Field<RuleMode>>,
);

export const configSchema = obj({
  /** Global dry-run: no rule returns changes; the admission log shows what would have changed. */
  dryRun: bool(false),
  logLevel: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'info'),
  /** Per-rule mode: enforce, dry-run or off. */
  rules: ruleModes,
  server: obj({
    port: int(8443, 0, 65535),
    host: str('0.0.0.0'),
    /** API server request limit (3 MiB). */
    bodyLimitBytes: int(3 * 1024 * 1024, 1024, 64 * 1024 * 1024),
    /** Must exceed the API server's 90 s idle-connection reuse, or it sees EOFs. */
    keepAliveTimeoutMs: int(95_000, 90_001, 3_600_000),
    headersTimeoutMs: int(10_000, 1_000, 120_000),
    requestTimeoutMs: int(30_000, 1_000, 300_000),
    /** After SIGTERM, /readyz is 503 but requests are still served this long, so endpoints catch up. */
    shutdownDelayMs: int(5_000, 0, 120_000),
    /** Upper bound for finishing in-flight requests after the drain delay. */
    shutdownTimeoutMs: int(20_000, 0, 300_000),
    tls: obj({
      certFile: str(''),
      keyFile: str(''),
      /** Where the generated self-signed CA, certificate and key are written when no files are configured. */
      selfSignedDir: str(''),
      /** Extra DNS names for the self-signed certificate. */
      selfSignedDnsNames: list(str(''), []),
      /** How often to check the certificate files for changes (kubelet swaps a symlink). */
      reloadIntervalMs: int(10_000, 100, 3_600_000),
    }),
  }),
  nodeAgentGuard: obj({
    /** Also set dynatrace.com/inject: "false", the complete Dynatrace opt-out. */
    disableAllDynatrace: bool(false),
    /** Extra node-agent pods, each a map of labels that must all match (e.g. k8s-app: calico-node). */
    extraSelectors: list(stringMap(), []),
  }),
  metricMerging: obj({
    /** Add a Dynatrace filter that drops the mesh metrics (Istio: istio_*, envoy_*; Consul: envoy_*, consul_dataplane_*) when no filter exists. */
    excludeMeshMetrics: bool(true),
    /** Treat prometheus.io/scrape: "true" as a request for Dynatrace scraping too. */
    prometheusScrapeIsRequest: bool(false),
  }),
  istio: obj({
    /** Mirror of Istio's auto-injection for namespaces with neither istio-injection nor istio.io/rev. */
    injectByDefault: bool(false),
    /** Mirror of mesh enablePrometheusMerge. */
    prometheusMerge: bool(true),
    /** Mirror of mesh defaultConfig.statusPort. */
    statusPort: int(15020, 1, 65535),
    nativeSidecarGuard: bool(true),
    /**
     * What the native-sidecar guard does with a pod that runs to completion (restartPolicy Never
     * or OnFailure: every Job and CronJob pod). keep-native: leave its native sidecar, which lets it
     * complete, and warn that OneAgent does not support it. classic: force a classic sidecar as on
     * other pods, and warn that the pod will not complete while istio-proxy runs.
     */
    runToCompletionPods: oneOf(['keep-native', 'classic'], 'keep-native'),
  }),
  consul: obj({
    /** Mirror of Helm connectInject.default. */
    injectByDefault: bool(false),
    /** Mirror of Helm connectInject.transparentProxy.defaultEnabled. */
    transparentProxyDefault: bool(true),
    /** Mirror of Helm connectInject.k8sDenyNamespaces. */
    denyNamespaces: list(str(''), []),
    /**
     * Mirror of Helm connectInject.metrics.defaultPrometheusScrapePort (the injector's
     * -default-prometheus-scrape-port, which it refuses outside 1024-65535): where
     * consul-dataplane serves the merged metrics, excluded from inbound redirection.
     */
    prometheusScrapePort: int(20200, 1024, 65535),
    /** Mirror of Helm connectInject.metrics.defaultPrometheusScrapePath. */
    prometheusScrapePath: str('/metrics', (s) =>
      isPlainUrlPath(s) ? undefined : `"${s}" is not a plain URL path (a "/" and then only RFC 3986 path characters: no query, space or quote)`,
    ),
  }),
  dynatrace: obj({
    /** When namespace labels are unknown, assume Dynatrace injects OneAgent. */
    assumeInjectedWhenUnknown: bool(false),
  }),
  activeGate: obj({
    ports: list(port, [9999]),
    cidrs: list(cidr(), []),
    /**
     * Which ActiveGate Service ClusterIP families go into Consul's outbound CIDR exclusions.
     * Consul's transparent proxy applies its exclusions with IPv4 iptables, where an IPv6 CIDR
     * fails and the pod crash-loops in its init container; add IPv6 only for a Consul that
     * redirects IPv6 (dual-stack or IPv6 clusters).
     */
    clusterIPFamilies: list(oneOf(['IPv4', 'IPv6'], 'IPv4'), ['IPv4']),
  }),
  cluster: obj({
    /** auto: in-cluster config or KUBECONFIG when present; off: never connect. */
    mode: oneOf(['auto', 'off'], 'auto'),
    /** Namespace of the ActiveGate Services; empty means all namespaces. */
    activeGateNamespace: str(''),
    activeGateLabelSelector: str('app.kubernetes.io/component=activegate,app.kubernetes.io/name=dynatrace-operator'),
    /** Bound for the one live GET on a namespace cache miss. */
    liveLookupTimeoutMs: int(300, 10, 300),
    /** Bound for the first sync before /readyz turns 200 anyway. */
    syncTimeoutMs: int(10_000, 0, 120_000),
  }),
});

export type Config = Infer<typeof configSchema>;
export const defaultConfig: Config = configSchema.defaultValue();
