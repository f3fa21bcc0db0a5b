/**
 * Cluster access for `audit` and `doctor`: the connection (KUBECONFIG / --kubeconfig, the
 * in-cluster service account, else ~/.kube/config like kubectl), a per-request timeout, list
 * pagination, and API errors turned into one readable line. Read-only: only get and list.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KubeConfig, type ConfigurationOptions, type RequestContext, type ResponseContext, type V1LabelSelector, type V1MutatingWebhook } from '@kubernetes/client-node';
import { resolveConnection } from '../cluster/kube-view.js';
import { CliError, EXIT_USAGE } from './common.js';

export interface KubeFlags {
  readonly kubeconfig?: string;
  readonly context?: string;
}

export const KUBE_FLAGS = {
  kubeconfig: { type: 'string' },
  context: { type: 'string' },
  'request-timeout': { type: 'string' },
} as const;

export const KUBE_FLAGS_HELP = `      --kubeconfig FILE      kubeconfig file (default: $KUBECONFIG, the in-cluster service account,
                             then ~/.kube/config)
      --context NAME         kubeconfig context (default: the current context)
      --request-timeout S    seconds to wait for each API request (default 30)`;

/** Loads the cluster connection, or throws a CliError that says what to set. */
export function loadKubeConfig(flags: KubeFlags, env: NodeJS.ProcessEnv): { kc: KubeConfig; source: string } {
  let kc: KubeConfig;
  let source: string;
  try {
    if (flags.kubeconfig) {
      if (!fs.existsSync(flags.kubeconfig)) throw new CliError(`kubeconfig ${flags.kubeconfig}: no such file`);
      kc = new KubeConfig();
      kc.loadFromFile(flags.kubeconfig);
      source = flags.kubeconfig;
    } else {
      const conn = resolveConnection(env);
      const home = env.HOME ?? os.homedir();
      const fallback = home ? path.join(home, '.kube', 'config') : '';
      if (conn.kind === 'on') {
        kc = conn.kc;
        source = conn.source === 'kubeconfig' ? `KUBECONFIG` : 'in-cluster service account';
      } else if (!env.KUBECONFIG && fallback && fs.existsSync(fallback)) {
        kc = new KubeConfig();
        kc.loadFromFile(fallback);
        source = fallback;
      } else {
        throw new CliError(`no cluster to talk to: ${conn.reason} (set KUBECONFIG, pass --kubeconfig, or run in a pod)`);
      }
    }
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError(`cannot load the kubeconfig: ${firstLine(err)}`);
  }
  if (flags.context) {
    if (!kc.getContexts().some((c) => c.name === flags.context)) throw new CliError(`context ${JSON.stringify(flags.context)} is not in the kubeconfig`);
    kc.setCurrentContext(flags.context);
  }
  if (!kc.getCurrentCluster()) throw new CliError('the kubeconfig has no current context/cluster (pass --context)');
  return { kc, source };
}

export function parseTimeout(value: string | undefined): number {
  if (value === undefined) return 30_000;
  const s = Number(value.replace(/s$/, ''));
  if (!Number.isFinite(s) || s <= 0 || s > 3600) throw new CliError(`--request-timeout must be a number of seconds from 1 to 3600, got ${JSON.stringify(value)}`);
  return Math.round(s * 1000);
}

/**
 * Per-request options with an AbortSignal timeout. The ObjectParamAPI hands these options
 * straight to the ObservableAPI, which calls `middleware.pre(ctx).toPromise()` (its rxjs
 * stub), so the middleware returns that shape.
 */
export function withTimeout(ms: number): ConfigurationOptions {
  const middleware = {
    pre: (ctx: RequestContext) => ({
      toPromise: async () => {
        ctx.setSignal(AbortSignal.timeout(ms));
        return ctx;
      },
    }),
    post: (rsp: ResponseContext) => ({ toPromise: async () => rsp }),
  };
  return { middleware: [middleware], middlewareMergeStrategy: 'append' } as unknown as ConfigurationOptions;
}

/** HTTP status of a client-node ApiException, if that is what it is. */
export function httpStatus(err: unknown): number | undefined {
  if (err && typeof err === 'object') {
    const c = (err as { code?: unknown }).code;
    if (typeof c === 'number') return c;
  }
  return undefined;
}

function statusMessage(err: unknown): string | undefined {
  const body = (err as { body?: unknown }).body;
  let parsed: unknown = body;
  if (typeof body === 'string') {
    try {
      parsed = JSON.parse(body);
    } catch {
      return body.trim().split('\n')[0] || undefined;
    }
  }
  if (parsed && typeof parsed === 'object' && typeof (parsed as { message?: unknown }).message === 'string') {
    return (parsed as { message: string }).message;
  }
  return undefined;
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]!;
}

