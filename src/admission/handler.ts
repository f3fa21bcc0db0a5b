/**
 * The admission core: a decoded AdmissionReview in, an AdmissionReview response out.
 * No HTTP here, so it is testable without a socket (like controller-runtime's
 * admission.Handler). It never answers allowed: false: mesh-guard is a helper and must
 * not block pods.
 */
import type { ClusterView, NamespaceLookup } from '../cluster/view.js';
import type { Config } from '../config/schema.js';
import type { Rule } from '../rules/types.js';
import { parseGoBool, SKIP_ANNOTATION } from './annotations.js';
import { evaluateRules, type RuleOutcome } from './engine.js';
import { describeChange, type PatchOperation } from './patch.js';
import { inspectPod, isObject, type PodView } from './pod.js';

export interface AdmissionRequest {
  uid: string;
  kind?: { group?: string; version?: string; kind?: string };
  resource?: { group?: string; version?: string; resource?: string };
  subResource?: string;
  operation?: string;
  namespace?: string;
  name?: string;
  object?: unknown;
  dryRun?: boolean;
}

export interface AdmissionResponse {
  uid: string;
  allowed: true;
  patchType?: 'JSONPatch';
  patch?: string;
  auditAnnotations?: Record<string, string>;
  warnings?: string[];
}

export interface AdmissionReviewResponse {
  apiVersion: 'admission.k8s.io/v1';
  kind: 'AdmissionReview';
  response: AdmissionResponse;
}

export type Outcome = 'patched' | 'unchanged' | 'opted-out' | 'not-a-pod-create' | 'unexpected-shape';

export interface AdmissionResult {
  readonly review: AdmissionReviewResponse;
  readonly outcome: Outcome;
  readonly ops: readonly PatchOperation[];
  readonly outcomes: readonly RuleOutcome[];
  /** Fields for the one admission log line: no pod content beyond names and the keys we touch. */
  readonly log: AdmissionLogLine;
}

/**
 * The fields of the admission log line. One class, every field always present (unset ones
 * are undefined, which pino leaves out), so every line object has the same hidden class:
 * objects of varying shapes made the hot path's property stores megamorphic.
 */
export class AdmissionLogLine {
  kind: string | undefined = undefined;
  operation: string | undefined = undefined;
  pod: string | undefined = undefined;
  reason: string | undefined = undefined;
  outcome: Outcome | undefined = undefined;
  ops = 0;
  rules: Array<Record<string, unknown>> | undefined = undefined;
  /** Set by the transport. */
  dryRun: true | undefined = undefined;
  durationMs: number | undefined = undefined;
  constructor(
    readonly uid: string,
    public namespace: string | undefined,
  ) {}
}

export type DecodeResult = { ok: true; request: AdmissionRequest } | { ok: false; error: string };


/** Checks the envelope; the message names the problem and becomes the HTTP 400 body. */
export function decodeReview(body: unknown): DecodeResult {
  if (!isObject(body)) return { ok: false, error: 'body is not a JSON object' };
  if (body.apiVersion !== 'admission.k8s.io/v1' || body.kind !== 'AdmissionReview') {
    return { ok: false, error: 'expected apiVersion admission.k8s.io/v1 and kind AdmissionReview' };
  }
  const request = body.request;
  if (!isObject(request)) return { ok: false, error: 'AdmissionReview has no request' };
  if (typeof request.uid !== 'string' || request.uid === '') return { ok: false, error: 'request.uid is missing or not a string' };
  return { ok: true, request: request as unknown as AdmissionRequest };
}

export interface AdmitDeps {
  readonly config: Config;
  readonly cluster: ClusterView;
  readonly rules: readonly Rule[];
}

/**
 * Admits one request. The result comes back directly when everything needed is in memory
 * (the usual case), and as a promise only when a namespace lookup has to wait on the API
 * server: a promise per review would cost every admission a trip through the microtask queue.
 */
