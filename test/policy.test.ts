/**
 * deploy/policies/deadlock-guards.yaml without an API server: its shape against the v1 schema,
 * that it writes exactly the keys and values of node-agent-guard and csi-driver-guard, and that
 * mesh-guard's webhook changes nothing more on a pod the policy already changed (idempotent
 * across the two), and the CEL against the rules case by case with the API server's admission
 * library (policy-eval). test/e2e/policy.e2e.ts runs the same cases through the real API server.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { V1Pod } from '@kubernetes/client-node';
import { CONSUL_CONNECT_INJECT, DT_ONEAGENT_INJECT, ISTIO_DATAPLANE_MODE, ISTIO_INJECT } from '../src/admission/annotations.js';
import { admitPod } from './support/admit.js';
import { models, unknownFields } from './support/k8s-schema.js';
import { deployDir, key, render, repoRoot, type Obj } from './support/kustomize.js';
import { DEADLOCK_GUARDS, POLICY_CASES, labelsAndAnnotations } from './support/deadlock-guard-cases.js';

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

// ---------------------------------------------------------------------------------------------
// The policy's CEL, run by the API server's own admission library (test/e2e/policy-eval, built by
// `npm run build:go`), against the two rules on the inputs of their case tables. This is not the
// API server: matching, bindings and reinvocation are checked by the end-to-end suite.

const policyEval = path.join(repoRoot, '.build/bin/policy-eval');
const havePolicyEval = fs.existsSync(policyEval);
if (!havePolicyEval && process.env.CI !== 'true') console.log(`${path.relative(repoRoot, policyEval)} is missing, so the policy's CEL is not run: build it with \`npm run build:go\``);

function runPolicy(pods: V1Pod[]): Array<{ pod?: V1Pod; error?: string }> {
  const out = execFileSync(policyEval, [path.join(deployDir, 'policies/deadlock-guards.yaml')], { input: JSON.stringify(pods), encoding: 'utf8', timeout: 60_000 });
  return JSON.parse(out);
}

describe.runIf(havePolicyEval)("the policy's CEL (API server admission library) against the rules", () => {
  let results: ReturnType<typeof runPolicy>;
  beforeAll(() => {
    results = runPolicy(POLICY_CASES.map(([, p]) => p));
  });

  it.each(POLICY_CASES.map(([name], i) => [name, i] as const))('%s', async (_name, i) => {
    const input = POLICY_CASES[i]![1];
    const r = results[i]!;
    expect(r.error).toBeUndefined();
    const byPolicy = labelsAndAnnotations(r.pod);
    const { patched } = await admitPod(input, { rules: DEADLOCK_GUARDS });
    const byRule = labelsAndAnnotations(patched);
    expect(byPolicy).toEqual(byRule);
    // mesh-guard after the policy: nothing more to do for these two rules.
    const after = await admitPod(r.pod, { rules: DEADLOCK_GUARDS });
    expect(after.ops).toEqual([]);
  });
});
