/**
 * Vitest global setup: says once per run which corpus parts are missing (the test files skip what
 * needs them), and under CI fails the run instead. See test/support/corpus.ts.
 */
import { corpusRequired, missingCorpus, pinnedIstioVersion } from './corpus.js';

export default function setup(): void {
  const missing = missingCorpus();
  if (missing.length === 0) return;
  const where = missing.includes('istio-inject')
    ? `\`npm run build:go\` puts istio-inject into the Go module cache (istio.io/istio@${pinnedIstioVersion()}); ../shared beside the repo has all of it`
    : 'put ../shared (its corpus/) beside the repo';
  const line = `corpus: ${missing.join(', ')} not found, tests that read it are skipped; ${where}`;
  if (corpusRequired) throw new Error(`${line.replace('are skipped', 'cannot run')} (CI=${process.env.CI}: a missing corpus fails)`);
  console.log(line);
}
