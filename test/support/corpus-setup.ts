/**
 * Vitest global setup: says once per run which corpus parts are missing (the test files skip what
 * needs them), and under CI fails the run instead. See test/support/corpus.ts.
 */
import { corpusRequired, missingCorpus, pinnedIstioVersion } from './corpus.js';

export default function setup(): void {
  const missing = missingCorpus();
  if (missing.length === 0) return;
  const line =
    `corpus: ${missing.join(', ')} not found, tests that read it are skipped; get istio-inject into the Go module cache ` +
    `with \`npm run build:go\` (istio.io/istio@${pinnedIstioVersion()}), or put ../shared (corpus/) beside the repo for all of it`;
  if (corpusRequired) throw new Error(`${line.replace('are skipped', 'cannot run')} (CI=${process.env.CI}: a missing corpus fails)`);
  console.log(line);
}
