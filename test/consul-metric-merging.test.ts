/**
 * consul-metric-merging end to end (issue 14): AdmissionReviews over the real HTTPS server with a
 * fixed cluster view; the pod is admitted, patched, and admitted again (no patch the second time).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { staticClusterView } from '../src/cluster/view.js';
import { PORTS, CIDRS, DT_NS, consulPod, admitOverHttps, ruleReasons } from './support/consul.js';
import { startTestServer, type TestServer } from './support/server.js';

const RULE = 'consul-metric-merging';
const SCRAPE = { 'metrics.dynatrace.com/scrape': 'true', 'metrics.dynatrace.com/port': '8080', 'metrics.dynatrace.com/path': '/prom' };

describe('consul-metric-merging over HTTPS, fixed cluster view', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ cluster: staticClusterView({ shop: { [DT_NS]: 'dk' }, plain: {} }, ['10.96.0.50']) });
  });
  afterAll(() => s.close());

  it('done-when: a tproxy pod asking for scraping gets Consul merging, Dynatrace at :20200/metrics, and the ActiveGate exclusions', async () => {
    const { annotations, response } = await admitOverHttps(s, consulPod('shop', SCRAPE));
    expect(annotations).toMatchObject({
      'consul.hashicorp.com/enable-metrics': 'true',
      'consul.hashicorp.com/enable-metrics-merging': 'true',
      'consul.hashicorp.com/service-metrics-port': '8080',
      'consul.hashicorp.com/service-metrics-path': '/prom',
      'metrics.dynatrace.com/port': '20200',
      'metrics.dynatrace.com/path': '/metrics',
      'metrics.dynatrace.com/filter': '{"mode":"exclude","names":["envoy_*","consul_dataplane_*"]}',
      [PORTS]: '9999',
      [CIDRS]: '10.96.0.50/32',
    });
    expect(response.auditAnnotations).toEqual({ 'mutated-by': `consul-activegate-exclusions,${RULE}` });
    expect(ruleReasons(s, 'shop', RULE)).toMatch(/app endpoint :8080\/prom \(from metrics.dynatrace.com\/port\) for consul-dataplane to merge, Dynatrace scrapes the merged endpoint :20200\/metrics/);
  });

  it('enable-metrics "false" of the user\'s: merging left off, the log gives the reason; the exclusions still come', async () => {
    const { annotations } = await admitOverHttps(s, consulPod('shop', { ...SCRAPE, 'consul.hashicorp.com/enable-metrics': 'false' }));
    expect(annotations['metrics.dynatrace.com/port']).toBe('8080');
    expect(annotations).not.toHaveProperty('consul.hashicorp.com/enable-metrics-merging');
    expect(annotations[PORTS]).toBe('9999');
    expect(ruleReasons(s, 'shop', RULE)).toMatch(/enable-metrics="false" is the owner's choice/);
  });

  it('a namespace Dynatrace does not inject: left alone, the log gives the reason', async () => {
    const { ops } = await admitOverHttps(s, consulPod('plain', SCRAPE));
    expect(ops).toEqual([]);
    expect(ruleReasons(s, 'plain', RULE)).toMatch(/Dynatrace does not inject OneAgent: namespace is not labelled/);
  });
});
