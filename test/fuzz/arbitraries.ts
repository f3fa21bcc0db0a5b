/**
 * fast-check generators for pods the way a hostile or buggy client (or a future API server)
 * could send them: random metadata with keys containing "/", "~", dots and unicode;
 * "__proto__", "constructor" and "prototype" as own keys; null and non-string values;
 * missing metadata/annotations/labels; huge values; and every key and value the rules read
 * (the mesh, Dynatrace and Consul annotations and labels, the Consul init container env and
 * the istio-proxy env), mixed so that combinations the rule tables do not list come up.
 */
import fc from 'fast-check';
import {
  CONSUL_CONNECT_INJECT,
  CONSUL_CONNECT_INJECT_STATUS,
  CONSUL_CONNECT_SERVICE,
  CONSUL_ENABLE_METRICS,
  CONSUL_ENABLE_METRICS_MERGING,
  CONSUL_MERGED_METRICS_PORT,
  CONSUL_PROMETHEUS_SCRAPE_PATH,
  CONSUL_PROMETHEUS_SCRAPE_PORT,
  CONSUL_SERVICE_METRICS_PATH,
  CONSUL_SERVICE_METRICS_PORT,
  CONSUL_EXCLUDE_OUTBOUND_CIDRS,
  CONSUL_EXCLUDE_OUTBOUND_PORTS,
  CONSUL_INIT_CONTAINER,
  CONSUL_REDIRECT_TRAFFIC_ANNOTATION,
  CONSUL_REDIRECT_TRAFFIC_ENV,
  CONSUL_TRANSPARENT_PROXY,
  CONSUL_TRANSPARENT_PROXY_STATUS,
  DT_INJECT,
  DT_METRICS_FILTER,
  DT_METRICS_PATH,
  DT_METRICS_PORT,
  DT_METRICS_SCRAPE,
  DT_METRICS_SECURE,
  DT_NAMESPACE_INSTANCE,
  DT_ONEAGENT_INJECT,
  ISTIO_DATAPLANE_MODE,
  ISTIO_INJECT,
  ISTIO_INJECTION_LABEL,
  ISTIO_MERGE_METRICS,
  ISTIO_NATIVE_SIDECAR,
  ISTIO_PROMETHEUS_ENV,
  ISTIO_PROXY_CONFIG,
  ISTIO_PROXY_CONTAINER,
  ISTIO_REV,
  ISTIO_STATUS,
  ISTIO_STATUS_PORT_OVERRIDE,
  PROM_PATH,
  PROM_PORT,
  PROM_SCHEME,
  PROM_SCRAPE,
  SKIP_ANNOTATION,
} from '../../src/admission/annotations.js';

/** Env vars a rule may rewrite (the only env paths a patch may touch). */
export const OWNED_ENV = new Set([CONSUL_REDIRECT_TRAFFIC_ENV, ISTIO_PROMETHEUS_ENV]);

export const ANNOTATION_KEYS = [
  DT_INJECT,
  DT_ONEAGENT_INJECT,
  SKIP_ANNOTATION,
  ISTIO_INJECT,
  ISTIO_STATUS,
  ISTIO_NATIVE_SIDECAR,
  ISTIO_MERGE_METRICS,
  ISTIO_STATUS_PORT_OVERRIDE,
  ISTIO_PROXY_CONFIG,
  'prometheus.istio.io/scrape-targets',
  CONSUL_CONNECT_INJECT,
  CONSUL_CONNECT_INJECT_STATUS,
  CONSUL_TRANSPARENT_PROXY,
  CONSUL_TRANSPARENT_PROXY_STATUS,
  CONSUL_EXCLUDE_OUTBOUND_PORTS,
  CONSUL_EXCLUDE_OUTBOUND_CIDRS,
  CONSUL_REDIRECT_TRAFFIC_ANNOTATION,
  'consul.hashicorp.com/transparent-proxy-exclude-inbound-ports',
  CONSUL_ENABLE_METRICS,
  CONSUL_ENABLE_METRICS_MERGING,
  CONSUL_SERVICE_METRICS_PORT,
  CONSUL_SERVICE_METRICS_PATH,
  CONSUL_PROMETHEUS_SCRAPE_PORT,
  CONSUL_PROMETHEUS_SCRAPE_PATH,
  CONSUL_MERGED_METRICS_PORT,
  CONSUL_CONNECT_SERVICE,
  'consul.hashicorp.com/prometheus-cert-file',
  PROM_SCRAPE,
  PROM_PORT,
  PROM_PATH,
  PROM_SCHEME,
  // Spellings Istio's SanitizeLabelName treats as the same key.
  'prometheus.io.port',
  'prometheus-io/port',
  'prometheus.io.scrape',
  DT_METRICS_SCRAPE,
  DT_METRICS_PORT,
  DT_METRICS_PATH,
  DT_METRICS_SECURE,
  DT_METRICS_FILTER,
  'metrics.dynatrace.com/http.auth',
  'container.inject.dynatrace.com/istio-proxy',
  'container.inject.dynatrace.com/consul-dataplane',
  'oneagent.dynatrace.com/volume-type',
];

