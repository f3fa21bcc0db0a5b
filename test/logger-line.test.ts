/** infoLine writes the admission line without pino's serializer: the same line pino writes. */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { AdmissionLogLine } from '../src/admission/handler.js';
import { createLogger, infoLine } from '../src/server/logger.js';

function capture(make: (sink: { write(s: string): void }) => pino.Logger): { log: pino.Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: make({ write: (s) => void lines.push(s) }), lines };
}

function lines(): AdmissionLogLine[] {
  const unchanged = new AdmissionLogLine('4697ff2d-a488-4456-a694-3be2d047df96', 'shop');
  unchanged.pod = 'checkout-86a6989020-';
  unchanged.outcome = 'unchanged';
  unchanged.durationMs = 0.179;
  const patched = new AdmissionLogLine('u-2', 'istio-system');
  patched.pod = 'istio-cni-node-';
  patched.outcome = 'patched';
  patched.ops = 1;
  patched.rules = [{ rule: 'node-agent-guard', mode: 'enforce', changes: ['oneagent.dynatrace.com/inject: (unset) → "false"'], reasons: ['Istio CNI node agent (label k8s-app=istio-cni-node)'] }];
  patched.dryRun = true;
  patched.durationMs = 1.5;
  const odd = new AdmissionLogLine('quote " backslash \\ newline \n tab \t', undefined);
  odd.kind = 'Deployment';
  odd.operation = 'UPDATE';
  odd.outcome = 'not-a-pod-create';
  odd.durationMs = Number.NaN;
  return [unchanged, patched, odd];
}

/** The time field differs between two calls; everything else must not. */
const withoutTime = (line: string) => line.replace(/,"time":("[^"]*"|\d+)/, ',"time":T');

describe('infoLine', () => {
  const makers: Record<string, (sink: { write(s: string): void }) => pino.Logger> = {
    'createLogger': (sink) => createLogger('info', sink),
    'a child of createLogger': (sink) => createLogger('info', sink).child({ component: 'x' }),
    'a default pino logger': (sink) => pino({ level: 'info' }, sink),
    'a logger with a mixin (goes through pino)': (sink) => pino({ level: 'info', mixin: () => ({ extra: 1 }) }, sink),
  };
  for (const [name, make] of Object.entries(makers)) {
    it(`writes what log.info writes, for ${name}`, () => {
      for (const line of lines()) {
        const fast = capture(make);
        const slow = capture(make);
        infoLine(fast.log, line, 'admission');
        slow.log.info(line, 'admission');
        expect(fast.lines).toHaveLength(1);
        expect(withoutTime(fast.lines[0]!)).toBe(withoutTime(slow.lines[0]!));
        expect(JSON.parse(fast.lines[0]!)).toMatchObject({ msg: 'admission', uid: line.uid });
      }
    });
  }

  it('writes nothing below the logger level, and an empty field object gives a valid line', () => {
    const quiet = capture((sink) => createLogger('warn', sink));
    infoLine(quiet.log, lines()[0]!, 'admission');
    expect(quiet.lines).toEqual([]);
    const empty = capture((sink) => createLogger('info', sink));
    infoLine(empty.log, {}, 'ready');
    expect(JSON.parse(empty.lines[0]!)).toMatchObject({ level: 'info', name: 'mesh-guard', msg: 'ready' });
  });
});
