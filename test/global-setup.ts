/** Builds dist/ once, for the tests that run the compiled server as users do. */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export default function setup(): void {
  // In the log, which Node the suite runs on (CI runs it on the machine's Node and on Node 24).
  console.log(`vitest on Node ${process.version} (${process.execPath})`); // eslint-disable-line no-console
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  execFileSync(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
}
