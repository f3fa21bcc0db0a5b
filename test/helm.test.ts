/**
 * The Helm chart (deploy/helm/mesh-guard) against the kustomize manifests, with the real
 * helm binary: one source of truth. Rendered with default values the chart must give the
 * objects of deploy/base field for field, except for what Helm charts add by convention, which
 * is exactly the four labels in HELM_LABELS on each object's metadata.labels (checked to be
 * present, then dropped). The ConfigMap's config file is compared as the real config parser
 * reads it (the chart writes the values, the base a commented file), not as text.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml, stringify } from 'yaml';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import { defaultConfig } from '../src/config/schema.js';
import { chartDir, haveHelm, helm, helmMissing, helmTemplate } from './support/helm.js';
import { deployDir, key, render, renderDir, sorted, type Obj } from './support/kustomize.js';
import { models, unknownFields } from './support/k8s-schema.js';

const HELM_LABELS = {
  'helm.sh/chart': 'mesh-guard-0.1.0',
  'app.kubernetes.io/managed-by': 'Helm',
  'app.kubernetes.io/instance': 'mesh-guard',
  'app.kubernetes.io/version': '0.1.0',
};

/** Drops Helm's conventional labels (after checking them) and parses the config file. */
function comparable(objs: Obj[], env: Record<string, string> = {}, fromHelm = false): Obj[] {
  return sorted(objs).map((o) => {
    const c = structuredClone(o);
    if (fromHelm) {
      expect(c.metadata.labels, key(o)).toMatchObject(HELM_LABELS);
      for (const l of Object.keys(HELM_LABELS)) delete c.metadata.labels[l];
    }
    if (c.kind === 'ConfigMap' && c.metadata.name === 'mesh-guard-config') {
      c.data['config.yaml'] = parseConfig(c.data['config.yaml'], env);
    }
    return c;
  });
}

const CI = process.env.CI === 'true';
if (!haveHelm && !CI) console.log(helmMissing);

describe('helm binary', () => {
  it.runIf(CI)('is built under CI (npm run build:go)', () => {
    expect(haveHelm, helmMissing).toBe(true);
  });
});