export const LABEL_KEYS = [
  'k8s-app',
  'app',
  'component',
  ISTIO_INJECT,
  ISTIO_REV,
  ISTIO_DATAPLANE_MODE,
  'app.kubernetes.io/name',
  'app.kubernetes.io/component',
  'internal.oneagent.dynatrace.com/component',
  'internal.oneagent.dynatrace.com/app',
];

const PROTO_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', '__defineGetter__'];

const goBools = ['true', 'false', '1', '0', 't', 'f', 'T', 'F', 'TRUE', 'FALSE', 'True', 'False', 'yes', 'no', '', ' true', 'enabled'];
const ruleValues = [
  ...goBools,
  'istio-cni-node', 'ztunnel', 'consul', 'cni', 'linkerd-cni', 'csi-driver', 'dynatrace-operator', 'ambient', 'default', 'canary', 'enabled',
  '9999', '443', '9999,443', '9999, 443', ',', '9999,', '15020', '015020', '9090', '0', '65536', '8080', '-1',
  '10.0.0.7/32', '10.0.0.0/8', 'fd00::7/128', '10.0.0.7', 'not-a-cidr', '10.0.0.0/8,192.168.0.0/16',
  '/metrics', '/stats/prometheus', 'metrics', 'http', 'https',
  '20200', '20100', '20300', '1023', '0x4e20', 'web,admin', '/merged', '/custom', '/m?x=1', '/a b',
  '{"mode":"exclude","names":["istio_*","envoy_*"]}',
  '{"mode":"exclude","names":["envoy_*","consul_dataplane_*"]}',
  '{"initContainers":["istio-init"],"containers":["istio-proxy"]}',
  '{"ExcludeOutboundPorts":["9999"],"ExcludeOutboundCIDRs":null,"ProxyUserID":5995}',
  '{"ExcludeOutboundPorts":null,"ExcludeOutboundCIDRs":["10.0.0.7/32"]}',
  '{"ExcludeOutboundPorts":[],"excludeOutboundPorts":[]}',
  '{"ExcludeOutboundPorts":["1"],"ExcludeOutboundPorts":["2"]}',
  '{"ExcludeOutboundPorts":[1]}',
  '[]', 'null', '{', '{"scrape":"true","port":"9090","path":"/metrics"}', '{"scrape":"true","port":9090}',
  'injected',
  'csi', 'ephemeral', 'image',
  // proxy.istio.io/config: YAML, JSON, the hold setting in both spellings, and what does not parse.
  'holdApplicationUntilProxyStarts: true', 'holdApplicationUntilProxyStarts: false', 'hold_application_until_proxy_starts: true',
  '{"concurrency": 2}', 'concurrency: 2\n# note\nstatusPort: 15021\n', 'statusPort: [', 'a: 1\na: 2', '- 1\n- 2', 'a: 1\n---\nb: 2',
];

/** Arbitrary text, including unicode, "/", "~", dots and JSON-pointer-looking strings. */
const wildString = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.string({ unit: 'grapheme', maxLength: 12 }),
  fc.string({ unit: fc.constantFrom('a', 'z', '0', '.', '-', '_', '/', '~', '~0', '~1', 'é', '日', '😀', ' ', '\u0000'), maxLength: 16 }),
);

const annotationKey = fc.oneof(
  { weight: 10, arbitrary: fc.constantFrom(...ANNOTATION_KEYS) },
  { weight: 2, arbitrary: fc.constantFrom(...PROTO_KEYS) },
  { weight: 2, arbitrary: fc.constantFrom('example.com/a~b', 'example.com/a.b', 'a/b/c', '/x', 'x/', 'ünï.com/x', 'example.com/日本', '~1', '~0', 'x~y', '.dot', 'ok-key') },
  { weight: 3, arbitrary: wildString },
);
const labelKey = fc.oneof(
  { weight: 10, arbitrary: fc.constantFrom(...LABEL_KEYS) },
  { weight: 2, arbitrary: fc.constantFrom(...PROTO_KEYS) },
  { weight: 3, arbitrary: wildString },
);

