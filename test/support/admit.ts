/** Runs the admission core without a socket, for rule case tables. */
import { expect } from 'vitest';
import { admit, type AdmissionResult } from '../../src/admission/handler.js';
import { staticClusterView, type ClusterView } from '../../src/cluster/view.js';
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { allRules } from '../../src/rules/index.js';
import type { Rule } from '../../src/rules/types.js';
import { applyOps, review, type Op } from './review.js';

export interface AdmitOptions {
  /** YAML config text, e.g. 'dryRun: true'. */
  configYaml?: string;
  config?: Config;
  /** Namespace name → labels; a namespace not listed is "absent". */
  namespaces?: Record<string, Record<string, string>>;
  activeGateIPs?: readonly string[] | null;
  cluster?: ClusterView;
  rules?: readonly Rule[];
  namespace?: string;
}

export async function admitPod(pod: unknown, opts: AdmitOptions = {}): Promise<{ result: AdmissionResult; ops: Op[]; patched: unknown }> {
  const config = opts.config ?? parseConfig(opts.configYaml ?? '', {});
  const cluster = opts.cluster ?? staticClusterView(opts.namespaces ?? {}, opts.activeGateIPs === undefined ? [] : opts.activeGateIPs);
  const req = review(pod, opts.namespace ? { namespace: opts.namespace } : {}).request as Parameters<typeof admit>[0];
  const result = await admit(req, { config, cluster, rules: opts.rules ?? allRules });
  const ops = result.ops as Op[];
  const patched = ops.length ? applyOps(pod, ops) : pod;
  return { result, ops, patched };
}

/** Admits, applies the patch, admits the output again and expects no ops. Returns the first run. */
export async function admitAndConverge(pod: unknown, opts: AdmitOptions = {}) {
  const first = await admitPod(pod, opts);
  const second = await admitPod(first.patched, opts);
  expect(second.ops, 'the webhook on its own output must return no ops').toEqual([]);
  return first;
}
