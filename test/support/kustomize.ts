/**
 * Renders the kustomizations under deploy/: with `kubectl kustomize` when kubectl is installed,
 * else with a small in-test renderer for exactly the subset of kustomize the manifests use
 * (resources, components, patches, images). test/deploy.test.ts checks that the two agree
 * wherever kubectl exists; test/helm.test.ts compares the Helm chart with the result.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import jsonpatch from 'fast-json-patch';
import { parseAllDocuments, parse as parseYaml } from 'yaml';

export const repoRoot = path.resolve(import.meta.dirname, '../..');
export const deployDir = path.join(repoRoot, 'deploy');

export type Obj = Record<string, any>;

/** Kubernetes reads manifests as YAML 1.1 (so `0440` is octal); read them the same way. */
export function parseDocs(text: string, source: string): Obj[] {
  return parseAllDocuments(text, { version: '1.1' })
    .map((d) => {
      if (d.errors.length) throw new Error(`${source}: ${d.errors[0]!.message}`);
      return d.toJS() as Obj | null;
    })
    .filter((o): o is Obj => o !== null);
}

// The in-test renderer: exactly the kustomize subset the manifests use, and nothing more.

const KUSTOMIZATION_KEYS = new Set(['apiVersion', 'kind', 'resources', 'components', 'patches', 'images']);

export function renderMini(dir: string, accumulated: Obj[] = [], asComponent = false): Obj[] {
  const k = parseYaml(fs.readFileSync(path.join(dir, 'kustomization.yaml'), 'utf8'), { version: '1.1' }) as Obj;
  for (const key of Object.keys(k)) {
    if (!KUSTOMIZATION_KEYS.has(key)) throw new Error(`${dir}: kustomization key "${key}" is outside the tested subset`);
  }
  if ((k.kind === 'Component') !== asComponent) throw new Error(`${dir}: unexpected kind ${k.kind}`);
  let objs = asComponent ? accumulated : [];
  for (const r of (k.resources ?? []) as string[]) {
    const p = path.resolve(dir, r);
    if (fs.statSync(p).isDirectory()) objs.push(...renderMini(p));
    else objs.push(...parseDocs(fs.readFileSync(p, 'utf8'), p));
  }
  for (const c of (k.components ?? []) as string[]) objs = renderMini(path.resolve(dir, c), objs, true);
  for (const p of (k.patches ?? []) as Obj[]) objs = applyPatch(dir, objs, p);
  for (const img of (k.images ?? []) as Obj[]) objs = setImage(objs, img);
  return objs;
}

/** `images:` with name/newName/newTag, on Deployment containers (the only workload here). */
function setImage(objs: Obj[], img: Obj): Obj[] {
  return objs.map((o) => {
    if (o.kind !== 'Deployment') return o;
    const c = structuredClone(o);
    for (const ctr of c.spec.template.spec.containers as Obj[]) {
      const [name, tag] = String(ctr.image).split(/:(?=[^:/]+$)/);
      if (name !== img.name) continue;
      ctr.image = `${img.newName ?? name}:${img.newTag ?? tag}`;
    }
    return c;
  });
}

function applyPatch(dir: string, objs: Obj[], p: Obj): Obj[] {
  const text: string = p.patch ?? fs.readFileSync(path.resolve(dir, p.path), 'utf8');
  const body = parseYaml(text, { version: '1.1' }) as unknown;
  const target: Obj = p.target ?? { kind: (body as Obj).kind, name: (body as Obj).metadata?.name };
  const matches = objs.filter(
    (o) =>
      (!target.kind || o.kind === target.kind) &&
      (!target.name || o.metadata?.name === target.name) &&
      (!target.group || String(o.apiVersion).split('/')[0] === target.group) &&
      (!target.version || String(o.apiVersion).split('/').pop() === target.version),
  );
  if (matches.length !== 1) throw new Error(`${dir}: patch target ${JSON.stringify(target)} matched ${matches.length}`);
  const idx = objs.indexOf(matches[0]!);
  const out = [...objs];
  if (Array.isArray(body)) {
    out[idx] = jsonpatch.applyPatch(structuredClone(matches[0]!), body as jsonpatch.Operation[], true, false).newDocument;
  } else {
    out[idx] = mergeMaps(structuredClone(matches[0]!), body as Obj, '');
  }
  return out;
}

/** Strategic merge restricted to maps: lists would need merge keys, so they are refused. */
function mergeMaps(into: Obj, patch: Obj, at: string): Obj {
  for (const [k, v] of Object.entries(patch)) {
    if (Array.isArray(v)) throw new Error(`strategic merge of a list at ${at}/${k} is outside the tested subset`);
    if (v && typeof v === 'object') into[k] = mergeMaps(into[k] ?? {}, v as Obj, `${at}/${k}`);
    else into[k] = v;
  }
  return into;
}

export const kubectl = (() => {
  try {
    execFileSync('kubectl', ['version', '--client'], { stdio: 'ignore', timeout: 20_000 });
    return true;
  } catch {
    return false;
  }
})();

function renderKubectl(dir: string): Obj[] {
  const out = execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8', timeout: 60_000 });
  return parseDocs(out, `kubectl kustomize ${dir}`);
}

export const key = (o: Obj) => `${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`;
export const sorted = (objs: Obj[]) => [...objs].sort((a, b) => key(a).localeCompare(key(b)));

/** `kubectl kustomize <dir>` when kubectl exists, else the in-test renderer. */
export function renderDir(dir: string): Obj[] {
  return kubectl ? renderKubectl(dir) : renderMini(dir);
}

const rendered = new Map<string, Obj[]>();
/** A kustomization under deploy/, rendered once per test file. */
export function render(rel: string): Obj[] {
  let objs = rendered.get(rel);
  if (!objs) {
    objs = renderDir(path.join(deployDir, rel));
    rendered.set(rel, objs);
  }
  return objs;
}
