/**
 * "Does this MutatingWebhookConfiguration's webhook see this pod CREATE?", decided the way the
 * API server decides it, and which of those webhooks belong to Istio, Consul and Dynatrace.
 *
 * The API server (k8s.io/apiserver v0.36.3, `pkg/admission/plugin/webhook/generic/webhook.go`
 * `Webhook.ShouldCallHook`) calls a webhook when, in this order:
 * 1. its namespaceSelector matches the labels of the request's namespace
 *    (`predicates/namespace/matcher.go` `MatchNamespaceSelector`: an empty selector matches without
 *    looking the namespace up; a namespace that does not exist answers NotFound, so the pod is not
 *    created at all);
 * 2. its objectSelector matches the object's labels (`predicates/object/matcher.go`
 *    `MatchObjectSelector`: the new object or, for UPDATE/DELETE, the old one; a pod CREATE has no
 *    old object);
 * 3. one of its rules matches (`predicates/rules/rules.go` `Matcher.Matches`: scope, operation,
 *    group, version, resource, each exact or `*`; `pods/*` also covers the pod itself, because
 *    `sub == "*"` matches the empty subresource). `matchPolicy: Equivalent` adds nothing for pods,
 *    which exist in one group and version only;
 * 4. its matchConditions, CEL expressions, all hold. mesh-guard does not evaluate CEL: a webhook
 *    that passes 1-3 and has matchConditions is "maybe", and the reason says so.
 *
 * Absent selectors are the empty selector, because the API server defaults them when it stores the
 * configuration (kubernetes `pkg/apis/admissionregistration/v1/defaults.go`
 * `SetDefaults_MutatingWebhook`), and an absent rule scope is `*` (`SetDefaults_Rule`). A namespace's
 * labels always include `kubernetes.io/metadata.name`, which the API server sets on every namespace
 * (kubernetes `pkg/registry/core/namespace/strategy.go` `Canonicalize`); it is added here when the
 * input lacks it (hand-written preview input, objects built in tests).
 *
 * The peers' webhooks are found by configuration and webhook name, as their installers write them:
 * - Istio (istio `manifests/charts/istio-control/istio-discovery/templates/mutatingwebhook.yaml`,
 *   `revision-tags-mwc.yaml`): configurations `istio-sidecar-injector[-<rev>][-<ns>]` and
 *   `istio-revision-tag-<tag>[-<ns>]`, webhooks `[rev.]namespace.`, `[rev.]object.`, `auto.` +
 *   `sidecar-injector.istio.io`;
 * - Consul (hashicorp/consul-k8s `charts/consul/templates/connect-inject-mutatingwebhookconfiguration.yaml`):
 *   configuration `<fullname>-connect-injector`, whose pod webhook is
 *   `<fullname>-connect-injector.consul.hashicorp.com` (the other webhooks there mutate Consul CRDs);
 * - Dynatrace (Dynatrace/dynatrace-operator `config/helm/chart/default/templates/Common/webhook/
 *   mutatingwebhookconfiguration.yaml`; OLM installs, research dynatrace.md §2): configuration
 *   `dynatrace-webhook` or `webhook.pod.dynatrace.com-<random>`, webhook `webhook.pod.dynatrace.com`.
 *
 * Pure: no I/O. The cluster view keeps only what `trimConfiguration` returns and compiles it once
 * per change with `summarizeConfiguration`.
 */
import type { NamespaceLookup } from './view.js';
import {
  describeRequirement,
  EVERYTHING,
  firstFailed,
  parseSelector,
  selectorString,
  type InvalidSelector,
  type LabelSelectorSpec,
  type Labels,
  type Selector,
} from './selectors.js';

export type Peer = 'istio' | 'consul' | 'dynatrace';
export const PEERS: readonly Peer[] = ['istio', 'consul', 'dynatrace'];
export const PEER_TITLE: Readonly<Record<Peer, string>> = { istio: 'Istio', consul: 'Consul', dynatrace: 'Dynatrace' };

/** The label the API server puts on every namespace. */
export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';

export interface WebhookRule {
  readonly operations: readonly string[];
  readonly apiGroups: readonly string[];
  readonly apiVersions: readonly string[];
  readonly resources: readonly string[];
  /** `*`, `Namespaced` or `Cluster`; defaulted to `*`. */
  readonly scope: string;
}

/** What mesh-guard keeps of one webhook: what matching needs, nothing else (no caBundle, no CEL). */
export interface WebhookSummary {
  readonly configuration: string;
  readonly name: string;
  readonly peer: Peer | undefined;
  /** clientConfig.service; null when the webhook is called by URL. */
  readonly service: { readonly namespace: string; readonly name: string } | null;
  readonly rules: readonly WebhookRule[];
  readonly namespaceSelector: Selector | InvalidSelector;
  readonly objectSelector: Selector | InvalidSelector;
  /** Names of the matchConditions; their CEL expressions are not kept. */
  readonly matchConditions: readonly string[];
}

