/**
 * The peers' settings objects as their installers render them, shortened to the parts
 * peer-settings.ts reads and a little around them (so a parser that reads too much or too little
 * shows):
 * - Istio: `manifests/charts/istio-control/istio-discovery/templates/istiod-injector-configmap.yaml`
 *   (`values` as toPrettyJson of global/sidecarInjectorWebhook/revision/pilot.cni+env, `config` with
 *   policy, selectors, injectedAnnotations and one template) and `configmap.yaml` (`mesh`), module
 *   istio.io/istio v0.0.0-20260827124520-eed52ebb66ad, default values unless given;
 * - Consul: hashicorp/consul-k8s `charts/consul/templates/connect-inject-deployment.yaml` with
 *   `global.name: consul`, release namespace `consul` and default values unless given (the
 *   `/bin/sh -ec` script with its backslash-continued flags).
 */
import type { KubeObject } from './fake-apiserver.js';

export interface IstioInjectorOptions {
  readonly revision?: string;
  readonly policy?: string;
  /** YAML list items, indented for `config` (e.g. `- matchLabels: {app: batch}`). */
  readonly neverInjectSelector?: string;
  readonly alwaysInjectSelector?: string;
  readonly nativeSidecars?: string;
  readonly hold?: boolean;
}

const indent = (text: string, n: number) => text.split('\n').map((l) => (l ? ' '.repeat(n) + l : l)).join('\n');

export function istioInjectorConfigMap(o: IstioInjectorOptions = {}): KubeObject {
  const rev = o.revision ?? '';
  const values = {
    global: { istioNamespace: 'istio-system', proxy: { autoInject: o.policy ?? 'enabled', holdApplicationUntilProxyStarts: o.hold ?? false, statusPort: 15020 } },
    pilot: { cni: { enabled: false }, env: o.nativeSidecars === undefined ? {} : { ENABLE_NATIVE_SIDECARS: o.nativeSidecars } },
    revision: rev,
    sidecarInjectorWebhook: { enableNamespacesByDefault: false, neverInjectSelector: [], alwaysInjectSelector: [] },
  };
  const config = `# defaultTemplates defines the default template to use for pods that do not explicitly specify a template
defaultTemplates: [sidecar]
policy: ${o.policy ?? 'enabled'}
alwaysInjectSelector:
${indent(o.alwaysInjectSelector ?? '[]', 2)}
neverInjectSelector:
${indent(o.neverInjectSelector ?? '[]', 2)}
injectedAnnotations:
template: "{{ Template_Version_And_Istio_Version_Mismatched_Check_Installation }}"
templates:
  sidecar: |
    {{- define "resources"  }}
      {{- if or (isset .ObjectMeta.Annotations \`sidecar.istio.io/proxyCPU\`) }}
      {{- end }}
    {{- end }}
    spec:
      initContainers:
      - name: istio-init
`;
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: `istio-sidecar-injector${rev ? `-${rev}` : ''}`, namespace: 'istio-system', labels: { 'istio.io/rev': rev || 'default' } },
    data: { values: JSON.stringify(values, null, 2), config },
  };
}

export interface IstioMeshOptions {
  readonly enablePrometheusMerge?: boolean;
  /** More `defaultConfig` lines, indented by two (e.g. `  statusPort: 15030`). */
  readonly defaultConfig?: string;
}

export function istioMeshConfigMap(revision = '', o: IstioMeshOptions = {}): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: `istio${revision ? `-${revision}` : ''}`, namespace: 'istio-system', labels: { 'istio.io/rev': revision || 'default' } },
    data: {
      meshNetworks: 'networks: {}',
      mesh: `defaultConfig:
  discoveryAddress: istiod${revision ? `-${revision}` : ''}.istio-system.svc:15012
${o.defaultConfig ? `${o.defaultConfig}\n` : ''}defaultProviders:
  metrics:
  - prometheus
enablePrometheusMerge: ${o.enablePrometheusMerge ?? true}
rootNamespace: istio-system
trustDomain: cluster.local
`,
    },
  };
}

export interface ConsulInjectorOptions {
  readonly defaultInject?: boolean;
  readonly transparentProxy?: boolean;
  readonly allow?: readonly string[];
  readonly deny?: readonly string[];
  readonly scrapePort?: string;
  readonly scrapePath?: string;
}

export function consulInjectorDeployment(o: ConsulInjectorOptions = {}): KubeObject {
  const repeat = (flag: string, values: readonly string[]) => values.map((v) => `  -${flag}="${v}" \\\n`).join('');
  const script = `exec consul-k8s-control-plane inject-connect \\
  -config-file=/consul/config/config.json \\
  -log-level=info \\
  -log-json=false \\
  -default-inject=${o.defaultInject ?? false} \\
  -consul-image="hashicorp/consul:1.22.0" \\
  -consul-dataplane-image="hashicorp/consul-dataplane:1.9.0" \\
  -consul-k8s-image="hashicorp/consul-k8s-control-plane:1.9.0" \\
  -release-name="consul" \\
  -release-namespace="consul" \\
  -resource-prefix=consul \\
  -listen=:8080 \\
  -default-enable-transparent-proxy=${o.transparentProxy ?? true} \\
  -enable-cni=false \\
  -transparent-proxy-default-overwrite-probes=true \\
  -enable-consul-dns=true \\
  -default-enable-metrics=false \\
  -enable-gateway-metrics=true  \\
  -enable-gateway-scaling=false \\
  -default-enable-metrics-merging=false  \\
  -default-merged-metrics-port=20100 \\
  -default-prometheus-scrape-port=${o.scrapePort ?? '20200'} \\
  -default-prometheus-scrape-path="${o.scrapePath ?? '/metrics'}" \\
${repeat('allow-k8s-namespace', o.allow ?? ['*'])}${repeat('deny-k8s-namespace', o.deny ?? [])}  -tls-cert-dir=/etc/connect-injector/certs \\
  -default-sidecar-proxy-cpu-request=100m \\
  -default-sidecar-proxy-memory-request=100Mi \\
`;
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'consul-connect-injector', namespace: 'consul', labels: { app: 'consul', component: 'connect-injector' } },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: 'consul', component: 'connect-injector' } },
      template: {
        metadata: { labels: { app: 'consul', component: 'connect-injector' } },
        spec: {
          serviceAccountName: 'consul-connect-injector',
          containers: [
            {
              name: 'sidecar-injector',
              image: 'hashicorp/consul-k8s-control-plane:1.9.0',
              env: [{ name: 'CONSUL_ACL_TOKEN', value: 'not-a-real-token' }],
              command: ['/bin/sh', '-ec', script],
            },
          ],
        },
      },
    },
  };
}
