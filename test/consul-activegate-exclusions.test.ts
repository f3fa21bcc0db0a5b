/**
 * consul-activegate-exclusions end to end (issue 5): AdmissionReviews over the real HTTPS server
 * with a fixed cluster view. consul-activegate-exclusions.kube.test.ts does the same against the
 * in-test API server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { staticClusterView } from '../src/cluster/view.js';
import { RULE, PORTS, CIDRS, DT_NS, consulPod, admitOverHttps, ruleReasons } from './support/consul.js';
import { startTestServer, type TestServer } from './support/server.js';

const lastReasons = (s: TestServer, namespace: string) => ruleReasons(s, namespace, RULE);

describe('consul-activegate-exclusions over HTTPS, fixed cluster view', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({
      cluster: staticClusterView({ shop: { [DT_NS]: 'dk' }, plain: {} }, ['10.96.0.50', 'fd00:10:96::50']),
      configYaml: 'activeGate: { clusterIPFamilies: [IPv4, IPv6] }',
    });
  });
  afterAll(() => s.close());

  it('a meshed pod in a Dynatrace namespace gets the port and both ClusterIPs, appended to its own list', async () => {
    const { annotations, response } = await admitOverHttps(s, consulPod('shop', { [PORTS]: '8080' }));
    expect(annotations[PORTS]).toBe('8080,9999');
    expect(annotations[CIDRS]).toBe('10.96.0.50/32,fd00:10:96::50/128');
    expect(response.auditAnnotations).toEqual({ 'mutated-by': RULE });
  });

  it('transparent-proxy "false": left alone, the log gives the reason', async () => {
    const { ops } = await admitOverHttps(s, consulPod('shop', { 'consul.hashicorp.com/transparent-proxy': 'false' }));
    expect(ops).toEqual([]);
    expect(lastReasons(s, 'shop')).toMatch(/Consul injects without transparent proxy \(pod annotation consul.hashicorp.com\/transparent-proxy="false"\)/);
  });

  it('a namespace Dynatrace does not inject: left alone, the log gives the reason', async () => {
    const { ops } = await admitOverHttps(s, consulPod('plain'));
    expect(ops).toEqual([]);
    expect(lastReasons(s, 'plain')).toMatch(/Dynatrace does not inject OneAgent: namespace is not labelled/);
  });
});
