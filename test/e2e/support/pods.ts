/** Pods through the real API server: created with client-node, asserted on what it stored. */
import https from 'node:https';
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

/** Creates a pod with a raw POST, to read the API server's Warning headers (client-node drops them). */
export async function createWithWarnings(cp: ControlPlane, pod: V1Pod): Promise<{ status: number; warnings: string[]; body: V1Pod }> {
  const options: https.RequestOptions = {
    host: '127.0.0.1',
    port: cp.apiPort,
    method: 'POST',
    path: `/api/v1/namespaces/${pod.metadata!.namespace}/pods`,
    headers: { 'content-type': 'application/json' },
  };
  await cp.kc.applyToHTTPSOptions(options);
  return new Promise((resolve, reject) => {
    const req = https.request(options, (res) => {
      let text = '';
      res.on('data', (d) => (text += d)).on('end', () => {
        const raw = res.headers.warning;
        const list = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw];
        // RFC 7234 warn-value: 299 - "text"
        const warnings = list.flatMap((w) => [...w.matchAll(/299 - "((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!.replace(/\\(.)/g, '$1')));
        resolve({ status: res.statusCode ?? 0, warnings, body: JSON.parse(text) as V1Pod });
      });
    });
    req.on('error', reject);
    req.end(JSON.stringify(pod));
  });
}
