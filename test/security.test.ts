/**
 * Security review checks (issue 8) that can be tested: no env values, secrets or pod bodies in
 * the logs (at every log level, in every outcome); TLS 1.2 or later only, also after a
 * certificate reload; the config file is validated strictly and cannot pollute prototypes.
 */
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../src/config/load.js';
import { staticClusterView } from '../src/cluster/view.js';
import { review } from './support/review.js';
import { startTestServer, waitFor, type TestServer } from './support/server.js';

const SECRET_ENV = 'pl4nted-S3CRET-env-value-7f3a';
const SECRET_ANNOTATION = 'pl4nted-annotation-value-91c2';
const SECRET_IN_CONFIG = 'pl4nted-rendered-config-5d0e';

/** Pods that reach every outcome, each carrying the planted values where a pod would hold them. */
function pods(): Array<{ name: string; body: unknown }> {
  const env = [
    { name: 'DB_PASSWORD', value: SECRET_ENV },
    { name: 'API_TOKEN', valueFrom: { secretKeyRef: { name: 'tok', key: 'token' } } },
  ];
  const annotations = { 'example.com/token': SECRET_ANNOTATION, 'kubectl.kubernetes.io/last-applied-configuration': `{"password":"${SECRET_ANNOTATION}"}` };
  const consulInjected = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      generateName: 'web-',
      namespace: 'mesh',
      annotations: {
        ...annotations,
        'consul.hashicorp.com/connect-inject-status': 'injected',
        'consul.hashicorp.com/transparent-proxy-status': 'enabled',
      },
    },
    spec: {
      initContainers: [
        {
          name: 'consul-connect-inject-init',
          image: 'hashicorp/consul-k8s-control-plane:1.6',
          env: [...env, { name: 'CONSUL_REDIRECT_TRAFFIC_CONFIG', value: `{"ConsulDNSIP":"${SECRET_IN_CONFIG}","ProxyUserID":5995,"ExcludeOutboundPorts":null,"ExcludeOutboundCIDRs":null}` }],
        },
      ],
      containers: [{ name: 'web', image: 'shop/web:1', env }],
    },
  };
  const nodeAgent = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { generateName: 'istio-cni-node-', namespace: 'istio-system', labels: { 'k8s-app': 'istio-cni-node' }, annotations },
    spec: { containers: [{ name: 'install-cni', image: 'istio/install-cni:1.30', env }] },
  };
  const meshed = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { generateName: 'shop-', namespace: 'mesh', annotations: { ...annotations, 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9090', 'metrics.dynatrace.com/scrape': 'true' } },
    spec: { containers: [{ name: 'web', image: 'shop/web:1', env }] },
  };
  const badShape = { apiVersion: 'v1', kind: 'Pod', metadata: { annotations: { ...annotations, n: 5 } }, spec: { containers: [{ name: 'x', env }] } };
  return [
    { name: 'Consul env rewrite', body: review(consulInjected, { namespace: 'mesh' }) },
    { name: 'node agent', body: review(nodeAgent) },
    { name: 'meshed app', body: review(meshed, { namespace: 'mesh' }) },
    { name: 'unexpected shape', body: review(badShape) },
    { name: 'opted out', body: review({ ...nodeAgent, metadata: { ...nodeAgent.metadata, annotations: { ...annotations, 'mesh-guard.io/skip': 'true' } } }) },
    { name: 'an UPDATE', body: review(nodeAgent, { operation: 'UPDATE', oldObject: nodeAgent }) },
    { name: 'not a review', body: { kind: 'Pod', request: { object: nodeAgent }, secret: SECRET_ENV } },
    { name: 'no uid', body: { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { object: nodeAgent } } },
  ];
}