export interface WebhookConfigurationSummary {
  readonly name: string;
  readonly webhooks: readonly WebhookSummary[];
}

/** What the cluster view knows about the mutating webhook configurations. */
export type WebhookDiscovery =
  | {
      readonly state: 'known';
      /** Sorted by name, byte-wise: the order in which the API server calls them. */
      readonly configurations: readonly WebhookConfigurationSummary[];
      /** Each peer's webhooks, in calling order. */
      readonly peers: Readonly<Record<Peer, readonly WebhookSummary[]>>;
    }
  | { readonly state: 'unknown'; readonly reason: string };

export type Seen = 'yes' | 'no' | 'maybe' | 'unknown';

export interface WebhookVerdict {
  readonly state: Seen;
  /** `<configuration>/<webhook>`. */
  readonly webhook: string;
  /** Why, without the webhook's name: "matches: namespace label istio.io/rev=canary". */
  readonly reason: string;
}

export interface PeerVerdict {
  readonly peer: Peer;
  readonly state: Seen;
  /** One sentence naming the peer, the deciding webhook and what matched or not. */
  readonly reason: string;
  /** Every webhook of the peer that covers pod CREATE, in calling order. */
  readonly webhooks: readonly WebhookVerdict[];
}

/** The parts of a pod CREATE that the API server's matchers read. */
export interface PodCreate {
  readonly namespace: string;
  readonly labels: Labels;
}

// ---- reading configurations ---------------------------------------------------------------------

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);

/**
 * The fields of a MutatingWebhookConfiguration that matching and the informer's bookkeeping need,
 * in the object's own shape, so the informer's cache never holds caBundles or CEL text.
 */
export function trimConfiguration<T extends { metadata?: unknown }>(obj: T): T {
  const o: Obj = isObj(obj) ? obj : {};
  const md = isObj(o['metadata']) ? o['metadata'] : {};
  const metadata: Obj = {};
  for (const k of ['name', 'uid', 'resourceVersion']) if (md[k] !== undefined) metadata[k] = md[k];
  const webhooks = Array.isArray(o['webhooks'])
    ? o['webhooks'].filter(isObj).map((w) => {
        const cc = isObj(w['clientConfig']) ? w['clientConfig'] : {};
        const svc = isObj(cc['service']) ? cc['service'] : undefined;
        return {
          name: w['name'],
          clientConfig: svc ? { service: { namespace: svc['namespace'], name: svc['name'] } } : {},
          rules: w['rules'],
          namespaceSelector: w['namespaceSelector'],
          objectSelector: w['objectSelector'],
          matchConditions: Array.isArray(w['matchConditions']) ? w['matchConditions'].filter(isObj).map((c) => ({ name: c['name'] })) : undefined,
        };
      })
    : [];
  return { ...(o['kind'] ? { kind: o['kind'] } : {}), ...(o['apiVersion'] ? { apiVersion: o['apiVersion'] } : {}), metadata, webhooks } as unknown as T;
}

/** Reads a MutatingWebhookConfiguration (full or trimmed); undefined when it has no name. */
export function summarizeConfiguration(obj: unknown): WebhookConfigurationSummary | undefined {
  if (!isObj(obj) || !isObj(obj['metadata'])) return undefined;
  const configuration = str(obj['metadata']['name']);
  if (!configuration) return undefined;
  const webhooks: WebhookSummary[] = [];
  for (const w of Array.isArray(obj['webhooks']) ? obj['webhooks'] : []) {
    if (!isObj(w)) continue;
    const name = str(w['name']) ?? '';
    const cc = isObj(w['clientConfig']) ? w['clientConfig'] : {};
    const svc = isObj(cc['service']) ? cc['service'] : undefined;
    const service = svc ? Object.freeze({ namespace: str(svc['namespace']) ?? '', name: str(svc['name']) ?? '' }) : null;
    const rules = (Array.isArray(w['rules']) ? w['rules'] : []).filter(isObj).map(
      (r): WebhookRule =>
        Object.freeze({
          operations: strings(r['operations']),
          apiGroups: strings(r['apiGroups']),
          apiVersions: strings(r['apiVersions']),
          resources: strings(r['resources']),
          scope: str(r['scope']) ?? '*',
        }),
    );
    webhooks.push(
      Object.freeze({
        configuration,
        name,
        peer: peerOf(configuration, name),
        service,
        rules: Object.freeze(rules),
        namespaceSelector: defaultedSelector(w['namespaceSelector']),
        objectSelector: defaultedSelector(w['objectSelector']),
        matchConditions: Object.freeze(
          (Array.isArray(w['matchConditions']) ? w['matchConditions'] : []).map((c) => (isObj(c) ? (str(c['name']) ?? '') : '')),
        ),
      }),
    );
  }
  return Object.freeze({ name: configuration, webhooks: Object.freeze(webhooks) });
}