export function admit(request: AdmissionRequest, deps: AdmitDeps): AdmissionResult | Promise<AdmissionResult> {
  const line = new AdmissionLogLine(request.uid, typeof request.namespace === 'string' ? request.namespace : undefined);
  if (!isPodCreate(request)) {
    line.kind = typeof request.kind?.kind === 'string' ? request.kind.kind : undefined;
    line.operation = typeof request.operation === 'string' ? request.operation : undefined;
    return done('not-a-pod-create', [], [], [], line);
  }
  const inspected = inspectPod(request.object, request.namespace);
  if (!inspected.ok) {
    line.reason = inspected.reason;
    return done('unexpected-shape', [], [], [], line);
  }
  const pod = inspected.pod;
  line.namespace = pod.namespace || line.namespace;
  line.pod = pod.displayName;
  if (parseGoBool(pod.annotations.get(SKIP_ANNOTATION)) === true) {
    line.reason = `${SKIP_ANNOTATION} is true`;
    return done('opted-out', [], [], [], line);
  }
  const namespace = pod.namespace ? deps.cluster.namespaceLabels(pod.namespace) : NO_NAMESPACE;
  if (namespace instanceof Promise) return namespace.then((ns) => evaluate(pod, ns, deps, line));
  return evaluate(pod, namespace, deps, line);
}

const NO_NAMESPACE: NamespaceLookup = Object.freeze({ state: 'unknown', reason: 'the request names no namespace' });

function evaluate(pod: PodView, namespace: NamespaceLookup, deps: AdmitDeps, line: AdmissionLogLine): AdmissionResult {
  const context = { config: deps.config, namespace, activeGateIPs: deps.cluster.activeGateServiceIPs(), webhooks: deps.cluster.mutatingWebhooks?.(), settings: deps.cluster.peerSettings?.() };
  const evaluation = evaluateRules(pod, context, deps.rules);
  const outcome: Outcome = evaluation.ops.length > 0 ? 'patched' : 'unchanged';
  return done(outcome, evaluation.ops, evaluation.outcomes, evaluation.warnings, line);
}

function isPodCreate(r: AdmissionRequest): boolean {
  const kindOk = r.kind?.kind === 'Pod' && (r.kind.group ?? '') === '';
  const resourceOk = r.resource === undefined || (r.resource.resource === 'pods' && (r.resource.group ?? '') === '');
  return r.operation === 'CREATE' && kindOk && resourceOk && !r.subResource;
}

function done(
  outcome: Outcome,
  ops: PatchOperation[],
  outcomes: readonly RuleOutcome[],
  warnings: readonly string[],
  log: AdmissionLogLine,
): AdmissionResult {
  const response: AdmissionResponse = { uid: log.uid, allowed: true };
  if (warnings.length) response.warnings = [...warnings];
  if (ops.length > 0) {
    response.patchType = 'JSONPatch';
    response.patch = Buffer.from(JSON.stringify(ops)).toString('base64');
  }
  log.outcome = outcome;
  log.ops = ops.length;
  if (outcomes.length) log.rules = outcomes.map(logOutcome);
  const audit = auditAnnotations(outcomes);
  if (audit) response.auditAnnotations = audit;
  return {
    review: { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response },
    outcome,
    ops,
    outcomes,
    log,
  };
}

function logOutcome(o: RuleOutcome): Record<string, unknown> {
  return {
    rule: o.rule,
    mode: o.mode,
    ...(o.changes.length ? { changes: o.changes.map(describeChange) } : {}),
    ...(o.reasons.length ? { reasons: o.reasons } : {}),
    ...(o.warnings.length ? { warnings: o.warnings } : {}),
    ...(o.error ? { error: o.error } : {}),
  };
}

/**
 * Says in the API server's audit log which rules changed the pod, and which would have in
 * dry-run. Keys are ≤63 characters with no "/" (the API server prefixes the webhook name).
 * Values depend only on the pod, so a re-invocation on the same pod gives the same value,
 * and on our own output gives none.
 */
function auditAnnotations(outcomes: readonly RuleOutcome[]): Record<string, string> | undefined {
  const changed = outcomes.filter((o) => o.changes.length > 0);
  const enforced = changed.filter((o) => o.mode === 'enforce').map((o) => o.rule);
  const dry = changed.filter((o) => o.mode === 'dry-run').map((o) => o.rule);
  if (!enforced.length && !dry.length) return undefined;
  const out: Record<string, string> = {};
  if (enforced.length) out['mutated-by'] = enforced.join(',');
  if (dry.length) out['dry-run-would-mutate'] = dry.join(',');
  return out;
}
