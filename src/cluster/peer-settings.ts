/**
 * The peers' own injection settings, read from the objects their installers create, and which of
 * those objects belong to the webhook that sees a pod.
 *
 * - Istio: istiod reads the injector ConfigMap `istio-sidecar-injector[-<rev>]` (keys `config` and
 *   `values`; istio `pilot/pkg/bootstrap/sidecarinjector.go` `initSidecarInjector`, which names it
 *   `defaultInjectorConfigMapName` plus the revision) and the mesh config `istio[-<rev>]` (key `mesh`;
 *   `pilot/pkg/bootstrap/mesh.go` `defaultMeshConfigMapName`), both in istiod's namespace, as
 *   `manifests/charts/istio-control/istio-discovery/templates/istiod-injector-configmap.yaml` and
 *   `configmap.yaml` render them. A webhook's revision is told by its Service, `istiod[-<rev>]`
 *   (`mutatingwebhook.yaml`, `revision-tags-mwc.yaml`: a tag's webhooks call its revision's istiod).
 *   Of `config`, `pkg/kube/inject/inject.go` `injectRequired` reads `policy`, `neverInjectSelector`
 *   and `alwaysInjectSelector` (type `Config`); of the mesh config, the injector's metric merging
 *   reads `enablePrometheusMerge` and `defaultConfig.statusPort` (`applyPrometheusMerge`), defaults
 *   as `pkg/config/mesh/mesh.go` `DefaultMeshConfig` / `DefaultProxyConfig` set them (true, 15020).
 *   Native sidecars are istiod's `ENABLE_NATIVE_SIDECARS` (`pilot/pkg/features/pilot.go`), which the
 *   chart renders into `values` as `pilot.env`; hold-until-proxy-starts is
 *   `defaultConfig.holdApplicationUntilProxyStarts` or `values.global.proxy.holdApplicationUntilProxyStarts`
 *   (`files/injection-template.yaml` takes either).
 * - Consul: the connect-injector Deployment `<fullname>-connect-injector` (hashicorp/consul-k8s
 *   `charts/consul/templates/connect-inject-deployment.yaml`), named like its webhook configuration,
 *   in the webhook Service's namespace. The chart starts `consul-k8s-control-plane inject-connect`
 *   from a `/bin/sh -ec` script; its flags, with the defaults of `control-plane/subcommand/inject-connect/command.go`
 *   `Command.init` for flags the script leaves out: `-default-inject` (true), `-default-enable-transparent-proxy`
 *   (true), `-allow-k8s-namespace` / `-deny-k8s-namespace` (repeatable, none), `-default-prometheus-scrape-port`
 *   ("20200"), `-default-prometheus-scrape-path` ("/metrics").
 *
 * Pure: the cluster view trims each object to what `parse*` returns before its cache holds it, so
 * neither the injection templates nor the injector's other flags and environment stay in memory.
 */
import { parse as parseYaml } from 'yaml';
import { parseGoBool } from '../admission/annotations.js';
import { parseSelector, type InvalidSelector, type LabelSelectorSpec, type Selector } from './selectors.js';
import type { PeerVerdict, WebhookDiscovery, WebhookSummary } from './webhooks.js';

export type SettingsKind = 'istio-injector' | 'istio-mesh' | 'consul-injector';

/** One object a peer installed: a ConfigMap (Istio) or a Deployment (Consul). */
export interface SettingsRef {
  readonly kind: SettingsKind;
  readonly namespace: string;
  readonly name: string;
}

export interface IstioInjectorSettings {
  /** `policy` as written; injectRequired knows "enabled" and "disabled", anything else injects nothing. */
  readonly policy: string;
  readonly neverInjectSelector: readonly (Selector | InvalidSelector)[];
  readonly alwaysInjectSelector: readonly (Selector | InvalidSelector)[];
  /** values.pilot.env.ENABLE_NATIVE_SIDECARS ("auto" when unset, as istiod defaults it). */
  readonly nativeSidecars: string;
  /** values.global.proxy.holdApplicationUntilProxyStarts. */
  readonly holdApplicationUntilProxyStarts: boolean;
}

export interface IstioMeshSettings {
  readonly enablePrometheusMerge: boolean;
  readonly statusPort: number;
  readonly holdApplicationUntilProxyStarts: boolean;
}

export interface ConsulInjectorSettings {
  readonly defaultInject: boolean;
  readonly transparentProxy: boolean;
  readonly allowNamespaces: readonly string[];
  readonly denyNamespaces: readonly string[];
  readonly prometheusScrapePort: string;
  readonly prometheusScrapePath: string;
}

export interface SettingsValue {
  readonly 'istio-injector': IstioInjectorSettings;
  readonly 'istio-mesh': IstioMeshSettings;
  readonly 'consul-injector': ConsulInjectorSettings;
}

