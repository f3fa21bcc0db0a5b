import fs from 'node:fs';
import pino, { type Logger, type DestinationStream } from 'pino';

export type { Logger } from 'pino';

/**
 * JSON logs to stdout. The destination is asynchronous (batched) so a log line never
 * blocks an admission; it is flushed on shutdown. Redaction is a second net: the code
 * never logs pod bodies or env values in the first place.
 *
 * Both the redaction and the timestamp are hand-written for speed, since every admission
 * logs one line: pino's `redact` with wildcard paths runs a redacting stringifier on every
 * field of every line (about 60% of the cost of a line), and `isoTime` builds a Date per line.
 * The output is the same: ISO time, `[redacted]` for the same paths.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { name: 'mesh-guard' },
      timestamp: isoTime,
      formatters: { level: (label) => ({ level: label }), log: redact },
    },
    destination ?? new BatchedFdDestination(1),
  );
}

const {
  chindingsSym, endSym, hooksSym, lsCacheSym, messageKeySym, mixinSym, needsMetadataGsym, streamSym, timeSym,
} = pino.symbols;

/**
 * `log.info(fields, msg)` for a line whose fields are a fixed object of our own that holds
 * no pod content (the admission line, written once per review): one native JSON.stringify
 * instead of pino's per-field serializer and the redaction formatter, which the fields do
 * not need (bench/RESULTS.md, change 14). The line is the one pino writes (same level,
 * time, bindings, field order, message), built from the logger's own parts. A logger with
 * a mixin, a stream-write hook, a multistream or another message key goes through pino.
 */
export function infoLine(log: Logger, fields: object, msg: string): void {
  if (!log.isLevelEnabled('info')) return;
  const part = <T>(sym: symbol): T => (log as unknown as Record<symbol, T>)[sym] as T;
  const stream = part<DestinationStream & Record<symbol, unknown>>(streamSym);
  if (part(mixinSym) || part<{ streamWrite?: unknown }>(hooksSym).streamWrite || stream[needsMetadataGsym] || part(messageKeySym) !== 'msg') {
    log.info(fields, msg);
    return;
  }
  const json = JSON.stringify(fields);
  const props = json.length > 2 ? `,${json.slice(1, -1)}` : '';
  const level = part<Record<number, string>>(lsCacheSym)[log.levels.values.info!];
  stream.write(`${level}${part<() => string>(timeSym).call(log)}${part<string>(chindingsSym)}${props},"msg":${JSON.stringify(msg)}${part<string>(endSym)}`);
}

const CENSOR = '[redacted]';
/** Keys censored one level down (what pino's paths `*.env`, `*.object`, `*.oldObject` did). */
const SECRET_KEYS = ['env', 'object', 'oldObject'] as const;

/**
 * Censors `req.headers.authorization` and `<any field>.env|object|oldObject`, without
 * touching the caller's object: a changed field gets a shallow copy.
 */
export function redact(obj: Record<string, unknown>): Record<string, unknown> {
  let out = obj;
  for (const key in obj) {
    const value = obj[key];
    if (value === null || typeof value !== 'object') continue;
    let censored: Record<string, unknown> | undefined;
    for (const secret of SECRET_KEYS) {
      if (Object.hasOwn(value, secret)) (censored ??= copy(value))[secret] = CENSOR;
    }
    if (key === 'req') {
      const headers = (value as { headers?: unknown }).headers;
      if (headers !== null && typeof headers === 'object' && Object.hasOwn(headers, 'authorization')) {
        (censored ??= copy(value)).headers = { ...(headers as object), authorization: CENSOR };
      }
    }
    if (censored) {
      if (out === obj) out = { ...obj };
      out[key] = censored;
    }
  }
  return out;
}

function copy(value: object): Record<string, unknown> {
  return (Array.isArray(value) ? Object.assign([], value) : { ...value }) as Record<string, unknown>;
}

let second = -1;
let secondPrefix = '';

