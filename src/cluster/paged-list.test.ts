import { describe, expect, it } from 'vitest';
import type { KubernetesListObject, V1Namespace } from '@kubernetes/client-node';
import { pagedList, type PageParams } from './paged-list.js';

type List = KubernetesListObject<V1Namespace>;
const ns = (name: string): V1Namespace => ({ metadata: { name, annotations: { big: 'x' } } });
const trim = (o: V1Namespace): V1Namespace => ({ metadata: { name: o.metadata!.name! } });

/** A server with `total` namespaces answering pages of `limit` from the snapshot at resourceVersion 7. */
function server(total: number, opts: { ignoreLimit?: boolean; failAt?: number } = {}) {
  const calls: PageParams[] = [];
  const fetchPage = async (page: PageParams): Promise<List> => {
    calls.push(page);
    const from = page._continue ? Number(page._continue) : 0;
    if (opts.failAt !== undefined && from >= opts.failAt) throw Object.assign(new Error('expired'), { code: 410 });
    const to = opts.ignoreLimit ? total : Math.min(total, from + page.limit);
    const items = Array.from({ length: to - from }, (_, i) => ns(`ns-${from + i}`));
    const more = to < total;
    return { apiVersion: 'v1', kind: 'NamespaceList', metadata: { resourceVersion: more || from === 0 ? '7' : '9', ...(more ? { _continue: String(to), remainingItemCount: total - to } : {}) }, items };
  };
  return { calls, fetchPage };
}

describe('pagedList', () => {
  const cases = [
    { name: 'fewer than a page: one request', total: 3, limit: 500, requests: 1 },
    { name: 'exactly a page: one request', total: 4, limit: 4, requests: 1 },
    { name: 'several pages, the last one short', total: 10, limit: 4, requests: 3 },
    { name: 'no objects', total: 0, limit: 500, requests: 1 },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const s = server(c.total);
      const list = await pagedList(s.fetchPage, trim, c.limit);
      expect(s.calls).toHaveLength(c.requests);
      expect(s.calls.every((p) => p.limit === c.limit)).toBe(true);
      expect(list.items.map((o) => o.metadata!.name)).toEqual(Array.from({ length: c.total }, (_, i) => `ns-${i}`));
      expect(list.items.every((o) => o.metadata!.annotations === undefined)).toBe(true);
      // The snapshot's resourceVersion (the first page's), no paging leftovers for the informer.
      expect(list.metadata).toEqual({ resourceVersion: '7' });
    });
  }

  it('a server that ignores limit: everything in one answer, no second request', async () => {
    const s = server(7, { ignoreLimit: true });
    expect((await pagedList(s.fetchPage, trim, 2)).items).toHaveLength(7);
    expect(s.calls).toEqual([{ limit: 2 }]);
  });

  it('an expired continue token fails the list (the informer lists again from the start)', async () => {
    const s = server(10, { failAt: 4 });
    await expect(pagedList(s.fetchPage, trim, 4)).rejects.toMatchObject({ code: 410 });
  });
});