/** SetDefaults_MutatingWebhook: an absent selector is stored as `{}`, which selects everything. */
function defaultedSelector(v: unknown): Selector | InvalidSelector {
  if (v === undefined || v === null) return EVERYTHING;
  return parseSelector(v as LabelSelectorSpec);
}

const ISTIO_CONFIGURATION = /^istio-(sidecar-injector(-.+)?|revision-tag-.+)$/;
const ISTIO_WEBHOOK = /^((rev\.)?(namespace|object)\.|auto\.)sidecar-injector\.istio\.io$/;

/** Which peer a webhook belongs to, from its configuration's name and its own. */
export function peerOf(configuration: string, webhook: string): Peer | undefined {
  if (ISTIO_CONFIGURATION.test(configuration) && ISTIO_WEBHOOK.test(webhook)) return 'istio';
  if (configuration.endsWith('-connect-injector') && webhook === `${configuration}.consul.hashicorp.com`) return 'consul';
  if ((configuration === 'dynatrace-webhook' || configuration.startsWith('webhook.pod.dynatrace.com-')) && webhook === 'webhook.pod.dynatrace.com') {
    return 'dynatrace';
  }
  return undefined;
}

const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

/** A known discovery from summaries: sorted as the API server calls them, grouped by peer. */
export function knownDiscovery(configurations: Iterable<WebhookConfigurationSummary>): WebhookDiscovery {
  const sorted = [...configurations].sort((a, b) => byteOrder(a.name, b.name));
  const peers: Record<Peer, WebhookSummary[]> = { istio: [], consul: [], dynatrace: [] };
  for (const c of sorted) for (const w of c.webhooks) if (w.peer) peers[w.peer].push(w);
  for (const p of PEERS) Object.freeze(peers[p]);
  return Object.freeze({ state: 'known', configurations: Object.freeze(sorted), peers: Object.freeze(peers) });
}

// ---- matching -----------------------------------------------------------------------------------

/** rules.Matcher.Matches for the attributes of a pod CREATE: v1 pods, no subresource, namespaced. */
export function ruleCoversPodCreate(r: WebhookRule): boolean {
  const any = (items: readonly string[], want: string) => items.some((i) => i === '*' || i === want);
  const scope = r.scope === '*' || r.scope === 'Namespaced';
  const resource = r.resources.some((rs) => {
    const slash = rs.indexOf('/');
    const res = slash === -1 ? rs : rs.slice(0, slash);
    const sub = slash === -1 ? '' : rs.slice(slash + 1);
    return (res === '*' || res === 'pods') && (sub === '*' || sub === '');
  });
  return scope && any(r.operations, 'CREATE') && any(r.apiGroups, '') && any(r.apiVersions, 'v1') && resource;
}

export function coversPodCreate(w: WebhookSummary): boolean {
  return w.rules.some(ruleCoversPodCreate);
}

/** What ShouldCallHook answers for this webhook and this pod CREATE. */
export function webhookSeesPodCreate(w: WebhookSummary, pod: PodCreate, ns: NamespaceLookup): WebhookVerdict {
  const webhook = `${w.configuration}/${w.name}`;
  const verdict = (state: Seen, reason: string): WebhookVerdict => ({ state, webhook, reason });
  if (!coversPodCreate(w)) return verdict('no', 'its rules do not cover pod CREATE');

  const matched: string[] = [];
  let unknown: string | undefined;

  const nsSel = w.namespaceSelector;
  if (!nsSel.ok) unknown = invalidReason('namespaceSelector', nsSel);
  else if (!nsSel.everything) {
    if (ns.state === 'unknown') unknown = `namespace labels unknown (${ns.reason})`;
    else if (ns.state === 'absent') return verdict('no', `namespace ${pod.namespace} does not exist, so the API server does not create the pod`);
    else {
      const labels = withNameLabel(ns.labels, pod.namespace);
      const failed = firstFailed(nsSel, labels);
      if (failed) return verdict('no', `namespaceSelector does not match: ${describeRequirement(failed, labels, 'namespace')}`);
      matched.push(...positives(nsSel, labels, 'namespace'));
    }
  }

  const objSel = w.objectSelector;
  if (!objSel.ok) unknown ??= invalidReason('objectSelector', objSel);
  else {
    const failed = firstFailed(objSel, pod.labels);
    if (failed) return verdict('no', `objectSelector does not match: ${describeRequirement(failed, pod.labels, 'pod')}`);
    matched.push(...positives(objSel, pod.labels, 'pod'));
  }

  if (unknown !== undefined) return verdict('unknown', unknown);
  const what = matched.length > 0 ? matched.join(', ') : 'its selectors exclude neither the namespace nor the pod';
  if (w.matchConditions.length > 0) {
    return verdict(
      'maybe',
      `matches (${what}), but it also has matchConditions (${w.matchConditions.join(', ')}), CEL expressions that mesh-guard cannot evaluate`,
    );
  }
  return verdict('yes', `matches: ${what}`);
}