/** pino's `isoTime` output (`,"time":"2026-11-22T02:24:07.932Z"`), with the date part built once a second. */
export function isoTime(): string {
  const now = Date.now();
  const ms = now % 1000;
  const s = now - ms;
  if (s !== second) {
    second = s;
    secondPrefix = `,"time":"${new Date(s).toISOString().slice(0, 20)}`;
  }
  return `${secondPrefix}${ms < 10 ? '00' : ms < 100 ? '0' : ''}${ms}Z"`;
}

const MAX_PENDING_BYTES = 8 * 1024 * 1024;
/** A line waits at most this long before it is written. */
const FLUSH_INTERVAL_MS = 25;
/** Write at once when this much is pending; also the size of a batch buffer. */
const FLUSH_AT_BYTES = 64 * 1024;

/**
 * Writes log lines to a file descriptor in batches: a line waits at most 25 ms (or until
 * 64 KiB are pending), then everything pending goes out in one asynchronous write on
 * libuv's thread pool. Under load one write(2) carries many lines; at rest a line still
 * shows up in `kubectl logs` within 25 ms.
 *
 * Each line is encoded into a batch buffer as it arrives, so the line's string (a rope of
 * small pieces, as pino builds it) dies at once instead of surviving young-generation
 * collections while it waits: holding 25 ms of lines as strings more than doubled what
 * every scavenge had to copy, which made V8 grow the young generation by 16 MiB under load.
 *
 * pino's own sonic-boom destination (sync: false, minLength: 4096) costs more per line
 * under load, because every write measures the UTF-8 length of the whole pending buffer,
 * and with minLength it holds a lone line (e.g. "ready") until 4 KiB have piled up.
 *
 * Batch buffers are reused once their bytes are written (two spares are kept): a fresh
 * 64 KiB buffer per flush, 40 a second at low load, left V8 that many array buffers to
 * free in every young-generation collection, which made those pauses about twice the
 * bare-Node floor's (bench/RESULTS.md, change 18).
 *
 * If the reader stalls (a full pipe), lines beyond 8 MiB pending are dropped and counted
 * rather than growing memory without bound.
 */
export class BatchedFdDestination implements DestinationStream {
  /** Filled batch buffers waiting to be written, oldest first. */
  private full: Buffer[] = [];
  /** The batch buffer lines are encoded into, and how much of it is used. */
  private current: Buffer | undefined;
  private used = 0;
  private pendingBytes = 0;
  /** The buffer an asynchronous write is working on, and how much of it is done. */
  private inFlight: { buf: Buffer; offset: number } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private immediate = false;
  /** Callbacks of flush() calls waiting for the asynchronous write in flight to finish. */
  private flushWaiters: Array<() => void> = [];
  /** The memory of every batch buffer made here, and those written out and free for reuse. */
  private readonly batchMemory = new WeakSet<ArrayBufferLike>();
  private readonly spare: ArrayBufferLike[] = [];
  dropped = 0;

  constructor(private readonly fd: number) {
    process.once('exit', () => this.flushSync());
  }

  write(line: string): void {
    if (this.pendingBytes + line.length > MAX_PENDING_BYTES) {
      this.dropped++;
      return;
    }
    // A UTF-16 code unit takes at most 3 bytes in UTF-8.
    const worst = line.length * 3;
    if (worst > FLUSH_AT_BYTES) {
      // A line too long for a batch buffer gets a buffer of its own.
      this.seal();
      const buf = Buffer.from(line, 'utf8');
      this.full.push(buf);
      this.pendingBytes += buf.length;
    } else {
      if (!this.current || this.used + worst > this.current.length) {
        this.seal();
        this.current = this.newBatch();
      }
      const n = this.current.write(line, this.used, 'utf8');
      this.used += n;
      this.pendingBytes += n;
    }
    if (this.inFlight) return; // the write callback picks pending lines up
    if (this.pendingBytes >= FLUSH_AT_BYTES) {
      if (!this.immediate) {
        this.immediate = true;
        setImmediate(this.flushAsync);
      }
    } else if (!this.timer) {
      this.timer = setTimeout(this.flushAsync, FLUSH_INTERVAL_MS);
      this.timer.unref();
    }
  }

