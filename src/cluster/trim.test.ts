import { describe, expect, it } from 'vitest';
import type { V1Namespace, V1Service } from '@kubernetes/client-node';
import { clusterIPsOf } from './kube-view.js';
import { trimNamespace, trimService } from './trim.js';

const managedFields = [{ manager: 'kubectl-client-side-apply', operation: 'Update', fieldsV1: { 'f:metadata': { 'f:labels': {} } } }];

describe('trimNamespace', () => {
  const cases: Array<{ name: string; input: V1Namespace; want: V1Namespace }> = [
    {
      name: 'a namespace as the API server sends it keeps identity and labels only',
      input: {
        apiVersion: 'v1',
        kind: 'Namespace',
        metadata: {
          name: 'shop',
          uid: 'u-1',
          resourceVersion: '42',
          creationTimestamp: new Date(0),
          labels: { 'istio-injection': 'enabled', 'kubernetes.io/metadata.name': 'shop' },
          annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{"apiVersion":"v1"}' },
          managedFields,
        },
        spec: { finalizers: ['kubernetes'] },
        status: { phase: 'Active' },
      },
      want: { metadata: { name: 'shop', uid: 'u-1', resourceVersion: '42', labels: { 'istio-injection': 'enabled', 'kubernetes.io/metadata.name': 'shop' } } },
    },
    { name: 'no labels: none invented', input: { metadata: { name: 'bare', resourceVersion: '7' } }, want: { metadata: { name: 'bare', resourceVersion: '7' } } },
    { name: 'no metadata (a malformed event) does not throw', input: {}, want: { metadata: {} } },
  ];
  for (const c of cases) it(c.name, () => expect(trimNamespace(c.input)).toEqual(c.want));
});

describe('trimService', () => {
  const full: V1Service = {
    metadata: {
      name: 'dk-activegate',
      namespace: 'dynatrace',
      uid: 'u-2',
      resourceVersion: '43',
      labels: { 'app.kubernetes.io/component': 'activegate' },
      annotations: { note: 'x'.repeat(500) },
      managedFields,
    },
    spec: { type: 'ClusterIP', clusterIP: '10.96.0.50', clusterIPs: ['10.96.0.50', 'fd00::50'], ports: [{ port: 443 }], selector: { app: 'ag' } },
    status: { loadBalancer: {} },
  };
  const cases: Array<{ name: string; input: V1Service; want: V1Service }> = [
    {
      name: 'a Service keeps identity and ClusterIPs only',
      input: full,
      want: { metadata: { name: 'dk-activegate', namespace: 'dynatrace', uid: 'u-2', resourceVersion: '43' }, spec: { clusterIP: '10.96.0.50', clusterIPs: ['10.96.0.50', 'fd00::50'] } },
    },
    { name: 'headless stays headless', input: { metadata: { name: 'h', namespace: 'd' }, spec: { clusterIP: 'None' } }, want: { metadata: { name: 'h', namespace: 'd' }, spec: { clusterIP: 'None' } } },
    { name: 'no spec: none invented', input: { metadata: { name: 's', namespace: 'd' } }, want: { metadata: { name: 's', namespace: 'd' } } },
  ];
  for (const c of cases) it(c.name, () => expect(trimService(c.input)).toEqual(c.want));

  it('ActiveGate detection reads the same from a trimmed Service as from the full one', () => {
    expect(clusterIPsOf([trimService(full)])).toEqual(clusterIPsOf([full]));
  });
});
