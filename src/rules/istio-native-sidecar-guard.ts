/**
 * Native-sidecar guard (istio.md §2, dynatrace.md §1, peers-2026-12.md §1).
 *
 * The Dynatrace Operator does not support Istio native sidecars (istio-proxy as an init
 * container with restartPolicy: Always), which Istio ≥1.27 turns on by default when the
 * kubelets are ≥1.33. When a pod will get both an Istio sidecar and OneAgent, this rule sets
 * the per-pod switch `sidecar.istio.io/nativeSidecar: "false"` (Istio ≥1.24; older versions
 * ignore it), and with it `holdApplicationUntilProxyStarts: true` in `proxy.istio.io/config`:
 * a classic sidecar starts beside the app, not before it, unless that is set
 * (injection-template.yaml `$holdProxy`, which applies it only when the sidecar is not native),
 * and OneAgent's first connection fails while istio-proxy is not ready
 * (Dynatrace/dynatrace-operator#1819).
 *
 * A pod that runs to completion (restartPolicy Never or OnFailure: every Job and CronJob pod)
 * keeps its native sidecar by default: a classic istio-proxy keeps running after the app exits,
 * so the pod would never complete. It gets a warning instead, because OneAgent and native
 * sidecars stay unsupported together (`istio.runToCompletionPods`).
 *
 * Both annotations must be on the pod before Istio's webhook runs, so once
 * `sidecar.istio.io/status` exists the rule changes nothing: too late, and a re-invocation on
 * its own output stays a no-op.
 */
import {
  ISTIO_HOLD_APPLICATION,
  ISTIO_INJECT,
  ISTIO_NATIVE_SIDECAR,
  ISTIO_PROXY_CONFIG,
  ISTIO_PROXY_CONTAINER,
  ISTIO_REV,
  ISTIO_STATUS,
  istioProxyConfigWithHold,
  parseGoBool,
} from '../admission/annotations.js';
import { runsToCompletion, type PodView } from '../admission/pod.js';
import { dynatraceOptOutKey, dynatraceWillInject } from './dynatrace.js';
import { istioSidecarVerdict } from './istio.js';
import type { Change, Rule, RuleContext, RuleResult } from './types.js';
import { NOTHING, skip } from './types.js';

const q = JSON.stringify;

/** The warnings kubectl shows. Fixed text, no pod content; each says what the user can do. */
export const WARN_KEPT_NATIVE =
  'mesh-guard: this pod runs to completion, so it keeps its Istio native sidecar, which Dynatrace OneAgent does not support; ' +
  'opt the pod out of OneAgent (oneagent.dynatrace.com/inject: "false") or accept';
export const WARN_CLASSIC_JOB =
  'mesh-guard: this pod runs to completion but gets a classic Istio sidecar (istio.runToCompletionPods: classic), ' +
  'which keeps running after the app exits; the pod completes only if the app stops istio-proxy';
export const WARN_TOO_LATE =
  'mesh-guard: Istio injected a native sidecar before mesh-guard ran, and Dynatrace OneAgent does not support it; ' +
  'make mesh-guard\'s webhook configuration sort first (mesh-guard doctor)';

const keepsNative = (pod: PodView, ctx: RuleContext) => runsToCompletion(pod) && ctx.config.istio.runToCompletionPods === 'keep-native';
const runToCompletionReason = (pod: PodView) => `the pod runs to completion (restartPolicy ${pod.restartPolicy})`;
/** An explicit nativeSidecar value that Istio ≥1.27 reads as native, other than the false-like spellings the guard normalises. */
const ownerAsksNative = (current: string | undefined) => current !== undefined && current !== '' && parseGoBool(current) !== false;