  /**
   * pino's logger.flush(cb) calls this. Everything pending is written synchronously; if an
   * asynchronous write is in flight, that write is waited for first (the callback runs
   * later), because its bytes may already be in the file: writing them again would
   * duplicate lines, and nothing can tell how far it got before its callback runs.
   */
  flush(cb?: (err?: Error) => void): void {
    const finish = () => {
      try {
        this.flushSync();
        cb?.();
      } catch (err) {
        cb?.(err as Error);
      }
    };
    if (this.inFlight) this.flushWaiters.push(finish);
    else finish();
  }

  /**
   * Writes everything pending now. Only the process 'exit' handler calls this with a write
   * in flight (process.exit without a flush(cb) first): then the rest of the in-flight
   * buffer is written again, which may repeat a few lines but never loses one.
   */
  flushSync(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const parts: Buffer[] = [];
    if (this.inFlight) parts.push(this.inFlight.buf.subarray(this.inFlight.offset));
    this.inFlight = undefined;
    parts.push(...this.take());
    for (const buf of parts) writeAllSync(this.fd, buf);
  }

  private newBatch(): Buffer {
    const memory = this.spare.pop();
    if (memory) return Buffer.from(memory, 0, FLUSH_AT_BYTES);
    const buf = Buffer.allocUnsafeSlow(FLUSH_AT_BYTES);
    this.batchMemory.add(buf.buffer);
    return buf;
  }

  /** Keeps a batch buffer whose bytes are out (or dropped) for reuse; other buffers are left to GC. */
  private recycle(buf: Buffer): void {
    if (this.spare.length < 2 && this.batchMemory.has(buf.buffer) && !this.spare.includes(buf.buffer)) this.spare.push(buf.buffer);
  }

  /** Moves the used part of the current batch buffer to the full list. */
  private seal(): void {
    if (this.current && this.used > 0) this.full.push(this.current.subarray(0, this.used));
    this.current = undefined;
    this.used = 0;
  }

  /** Everything pending, oldest first; nothing is pending afterwards. */
  private take(): Buffer[] {
    this.seal();
    const out = this.full;
    this.full = [];
    this.pendingBytes = 0;
    return out;
  }

  private readonly flushAsync = (): void => {
    this.immediate = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.inFlight || this.pendingBytes === 0 || this.flushWaiters.length > 0) return;
    const parts = this.take();
    if (parts.length === 1) this.inFlight = { buf: parts[0]!, offset: 0 };
    else {
      this.inFlight = { buf: Buffer.concat(parts), offset: 0 };
      for (const part of parts) this.recycle(part);
    }
    this.writeInFlight();
  };

  private writeInFlight(): void {
    const job = this.inFlight!;
    fs.write(this.fd, job.buf, job.offset, job.buf.length - job.offset, null, (err, n) => {
      if (this.inFlight !== job) return; // flushSync took over
      if (err) {
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') {
          setTimeout(() => this.inFlight === job && this.writeInFlight(), 10);
          return;
        }
        this.dropped++; // nowhere to report a broken stdout; drop the batch
        this.inFlight = undefined;
      } else {
        job.offset += n;
        if (job.offset < job.buf.length) return this.writeInFlight();
        this.inFlight = undefined;
      }
      this.recycle(job.buf);
      if (this.flushWaiters.length > 0) {
        for (const waiter of this.flushWaiters.splice(0)) waiter();
        return;
      }
      // Lines logged while writing: out at once if there are many, else after the interval.
      if (this.pendingBytes >= FLUSH_AT_BYTES) this.flushAsync();
      else if (this.pendingBytes > 0 && !this.timer) {
        this.timer = setTimeout(this.flushAsync, FLUSH_INTERVAL_MS);
        this.timer.unref();
      }
    });
  }
}

function writeAllSync(fd: number, buf: Buffer): void {
  let offset = 0;
  let spins = 0;
  while (offset < buf.length) {
    try {
      offset += fs.writeSync(fd, buf, offset, buf.length - offset);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || ++spins > 1000) return;
    }
  }
}