/** What the view knows of one settings object. */
export type SettingsLookup<K extends SettingsKind = SettingsKind> =
  | { readonly state: 'known'; readonly value: SettingsValue[K]; readonly source: string }
  | { readonly state: 'unknown'; readonly reason: string };

/** The settings objects the view watches, by `settingsKey`; absent keys are not watched (yet). */
export type PeerSettings = ReadonlyMap<string, SettingsLookup>;

/** A reference to an object of one kind. */
export type RefOf<K extends SettingsKind> = SettingsRef & { readonly kind: K };

export const settingsKey = (r: SettingsRef): string => `${r.kind}:${r.namespace}/${r.name}`;
const OBJECT_KIND: Readonly<Record<SettingsKind, string>> = { 'istio-injector': 'ConfigMap', 'istio-mesh': 'ConfigMap', 'consul-injector': 'Deployment' };
export const describeRef = (r: SettingsRef): string => `${OBJECT_KIND[r.kind]} ${r.namespace}/${r.name}`;

// ---- which objects ------------------------------------------------------------------------------

const ISTIOD_SERVICE = /^istiod(?:-(.+))?$/;

/** The revision an Istio webhook serves, from the istiod Service it calls; undefined for a URL or another Service. */
export function istioRevisionOf(w: WebhookSummary): { readonly namespace: string; readonly revision: string } | undefined {
  const m = w.service ? ISTIOD_SERVICE.exec(w.service.name) : null;
  return m && w.service ? { namespace: w.service.namespace, revision: m[1] ?? '' } : undefined;
}

/** The injector ConfigMap and mesh config behind an Istio webhook. */
export function istioRefs(w: WebhookSummary): { readonly injector: RefOf<'istio-injector'>; readonly mesh: RefOf<'istio-mesh'> } | undefined {
  const rev = istioRevisionOf(w);
  if (!rev) return undefined;
  const suffix = rev.revision ? `-${rev.revision}` : '';
  return {
    injector: { kind: 'istio-injector', namespace: rev.namespace, name: `istio-sidecar-injector${suffix}` },
    mesh: { kind: 'istio-mesh', namespace: rev.namespace, name: `istio${suffix}` },
  };
}

/** The connect-injector Deployment behind Consul's pod webhook: named as its configuration, in its Service's namespace. */
export function consulRef(w: WebhookSummary): RefOf<'consul-injector'> | undefined {
  return w.service ? { kind: 'consul-injector', namespace: w.service.namespace, name: w.configuration } : undefined;
}

/** Every settings object the discovered peer webhooks point at, deduplicated, in a stable order. */
export function wantedSettings(discovery: WebhookDiscovery | undefined): SettingsRef[] {
  if (!discovery || discovery.state !== 'known') return [];
  const out = new Map<string, SettingsRef>();
  for (const w of discovery.peers.istio) {
    const refs = istioRefs(w);
    if (refs) for (const r of [refs.injector, refs.mesh]) out.set(settingsKey(r), r);
  }
  for (const w of discovery.peers.consul) {
    const r = consulRef(w);
    if (r) out.set(settingsKey(r), r);
  }
  return [...out.values()].sort((a, b) => (settingsKey(a) < settingsKey(b) ? -1 : 1));
}

/** The webhook that decided a peer verdict (the first in calling order with the verdict's state). */
export function decidingWebhook(discovery: WebhookDiscovery, verdict: PeerVerdict): WebhookSummary | undefined {
  if (discovery.state !== 'known') return undefined;
  const decided = verdict.webhooks.find((v) => v.state === verdict.state);
  return decided ? discovery.peers[verdict.peer].find((w) => `${w.configuration}/${w.name}` === decided.webhook) : undefined;
}

/** A settings object's answer: unknown when the view has no settings or does not watch it. */
export function lookupSettings<K extends SettingsKind>(settings: PeerSettings | undefined, ref: RefOf<K>): SettingsLookup<K> {
  const found = settings?.get(settingsKey(ref));
  if (found) return found as SettingsLookup<K>;
  return { state: 'unknown', reason: `${describeRef(ref)} is not read${settings ? ' (yet)' : ' by this view'}` };
}

// ---- parsing ------------------------------------------------------------------------------------

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
/** A parse result: the settings, or why the object cannot be read. */
export type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: string };

function dataOf(obj: unknown): Obj {
  return isObj(obj) && isObj(obj['data']) ? obj['data'] : {};
}