describe('no env values, secrets or pod bodies in the logs', () => {
  for (const mode of ['enforce', 'dry-run']) {
    it(`at log level trace, ${mode}`, async () => {
      const s = await startTestServer({
        configYaml: `logLevel: trace\ndryRun: ${mode === 'dry-run'}\nconsul:\n  injectByDefault: true\n`,
        cluster: staticClusterView(
          { mesh: { 'istio-injection': 'enabled', 'dynakube.internal.dynatrace.com/instance': 'dk' }, 'istio-system': {} },
          ['10.96.0.50'],
        ),
      });
      try {
        let patched = 0;
        for (const p of pods()) {
          const res = await s.mutate(p.body);
          expect(res.status, p.name).toBeLessThan(500);
          if (res.body?.response?.patch) patched++;
        }
        // Malformed bodies that contain the secret: the error must not echo the body.
        await s.mutate(`{"apiVersion":"admission.k8s.io/v1","secret":"${SECRET_ENV}",`).expect(400);
        await s.mutate(`{"x":"${SECRET_ENV}"}`).set('content-type', 'text/plain').expect(415);
        await waitFor(() => s.logs.filter((l) => l.msg === 'admission').length >= 6);
        const text = JSON.stringify(s.logs);
        expect(s.logs.length).toBeGreaterThan(8);
        if (mode === 'enforce') expect(patched, 'the rules did act (including the env rewrite)').toBeGreaterThanOrEqual(2);
        expect(text.includes('CONSUL_REDIRECT_TRAFFIC_CONFIG') || mode === 'dry-run', 'the env rewrite was logged (without its value)').toBe(true);
        for (const planted of [SECRET_ENV, SECRET_ANNOTATION, SECRET_IN_CONFIG, 'DB_PASSWORD', 'shop/web:1', 'install-cni:1.30']) {
          expect(text, `log mentions ${planted}`).not.toContain(planted);
        }
      } finally {
        await s.close();
      }
    });
  }
});

describe('TLS', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer();
  });
  afterAll(() => s.close());

  function handshake(opts: tls.ConnectionOptions): Promise<string> {
    return new Promise((resolve) => {
      const sock = tls.connect({ host: '127.0.0.1', port: s.server.port, ca: s.ca, servername: 'localhost', ...opts }, () => {
        const v = sock.getProtocol() ?? 'unknown';
        sock.end();
        resolve(v);
      });
      sock.on('error', (e) => resolve(`error: ${e.message}`));
    });
  }

  it('accepts TLS 1.2 and 1.3, refuses 1.1 and 1.0', async () => {
    expect(await handshake({ minVersion: 'TLSv1.3' })).toBe('TLSv1.3');
    expect(await handshake({ maxVersion: 'TLSv1.2' })).toBe('TLSv1.2');
    // The client may refuse on its own at OpenSSL security level 1+; either way no session.
    expect(await handshake({ minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' })).toMatch(/^error: /);
    expect(await handshake({ minVersion: 'TLSv1', maxVersion: 'TLSv1', ciphers: 'DEFAULT:@SECLEVEL=0' })).toMatch(/^error: /);
  });

  it('negotiates HTTP/1.1 only (the API server pins it; no h2 to pin to one replica)', async () => {
    const proto = await new Promise<string | false>((resolve) => {
      const sock = tls.connect({ host: '127.0.0.1', port: s.server.port, ca: s.ca, servername: 'localhost', ALPNProtocols: ['h2', 'http/1.1'] }, () => {
        resolve(sock.alpnProtocol ?? false);
        sock.end();
      });
    });
    expect(proto === 'http/1.1' || proto === false).toBe(true);
  });
});

describe('config file validation', () => {
  it.each([
    ['an unknown key', 'rules:\n  node-agent-guard: enforce\n  typo-rule: enforce\n', /typo-rule: unknown key/],
    ['__proto__ at the top', '__proto__:\n  polluted: yes\n', /__proto__: unknown key/],
    ['__proto__ in a map', 'server:\n  __proto__:\n    polluted: yes\n', /server.__proto__: unknown key/],
    ['constructor in a map', 'istio:\n  constructor: 1\n', /istio.constructor: unknown key/],
    ['a wrong type', 'server:\n  port: "8443"\n', /server.port: expected an integer/],
    ['a keep-alive below the API server idle timeout', 'server:\n  keepAliveTimeoutMs: 60000\n', /keepAliveTimeoutMs/],
    ['YAML anchors used as a billion-laughs bomb', `a: &a [x,x,x,x,x,x,x,x,x,x]\n${Array.from({ length: 8 }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)}]`).join('\n')}\n`, /./],
    ['a JS function tag', 'logLevel: !!js/function "function(){ globalThis.pwned = 1 }"\n', /./],
  ])('refuses %s with one line naming it', (_name, yaml, message) => {
    let error: unknown;
    try {
      parseConfig(yaml, {});
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toMatch(message);
    expect((error as Error).message.split('\n')).toHaveLength(1);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect((globalThis as Record<string, unknown>).pwned).toBeUndefined();
  });

  it('an extraSelectors map with __proto__ does not pollute and is a plain selector', () => {
    const c = parseConfig('nodeAgentGuard:\n  extraSelectors:\n    - { __proto__: x, k8s-app: calico-node }\n', {});
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    const sel = c.nodeAgentGuard.extraSelectors[0]!;
    expect(Object.getPrototypeOf(sel)).toBeNull();
    expect(Object.keys(sel).sort()).toEqual(['__proto__', 'k8s-app']);
  });
});
