import type { Rule } from './types.js';
import { nodeAgentGuard } from './node-agent-guard.js';
import { csiDriverGuard } from './csi-driver-guard.js';
import { istioMetricMerging } from './istio-metric-merging.js';
import { istioNativeSidecarGuard } from './istio-native-sidecar-guard.js';
import { consulActiveGateExclusions } from './consul-activegate-exclusions.js';
import { consulMetricMerging } from './consul-metric-merging.js';
import { meshProxyInstrumentationGuard } from './mesh-proxy-instrumentation-guard.js';

/** Every rule, in the order they run. Order matters only where a later rule reads what an earlier one set. */
export const allRules: readonly Rule[] = [
  nodeAgentGuard,
  csiDriverGuard,
  istioMetricMerging,
  istioNativeSidecarGuard,
  consulActiveGateExclusions,
  consulMetricMerging,
  meshProxyInstrumentationGuard,
];

export type { Rule, RuleContext, RuleResult, Change } from './types.js';
