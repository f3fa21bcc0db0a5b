/** Pods through the real API server: created with client-node, asserted on what it stored. */
import { CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import type { ControlPlane } from './controlplane.js';

export async function createPod(cp: ControlPlane, pod: object): Promise<V1Pod> {
  const p = pod as V1Pod;
  const core = cp.kc.makeApiClient(CoreV1Api);
  const created = await core.createNamespacedPod({ namespace: p.metadata!.namespace!, body: p });
  // Read back: the object as etcd holds it, not only the create answer.
  return core.readNamespacedPod({ name: created.metadata!.name!, namespace: created.metadata!.namespace! });
}

export async function setNamespaceLabels(cp: ControlPlane, name: string, labels: Record<string, string | null>): Promise<void> {
  const core = cp.kc.makeApiClient(CoreV1Api);
  const ns = await core.readNamespace({ name });
  const next: Record<string, string> = { ...(ns.metadata?.labels ?? {}) };
  for (const [k, v] of Object.entries(labels)) {
    if (v === null) delete next[k];
    else next[k] = v;
  }
  ns.metadata!.labels = next;
  await core.replaceNamespace({ name, body: ns });
}

/** Polls `probe` until it returns a value, or fails with `what` after `timeoutMs`. */
export async function eventually<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export const annotations = (pod: V1Pod): Record<string, string> => pod.metadata?.annotations ?? {};
