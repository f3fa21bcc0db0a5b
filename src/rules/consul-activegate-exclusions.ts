/**
 * Consul transparent-proxy exclusions for the Dynatrace ActiveGate (issue 5; consul.md §1-§5,
 * §8; dynatrace.md §1, §3).
 *
 * Consul's transparent proxy sends all outbound TCP of a meshed pod through Envoy, so the
 * OneAgent code module cannot reach the ActiveGate. The in-cluster ActiveGate is dialled at
 * `<ClusterIP>:443` (9999 is only the target port), so the rule excludes the configured ports
 * (default 9999, for ActiveGates dialled directly) and the ActiveGate Service ClusterIPs as host
 * CIDRs, plus any configured CIDRs.
 *
 * Consul reads the exclusion annotations once, at its own admission, and bakes them into an
 * iptables.Config JSON. So:
 * - before Consul's webhook: append to the two annotations;
 * - after it (`connect-inject-status` set: we sort after Consul, or this is a reinvocation):
 *   append to the rendered JSON instead, in the `CONSUL_REDIRECT_TRAFFIC_CONFIG` env of
 *   `consul-connect-inject-init` (non-CNI) and/or the `redirect-traffic-config` annotation (CNI).
 *   Anything unexpected in that JSON leaves the pod alone with a reason.
 *
 * Existing values are kept byte for byte; only missing entries are appended (comma-separated,
 * no spaces), so the rule on its own output changes nothing. Inbound and UID exclusions are
 * never touched.
 */
import {
  CONSUL_EXCLUDE_OUTBOUND_CIDRS,
  CONSUL_EXCLUDE_OUTBOUND_PORTS,
  CONSUL_INIT_CONTAINER,
  CONSUL_REDIRECT_TRAFFIC_ANNOTATION,
  CONSUL_REDIRECT_TRAFFIC_ENV,
  CONSUL_TRANSPARENT_PROXY_STATUS,
  consulCommaItems,
  isBrokenConsulItem,
} from '../admission/annotations.js';
import type { PodView } from '../admission/pod.js';
import {
  addToRenderedConfig,
  cidrKey,
  consulTproxyVerdict,
  hostCidr,
  missingEntries,
  portKey,
  RENDERED_FIELDS,
  type RenderedField,
} from './consul.js';
import type { Config } from '../config/schema.js';
import { dynatraceWillInject } from './dynatrace.js';
import type { Change, Rule, RuleContext, RuleResult } from './types.js';
import { NOTHING, skip } from './types.js';

export interface Wanted {
  readonly ports: readonly string[];
  readonly cidrs: readonly string[];
  /** What the log should know about where the CIDRs came from. */
  readonly notes: readonly string[];
}

/** The ports and CIDRs Consul should exclude; the audit CLI checks running pods against the same list. */
export function wantedEntries(config: Config, ips: readonly string[] | null): Wanted {
  const notes: string[] = [];
  const agCidrs: string[] = [];
  if (ips === null) {
    notes.push('ActiveGate Service ClusterIPs are unknown (no cluster view yet), so only the configured ports and CIDRs are added');
  } else if (ips.length === 0) {
    notes.push('no ActiveGate Service found, so only the configured ports and CIDRs are added');
  } else {
    const families = config.activeGate.clusterIPFamilies;
    for (const ip of ips) {
      const cidr = hostCidr(ip);
      if (!cidr) {
        notes.push(`ignored ActiveGate ClusterIP ${JSON.stringify(ip)}: not an IP address`);
        continue;
      }
      const family = cidr.endsWith('/128') ? 'IPv6' : 'IPv4';
      if (families.includes(family)) agCidrs.push(cidr);
      else notes.push(`left out ActiveGate ClusterIP ${ip}: ${family} is not in activeGate.clusterIPFamilies (Consul would apply it with ${family === 'IPv6' ? 'IPv4 ' : ''}iptables and fail)`);
    }
  }
  return {
    ports: config.activeGate.ports.map(String),
    cidrs: [...config.activeGate.cidrs, ...agCidrs],
    notes,
  };
}

/** New annotation text: the existing text untouched, then the missing items. */
function appendItems(existing: string | undefined, items: readonly string[]): string {
  const tail = items.join(',');
  if (existing === undefined || existing === '') return tail;
  // "9999," already ends in an (empty) item: fill it rather than add a second empty one.
  return existing.endsWith(',') ? existing + tail : `${existing},${tail}`;
}

function annotationChange(pod: PodView, key: string, wanted: readonly string[], keyOf: (s: string) => string): { change?: Change; reasons: string[] } {
  const existing = pod.annotations.get(key);
  const items = existing === undefined ? [] : consulCommaItems(existing);
  const missing = missingEntries(items, wanted, keyOf);
  const reasons: string[] = [];
  // Spaces and empty items crash Consul's init container or CNI plugin; they are the user's to fix.
  const broken = items.filter((item, i) => isBrokenConsulItem(item) && !(item === '' && i === items.length - 1 && missing.length > 0));
  if (existing !== undefined && existing !== '' && broken.length > 0) {
    reasons.push(`existing ${key} has items with spaces or empty items, which Consul passes to iptables verbatim (the pod may not start); left as is`);
  }
  if (missing.length === 0) return { reasons };
  const value = appendItems(existing, missing);
  const reason = existing === undefined ? `set ${key} to ${missing.join(',')}` : `appended ${missing.join(',')} to ${key}`;
  reasons.push(reason);
  return { change: { kind: 'annotation', key, value, reason }, reasons };
}