describe.runIf(haveHelm)('deploy/helm/mesh-guard', () => {
  it('with default values renders deploy/base, field for field', () => {
    expect(comparable(helmTemplate(), {}, true)).toEqual(comparable(render('base')));
  });

  it('with certificates.certManager.enabled renders deploy/overlays/cert-manager', () => {
    const chart = helmTemplate({ set: ['certificates.certManager.enabled=true'] });
    expect(comparable(chart, {}, true)).toEqual(comparable(render('overlays/cert-manager')));
  });

  it('with config.dryRun gives the effective config of deploy/overlays/dry-run (DRY_RUN=true there)', () => {
    const chart = comparable(helmTemplate({ set: ['config.dryRun=true'] }), {}, true);
    const kustomize = comparable(render('overlays/dry-run'), { DRY_RUN: 'true' });
    const cm = (objs: Obj[]) => objs.find((o) => o.kind === 'ConfigMap')!.data['config.yaml'];
    expect(cm(chart)).toEqual(cm(kustomize));
    expect(cm(chart).dryRun).toBe(true);
  });

  it('peerDiscovery names the settings objects of more Istio revisions and Consul releases in the ClusterRole, nothing else', () => {
    const role = (set: string[]) => helmTemplate({ set }).find((o) => o.kind === 'ClusterRole')!.rules as { resources: string[]; resourceNames?: string[] }[];
    const names = (set: string[], resource: string) => role(set).find((r) => r.resources.includes(resource))?.resourceNames;
    const set = ['peerDiscovery.istioRevisions={canary}', 'peerDiscovery.consulInjectorDeployments={consul-connect-injector,mesh-connect-injector}'];
    expect(names(set, 'configmaps')).toEqual(['istio-sidecar-injector', 'istio', 'istio-sidecar-injector-canary', 'istio-canary']);
    expect(names(set, 'deployments')).toEqual(['consul-connect-injector', 'mesh-connect-injector']);
    expect(role(set).map((r) => r.resources)).toEqual(role([]).map((r) => r.resources));
    expect(role(['peerDiscovery.consulInjectorDeployments=null']).some((r) => r.resources.includes('deployments'))).toBe(false);
  });

  it('with policies.enabled adds exactly deploy/policies, which deploy/components/policies includes', () => {
    const extra = sorted(helmTemplate({ set: ['policies.enabled=true'] })).filter((o) => !helmTemplate().some((d) => key(d) === key(o)));
    expect(extra.map(key)).toEqual(['MutatingAdmissionPolicy//mesh-guard-deadlock-guards', 'MutatingAdmissionPolicyBinding//mesh-guard-deadlock-guards']);
    expect(extra).toEqual(sorted(render('policies')));

    // Inside deploy/: kustomize takes only relative paths.
    const dir = path.join(deployDir, `.test-policies-${process.pid}`);
    fs.mkdirSync(dir, { recursive: true });
    try {
      const k = { apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', resources: ['../base'], components: ['../components/policies'] };
      fs.writeFileSync(path.join(dir, 'kustomization.yaml'), stringify(k));
      expect(sorted(renderDir(dir))).toEqual(sorted([...render('base'), ...render('policies')]));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('values.yaml `config` is the whole config file (every key but server) at its defaults', () => {
    const values = parseYaml(fs.readFileSync(path.join(chartDir, 'values.yaml'), 'utf8')) as Obj;
    const { server: _server, ...rest } = defaultConfig;
    expect(values.config).toEqual(JSON.parse(JSON.stringify(rest)));
    expect(parseConfig(stringify(values.config), {})).toEqual(defaultConfig);
  });

  it('renders the scheduling, sizing, image, certificate and namespace values where Kubernetes reads them', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-guard-values-'));
    const file = path.join(dir, 'values.yaml');
    const values = {
      replicas: 3,
      resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '512Mi' } },
      pdb: { enabled: false },
      priorityClassName: 'system-cluster-critical',
      nodeSelector: { 'kubernetes.io/os': 'linux' },
      tolerations: [{ key: 'CriticalAddonsOnly', operator: 'Exists' }],
      affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'pool', operator: 'In', values: ['system'] }] }] } } },
      image: { repository: 'registry.example.com/mesh-guard', digest: 'sha256:' + 'a'.repeat(64), pullPolicy: 'Always' },
      imagePullSecrets: [{ name: 'pull' }],
      namespace: { create: false },
      certificates: { secretName: 'my-tls', caBundle: 'Q0E=' },
      config: { rules: { 'istio-metric-merging': 'off', 'node-agent-guard': 'dry-run' }, cluster: { mode: 'off' }, nodeAgentGuard: { extraSelectors: [{ 'k8s-app': 'calico-node' }] } },
    };
    fs.writeFileSync(file, stringify(values));
    try {
      const objs = helmTemplate({ values: [file], namespace: 'guard' });
      const kinds = objs.map((o) => o.kind);
      expect(kinds).not.toContain('Namespace');
      expect(kinds).not.toContain('PodDisruptionBudget');
      const dep = objs.find((o) => o.kind === 'Deployment')!;
      const pod = dep.spec.template.spec;
      expect(dep.spec.replicas).toBe(3);
      expect(pod.containers[0].resources).toEqual(values.resources);
      expect(pod.containers[0].image).toBe(`registry.example.com/mesh-guard@sha256:${'a'.repeat(64)}`);
      expect(pod.containers[0].imagePullPolicy).toBe('Always');
      expect(pod).toMatchObject({ priorityClassName: 'system-cluster-critical', nodeSelector: values.nodeSelector, tolerations: values.tolerations, affinity: values.affinity, imagePullSecrets: values.imagePullSecrets });
      expect(pod.volumes.find((v: Obj) => v.name === 'tls').secret.secretName).toBe('my-tls');
      for (const o of objs) {
        expect(unknownFields(o, `V1${o.kind}`, key(o), []), key(o)).toEqual([]);
        expect(models[`V1${o.kind}`], o.kind).toBeDefined();
      }
      const mwc = objs.find((o) => o.kind === 'MutatingWebhookConfiguration')!;
      expect(mwc.webhooks[0].clientConfig).toEqual({ caBundle: 'Q0E=', service: { name: 'mesh-guard', namespace: 'guard', path: '/mutate', port: 443 } });
      expect(mwc.webhooks[0].namespaceSelector.matchExpressions[0].values).toEqual(['guard']);
      const config = parseConfig(objs.find((o) => o.kind === 'ConfigMap')!.data['config.yaml'], {});
      expect(config.rules).toMatchObject({ 'istio-metric-merging': 'off', 'node-agent-guard': 'dry-run', 'csi-driver-guard': 'enforce' });
      expect(config.nodeAgentGuard.extraSelectors).toEqual([{ 'k8s-app': 'calico-node' }]);
      // Written unquoted by stringify, so helm's YAML 1.1 read them as false: the chart turns that back into "off".
      expect(fs.readFileSync(file, 'utf8')).toMatch(/istio-metric-merging: off\n/);
      expect(config.cluster.mode).toBe('off');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('webhook.url (end-to-end tests only) replaces the Service in clientConfig', () => {
    const mwc = helmTemplate({ set: ['webhook.url=https://127.0.0.1:8443/mutate'] }).find((o) => o.kind === 'MutatingWebhookConfiguration')!;
    expect(mwc.webhooks[0].clientConfig).toEqual({ url: 'https://127.0.0.1:8443/mutate' });
  });

  it.each([
    ['default values', []],
    ['cert-manager and policies', ['--set', 'certificates.certManager.enabled=true', '--set', 'policies.enabled=true']],
  ])('helm lint --strict is clean with %s', (_name, extra) => {
    const out = helm(['lint', '--strict', chartDir, '--namespace', 'mesh-guard', ...(extra as string[])]);
    expect(out).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
    expect(out).not.toMatch(/\[(WARNING|ERROR)\]/);
  });
});