/** Mostly strings; sometimes what a string slot should never hold. */
const nonString = fc.oneof(
  fc.constant(null),
  fc.integer(),
  fc.boolean(),
  fc.constant({ polluted: 'yes' }),
  fc.array(fc.string(), { maxLength: 2 }),
  fc.double(),
);

const valueArb = fc.oneof(
  { weight: 20, arbitrary: fc.constantFrom(...ruleValues) },
  { weight: 6, arbitrary: wildString },
  { weight: 2, arbitrary: nonString },
);

/**
 * A map built with defineProperty, so "__proto__" is an own enumerable key exactly as
 * JSON.parse would make it (an object literal or a plain assignment would set the prototype).
 */
export function ownMap(entries: ReadonlyArray<readonly [string, unknown]>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of entries) Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
  return out;
}

const mapArb = (key: fc.Arbitrary<string>) =>
  fc.oneof(
    { weight: 12, arbitrary: fc.array(fc.tuple(key, valueArb), { maxLength: 7 }).map(ownMap) },
    { weight: 2, arbitrary: fc.constant(undefined) },
    { weight: 1, arbitrary: fc.constant(null) },
    { weight: 1, arbitrary: fc.constantFrom<unknown>('a string', 42, [], ['x'], true) },
  );

const envArb = fc.array(
  fc.oneof(
    { weight: 6, arbitrary: fc.record({ name: fc.constantFrom(CONSUL_REDIRECT_TRAFFIC_ENV, ISTIO_PROMETHEUS_ENV, 'OTHER', 'SECRET'), value: fc.constantFrom(...ruleValues) }) },
    { weight: 1, arbitrary: fc.record({ name: fc.constantFrom(CONSUL_REDIRECT_TRAFFIC_ENV, ISTIO_PROMETHEUS_ENV), valueFrom: fc.constant({ fieldRef: { fieldPath: 'metadata.name' } }) }) },
    { weight: 1, arbitrary: fc.oneof(fc.constant(null), fc.record({ name: fc.constant(CONSUL_REDIRECT_TRAFFIC_ENV), value: nonString })) },
  ),
  { maxLength: 3 },
);

const containerArb = fc.oneof(
  {
    weight: 10,
    arbitrary: fc.record(
      {
        name: fc.constantFrom(ISTIO_PROXY_CONTAINER, CONSUL_INIT_CONTAINER, `${CONSUL_INIT_CONTAINER}-web`, 'app', 'install-cni', 'ztunnel', 'istio-init'),
        image: fc.constantFrom('nginx', 'docker.io/istio/install-cni:1.30', 'istio/ztunnel:1.30@sha256:abc', 'registry.example.com:5000/app:1', ''),
        env: envArb,
      },
      { requiredKeys: ['name'] },
    ),
  },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(null, 'container', 7, { name: 5 }) },
);

const containerList = fc.oneof(
  { weight: 8, arbitrary: fc.array(containerArb, { maxLength: 3 }) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(undefined, null, 'nope', {}) },
);

export const NAMESPACES = ['default', 'istio-ns', 'dt-ns', 'mesh', 'consul-ns', 'kube-system', 'istio-system', 'ghost'];

/** The namespaces of the static cluster view the test server answers from ("ghost" does not exist). */
export const NAMESPACE_LABELS: Record<string, Record<string, string>> = {
  default: {},
  'istio-ns': { [ISTIO_INJECTION_LABEL]: 'enabled' },
  'dt-ns': { [DT_NAMESPACE_INSTANCE]: 'dynakube' },
  mesh: { [ISTIO_INJECTION_LABEL]: 'enabled', [DT_NAMESPACE_INSTANCE]: 'dynakube', [CONSUL_TRANSPARENT_PROXY]: 'true' },
  'consul-ns': { [DT_NAMESPACE_INSTANCE]: 'dynakube', [CONSUL_TRANSPARENT_PROXY]: 'false', [ISTIO_REV]: 'canary' },
  'kube-system': { [DT_NAMESPACE_INSTANCE]: 'dynakube' },
  'istio-system': {},
};

