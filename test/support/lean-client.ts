/**
 * A lean HTTP/1.1-over-TLS keep-alive client for tests that send thousands of requests: a small
 * pool of TLS connections, one request in flight per connection (as the API server does), the
 * request written in one call, the response framed by Content-Length. Node's https client costs
 * several times more CPU per request than the server under test, which would make the fuzz run
 * measure the client. A connection the server closes is replaced; a request whose connection
 * dies is rejected, never retried.
 */
import tls from 'node:tls';

export interface LeanReply {
  readonly status: number;
  readonly contentType: string;
  readonly body: Buffer;
}

interface Job {
  readonly req: Buffer;
  resolve(r: LeanReply): void;
  reject(e: Error): void;
}

const CRLFCRLF = Buffer.from('\r\n\r\n');

class Connection {
  private buf: Buffer = Buffer.alloc(0);
  job: Job | undefined;
  dead = false;
  readonly socket: tls.TLSSocket;

  constructor(port: number, ca: string, private readonly onIdle: (c: Connection) => void) {
    this.socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost', ALPNProtocols: ['http/1.1'] });
    this.socket.setNoDelay(true);
    this.socket.on('data', (d: Buffer) => this.data(d));
    const die = (err: Error) => {
      if (this.dead) return;
      this.dead = true;
      const j = this.job;
      this.job = undefined;
      j?.reject(err);
      this.onIdle(this);
    };
    this.socket.on('error', die);
    this.socket.on('close', () => die(new Error('connection closed with a request in flight')));
  }

  send(job: Job): void {
    this.job = job;
    this.socket.write(job.req);
  }

  private data(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    for (;;) {
      const headEnd = this.buf.indexOf(CRLFCRLF);
      if (headEnd === -1) return;
      const head = this.buf.toString('latin1', 0, headEnd);
      const len = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      if (!len) {
        this.socket.destroy(new Error(`response without Content-Length: ${head.split('\r\n')[0]}`));
        return;
      }
      const total = headEnd + 4 + Number(len[1]);
      if (this.buf.length < total) return;
      const status = Number(head.slice(9, 12));
      const contentType = /\r\ncontent-type:\s*([^\r]*)/i.exec(head)?.[1] ?? '';
      const body = Buffer.from(this.buf.subarray(headEnd + 4, total));
      this.buf = this.buf.length > total ? this.buf.subarray(total) : Buffer.alloc(0);
      const j = this.job;
      this.job = undefined;
      if (/\r\nconnection:\s*close/i.test(head)) {
        this.dead = true;
        this.socket.end();
      }
      j?.resolve({ status, contentType, body });
      this.onIdle(this);
    }
  }
}

export class LeanClient {
  private readonly idle: Connection[] = [];
  private readonly queue: Job[] = [];
  private open = 0;
  private closed = false;

  constructor(private readonly port: number, private readonly ca: string, private readonly maxConnections = 16) {}

  post(path: string, body: string | Buffer, contentType = 'application/json'): Promise<LeanReply> {
    const b = typeof body === 'string' ? Buffer.from(body) : body;
    const head = `POST ${path} HTTP/1.1\r\nHost: mesh-guard.mesh-guard.svc:443\r\nContent-Type: ${contentType}\r\nAccept: application/json\r\nContent-Length: ${b.length}\r\n\r\n`;
    const req = Buffer.concat([Buffer.from(head, 'latin1'), b]);
    return new Promise((resolve, reject) => {
      this.queue.push({ req, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.queue.length > 0 && !this.closed) {
      let c = this.idle.pop();
      while (c && c.dead) c = this.idle.pop();
      if (!c) {
        if (this.open >= this.maxConnections) return;
        this.open++;
        c = new Connection(this.port, this.ca, (conn) => this.release(conn));
      }
      c.send(this.queue.shift()!);
    }
  }

  private release(c: Connection): void {
    if (c.dead) {
      this.open--;
    } else if (!c.job) {
      this.idle.push(c);
    }
    this.pump();
  }

  close(): void {
    this.closed = true;
    for (const c of this.idle) c.socket.destroy();
    this.idle.length = 0;
  }
}
