/**
 * An informer's list in pages of `limit` (limit/continue), each page trimmed before the next is
 * fetched, as client-go's reflector lists through its pager (tools/pager, 500 per page). One
 * unpaged list of 10,000 namespaces is one response of ~10 MiB that is parsed, deserialised and
 * held whole before the informer trims it: V8 grows its heap for that peak and keeps it, and the
 * parsing blocks admissions for hundreds of ms (bench/RESULTS.md, "Scale"). Page by page, only one
 * page of full objects exists at a time and admissions are served between pages.
 *
 * Every page of one list answers from the first page's snapshot, so the list's resourceVersion (the
 * one the informer's watch resumes from) is the first page's. An expired continue token (410) is
 * thrown like any list failure: the informer restarts its list from the beginning.
 */
import type { KubernetesListObject, KubernetesObject } from '@kubernetes/client-node';

export const LIST_PAGE_SIZE = 500;

export type PageParams = { limit: number; _continue?: string };

export async function pagedList<T extends KubernetesObject>(
  fetchPage: (page: PageParams) => Promise<KubernetesListObject<T>>,
  trim: (obj: T) => T,
  limit = LIST_PAGE_SIZE,
): Promise<KubernetesListObject<T>> {
  const first = await fetchPage({ limit });
  const items = first.items.map(trim);
  let cont = first.metadata?._continue;
  // A server that ignores limit answers everything at once without a token: one iteration.
  while (cont) {
    const page = await fetchPage({ limit, _continue: cont });
    for (const o of page.items) items.push(trim(o));
    cont = page.metadata?._continue;
  }
  const { _continue: _, remainingItemCount: __, ...metadata } = first.metadata ?? {};
  return { ...first, metadata, items };
}