/** A pod object (or something in its place), with `__proto__` and friends as own keys where generated. */
export function podArb(): fc.Arbitrary<unknown> {
  const metadata = fc.oneof(
    {
      weight: 12,
      arbitrary: fc
        .record(
          {
            name: fc.oneof(fc.constantFrom('istio-cni-node-abc', 'web-1', ''), fc.constant(7)),
            generateName: fc.constantFrom('istio-cni-node-', 'web-', 'dynatrace-oneagent-csi-driver-', 'ztunnel-'),
            namespace: fc.constantFrom(...NAMESPACES),
            annotations: mapArb(annotationKey),
            labels: mapArb(labelKey),
            extra: fc.array(fc.tuple(fc.constantFrom(...PROTO_KEYS), fc.constant({ polluted: 'yes' })), { maxLength: 1 }),
          },
          { requiredKeys: [] },
        )
        .map(({ extra, ...m }) => {
          const out = ownMap(Object.entries(m).filter(([, v]) => v !== undefined));
          for (const [k, v] of extra ?? []) Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
          return out;
        }),
    },
    { weight: 1, arbitrary: fc.constantFrom<unknown>(undefined, null, 'meta', []) },
  );
  const spec = fc.oneof(
    {
      weight: 10,
      arbitrary: fc
        .record({ containers: containerList, initContainers: containerList, hostNetwork: fc.boolean(), restartPolicy: fc.constantFrom<unknown>('Never', 'OnFailure', 'Always', 5, null) }, { requiredKeys: [] })
        .map((s) => ownMap(Object.entries(s).filter(([, v]) => v !== undefined))),
    },
    { weight: 1, arbitrary: fc.constantFrom<unknown>(undefined, null, 5) },
  );
  return fc.oneof(
    { weight: 30, arbitrary: fc.record({ metadata, spec }, { requiredKeys: [] }).map((p) => ownMap([['apiVersion', 'v1'], ['kind', 'Pod'], ...Object.entries(p).filter(([, v]) => v !== undefined)])) },
    { weight: 1, arbitrary: fc.constantFrom<unknown>(null, 'pod', 3, []) },
  );
}

/** The request namespace: usually the pod's, sometimes another, missing, or not a string. */
export const requestNamespaceArb = fc.oneof(
  { weight: 10, arbitrary: fc.constant<'pod'>('pod') },
  { weight: 2, arbitrary: fc.constantFrom<unknown>(...NAMESPACES) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(undefined, '', 12, null) },
);

/**
 * Rarely, one huge annotation (64 KiB to 1 MiB, and now and then over the 3 MiB body limit),
 * under a key a rule reads or an unrelated one. 0 means none.
 */
export const hugeArb = fc.oneof(
  { weight: 150, arbitrary: fc.constant(undefined) },
  {
    weight: 1,
    arbitrary: fc.record({
      key: fc.constantFrom(CONSUL_EXCLUDE_OUTBOUND_PORTS, CONSUL_REDIRECT_TRAFFIC_ANNOTATION, DT_ONEAGENT_INJECT, PROM_PORT, 'example.com/huge'),
      bytes: fc.oneof({ weight: 12, arbitrary: fc.integer({ min: 64 * 1024, max: 1024 * 1024 }) }, { weight: 1, arbitrary: fc.constant(3 * 1024 * 1024 + 1) }),
      fill: fc.constantFrom('h', '9,', ' ', '日'),
    }),
  },
);

/**
 * A rendered Consul iptables.Config (the JSON Consul puts in CONSUL_REDIRECT_TRAFFIC_CONFIG and
 * the redirect-traffic-config annotation), with the two exclusion fields present, null, absent,
 * partly filled or mistyped, extra members (including "__proto__"), any indentation, and now and
 * then arbitrary JSON.
 */
