/**
 * The cluster `mesh-guard audit` is tried on (test/e2e/cli.e2e.ts creates it in a real API server):
 * an Istio CNI node agent that OneAgent got into, a Dynatrace CSI driver with an Istio sidecar, a
 * meshed pod whose Dynatrace scrape hits the app port, one that scrapes the merged endpoint (fine),
 * a Consul transparent-proxy pod with OneAgent rendered without the ActiveGate exclusions, a plain
 * pod, and the ActiveGate Service. The unit tests of the audit's pure parts reuse some pods.
 */
import type { V1Pod, V1Service } from '@kubernetes/client-node';

export const owner = (kind: string, name: string) => [{ apiVersion: 'apps/v1', kind, name, uid: `${name}-uid`, controller: true }];
const ISTIO_STATUS = '{"initContainers":["istio-init"],"containers":["istio-proxy"],"volumes":["istio-envoy"],"imagePullSecrets":null,"revision":"default"}';
const istioProxy = { name: 'istio-proxy', image: 'docker.io/istio/proxyv2:1.27.1', ports: [{ containerPort: 15090, name: 'http-envoy-prom' }] };
export const oneAgentInit = { name: 'dynatrace-operator', image: 'public.ecr.aws/dynatrace/dynatrace-operator:v1.7.0', args: ['bootstrap'] };
const oneAgentVolume = { name: 'oneagent-bin', csi: { driver: 'csi.oneagent.dynatrace.com', readOnly: true } };

/** ClusterIP of the ActiveGate Service (inside the e2e control plane's service range). */
export const ACTIVEGATE_IP = '10.0.0.7';

/** Consul transparent proxy with OneAgent, rendered without the ActiveGate exclusions. */
export const ledgerPod: V1Pod = {
  metadata: {
    name: 'ledger-0',
    namespace: 'payments',
    labels: { app: 'ledger', 'consul.hashicorp.com/connect-inject-status': 'injected' },
    annotations: {
      'consul.hashicorp.com/connect-inject': 'true',
      'consul.hashicorp.com/connect-inject-status': 'injected',
      'consul.hashicorp.com/transparent-proxy-status': 'enabled',
      'oneagent.dynatrace.com/injected': 'true',
    },
    ownerReferences: owner('StatefulSet', 'ledger'),
  },
  spec: {
    initContainers: [
      oneAgentInit,
      {
        name: 'consul-connect-inject-init',
        image: 'hashicorp/consul-k8s-control-plane:1.6.0',
        env: [{ name: 'CONSUL_REDIRECT_TRAFFIC_CONFIG', value: '{"ConsulDNSIP":"","ProxyUserID":"5995","ProxyInboundPort":20000,"ProxyOutboundPort":15001,"ExcludeInboundPorts":null,"ExcludeOutboundPorts":["8200"],"ExcludeOutboundCIDRs":null,"ExcludeUIDs":["5996"],"NetNS":""}' }],
      },
    ],
    containers: [{ name: 'ledger', image: 'registry.example.com/ledger:2' }, { name: 'consul-dataplane', image: 'hashicorp/consul-dataplane:1.6.0' }],
    volumes: [oneAgentVolume],
  },
};

/** Namespaces of the audited cluster and their labels. */
export const AUDIT_NAMESPACES: Readonly<Record<string, Record<string, string>>> = {
  'kube-system': {},
  dynatrace: {},
  default: {},
  shop: { 'istio-injection': 'enabled', 'dynakube.internal.dynatrace.com/instance': 'dynakube' },
  payments: { 'dynakube.internal.dynatrace.com/instance': 'dynakube' },
};

