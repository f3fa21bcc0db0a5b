/** The compiled server as `npm start` runs it: the README's Done-when, SIGTERM, and bad config. */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from './support/review.js';
import { spawnServer, waitReady } from './support/process.js';

const sample = fs.readFileSync(path.join(repoRoot, 'examples/review-istio-cni-node.json'), 'utf8');

describe('compiled server process', () => {
  it('answers the sample review with the patch, and exits 0 on SIGTERM after draining', async () => {
    const p = await spawnServer();
    try {
      await waitReady(p);
      const res = await p.request('POST', '/mutate', sample);
      expect(res.status).toBe(200);
      const response = JSON.parse(res.body).response;
      expect(JSON.parse(Buffer.from(response.patch, 'base64').toString())).toEqual([
        { op: 'add', path: '/metadata/annotations/oneagent.dynatrace.com~1inject', value: 'false' },
      ]);
      p.kill('SIGTERM');
      await expect(p.exited).resolves.toBe(0);
      expect(p.lines.some((l) => l.msg === 'stopped')).toBe(true);
      expect(p.lines.filter((l) => String(l.msg).startsWith('cluster view is off'))).toHaveLength(1);
    } finally {
      p.kill('SIGKILL');
    }
  });

  it('with DRY_RUN=true returns no patch and logs what it would have set', async () => {
    const p = await spawnServer({ DRY_RUN: 'true' });
    try {
      await waitReady(p);
      const res = await p.request('POST', '/mutate', sample);
      expect(JSON.parse(res.body).response.patch).toBeUndefined();
      p.kill('SIGTERM');
      await p.exited;
      const line = p.lines.find((l) => l.msg === 'admission');
      expect(line).toMatchObject({
        dryRun: true,
        rules: [{ rule: 'node-agent-guard', mode: 'dry-run', changes: ['oneagent.dynatrace.com/inject: (unset) → "false"'] }],
      });
    } finally {
      p.kill('SIGKILL');
    }
  });

  it('refuses to start on a bad config with one line naming the key', async () => {
    const dir = fs.mkdtempSync(path.join(repoRoot, 'node_modules/.mesh-guard-bad-'));
    const file = path.join(dir, 'config.yaml');
    fs.writeFileSync(file, 'istio:\n  statusPort: 99999\n');
    const p = await spawnServer({ CONFIG_FILE: file });
    expect(await p.exited).toBe(1);
    expect(p.stderr().trim().split('\n')).toEqual(['mesh-guard: config: istio.statusPort: expected an integer from 1 to 65535, got number 99999']);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