function yamlObject(text: unknown, what: string): Parsed<Obj> {
  if (text === undefined) return { ok: true, value: {} };
  if (typeof text !== 'string') return { ok: false, error: `${what} is not a string` };
  try {
    const v: unknown = parseYaml(text);
    if (v === null || v === undefined) return { ok: true, value: {} };
    return isObj(v) ? { ok: true, value: v } : { ok: false, error: `${what} is not a mapping` };
  } catch (err) {
    return { ok: false, error: `${what} is not valid YAML (${err instanceof Error ? (err.message.split('\n')[0] ?? '') : String(err)})` };
  }
}

const path = (o: Obj, ...keys: string[]): unknown => keys.reduce<unknown>((v, k) => (isObj(v) ? v[k] : undefined), o);
/** A YAML/JSON boolean, or the Go string forms Helm values sometimes carry. */
const boolOf = (v: unknown): boolean | undefined => (typeof v === 'boolean' ? v : typeof v === 'string' ? parseGoBool(v) : undefined);

function selectors(v: unknown): (Selector | InvalidSelector)[] {
  return (Array.isArray(v) ? v : []).map((s) => (isObj(s) ? parseSelector(s as LabelSelectorSpec) : { ok: false as const, error: 'not a label selector' }));
}

/** An injector ConfigMap (`config` YAML, `values` JSON) as injectRequired and the templates read it. */
export function parseIstioInjector(cm: unknown): Parsed<IstioInjectorSettings> {
  const data = dataOf(cm);
  const config = yamlObject(data['config'], 'data.config');
  if (!config.ok) return config;
  // `values` is JSON (toPrettyJson in the chart); JSON is YAML, so one parser reads both.
  const values = yamlObject(data['values'], 'data.values');
  if (!values.ok) return values;
  const policy = config.value['policy'];
  const native = path(values.value, 'pilot', 'env', 'ENABLE_NATIVE_SIDECARS');
  return {
    ok: true,
    value: Object.freeze({
      policy: typeof policy === 'string' ? policy : '',
      neverInjectSelector: Object.freeze(selectors(config.value['neverInjectSelector'])),
      alwaysInjectSelector: Object.freeze(selectors(config.value['alwaysInjectSelector'])),
      nativeSidecars: native === undefined || native === null ? 'auto' : String(native),
      holdApplicationUntilProxyStarts: boolOf(path(values.value, 'global', 'proxy', 'holdApplicationUntilProxyStarts')) ?? false,
    }),
  };
}

/** A mesh config ConfigMap (`mesh` YAML) with Istio's defaults for what it leaves out. */
export function parseIstioMesh(cm: unknown): Parsed<IstioMeshSettings> {
  const mesh = yamlObject(dataOf(cm)['mesh'], 'data.mesh');
  if (!mesh.ok) return mesh;
  const port = path(mesh.value, 'defaultConfig', 'statusPort');
  const statusPort = port === undefined || port === null ? 15020 : Number(port);
  if (!Number.isInteger(statusPort) || statusPort < 0 || statusPort > 65535) return { ok: false, error: `defaultConfig.statusPort ${JSON.stringify(port)} is not a port` };
  return {
    ok: true,
    value: Object.freeze({
      enablePrometheusMerge: boolOf(mesh.value['enablePrometheusMerge']) ?? true,
      statusPort,
      holdApplicationUntilProxyStarts: boolOf(path(mesh.value, 'defaultConfig', 'holdApplicationUntilProxyStarts')) ?? false,
    }),
  };
}

/** The connect-injector container: the chart names it `sidecar-injector`; else the one that runs inject-connect. */
function injectorArgs(deployment: unknown): string[] | undefined {
  const containers = path(isObj(deployment) ? deployment : {}, 'spec', 'template', 'spec', 'containers');
  if (!Array.isArray(containers)) return undefined;
  for (const c of containers.filter(isObj)) {
    const argv = [...(Array.isArray(c['command']) ? c['command'] : []), ...(Array.isArray(c['args']) ? c['args'] : [])].filter(
      (a): a is string => typeof a === 'string',
    );
    // `/bin/sh -ec "<script>"`: the script is split as the shell would split it.
    const words = argv.flatMap((a, i) => (i > 0 && argv[i - 1] === '-ec' ? shellWords(a) : [a]));
    const at = words.indexOf('inject-connect');
    if (at !== -1) return words.slice(at + 1);
  }
  return undefined;
}

/**
 * Splits a POSIX shell script into words, as far as the chart's script needs: backslash-newline
 * continues a line, single and double quotes group, `\` escapes; `;`, `&&` and newlines end the command.
 */