export const AUDIT_PODS: readonly V1Pod[] = [
  // An Istio CNI node agent that OneAgent got into: the deadlock in place.
  {
    metadata: {
      name: 'istio-cni-node-7xkqp',
      namespace: 'kube-system',
      labels: { 'k8s-app': 'istio-cni-node', 'sidecar.istio.io/inject': 'false' },
      annotations: { 'oneagent.dynatrace.com/injected': 'true', 'dynakube.dynatrace.com/injected': 'true', 'prometheus.io/scrape': 'true', 'prometheus.io/port': '15014' },
      ownerReferences: owner('DaemonSet', 'istio-cni-node'),
    },
    spec: {
      initContainers: [oneAgentInit],
      containers: [{ name: 'install-cni', image: 'registry.istio.io/release/install-cni:1.27.1' }],
      volumes: [oneAgentVolume],
    },
  },
  // Dynatrace CSI driver with an Istio sidecar.
  {
    metadata: {
      name: 'dynatrace-oneagent-csi-driver-q2w8r',
      namespace: 'dynatrace',
      labels: { 'internal.oneagent.dynatrace.com/component': 'csi-driver', 'app.kubernetes.io/name': 'dynatrace-operator', 'app.kubernetes.io/component': 'csi-driver' },
      annotations: { 'dynatrace.com/inject': 'false', 'sidecar.istio.io/status': ISTIO_STATUS },
      ownerReferences: owner('DaemonSet', 'dynatrace-oneagent-csi-driver'),
    },
    spec: { containers: [{ name: 'server', image: 'public.ecr.aws/dynatrace/dynatrace-operator:v1.7.0' }, istioProxy] },
  },
  // A meshed pod where Dynatrace scrapes the app port directly.
  {
    metadata: {
      name: 'web-7d9f8c6b5-x2x9z',
      namespace: 'shop',
      labels: { app: 'web', 'security.istio.io/tlsMode': 'istio' },
      annotations: {
        'sidecar.istio.io/status': ISTIO_STATUS,
        'metrics.dynatrace.com/scrape': 'true',
        'metrics.dynatrace.com/port': '8080',
        'prometheus.io/scrape': 'true',
        'prometheus.io/port': '15020',
        'prometheus.io/path': '/stats/prometheus',
        'oneagent.dynatrace.com/injected': 'true',
      },
      ownerReferences: owner('ReplicaSet', 'web-7d9f8c6b5'),
    },
    spec: {
      initContainers: [{ name: 'istio-init', image: 'docker.io/istio/proxyv2:1.27.1' }, oneAgentInit],
      containers: [{ name: 'web', image: 'registry.example.com/web:1.4.2', ports: [{ containerPort: 8080 }] }, istioProxy],
      volumes: [oneAgentVolume],
    },
  },
  // A meshed pod that scrapes the merged endpoint: fine.
  {
    metadata: {
      name: 'api-5c4b3a2-abcde',
      namespace: 'shop',
      labels: { app: 'api' },
      annotations: {
        'sidecar.istio.io/status': ISTIO_STATUS,
        'metrics.dynatrace.com/scrape': 'true',
        'metrics.dynatrace.com/port': '15020',
        'metrics.dynatrace.com/path': '/stats/prometheus',
      },
      ownerReferences: owner('ReplicaSet', 'api-5c4b3a2'),
    },
    spec: { containers: [{ name: 'api', image: 'registry.example.com/api:2', ports: [{ containerPort: 9090 }] }, istioProxy] },
  },
  ledgerPod,
  // Nothing to say about this one.
  { metadata: { name: 'plain', namespace: 'default' }, spec: { containers: [{ name: 'c', image: 'busybox' }] } },
];

export const ACTIVEGATE_SERVICE: V1Service = {
  metadata: { name: 'dynakube-activegate', namespace: 'dynatrace', labels: { 'app.kubernetes.io/component': 'activegate', 'app.kubernetes.io/name': 'dynatrace-operator' } },
  spec: { clusterIP: ACTIVEGATE_IP, clusterIPs: [ACTIVEGATE_IP], ports: [{ name: 'https', port: 443, targetPort: 'https' }] },
};
