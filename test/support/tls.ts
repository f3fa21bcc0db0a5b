/** A serving certificate for test servers on loopback: self-signed (its own CA), for localhost and 127.0.0.1. */
import { generate } from 'selfsigned';

let certPromise: Promise<{ key: string; cert: string }> | undefined;
/** One per test process (key generation is the slow part); `cert` is also the CA to trust. */
export function selfSignedCert(): Promise<{ key: string; cert: string }> {
  certPromise ??= generate([{ name: 'commonName', value: 'mesh-guard test server' }], {
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
