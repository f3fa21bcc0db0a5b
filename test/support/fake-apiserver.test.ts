/** The fake API server follows the API conventions the cluster view's fault tests rely on. */
import { CoreV1Api, Watch } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeApiServer, parseLabelSelector, type KubeObject } from './fake-apiserver.js';

let server: FakeApiServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe('label selectors', () => {
  it('equality-based requirements, comma = AND', () => {
    const s = (sel: string, labels: Record<string, string>) => parseLabelSelector(sel)({ metadata: { name: 'x', labels } });
    expect(s('a=1,b=2', { a: '1', b: '2' })).toBe(true);
    expect(s('a=1,b=2', { a: '1' })).toBe(false);
    expect(s('a==1', { a: '1' })).toBe(true);
    expect(s('a', { a: '' })).toBe(true);
    expect(s('!a', { a: '' })).toBe(false);
    expect(s('!a', { b: '1' })).toBe(true);
    expect(s('a!=1', { b: '1' })).toBe(true);
    expect(s('a!=1', { a: '1' })).toBe(false);
    expect(() => parseLabelSelector('a in (1,2)')).toThrow(/unable to parse/);
  });
});

describe('FakeApiServer with client-node', () => {
  it('lists with a label selector and answers 404 with a Status for unknown names', async () => {
    server = await FakeApiServer.start();
    const core = server.kubeConfig().makeApiClient(CoreV1Api);
    server.create('namespaces', { metadata: { name: 'a', labels: { team: 'x' } } });
    server.create('namespaces', { metadata: { name: 'b' } });
    const list = await core.listNamespace({ labelSelector: 'team=x' });
    expect(list.items.map((n) => n.metadata?.name)).toEqual(['a']);
    expect(list.metadata?.resourceVersion).toBe(server.resourceVersion);
    expect((await core.readNamespace({ name: 'b' })).metadata?.name).toBe('b');
    await expect(core.readNamespace({ name: 'zzz' })).rejects.toMatchObject({ code: 404 });
    const res = await fetch(`${server.url}/api/v1/namespaces/zzz`);
    expect(await res.json()).toMatchObject({ kind: 'Status', reason: 'NotFound', code: 404, message: 'namespaces "zzz" not found' });
  });

  it('watch: initial ADDED without resourceVersion, replay after one, selector transitions, 410 for an expired one', async () => {
    server = await FakeApiServer.start();
    const kc = server.kubeConfig();
    server.create('services', { metadata: { name: 's1', namespace: 'n', labels: { ag: 'yes' } }, spec: {} });
    const rvAfterS1 = server.resourceVersion;
    server.create('services', { metadata: { name: 's2', namespace: 'n', labels: { ag: 'yes' } }, spec: {} });

    const events: string[] = [];
    let ended: unknown = 'no';
    const ctrl = await new Watch(kc).watch(
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
    expect(server.watchCount('services')).toBe(1);
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

  it('dropConnections() cuts an open watch; setDelay() holds back the requests it picks', async () => {
    server = await FakeApiServer.start();
    const kc = server.kubeConfig();
    let ended: unknown = 'no';
    await new Watch(kc).watch('/api/v1/namespaces', {}, () => undefined, (err) => (ended = err));
    await waitUntil(() => server!.watchCount('namespaces') === 1);
    server.dropConnections();
    await waitUntil(() => ended !== 'no');
    expect(ended).toBeInstanceOf(Error);
    expect(server.watchCount('namespaces')).toBe(0);

    server.setDelay(60_000, (r) => r.path === '/api/v1/namespaces/held');
    const held = fetch(`${server.url}/api/v1/namespaces/held`, { signal: AbortSignal.timeout(300) });
    await expect(held).rejects.toThrow();
    expect((await fetch(`${server.url}/api/v1/namespaces/other`)).status).toBe(404);
    server.setDelay(0);
  });

  it('stop() refuses connections, keeps a writable store, and start() serves it on the same port', async () => {
    server = await FakeApiServer.start();
    server.create('namespaces', { metadata: { name: 'keep' } });
    const url = server.url;
    await server.stop();
    await expect(fetch(`${url}/api/v1/namespaces`)).rejects.toThrow();
    server.create('namespaces', { metadata: { name: 'while-down' } });
    await server.start();
    expect(server.url).toBe(url);
    const list = (await (await fetch(`${url}/api/v1/namespaces`)).json()) as { items: KubeObject[] };
    expect(list.items.map((i) => i.metadata.name)).toEqual(['keep', 'while-down']);
  });
});

async function waitUntil(cond: () => boolean, timeoutMs = 5_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}
