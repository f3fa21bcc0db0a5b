/** The batched stdout destination: lines leave on their own shortly after, and flush() writes everything at once. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { BatchedFdDestination, createLogger } from '../src/server/logger.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-guard-logger-'));
const fds: number[] = [];
afterEach(() => {
  for (const fd of fds.splice(0)) fs.closeSync(fd);
});

function open(name: string): { fd: number; read: () => string[] } {
  const file = path.join(dir, name);
  const fd = fs.openSync(file, 'w');
  fds.push(fd);
  return { fd, read: () => fs.readFileSync(file, 'utf8').split('\n').filter(Boolean) };
}

async function eventually(check: () => boolean): Promise<void> {
  const until = Date.now() + 5_000; // a generous "does not hang" bound, not a speed assertion
  while (!check()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('BatchedFdDestination', () => {
  it('writes a lone line without an explicit flush, as one JSON line', async () => {
    const out = open('lone.log');
    const log = createLogger('info', new BatchedFdDestination(out.fd));
    log.info({ uid: 'u1' }, 'ready');
    await eventually(() => out.read().length === 1);
    expect(JSON.parse(out.read()[0]!)).toMatchObject({ level: 'info', name: 'mesh-guard', uid: 'u1', msg: 'ready' });
  });

  it('keeps every line, in order, under a burst, and flush() writes what is pending synchronously', () => {
    const out = open('burst.log');
    const dest = new BatchedFdDestination(out.fd);
    const log = createLogger('info', dest);
    for (let i = 0; i < 5_000; i++) log.info({ i }, 'admission');
    log.flush();
    const lines = out.read().map((l) => JSON.parse(l) as { i: number });
    expect(lines.map((l) => l.i)).toEqual(Array.from({ length: 5_000 }, (_, i) => i));
    expect(dest.dropped).toBe(0);
  });

  it('flush(cb) waits for a write in flight instead of writing its lines a second time', async () => {
    const out = open('in-flight.log');
    const dest = new BatchedFdDestination(out.fd);
    const log = createLogger('info', dest);
    for (let i = 0; i < 2_000; i++) log.info({ i }, 'admission'); // over 64 KiB: written at the next check phase
    await new Promise((r) => setImmediate(r)); // the batch write is now on libuv's pool
    const spinUntil = Date.now() + 200; // let the pool finish it before its callback can run
    while (Date.now() < spinUntil && out.read().length < 2_000);
    for (let i = 2_000; i < 2_100; i++) log.info({ i }, 'admission');
    await new Promise<void>((resolve, reject) => log.flush((err) => (err ? reject(err) : resolve())));
    const lines = out.read().map((l) => JSON.parse(l) as { i: number });
    expect(lines.map((l) => l.i)).toEqual(Array.from({ length: 2_100 }, (_, i) => i));
    expect(dest.dropped).toBe(0);
  });

  it('reuses its batch buffers once written, and loses or repeats no line across many flushes and bursts', async () => {
    const out = open('reuse.log');
    const made = vi.spyOn(Buffer, 'allocUnsafeSlow');
    try {
      const dest = new BatchedFdDestination(out.fd);
      const log = createLogger('info', dest);
      let i = 0;
      for (let round = 0; round < 30; round++) {
        // Alternately a few lines (flushed by the timer) and a burst over 64 KiB (flushed at once, several batches).
        const n = round % 3 === 2 ? 1_500 : 3;
        for (let k = 0; k < n; k++) log.info({ i: i++ }, 'admission');
        const expected = i;
        await eventually(() => out.read().length === expected);
      }
      const lines = out.read().map((l) => JSON.parse(l) as { i: number });
      expect(lines.map((l) => l.i)).toEqual(Array.from({ length: i }, (_, k) => k));
      expect(dest.dropped).toBe(0);
      // Without reuse this run makes 50 (one per small round, three or four per burst). With two spares
      // kept, a burst still needs two more than it finds.
      expect(made.mock.calls.filter(([size]) => size === 64 * 1024).length).toBeLessThanOrEqual(16);
    } finally {
      made.mockRestore();
    }
  });

  it('still redacts pod bodies and env values', () => {
    const out = open('redact.log');
    const log = createLogger('info', new BatchedFdDestination(out.fd));
    log.info({ req: { object: { spec: {} } }, c: { env: [{ name: 'A', value: 'secret' }] } }, 'x');
    log.flush();
    const line = JSON.parse(out.read()[0]!);
    expect(line.req.object).toBe('[redacted]');
    expect(line.c.env).toBe('[redacted]');
  });
});

describe('redaction and time', () => {
  it('censors the same paths as before, leaves the caller object alone, and keeps other fields', () => {
    const out = open('redact2.log');
    const log = createLogger('info', new BatchedFdDestination(out.fd));
    const obj = { req: { headers: { authorization: 'Bearer x', host: 'h' }, url: '/mutate' }, a: { oldObject: 1, keep: 2 }, list: [1, 2], n: 3 };
    log.info(obj, 'x');
    log.flush();
    const line = JSON.parse(out.read()[0]!);
    expect(line).toMatchObject({ req: { headers: { authorization: '[redacted]', host: 'h' }, url: '/mutate' }, a: { oldObject: '[redacted]', keep: 2 }, list: [1, 2], n: 3 });
    expect(obj.req.headers.authorization).toBe('Bearer x');
    expect(obj.a.oldObject).toBe(1);
  });

  it('writes an ISO timestamp', () => {
    const out = open('time.log');
    const log = createLogger('info', new BatchedFdDestination(out.fd));
    const before = Date.now();
    log.info('x');
    log.flush();
    const t = JSON.parse(out.read()[0]!).time as string;
    expect(t).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(Date.parse(t)).toBeGreaterThanOrEqual(before);
  });
});
