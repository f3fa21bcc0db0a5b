/**
 * deploy/policies (the deadlock guards as a MutatingAdmissionPolicy) in the real kube-apiserver
 * v1.36.3, on the cases of test/support/deadlock-guard-cases.ts:
 *   1. with mesh-guard stopped (0-mesh-guard registered, failing open), each pod is stored with what
 *      node-agent-guard and csi-driver-guard would have set (the rules run in-process on the same
 *      input), and the pods neither rule touches are stored as sent;
 *   2. with mesh-guard running behind it, each pod is stored the same and mesh-guard patches nothing:
 *      it is called with the policy's output (the policy plugin runs before the webhook plugin).
 * Also what the docs and ../shared/research/peers-2026-12.md §5 claim of the API server: the v1 API is
 * served with no flag (startControlPlane passes no --feature-gates or --runtime-config), failurePolicy
 * defaults to Fail, and a CEL error under Ignore admits the pod unchanged and shows only in a metric.
 */
import { CoreV1Api, KubernetesObjectApi, type KubernetesObject, type V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { admitPod } from '../support/admit.js';
import {
  CORPUS_NODE_AGENT_CASES,
  DEADLOCK_GUARDS,
  POLICY_CASES,
  UNTOUCHED_POLICY_CASES,
  labelsAndAnnotations,
} from '../support/deadlock-guard-cases.js';
import { render } from '../support/kustomize.js';
import { istioCniNodePod } from '../support/review.js';
import { startControlPlane, type ControlPlane } from './support/controlplane.js';
import { startMeshGuard, type MeshGuard } from './support/mesh-guard.js';
import { createPod, createWithWarnings, eventually } from './support/pods.js';
import { apply } from './support/webhooks.js';

const OPTED_OUT = 'oneagent.dynatrace.com/inject';
const NAMESPACES = [...new Set(POLICY_CASES.map(([, p]) => p.metadata!.namespace!))];
type Stored = ReturnType<typeof labelsAndAnnotations>;

describe('the deadlock guards as a MutatingAdmissionPolicy in a real kube-apiserver', () => {
  let cp: ControlPlane;
  let mg: MeshGuard;
  let core: CoreV1Api;
  let objects: KubernetesObjectApi;
  const withoutMeshGuard = new Map<string, Stored>();

  /** A server-side dry-run create: admission runs in full, nothing is stored. */
  const admitted = (pod: V1Pod) => core.createNamespacedPod({ namespace: pod.metadata!.namespace!, body: pod, dryRun: 'All' });
  const deleteCasePods = async () => {
    for (const namespace of NAMESPACES) await core.deleteCollectionNamespacedPod({ namespace, gracePeriodSeconds: 0 });
  };
  const admissionLines = () => mg.lines().filter((l) => l.msg === 'admission');

  beforeAll(async () => {
    cp = await startControlPlane();
    core = cp.kc.makeApiClient(CoreV1Api);
    objects = KubernetesObjectApi.makeApiClient(cp.kc);
    for (const ns of NAMESPACES) await cp.ensureNamespace(ns);
    // The ServiceAccount admission plugin refuses a pod whose account is missing (the chart pods name theirs).
    for (const [, p] of POLICY_CASES) {
      const name = p.spec?.serviceAccountName;
      if (name) await core.createNamespacedServiceAccount({ namespace: p.metadata!.namespace!, body: { metadata: { name } } }).catch((err: { code?: number }) => (err.code === 409 ? undefined : Promise.reject(err)));
    }
    if (CORPUS_NODE_AGENT_CASES.length === 0) console.log('../shared/corpus has no istio-charts node-agent pods: only the hand-written node-agent cases run');
    // 0-mesh-guard registered as shipped, then mesh-guard stopped: the outage the policy covers.
    mg = await startMeshGuard(cp);
    await mg.stop();
  });
  afterAll(async () => {
    await mg?.stop();
    await cp?.stop();
  });

  it('serves admissionregistration.k8s.io/v1 MutatingAdmissionPolicy and its binding with no flag (GA and on by default in 1.36)', async () => {
    const { status, body } = await cp.get('/apis/admissionregistration.k8s.io/v1');
    expect(status).toBe(200);
    const names = (body as { resources: Array<{ name: string }> }).resources.map((r) => r.name);
    expect(names).toEqual(expect.arrayContaining(['mutatingadmissionpolicies', 'mutatingadmissionpolicybindings']));
  });

  it('accepts deploy/policies as shipped (the API server type-checks the CEL) and stores failurePolicy Ignore, reinvocationPolicy IfNeeded', async () => {
    const shipped = render('policies') as KubernetesObject[];
    await apply(cp.kc, shipped);
    for (const o of shipped) {
      const stored = (await objects.read({ apiVersion: o.apiVersion!, kind: o.kind!, metadata: { name: o.metadata!.name! } })) as KubernetesObject & { spec: unknown };
      expect(stored.spec, o.kind).toMatchObject((o as KubernetesObject & { spec: object }).spec);
    }
    const policy = shipped.find((o) => o.kind === 'MutatingAdmissionPolicy') as KubernetesObject & { spec: { failurePolicy: string; reinvocationPolicy: string } };
    expect([policy.spec.failurePolicy, policy.spec.reinvocationPolicy]).toEqual(['Ignore', 'IfNeeded']);
    // The policy plugin loads policies from an informer: wait until it acts.
    await eventually('policy active', 30_000, async () => ((await admitted(istioCniNodePod as V1Pod)).metadata?.annotations?.[OPTED_OUT] === 'false' ? true : undefined));
  });

  it('defaults an unset failurePolicy to Fail (peers-2026-12.md §5), and requires reinvocationPolicy (no default)', async () => {
    const bare = (spec: Record<string, unknown>) => ({
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'MutatingAdmissionPolicy',
      metadata: { name: 'e2e-defaults' },
      spec: {
        matchConstraints: { resourceRules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'] }] },
        mutations: [{ patchType: 'JSONPatch', jsonPatch: { expression: "[JSONPatch{op: 'test', path: '/kind', value: 'Pod'}]" } }],
        ...spec,
      },
    });
    const created = (await objects.create(bare({ reinvocationPolicy: 'Never' }), undefined, 'All')) as KubernetesObject & { spec: { failurePolicy?: string } };
    expect(created.spec.failurePolicy).toBe('Fail');
    const refused = await objects.create(bare({}), undefined, 'All').then(
      () => 'accepted',
      (err: { code?: number; body?: string }) => `${err.code} ${String(err.body)}`,
    );
    expect(refused).toMatch(/^422 .*spec\.reinvocationPolicy: Required value/);
  });

  describe('with mesh-guard stopped', () => {
    it.each(POLICY_CASES.map(([name], i) => [name, i] as const))('%s: stored as the two rules would set it', async (name, i) => {
      const input = POLICY_CASES[i]![1];
      const stored = labelsAndAnnotations(await createPod(cp, input));
      const { patched } = await admitPod(input, { rules: DEADLOCK_GUARDS });
      expect(stored).toEqual(labelsAndAnnotations(patched));
      withoutMeshGuard.set(name, stored);
    });

    it.each(UNTOUCHED_POLICY_CASES)('%s: untouched by the policy', (name, input) => {
      expect(withoutMeshGuard.get(name)).toEqual(labelsAndAnnotations(input));
    });
  });

  describe('with mesh-guard running behind the policy', () => {
    beforeAll(async () => {
      await deleteCasePods();
      await mg.start();
      // The webhook is registered already; wait until the API server calls the restarted process.
      await eventually('mesh-guard called', 30_000, async () => {
        await admitted({ apiVersion: 'v1', kind: 'Pod', metadata: { generateName: 'probe-', namespace: NAMESPACES[0] }, spec: { containers: [{ name: 'c', image: 'nginx:1.27' }] } });
        return admissionLines().length > 0 ? true : undefined;
      });
    });

    it.each(POLICY_CASES.map(([name], i) => [name, i] as const))('%s: stored the same, and mesh-guard patches nothing', async (name, i) => {
      const before = admissionLines().length;
      const stored = labelsAndAnnotations(await createPod(cp, POLICY_CASES[i]![1]));
      expect(stored).toEqual(withoutMeshGuard.get(name));
      const lines = await eventually('admission log line', 5_000, async () => {
        const l = admissionLines().slice(before);
        return l.length > 0 ? l : undefined;
      });
      // mesh-guard saw the policy's output: the node agents arrive already opted out.
      for (const l of lines) expect(l, JSON.stringify(l)).toMatchObject({ outcome: 'unchanged', ops: 0 });
    });
  });

  it('fails open on a CEL error under failurePolicy Ignore: the pod is stored unchanged, with no warning, and only apiserver_mutating_admission_policy_check_total counts it', async () => {
    const selector = { matchExpressions: [{ key: 'e2e-broken', operator: 'Exists' }] };
    const broken = [
      {
        apiVersion: 'admissionregistration.k8s.io/v1',
        kind: 'MutatingAdmissionPolicy',
        metadata: { name: 'e2e-broken' },
        spec: {
          matchConstraints: { resourceRules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'] }] },
          failurePolicy: 'Ignore',
          reinvocationPolicy: 'Never',
          // Type-checks, and fails at run time on a pod labelled e2e-broken=fail (int('fail')). A
          // pod labelled e2e-broken=probe is marked instead, to see when the policy is active.
          mutations: [
            {
              patchType: 'JSONPatch',
              jsonPatch: {
                expression:
                  "object.metadata.labels['e2e-broken'] == 'probe' ? [JSONPatch{op: 'add', path: '/metadata/annotations', value: {'e2e-broken': 'active'}}] : [JSONPatch{op: 'add', path: '/metadata/annotations', value: {'n': string(int(object.metadata.labels['e2e-broken']))}}]",
              },
            },
          ],
        },
      },
      {
        apiVersion: 'admissionregistration.k8s.io/v1',
        kind: 'MutatingAdmissionPolicyBinding',
        metadata: { name: 'e2e-broken' },
        spec: { policyName: 'e2e-broken', matchResources: { objectSelector: selector } },
      },
    ];
    await apply(cp.kc, broken);
    const app = (value: string): V1Pod => ({ apiVersion: 'v1', kind: 'Pod', metadata: { generateName: 'app-', namespace: 'default', labels: { 'e2e-broken': value } }, spec: { containers: [{ name: 'c', image: 'nginx:1.27' }] } });
    await eventually('broken policy active', 30_000, async () => ((await admitted(app('probe'))).metadata?.annotations?.['e2e-broken'] === 'active' ? true : undefined));

    const res = await createWithWarnings(cp, app('fail'));
    expect(res.status).toBe(201);
    expect(res.warnings).toEqual([]);
    expect(res.body.metadata?.annotations ?? {}).toEqual({});
    const metrics = String((await cp.get('/metrics')).body);
    const counted = metrics.split('\n').find((l) => l.startsWith('apiserver_mutating_admission_policy_check_total{') && l.includes('policy="e2e-broken"') && l.includes('error_type="invalid_error"'));
    expect(counted, 'apiserver_mutating_admission_policy_check_total for e2e-broken').toMatch(/ [1-9]\d*$/);
    for (const o of [...broken].reverse()) await objects.delete(o);
  });
});