function invalidReason(field: string, s: InvalidSelector): string {
  return `its ${field} is invalid (${s.error}); the API server refuses to store such a configuration, so how it would match cannot be told`;
}

/** The requirements that say why a selector matched: those that ask for a label (In, =, Exists). */
function positives(s: Selector, labels: Labels, what: string): string[] {
  return s.requirements.filter((r) => r.operator === 'In' || r.operator === '=' || r.operator === 'Exists').map((r) => describeRequirement(r, labels, what));
}

function withNameLabel(labels: Readonly<Record<string, string>>, namespace: string): Readonly<Record<string, string>> {
  if (Object.hasOwn(labels, NAMESPACE_NAME_LABEL)) return labels;
  return { ...labels, [NAMESPACE_NAME_LABEL]: namespace };
}

const ORDER: Readonly<Record<Seen, number>> = { yes: 0, maybe: 1, unknown: 2, no: 3 };

/**
 * Whether any of a peer's webhooks sees this pod CREATE. The first webhook in calling order with
 * the strongest answer decides (yes, then maybe, then unknown); "no" only when every one says no.
 */
export function peerSeesPodCreate(peer: Peer, discovery: WebhookDiscovery, pod: PodCreate, ns: NamespaceLookup): PeerVerdict {
  const title = PEER_TITLE[peer];
  if (discovery.state === 'unknown') {
    return { peer, state: 'unknown', reason: `${title} webhooks unknown: ${discovery.reason}`, webhooks: [] };
  }
  const candidates = discovery.peers[peer];
  if (candidates.length === 0) {
    return { peer, state: 'unknown', reason: `no ${title} webhook found among the mutating webhook configurations (${EXPECTED[peer]})`, webhooks: [] };
  }
  const webhooks = candidates.filter(coversPodCreate).map((w) => webhookSeesPodCreate(w, pod, ns));
  if (webhooks.length === 0) {
    return { peer, state: 'no', reason: `no ${title} webhook covers pod CREATE (${candidates.map((w) => `${w.configuration}/${w.name}`).join(', ')})`, webhooks };
  }
  let best = webhooks[0]!;
  for (const v of webhooks) if (ORDER[v.state] < ORDER[best.state]) best = v;
  if (best.state === 'no') {
    return { peer, state: 'no', reason: `no ${title} webhook sees the pod: ${webhooks.map((v) => `${v.webhook}: ${v.reason}`).join('; ')}`, webhooks };
  }
  const others = webhooks.filter((v) => v !== best && v.state === best.state).length;
  const more = others > 0 ? ` (and ${others} more ${title} webhook${others > 1 ? 's' : ''})` : '';
  const sep = best.state === 'unknown' ? ': ' : ' ';
  return { peer, state: best.state, reason: `${title} webhook ${best.webhook}${sep}${best.reason}${more}`, webhooks };
}

const EXPECTED: Readonly<Record<Peer, string>> = {
  istio: 'istio-sidecar-injector[-<rev>][-<ns>] or istio-revision-tag-<tag>[-<ns>] with *sidecar-injector.istio.io webhooks',
  consul: '<fullname>-connect-injector with webhook <fullname>-connect-injector.consul.hashicorp.com',
  dynatrace: 'dynatrace-webhook or webhook.pod.dynatrace.com-* with webhook webhook.pod.dynatrace.com',
};

/** One line per webhook for `doctor` and logs: rules left out, selectors in labels.Selector syntax. */
export function describeWebhook(w: WebhookSummary): string {
  const sel = (s: Selector | InvalidSelector) => (s.ok ? (s.everything ? 'everything' : selectorString(s)) : `invalid: ${s.error}`);
  const conds = w.matchConditions.length > 0 ? `, matchConditions ${w.matchConditions.join(',')}` : '';
  return `${w.configuration}/${w.name}: namespaceSelector ${sel(w.namespaceSelector)}, objectSelector ${sel(w.objectSelector)}${conds}`;
}
