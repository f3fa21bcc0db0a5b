/**
 * What the end-to-end suite installs into the real API server: the shipped deploy/base, and the peer
 * Istio webhooks' MutatingWebhookConfiguration under its real name and selectors (Dynatrace's and
 * Consul's come with their stand-ins: peers.ts).
 *
 * deploy/base goes in unchanged through server-side apply, so the API server validates every shipped
 * manifest (a Deployment is stored although no controller runs it). The only edit is the one a
 * cluster makes differently: the webhook's clientConfig.service becomes a loopback url, with the
 * caBundle of the serving certificate. Name, rules, selectors, failurePolicy, timeoutSeconds and
 * reinvocationPolicy stay the shipped ones, so the API server orders and calls mesh-guard as it would
 * in a cluster.
 */
import fs from 'node:fs';
import path from 'node:path';
import { KubernetesObjectApi, PatchStrategy, type KubernetesObject, type KubeConfig } from '@kubernetes/client-node';
import { parseAllDocuments, parse } from 'yaml';
import { repoRoot } from '../../support/repo-root.js';

const FIELD_MANAGER = 'mesh-guard-e2e';
const DEPLOY_BASE = path.join(repoRoot, 'deploy/base');

type Obj = KubernetesObject & Record<string, unknown>;
interface WebhookEntry {
  name: string;
  clientConfig: { url?: string; service?: unknown; caBundle?: string };
  [k: string]: unknown;
}

/** Every object of deploy/base, in the kustomization's resource order. */
export function deployBaseObjects(): Obj[] {
  const kustomization = parse(fs.readFileSync(path.join(DEPLOY_BASE, 'kustomization.yaml'), 'utf8')) as { resources: string[] };
  return kustomization.resources.flatMap((file) =>
    parseAllDocuments(fs.readFileSync(path.join(DEPLOY_BASE, file), 'utf8'))
      .map((d) => d.toJS() as Obj | null)
      .filter((o): o is Obj => o !== null),
  );
}

/** The shipped MutatingWebhookConfiguration with clientConfig pointed at `url` (path kept). */
export function meshGuardWebhookConfiguration(baseUrl: string, caPem: string): Obj {
  const mwc = deployBaseObjects().find((o) => o.kind === 'MutatingWebhookConfiguration');
  if (!mwc) throw new Error('deploy/base has no MutatingWebhookConfiguration');
  for (const w of mwc.webhooks as WebhookEntry[]) {
    const service = w.clientConfig.service as { path?: string } | undefined;
    w.clientConfig = { url: `${baseUrl}${service?.path ?? '/'}`, caBundle: Buffer.from(caPem).toString('base64') };
  }
  return mwc;
}

export async function apply(kc: KubeConfig, objects: readonly KubernetesObject[]): Promise<void> {
  const api = KubernetesObjectApi.makeApiClient(kc);
  for (const o of objects) await api.patch(o, undefined, undefined, FIELD_MANAGER, true, PatchStrategy.ServerSideApply);
}

/** deploy/base through server-side apply, the webhook rewritten to `baseUrl`. */
export async function applyDeployBase(kc: KubeConfig, baseUrl: string, caPem: string): Promise<void> {
  const rest = deployBaseObjects().filter((o) => o.kind !== 'MutatingWebhookConfiguration');
  await apply(kc, [...rest, meshGuardWebhookConfiguration(baseUrl, caPem)]);
}

const podRule = { operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'] };

function mwc(name: string, webhooks: Array<Record<string, unknown>>, url: string, caPem: string): Obj {
  const caBundle = Buffer.from(caPem).toString('base64');
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: { name },
    webhooks: webhooks.map((w) => ({ sideEffects: 'None', admissionReviewVersions: ['v1'], clientConfig: { url, caBundle }, ...w })),
  };
}

/**
 * Istio's default-revision injector webhooks (../shared/research/istio.md §4; istio/istio
 * manifests/charts/istio-control/istio-discovery/templates/mutatingwebhook.yaml): failurePolicy Fail,
 * reinvocationPolicy Never (the chart's default), no timeoutSeconds. `reinvocationPolicy` can be
 * overridden for the scenario where Istio's chart is set to IfNeeded.
 */
export function istioWebhookConfiguration(baseUrl: string, caPem: string, reinvocationPolicy: 'Never' | 'IfNeeded' = 'Never'): Obj {
  const notOptedOut = { key: 'sidecar.istio.io/inject', operator: 'NotIn', values: ['false'] };
  const common = { rules: [podRule], failurePolicy: 'Fail', reinvocationPolicy };
  return mwc(
    'istio-sidecar-injector',
    [
      {
        name: 'rev.namespace.sidecar-injector.istio.io',
        namespaceSelector: { matchExpressions: [{ key: 'istio.io/rev', operator: 'In', values: ['default'] }, { key: 'istio-injection', operator: 'DoesNotExist' }] },
        objectSelector: { matchExpressions: [notOptedOut] },
        ...common,
      },
      {
        name: 'rev.object.sidecar-injector.istio.io',
        namespaceSelector: { matchExpressions: [{ key: 'istio.io/rev', operator: 'DoesNotExist' }, { key: 'istio-injection', operator: 'DoesNotExist' }] },
        objectSelector: { matchExpressions: [notOptedOut, { key: 'istio.io/rev', operator: 'In', values: ['default'] }] },
        ...common,
      },
      {
        name: 'namespace.sidecar-injector.istio.io',
        namespaceSelector: { matchExpressions: [{ key: 'istio-injection', operator: 'In', values: ['enabled'] }] },
        objectSelector: { matchExpressions: [notOptedOut] },
        ...common,
      },
      {
        name: 'object.sidecar-injector.istio.io',
        namespaceSelector: { matchExpressions: [{ key: 'istio-injection', operator: 'DoesNotExist' }, { key: 'istio.io/rev', operator: 'DoesNotExist' }] },
        objectSelector: { matchExpressions: [{ key: 'sidecar.istio.io/inject', operator: 'In', values: ['true'] }, { key: 'istio.io/rev', operator: 'DoesNotExist' }] },
        ...common,
      },
    ],
    `${baseUrl}/inject`,
    caPem,
  );
}

export async function deleteWebhookConfiguration(kc: KubeConfig, name: string): Promise<void> {
  const api = KubernetesObjectApi.makeApiClient(kc);
  try {
    await api.delete({ apiVersion: 'admissionregistration.k8s.io/v1', kind: 'MutatingWebhookConfiguration', metadata: { name } });
  } catch (err) {
    if ((err as { code?: number }).code !== 404) throw err;
  }
}

/** A peer's configuration as rendered, failing open and fast: its Service does not exist here. */
export function calledButIgnored(text: string): Record<string, unknown> {
  const mwc = parse(text) as { webhooks: Array<Record<string, unknown>> };
  for (const w of mwc.webhooks) {
    w['failurePolicy'] = 'Ignore';
    w['timeoutSeconds'] = 2;
    w['admissionReviewVersions'] = ['v1'];
    delete (w['clientConfig'] as Record<string, unknown>)['caBundle'];
  }
  return mwc;
}