/** One line for an API call that failed: what we tried, and why. */
export function describeKubeError(err: unknown, what: string, server?: string): string {
  const status = httpStatus(err);
  if (status !== undefined) {
    const msg = statusMessage(err);
    if (status === 401) return `${what}: unauthorized (401): the credentials in the kubeconfig were rejected`;
    if (status === 410) return `${what}: the list expired on the server (410) while paging; run again, or with a larger --page-size`;
    if (status === 403) return `${what}: forbidden (403)${msg ? `: ${msg}` : ''}; grant the permission or narrow the scope`;
    return `${what}: the API server answered ${status}${msg ? `: ${msg}` : ''}`;
  }
  const e = err as { code?: unknown; name?: unknown; type?: unknown };
  if (e && typeof e === 'object') {
    if (e.name === 'AbortError' || e.type === 'aborted' || e.name === 'TimeoutError') {
      return `${what}: no answer from the API server${server ? ` at ${server}` : ''} in time (see --request-timeout)`;
    }
    if (typeof e.code === 'string') {
      const hint: Record<string, string> = {
        ECONNREFUSED: 'connection refused',
        ENOTFOUND: 'host not found',
        EAI_AGAIN: 'DNS lookup failed',
        ETIMEDOUT: 'connection timed out',
        ECONNRESET: 'connection reset',
        EHOSTUNREACH: 'host unreachable',
        DEPTH_ZERO_SELF_SIGNED_CERT: 'the server certificate is not trusted',
        SELF_SIGNED_CERT_IN_CHAIN: 'the server certificate is not trusted',
        UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'the server certificate is not trusted',
        CERT_HAS_EXPIRED: 'the server certificate has expired',
        ERR_TLS_CERT_ALTNAME_INVALID: 'the server certificate does not name this host',
      };
      return `${what}: cannot reach the API server${server ? ` at ${server}` : ''}: ${hint[e.code] ?? e.code}`;
    }
  }
  return `${what}: ${firstLine(err)}`;
}

/** A CliError (exit 2) for a failed call whose result the command cannot do without. */
export function kubeFailure(err: unknown, what: string, server?: string): CliError {
  return new CliError(describeKubeError(err, what, server), EXIT_USAGE);
}

export interface Page<T> {
  items: T[];
  metadata?: { _continue?: string };
}

/** The paging part of a list call's options: `limit`, and `_continue` after the first page. */
export function pageOptions(limit: number, cont: string | undefined): { limit: number; _continue?: string } {
  return cont ? { limit, _continue: cont } : { limit };
}

/** Lists page by page (limit/continue), so a big cluster never sits in one response. */
export async function listAll<T>(limit: number, fetchPage: (page: ReturnType<typeof pageOptions>) => Promise<Page<T>>): Promise<T[]> {
  const out: T[] = [];
  await eachPage(limit, fetchPage, (items) => void out.push(...items));
  return out;
}

/** Like listAll, but hands over each page as it arrives: only what `use` keeps outlives its page. */
export async function eachPage<T>(limit: number, fetchPage: (page: ReturnType<typeof pageOptions>) => Promise<Page<T>>, use: (items: T[]) => void): Promise<void> {
  let cont: string | undefined;
  for (let guard = 0; guard < 100_000; guard++) {
    const page = await fetchPage(pageOptions(limit, cont));
    use(page.items ?? []);
    cont = page.metadata?._continue || undefined;
    if (!cont) break;
  }
}

/** "v1.33.2-gke.100" → [1, 33]; undefined when unparseable. */
export function kubeletMinor(version: string | undefined): { major: number; minor: number } | undefined {
  const m = /^v?(\d+)\.(\d+)/.exec(version ?? '');
  return m ? { major: Number(m[1]), minor: Number(m[2]) } : undefined;
}

// ---- webhook configurations -------------------------------------------------------------------

/** Our MutatingWebhookConfiguration (deploy/base/mutatingwebhookconfiguration.yaml). */
export const DEFAULT_WEBHOOK_NAME = '0-mesh-guard';

/** Whether a webhook is called for pod CREATE. */
export function seesPods(w: V1MutatingWebhook): boolean {
  return (w.rules ?? []).some(
    (r) =>
      (r.operations ?? []).some((o) => o === 'CREATE' || o === '*') &&
      (r.apiGroups ?? []).some((g) => g === '' || g === '*') &&
      (r.resources ?? []).some((x) => x === 'pods' || x === '*' || x === '*/*'),
  );
}

/** metav1.LabelSelector semantics; an absent selector matches everything. */
export function selectorMatches(selector: V1LabelSelector | undefined, labels: Readonly<Record<string, string>>): boolean {
  if (!selector) return true;
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const values = e.values ?? [];
    const ok =
      e.operator === 'In' ? has && values.includes(labels[e.key]!)
      : e.operator === 'NotIn' ? !has || !values.includes(labels[e.key]!)
      : e.operator === 'Exists' ? has
      : e.operator === 'DoesNotExist' ? !has
      : false;
    if (!ok) return false;
  }
  return true;
}
