/** The in-test API server follows the API conventions other tests rely on. */
import { AppsV1Api, CoreV1Api, Watch } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeApiServer, parseSelectors, type KubeObject } from './fake-apiserver.js';

let server: FakeApiServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

const obj = (labels: Record<string, string>, extra: Partial<KubeObject['metadata']> = {}): KubeObject => ({ metadata: { name: 'x', labels, ...extra } });

describe('selectors', () => {
  it('label selector operators', () => {
    const s = (sel: string, labels: Record<string, string>) => parseSelectors(sel)(obj(labels));
    expect(s('a=1,b=2', { a: '1', b: '2' })).toBe(true);
    expect(s('a=1,b=2', { a: '1' })).toBe(false);
    expect(s('a==1', { a: '1' })).toBe(true);
    expect(s('a', { a: '' })).toBe(true);
    expect(s('!a', { a: '' })).toBe(false);
    expect(s('!a', { b: '1' })).toBe(true);
    expect(s('a!=1', { b: '1' })).toBe(true);
    expect(s('a!=1', { a: '1' })).toBe(false);
    expect(s('a in (1, 2)', { a: '2' })).toBe(true);
    expect(s('a notin (1,2),b', { a: '3', b: 'x' })).toBe(true);
    expect(s('a notin (1,2)', { a: '1' })).toBe(false);
  });
  it('field selector on dotted paths', () => {
    expect(parseSelectors(undefined, 'metadata.name=x')(obj({}))).toBe(true);
    expect(parseSelectors(undefined, 'metadata.name!=x')(obj({}))).toBe(false);
    expect(parseSelectors(undefined, 'metadata.namespace=ns')(obj({}, { namespace: 'ns' }))).toBe(true);
  });
});

