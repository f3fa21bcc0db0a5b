/**
 * One self-signed loopback serving certificate per test process (key generation is the slow
 * part), for the test servers that a client verifies: the fake API server and the peer
 * stand-ins of the end-to-end suite. It is its own CA: the PEM goes into a kubeconfig's or a
 * webhook's caBundle as is. SANs localhost and 127.0.0.1, because Go's verifier (kube-apiserver
 * calling a webhook) ignores the common name.
 */
import { generate } from 'selfsigned';

let certPromise: Promise<{ key: string; cert: string }> | undefined;

export function loopbackCert(): Promise<{ key: string; cert: string }> {
  certPromise ??= generate([{ name: 'commonName', value: 'mesh-guard test loopback' }], {
    keySize: 2048,
    algorithm: 'sha256',
    extensions: [
      { name: 'basicConstraints', cA: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, keyCertSign: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
        ],
      },
    ],
  }).then((p) => ({ key: p.private, cert: p.cert }));
  return certPromise;
}