function beforeConsul(pod: PodView, wanted: Wanted): { changes: Change[]; reasons: string[] } {
  const results = [
    annotationChange(pod, CONSUL_EXCLUDE_OUTBOUND_PORTS, wanted.ports, portKey),
    annotationChange(pod, CONSUL_EXCLUDE_OUTBOUND_CIDRS, wanted.cidrs, cidrKey),
  ];
  const changes = results.flatMap((r) => (r.change ? [r.change] : []));
  const reasons = results.flatMap((r) => r.reasons);
  if (changes.length === 0) reasons.push('the exclusion annotations already hold every entry');
  return { changes, reasons };
}

function describeAdded(added: Readonly<Record<RenderedField, readonly string[]>>): string {
  return RENDERED_FIELDS.filter((f) => added[f].length > 0)
    .map((f) => `${added[f].join(',')} to ${f}`)
    .join(' and ');
}

/** Consul already rendered its iptables.Config: the annotations are dead, edit the JSON. */
function afterConsul(pod: PodView, wanted: Wanted): { changes: Change[]; reasons: string[] } {
  const fields = { ExcludeOutboundPorts: wanted.ports, ExcludeOutboundCIDRs: wanted.cidrs };
  const changes: Change[] = [];
  const reasons: string[] = [];
  let found = 0;

  const annotation = pod.annotations.get(CONSUL_REDIRECT_TRAFFIC_ANNOTATION);
  if (annotation !== undefined) {
    found++;
    const edit = addToRenderedConfig(annotation, fields);
    const where = `annotation ${CONSUL_REDIRECT_TRAFFIC_ANNOTATION} (CNI mode)`;
    if (!edit.ok) reasons.push(`${where} ${edit.reason}; left alone, so OneAgent traffic stays redirected through Envoy`);
    else if (edit.json === annotation) reasons.push(`${where} already holds every entry`);
    else {
      const reason = `Consul already rendered ${where}: appended ${describeAdded(edit.added)}`;
      changes.push({ kind: 'annotation', key: CONSUL_REDIRECT_TRAFFIC_ANNOTATION, value: edit.json, reason });
      reasons.push(reason);
    }
  }

  for (const c of pod.initContainers) {
    if (c.name !== CONSUL_INIT_CONTAINER && !c.name.startsWith(`${CONSUL_INIT_CONTAINER}-`)) continue;
    for (const e of c.env) {
      if (e.name !== CONSUL_REDIRECT_TRAFFIC_ENV) continue;
      found++;
      const edit = addToRenderedConfig(e.value, fields);
      const where = `env ${CONSUL_REDIRECT_TRAFFIC_ENV} of init container ${c.name}`;
      if (!edit.ok) reasons.push(`${where} ${edit.reason}; left alone, so OneAgent traffic stays redirected through Envoy`);
      else if (edit.json === e.value) reasons.push(`${where} already holds every entry`);
      else {
        const reason = `Consul already rendered ${where}: appended ${describeAdded(edit.added)}`;
        changes.push({
          kind: 'env',
          list: 'initContainers',
          containerIndex: c.index,
          containerName: c.name,
          envIndex: e.index,
          name: e.name,
          value: edit.json,
          reason,
        });
        reasons.push(reason);
      }
    }
  }

  if (found === 0) {
    reasons.push(
      `no rendered traffic config found (no ${CONSUL_REDIRECT_TRAFFIC_ANNOTATION} annotation and no literal ${CONSUL_REDIRECT_TRAFFIC_ENV} on ${CONSUL_INIT_CONTAINER}); ` +
        'the exclusions can no longer take effect: make mesh-guard run before Consul\'s webhook',
    );
  }
  return { changes, reasons };
}

export const consulActiveGateExclusions: Rule = {
  name: 'consul-activegate-exclusions',
  summary: "Excludes the Dynatrace ActiveGate (ports, Service ClusterIPs) from Consul's transparent-proxy redirection so OneAgent can report.",
  evaluate(pod, ctx): RuleResult {
    const consul = consulTproxyVerdict(pod, ctx);
    if (consul.kind === 'not-consul') return NOTHING;
    if (consul.kind === 'skip') return skip(consul.reason);
    if (consul.kind === 'injected' && !pod.annotations.has(CONSUL_TRANSPARENT_PROXY_STATUS) && !pod.annotations.has(CONSUL_REDIRECT_TRAFFIC_ANNOTATION)) {
      return skip(`${consul.reason} without transparent proxy (no ${CONSUL_TRANSPARENT_PROXY_STATUS}), so no outbound redirection to exclude from`);
    }
    const dynatrace = dynatraceWillInject(pod, ctx);
    if (!dynatrace.yes) return { changes: [], reasons: [consul.reason, `Dynatrace does not inject OneAgent: ${dynatrace.reason}`] };

    const wanted = wantedEntries(ctx.config, ctx.activeGateIPs);
    if (wanted.ports.length === 0 && wanted.cidrs.length === 0) {
      return { changes: [], reasons: [consul.reason, dynatrace.reason, ...wanted.notes, 'nothing to add: activeGate.ports and activeGate.cidrs are empty'] };
    }
    const result = consul.kind === 'will-inject' ? beforeConsul(pod, wanted) : afterConsul(pod, wanted);
    return { changes: result.changes, reasons: [consul.reason, dynatrace.reason, ...wanted.notes, ...result.reasons] };
  },
};
