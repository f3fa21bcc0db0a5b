import fs from 'node:fs';
import path from 'node:path';

/**
 * The environment and node flags mesh-guard runs with, taken from `npm start` (the image's
 * ENV and CMD carry the same ones; test/deploy-image.test.ts keeps them in step), so the
 * benchmarks run the server as users run it. `without` drops the flags and env variables that
 * start with one of its prefixes (`npm run bench -- --without=--max-semi-space-size`).
 */
export function startCommand(repoRoot: string, without: readonly string[] = []): { env: Record<string, string>; flags: string[] } {
  const pkg = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { scripts: { start: string } };
  const words = pkg.scripts.start.split(/\s+/);
  const env: Record<string, string> = {};
  while (/^[A-Z_]+=/.test(words[0] ?? '')) {
    const [k, v] = words.shift()!.split('=') as [string, string];
    env[k] = v;
  }
  if (words[0] !== 'node' || words.at(-1) !== 'dist/src/server/main.js') throw new Error(`unexpected start script: ${pkg.scripts.start}`);
  const dropped = (w: string): boolean => without.some((prefix) => w.startsWith(prefix));
  for (const k of Object.keys(env)) if (dropped(k)) delete env[k];
  return { env, flags: words.slice(1, -1).filter((w) => !dropped(w)) };
}
