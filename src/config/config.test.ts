import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig, watchConfig } from './load.js';
import { defaultConfig } from './schema.js';

describe('config', () => {
  it('has a default for every key, so an empty file is a valid config', () => {
    expect(parseConfig('', {})).toEqual(defaultConfig);
    expect(defaultConfig.server.port).toBe(8443);
    expect(defaultConfig.server.bodyLimitBytes).toBe(3 * 1024 * 1024);
    expect(defaultConfig.server.keepAliveTimeoutMs).toBeGreaterThan(90_000);
    expect(defaultConfig.rules['node-agent-guard']).toBe('enforce');
  });

  it.each([
    ['dryRun: 1', 'config: dryRun: expected true or false, got number 1'],
    ['nope: 1', 'config: nope: unknown key'],
    ['server: { keepAliveTimeoutMs: 72000 }', 'config: server.keepAliveTimeoutMs: expected an integer from 90001'],
    ['rules: { node-agent-guard: maybe }', 'config: rules.node-agent-guard: expected one of enforce, dry-run, off'],
    ['rules: { no-such-rule: enforce }', 'config: rules.no-such-rule: unknown key'],
    ['activeGate: { ports: [9999, 70000] }', 'config: activeGate.ports[1]: expected an integer from 1 to 65535'],
    ['activeGate: { cidrs: ["10.0.0.1"] }', 'config: activeGate.cidrs[0]: "10.0.0.1" is not a CIDR'],
    ['activeGate: { cidrs: ["10.0.0.0/8 "] }', 'config: activeGate.cidrs[0]: "10.0.0.0/8 " is not a CIDR'],
    ['nodeAgentGuard: { extraSelectors: [ {} ] }', 'config: nodeAgentGuard.extraSelectors[0]: a selector needs at least one label'],
    ['- a list', 'config: config: the top level must be a map'],
    ['a: [', 'config: config: not valid YAML'],
    ['dryRun: true\ndryRun: false', 'config: config: not valid YAML'],
  ])('rejects %j with one line naming the key', (yaml, message) => {
    let error: Error | undefined;
    try {
      parseConfig(yaml, {});
    } catch (err) {
      error = err as Error;
    }
    expect(error?.message.startsWith(message), error?.message).toBe(true);
    expect(error?.message).not.toContain('\n');
  });

  it('accepts IPv6 CIDRs and valid ports', () => {
    const c = parseConfig('activeGate: { ports: [9999, 443], cidrs: ["fd00::/8", "10.43.0.10/32"] }', {});
    expect(c.activeGate).toMatchObject({ ports: [9999, 443], cidrs: ['fd00::/8', '10.43.0.10/32'], clusterIPFamilies: ['IPv4'] });
  });

  it('applies env overrides over the file, and names the variable when one is bad', () => {
    const c = parseConfig('dryRun: false\nserver: { port: 9443 }', { DRY_RUN: 'true', PORT: '7443', LOG_LEVEL: 'debug', TLS_CERT_FILE: '/c', TLS_KEY_FILE: '/k' });
    expect(c.dryRun).toBe(true);
    expect(c.server.port).toBe(7443);
    expect(c.logLevel).toBe('debug');
    expect(c.server.tls).toMatchObject({ certFile: '/c', keyFile: '/k' });
    expect(() => parseConfig('', { DRY_RUN: 'yes' })).toThrow(/^config: DRY_RUN \(dryRun\): expected true or false/);
    expect(() => parseConfig('', { PORT: 'http' })).toThrow(/^config: PORT \(server.port\)/);
  });

  it('returns frozen objects', () => {
    const c = parseConfig('', {});
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.server.tls)).toBe(true);
  });

  it('watchConfig reports a valid change and an invalid one', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mg-cfg-'));
    const file = path.join(dir, 'c.yaml');
    fs.writeFileSync(file, 'dryRun: false');
    const seen: string[] = [];
    const w = watchConfig(file, {}, 20, (r) => seen.push('error' in r ? `error:${r.error.message}` : `dryRun:${r.config.dryRun}`));
    try {
      fs.writeFileSync(file, 'dryRun: true');
      await until(() => seen.length === 1);
      fs.writeFileSync(file, 'dryRun: 3');
      await until(() => seen.length === 2);
      expect(seen).toEqual(['dryRun:true', expect.stringMatching(/^error:config: dryRun/)]);
    } finally {
      w.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

async function until(check: () => boolean): Promise<void> {
  const end = Date.now() + 5000;
  while (!check()) {
    if (Date.now() > end) throw new Error('timeout');
    await new Promise((r) => setTimeout(r, 10));
  }
}
