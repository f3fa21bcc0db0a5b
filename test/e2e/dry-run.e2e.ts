/**
 * Dry-run through the real API server: the stored pod is unchanged, mesh-guard's log names the
 * would-be change, and the API server's audit log carries the webhook's auditAnnotations (prefixed
 * with the webhook's name, as the apiserver's mutating dispatcher writes them).
 */
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { istioCniNodePod } from '../support/review.js';
import { startControlPlane, type ControlPlane } from './support/controlplane.js';
import { startMeshGuard, type MeshGuard } from './support/mesh-guard.js';
import { annotations, createPod, eventually } from './support/pods.js';

/** Pods at Metadata level: enough for the admission webhooks' audit annotations. */
const AUDIT_POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    resources: [{ group: "", resources: [pods] }]
  - level: None
`;

interface AuditEvent {
  verb: string;
  objectRef?: { resource?: string; namespace?: string; name?: string };
  annotations?: Record<string, string>;
}

describe('dry-run mode behind a real kube-apiserver', () => {
  let cp: ControlPlane;
  let mg: MeshGuard;
  beforeAll(async () => {
    cp = await startControlPlane({ auditPolicy: AUDIT_POLICY });
    await cp.ensureNamespace('istio-system');
    mg = await startMeshGuard(cp, { configYaml: 'dryRun: true' });
  });
  afterAll(async () => {
    await mg?.stop();
    await cp?.stop();
  });

  it('stores the pod unchanged, logs the would-be change, and the audit log names it', async () => {
    const name = 'istio-cni-node-dry';
    const stored = await createPod(cp, { ...istioCniNodePod, metadata: { ...istioCniNodePod.metadata, generateName: undefined, name } });
    expect(annotations(stored)['oneagent.dynatrace.com/inject']).toBeUndefined();

    const line = await eventually('admission log line', 5_000, async () =>
      mg.lines().find((l) => l.dryRun === true && JSON.stringify(l).includes(name)),
    );
    expect(line).toMatchObject({
      outcome: 'unchanged',
      rules: [expect.objectContaining({ rule: 'node-agent-guard', mode: 'dry-run', changes: ['oneagent.dynatrace.com/inject: (unset) → "false"'] })],
    });

    const event = await eventually('audit event', 10_000, async () =>
      fs
        .readFileSync(cp.auditLogPath!, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as AuditEvent)
        .find((e) => e.verb === 'create' && e.objectRef?.resource === 'pods' && e.objectRef.name === name),
    );
    expect(event.annotations?.['pods.mesh-guard.io/dry-run-would-mutate']).toBe('node-agent-guard');
  });
});
