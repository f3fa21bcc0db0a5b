/**
 * Renders every kustomization under deploy/ and checks the invariants that decide whether
 * mesh-guard works and whether it can hurt the cluster: webhook ordering, fail-open, the
 * namespace exclusion, the pod's security context and probes, the PDB, RBAC, and that the
 * config file in the ConfigMap is accepted by the real config parser.
 *
 * Rendering uses `kubectl kustomize` when kubectl is installed, and always also a small
 * in-test renderer for the subset of kustomize the manifests use (resources, components,
 * patches); when both are available the two outputs must be identical, so the fallback is
 * checked wherever kubectl exists. Objects are validated against the Kubernetes schemas with
 * kubernetes-models (types, required fields, enums) plus a strict unknown-field check built
 * from @kubernetes/client-node's generated model metadata (kubectl's --validate=strict needs a
 * cluster).
 */
import fs from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import { defaultConfig } from '../src/config/schema.js';
import { models, unknownFields } from './support/k8s-schema.js';
import { deployDir, key, kubectl, render, renderDir, renderMini, repoRoot, sorted, type Obj } from './support/kustomize.js';
import { parseSelector, selectorMatches as matches } from '../src/cluster/selectors.js';

const KUSTOMIZATIONS = ['base', 'overlays/dry-run', 'overlays/cert-manager', 'overlays/cert-manager-dry-run'];
const DRY_RUN = new Set(['overlays/dry-run', 'overlays/cert-manager-dry-run']);
const CERT_MANAGER = new Set(['overlays/cert-manager', 'overlays/cert-manager-dry-run']);

function one(objs: Obj[], kind: string, name?: string): Obj {
  const found = objs.filter((o) => o.kind === kind && (name === undefined || o.metadata?.name === name));
  expect(found, `${kind}${name ? '/' + name : ''}`).toHaveLength(1);
  return found[0]!;
}

// ---------------------------------------------------------------------------------------------
// Schema validation.

import * as coreV1 from 'kubernetes-models/v1';
import * as appsV1 from 'kubernetes-models/apps/v1';
import * as policyV1 from 'kubernetes-models/policy/v1';
import * as rbacV1 from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import * as admissionV1 from 'kubernetes-models/admissionregistration.k8s.io/v1';
import * as certManagerV1 from '@kubernetes-models/cert-manager/cert-manager.io/v1';

const MODELS: Record<string, Record<string, unknown>> = {
  v1: coreV1,
  'apps/v1': appsV1,
  'policy/v1': policyV1,
  'rbac.authorization.k8s.io/v1': rbacV1,
  'admissionregistration.k8s.io/v1': admissionV1,
  'cert-manager.io/v1': certManagerV1,
};

function validateModel(o: Obj): void {
  const Model = MODELS[o.apiVersion]?.[o.kind] as (new (x: Obj) => { validate(): void }) | undefined;
  if (!Model) throw new Error(`no schema model for ${o.apiVersion} ${o.kind}`);
  new Model(o).validate();
}

// ---------------------------------------------------------------------------------------------
// Label selector evaluation, with mesh-guard's own implementation (src/cluster/selectors.ts). An absent
// selector is the empty one, as the API server defaults a webhook's namespaceSelector/objectSelector.

function selectorMatches(sel: Obj | undefined, labels: Record<string, string>): boolean {
  const parsed = parseSelector(sel ?? {});
  if (!parsed.ok) throw new Error(`invalid selector: ${parsed.error}`);
  return matches(parsed, labels);
}

const byteLess = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b)) < 0;

/** The configurations mesh-guard must precede (research: dynatrace.md §2, istio.md §4, consul.md §4). */
const MUST_PRECEDE = [
  'dynatrace-webhook',
  'webhook.pod.dynatrace.com-7x4kq',
  'webhook.ns.dynatrace.com-abcde',
  'istio-sidecar-injector',
  'istio-sidecar-injector-1-24-2',
  'istio-sidecar-injector-canary',
  'istio-sidecar-injector-istio-system-2',
  'istio-revision-tag-default',
  'istio-revision-tag-stable',
  'istio-revision-tag-default-istio-system',
  'consul-connect-injector',
  'consul-consul-connect-injector',
  'mesh-consul-connect-injector',
  'a-consul-connect-injector',
  '1-consul-connect-injector',
  '00-consul-connect-injector',
  '0a-consul-connect-injector',
  '0-z-consul-connect-injector',
];

