/**
 * Certificate hot reload for the HTTPS server.
 *
 * Kubernetes updates a mounted Secret by writing a new timestamped directory and atomically
 * renaming a new `..data` symlink over the old one; `tls.crt` and `tls.key` are symlinks into
 * `..data`. fs.watch on the file misses that swap (it watches the old inode), so this module polls
 * the *content* of both files through the symlinks. When the content changes, the new pair is
 * parsed, the key is checked against the certificate, and only then installed with
 * `server.setSecureContext`. New handshakes get the new certificate; connections that are already
 * open keep the one they negotiated. A bad, unreadable or mismatched pair is logged (never the key)
 * and the previous certificate stays in use.
 */
import crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import type tls from 'node:tls';
import type { Logger } from './logger.js';

export interface CertificateInfo {
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** SHA-256 fingerprint of the leaf certificate, colon-separated hex (as node prints it). */
  readonly fingerprint256: string;
  readonly subjectAltName: string;
}

export interface LoadedKeyPair extends CertificateInfo {
  readonly key: Buffer;
  readonly cert: Buffer;
}

/** An error whose message is safe to log: it never contains key material. */
export class CertificateLoadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CertificateLoadError';
  }
}

/** Parses the first certificate of a PEM (leaf first, as TLS servers expect). */
export function certificateInfo(pem: string | Buffer): CertificateInfo {
  return infoOf(parseCertificate(pem));
}

function parseCertificate(pem: string | Buffer): crypto.X509Certificate {
  try {
    return new crypto.X509Certificate(pem);
  } catch (err) {
    throw new CertificateLoadError(`certificate does not parse (${errorCode(err)})`);
  }
}

function infoOf(x509: crypto.X509Certificate): CertificateInfo {
  return {
    notBefore: new Date(x509.validFrom),
    notAfter: new Date(x509.validTo),
    fingerprint256: x509.fingerprint256,
    subjectAltName: x509.subjectAltName ?? '',
  };
}

/** Reads a certificate file's notAfter, e.g. for the `mesh_guard_certificate_expiry_seconds` gauge. */
export function readCertificateNotAfter(certFile: string): Date {
  let pem: Buffer;
  try {
    pem = readFileSync(certFile);
  } catch (err) {
    throw new CertificateLoadError(`cannot read certificate file ${certFile} (${errorCode(err)})`);
  }
  return certificateInfo(pem).notAfter;
}

/**
 * Parses and checks a certificate and key: both must parse and the key must belong to the
 * certificate. Throws CertificateLoadError with a message that is safe to log.
 */
export function checkKeyPair(cert: Buffer, key: Buffer): LoadedKeyPair {
  const x509 = parseCertificate(cert);
  let privateKey: crypto.KeyObject;
  try {
    privateKey = crypto.createPrivateKey(key);
  } catch (err) {
    throw new CertificateLoadError(`private key does not parse (${errorCode(err)})`);
  }
  if (!x509.checkPrivateKey(privateKey)) {
    throw new CertificateLoadError('private key does not match the certificate');
  }
  return { ...infoOf(x509), key, cert };
}

async function readOrThrow(file: string, what: string): Promise<Buffer> {
  try {
    return await fs.readFile(file);
  } catch (err) {
    throw new CertificateLoadError(`cannot read ${what} file ${file} (${errorCode(err)})`);
  }
}

function errorCode(err: unknown): string {
  // Node's fs and OpenSSL error codes/messages never include the bytes that failed to parse.
  if (err && typeof err === 'object') {
    const e = err as { code?: unknown; message?: unknown };
    if (typeof e.code === 'string') return e.code;
    if (typeof e.message === 'string') return e.message.split('\n')[0]!.slice(0, 200);
  }
  return 'unknown error';
}

function digest(cert: Buffer, key: Buffer): string {
  return crypto.createHash('sha256').update(cert).update('\0').update(key).digest('hex');
}

