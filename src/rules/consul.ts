/**
 * Consul facts shared by the Consul rules (consul.md §1-§5):
 *
 * - `consulTproxyVerdict`: "will Consul's connect-inject webhook inject this pod with
 *   transparent proxy?", mirroring `shouldInject` and `common.TransparentProxyEnabled`;
 * - `addToRenderedConfig`: appends exclusions to an already rendered `iptables.Config` JSON
 *   (the Go struct has no json tags, so the keys are the Go field names) by splicing the two
 *   arrays in place, so every other byte of the document stays as Consul wrote it.
 */
import net from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import {
  CONSUL_CONNECT_INJECT,
  CONSUL_CONNECT_INJECT_STATUS,
  CONSUL_TRANSPARENT_PROXY,
  consulBool,
} from '../admission/annotations.js';
import type { PodView } from '../admission/pod.js';
import { consulRef, decidingWebhook, lookupSettings, type ConsulInjectorSettings } from '../cluster/peer-settings.js';
import { peerSeesPodCreate, type PeerVerdict } from '../cluster/webhooks.js';
import { perAdmission, type RuleContext } from './types.js';

/** Namespaces Consul's webhook never injects, whatever the configuration (`kubeSystemNamespaces`). */
export const CONSUL_SYSTEM_NAMESPACES: readonly string[] = ['kube-system', 'kube-public'];

export type ConsulVerdict =
  /** Consul does not look at the pod at all: none of our business. */
  | { readonly kind: 'not-consul' }
  /** A Consul pod that gets no injection (or, for consulTproxyVerdict, no transparent-proxy redirection), or that Consul rejects. */
  | { readonly kind: 'skip'; readonly reason: string }
  /** Consul will inject the pod (consulTproxyVerdict: with transparent proxy, so the exclusion annotations work). */
  | { readonly kind: 'will-inject'; readonly reason: string }
  /** Consul already injected the pod (`connect-inject-status` set): only the rendered config counts. */
  | { readonly kind: 'injected'; readonly reason: string };

/**
 * Mirrors Consul's decision to inject at all (consul.md §2, `shouldInject`). A pod that carries
 * no connect-inject annotation while `consul.injectByDefault` is false is not a Consul pod;
 * neither is one that opts out. A namespace or selector exclusion is only explained for pods
 * that ask for injection. With discovered webhook configurations, Consul's own pod webhook
 * decides the API-server step (its namespaceSelector and objectSelector as installed); the
 * copy of the chart's defaults (`app=consul`) is the fallback, and the reason says which.
 * The deciding webhook's connect-injector Deployment gives the injector's own flags
 * (src/cluster/peer-settings.ts): `-default-inject`, `-allow-k8s-namespace` / `-deny-k8s-namespace`
 * (as `MeshWebhook.shouldInject` in hashicorp/consul-k8s `control-plane/connect-inject/webhook/mesh_webhook.go`
 * applies them: deny first, then allow unless it holds "*"), `-default-enable-transparent-proxy`
 * and the Prometheus scrape port and path; the `consul.*` mirrors answer when they are not read.
 */
export function consulInjectVerdict(pod: PodView, ctx: RuleContext): ConsulVerdict {
  const status = pod.annotations.get(CONSUL_CONNECT_INJECT_STATUS);
  if (status !== undefined && status !== '') {
    return { kind: 'injected', reason: `Consul already injected the pod (${CONSUL_CONNECT_INJECT_STATUS}=${JSON.stringify(status)})` };
  }
  const raw = pod.annotations.get(CONSUL_CONNECT_INJECT);
  const asked = raw !== undefined;
  const injector = consulInjector(pod, ctx);
  const injectByDefault = injector.flags ? injector.flags.defaultInject : ctx.config.consul.injectByDefault;
  if (!asked && !injectByDefault) return { kind: 'not-consul' };
  const excluded = (why: string): ConsulVerdict => (asked ? { kind: 'skip', reason: why } : { kind: 'not-consul' });
  const webhook = injector.webhook;
  if (webhook?.state === 'no') return excluded(webhook.reason);
  const verdict = consulCodeVerdict(pod, ctx, raw, excluded, webhook?.state === 'yes', injector);
  return verdict.kind === 'will-inject' && webhook ? { kind: 'will-inject', reason: `${verdict.reason}; ${seenBy(webhook)}${unreadNote(injector)}` } : verdict;
}

function seenBy(webhook: PeerVerdict): string {
  return webhook.state === 'yes' ? webhook.reason : `${webhook.reason}, so the config mirror of Consul's selectors decides`;
}