export const istioNativeSidecarGuard: Rule = {
  name: 'istio-native-sidecar-guard',
  summary:
    'Sets sidecar.istio.io/nativeSidecar: "false" and holdApplicationUntilProxyStarts on pods that get both an Istio sidecar and Dynatrace OneAgent, since the Dynatrace Operator does not support native sidecars; run-to-completion pods keep theirs, with a warning.',
  evaluate(pod, ctx): RuleResult {
    if (!ctx.config.istio.nativeSidecarGuard) return NOTHING;
    const current = pod.annotations.get(ISTIO_NATIVE_SIDECAR);
    const dynatrace = dynatraceWillInject(pod, ctx);
    if (pod.annotations.has(ISTIO_STATUS)) return afterIstio(pod, ctx, dynatrace.yes ? dynatrace.reason : undefined);

    const istio = istioSidecarVerdict(pod, ctx);
    if (istio.state === 'no') return NOTHING;
    if (istio.state === 'unknown') {
      // Without namespace labels neither side can be told. Say so only for a pod that asks for a
      // sidecar itself; otherwise every pod would carry this line while the cluster view is off.
      const optedOut = dynatraceOptOutKey(pod) !== undefined;
      const asksForSidecar = pod.labels.get(ISTIO_INJECT) === 'true' || pod.labels.has(ISTIO_REV);
      return optedOut || !asksForSidecar || current === 'false' ? NOTHING : skip(`not acting: ${istio.reason}`);
    }
    if (!dynatrace.yes) return NOTHING;

    const both = `${istio.reason}, and ${dynatrace.reason} (Dynatrace injects OneAgent), which does not support Istio native sidecars`;
    // A classic sidecar already asked for, by us on an earlier pass or by the owner: only the start order is left.
    if (current === 'false') return holdApplication(pod, `${ISTIO_NATIVE_SIDECAR}="false" gives a classic sidecar`, []);
    if (ownerAsksNative(current)) {
      return skip(`${both}; ${ISTIO_NATIVE_SIDECAR}=${q(current)} is set on the pod and left alone`);
    }
    if (keepsNative(pod, ctx)) {
      return {
        changes: [],
        reasons: [`${both}; ${runToCompletionReason(pod)}, so it keeps its native sidecar: a classic istio-proxy would keep it from completing (istio.runToCompletionPods: keep-native)`],
        warnings: [WARN_KEPT_NATIVE],
      };
    }
    const reason =
      current === undefined ? both
      : current === '' ? `${both}; an empty ${ISTIO_NATIVE_SIDECAR} means Istio's default (native on ≥1.27)`
      : `${both}; ${ISTIO_NATIVE_SIDECAR}=${q(current)} means native on Istio ≥1.27, which only honours exactly "false"`;
    const classicJob = runsToCompletion(pod);
    const native: Change = {
      kind: 'annotation',
      key: ISTIO_NATIVE_SIDECAR,
      value: 'false',
      reason: classicJob ? `${reason}; ${runToCompletionReason(pod)} and istio.runToCompletionPods is classic` : reason,
    };
    return holdApplication(pod, 'a classic sidecar starts beside the app', [native], classicJob ? [WARN_CLASSIC_JOB] : []);
  },
};

/** After Istio: nothing can change. A reason only where the outcome is the one the guard exists to prevent. */
function afterIstio(pod: PodView, ctx: RuleContext, dynatrace: string | undefined): RuleResult {
  const native = pod.initContainers.some((c) => c.name === ISTIO_PROXY_CONTAINER);
  if (!native || dynatrace === undefined) return NOTHING;
  // Kept on purpose on the first pass (which warned), or asked for by the owner: no second warning.
  if (keepsNative(pod, ctx)) return skip(`Istio injected a native sidecar, kept because ${runToCompletionReason(pod)}; ${dynatrace}`);
  const current = pod.annotations.get(ISTIO_NATIVE_SIDECAR);
  if (ownerAsksNative(current)) {
    return skip(`Istio injected the native sidecar the pod asked for (${ISTIO_NATIVE_SIDECAR}=${q(current)}); ${dynatrace}`);
  }
  return {
    changes: [],
    reasons: [`Istio already injected a native sidecar (${ISTIO_PROXY_CONTAINER} in initContainers) and ${dynatrace}; too late to opt out, mesh-guard must run before Istio's webhook`],
    warnings: [WARN_TOO_LATE],
  };
}

/**
 * Adds holdApplicationUntilProxyStarts: true to proxy.istio.io/config beside `changes`. The
 * owner's own value, true or false, stays; so does an annotation Istio could not read.
 */
function holdApplication(pod: PodView, why: string, changes: Change[], warnings: readonly string[] = []): RuleResult {
  const reasons = changes.map((c) => c.reason);
  const edit = istioProxyConfigWithHold(pod.annotations.get(ISTIO_PROXY_CONFIG));
  if (edit.kind === 'set') {
    const reason = `${why}: ${ISTIO_HOLD_APPLICATION} in ${ISTIO_PROXY_CONFIG} starts istio-proxy before the app, so OneAgent's first connection does not fail`;
    changes.push({ kind: 'annotation', key: ISTIO_PROXY_CONFIG, value: edit.value, reason });
    reasons.push(reason);
  } else if (edit.kind === 'present') {
    if (changes.length === 0) return NOTHING; // the owner's or our own earlier answer: nothing left to say
    reasons.push(`${ISTIO_PROXY_CONFIG} sets ${edit.value}, left as it is`);
  } else {
    reasons.push(`${ISTIO_PROXY_CONFIG} ${edit.why}, so it is left alone and the app may start before istio-proxy`);
  }
  return { changes, reasons, ...(warnings.length ? { warnings } : {}) };
}