export const renderedConfigArb: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .record(
        {
          ports: fc.oneof(fc.constant(null), fc.constant(undefined), fc.array(fc.constantFrom('9999', '443', '8080', ' 443', ''), { maxLength: 3 }), fc.constant([9999])),
          cidrs: fc.oneof(fc.constant(null), fc.constant(undefined), fc.array(fc.constantFrom('10.0.0.7/32', '192.168.0.0/16', '10.0.0.7', 'fd00::7/128', 'x'), { maxLength: 3 })),
          extra: fc.array(fc.tuple(fc.constantFrom('ProxyUserID', 'ProxyInboundPort', 'ConsulDNSIP', '__proto__', 'excludeoutboundports', 'NetNS'), fc.jsonValue({ maxDepth: 2 })), { maxLength: 3 }),
          indent: fc.constantFrom(0, 0, 2, '\t'),
          portsFirst: fc.boolean(),
        },
        { requiredKeys: ['ports', 'cidrs', 'extra', 'indent', 'portsFirst'] },
      )
      .map(({ ports, cidrs, extra, indent, portsFirst }) => {
        const fields: Array<[string, unknown]> = [];
        if (ports !== undefined) fields.push(['ExcludeOutboundPorts', ports]);
        if (cidrs !== undefined) fields.push(['ExcludeOutboundCIDRs', cidrs]);
        if (!portsFirst) fields.reverse();
        return JSON.stringify(ownMap([...extra.slice(0, 1), ...fields, ...extra.slice(1)]), null, indent);
      }),
  },
  { weight: 1, arbitrary: fc.json({ maxDepth: 3 }) },
  { weight: 1, arbitrary: fc.constantFrom('{', '', 'null', '{"ExcludeOutboundPorts":["1"],"ExcludeOutboundPorts":["2"]}', '{"ExcludeOutboundPorts" : [ "9999" ] , "ExcludeOutboundCIDRs":null}\n') },
);

/** An ISTIO_PROMETHEUS_ANNOTATIONS value as Istio renders it (or close to it). */
const istioScrapeEnvArb: fc.Arbitrary<string> = fc.oneof(
  fc
    .record({
      scrape: fc.constantFrom('true', 'false', '', 'True'),
      port: fc.constantFrom('9090', '15020', '', '8080', '0'),
      path: fc.constantFrom('/metrics', '', '/stats/prometheus'),
    })
    .map((o) => JSON.stringify(o)),
  fc.json({ maxDepth: 2 }),
);

/** Only valid keys, so the rules (not the shape check) decide: the rule-reaching half of the cases. */
const scenarioAnnotations = fc.array(
  fc.oneof(
    { weight: 8, arbitrary: fc.tuple(fc.constantFrom(...ANNOTATION_KEYS), fc.constantFrom(...ruleValues)) },
    { weight: 2, arbitrary: fc.tuple(fc.constant(CONSUL_REDIRECT_TRAFFIC_ANNOTATION), renderedConfigArb) },
    { weight: 1, arbitrary: fc.tuple(fc.constantFrom('example.com/free-text', 'a.b/c_d', 'x'), wildString) },
    { weight: 2, arbitrary: fc.tuple(fc.constant(CONSUL_CONNECT_INJECT_STATUS), fc.constant('injected')) },
    // Variations on a Consul pod asking for Dynatrace scraping (see consulScrape below).
    {
      weight: 2,
      arbitrary: fc.constantFrom<[string, string]>(
        [CONSUL_CONNECT_INJECT, 'true'],
        [DT_METRICS_SCRAPE, 'true'],
        [DT_METRICS_PORT, '8080'],
        [DT_METRICS_PORT, '20200'],
        [CONSUL_SERVICE_METRICS_PORT, '8080'],
        [CONSUL_ENABLE_METRICS, 'true'],
        [CONSUL_ENABLE_METRICS, ''],
      ),
    },
    { weight: 1, arbitrary: fc.tuple(fc.constant(CONSUL_TRANSPARENT_PROXY_STATUS), fc.constant('enabled')) },
  ),
  { maxLength: 8 },
);

const scenarioLabels = fc.array(
  fc.oneof(
    fc.tuple(fc.constantFrom(...LABEL_KEYS), fc.constantFrom(...ruleValues)),
    fc.constantFrom<[string, string]>(
      ['k8s-app', 'istio-cni-node'],
      ['app', 'ztunnel'],
      ['app', 'consul'],
      ['component', 'cni'],
      ['k8s-app', 'linkerd-cni'],
      ['k8s-app', 'calico-node'],
      ['internal.oneagent.dynatrace.com/component', 'csi-driver'],
      ['app.kubernetes.io/component', 'csi-driver'],
      ['app.kubernetes.io/name', 'dynatrace-operator'],
    ),
  ),
  { maxLength: 4 },
);

const scenarioEnv = (name: string, value: fc.Arbitrary<string>) =>
  fc.array(
    fc.oneof(
      { weight: 4, arbitrary: value.map((v) => ({ name, value: v })) },
      { weight: 1, arbitrary: fc.constant({ name, valueFrom: { secretKeyRef: { name: 's', key: 'k' } } }) },
      { weight: 1, arbitrary: fc.constant({ name: 'OTHER', value: 'x' }) },
    ),
    { maxLength: 2 },
  );