const unreadNote = (i: ConsulInjector): string => (i.unread ? `; the consul.* mirrors stand in for the injector's flags (${i.unread})` : '');

/** Consul's pod webhook verdict and, when the view reads settings, the flags of the injector behind it. */
export interface ConsulInjector {
  readonly webhook?: PeerVerdict;
  readonly flags?: ConsulInjectorSettings;
  /** The Deployment the flags were read from. */
  readonly source?: string;
  /** Why the flags are not known although the view reads settings. */
  readonly unread?: string;
}

export const consulInjector: (pod: PodView, ctx: RuleContext) => ConsulInjector = perAdmission(readInjector);

function readInjector(pod: PodView, ctx: RuleContext): ConsulInjector {
  if (!ctx.webhooks) return {};
  const webhook = peerSeesPodCreate('consul', ctx.webhooks, pod, ctx.namespace);
  if (!ctx.settings || (webhook.state !== 'yes' && webhook.state !== 'maybe')) return { webhook };
  const deciding = decidingWebhook(ctx.webhooks, webhook);
  const ref = deciding ? consulRef(deciding) : undefined;
  if (!ref) return { webhook, unread: 'the deciding Consul webhook calls no Service, so its injector Deployment is not known' };
  const found = lookupSettings(ctx.settings, ref);
  return found.state === 'known' ? { webhook, flags: found.value, source: found.source } : { webhook, unread: found.reason };
}

/** The API-server step from the chart's default objectSelector (unless the live one matched), then shouldInject's own checks. */
function consulCodeVerdict(
  pod: PodView,
  ctx: RuleContext,
  raw: string | undefined,
  excluded: (why: string) => ConsulVerdict,
  webhookMatched: boolean,
  injector: ConsulInjector,
): ConsulVerdict {
  if (!webhookMatched && pod.labels.get('app') === 'consul') return excluded("Consul's webhook objectSelector leaves out pods labelled app=consul");
  if (CONSUL_SYSTEM_NAMESPACES.includes(pod.namespace)) return excluded(`Consul never injects pods in ${pod.namespace}`);
  const flags = injector.flags;
  if (flags) {
    if (flags.denyNamespaces.includes(pod.namespace)) return excluded(`namespace ${pod.namespace} is in the injector's -deny-k8s-namespace (${injector.source})`);
    if (!flags.allowNamespaces.includes('*') && !flags.allowNamespaces.includes(pod.namespace)) {
      return excluded(`namespace ${pod.namespace} is not in the injector's -allow-k8s-namespace (${injector.source})`);
    }
  } else if (ctx.config.consul.denyNamespaces.includes(pod.namespace)) {
    return excluded(`namespace ${pod.namespace} is in consul.denyNamespaces (connectInject.k8sDenyNamespaces)`);
  }
  const inject = consulBool(raw);
  if (!inject.present) {
    const why = flags ? `the injector runs with -default-inject=true (${injector.source})` : 'consul.injectByDefault is true';
    return { kind: 'will-inject', reason: `${CONSUL_CONNECT_INJECT} absent and ${why}` };
  }
  if ('invalid' in inject) {
    return { kind: 'skip', reason: `${CONSUL_CONNECT_INJECT}=${JSON.stringify(raw)} is not a Go bool, so Consul's webhook rejects the pod` };
  }
  if (!inject.value) return { kind: 'not-consul' };
  return { kind: 'will-inject', reason: `${CONSUL_CONNECT_INJECT}=${JSON.stringify(raw)}` };
}

/** Consul's injection with transparent proxy (`common.TransparentProxyEnabled`) on top of `consulInjectVerdict`. */
export function consulTproxyVerdict(pod: PodView, ctx: RuleContext): ConsulVerdict {
  const inject = consulInjectVerdict(pod, ctx);
  if (inject.kind !== 'will-inject') return inject;
  const tproxy = transparentProxy(pod, ctx);
  if ('invalid' in tproxy) return { kind: 'skip', reason: tproxy.invalid };
  if (!tproxy.on) return { kind: 'skip', reason: `Consul injects without transparent proxy (${tproxy.why}), so no outbound redirection to exclude from` };
  return { kind: 'will-inject', reason: `Consul will inject with transparent proxy (${inject.reason}; ${tproxy.why})` };
}

