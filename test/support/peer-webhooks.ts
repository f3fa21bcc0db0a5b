/**
 * The peers' MutatingWebhookConfigurations as their installers render them with default values,
 * as YAML text (tests parse them, or edit the text for a variant):
 * - Istio: istio `manifests/charts/istio-control/istio-discovery/templates/mutatingwebhook.yaml`
 *   (default revision, and revision `canary`, both installed in istio-system) and
 *   `revision-tags-mwc.yaml` (tag `stable` of revision canary), module istio.io/istio
 *   v0.0.0-20260827124520-eed52ebb66ad;
 * - Consul: hashicorp/consul-k8s `charts/consul/templates/connect-inject-mutatingwebhookconfiguration.yaml`
 *   with `global.name: consul` and the chart's default `connectInject.namespaceSelector` (values.yaml),
 *   one of its CRD webhooks kept to show that those are not the pod webhook;
 * - Dynatrace: Dynatrace/dynatrace-operator `config/helm/chart/default/templates/Common/webhook/
 *   mutatingwebhookconfiguration.yaml`, and the OLM form (research dynatrace.md §2).
 */
import { parse } from 'yaml';
import type { KubeObject } from './fake-apiserver.js';

const ISTIO_RULES = `
  rules:
  - operations: [ "CREATE" ]
    apiGroups: [""]
    apiVersions: ["v1"]
    resources: ["pods"]
  failurePolicy: Fail
  reinvocationPolicy: "Never"
  admissionReviewVersions: ["v1"]
  sideEffects: None`;

const istioClient = (rev: string) => `
  clientConfig:
    service:
      name: istiod${rev ? `-${rev}` : ''}
      namespace: "istio-system"
      path: "/inject"
      port: 443
    caBundle: "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t"`;

/** The rev.namespace and rev.object webhooks for a revision or tag (`value` is "default" for the default revision). */
function istioRevWebhooks(rev: string, value: string): string {
  return `
- name: rev.namespace.sidecar-injector.istio.io${istioClient(rev)}${ISTIO_RULES}
  namespaceSelector:
    matchExpressions:
    - key: istio.io/rev
      operator: In
      values:
      - "${value}"
    - key: istio-injection
      operator: DoesNotExist
  objectSelector:
    matchExpressions:
    - key: sidecar.istio.io/inject
      operator: NotIn
      values:
      - "false"
- name: rev.object.sidecar-injector.istio.io${istioClient(rev)}${ISTIO_RULES}
  namespaceSelector:
    matchExpressions:
    - key: istio.io/rev
      operator: DoesNotExist
    - key: istio-injection
      operator: DoesNotExist
  objectSelector:
    matchExpressions:
    - key: sidecar.istio.io/inject
      operator: NotIn
      values:
      - "false"
    - key: istio.io/rev
      operator: In
      values:
      - "${value}"`;
}

export const ISTIO_LEGACY_WEBHOOKS = `
- name: namespace.sidecar-injector.istio.io${istioClient('')}${ISTIO_RULES}
  namespaceSelector:
    matchExpressions:
    - key: istio-injection
      operator: In
      values:
      - enabled
  objectSelector:
    matchExpressions:
    - key: sidecar.istio.io/inject
      operator: NotIn
      values:
      - "false"
- name: object.sidecar-injector.istio.io${istioClient('')}${ISTIO_RULES}
  namespaceSelector:
    matchExpressions:
    - key: istio-injection
      operator: DoesNotExist
    - key: istio.io/rev
      operator: DoesNotExist
  objectSelector:
    matchExpressions:
    - key: sidecar.istio.io/inject
      operator: In
      values:
      - "true"
    - key: istio.io/rev
      operator: DoesNotExist`;

export const mwc = (name: string, webhooks: string): string => `
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: ${name}
  labels:
    app: sidecar-injector
webhooks:${webhooks}`;

