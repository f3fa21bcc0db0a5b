import { describe, expect, it } from 'vitest';
import jsonpatch from 'fast-json-patch';
import { buildPatch } from './patch.js';
import { inspectPod } from './pod.js';
import type { Change } from '../rules/types.js';

const ann = (key: string, value: string): Change => ({ kind: 'annotation', key, value, reason: 'test' });
const label = (key: string, value: string): Change => ({ kind: 'label', key, value, reason: 'test' });

function run(pod: unknown, changes: Change[]) {
  const inspected = inspectPod(pod, 'ns');
  if (!inspected.ok) throw new Error(inspected.reason);
  const ops = buildPatch(inspected.pod, changes);
  const out = jsonpatch.applyPatch(structuredClone(pod), structuredClone(ops) as jsonpatch.Operation[], true, false).newDocument;
  return { ops, out: out as { metadata: Record<string, Record<string, string>> } };
}

describe('buildPatch', () => {
  it.each([
    ['a/b', '/metadata/annotations/a~1b'],
    ['a~b', '/metadata/annotations/a~0b'],
    ['x.io/~/y', '/metadata/annotations/x.io~1~0~1y'],
  ])('escapes %s as %s', (key, path) => {
    const { ops } = run({ metadata: { annotations: { keep: 'v' } } }, [ann(key, 'v')]);
    expect(ops).toEqual([{ op: 'add', path, value: 'v' }]);
  });

  it('creates a missing annotations map in one op holding every new key', () => {
    const { ops, out } = run({ metadata: { name: 'p' } }, [ann('a/x', '1'), ann('b/y', '2')]);
    expect(ops).toEqual([{ op: 'add', path: '/metadata/annotations', value: { 'a/x': '1', 'b/y': '2' } }]);
    expect(out.metadata.annotations).toEqual({ 'a/x': '1', 'b/y': '2' });
  });

  it('creates metadata when the pod has none', () => {
    const { ops, out } = run({ spec: {} }, [ann('a/x', '1'), label('l/y', 'false')]);
    expect(ops[0]).toEqual({ op: 'add', path: '/metadata', value: {} });
    expect(out.metadata).toEqual({ annotations: { 'a/x': '1' }, labels: { 'l/y': 'false' } });
  });

  it('replaces annotations: null with a map', () => {
    const { out } = run({ metadata: { annotations: null, labels: null } }, [ann('a/x', '1')]);
    expect(out.metadata.annotations).toEqual({ 'a/x': '1' });
  });

  it('uses replace only for an existing key and skips a value already in place', () => {
    const { ops } = run({ metadata: { annotations: { 'a/x': 'true', 'b/y': 'false' } } }, [ann('a/x', 'false'), ann('b/y', 'false')]);
    expect(ops).toEqual([{ op: 'replace', path: '/metadata/annotations/a~1x', value: 'false' }]);
  });

  it('lets the last change to a key win, in one op', () => {
    const { ops } = run({ metadata: { annotations: {} } }, [ann('a/x', '1'), ann('a/x', '2')]);
    expect(ops).toEqual([{ op: 'add', path: '/metadata/annotations/a~1x', value: '2' }]);
  });

  it('treats __proto__-like keys as plain keys', () => {
    const pod = JSON.parse('{"metadata":{"annotations":{"constructor":"x"}}}');
    const { ops, out } = run(pod, [ann('constructor', 'y'), ann('prototype', 'z')]);
    expect(ops.map((o) => o.op)).toEqual(['replace', 'add']);
    expect(out.metadata.annotations).toEqual({ constructor: 'y', prototype: 'z' });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('replaces an env value by index', () => {
    const pod = { spec: { initContainers: [{ name: 'i', env: [{ name: 'A', value: 'old' }] }] } };
    const inspected = inspectPod(pod, 'ns');
    if (!inspected.ok) throw new Error();
    const ops = buildPatch(inspected.pod, [
      { kind: 'env', list: 'initContainers', containerIndex: 0, containerName: 'i', envIndex: 0, name: 'A', value: 'new', reason: 'r' },
    ]);
    expect(ops).toEqual([{ op: 'replace', path: '/spec/initContainers/0/env/0/value', value: 'new' }]);
  });
});
