/**
 * admit() answers in the same tick when the namespace is in memory, and waits only for a
 * lookup that has to go to the API server; both give the same result.
 */
import { describe, expect, it } from 'vitest';
import { admit } from '../src/admission/handler.js';
import { offlineClusterView, staticClusterView, type ClusterView } from '../src/cluster/view.js';
import { parseConfig } from '../src/config/load.js';
import { allRules } from '../src/rules/index.js';
import { istioCniNodePod, review } from './support/review.js';

const config = parseConfig('', {});
const request = () => review(istioCniNodePod, { namespace: 'istio-system' }).request as Parameters<typeof admit>[0];

describe('admit', () => {
  it('returns the result directly when the namespace answer is in memory', () => {
    for (const cluster of [offlineClusterView, staticClusterView({ 'istio-system': {} })]) {
      const result = admit(request(), { config, cluster, rules: allRules });
      expect(result).not.toBeInstanceOf(Promise);
      expect((result as Exclude<typeof result, Promise<unknown>>).outcome).toBe('patched');
    }
  });

  it('returns a promise when the namespace lookup waits on the API server, with the same result', async () => {
    const memory = staticClusterView({ 'istio-system': {} });
    const live: ClusterView = { ...memory, namespaceLabels: (name) => new Promise((r) => setTimeout(() => r(memory.namespaceLabels(name)), 5)) };
    const req = request();
    const waited = admit(req, { config, cluster: live, rules: allRules });
    expect(waited).toBeInstanceOf(Promise);
    const direct = admit(req, { config, cluster: memory, rules: allRules });
    expect(await waited).toEqual(direct);
  });

  it('a namespace lookup that fails is the caller’s error, not a crash in the core', async () => {
    const broken: ClusterView = { ...offlineClusterView, namespaceLabels: () => Promise.reject(new Error('boom')) };
    await expect(admit(request(), { config, cluster: broken, rules: allRules })).rejects.toThrow('boom');
  });
});
