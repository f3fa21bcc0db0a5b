/** Shared by the Consul end-to-end tests: a meshed pod and an admit-apply-readmit round trip over HTTPS. */
import type { V1Pod } from '@kubernetes/client-node';
import { expect } from 'vitest';
import { applyOps, decodePatch, review, type ReviewResponse } from './review.js';
import type { TestServer } from './server.js';

export const RULE = 'consul-activegate-exclusions';
export const PORTS = 'consul.hashicorp.com/transparent-proxy-exclude-outbound-ports';
export const CIDRS = 'consul.hashicorp.com/transparent-proxy-exclude-outbound-cidrs';
export const DT_NS = 'dynakube.internal.dynatrace.com/instance';

export function consulPod(namespace: string, annotations: Record<string, string> = {}): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { generateName: 'web-', namespace, annotations: { 'consul.hashicorp.com/connect-inject': 'true', ...annotations } },
    spec: { containers: [{ name: 'web', image: 'nginx:1.27' }] },
  };
}

/** Admits over HTTPS, applies the patch, admits the output again and expects no patch. */
export async function admitOverHttps(s: TestServer, pod: V1Pod) {
  const res = await s.mutate(review(pod)).expect(200);
  const response = res.body.response as ReviewResponse;
  expect(response.allowed).toBe(true);
  const ops = decodePatch(response);
  const patched = ops.length ? applyOps(pod, ops) : pod;
  const again = (await s.mutate(review(patched)).expect(200)).body.response as ReviewResponse;
  expect(again.patch, 'a re-run on the output must yield no ops').toBeUndefined();
  return { response, ops, annotations: (patched.metadata?.annotations ?? {}) as Record<string, string> };
}

/**
 * The reasons `rule` logged for the first admission of the latest admitOverHttps round trip in
 * `namespace` (the line before the re-run's).
 */
export function ruleReasons(s: TestServer, namespace: string, rule: string): string {
  const lines = s.logs.filter((l) => l.msg === 'admission' && l.namespace === namespace);
  const rules = (lines.at(-2)?.rules ?? []) as Array<{ rule: string; reasons?: string[] }>;
  return rules.find((r) => r.rule === rule)?.reasons?.join(' | ') ?? '';
}
