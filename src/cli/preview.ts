/**
 * `mesh-guard preview`: what the webhook would do to manifests, offline.
 *
 * It runs the very admission core the webhook runs (`admit()` with `allRules`), on the pod
 * the API server would see: a Pod as written, or for a workload the pod its controller
 * creates from the pod template (template metadata and spec, the namespace, and the name or
 * generateName the controller uses). The patch it reports is therefore byte for byte what
 * `/mutate` returns for that pod (test/cli-preview.test.ts checks this over real HTTPS).
 *
 * For workloads, `patch` is relative to the pod; `manifestPatch` carries the same changes
 * as a JSON Patch against the manifest (paths under the pod template), and `-o yaml` writes
 * them into the manifest, keeping comments and key order.
 */
import fs from 'node:fs';
import jsonpatch from 'fast-json-patch';
import { Document, isMap, isScalar, parseAllDocuments } from 'yaml';
import { admit, type AdmissionRequest, type Outcome } from '../admission/handler.js';
import type { RuleOutcome } from '../admission/engine.js';
import type { PatchOperation } from '../admission/patch.js';
import { isObject } from '../admission/pod.js';
import { escapePointer, isQualifiedName, isValidLabelValue } from '../admission/annotations.js';
import type { V1MutatingWebhookConfiguration } from '@kubernetes/client-node';
import { settingsFromObjects, wantedSettings, type PeerSettings } from '../cluster/peer-settings.js';
import type { ClusterView, NamespaceLookup } from '../cluster/view.js';
import type { WebhookDiscovery } from '../cluster/webhooks.js';
import type { Config } from '../config/schema.js';
import { allRules } from '../rules/index.js';
import type { Change, Rule } from '../rules/types.js';
import {
  CliError,
  EXIT_FINDINGS,
  EXIT_OK,
  errnoText,
  loadConfigFile,
  outputFormat,
  parseFlags,
  plural,
  q,
  renderTable,
  rejectPositionals,
  type CliIO,
} from './common.js';
import { discoveryOf } from './peers.js';

export const PREVIEW_HELP = `Usage: mesh-guard preview -f FILE|- [flags]

Shows what the mesh-guard webhook would change in Kubernetes manifests, offline (no cluster).
It runs the same rules as the webhook, on the pod the API server would see: a Pod as written,
or the pod a Deployment, StatefulSet, DaemonSet, ReplicaSet, Job or CronJob creates from its
pod template (reported against the workload). Other kinds are skipped with a note.

Input is YAML (multi-document) or JSON, including "kind: List" (kubectl get -o json/yaml).

Flags:
  -f, --filename FILE        manifest file, or - for stdin (required)
  -n, --namespace NS         namespace of objects without metadata.namespace (default "default")
      --namespace-label K=V  a label of that namespace (repeatable); without --namespace, the labels
                             apply to every namespace the input does not define
      --activegate-ip IP     ClusterIP of a Dynatrace ActiveGate Service (repeatable), for the
                             Consul exclusions; without it only the configured ports/CIDRs are used
      --config FILE          mesh-guard config file (the webhook's ConfigMap content)
  -o, --output FORMAT        table (default), json (the patches), yaml (the mutated manifests)
      --fail-on-change       exit 1 when the webhook would change anything (for CI)
  -h, --help                 this help

Namespace labels decide most rules (istio-injection, istio.io/rev, Dynatrace's
dynakube.internal.dynatrace.com/instance, ...). They come from Namespace objects in the input,
then --namespace-label on top. A namespace with no labels from either is "unknown": rules then use
their configured fallbacks and say so.

The peers' own objects in the input make the prediction use the real installation, as the webhook
does in the cluster: MutatingWebhookConfigurations (which pods Istio's, Consul's and Dynatrace's
webhooks see) and the settings objects they point at (Istio's istio-sidecar-injector[-<rev>] and
istio[-<rev>] ConfigMaps, Consul's <fullname>-connect-injector Deployment). Without them the
config mirrors (istio.*, consul.*) answer. The peers' helm template output can be added to the input.

Output:
  table  one row per change: object, rule, key, old → new, reason; then notes
  json   {objects:[{kind,namespace,name,outcome,patch,manifestPatch,changes,notes}],skipped,summary}.
         "patch" is exactly what /mutate returns for the pod (paths relative to the pod);
         "manifestPatch" applies the same changes to the manifest (paths under "podTemplatePath").
  yaml   every input document, with the changes written into Pods and pod templates
         (comments and key order kept), ready for a GitOps diff

Exit codes: 0 done (also when changes are found, unless --fail-on-change); 1 changes found with
--fail-on-change; 2 bad flags or unreadable input.

Examples:
  mesh-guard preview -f deploy.yaml -n shop --namespace-label istio-injection=enabled \\
      --namespace-label dynakube.internal.dynatrace.com/instance=dynakube
  helm template istio-cni istio/cni | mesh-guard preview -f -
  kustomize build overlays/prod | mesh-guard preview -f - -o yaml > rendered.yaml
  mesh-guard preview -f manifests/ns-and-apps.yaml --config mesh-guard-config.yaml --fail-on-change
`;


