/**
 * The answer to a request whose body the server will not read (over the body limit), written
 * so that every client receives it, also one that writes its whole body before it reads
 * (Python's urllib, Node's `https.request` with the body in one write).
 *
 * Why not answer and close at once: closing a socket that still has unread data, or that
 * receives more after the close, makes the kernel send a TCP reset, and the client's kernel
 * drops whatever it had not handed to the client yet, the answer included. A client still in
 * its write then sees EPIPE or a TLS EOF instead of the 413 (curl only sees it because it
 * reads while it sends).
 *
 * So the answer goes out at once, whole (its Content-Length tells the client where it ends),
 * with `Connection: close`. The body is then read and thrown away, never buffered, and once the
 * client has sent the rest the response is ended: Node ends the TLS session and closes the
 * socket with nothing left unread. This is the lingering close of nginx (`lingering_close`,
 * ngx_http_core_module) and Apache httpd. It is bounded, so a client that keeps sending can
 * neither hold the connection nor make the server read without end: past LINGER_MS or
 * lingerBytes(limit) discarded bytes, the socket is destroyed.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * Time a client gets to finish sending after the answer, in all: a 4 MiB body takes about 3.4 s
 * at 10 Mbit/s. (nginx waits up to 5 s between reads, `lingering_timeout`, and 30 s in all,
 * `lingering_time`; the clients that meet a 413 here are people posting by hand.)
 */
export const LINGER_MS = 5_000;

/**
 * Bytes read and discarded after the answer, at most: four times the body limit (12 MiB by
 * default). A body a few times over the limit (a pod with a huge annotation, posted by hand)
 * still gets its answer; what is dropped is only decrypted, never buffered or parsed.
 */
export const lingerBytes = (bodyLimitBytes: number): number => 4 * bodyLimitBytes;

export interface CutOff {
  readonly discardedBytes: number;
  readonly lingerMs: number;
  readonly bound: 'bytes' | 'time';
}

export function answerThenClose(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  headers: Record<string, string | number>,
  body: string,
  maxBytes: number,
  onCutOff: (c: CutOff) => void,
): void {
  res.writeHead(status, { ...headers, 'content-length': Buffer.byteLength(body), connection: 'close' });
  // Nothing left to drain (the body is in, or the client has gone).
  if (req.readableEnded || req.socket.destroyed) {
    res.end(body);
    return;
  }
  // write, not end: ending the response is what makes Node close the socket.
  res.write(body);
  const start = performance.now();
  let discarded = 0;
  const socket = req.socket;
  const stop = () => {
    clearTimeout(timer);
    req.removeListener('data', onData);
    req.removeListener('end', onEnd);
    socket.removeListener('close', stop);
  };
  const cutOff = (bound: CutOff['bound']) => {
    stop();
    socket.destroy();
    onCutOff({ discardedBytes: discarded, lingerMs: Math.round(performance.now() - start), bound });
  };
  const onData = (chunk: Buffer) => {
    discarded += chunk.length;
    if (discarded > maxBytes) cutOff('bytes');
  };
  const onEnd = () => {
    stop();
    res.end();
  };
  const timer = setTimeout(() => cutOff('time'), LINGER_MS);
  req.on('data', onData);
  req.on('end', onEnd);
  // The client went away (or a server timeout closed the socket): nothing left to wait for.
  socket.once('close', stop);
  req.resume();
}