export interface WatchCertificatesOptions {
  server: tls.Server;
  certFile: string;
  keyFile: string;
  /** Poll interval. Kubelet takes up to a minute or so to propagate a Secret, so seconds are plenty. */
  intervalMs: number;
  log: Logger;
  /** Called after each install, including the first poll's (so a gauge always matches the files). */
  onReload?: (info: { notAfter: Date; fingerprint256: string }) => void;
  /** Options for the new secure context besides key/cert (e.g. ciphers). minVersion defaults to TLSv1.2. */
  tlsOptions?: Partial<tls.SecureContextOptions>;
}

export interface CertificateWatcher {
  close(): void;
  /** Runs one check now, after any poll in progress; resolves when done (tests, SIGHUP-style triggers). */
  check(): Promise<void>;
}

/**
 * Polls certFile/keyFile and installs a new, valid pair with server.setSecureContext.
 * The first poll installs whatever valid pair is on disk then, without assuming it is the one
 * the server started with: a Secret update between the server's start and the watcher's is
 * not missed (re-installing the same pair is harmless).
 */
export function watchCertificates(opts: WatchCertificatesOptions): CertificateWatcher {
  const { server, certFile, keyFile, log } = opts;
  let lastSeen: string | undefined; // digest of the last content looked at, good or bad
  let first = true;
  let lastReadError: string | undefined;
  let running: Promise<void> | undefined;
  let closed = false;

  const readBoth = async (): Promise<{ cert: Buffer; key: Buffer } | { error: string }> => {
    try {
      const [cert, key] = await Promise.all([readOrThrow(certFile, 'certificate'), readOrThrow(keyFile, 'key')]);
      return { cert, key };
    } catch (err) {
      return { error: (err as Error).message };
    }
  };

  const checkOnce = async (): Promise<void> => {
    const r = await readBoth();
    if (closed) return;
    if ('error' in r) {
      // Unreadable for a moment mid-update is possible; log once per distinct error.
      if (r.error !== lastReadError) {
        lastReadError = r.error;
        log.warn({ certFile, keyFile, reason: r.error }, 'TLS certificate files unreadable; keeping the current certificate');
      }
      return;
    }
    lastReadError = undefined;
    const d = digest(r.cert, r.key);
    if (d === lastSeen) return;
    lastSeen = d;
    let pair: LoadedKeyPair;
    try {
      pair = checkKeyPair(r.cert, r.key);
      server.setSecureContext({ minVersion: 'TLSv1.2', ...opts.tlsOptions, key: pair.key, cert: pair.cert });
    } catch (err) {
      const reason =
        err instanceof CertificateLoadError ? err.message : `secure context rejected the pair (${errorCode(err)})`;
      log.error({ certFile, keyFile, reason }, 'TLS certificate reload failed; keeping the current certificate');
      return;
    }
    const now = Date.now();
    if (pair.notAfter.getTime() <= now || pair.notBefore.getTime() > now) {
      log.warn(
        { certFile, notBefore: pair.notBefore, notAfter: pair.notAfter },
        'reloaded TLS certificate is not currently valid',
      );
    }
    const fields = { certFile, notAfter: pair.notAfter, fingerprint256: pair.fingerprint256 };
    if (first) log.debug(fields, 'TLS certificate watcher started');
    else log.info(fields, 'reloaded TLS certificate');
    first = false;
    try {
      opts.onReload?.({ notAfter: pair.notAfter, fingerprint256: pair.fingerprint256 });
    } catch (err) {
      log.warn({ reason: errorCode(err) }, 'certificate onReload callback failed');
    }
  };

  const start = (): Promise<void> => {
    const p = checkOnce().finally(() => {
      if (running === p) running = undefined;
    });
    running = p;
    return p;
  };
  // An explicit check always reads the files after it was called, so it waits out a running poll.
  const check = (): Promise<void> => (running ? running.then(start, start) : start());

  const timer = setInterval(() => {
    if (!running) void start();
  }, opts.intervalMs);
  timer.unref();
  void start(); // the first poll right away

  return {
    check,
    close() {
      closed = true;
      clearInterval(timer);
    },
  };
}