const scenarioContainers = fc.record({
  containers: fc.array(
    fc.oneof(
      fc.constant({ name: 'app', image: 'registry.example.com/shop/web:1.2' }),
      fc.constant({ name: 'install-cni', image: 'docker.io/istio/install-cni:1.30.3' }),
      fc.constant({ name: 'ztunnel', image: 'docker.io/istio/ztunnel:1.30.3' }),
      scenarioEnv(ISTIO_PROMETHEUS_ENV, istioScrapeEnvArb).map((env) => ({ name: ISTIO_PROXY_CONTAINER, image: 'docker.io/istio/proxyv2:1.30.3', env })),
    ),
    { minLength: 1, maxLength: 3 },
  ),
  initContainers: fc.array(
    fc.oneof(
      scenarioEnv(CONSUL_REDIRECT_TRAFFIC_ENV, renderedConfigArb).chain((env) =>
        fc.constantFrom(CONSUL_INIT_CONTAINER, `${CONSUL_INIT_CONTAINER}-web`, 'consul-connect-inject-initx').map((name) => ({ name, image: 'hashicorp/consul-k8s-control-plane:1.6', env })),
      ),
      scenarioEnv(ISTIO_PROMETHEUS_ENV, istioScrapeEnvArb).map((env) => ({ name: ISTIO_PROXY_CONTAINER, image: 'docker.io/istio/proxyv2:1.30.3', restartPolicy: 'Always', env })),
      fc.constant({ name: 'istio-init', image: 'docker.io/istio/proxyv2:1.30.3' }),
    ),
    { maxLength: 2 },
  ),
});

/** A well-formed pod built from the keys, values, containers and env the rules read. */
export function scenarioPodArb(): fc.Arbitrary<unknown> {
  return fc
    .record({
      namespace: fc.constantFrom(...NAMESPACES),
      generateName: fc.constantFrom('istio-cni-node-', 'web-', 'dynatrace-oneagent-csi-driver-', 'ztunnel-', ''),
      annotations: fc.option(scenarioAnnotations, { freq: 6 }),
      labels: fc.option(scenarioLabels, { freq: 6 }),
      spec: scenarioContainers,
      hostNetwork: fc.boolean(),
      restartPolicy: fc.constantFrom(undefined, 'Always', 'OnFailure', 'Never'),
      // A pod Consul's webhook already injected with transparent proxy: the rendered-config path.
      consulInjected: fc.oneof({ weight: 3, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
      consulInit: renderedConfigArb,
      // A Consul pod that asks for Dynatrace scraping, mostly where Consul and Dynatrace both inject,
      // so consul-metric-merging acts (the random annotations after it may change any of that).
      consulScrape: fc.oneof({ weight: 3, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constantFrom('dt-ns', 'dt-ns', 'dt-ns', 'mesh', 'consul-ns', 'default') }),
    })
    .map((p) => (p.consulScrape ? { ...p, namespace: p.consulScrape } : p))
    .map((p) =>
        ownMap([
          ['apiVersion', 'v1'],
          ['kind', 'Pod'],
          [
            'metadata',
            ownMap([
              ['generateName', p.generateName],
              ['namespace', p.namespace],
              ...(p.annotations || p.consulInjected || p.consulScrape
                ? [
                    [
                      'annotations',
                      ownMap([
                        ...(p.consulInjected ? ([[CONSUL_CONNECT_INJECT_STATUS, 'injected'], [CONSUL_TRANSPARENT_PROXY_STATUS, 'enabled']] as const) : []),
                        ...(p.consulScrape ? ([[CONSUL_CONNECT_INJECT, 'true'], [DT_METRICS_SCRAPE, 'true'], [DT_METRICS_PORT, '8080']] as const) : []),
                        ...(p.annotations ?? []),
                      ]),
                    ] as const,
                  ]
                : []),
              ...(p.labels ? [['labels', ownMap(p.labels)] as const] : []),
            ]),
          ],
          [
            'spec',
            {
              ...p.spec,
              initContainers: p.consulInjected
                ? [...p.spec.initContainers, { name: CONSUL_INIT_CONTAINER, image: 'hashicorp/consul-k8s-control-plane:1.6', env: [{ name: CONSUL_REDIRECT_TRAFFIC_ENV, value: p.consulInit }] }]
                : p.spec.initContainers,
              hostNetwork: p.hostNetwork,
              ...(p.restartPolicy ? { restartPolicy: p.restartPolicy } : {}),
            },
          ],
        ]),
    );
}
