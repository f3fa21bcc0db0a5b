import { describe, expect, it } from 'vitest';
import type { V1Pod } from '@kubernetes/client-node';
import { admitAndConverge, admitPod } from '../../test/support/admit.js';
import { evaluateCase, podOf, type PodCase } from '../../test/support/istio.js';
import { parseConfig } from '../config/load.js';
import { meshProxyInstrumentationGuard } from './mesh-proxy-instrumentation-guard.js';

const DYNAKUBE = 'dynakube.internal.dynatrace.com/instance';
const ISTIO_NS = { 'istio-injection': 'enabled', [DYNAKUBE]: 'dk' };
const CONSUL_NS = { [DYNAKUBE]: 'dk' };
const ISTIO_KEY = 'container.inject.dynatrace.com/istio-proxy';
const CONSUL_KEY = 'container.inject.dynatrace.com/consul-dataplane';
const CONSUL = { 'consul.hashicorp.com/connect-inject': 'true' };
const ON = 'rules: {mesh-proxy-instrumentation-guard: enforce}';

const evaluate = (c: PodCase) => evaluateCase(meshProxyInstrumentationGuard, { config: ON, ...c }, ISTIO_NS);
const adds = (c: PodCase) => evaluate(c).changes.map((ch) => (ch.kind === 'annotation' ? `${ch.key}=${ch.value}` : ch.kind));

describe('mesh-proxy-instrumentation-guard', () => {
  it('is off by default', () => {
    expect(parseConfig('').rules['mesh-proxy-instrumentation-guard']).toBe('off');
  });

  it.each([
    ['Istio and Dynatrace inject', {}, [`${ISTIO_KEY}=false`]],
    ['Consul and Dynatrace inject', { ns: CONSUL_NS, annotations: CONSUL }, [`${CONSUL_KEY}=false`]],
    ['Consul without transparent proxy still adds consul-dataplane', { ns: CONSUL_NS, annotations: { ...CONSUL, 'consul.hashicorp.com/transparent-proxy': 'false' } }, [`${CONSUL_KEY}=false`]],
    ['both meshes', { annotations: CONSUL }, [`${ISTIO_KEY}=false`, `${CONSUL_KEY}=false`]],
    ['"False" does not exclude: Dynatrace honours only exactly "false"', { annotations: { [ISTIO_KEY]: 'False' } }, [`${ISTIO_KEY}=false`]],
    ['a classic istio-proxy already on the pod, not yet instrumented', { ns: CONSUL_NS, containers: [{ name: 'app', image: 'a' }, { name: 'istio-proxy', image: 'proxyv2' }] }, [`${ISTIO_KEY}=false`]],
  ] as Array<[string, PodCase, string[]]>)('%s', (_name, input, want) => {
    expect(adds(input)).toEqual(want);
  });

  it.each([
    ['no Dynatrace', { ns: { 'istio-injection': 'enabled' } }],
    ['opted out of OneAgent', { annotations: { 'oneagent.dynatrace.com/inject': 'false' } }],
    ['no mesh', { ns: CONSUL_NS }],
    ['already excluded (our own output)', { annotations: { [ISTIO_KEY]: 'false' } }],
    ['Consul opt-out', { ns: CONSUL_NS, annotations: { 'consul.hashicorp.com/connect-inject': 'false' } }],
  ] as Array<[string, PodCase]>)('none of its business: %s', (_name, input) => {
    expect(evaluate(input)).toEqual({ changes: [], reasons: [] });
  });

  it.each([
    ['the owner wants the proxy instrumented', { annotations: { [ISTIO_KEY]: 'true' } }, /container.inject.dynatrace.com\/istio-proxy="true" is set on the pod and left alone/],
    ['Dynatrace already instrumented the proxy', { ns: CONSUL_NS, containers: [{ name: 'istio-proxy', image: 'proxyv2', volumeMounts: [{ name: 'oneagent-bin', mountPath: '/opt/dynatrace/oneagent-paas' }] }] }, /already instrumented istio-proxy; too late for this pod/],
  ] as Array<[string, PodCase, RegExp]>)('reason only: %s', (_name, input, reason) => {
    const r = evaluate(input);
    expect(r.changes).toEqual([]);
    expect(r.reasons).toEqual([expect.stringMatching(reason)]);
  });

  it('applies and converges on absent, null and existing annotation maps', async () => {
    for (const annotations of [undefined, null, { a: 'b' }]) {
      const p = podOf({});
      const input = { ...p, metadata: { ...p.metadata, annotations } } as unknown as V1Pod;
      const { patched } = await admitAndConverge(input, { namespaces: { shop: ISTIO_NS }, configYaml: ON });
      expect((patched as V1Pod).metadata!.annotations![ISTIO_KEY]).toBe('false');
    }
    const off = await admitPod(podOf({}), { namespaces: { shop: ISTIO_NS } });
    expect(off.result.outcomes.map((o) => o.rule)).not.toContain('mesh-proxy-instrumentation-guard');
  });
});
