/**
 * AdmissionReview builders and the checks every returned patch must pass: it applies
 * with fast-json-patch (validation on), leaves string-valued annotations and labels with
 * valid keys, and the webhook on its own output returns no ops.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import jsonpatch from 'fast-json-patch';
import { parseAllDocuments } from 'yaml';
import type { V1Pod } from '@kubernetes/client-node';
import { expect } from 'vitest';
import { isQualifiedName } from '../../src/admission/annotations.js';
import { readCorpus } from './corpus.js';

export { repoRoot } from './repo-root.js';

/** An Istio CNI node-agent pod: node-agent-guard patches it. The background load of the transport tests. */
export const istioCniNodePod = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { generateName: 'istio-cni-node-', namespace: 'istio-system', labels: { 'k8s-app': 'istio-cni-node' } },
  spec: { containers: [{ name: 'install-cni', image: 'docker.io/istio/install-cni:1.30.3' }] },
};

export function review(pod: unknown, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const meta = (pod as { metadata?: { namespace?: string } } | null)?.metadata;
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: randomUUID(),
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      namespace: meta?.namespace ?? 'default',
      operation: 'CREATE',
      userInfo: { username: 'system:serviceaccount:kube-system:daemon-set-controller' },
      object: pod,
      oldObject: null,
      dryRun: false,
      options: { apiVersion: 'meta.k8s.io/v1', kind: 'CreateOptions' },
      ...overrides,
    },
  };
}

export interface ReviewResponse {
  uid: string;
  allowed: boolean;
  patch?: string;
  patchType?: string;
  auditAnnotations?: Record<string, string>;
}

export type Op = { op: string; path: string; value?: unknown };

export function decodePatch(response: ReviewResponse): Op[] {
  if (response.patch === undefined) {
    expect(response.patchType).toBeUndefined();
    return [];
  }
  expect(response.patchType).toBe('JSONPatch');
  const ops = JSON.parse(Buffer.from(response.patch, 'base64').toString('utf8')) as Op[];
  expect(ops.length).toBeGreaterThan(0);
  return ops;
}

/** Applies ops to a deep copy with validation on, and checks the metadata invariants. */
export function applyOps<T>(object: T, ops: Op[]): T {
  const copy = structuredClone(object);
  const result = jsonpatch.applyPatch(copy, structuredClone(ops) as jsonpatch.Operation[], true, true).newDocument as T;
  const meta = (result as { metadata?: { annotations?: unknown; labels?: unknown } }).metadata;
  for (const map of [meta?.annotations, meta?.labels]) {
    if (map === undefined || map === null) continue;
    for (const [k, v] of Object.entries(map as Record<string, unknown>)) {
      expect(typeof v, `value of ${k}`).toBe('string');
      expect(isQualifiedName(k), `key ${k}`).toBe(true);
    }
  }
  return result;
}

export function loadYaml(file: string): unknown[] {
  return parseYaml(fs.readFileSync(file, 'utf8'));
}

const parseYaml = (text: string): unknown[] => parseAllDocuments(text).map((d) => d.toJS());

/** The pod of a corpus file (test/support/corpus.ts says where it is found). */
export function corpusPod(relative: string): V1Pod {
  const docs = parseYaml(readCorpus(relative));
  const doc = docs.find((d) => d && typeof d === 'object') as Record<string, unknown>;
  // Workload fixtures (Deployment etc.) carry the pod in spec.template.
  if (doc.kind === 'Pod') return doc as V1Pod;
  const template = (doc.spec as { template?: V1Pod } | undefined)?.template;
  if (!template) throw new Error(`${relative}: no pod in it`);
  return { apiVersion: 'v1', kind: 'Pod', ...template, metadata: { ...(template.metadata ?? {}) } } as V1Pod;
}
