/**
 * Stand-ins for the Dynatrace and Consul webhooks, which cannot run here for real (no Dynatrace
 * tenant; the Consul control plane is not buildable from the Go module proxy). Each is an HTTPS
 * server on a free loopback port answering AdmissionReview v1 with the JSONPatch the real peer
 * would return for that pod, and each ships the MutatingWebhookConfiguration the real peer
 * installs (real name, rules, selectors, failure policy, timeout, reinvocation policy), with
 * `clientConfig.url` in place of the in-cluster Service, so the API server orders and calls it
 * as in a cluster.
 *
 *   const dt = await startDynatrace({ volumeType: 'csi' });   // or { tls: { key, cert, caPem } }
 *   const consul = await startConsul({ namespaceLabels: async (ns) => labelsOf(ns) });
 *   await admission.createMutatingWebhookConfiguration({ body: dt.webhookConfiguration() });
 *   ...
 *   dt.seen();      // V1Pod[]: every pod the API server showed the stand-in, in order
 *   dt.requests();  // the whole AdmissionReview request objects, same order
 *   dt.clear();     // forget both
 *   await dt.stop();
 *
 * `StandIn`:
 *   url                       https://127.0.0.1:<port>/<path> (Dynatrace /inject, Consul /mutate)
 *   caPem / caBundle          the CA of the serving certificate, PEM and base64 PEM (for clientConfig.caBundle)
 *   webhookConfiguration(url?, caBundle?)  V1MutatingWebhookConfiguration, defaults to the above
 *   seen(), requests(), responses(), clear(), stop()
 *
 * What each stand-in does to a pod lives beside this file: dynatrace-standin.ts and
 * consul-standin.ts (the Consul redirect config is rendered by test/support/consul.ts).
 */
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Socket } from 'node:net';
import jsonpatch from 'fast-json-patch';
import type { V1MutatingWebhook, V1MutatingWebhookConfiguration, V1Pod } from '@kubernetes/client-node';
import { DT_NAMESPACE_INSTANCE } from '../../../src/admission/annotations.js';
import { loopbackCert } from '../../support/tls.js';
import { consulMutate, type ConsulOptions } from './consul-standin.js';
import { dynatraceMutate, type DynatraceOptions } from './dynatrace-standin.js';

export { consulMutate, type ConsulOptions, type ConsulOutcome } from './consul-standin.js';
export { dynatraceMutate, DT, type DynatraceOptions } from './dynatrace-standin.js';

/** The AdmissionReview v1 request, as far as the stand-ins read it. */
export interface AdmissionRequest {
  uid: string;
  namespace?: string;
  operation?: string;
  resource?: { group: string; version: string; resource: string };
  object?: unknown;
  [k: string]: unknown;
}

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  patchType?: 'JSONPatch';
  patch?: string;
  /** AdmissionResponse.Result, whose JSON name is "status" (k8s.io/api admission/v1 types.go). */
  status?: { code: number; message: string };
}

export interface StandIn {
  readonly url: string;
  readonly caPem: string;
  readonly caBundle: string;
  /** The peer's configuration with `clientConfig.url`/`caBundle` (defaults: this stand-in's). */
  webhookConfiguration(url?: string, caBundle?: string): V1MutatingWebhookConfiguration;
  /** Every pod shown to the stand-in, in arrival order (deep copies, as received). */
  seen(): V1Pod[];
  /** Every AdmissionReview request, in arrival order. */
  requests(): AdmissionRequest[];
  /** The answer to each request, same order. */
  responses(): AdmissionResponse[];
  clear(): void;
  stop(): Promise<void>;
}

type Answer = { allowed: true; mutated?: unknown; message?: string } | { allowed: false; code: number; message: string };
type Handler = (request: AdmissionRequest) => Answer | Promise<Answer>;

/** The JSONPatch from the received object to the mutated one, as both peers make it (jsonpatch.CreatePatch). */
function respond(request: AdmissionRequest, answer: Answer): AdmissionResponse {
  if (!answer.allowed) return { uid: request.uid, allowed: false, status: { code: answer.code, message: answer.message } };
  const ops = answer.mutated === undefined ? [] : jsonpatch.compare(request.object as object, answer.mutated as object);
  const base: AdmissionResponse = { uid: request.uid, allowed: true, ...(answer.message ? { status: { code: 200, message: answer.message } } : {}) };
  return ops.length ? { ...base, patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(ops)).toString('base64') } : base;
}

