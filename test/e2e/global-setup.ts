/**
 * The end-to-end run's frame: a run directory shared by every test file (each child process the
 * suite starts leaves a pid file there), and a teardown that kills whatever is still listed, so a
 * crashed or failed test leaves no etcd, kube-apiserver or mesh-guard behind. `npm run e2e` has
 * already built dist/ and .build/bin/; a missing binary fails the run (controlplane.ts says how to
 * build it), it never skips.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export default function setup(): () => void {
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-guard-e2e-run-'));
  process.env.MESH_GUARD_E2E_RUN_DIR = runDir;
  return () => {
    for (const f of fs.readdirSync(runDir).filter((n) => n.endsWith('.pid'))) {
      const pid = Number(fs.readFileSync(path.join(runDir, f), 'utf8'));
      try {
        process.kill(pid, 'SIGKILL');
        console.warn(`[e2e] teardown killed ${f.replace(/\.pid$/, '')} left running`);
      } catch {
        // already gone
      }
    }
    fs.rmSync(runDir, { recursive: true, force: true });
  };
}
