/**
 * dynatraceWillInject with discovered webhook configurations (issue 15): no Dynatrace pod
 * webhook seeing the pod means no injection; otherwise the operator's namespace label decides,
 * as before, and the reason names the webhook.
 */
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { podOf, type PodCase } from '../../test/support/istio.js';
import { DYNATRACE_HELM, DYNATRACE_OLM } from '../../test/support/peer-webhooks.js';
import { inspectPod } from '../admission/pod.js';
import type { NamespaceLookup } from '../cluster/view.js';
import { knownDiscovery, summarizeConfiguration, type WebhookDiscovery } from '../cluster/webhooks.js';
import { parseConfig } from '../config/load.js';
import { dynatraceWillInject } from './dynatrace.js';

const DT_NS = 'dynakube.internal.dynatrace.com/instance';
const discovery = (...texts: string[]): WebhookDiscovery => knownDiscovery(texts.map((t) => summarizeConfiguration(parse(t))!));

function verdict(c: PodCase, ns: NamespaceLookup, webhooks: WebhookDiscovery | undefined) {
  const inspected = inspectPod(podOf(c), c.namespace ?? 'shop');
  if (!inspected.ok) throw new Error(inspected.reason);
  return dynatraceWillInject(inspected.pod, { config: parseConfig(''), namespace: ns, activeGateIPs: [], ...(webhooks ? { webhooks } : {}) });
}

const known = (labels: Record<string, string>): NamespaceLookup => ({ state: 'known', labels });

describe('dynatrace: injection with discovered webhooks', () => {
  it.each<[string, PodCase, NamespaceLookup, WebhookDiscovery | undefined, boolean, RegExp]>([
    ['Helm webhook, labelled namespace', {}, known({ [DT_NS]: 'dk' }), discovery(DYNATRACE_HELM), true, /^namespace is labelled .* \(Dynatrace webhook dynatrace-webhook\/webhook.pod.dynatrace.com matches: namespace label dynakube.internal.dynatrace.com\/instance=dk\)$/],
    ['Helm webhook, unlabelled namespace', {}, known({}), discovery(DYNATRACE_HELM), false, /^no Dynatrace webhook sees the pod/],
    ['a webhook whose selector skips a labelled namespace', {}, known({ [DT_NS]: 'dk', team: 'x' }), discovery(DYNATRACE_HELM.replace('operator: Exists', 'operator: Exists\n    - key: team\n      operator: NotIn\n      values: [x]')), false, /namespace label team=x/],
    ['OLM sees every namespace, the label still decides', {}, known({}), discovery(DYNATRACE_OLM), false, /^namespace is not labelled .*\(Dynatrace webhook webhook.pod.dynatrace.com-7x4kq\/webhook.pod.dynatrace.com matches/],
    ['no Dynatrace webhook found: the label alone, saying so', {}, known({ [DT_NS]: 'dk' }), discovery(), true, /\(from the namespace label alone: no Dynatrace webhook found/],
    ['the opt-out comes first', { annotations: { 'dynatrace.com/inject': 'false' } }, known({ [DT_NS]: 'dk' }), discovery(DYNATRACE_HELM), false, /^dynatrace.com\/inject parses as false$/],
    ['without discovery: as before', {}, known({ [DT_NS]: 'dk' }), undefined, true, /^namespace is labelled dynakube.internal.dynatrace.com\/instance$/],
  ])('%s', (_, c, ns, webhooks, yes, reason) => {
    const v = verdict(c, ns, webhooks);
    expect(v.yes).toBe(yes);
    expect(v.reason).toMatch(reason);
  });
});
