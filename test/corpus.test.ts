/**
 * The corpus map of test/support/corpus.ts against the two places it reads: the file list is what
 * ../shared/corpus/istio-inject holds, and the pinned istio.io/istio module has each of those files.
 * Each half runs where its place is present (these check the map, they are not corpus tests).
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ISTIO_INJECT_FILES, corpusFile, moduleTestdata, pinnedIstioVersion, sharedDir } from './support/corpus.js';

const shared = path.join(sharedDir, 'corpus/istio-inject');
const testdata = moduleTestdata();

describe('corpus map', () => {
  it('pins istio.io/istio once, in the injector go.mod', () => {
    expect(pinnedIstioVersion()).toMatch(/^v0\.0\.0-\d{14}-[0-9a-f]{12}$/);
  });

  it.runIf(fs.existsSync(shared))('lists exactly the top-level files of ../shared/corpus/istio-inject', () => {
    const files = fs.readdirSync(shared).filter((f) => f !== 'README.md' && fs.statSync(path.join(shared, f)).isFile());
    expect([...ISTIO_INJECT_FILES].sort()).toEqual(files.sort());
  });

  it.runIf(testdata !== undefined)('finds every listed file in the module and reads it from there first', () => {
    for (const f of ISTIO_INJECT_FILES) expect(corpusFile(`istio-inject/${f}`), f).toBe(path.join(testdata!, f));
    expect(corpusFile('istio-inject/classic-1.26.8/hello.yaml') ?? '').not.toContain(testdata!);
  });

  it.runIf(testdata !== undefined && fs.existsSync(shared))('has the same inputs in both places', () => {
    for (const f of ISTIO_INJECT_FILES.filter((f) => !f.endsWith('.injected'))) {
      expect(fs.readFileSync(path.join(testdata!, f), 'utf8'), f).toBe(fs.readFileSync(path.join(shared, f), 'utf8'));
    }
  });
});