// ---------------------------------------------------------------------------------------------

describe.each(KUSTOMIZATIONS)('deploy/%s', (rel) => {
  it('renders, and the in-test renderer agrees with kubectl kustomize when kubectl exists', () => {
    const mini = renderMini(path.join(deployDir, rel));
    expect(mini.length).toBeGreaterThan(0);
    if (kubectl) expect(sorted(mini)).toEqual(sorted(render(rel)));
  });

  it('validates every object against the Kubernetes schemas, with no unknown fields', () => {
    const objs = render(rel);
    for (const o of objs) {
      expect(() => validateModel(o), key(o)).not.toThrow();
      if (o.apiVersion !== 'cert-manager.io/v1') {
        const root = `V1${o.kind}`;
        expect(models[root]?.attributeTypeMap, `model for ${root}`).toBeDefined();
        expect(unknownFields(o, root, key(o), []), key(o)).toEqual([]);
      }
    }
    // Each object once; everything except cluster-scoped kinds lives in mesh-guard.
    expect(new Set(objs.map(key)).size).toBe(objs.length);
    const clusterScoped = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'MutatingWebhookConfiguration']);
    for (const o of objs) {
      if (clusterScoped.has(o.kind)) expect(o.metadata.namespace, key(o)).toBeUndefined();
      else expect(o.metadata.namespace, key(o)).toBe('mesh-guard');
    }
  });

  it('orders the webhook configuration before Dynatrace, Istio and Consul, and fails open', () => {
    const objs = render(rel);
    const mwcs = objs.filter((o) => o.kind === 'MutatingWebhookConfiguration');
    expect(mwcs).toHaveLength(1);
    const mwc = mwcs[0]!;
    for (const other of MUST_PRECEDE) expect(byteLess(mwc.metadata.name, other), `${mwc.metadata.name} < ${other}`).toBe(true);
    // Any Consul Helm release whose name does not start with "0-" sorts after us.
    for (const c of 'abcdefghijklmnopqrstuvwxyz0123456789') {
      for (const release of [c, `${c}0`, `${c}a`, `${c}-${c}`]) {
        if (release.startsWith('0-')) continue;
        if (release === '0') continue; // documented exception: "0-consul-connect-injector"
        expect(byteLess(mwc.metadata.name, `${release}-consul-connect-injector`), release).toBe(true);
      }
    }
    expect(byteLess(mwc.metadata.name, '0-consul-connect-injector')).toBe(false); // the documented exception

    const svc = one(objs, 'Service', 'mesh-guard');
    expect(mwc.webhooks).toHaveLength(1);
    for (const w of mwc.webhooks as Obj[]) {
      expect(w.failurePolicy).toBe('Ignore');
      expect(w.sideEffects).toBe('None');
      expect(w.admissionReviewVersions).toEqual(['v1']);
      expect(w.timeoutSeconds).toBeGreaterThanOrEqual(2);
      expect(w.timeoutSeconds).toBeLessThanOrEqual(3);
      expect(w.reinvocationPolicy).toBe('IfNeeded');
      expect(w.rules).toEqual([
        { operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], scope: 'Namespaced' },
      ]);
      expect(w.objectSelector).toBeUndefined();
      expect(w.clientConfig.url).toBeUndefined();
      expect(w.clientConfig.service).toEqual({
        name: svc.metadata.name,
        namespace: svc.metadata.namespace,
        path: '/mutate',
        port: 443,
      });
      // Own namespace excluded; kube-system (Istio CNI on GKE/OpenShift) and everything else included.
      const ns = (name: string) => ({ 'kubernetes.io/metadata.name': name });
      expect(selectorMatches(w.namespaceSelector, ns('mesh-guard'))).toBe(false);
      for (const name of ['kube-system', 'istio-system', 'default', 'dynatrace', 'consul', 'mesh-guard-2', 'calico-system']) {
        expect(selectorMatches(w.namespaceSelector, { ...ns(name), 'istio-injection': 'enabled' }), name).toBe(true);
      }
    }
  });

  it('runs two hardened, probed, spread replicas with a PDB, mounting the certificate and config', () => {
    const objs = render(rel);
    const dep = one(objs, 'Deployment', 'mesh-guard');
    const spec = dep.spec;
    const pod = spec.template.spec;
    const podLabels: Record<string, string> = spec.template.metadata.labels;
    const podAnnotations: Record<string, string> = spec.template.metadata.annotations;
    expect(spec.replicas).toBeGreaterThanOrEqual(2);
    expect(selectorMatches(spec.selector, podLabels)).toBe(true);

    // Spread across nodes.
    const spreadsOnHost =
      (pod.topologySpreadConstraints ?? []).some(
        (t: Obj) => t.topologyKey === 'kubernetes.io/hostname' && selectorMatches(t.labelSelector, podLabels),
      ) ||
      (pod.affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? []).some(
        (t: Obj) => t.podAffinityTerm.topologyKey === 'kubernetes.io/hostname',
      );
    expect(spreadsOnHost).toBe(true);
    expect(spec.strategy.rollingUpdate.maxUnavailable).toBe(0);

    const pdb = one(objs, 'PodDisruptionBudget');
    expect(pdb.spec.minAvailable).toBe(1);
    expect(selectorMatches(pdb.spec.selector, podLabels)).toBe(true);
    const svc = one(objs, 'Service', 'mesh-guard');
    expect(selectorMatches({ matchLabels: svc.spec.selector }, podLabels)).toBe(true);

    // Opt-outs: Istio (label), Consul and Dynatrace (annotations), exactly as their webhooks read them.
    expect(podLabels['sidecar.istio.io/inject']).toBe('false');
    expect(podAnnotations['consul.hashicorp.com/connect-inject']).toBe('false');
    expect(podAnnotations['dynatrace.com/inject']).toBe('false');
    const ns = one(objs, 'Namespace', 'mesh-guard');
    expect(ns.metadata.labels['istio-injection']).toBe('disabled');
    expect(ns.metadata.labels['pod-security.kubernetes.io/enforce']).toBe('restricted');
    expect(Object.keys(ns.metadata.labels).some((k) => k.includes('dynatrace'))).toBe(false);

    // Restricted security context.
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
    expect(pod.securityContext.seccompProfile).toEqual({ type: 'RuntimeDefault' });
    expect(pod.hostNetwork ?? false).toBe(false);
    expect(pod.containers).toHaveLength(1);
    expect(pod.initContainers).toBeUndefined();
    const c = pod.containers[0];
    expect(c.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(c.securityContext.capabilities.add).toBeUndefined();
    expect(c.resources.requests.cpu).toBeDefined();
    expect(c.resources.requests.memory).toBeDefined();
    expect(c.resources.limits.memory).toBeDefined();

    // Probes over HTTPS on the serving port.
    const port = (c.ports as Obj[]).find((p) => p.name === 'https');
    expect(port?.containerPort).toBe(8443);
    expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'https', scheme: 'HTTPS' });
    expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'https', scheme: 'HTTPS' });

    // The config the container will actually run with: the ConfigMap file plus the env overrides.
    const env: Record<string, string> = Object.fromEntries((c.env as Obj[]).map((e) => [e.name, e.value]));
    const mountFor = (file: string) =>
      (c.volumeMounts as Obj[]).find((m) => file.startsWith(m.mountPath.replace(/\/?$/, '/')));
    const configMount = mountFor(env.CONFIG_FILE!);
    expect(configMount).toBeDefined();
    const configVolume = (pod.volumes as Obj[]).find((v) => v.name === configMount!.name)!;
    const cm = one(objs, 'ConfigMap', configVolume.configMap.name);
    const fileName = path.posix.relative(configMount!.mountPath, env.CONFIG_FILE!);
    const config = parseConfig(cm.data[fileName], env, 'configmap');
    expect(config.server.port).toBe(8443);
    expect(config.dryRun).toBe(DRY_RUN.has(rel));

    // Certificate files come from the Secret, mounted as a directory (no subPath: kubelet's
    // atomic updates only reach directory mounts), so the server writes nothing to disk.
    expect(config.server.tls.certFile).not.toBe('');
    expect(config.server.tls.keyFile).not.toBe('');
    const tlsMount = mountFor(config.server.tls.certFile)!;
    expect(tlsMount).toBeDefined();
    expect(tlsMount.subPath).toBeUndefined();
    expect(mountFor(config.server.tls.keyFile)).toBe(tlsMount);
    const tlsVolume = (pod.volumes as Obj[]).find((v) => v.name === tlsMount.name)!;
    expect(tlsVolume.secret.secretName).toBe('mesh-guard-tls');
    expect(path.posix.basename(config.server.tls.certFile)).toBe('tls.crt');
    expect(path.posix.basename(config.server.tls.keyFile)).toBe('tls.key');
    expect(tlsVolume.secret.defaultMode & 0o007).toBe(0); // not world-readable
    expect(pod.securityContext.fsGroup).toBeDefined(); // ...but readable by the non-root group

    // Termination grace covers the server's drain delay plus its in-flight timeout.
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(
      config.server.shutdownDelayMs + config.server.shutdownTimeoutMs,
    );
    // The readiness probe notices a draining pod well within the drain delay.
    expect(c.readinessProbe.periodSeconds * 1000).toBeLessThan(config.server.shutdownDelayMs + 1);

    const sa = one(objs, 'ServiceAccount', pod.serviceAccountName);
    expect(sa.metadata.namespace).toBe(dep.metadata.namespace);
  });

  it('grants only get/list/watch on namespaces, services and mutating webhook configurations, and list/watch on the named settings objects', () => {
    const objs = render(rel);
    const roles = objs.filter((o) => o.kind === 'ClusterRole' || o.kind === 'Role');
    expect(roles).toHaveLength(1);
    expect(roles[0]!.rules).toEqual([
      { apiGroups: [''], resources: ['namespaces', 'services'], verbs: ['get', 'list', 'watch'] },
      { apiGroups: ['admissionregistration.k8s.io'], resources: ['mutatingwebhookconfigurations'], verbs: ['get', 'list', 'watch'] },
      { apiGroups: [''], resources: ['configmaps'], resourceNames: ['istio-sidecar-injector', 'istio'], verbs: ['list', 'watch'] },
      { apiGroups: ['apps'], resources: ['deployments'], resourceNames: ['consul-connect-injector'], verbs: ['list', 'watch'] },
    ]);
    // Nothing that can read Secrets, and no settings read without a name.
    for (const rule of roles[0]!.rules as { resources: string[]; resourceNames?: string[] }[]) {
      expect(rule.resources).not.toContain('secrets');
      if (rule.resources.includes('configmaps') || rule.resources.includes('deployments')) expect(rule.resourceNames?.length).toBeGreaterThan(0);
    }
    const bindings = objs.filter((o) => o.kind === 'ClusterRoleBinding' || o.kind === 'RoleBinding');
    expect(bindings).toHaveLength(1);
    expect(bindings[0]!.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: roles[0]!.metadata.name });
    const dep = one(objs, 'Deployment', 'mesh-guard');
    expect(bindings[0]!.subjects).toEqual([
      { kind: 'ServiceAccount', name: dep.spec.template.spec.serviceAccountName, namespace: 'mesh-guard' },
    ]);
  });

  it.runIf(CERT_MANAGER.has(rel))('issues the serving certificate with cert-manager and injects its CA', () => {
    const objs = render(rel);
    const mwc = one(objs, 'MutatingWebhookConfiguration');
    const ref: string = mwc.metadata.annotations['cert-manager.io/inject-ca-from'];
    const [ns, name] = ref.split('/');
    const serving = one(objs, 'Certificate', name);
    expect(serving.metadata.namespace).toBe(ns);
    expect(serving.spec.secretName).toBe('mesh-guard-tls');
    const svc = one(objs, 'Service', 'mesh-guard');
    expect(serving.spec.dnsNames).toContain(`${svc.metadata.name}.${svc.metadata.namespace}.svc`);
    expect(serving.spec.usages).toContain('server auth');
    expect(serving.spec.privateKey.rotationPolicy).toBe('Always');
    // Signed by a CA Issuer whose CA is a cert-manager Certificate from a self-signed Issuer,
    // so renewing the serving certificate leaves caBundle unchanged.
    const caIssuer = one(objs, 'Issuer', serving.spec.issuerRef.name);
    const ca = objs.find((o) => o.kind === 'Certificate' && o.spec.secretName === caIssuer.spec.ca.secretName)!;
    expect(ca.spec.isCA).toBe(true);
    expect(one(objs, 'Issuer', ca.spec.issuerRef.name).spec.selfSigned).toEqual({});
    expect(mwc.webhooks[0].clientConfig.caBundle).toBeUndefined();
  });

  it.runIf(!CERT_MANAGER.has(rel))('leaves caBundle and the Secret to certs-scripts', () => {
    const objs = render(rel);
    expect(objs.some((o) => o.kind === 'Secret')).toBe(false);
    const mwc = one(objs, 'MutatingWebhookConfiguration');
    expect(mwc.metadata.annotations?.['cert-manager.io/inject-ca-from']).toBeUndefined();
  });
});

