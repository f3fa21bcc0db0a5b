/**
 * The helm binary the chart tests run: built from its pinned Go module (test/e2e/helm) into
 * the git-ignored .build/bin/ by `npm run build:go`. Without it the chart tests skip with one
 * line saying so, except under CI=true, where a missing helm is a failure.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseDocs, repoRoot, type Obj } from './kustomize.js';

export const helmBin = path.join(repoRoot, '.build/bin/helm');
export const chartDir = path.join(repoRoot, 'deploy/helm/mesh-guard');
export const haveHelm = fs.existsSync(helmBin);
export const helmMissing = `${path.relative(repoRoot, helmBin)} is missing, so the Helm chart tests are skipped: build it with \`npm run build:go\``;

export function helm(args: string[]): string {
  return execFileSync(helmBin, args, {
    encoding: 'utf8',
    timeout: 120_000,
    // No user or machine Helm state leaks into the tests.
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', HELM_CACHE_HOME: '/tmp/mesh-guard-helm/cache', HELM_CONFIG_HOME: '/tmp/mesh-guard-helm/config', HELM_DATA_HOME: '/tmp/mesh-guard-helm/data' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** `helm template` of the chart into the namespace mesh-guard (kustomize's), with --set-string pairs or values files. */
export function helmTemplate(opts: { set?: string[]; values?: string[]; namespace?: string } = {}): Obj[] {
  const args = ['template', 'mesh-guard', chartDir, '--namespace', opts.namespace ?? 'mesh-guard'];
  for (const s of opts.set ?? []) args.push('--set', s);
  for (const v of opts.values ?? []) args.push('--values', v);
  return parseDocs(helm(args), `helm ${args.join(' ')}`);
}