describe('FakeApiServer with client-node', () => {
  it('lists, gets, creates, patches and deletes through the generated clients', async () => {
    server = await FakeApiServer.start();
    const kc = server.kubeConfig();
    const core = kc.makeApiClient(CoreV1Api);
    const apps = kc.makeApiClient(AppsV1Api);
    await core.createNamespace({ body: { metadata: { name: 'a', labels: { team: 'x' } } } });
    server.create('namespaces', { metadata: { name: 'b' } });
    const list = await core.listNamespace({ labelSelector: 'team=x' });
    expect(list.items.map((n) => n.metadata?.name)).toEqual(['a']);
    expect(list.metadata?.resourceVersion).toBe(server.resourceVersion);
    expect((await core.listNamespace({ fieldSelector: 'metadata.name=b' })).items).toHaveLength(1);

    await expect(core.readNamespace({ name: 'zzz' })).rejects.toMatchObject({ code: 404 });
    const res = await fetch(`${server.url}/api/v1/namespaces/zzz`);
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ kind: 'Status', reason: 'NotFound', code: 404, message: 'namespaces "zzz" not found' });

    await apps.createNamespacedDaemonSet({ namespace: 'a', body: { metadata: { name: 'ds' }, spec: { selector: {}, template: {} } } as never });
    const ds = await apps.readNamespacedDaemonSet({ namespace: 'a', name: 'ds' });
    expect(ds.metadata?.namespace).toBe('a');
    expect(server.list('apps/v1/daemonsets', 'a')).toHaveLength(1);

    const patched = await core.patchNamespace({ name: 'a', body: [{ op: 'add', path: '/metadata/labels/extra', value: 'y' }] });
    expect(patched.metadata?.labels).toEqual({ team: 'x', extra: 'y' });
    await core.deleteNamespace({ name: 'b' });
    expect(server.get('namespaces', undefined, 'b')).toBeUndefined();

    server.create('admissionregistration.k8s.io/v1/mutatingwebhookconfigurations', { metadata: { name: 'istio-sidecar-injector' }, webhooks: [] });
    const mwc = await fetch(`${server.url}/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations`).then((r) => r.json() as Promise<{ items: KubeObject[] }>);
    expect(mwc.items.map((i) => i.metadata.name)).toEqual(['istio-sidecar-injector']);
  });

  it('watch: initial ADDED without resourceVersion, replay after one, selector transitions, 410 for an expired one', async () => {
    server = await FakeApiServer.start();
    const kc = server.kubeConfig();
    server.create('services', { metadata: { name: 's1', namespace: 'n', labels: { ag: 'yes' } }, spec: {} });
    const rvAfterS1 = server.resourceVersion;
    server.create('services', { metadata: { name: 's2', namespace: 'n', labels: { ag: 'yes' } }, spec: {} });

    const events: string[] = [];
    let ended: unknown = 'no';
    const w = new Watch(kc);
    const ctrl = await w.watch(
      '/api/v1/namespaces/n/services',
      { labelSelector: 'ag=yes', resourceVersion: rvAfterS1 },
      (type, o: KubeObject) => events.push(`${type}:${o.metadata?.name ?? ''}`),
      (err) => (ended = err),
    );
    server.setLabels('services', 'n', 's1', { ag: null }); // leaves the selection → DELETED
    server.setLabels('services', 'n', 's1', { ag: 'yes' }); // enters again → ADDED
    server.create('services', { metadata: { name: 'other', namespace: 'n' }, spec: {} }); // never matches
    await waitUntil(() => events.length >= 3);
    expect(events).toEqual(['ADDED:s2', 'DELETED:s1', 'ADDED:s1']);
    ctrl.abort();

    server.expireResourceVersions();
    const errors: unknown[] = [];
    await new Watch(kc).watch('/api/v1/services', { resourceVersion: rvAfterS1 }, (type, o) => type === 'ERROR' && errors.push(o), (err) => (ended = err));
    await waitUntil(() => ended === null);
    expect(errors).toEqual([expect.objectContaining({ kind: 'Status', code: 410, reason: 'Expired' })]);

    const initial: string[] = [];
    const c2 = await new Watch(kc).watch('/api/v1/services', {}, (type, o: KubeObject) => initial.push(`${type}:${o.metadata.name}`), () => undefined);
    await waitUntil(() => initial.length >= 3);
    expect(initial).toEqual(['ADDED:other', 'ADDED:s1', 'ADDED:s2']);
    c2.abort();
  });

  it('pages lists with limit/continue and answers 403 for forbidden requests', async () => {
    server = await FakeApiServer.start();
    for (const n of ['a', 'b', 'c', 'd', 'e']) server.create('namespaces', { metadata: { name: n } });
    const core = server.kubeConfig().makeApiClient(CoreV1Api);
    const names: string[] = [];
    let cont: string | undefined;
    let pages = 0;
    do {
      const page = await core.listNamespace({ limit: 2, ...(cont ? { _continue: cont } : {}) });
      names.push(...page.items.map((n) => n.metadata?.name ?? ''));
      cont = page.metadata?._continue;
      pages++;
    } while (cont);
    expect(names).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(pages).toBe(3);

    const first = await core.listNamespace({ limit: 2 });
    server.expireResourceVersions();
    await expect(core.listNamespace({ limit: 2, _continue: first.metadata!._continue! })).rejects.toMatchObject({ code: 410 });

    server.setForbidden((r) => r.path.startsWith('/api/v1/secrets') || r.path.includes('/secrets'));
    await expect(core.listSecretForAllNamespaces()).rejects.toMatchObject({ code: 403 });
    const res = await fetch(`${server.url}/api/v1/namespaces/a/secrets/tls`);
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({
      kind: 'Status',
      reason: 'Forbidden',
      message: 'secrets is forbidden: User "system:serviceaccount:mesh-guard:mesh-guard" cannot get resource "secrets" in API group "" in the namespace "a"',
    });
    expect((await core.listNamespace()).items).toHaveLength(5);
  });

  it('stop() refuses connections and start() serves the same store on the same port', async () => {
    server = await FakeApiServer.start();
    server.create('namespaces', { metadata: { name: 'keep' } });
    const port = server.port;
    await server.stop();
    await expect(fetch(`${server.url}/api/v1/namespaces`)).rejects.toThrow();
    await server.start();
    expect(server.port).toBe(port);
    const list = (await (await fetch(`${server.url}/api/v1/namespaces`)).json()) as { items: KubeObject[] };
    expect(list.items.map((i) => i.metadata.name)).toEqual(['keep']);
  });
});

async function waitUntil(cond: () => boolean, timeoutMs = 5_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}
