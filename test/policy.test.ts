/**
 * deploy/policies/deadlock-guards.yaml without an API server: its shape against the v1 schema,
 * that it writes exactly the keys and values of node-agent-guard and csi-driver-guard, and that
 * mesh-guard's webhook changes nothing more on a pod the policy already changed (idempotent
 * across the two). The CEL itself is run by the real API server, case by case against the rules,
 * in test/e2e/policy.e2e.ts.
 */
import { describe, expect, it } from 'vitest';
import type { V1Pod } from '@kubernetes/client-node';
import { CONSUL_CONNECT_INJECT, DT_ONEAGENT_INJECT, ISTIO_DATAPLANE_MODE, ISTIO_INJECT } from '../src/admission/annotations.js';
import { admitPod } from './support/admit.js';
import { models, unknownFields } from './support/k8s-schema.js';
import { key, render, type Obj } from './support/kustomize.js';

const objs = () => render('policies');
const policy = () => objs().find((o) => o.kind === 'MutatingAdmissionPolicy')!;
const expressions = () => [...(policy().spec.variables as Obj[]), ...(policy().spec.mutations as Obj[]).map((m) => m.jsonPatch)].map((e) => e.expression as string).join('\n');

describe('deploy/policies', () => {
  it('is a v1 policy and its binding, with no unknown fields (v1 has the fields of v1beta1: k8s.io/api v0.36.3)', () => {
    expect(objs().map(key).sort()).toEqual(['MutatingAdmissionPolicy//mesh-guard-deadlock-guards', 'MutatingAdmissionPolicyBinding//mesh-guard-deadlock-guards']);
    for (const o of objs()) {
      expect(o.apiVersion).toBe('admissionregistration.k8s.io/v1');
      const model = `V1beta1${o.kind}`;
      expect(models[model], model).toBeDefined();
      expect(unknownFields(o, model, key(o), [])).toEqual([]);
    }
    const binding = objs().find((o) => o.kind === 'MutatingAdmissionPolicyBinding')!;
    expect(binding.spec).toEqual({ policyName: policy().metadata.name });
  });

  it('fails open, reinvokes if needed, and sees only pod creations', () => {
    const spec = policy().spec;
    expect(spec.failurePolicy).toBe('Ignore');
    expect(spec.reinvocationPolicy).toBe('IfNeeded');
    expect(spec.matchConstraints.resourceRules).toEqual([{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], scope: 'Namespaced' }]);
    expect(spec.paramKind).toBeUndefined();
    expect(spec.mutations.map((m: Obj) => m.patchType)).toEqual(['JSONPatch', 'JSONPatch']);
  });

  it('writes the keys of the two rules (src/admission/annotations.ts), with their values', () => {
    const cel = expressions();
    for (const k of [DT_ONEAGENT_INJECT, ISTIO_INJECT, ISTIO_DATAPLANE_MODE, CONSUL_CONNECT_INJECT]) expect(cel).toContain(`'${k}'`);
    expect(cel).toContain("k == 'istio.io/dataplane-mode' ? 'none' : 'false'");
    // Only ever "add": never a remove, replace of a whole map, move or copy.
    expect(cel.match(/op: '(\w+)'/g)?.every((m) => m === "op: 'add'")).toBe(true);
  });
});

const pod = (meta: Obj, images = ['nginx:1.27']): V1Pod => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { namespace: 'kube-system', ...meta },
  spec: { containers: images.map((image, i) => ({ name: `c${i}`, image })) },
});

/** The pods as the policy leaves them (docs/policies.md's table); mesh-guard must add nothing. */
describe('mesh-guard on a pod the policy already changed', () => {
  it.each([
    ['istio-cni-node by label', pod({ generateName: 'istio-cni-node-', labels: { 'k8s-app': 'istio-cni-node' }, annotations: { [DT_ONEAGENT_INJECT]: 'false' } })],
    ['install-cni image', pod({ generateName: 'cni-', annotations: { [DT_ONEAGENT_INJECT]: 'false' } }, ['gcr.io/istio-release/install-cni:1.30'])],
    ['ztunnel', pod({ generateName: 'ztunnel-', labels: { app: 'ztunnel' }, annotations: { [DT_ONEAGENT_INJECT]: 'false' } }, ['istio/ztunnel:1.30'])],
    ['a user value that already parses as false', pod({ generateName: 'istio-cni-node-', annotations: { [DT_ONEAGENT_INJECT]: 'F' } })],
    [
      'the Dynatrace CSI driver',
      pod({
        generateName: 'dynatrace-oneagent-csi-driver-',
        labels: { 'internal.oneagent.dynatrace.com/component': 'csi-driver', [ISTIO_INJECT]: 'false', [ISTIO_DATAPLANE_MODE]: 'none' },
        annotations: { [CONSUL_CONNECT_INJECT]: 'false' },
      }),
    ],
  ])('%s', async (_name, input) => {
    const { ops } = await admitPod(input);
    expect(ops).toEqual([]);
  });
});
