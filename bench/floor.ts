/**
 * The floor: the least a Node webhook can do. A bare node:https server with the same
 * certificate and keep-alive settings as mesh-guard, which reads the body, JSON.parses it
 * and answers a canned valid AdmissionReview (uid echoed, allowed). No logging, no metrics.
 *
 * Usage: node dist/bench/floor.js  (env PORT, TLS_CERT_FILE, TLS_KEY_FILE)
 */
import fs from 'node:fs';
import https from 'node:https';

const port = Number(process.env.PORT ?? 8444);
const server = https.createServer(
  {
    key: fs.readFileSync(process.env.TLS_KEY_FILE!, 'utf8'),
    cert: fs.readFileSync(process.env.TLS_CERT_FILE!, 'utf8'),
    minVersion: 'TLSv1.2',
    keepAliveTimeout: 95_000,
  },
  (req, res) => {
    if (req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ready"}');
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let uid = '';
      try {
        const review = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { request?: { uid?: unknown } };
        if (typeof review.request?.uid === 'string') uid = review.request.uid;
      } catch {
        res.writeHead(400).end();
        return;
      }
      const body = `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":${JSON.stringify(uid)},"allowed":true}}`;
      res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) }).end(body);
    });
  },
);
server.keepAliveTimeout = 95_000;
server.listen(port, '127.0.0.1');
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
