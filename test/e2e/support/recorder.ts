/**
 * A webhook that changes nothing and records each call: which path (one per registered peer name)
 * was called, in what order, with which pod. Stands where a peer sits in the chain when a test only
 * needs to see the order in which the API server calls the configurations.
 */
import https from 'node:https';
import type { AddressInfo } from 'node:net';

export interface Call {
  readonly path: string;
  readonly pod: Record<string, unknown>;
}

export interface Recorder {
  readonly url: string;
  readonly calls: Call[];
  close(): Promise<void>;
}

export async function startRecorder(tls: { cert: string; key: string }): Promise<Recorder> {
  const calls: Call[] = [];
  const server = https.createServer(tls, (req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const review = JSON.parse(body) as { request: { uid: string; object: Record<string, unknown> } };
      calls.push({ path: req.url ?? '', pod: review.request.object });
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: review.request.uid, allowed: true } }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}`,
    calls,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
