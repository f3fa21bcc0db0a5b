/**
 * A read-only view of the pod in an AdmissionReview, after a shape check.
 *
 * The API server only sends pods that decoded into its typed Pod, but the webhook must
 * not trust that: anything the rules read is checked here once, so rules can rely on
 * string-valued maps and never crash on `annotations: null` or a number where a string
 * belongs. Keys are held in Maps, so "__proto__" is just a key.
 */
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { isQualifiedName } from './annotations.js';

export interface PodView {
  /** The object exactly as sent; never mutated. */
  readonly raw: V1Pod;
  readonly namespace: string;
  /** metadata.name, or generateName (usually the only one set at admission). */
  readonly displayName: string;
  readonly name: string;
  readonly generateName: string;
  readonly annotations: ReadonlyMap<string, string>;
  readonly labels: ReadonlyMap<string, string>;
  readonly hostNetwork: boolean;
  /** spec.restartPolicy as sent; "" when absent (the API server defaults that to Always). */
  readonly restartPolicy: string;
  /** Well-formed containers with their index in the raw list. */
  readonly containers: readonly IndexedContainer[];
  readonly initContainers: readonly IndexedContainer[];
  readonly volumeNames: readonly string[];
}

export interface IndexedContainer {
  readonly list: 'containers' | 'initContainers';
  readonly index: number;
  readonly name: string;
  readonly image: string;
  readonly container: V1Container;
  /** Env entries with a literal string value, with their raw index (valueFrom entries are skipped). */
  readonly env: ReadonlyArray<{ readonly index: number; readonly name: string; readonly value: string }>;
}

export type InspectResult = { ok: true; pod: PodView } | { ok: false; reason: string };

export const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Keys already found valid. The same few dozen label and annotation keys come back on
 * almost every pod, so the two regular expressions run once per key, not once per pod.
 * Validity depends on the key alone; the set stops growing at a bound.
 */
const validKeys = new Set<string>();
const VALID_KEYS_MAX = 4096;

function isValidKey(key: string): boolean {
  if (validKeys.has(key)) return true;
  if (!isQualifiedName(key)) return false;
  if (validKeys.size < VALID_KEYS_MAX) validKeys.add(key);
  return true;
}

function stringMap(v: unknown, where: string): Map<string, string> | string {
  const out = new Map<string, string>();
  if (v === undefined || v === null) return out;
  if (!isObject(v)) return `${where} is not a map`;
  for (const key of Object.keys(v)) {
    const value = v[key];
    if (typeof value !== 'string') return `${where} has a non-string value`;
    if (!isValidKey(key)) return `${where} has a key that is not a valid qualified name`;
    out.set(key, value);
  }
  return out;
}

type LiteralEnv = IndexedContainer['env'];
/** Shared by every container without a literal env value (most init containers, many others). */
const NO_ENV: LiteralEnv = Object.freeze([]);

// Plain loops below: inspectPod runs on every admission, and closures per element showed in profiles.
function literalEnv(c: Record<string, unknown>): LiteralEnv {
  const list = c.env;
  if (!Array.isArray(list)) return NO_ENV;
  let env: Array<LiteralEnv[number]> | undefined;
  for (let i = 0; i < list.length; i++) {
    const e: unknown = list[i];
    if (isObject(e) && typeof e.name === 'string' && typeof e.value === 'string') (env ??= []).push({ index: i, name: e.name, value: e.value });
  }
  return env ?? NO_ENV;
}

function indexContainers(v: unknown, list: IndexedContainer['list']): IndexedContainer[] | string {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) return `spec.${list} is not a list`;
  const out: IndexedContainer[] = [];
  for (let index = 0; index < v.length; index++) {
    const c: unknown = v[index];
    if (!isObject(c)) continue;
    out.push({
      list,
      index,
      name: typeof c.name === 'string' ? c.name : '',
      image: typeof c.image === 'string' ? c.image : '',
      container: c as unknown as V1Container,
      env: literalEnv(c),
    });
  }
  return out;
}

function volumeNamesOf(volumes: unknown): string[] {
  const names: string[] = [];
  if (!Array.isArray(volumes)) return names;
  for (const v of volumes as unknown[]) if (isObject(v) && typeof v.name === 'string') names.push(v.name);
  return names;
}

/** Checks the shape of `object` and builds the view, or says why the pod is left alone. */
export function inspectPod(object: unknown, requestNamespace: string | undefined): InspectResult {
  if (!isObject(object)) return { ok: false, reason: 'request.object is not a map' };
  const metadata = object.metadata;
  if (metadata !== undefined && metadata !== null && !isObject(metadata)) return { ok: false, reason: 'metadata is not a map' };
  const meta = isObject(metadata) ? metadata : {};
  const annotations = stringMap(meta.annotations, 'metadata.annotations');
  if (typeof annotations === 'string') return { ok: false, reason: annotations };
  const labels = stringMap(meta.labels, 'metadata.labels');
  if (typeof labels === 'string') return { ok: false, reason: labels };
  const spec = object.spec;
  if (spec !== undefined && spec !== null && !isObject(spec)) return { ok: false, reason: 'spec is not a map' };
  const s = isObject(spec) ? spec : {};
  const containers = indexContainers(s.containers, 'containers');
  if (typeof containers === 'string') return { ok: false, reason: containers };
  const initContainers = indexContainers(s.initContainers, 'initContainers');
  if (typeof initContainers === 'string') return { ok: false, reason: initContainers };
  const name = typeof meta.name === 'string' ? meta.name : '';
  const generateName = typeof meta.generateName === 'string' ? meta.generateName : '';
  const namespace =
    typeof requestNamespace === 'string' && requestNamespace !== ''
      ? requestNamespace
      : typeof meta.namespace === 'string' ? meta.namespace : '';
  const volumeNames = volumeNamesOf(s.volumes);
  return {
    ok: true,
    pod: {
      raw: object as V1Pod,
      namespace,
      name,
      generateName,
      displayName: name || generateName,
      annotations,
      labels,
      hostNetwork: s.hostNetwork === true,
      restartPolicy: typeof s.restartPolicy === 'string' ? s.restartPolicy : '',
      containers,
      initContainers,
      volumeNames,
    },
  };
}

/** The view as it will be once `annotations`/`labels` changes are applied (for later rules). */
export function withMetadata(
  pod: PodView,
  annotations: ReadonlyMap<string, string>,
  labels: ReadonlyMap<string, string>,
): PodView {
  return { ...pod, annotations, labels };
}

/**
 * A pod that runs to completion: restartPolicy Never or OnFailure. Every Job and CronJob pod
 * is one (the Job API requires one of the two); a sidecar that keeps running blocks it.
 */
export function runsToCompletion(pod: PodView): boolean {
  return pod.restartPolicy === 'Never' || pod.restartPolicy === 'OnFailure';
}

/** Whether a container or init container runs an image of this name (see imageName). */
export function hasImage(pod: PodView, name: string): boolean {
  for (const c of pod.containers) if (imageName(c.image) === name) return true;
  for (const c of pod.initContainers) if (imageName(c.image) === name) return true;
  return false;
}

/** Image name without registry host, path, tag or digest: "registry.istio.io/release/install-cni:1.30" → "install-cni". */
export function imageName(image: string): string {
  let s = image;
  const at = s.indexOf('@');
  if (at !== -1) s = s.slice(0, at);
  const slash = s.lastIndexOf('/');
  if (slash !== -1) s = s.slice(slash + 1);
  const colon = s.indexOf(':');
  return colon === -1 ? s : s.slice(0, colon);
}