/** Pod annotation, then the namespace label of the same key, then the configured default. */
export function transparentProxy(pod: PodView, ctx: RuleContext): { on: boolean; why: string } | { invalid: string } {
  const raw = pod.annotations.get(CONSUL_TRANSPARENT_PROXY);
  const own = consulBool(raw);
  if (own.present) {
    if ('invalid' in own) return { invalid: `${CONSUL_TRANSPARENT_PROXY}=${JSON.stringify(raw)} is not a Go bool, so Consul's webhook rejects the pod` };
    return { on: own.value, why: `pod annotation ${CONSUL_TRANSPARENT_PROXY}=${JSON.stringify(raw)}` };
  }
  const ns = ctx.namespace;
  if (ns.state === 'known' && Object.hasOwn(ns.labels, CONSUL_TRANSPARENT_PROXY)) {
    const label = ns.labels[CONSUL_TRANSPARENT_PROXY];
    const parsed = consulBool(label);
    if (parsed.present && 'invalid' in parsed) {
      return { invalid: `namespace label ${CONSUL_TRANSPARENT_PROXY}=${JSON.stringify(label)} is not a Go bool, so Consul's webhook rejects the pod` };
    }
    if (parsed.present) return { on: parsed.value, why: `namespace label ${CONSUL_TRANSPARENT_PROXY}=${JSON.stringify(label)}` };
  }
  const injector = consulInjector(pod, ctx);
  const def = injector.flags ? injector.flags.transparentProxy : ctx.config.consul.transparentProxyDefault;
  const where =
    ns.state === 'known' ? 'no pod annotation or namespace label'
    : ns.state === 'absent' ? 'no pod annotation; namespace not found'
    : `no pod annotation; namespace labels unknown (${ns.reason})`;
  const from = injector.flags ? `the injector runs with -default-enable-transparent-proxy=${def} (${injector.source})` : `consul.transparentProxyDefault is ${def}`;
  return { on: def, why: `${where}, ${from}` };
}

/** "10.0.0.1" → "10.0.0.1/32", "fd00::1" → "fd00::1/128"; undefined for anything that is not an IP. */
export function hostCidr(ip: string): string | undefined {
  if (net.isIPv4(ip)) return `${ip}/32`;
  if (net.isIPv6(ip) && !ip.includes('%')) return `${ip}/128`;
  return undefined;
}

/**
 * A comparison key for "is this entry already there?": trimmed, IPv6 in canonical form, and a
 * bare IP equal to its host prefix (iptables `-d 10.0.0.1` is `-d 10.0.0.1/32`).
 */
export function cidrKey(entry: string): string {
  const s = entry.trim();
  const slash = s.indexOf('/');
  const ip = slash === -1 ? s : s.slice(0, slash);
  const bits = slash === -1 ? undefined : s.slice(slash + 1);
  if (net.isIPv4(ip)) return `${ip}/${bits ?? '32'}`;
  if (net.isIPv6(ip) && !ip.includes('%')) return `${new URL(`http://[${ip}]/`).hostname.slice(1, -1)}/${bits ?? '128'}`;
  return s;
}

export const portKey = (entry: string): string => entry.trim();

/** The wanted entries that are not yet among `existing` (by key), in order, without duplicates. */
export function missingEntries(existing: readonly string[], wanted: readonly string[], key: (s: string) => string): string[] {
  const have = new Set(existing.map(key));
  const out: string[] = [];
  for (const w of wanted) {
    const k = key(w);
    if (have.has(k)) continue;
    have.add(k);
    out.push(w);
  }
  return out;
}

/** The two iptables.Config fields we add to, in Go struct order. */
export const RENDERED_FIELDS = ['ExcludeOutboundPorts', 'ExcludeOutboundCIDRs'] as const;
export type RenderedField = (typeof RENDERED_FIELDS)[number];

export type RenderedEdit =
  | { readonly ok: true; readonly json: string; readonly added: Readonly<Record<RenderedField, readonly string[]>> }
  | { readonly ok: false; readonly reason: string };

const FIELD_KEY: Record<RenderedField, (s: string) => string> = { ExcludeOutboundPorts: portKey, ExcludeOutboundCIDRs: cidrKey };

/**
 * Appends the missing `wanted` entries to `ExcludeOutboundPorts` / `ExcludeOutboundCIDRs` of a
 * rendered iptables.Config. Only the text of those two arrays changes (or, when a field is
 * missing, one member is added before the closing brace); unknown fields, their order and
 * their spelling stay as they are. Anything surprising leaves the document alone with a reason:
 * not a JSON object, a field that is neither null nor a list of strings, a duplicate key, or a
 * key that Go's case-insensitive decoding would also read into one of the two fields.
 */
