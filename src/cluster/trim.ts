/**
 * What the cluster view's Namespace and Service informers keep of each object. A Namespace as the
 * API server sends it carries managedFields, annotations (kubectl's last-applied copy among them),
 * spec.finalizers and status, none of it read here. Trimmed before client-node's ListWatch cache
 * stores the object (list items and watch events alike), so the cache holds only this;
 * bench/RESULTS.md ("Scale") has what it buys.
 *
 * Kept: metadata.name/namespace (the cache's keys), resourceVersion (the cache skips an update with
 * the same one; a watch resumes from the last one), uid, and what the view reads: a namespace's
 * labels (rules' namespace conditions), a Service's ClusterIPs (ActiveGate detection, clusterIPsOf).
 */
import type { V1Namespace, V1ObjectMeta, V1Service } from '@kubernetes/client-node';

function identity(md: V1ObjectMeta | undefined): V1ObjectMeta {
  const out: V1ObjectMeta = {};
  if (md?.name !== undefined) out.name = md.name;
  if (md?.namespace !== undefined) out.namespace = md.namespace;
  if (md?.uid !== undefined) out.uid = md.uid;
  if (md?.resourceVersion !== undefined) out.resourceVersion = md.resourceVersion;
  return out;
}

/** A Namespace as the view needs it: its identity and labels. */
export function trimNamespace(ns: V1Namespace): V1Namespace {
  const metadata = identity(ns?.metadata);
  if (ns?.metadata?.labels) metadata.labels = ns.metadata.labels;
  return { metadata };
}

/** A Service as ActiveGate detection needs it: its identity and ClusterIPs. */
export function trimService(svc: V1Service): V1Service {
  const spec = svc?.spec;
  const out: V1Service = { metadata: identity(svc?.metadata) };
  if (spec) {
    out.spec = {};
    if (spec.clusterIP !== undefined) out.spec.clusterIP = spec.clusterIP;
    if (spec.clusterIPs !== undefined) out.spec.clusterIPs = spec.clusterIPs;
  }
  return out;
}