export const ISTIO_DEFAULT = mwc('istio-sidecar-injector', istioRevWebhooks('', 'default') + ISTIO_LEGACY_WEBHOOKS);
export const ISTIO_CANARY = mwc('istio-sidecar-injector-canary', istioRevWebhooks('canary', 'canary'));
export const ISTIO_TAG_STABLE = mwc('istio-revision-tag-stable', istioRevWebhooks('canary', 'stable'));

/** consul-k8s chart, global.name=consul: one CRD webhook of many, then the pod webhook. */
export const CONSUL = `
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: consul-connect-injector
  labels:
    app: consul
    component: connect-injector
webhooks:
- clientConfig:
    service:
      name: consul-connect-injector
      namespace: consul
      path: /mutate-v1alpha1-proxydefaults
  failurePolicy: Fail
  admissionReviewVersions:
  - "v1beta1"
  - "v1"
  name: mutate-proxydefaults.consul.hashicorp.com
  rules:
  - apiGroups:
    - consul.hashicorp.com
    apiVersions:
    - v1alpha1
    operations:
    - CREATE
    - UPDATE
    resources:
    - proxydefaults
  sideEffects: None
- name: consul-connect-injector.consul.hashicorp.com
  objectSelector:
    matchExpressions:
    - key: app
      operator: NotIn
      values: [ consul ]
  failurePolicy: Fail
  sideEffects: None
  admissionReviewVersions:
  - "v1beta1"
  - "v1"
  clientConfig:
    service:
      name: consul-connect-injector
      namespace: consul
      path: "/mutate"
  rules:
  - operations: [ "CREATE" ]
    apiGroups: [ "" ]
    apiVersions: [ "v1" ]
    resources: [ "pods" ]
  namespaceSelector:
      matchExpressions:
        - key: "kubernetes.io/metadata.name"
          operator: "NotIn"
          values: ["kube-system","local-path-storage","openebs","gmp-system","gke-managed-cim"]
        - key: "openshift.io/cluster-monitoring"
          operator: "DoesNotExist"
`;

const dynatrace = (name: string, podNamespaceSelector: string) => `
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: ${name}
webhooks:
- name: webhook.pod.dynatrace.com
  reinvocationPolicy: IfNeeded
  rules:
  - apiGroups: [""]
    apiVersions: ["v1"]
    operations: ["CREATE"]
    resources: ["pods"]
    scope: Namespaced
${podNamespaceSelector}
  clientConfig:
    service:
      name: dynatrace-webhook
      namespace: dynatrace
      path: /inject
  admissionReviewVersions: ["v1"]
  sideEffects: None
  failurePolicy: Ignore
  timeoutSeconds: 10
- name: webhook.ns.dynatrace.com
  reinvocationPolicy: IfNeeded
  rules:
  - apiGroups: [""]
    apiVersions: ["v1"]
    operations: ["CREATE", "UPDATE"]
    resources: ["namespaces"]
    scope: Cluster
  clientConfig:
    service:
      name: dynatrace-webhook
      namespace: dynatrace
      path: /label-ns
  admissionReviewVersions: ["v1"]
  sideEffects: None
  failurePolicy: Ignore
  timeoutSeconds: 10
`;
export const DYNATRACE_HELM = dynatrace(
  'dynatrace-webhook',
  `  namespaceSelector:
    matchExpressions:
    - key: dynakube.internal.dynatrace.com/instance
      operator: Exists`,
);
/** OLM replaces the namespaceSelector with the OperatorGroup's, empty for AllNamespaces. */
export const DYNATRACE_OLM = dynatrace('webhook.pod.dynatrace.com-7x4kq', '  namespaceSelector: {}');

/** Consul's configuration with a namespaceSelector that skips `kube-system` and the given namespaces. */
export function consulSkipping(...namespaces: string[]): string {
  const values = ['kube-system', ...namespaces].map((n) => JSON.stringify(n)).join(',');
  return CONSUL.replace('values: ["kube-system","local-path-storage","openebs","gmp-system","gke-managed-cim"]', `values: [${values}]`);
}

/** A configuration as an object for the in-test API server. */
export function configurationObject(text: string): KubeObject {
  return parse(text) as KubeObject;
}