/** A serving certificate for 127.0.0.1 and the CA that signed it (default: one self-signed loopback certificate). */
export interface ServingTls {
  key: string;
  cert: string;
  caPem: string;
}

async function selfSigned(): Promise<ServingTls> {
  const { key, cert } = await loopbackCert();
  return { key, cert, caPem: cert };
}

async function serve(
  path: string,
  tls: ServingTls | undefined,
  handler: Handler,
  configuration: (url: string, caBundle: string) => V1MutatingWebhookConfiguration,
): Promise<StandIn> {
  const { key, cert, caPem } = tls ?? (await selfSigned());
  const requests: AdmissionRequest[] = [];
  const responses: AdmissionResponse[] = [];
  const sockets = new Set<Socket>();
  const server = https.createServer({ key, cert }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        let review: { request?: AdmissionRequest };
        try {
          review = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { request?: AdmissionRequest };
        } catch {
          res.writeHead(400).end('not JSON');
          return;
        }
        const request = review.request;
        if (req.method !== 'POST' || !request || typeof request.uid !== 'string') {
          res.writeHead(400).end('not an AdmissionReview request');
          return;
        }
        requests.push(structuredClone(request));
        let response: AdmissionResponse;
        try {
          response = respond(request, await handler(structuredClone(request)));
        } catch (e) {
          // A stand-in bug must show up in the test, not as a silently admitted pod.
          response = { uid: request.uid, allowed: false, status: { code: 500, message: `stand-in failed: ${(e as Error).message}` } };
        }
        responses.push(response);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response }));
      })();
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}${path}`;
  const caBundle = Buffer.from(caPem).toString('base64');
  const isPod = (r: AdmissionRequest) => r.resource?.resource === 'pods' && r.object !== undefined && r.object !== null;
  return {
    url,
    caPem,
    caBundle,
    webhookConfiguration: (u = url, ca = caBundle) => configuration(u, ca),
    seen: () => requests.filter(isPod).map((r) => structuredClone(r.object as V1Pod)),
    requests: () => structuredClone(requests),
    responses: () => structuredClone(responses),
    clear: () => {
      requests.length = 0;
      responses.length = 0;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}

const podRule = (scope?: 'Namespaced'): V1MutatingWebhook['rules'] => [
  { apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'], ...(scope ? { scope } : {}) },
];

export interface DynatraceStandInOptions extends DynatraceOptions {
  /** Serve with this certificate (e.g. one the test control plane's CA issued). */
  tls?: ServingTls;
  /**
   * Also register the namespace webhook `webhook.ns.dynatrace.com` (path /label-ns), which in a
   * cluster labels namespaces from the DynaKube's selector. Off by default: tests label their
   * namespaces themselves, and the stand-in answers it with an unchanged admit.
   */
  namespaceWebhook?: boolean;
  /** webhook.mutatingWebhook.failurePolicy (Ignore) and timeoutSeconds (10). */
  failurePolicy?: 'Ignore' | 'Fail';
  timeoutSeconds?: number;
}

/**
 * Dynatrace's configuration as the Helm chart renders it
 * (config/helm/chart/default/templates/Common/webhook/mutatingwebhookconfiguration.yaml, values
 * webhook.mutatingWebhook.*): one MWC `dynatrace-webhook`; the pod webhook sees only
 * namespaces the operator labelled `dynakube.internal.dynatrace.com/instance`.
 */
export function dynatraceWebhookConfiguration(url: string, caBundle: string, o: DynatraceStandInOptions = {}): V1MutatingWebhookConfiguration {
  const common = () => ({
    reinvocationPolicy: 'IfNeeded',
    failurePolicy: o.failurePolicy ?? 'Ignore',
    timeoutSeconds: o.timeoutSeconds ?? 10,
    admissionReviewVersions: ['v1'],
    sideEffects: 'None',
  });
  const pod: V1MutatingWebhook = {
    name: 'webhook.pod.dynatrace.com',
    ...common(),
    rules: podRule('Namespaced'),
    namespaceSelector: { matchExpressions: [{ key: DT_NAMESPACE_INSTANCE, operator: 'Exists' }] },
    clientConfig: { url, caBundle },
  };
  const ns: V1MutatingWebhook = {
    name: 'webhook.ns.dynatrace.com',
    ...common(),
    rules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE', 'UPDATE'], resources: ['namespaces'], scope: 'Cluster' }],
    clientConfig: { url: url.replace(/\/inject$/, '/label-ns'), caBundle },
  };
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: { name: 'dynatrace-webhook', labels: { 'app.kubernetes.io/name': 'dynatrace-operator', 'app.kubernetes.io/component': 'webhook' } },
    webhooks: o.namespaceWebhook ? [pod, ns] : [pod],
  };
}

export function startDynatrace(opts: DynatraceStandInOptions = {}): Promise<StandIn> {
  return serve(
    '/inject',
    opts.tls,
    (request) => {
      if (request.resource?.resource !== 'pods') return { allowed: true };
      // webhook.go Handle: every outcome is allowed; an empty patch when nothing is to be done.
      const mutated = dynatraceMutate(request.object as V1Pod, opts);
      return mutated === undefined ? { allowed: true } : { allowed: true, mutated };
    },
    (url, ca) => dynatraceWebhookConfiguration(url, ca, opts),
  );
}

export interface ConsulStandInOptions extends ConsulOptions {
  /** Serve with this certificate (e.g. one the test control plane's CA issued). */
  tls?: ServingTls;
  /**
   * The namespace's labels, which the real webhook GETs for `consul.hashicorp.com/transparent-proxy`
   * (mesh_webhook.go Handle). Default: no labels.
   */
  namespaceLabels?: (namespace: string) => Record<string, string> | Promise<Record<string, string>>;
  /** connectInject.failurePolicy (Fail). */
  failurePolicy?: 'Ignore' | 'Fail';
  /** connectInject.namespaceSelector (the chart default below). */
  namespaceSelector?: V1MutatingWebhook['namespaceSelector'];
  /** consul.fullname: `<release>-consul` by default, so `consul-consul` for release "consul". */
  fullname?: string;
}

/** charts/consul/values.yaml connectInject.namespaceSelector. */
export const CONSUL_DEFAULT_NAMESPACE_SELECTOR: NonNullable<V1MutatingWebhook['namespaceSelector']> = {
  matchExpressions: [
    { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-system', 'local-path-storage', 'openebs', 'gmp-system', 'gke-managed-cim'] },
    { key: 'openshift.io/cluster-monitoring', operator: 'DoesNotExist' },
  ],
};

/**
 * Consul's pod webhook as charts/consul/templates/connect-inject-mutatingwebhookconfiguration.yaml
 * renders it: MWC `<fullname>-connect-injector`, webhook `<fullname>-connect-injector.consul.hashicorp.com`,
 * objectSelector `app NotIn [consul]`, no reinvocationPolicy (Never) and no timeoutSeconds (10 s
 * default). The same MWC holds the CRD mutators (proxydefaults, mesh, ...); they are left out
 * because the test cluster has no Consul CRDs for them to match.
 */
export function consulWebhookConfiguration(url: string, caBundle: string, o: ConsulStandInOptions = {}): V1MutatingWebhookConfiguration {
  const fullname = o.fullname ?? 'consul-consul';
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: { name: `${fullname}-connect-injector`, labels: { app: 'consul', component: 'connect-injector', release: 'consul' } },
    webhooks: [
      {
        name: `${fullname}-connect-injector.consul.hashicorp.com`,
        objectSelector: { matchExpressions: [{ key: 'app', operator: 'NotIn', values: ['consul'] }] },
        failurePolicy: o.failurePolicy ?? 'Fail',
        sideEffects: 'None',
        admissionReviewVersions: ['v1beta1', 'v1'],
        clientConfig: { url, caBundle },
        rules: podRule(),
        namespaceSelector: o.namespaceSelector ?? CONSUL_DEFAULT_NAMESPACE_SELECTOR,
      },
    ],
  };
}

export function startConsul(opts: ConsulStandInOptions = {}): Promise<StandIn> {
  return serve(
    '/mutate',
    opts.tls,
    async (request) => {
      const namespace = request.namespace ?? '';
      const labels = (await opts.namespaceLabels?.(namespace)) ?? {};
      const outcome = consulMutate(request.object as V1Pod, namespace, labels, opts);
      // admission.Patched / admission.Allowed / admission.Errored(500, …): an error denies the pod.
      if (outcome.kind === 'error') return { allowed: false, code: 500, message: outcome.message };
      if (outcome.kind === 'skipped') return { allowed: true, message: outcome.message };
      return { allowed: true, mutated: outcome.pod, message: 'valid Pod request' };
    },
    (url, ca) => consulWebhookConfiguration(url, ca, opts),
  );
}