describe('deploy/base ConfigMap config file', () => {
  const cm = () => one(render('base'), 'ConfigMap', 'mesh-guard-config');

  it('is exactly the defaults of src/config/schema.ts', () => {
    expect(parseConfig(cm().data['config.yaml'], {})).toEqual(defaultConfig);
  });

  it('documents every default correctly: uncommenting every "# " line still gives the defaults', () => {
    const text: string = cm().data['config.yaml'];
    const uncommented = text
      .split('\n')
      .filter((l) => !/^\s*##/.test(l))
      .map((l) => l.replace(/^(\s*)# /, '$1'))
      .join('\n');
    expect(uncommented).not.toMatch(/^\s*#/m);
    expect(parseConfig(uncommented, {})).toEqual(defaultConfig);
    // ...and it mentions every top-level key of the schema.
    const topKeys = Object.keys(parseYaml(uncommented) as Obj).sort();
    expect(topKeys).toEqual(Object.keys(defaultConfig).sort());
  });
});

describe('docs/install.md', () => {
  const doc = fs.readFileSync(path.join(repoRoot, 'docs/install.md'), 'utf8');
  const blocks = [...doc.matchAll(/cat > deploy\/my-cluster\/kustomization.yaml <<EOF\n([\s\S]*?)\nEOF\n/g)].map((m) => m[1]!);

  it('has copy-paste kustomizations for both certificate paths, dry-run then enforce', () => {
    expect(blocks).toHaveLength(4);
  });

  it.each([0, 1, 2, 3])('kustomization %i renders with the image set and the right mode', (i) => {
    const image = 'registry.example.com:5000/platform/mesh-guard:1.2.3';
    const text = blocks[i]!
      .replaceAll('${IMAGE%:*}', image.slice(0, image.lastIndexOf(':')))
      .replaceAll('${IMAGE##*:}', image.slice(image.lastIndexOf(':') + 1));
    expect(text).not.toContain('$');
    const dir = path.join(deployDir, `.test-install-${process.pid}-${i}`);
    fs.mkdirSync(dir, { recursive: true });
    try {
      fs.writeFileSync(path.join(dir, 'kustomization.yaml'), text);
      const mini = renderMini(dir);
      if (kubectl) expect(sorted(mini)).toEqual(sorted(renderDir(dir)));
      const c = one(mini, 'Deployment', 'mesh-guard').spec.template.spec.containers[0];
      expect(c.image).toBe(image);
      const dryRun = (c.env as Obj[]).some((e) => e.name === 'DRY_RUN' && e.value === 'true');
      const usesComponent = text.includes('components/dry-run');
      expect(dryRun).toBe(usesComponent);
      expect(mini.some((o) => o.kind === 'Certificate')).toBe(text.includes('overlays/cert-manager'));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the dry-run steps come before the enforce steps on each path', () => {
    const a1 = doc.indexOf('### A1.');
    const a3 = doc.indexOf('### A3.');
    const b1 = doc.indexOf('### B1.');
    const b3 = doc.indexOf('### B3.');
    expect(a1).toBeGreaterThan(0);
    expect(a1).toBeLessThan(a3);
    expect(b1).toBeLessThan(b3);
  });
});