export function shellWords(script: string): string[] {
  const words: string[] = [];
  let cur: string | undefined;
  for (let i = 0; i < script.length; i++) {
    const c = script[i]!;
    if (c === '\\' && script[i + 1] === '\n') {
      i++;
      continue;
    }
    if (c === '\\') {
      cur = (cur ?? '') + (script[++i] ?? '');
    } else if (c === "'") {
      const end = script.indexOf("'", i + 1);
      cur = (cur ?? '') + script.slice(i + 1, end === -1 ? undefined : end);
      i = end === -1 ? script.length : end;
    } else if (c === '"') {
      let s = '';
      for (i++; i < script.length && script[i] !== '"'; i++) s += script[i] === '\\' && '"\\$`'.includes(script[i + 1] ?? '') ? script[++i] : script[i];
      cur = (cur ?? '') + s;
    } else if (c === ' ' || c === '\t') {
      if (cur !== undefined) words.push(cur);
      cur = undefined;
    } else if (c === '\n' || c === ';') {
      if (cur !== undefined) words.push(cur);
      cur = undefined;
      if (words.includes('inject-connect')) break;
    } else {
      cur = (cur ?? '') + c;
    }
  }
  if (cur !== undefined) words.push(cur);
  return words;
}

const CONSUL_BOOL_FLAGS = ['default-inject', 'default-enable-transparent-proxy'] as const;

/** The connect-injector's flags, as Go's flag package reads them (`-f=v`, `--f=v`, `-f v`, a bare bool `-f`). */
export function parseConsulInjector(deployment: unknown): Parsed<ConsulInjectorSettings> {
  const args = injectorArgs(deployment);
  if (!args) return { ok: false, error: 'no container runs consul-k8s-control-plane inject-connect' };
  const flags = new Map<string, string[]>();
  for (let i = 0; i < args.length; i++) {
    const m = /^--?([^=]+)(?:=(.*))?$/s.exec(args[i]!);
    if (!m) break; // flag parsing stops at the first non-flag
    const name = m[1]!;
    let value = m[2];
    if (value === undefined) value = (CONSUL_BOOL_FLAGS as readonly string[]).includes(name) ? 'true' : (args[++i] ?? '');
    flags.set(name, [...(flags.get(name) ?? []), value]);
  }
  const last = (name: string) => flags.get(name)?.at(-1);
  const bool = (name: (typeof CONSUL_BOOL_FLAGS)[number], def: boolean): boolean | string => {
    const raw = last(name);
    if (raw === undefined) return def;
    return parseGoBool(raw) ?? `-${name}=${JSON.stringify(raw)} is not a bool, so the injector does not start`;
  };
  const defaultInject = bool('default-inject', true);
  const transparentProxy = bool('default-enable-transparent-proxy', true);
  for (const b of [defaultInject, transparentProxy]) if (typeof b === 'string') return { ok: false, error: b };
  return {
    ok: true,
    value: Object.freeze({
      defaultInject: defaultInject as boolean,
      transparentProxy: transparentProxy as boolean,
      allowNamespaces: Object.freeze(flags.get('allow-k8s-namespace') ?? []),
      denyNamespaces: Object.freeze(flags.get('deny-k8s-namespace') ?? []),
      prometheusScrapePort: last('default-prometheus-scrape-port') ?? '20200',
      prometheusScrapePath: last('default-prometheus-scrape-path') ?? '/metrics',
    }),
  };
}

export const PARSERS: { readonly [K in SettingsKind]: (obj: unknown) => Parsed<SettingsValue[K]> } = {
  'istio-injector': parseIstioInjector,
  'istio-mesh': parseIstioMesh,
  'consul-injector': parseConsulInjector,
};

/** One settings object's answer from a parse result. */
export function settingsLookupOf(ref: SettingsRef, parsed: Parsed<SettingsValue[SettingsKind]> | undefined): SettingsLookup {
  const what = describeRef(ref);
  if (!parsed) return { state: 'unknown', reason: `${what} does not exist` };
  if (!parsed.ok) return { state: 'unknown', reason: `${what} cannot be read: ${parsed.error}` };
  return Object.freeze({ state: 'known', value: parsed.value, source: what }) as SettingsLookup;
}

/**
 * The settings the discovered webhooks point at, from a set of objects (preview input, tests):
 * ConfigMaps and Deployments matched by kind, namespace and name.
 */
export function settingsFromObjects(discovery: WebhookDiscovery | undefined, objects: readonly unknown[]): PeerSettings {
  const out = new Map<string, SettingsLookup>();
  for (const ref of wantedSettings(discovery)) {
    const obj = objects.find((o) => {
      const md = isObj(o) && isObj(o['metadata']) ? o['metadata'] : {};
      return isObj(o) && o['kind'] === OBJECT_KIND[ref.kind] && md['name'] === ref.name && (md['namespace'] ?? 'default') === ref.namespace;
    });
    out.set(settingsKey(ref), settingsLookupOf(ref, obj === undefined ? undefined : PARSERS[ref.kind](obj)));
  }
  return out;
}