/** Where the pod template sits in each supported kind. */
export const TEMPLATE_PATHS: Readonly<Record<string, readonly string[]>> = {
  Pod: [],
  Deployment: ['spec', 'template'],
  StatefulSet: ['spec', 'template'],
  DaemonSet: ['spec', 'template'],
  ReplicaSet: ['spec', 'template'],
  ReplicationController: ['spec', 'template'],
  Job: ['spec', 'template'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template'],
};

type Path = ReadonlyArray<string | number>;

export interface InputObject {
  /** Index of the YAML document (or JSON value) in the input. */
  readonly doc: number;
  /** Path of the object inside its document ([] or ['items', i] for a List). */
  readonly path: Path;
  readonly object: Record<string, unknown>;
}

export interface ParsedInput {
  /** One per document; null for JSON input (the values are re-serialised as YAML). */
  readonly documents: ReadonlyArray<Document | null>;
  readonly values: readonly unknown[];
  readonly objects: readonly InputObject[];
}

/** Parses YAML/JSON text into objects; a List's items are expanded. Throws CliError on bad input. */
export function parseManifests(text: string, source: string): ParsedInput {
  const trimmed = text.trimStart();
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    let value: unknown;
    let ok = true;
    try {
      value = JSON.parse(text);
    } catch {
      ok = false; // maybe YAML flow style; let the YAML parser have it
    }
    if (ok) {
      const values = Array.isArray(value) ? value : [value];
      return { documents: values.map(() => null), values, objects: values.flatMap((v, i) => expand(v, i)) };
    }
  }
  const docs = parseAllDocuments(text, { uniqueKeys: false, logLevel: 'error' });
  const list = Array.isArray(docs) ? docs : [];
  const values: unknown[] = [];
  list.forEach((d, i) => {
    const e = d.errors[0];
    if (e) {
      const where = e.linePos?.[0] ? `line ${e.linePos[0].line}, column ${e.linePos[0].col}` : `document ${i + 1}`;
      throw new CliError(`preview: ${source}: not valid YAML (${where}): ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`);
    }
    try {
      values.push(d.toJS({ maxAliasCount: 100, logLevel: 'error' }));
    } catch (err) {
      throw new CliError(`preview: ${source}: document ${i + 1}: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
    }
  });
  return { documents: list, values, objects: values.flatMap((v, i) => expand(v, i)) };
}

function expand(value: unknown, doc: number): InputObject[] {
  if (!isObject(value)) return [];
  if (typeof value.kind === 'string' && value.kind.endsWith('List') && Array.isArray(value.items)) {
    return value.items.flatMap((item, i) => (isObject(item) ? [{ doc, path: ['items', i], object: item }] : []));
  }
  return [{ doc, path: [], object: value }];
}

export interface NamespaceContext {
  /** --namespace, if given. */
  readonly flagNamespace?: string;
  /** --namespace-label pairs. */
  readonly flagLabels: Readonly<Record<string, string>>;
}

/**
 * Namespace labels for the preview: Namespace objects in the input, with the flag labels on
 * top for the flag namespace (or, without --namespace, for every namespace not in the input).
 * The API server always adds kubernetes.io/metadata.name.
 */
export function namespaceResolver(objects: readonly InputObject[], ctx: NamespaceContext): (ns: string) => NamespaceLookup {
  const fromInput = new Map<string, Record<string, string>>();
  for (const { object } of objects) {
    if (object.kind !== 'Namespace') continue;
    const meta = isObject(object.metadata) ? object.metadata : {};
    if (typeof meta.name !== 'string' || !meta.name) continue;
    const labels: Record<string, string> = {};
    if (isObject(meta.labels)) for (const [k, v] of Object.entries(meta.labels)) if (typeof v === 'string') labels[k] = v;
    fromInput.set(meta.name, labels);
  }
  const flagsSaySomething = ctx.flagNamespace !== undefined || Object.keys(ctx.flagLabels).length > 0;
  return (ns) => {
    const own = fromInput.get(ns);
    const flagsApply = flagsSaySomething && (ctx.flagNamespace !== undefined ? ns === ctx.flagNamespace : true);
    if (!own && !flagsApply) {
      return {
        state: 'unknown',
        reason: `no labels for namespace ${q(ns)} in the input or flags (add its Namespace object, or --namespace ${ns} --namespace-label K=V)`,
      };
    }
    return { state: 'known', labels: { ...(own ?? {}), ...(flagsApply ? ctx.flagLabels : {}), 'kubernetes.io/metadata.name': ns } };
  };
}

/** A ClusterView over fixed answers, so `admit()` runs exactly as in the webhook. */
export function previewClusterView(
  lookup: (ns: string) => NamespaceLookup,
  activeGateIPs: readonly string[] | null,
  peers?: { readonly discovery: WebhookDiscovery; readonly settings: PeerSettings },
): ClusterView {
  return {
    state: 'synced',
    namespaceLabels: async (name) => lookup(name),
    activeGateServiceIPs: () => activeGateIPs,
    ...(peers ? { mutatingWebhooks: () => peers.discovery, peerSettings: () => peers.settings } : {}),
    ready: async () => undefined,
    close: async () => undefined,
  };
}

/**
 * The pod a workload's controller creates from its template, as the webhook sees it at
 * CREATE: the template's metadata and spec, the namespace, and generateName "<name>-" (the
 * real one may carry a hash, e.g. Deployment "<name>-<hash>-"), or for a StatefulSet the
 * name "<name>-0". Controller-added labels (pod-template-hash, ...) are not added.
 */
export function podFromTemplate(kind: string, name: string, namespace: string, template: Record<string, unknown>): Record<string, unknown> {
  const meta: Record<string, unknown> = isObject(template.metadata) ? { ...template.metadata } : {};
  if (kind === 'StatefulSet') meta.name = `${name}-0`;
  else if (!meta.name && !meta.generateName) meta.generateName = `${name}-`;
  meta.namespace = namespace;
  const pod: Record<string, unknown> = { apiVersion: 'v1', kind: 'Pod', metadata: meta };
  if (template.spec !== undefined) pod.spec = template.spec;
  return pod;
}

export function getIn(value: unknown, path: Path): unknown {
  let cur = value;
  for (const p of path) {
    if (typeof p === 'number') cur = Array.isArray(cur) ? cur[p] : undefined;
    else cur = isObject(cur) ? cur[p] : undefined;
  }
  return cur;
}

export interface PreviewChange {
  readonly rule: string;
  readonly mode: 'enforce' | 'dry-run';
  readonly kind: Change['kind'];
  /** Annotation or label key; for env, "<list>[<container>].env.<NAME>". */
  readonly key: string;
  readonly old: string | null;
  readonly new: string;
  readonly reason: string;
}

export interface PreviewObject {
  readonly document: number;
  readonly kind: string;
  readonly apiVersion: string;
  readonly namespace: string;
  readonly name: string;
  /** JSON Pointer of the pod template inside the manifest ("" for a Pod). */
  readonly podTemplatePath: string;
  readonly outcome: Outcome;
  /** Exactly what /mutate returns for the pod (paths relative to the pod). */
  readonly patch: readonly PatchOperation[];
  /** The same changes against this object (paths from the object's root, also inside a List). */
  readonly manifestPatch: readonly jsonpatch.Operation[];
  readonly changes: readonly PreviewChange[];
  /** Rules that looked at the pod and said why they did nothing (or failed). */
  readonly notes: ReadonlyArray<{ readonly rule: string; readonly note: string }>;
  /** The AdmissionReview warnings kubectl would show on creating the pod. */
  readonly warnings: readonly string[];
}

export interface SkippedObject {
  readonly document: number;
  readonly kind: string;
  readonly namespace?: string;
  readonly name: string;
  readonly reason: string;
}

export interface PreviewResult {
  readonly objects: readonly PreviewObject[];
  readonly skipped: readonly SkippedObject[];
  /** Namespace objects used as context. */
  readonly namespaces: readonly string[];
  /** The peers' objects used as context: webhook configurations and the settings objects they point at. */
  readonly peerObjects: readonly string[];
  /** Mutated values, one per input document. */
  readonly mutatedValues: readonly unknown[];
  readonly documentEdits: ReadonlyArray<ReadonlyArray<{ path: Path; value: unknown }>>;
  /** The pod sent through admission for each entry of `objects` (same index). */
  readonly admittedPods: readonly unknown[];
}

export interface PreviewOptions {
  readonly config: Config;
  readonly namespaces: NamespaceContext;
  readonly activeGateIPs: readonly string[] | null;
  readonly rules?: readonly Rule[];
}

const pointer = (path: Path) => path.map((p) => `/${escapePointer(String(p))}`).join('');

/** Runs the admission core over every Pod and pod template in the input. */
export async function runPreview(input: ParsedInput, opts: PreviewOptions): Promise<PreviewResult> {
  const lookup = namespaceResolver(input.objects, opts.namespaces);
  const peers = peersFromInput(input.objects);
  const cluster = previewClusterView(lookup, opts.activeGateIPs, peers);
  const deps = { config: opts.config, cluster, rules: opts.rules ?? allRules };
  const defaultNs = opts.namespaces.flagNamespace ?? 'default';
  const objects: PreviewObject[] = [];
  const skipped: SkippedObject[] = [];
  const namespaces: string[] = [];
  const peerObjects: string[] = [];
  const admittedPods: unknown[] = [];
  const mutatedValues = input.values.map((v) => structuredClone(v));
  const documentEdits: Array<Array<{ path: Path; value: unknown }>> = input.values.map(() => []);

  let n = 0;
  for (const item of input.objects) {
    const o = item.object;
    const kind = typeof o.kind === 'string' ? o.kind : '';
    const meta = isObject(o.metadata) ? o.metadata : {};
    const name = typeof meta.name === 'string' && meta.name ? meta.name : typeof meta.generateName === 'string' ? meta.generateName : '';
    const namespace = typeof meta.namespace === 'string' && meta.namespace ? meta.namespace : defaultNs;
    if (kind === 'Namespace') {
      namespaces.push(name);
      continue;
    }
    if (kind === 'MutatingWebhookConfiguration' || (kind === 'ConfigMap' && peers?.used.has(o))) {
      peerObjects.push(`${kind} ${kind === 'ConfigMap' ? `${namespace}/` : ''}${name}`);
      continue;
    }
    const templatePath = Object.hasOwn(TEMPLATE_PATHS, kind) ? TEMPLATE_PATHS[kind]! : undefined;
    if (!templatePath) {
      skipped.push({ document: item.doc, kind: kind || '(no kind)', name, ...(meta.namespace ? { namespace } : {}), reason: kind ? `kind ${kind} has no pod template` : 'not a Kubernetes object (no kind)' });
      continue;
    }
    const template = templatePath.length ? getIn(o, templatePath) : o;
    if (!isObject(template)) {
      skipped.push({ document: item.doc, kind, name, namespace, reason: `has no pod template at .${templatePath.join('.')}` });
      continue;
    }
    const pod = kind === 'Pod' ? o : podFromTemplate(kind, name, namespace, template);
    const request: AdmissionRequest = {
      uid: `preview-${++n}`,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      operation: 'CREATE',
      namespace,
      object: pod,
    };
    const result = await admit(request, deps);

    const enforced = result.outcomes.filter((x) => x.mode === 'enforce').flatMap((x) => x.changes.map((c) => c.change));
    // Only changes that made it into the patch (a value already in place gives no op).
    const effective = result.ops.length ? enforced : [];
    const base = [...item.path, ...templatePath];
    const after = structuredClone(o);
    const edits: Array<{ path: Path; value: unknown }> = [];
    for (const c of effective) {
      const rel: Path =
        c.kind === 'env' ? ['spec', c.list, c.containerIndex, 'env', c.envIndex, 'value']
        : ['metadata', c.kind === 'annotation' ? 'annotations' : 'labels', c.key];
      if (getIn(after, [...templatePath, ...rel]) === c.value) continue;
      setIn(after, [...templatePath, ...rel], c.value);
      edits.push({ path: [...base, ...rel], value: c.value });
    }
    if (edits.length) {
      documentEdits[item.doc]!.push(...edits);
      if (item.path.length) setIn(mutatedValues[item.doc], item.path, after);
      else mutatedValues[item.doc] = after;
    }
    admittedPods.push(pod);
    objects.push({
      document: item.doc,
      kind,
      apiVersion: typeof o.apiVersion === 'string' ? o.apiVersion : '',
      namespace,
      name,
      podTemplatePath: pointer(templatePath),
      outcome: result.outcome,
      patch: result.ops,
      manifestPatch: edits.length ? jsonpatch.compare(o, after) : [],
      changes: result.outcomes.flatMap((x) => describeChanges(x)),
      notes: [
        ...(result.outcome === 'opted-out' ? [{ rule: '-', note: 'mesh-guard.io/skip is true: the webhook leaves it alone' }] : []),
        ...(result.outcome === 'unexpected-shape' ? [{ rule: '-', note: `not a well-formed pod (${String(result.log.reason)}): the webhook leaves it alone` }] : []),
        ...result.outcomes.flatMap((x) =>
          x.error ? [{ rule: x.rule, note: `rule failed: ${x.error}` }]
          : x.changes.length === 0 ? x.reasons.map((r) => ({ rule: x.rule, note: r }))
          : [],
        ),
      ],
      warnings: result.review.response.warnings ?? [],
    });
  }
  return { objects, skipped, namespaces, peerObjects, mutatedValues, documentEdits, admittedPods };
}

/**
 * Discovery from the input's MutatingWebhookConfigurations, and the settings objects among the
 * input that they point at (namespace "default" when an object names none, as kubectl applies it).
 * Undefined when the input has no webhook configuration: then the config mirrors answer.
 */
function peersFromInput(objects: readonly InputObject[]): { discovery: WebhookDiscovery; settings: PeerSettings; used: Set<unknown> } | undefined {
  const mwcs = objects.map((i) => i.object).filter((o) => o.kind === 'MutatingWebhookConfiguration');
  if (mwcs.length === 0) return undefined;
  const discovery = discoveryOf(mwcs as V1MutatingWebhookConfiguration[]);
  const candidates = objects.map((i) => i.object).filter((o) => o.kind === 'ConfigMap' || o.kind === 'Deployment');
  const settings = settingsFromObjects(discovery, candidates);
  const wanted = new Set(wantedSettings(discovery).map((r) => `${r.namespace}/${r.name}`));
  const used = new Set<unknown>(
    candidates.filter((o) => {
      const meta = isObject(o.metadata) ? o.metadata : {};
      return o.kind === 'ConfigMap' && wanted.has(`${typeof meta.namespace === 'string' ? meta.namespace : 'default'}/${String(meta.name)}`);
    }),
  );
  return { discovery, settings, used };
}

function describeChanges(o: RuleOutcome): PreviewChange[] {
  return o.changes.map(({ change, old }) => ({
    rule: o.rule,
    mode: o.mode,
    kind: change.kind,
    key: change.kind === 'env' ? `${change.list}[${change.containerName}].env.${change.name}` : change.key,
    old: change.kind === 'env' ? null : (old ?? null),
    new: change.value,
    reason: change.reason,
  }));
}

/** Sets a value, creating missing maps on the way (never arrays: env paths always exist). */
function setIn(target: unknown, path: Path, value: unknown): void {
  let cur = target as Record<string | number, unknown>;
  path.forEach((p, i) => {
    if (i === path.length - 1) {
      cur[p] = value;
      return;
    }
    if (cur[p] === undefined || cur[p] === null) cur[p] = {};
    cur = cur[p] as Record<string | number, unknown>;
  });
}

// ---- rendering -----------------------------------------------------------------------------

const objectLabel = (o: { kind: string; namespace?: string; name: string }) =>
  `${o.kind} ${o.namespace ? `${o.namespace}/` : ''}${o.name || '(unnamed)'}`;

function short(s: string, max = 60): string {
  const one = s.replace(/\s+/g, ' ');
  return one.length > max ? `${one.slice(0, max - 1)}…` : one;
}

export function renderPreviewTable(r: PreviewResult): string {
  const rows: string[][] = [];
  for (const o of r.objects) {
    for (const c of o.changes) {
      const change = c.kind === 'env' ? 'value updated (see -o json)' : `${c.old === null ? '(unset)' : q(short(c.old, 40))} → ${q(short(c.new))}`;
      rows.push([
        objectLabel(o),
        c.mode === 'enforce' ? c.rule : `${c.rule} (dry-run)`,
        `${c.kind === 'label' ? 'label ' : c.kind === 'annotation' ? '' : 'env '}${c.key}`,
        change,
        c.reason,
      ]);
    }
  }
  let text = rows.length ? renderTable(['OBJECT', 'RULE', 'KEY', 'OLD → NEW', 'REASON'], rows) : '';
  const notes: string[] = [];
  for (const o of r.objects) for (const n of o.notes) notes.push(`${objectLabel(o)}: ${n.rule === '-' ? '' : `${n.rule}: `}${n.note}`);
  for (const s of r.skipped) notes.push(`${objectLabel(s)}: skipped, ${s.reason}`);
  if (notes.length) text += `${rows.length ? '\n' : ''}Notes:\n${notes.map((n) => `  ${n}`).join('\n')}\n`;
  const warnings = r.objects.flatMap((o) => o.warnings.map((w) => `${objectLabel(o)}: ${w}`));
  if (warnings.length) text += `${rows.length || notes.length ? '\n' : ''}Warnings (kubectl shows them on create):\n${warnings.map((w) => `  ${w}`).join('\n')}\n`;
  const s = summary(r);
  text += `${rows.length || notes.length ? '\n' : ''}${s.changed ? `${plural(s.changed, 'object')} would change` : 'No changes'} (${plural(s.objects, 'pod/workload', 'pods/workloads')} checked, ${s.skipped} skipped${r.namespaces.length ? `, ${plural(r.namespaces.length, 'namespace')} used as context` : ''}${r.peerObjects.length ? `, ${plural(r.peerObjects.length, 'peer object')} used as context` : ''}).\n`;
  return text;
}

export function summary(r: PreviewResult): { objects: number; changed: number; unchanged: number; skipped: number } {
  const changed = r.objects.filter((o) => o.patch.length > 0).length;
  return { objects: r.objects.length, changed, unchanged: r.objects.length - changed, skipped: r.skipped.length };
}

export function renderPreviewJson(r: PreviewResult): string {
  return `${JSON.stringify({ objects: r.objects, skipped: r.skipped, namespaces: r.namespaces, ...(r.peerObjects.length ? { peerObjects: r.peerObjects } : {}), summary: summary(r) }, null, 2)}\n`;
}

const YAML_OUT = { lineWidth: 0, indentSeq: false, flowCollectionPadding: false } as const;

/** Every input document, with the changes applied (YAML input keeps comments and key order). */
export function renderPreviewYaml(input: ParsedInput, r: PreviewResult): string {
  const parts: string[] = [];
  input.values.forEach((value, i) => {
    let doc = input.documents[i] ?? null;
    // An empty document is dropped, unless it carries comments (a license header, say).
    if ((value === null || value === undefined) && !(doc && (doc.commentBefore || doc.comment))) return;
    if (doc) {
      doc = doc.clone();
      for (const e of r.documentEdits[i]!) {
        // A metadata map we create goes first in its pod template, where people expect it.
        const metaPath = e.path.length >= 3 && e.path[e.path.length - 3] === 'metadata' ? e.path.slice(0, -2) : undefined;
        const created = metaPath !== undefined && !doc.hasIn(metaPath);
        doc.setIn([...e.path], e.value);
        if (created) {
          const parent = doc.getIn(metaPath!.slice(0, -1), true);
          if (isMap(parent)) {
            const at = parent.items.findIndex((pair) => (isScalar(pair.key) ? pair.key.value : pair.key) === 'metadata');
            if (at > 0) parent.items.unshift(...parent.items.splice(at, 1));
          }
        }
      }
    } else {
      doc = new Document(r.mutatedValues[i]);
    }
    parts.push(doc.toString(YAML_OUT).replace(/^---\n/, ''));
  });
  return parts.join('---\n');
}

// ---- command -------------------------------------------------------------------------------

export async function previewCommand(args: readonly string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseFlags('preview', args, {
    filename: { type: 'string', short: 'f' },
    namespace: { type: 'string', short: 'n' },
    'namespace-label': { type: 'string', multiple: true },
    'activegate-ip': { type: 'string', multiple: true },
    config: { type: 'string' },
    output: { type: 'string', short: 'o' },
    'fail-on-change': { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    io.out(PREVIEW_HELP);
    return EXIT_OK;
  }
  rejectPositionals('preview', positionals);
  const format = outputFormat('preview', values.output, ['table', 'json', 'yaml']);
  if (!values.filename) throw new CliError('preview: -f FILE (or -f - for stdin) is required (see mesh-guard preview --help)');
  if (values.namespace !== undefined && !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(values.namespace)) {
    throw new CliError(`preview: --namespace ${q(values.namespace)} is not a valid namespace name`);
  }
  const flagLabels: Record<string, string> = {};
  for (const pair of values['namespace-label'] ?? []) {
    const eq = pair.indexOf('=');
    const k = eq === -1 ? '' : pair.slice(0, eq);
    const v = eq === -1 ? '' : pair.slice(eq + 1);
    if (eq === -1 || !isQualifiedName(k) || !isValidLabelValue(v)) {
      throw new CliError(`preview: --namespace-label ${q(pair)} is not a valid label KEY=VALUE`);
    }
    flagLabels[k] = v;
  }
  const ips = values['activegate-ip'];
  for (const ip of ips ?? []) {
    if (!/^[0-9a-fA-F.:]+$/.test(ip) || !(ip.includes('.') || ip.includes(':'))) throw new CliError(`preview: --activegate-ip ${q(ip)} is not an IP address`);
  }
  const config = loadConfigFile(values.config);
  const source = values.filename === '-' ? 'stdin' : values.filename;
  let text: string;
  try {
    text = values.filename === '-' ? await io.readStdin() : fs.readFileSync(values.filename, 'utf8');
  } catch (err) {
    throw new CliError(`preview: cannot read ${source}: ${errnoText(err)}`);
  }
  const input = parseManifests(text, source);
  const result = await runPreview(input, {
    config,
    namespaces: { ...(values.namespace !== undefined ? { flagNamespace: values.namespace } : {}), flagLabels },
    activeGateIPs: ips?.length ? ips : null,
  });
  if (format === 'json') io.out(renderPreviewJson(result));
  else if (format === 'yaml') {
    io.out(renderPreviewYaml(input, result));
    const s = summary(result);
    io.err(`mesh-guard preview: ${s.changed ? `${plural(s.changed, 'object')} changed` : 'no changes'} (${s.objects} checked, ${s.skipped} skipped)\n`);
  } else io.out(renderPreviewTable(result));
  return values['fail-on-change'] && summary(result).changed > 0 ? EXIT_FINDINGS : EXIT_OK;
}
