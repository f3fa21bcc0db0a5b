/**
 * The API server's audit log (startControlPlane({ auditPolicy })), read back as events. The
 * mutating dispatcher records every webhook call there (apiserver pkg/admission/plugin/webhook/
 * mutating/dispatcher.go): `mutation.webhook.admission.k8s.io/round_{r}_index_{i}` at Metadata
 * level says whether the call changed the object, `patch.webhook.admission.k8s.io/...` at Request
 * level holds the patch itself. Round 1 is the reinvocation round.
 */
import fs from 'node:fs';

/** Pods at Request level (so the patch annotations are kept), everything else off. */
export const POD_AUDIT_POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Request
    resources: [{ group: "", resources: [pods] }]
  - level: None
`;

export interface AuditEvent {
  /** One per request: a watch's ResponseStarted and ResponseComplete share it. */
  auditID?: string;
  verb: string;
  stage?: string;
  /** Path and query string, as the client sent them. */
  requestURI?: string;
  user?: { username: string };
  objectRef?: { resource?: string; namespace?: string; name?: string };
  /** The HTTP status the API server answered with (403 for an RBAC refusal). */
  responseStatus?: { code?: number };
  annotations?: Record<string, string>;
}

/** One mutating webhook call as the dispatcher recorded it. */
export interface WebhookCall {
  round: number;
  index: number;
  configuration: string;
  webhook: string;
  mutated: boolean;
  /** The JSONPatch the webhook answered with; only when it changed the object. */
  patch?: unknown[];
}

export function auditEvents(file: string): AuditEvent[] {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as AuditEvent);
}

/** The completed audit events of `verb` on pod namespace/name written so far, oldest first. */
export function podEvents(file: string, verb: string, namespace: string, name: string): AuditEvent[] {
  return auditEvents(file).filter(
    (e) => e.verb === verb && e.stage === 'ResponseComplete' && e.objectRef?.resource === 'pods' && e.objectRef.namespace === namespace && e.objectRef.name === name,
  );
}

/** Every webhook call of an event, in the order the API server made them (round, then index). */
export function webhookCalls(event: AuditEvent): WebhookCall[] {
  const calls: WebhookCall[] = [];
  const a = event.annotations ?? {};
  for (const [key, value] of Object.entries(a)) {
    const m = /^mutation\.webhook\.admission\.k8s\.io\/round_(\d+)_index_(\d+)$/.exec(key);
    if (!m) continue;
    const v = JSON.parse(value) as { configuration: string; webhook: string; mutated: boolean };
    const patch = a[`patch.webhook.admission.k8s.io/round_${m[1]}_index_${m[2]}`];
    calls.push({
      round: Number(m[1]),
      index: Number(m[2]),
      ...v,
      ...(patch ? { patch: (JSON.parse(patch) as { patch: unknown[] }).patch } : {}),
    });
  }
  return calls.sort((x, y) => x.round - y.round || x.index - y.index);
}
