/**
 * Node-agent deadlock guard (istio.md §3, dynatrace.md §1 and §7, consul.md §5 and §7).
 *
 * Mesh node agents must start before anything meshed on a new node. If Dynatrace injects
 * OneAgent into one, it waits for the CSI driver's volume, while the CSI driver pod waits
 * for the mesh's CNI: neither starts. Opting the node agents out of OneAgent breaks the loop.
 * Detection ignores the namespace (istio-cni runs in kube-system on GKE/OpenShift) and the
 * image registry host; at admission metadata.name is usually empty, generateName is set.
 */
import { DT_INJECT, DT_ONEAGENT_INJECT, parseGoBool } from '../admission/annotations.js';
import { hasImage, type PodView } from '../admission/pod.js';
import { nodeAgentOneAgentRisk } from './dynatrace.js';
import type { Change, Rule, RuleResult } from './types.js';
import { NOTHING } from './types.js';

export function detectNodeAgent(pod: PodView, extraSelectors: readonly Readonly<Record<string, string>>[]): string | undefined {
  const label = (k: string) => pod.labels.get(k);
  if (label('k8s-app') === 'istio-cni-node') return 'Istio CNI node agent (label k8s-app=istio-cni-node)';
  if (pod.name.startsWith('istio-cni-node-') || pod.generateName.startsWith('istio-cni-node-')) {
    return 'Istio CNI node agent (name istio-cni-node-*)';
  }
  if (hasImage(pod, 'install-cni')) return 'Istio CNI node agent (install-cni image)';
  if (label('app') === 'ztunnel' && hasImage(pod, 'ztunnel')) return 'Istio ztunnel (label app=ztunnel, ztunnel image)';
  if (label('app') === 'consul' && label('component') === 'cni') return 'Consul CNI node agent (labels app=consul, component=cni)';
  if (label('k8s-app') === 'linkerd-cni') return 'linkerd-cni node agent (label k8s-app=linkerd-cni)';
  for (const selector of extraSelectors) {
    const entries = Object.entries(selector);
    if (entries.every(([k, v]) => label(k) === v)) {
      return `node agent by configured selector ${entries.map(([k, v]) => `${k}=${v}`).join(',')}`;
    }
  }
  return undefined;
}

function optOut(pod: PodView, key: string, why: string): { change?: Change; reason: string } {
  const current = pod.annotations.get(key);
  const parsed = parseGoBool(current);
  if (parsed === false) return { reason: `${key} already parses as false` };
  const reason =
    parsed === true ? `${why}; overriding ${key}=${JSON.stringify(current)}, which would deadlock the node`
    : current !== undefined ? `${why}; ${key}=${JSON.stringify(current)} is not a Go bool, so Dynatrace would inject`
    : why;
  return { change: { kind: 'annotation', key, value: 'false', reason }, reason };
}

export const nodeAgentGuard: Rule = {
  name: 'node-agent-guard',
  summary: 'Keeps OneAgent out of mesh node-agent pods (Istio CNI, ztunnel, Consul CNI, linkerd-cni) to prevent the CSI/CNI deadlock on new nodes.',
  evaluate(pod, ctx): RuleResult {
    const detected = detectNodeAgent(pod, ctx.config.nodeAgentGuard.extraSelectors);
    if (!detected) return NOTHING;
    const agent = `${detected}: ${nodeAgentOneAgentRisk(pod)}`;
    const results = [optOut(pod, DT_ONEAGENT_INJECT, agent)];
    if (ctx.config.nodeAgentGuard.disableAllDynatrace) results.push(optOut(pod, DT_INJECT, agent));
    return {
      changes: results.flatMap((r) => (r.change ? [r.change] : [])),
      reasons: results.map((r) => r.reason),
    };
  },
};