export function addToRenderedConfig(json: string, wanted: Readonly<Record<RenderedField, readonly string[]>>): RenderedEdit {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    return { ok: false, reason: 'is not valid JSON' };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return { ok: false, reason: 'is not a JSON object' };
  const doc = parsed as Record<string, unknown>;
  const scan = scanTopLevel(json);
  if (!scan) return { ok: false, reason: 'could not be scanned' };

  const edits: Array<{ start: number; end: number; text: string }> = [];
  const appended: string[] = [];
  const added = { ExcludeOutboundPorts: [] as string[], ExcludeOutboundCIDRs: [] as string[] };
  const expected: Record<string, unknown> = { ...doc };
  for (const field of RENDERED_FIELDS) {
    const members = scan.members.filter((m) => goFold(m.key) === goFold(field));
    const alias = members.find((m) => m.key !== field);
    if (alias) return { ok: false, reason: `has key ${JSON.stringify(alias.key)}, which Go would also decode into ${field}` };
    if (members.length > 1) return { ok: false, reason: `has ${field} more than once` };
    const value = members.length ? doc[field] : null;
    if (value !== null && !(Array.isArray(value) && value.every((v) => typeof v === 'string'))) {
      return { ok: false, reason: `has a ${field} that is neither null nor a list of strings` };
    }
    const existing = (value ?? []) as string[];
    const missing = missingEntries(existing, wanted[field], FIELD_KEY[field]);
    if (missing.length === 0) continue;
    added[field] = missing;
    expected[field] = [...existing, ...missing];
    const items = missing.map((s) => JSON.stringify(s)).join(',');
    const member = members[0];
    if (!member) {
      appended.push(`${JSON.stringify(field)}:[${items}]`);
    } else if (existing.length === 0) {
      edits.push({ start: member.valueStart, end: member.valueEnd, text: `[${items}]` });
    } else {
      const close = json.lastIndexOf(']', member.valueEnd - 1);
      edits.push({ start: close, end: close, text: `,${items}` });
    }
  }
  if (edits.length === 0 && appended.length === 0) return { ok: true, json, added };
  if (appended.length) {
    edits.push({ start: scan.close, end: scan.close, text: `${scan.members.length ? ',' : ''}${appended.join(',')}` });
  }
  let out = json;
  for (const e of edits.sort((a, b) => b.start - a.start)) out = out.slice(0, e.start) + e.text + out.slice(e.end);

  // Belt and braces: the result must decode to the input with exactly our additions, keys in order.
  let check: unknown;
  try {
    check = JSON.parse(out);
  } catch {
    return { ok: false, reason: 'could not be edited safely (internal check failed)' };
  }
  const keysBefore = Object.keys(doc);
  const keysAfter = Object.keys(check as object);
  const keysOk = isDeepStrictEqual(keysAfter.slice(0, keysBefore.length), keysBefore);
  if (!keysOk || !isDeepStrictEqual(check, expected)) return { ok: false, reason: 'could not be edited safely (internal check failed)' };
  return { ok: true, json: out, added };
}

/** Go's encoding/json matches keys to field names with Unicode simple folding: also ſ → s and K (Kelvin) → k. */
function goFold(key: string): string {
  return key.replace(/\u017f/g, 's').replace(/\u212a/g, 'k').toLowerCase();
}

interface Member {
  readonly key: string;
  readonly valueStart: number;
  readonly valueEnd: number;
}

/**
 * Top-level members of a JSON object with the character span of each value, and the index of
 * the closing brace. Only called on text that JSON.parse accepted.
 */
function scanTopLevel(text: string): { members: Member[]; close: number } | undefined {
  let i = 0;
  const ws = () => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
  };
  const skipString = () => {
    i++; // opening quote
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++; // closing quote
  };
  const skipValue = () => {
    const c = text[i];
    if (c === '"') return skipString();
    if (c === '{' || c === '[') {
      let depth = 0;
      do {
        const d = text[i];
        if (d === '"') {
          skipString();
          continue;
        }
        if (d === '{' || d === '[') depth++;
        else if (d === '}' || d === ']') depth--;
        i++;
      } while (depth > 0 && i < text.length);
      return;
    }
    while (i < text.length && !',}] \t\n\r'.includes(text[i] as string)) i++;
  };
  ws();
  if (text[i] !== '{') return undefined;
  i++;
  const members: Member[] = [];
  for (;;) {
    ws();
    if (text[i] === '}') return { members, close: i };
    if (text[i] !== '"') return undefined;
    const keyStart = i;
    skipString();
    const key = JSON.parse(text.slice(keyStart, i)) as string;
    ws();
    if (text[i] !== ':') return undefined;
    i++;
    ws();
    const valueStart = i;
    skipValue();
    members.push({ key, valueStart, valueEnd: i });
    ws();
    if (text[i] === ',') {
      i++;
      continue;
    }
    if (text[i] === '}') return { members, close: i };
    return undefined;
  }
}
