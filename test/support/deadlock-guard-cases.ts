/**
 * The pods on which deploy/policies' MutatingAdmissionPolicy must do what node-agent-guard and
 * csi-driver-guard do: node-agent-guard's table (src/rules/node-agent-guard.cases.ts) and the inputs
 * of its other tests, the Istio chart's node-agent pods from ../shared/corpus when present, absent
 * and null maps, and the CSI-driver pods of csi-driver-guard.test.ts. Used by test/policy.test.ts
 * (the API server's CEL library) and test/e2e/policy.e2e.ts (the real API server).
 */
import type { V1Pod } from '@kubernetes/client-node';
import { CONSUL_CONNECT_INJECT, DT_ONEAGENT_INJECT, ISTIO_DATAPLANE_MODE, ISTIO_INJECT } from '../../src/admission/annotations.js';
import { csiDriverGuard } from '../../src/rules/csi-driver-guard.js';
import { nodeAgentGuard } from '../../src/rules/node-agent-guard.js';
import { CNI_POD, NODE_AGENT_CASES, NOT_NODE_AGENT_CASES, ZTUNNEL_POD, pod } from '../../src/rules/node-agent-guard.cases.js';
import { skipWithout } from './corpus.js';
import { corpusPod } from './review.js';

/** The two rules the policy mirrors, for admitPod(..., { rules }). */
export const DEADLOCK_GUARDS = [nodeAgentGuard, csiDriverGuard];

const csi = (labels: Record<string, string>, annotations: Record<string, string> = {}) =>
  pod({ generateName: 'dynatrace-oneagent-csi-driver-', namespace: 'dynatrace', labels, annotations: { 'dynatrace.com/inject': 'false', ...annotations } }, ['dynatrace/dynatrace-operator:v1.10.0']);
const CSI_HELM = { 'app.kubernetes.io/name': 'dynatrace-operator', 'app.kubernetes.io/component': 'csi-driver', 'internal.oneagent.dynatrace.com/component': 'csi-driver' };

/** The corpus node-agent pods, empty without ../shared/corpus (never under CI: then they must load). */
export const CORPUS_NODE_AGENT_CASES: Array<[string, V1Pod]> = skipWithout(CNI_POD, ZTUNNEL_POD)
  ? []
  : [
      ['istio-cni-node chart pod (corpus)', corpusPod(CNI_POD)],
      ['ztunnel chart pod (corpus)', corpusPod(ZTUNNEL_POD)],
    ];

export const NODE_AGENT_POLICY_CASES: Array<[string, V1Pod]> = [
  ...CORPUS_NODE_AGENT_CASES,
  ...NODE_AGENT_CASES,
  // JSON null maps, as a client may send them (V1Pod's types do not admit null).
  ['istio-cni by generateName, null maps', pod({ generateName: 'istio-cni-node-', labels: null, annotations: null } as unknown as { generateName: string })],
  ['a value that parses as true', pod({ generateName: 'istio-cni-node-', annotations: { [DT_ONEAGENT_INJECT]: 'True' } })],
  ['a value Dynatrace cannot parse', pod({ generateName: 'istio-cni-node-', annotations: { [DT_ONEAGENT_INJECT]: 'no' } })],
  ...['false', 'FALSE', '0', 'f'].map((v): [string, V1Pod] => [`already ${v}`, pod({ generateName: 'istio-cni-node-', annotations: { [DT_ONEAGENT_INJECT]: v } })]),
];

export const CSI_DRIVER_POLICY_CASES: Array<[string, V1Pod]> = [
  ['the Helm-installed CSI driver pod', csi({ ...CSI_HELM, 'app.kubernetes.io/version': '1.10.0', 'internal.oneagent.dynatrace.com/app': 'csi-driver' })],
  ['CSI driver by selector label only', csi({ 'internal.oneagent.dynatrace.com/component': 'csi-driver' })],
  ['CSI driver by app.kubernetes.io labels only', csi({ 'app.kubernetes.io/name': 'dynatrace-operator', 'app.kubernetes.io/component': 'csi-driver' })],
  ['CSI driver with values already set', csi({ ...CSI_HELM, [ISTIO_INJECT]: 'true', [ISTIO_DATAPLANE_MODE]: 'ambient' }, { [CONSUL_CONNECT_INJECT]: 'true' })],
  ['CSI driver with only the Istio label set', csi({ ...CSI_HELM, [ISTIO_INJECT]: 'false' })],
  ['CSI driver with no annotations at all', { ...csi(CSI_HELM), metadata: { generateName: 'csi-', namespace: 'dynatrace', labels: CSI_HELM } }],
];

/** Pods neither rule changes: the policy must leave them as they are. */
export const UNTOUCHED_POLICY_CASES: Array<[string, V1Pod]> = [
  ...NOT_NODE_AGENT_CASES,
  ['component csi-driver of another product', csi({ 'app.kubernetes.io/name': 'other', 'app.kubernetes.io/component': 'csi-driver' })],
  ['the Dynatrace webhook pod', csi({ 'app.kubernetes.io/name': 'dynatrace-operator', 'app.kubernetes.io/component': 'webhook' })],
];

export const POLICY_CASES: Array<[string, V1Pod]> = [...NODE_AGENT_POLICY_CASES, ...CSI_DRIVER_POLICY_CASES, ...UNTOUCHED_POLICY_CASES];

/** A pod's labels and annotations, absent maps as {}: what the policy and the rules may change. */
export const labelsAndAnnotations = (p: unknown) => {
  const m = (p as V1Pod).metadata ?? {};
  return { labels: m.labels ?? {}, annotations: m.annotations ?? {} };
};
