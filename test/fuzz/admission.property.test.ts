/**
 * Property-based tests over the real HTTPS server (issue 8): at least 10,000 generated pods per
 * run, sent in batches over keep-alive connections (test/support/lean-client.ts), against two servers (default config, and one
 * with every opt-in on and Consul's scrape endpoint moved) answering from a static cluster view whose namespaces are labelled for
 * Istio, Dynatrace and Consul, so the rules actually fire.
 *
 * For every pod:
 * - 200 with a well-formed v1 AdmissionReview (uid echoed, allowed: true, patch and patchType
 *   together), or a 4xx with a JSON error (only a body over 3 MiB may get one);
 * - every op is add/replace on /metadata (only when the pod had none), /metadata/annotations,
 *   /metadata/labels or one of their keys, or the value of an existing literal env var a rule
 *   owns; the patch applies with fast-json-patch (validation on) and leaves string-valued
 *   annotations and labels with valid keys;
 * - the webhook on its own output returns no ops;
 * - nothing pollutes Object.prototype.
 *
 * The seed is fixed (FUZZ_SEED overrides it) and printed on failure with the counterexample;
 * FUZZ_RUNS scales the run (batches of 40 pods) for a long local variant.
 */
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { staticClusterView } from '../../src/cluster/view.js';
import { isQualifiedName } from '../../src/admission/annotations.js';
import jsonpatch from 'fast-json-patch';
import type { Op } from '../support/review.js';
import { LeanClient } from '../support/lean-client.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { hugeArb, NAMESPACE_LABELS, OWNED_ENV, ownMap, podArb, requestNamespaceArb, scenarioPodArb } from './arbitraries.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20_261_122);
const BATCH = 40;
const RUNS = Number(process.env.FUZZ_RUNS ?? 250);
const AG_IPS = ['10.0.0.7', 'fd00::7'];

const OPT_IN_CONFIG = `
rules:
  mesh-proxy-instrumentation-guard: enforce
consul:
  injectByDefault: true
  denyNamespaces: [istio-system]
  prometheusScrapePort: 20300
  prometheusScrapePath: /merged
istio:
  injectByDefault: true
dynatrace:
  assumeInjectedWhenUnknown: true
nodeAgentGuard:
  disableAllDynatrace: true
  extraSelectors: [{ k8s-app: calico-node }]
metricMerging:
  prometheusScrapeIsRequest: true
activeGate:
  ports: [9999, 443]
  cidrs: [192.168.0.0/16]
`;

interface Reply {
  status: number;
  contentType: string;
  text: string;
}

async function post(client: LeanClient, body: string): Promise<Reply> {
  const r = await client.post('/mutate?timeout=10s', body);
  return { status: r.status, contentType: r.contentType, text: r.body.toString('utf8') };
}

function buildReview(pod: unknown, namespace: unknown, uid: string, operation: string): string {
  const meta = typeof pod === 'object' && pod !== null ? (pod as { metadata?: unknown }).metadata : undefined;
  const podNs = typeof meta === 'object' && meta !== null ? (meta as { namespace?: unknown }).namespace : undefined;
  const ns = namespace === 'pod' ? (podNs ?? 'default') : namespace;
  const request = ownMap([
    ['uid', uid],
    ['kind', { group: '', version: 'v1', kind: 'Pod' }],
    ['resource', { group: '', version: 'v1', resource: 'pods' }],
    ...(ns === undefined ? [] : [['namespace', ns] as const]),
    ['operation', operation],
    ['object', pod],
    ['dryRun', false],
  ]);
  return JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request });
}

const ENV_VALUE_PATH = /^\/spec\/(containers|initContainers)\/(\d+)\/env\/(\d+)\/value$/;
const META_KEY_PATH = /^\/metadata\/(annotations|labels)\/([^/]+)$/;
const AUDIT_KEY = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

/**
 * A plain assertion: vitest's expect() costs more per call than the admission under test, and
 * this runs a few hundred thousand times.
 */
function check(ok: unknown, message: string): asserts ok {
  if (!ok) throw new Error(message);
}

const isMap = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function unescapePointer(s: string): string {
  return s.replace(/~1/g, '/').replace(/~0/g, '~');
}

/** Every op is one a rule may make: metadata maps and keys, or the value of an owned env var. */
function checkOps(pod: Record<string, unknown>, ops: Op[]): void {
  const hadMetadata = isMap(pod.metadata);
  for (const op of ops) {
    const shown = JSON.stringify(op).slice(0, 300);
    check(op.op === 'add' || op.op === 'replace', `op is add or replace: ${shown}`);
    if (op.path === '/metadata') {
      check(!hadMetadata, 'adds /metadata only when the pod has none');
      check(op.op === 'add' && isMap(op.value) && Object.keys(op.value).length === 0, `creates an empty /metadata: ${shown}`);
      continue;
    }
    if (op.path === '/metadata/annotations' || op.path === '/metadata/labels') {
      check(op.op === 'add' && isMap(op.value), `creates a map: ${shown}`);
      for (const [k, v] of Object.entries(op.value)) check(isQualifiedName(k) && typeof v === 'string', `valid key and string value: ${shown}`);
      continue;
    }
    const m = META_KEY_PATH.exec(op.path);
    if (m) {
      check(isQualifiedName(unescapePointer(m[2]!)), `valid key: ${shown}`);
      check(typeof op.value === 'string', `string value: ${shown}`);
      continue;
    }
    const e = ENV_VALUE_PATH.exec(op.path);
    check(e, `path is one a rule owns: ${shown}`);
    check(op.op === 'replace' && typeof op.value === 'string', `replaces an env value with a string: ${shown}`);
    const list = (pod.spec as Record<string, unknown>)[e[1]!] as Array<{ env?: Array<{ name?: unknown; value?: unknown }> }>;
    const entry = list[Number(e[2])]!.env![Number(e[3])]!;
    check(OWNED_ENV.has(entry.name as string), `env ${String(entry.name)} is owned by a rule: ${shown}`);
    check(typeof entry.value === 'string', `replaces a literal string value: ${shown}`);
  }
}

/** Applies with fast-json-patch, validation on, to a copy; the result keeps string values under valid keys. */
function applyChecked(pod: unknown, ops: Op[]): unknown {
  let out: unknown;
  try {
    out = jsonpatch.applyPatch(structuredClone(pod), structuredClone(ops) as jsonpatch.Operation[], true, true).newDocument;
  } catch (err) {
    throw new Error(`patch does not apply: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
  }
  const meta = (out as { metadata?: Record<string, unknown> }).metadata!;
  for (const name of ['annotations', 'labels']) {
    const map = meta[name];
    if (map === undefined || map === null) continue;
    check(isMap(map), `${name} is a map after the patch`);
    for (const [k, v] of Object.entries(map)) check(isQualifiedName(k) && typeof v === 'string', `${name} has string values under valid keys after the patch (${k})`);
  }
  return out;
}

function decodeReply(reply: Reply, uid: string): Op[] | 'rejected' {
  const shown = `${reply.status} ${reply.text.slice(0, 300)}`;
  if (reply.status !== 200) {
    check(reply.status >= 400 && reply.status < 500, `200 or 4xx: ${shown}`);
    check(/^application\/json/.test(reply.contentType), `4xx is JSON: ${shown}`);
    const err = JSON.parse(reply.text) as { error?: unknown; status?: unknown };
    check(typeof err.error === 'string' && err.status === reply.status, `4xx has error and status: ${shown}`);
    return 'rejected';
  }
  check(/^application\/json/.test(reply.contentType), `200 is JSON: ${shown}`);
  const review = JSON.parse(reply.text) as { apiVersion?: string; kind?: string; response?: Record<string, unknown> };
  check(review.apiVersion === 'admission.k8s.io/v1' && review.kind === 'AdmissionReview', `a v1 AdmissionReview: ${shown}`);
  const r = review.response;
  check(isMap(r) && r.uid === uid, `uid echoed: ${shown}`);
  check(r.allowed === true, `allowed is true: ${shown}`);
  check((r.patch === undefined) === (r.patchType === undefined), `patch and patchType come together: ${shown}`);
  if (r.auditAnnotations !== undefined) {
    check(isMap(r.auditAnnotations), `auditAnnotations is a map: ${shown}`);
    for (const [k, v] of Object.entries(r.auditAnnotations)) check(AUDIT_KEY.test(k) && k.length <= 63 && typeof v === 'string', `audit annotation ${k}`);
  }
  if (r.patch === undefined) return [];
  check(r.patchType === 'JSONPatch' && typeof r.patch === 'string', `JSONPatch: ${shown}`);
  const ops = JSON.parse(Buffer.from(r.patch, 'base64').toString('utf8')) as Op[];
  check(Array.isArray(ops) && ops.length > 0, `a non-empty patch: ${shown}`);
  return ops;
}

const caseArb = fc.record({
  // Half wild (shapes, keys and values the API server would never send), half built from what the rules read.
  pod: fc.oneof(podArb(), scenarioPodArb()),
  namespace: requestNamespaceArb,
  huge: hugeArb,
  optIn: fc.boolean(),
  operation: fc.oneof({ weight: 20, arbitrary: fc.constant('CREATE') }, { weight: 1, arbitrary: fc.constantFrom('UPDATE', 'DELETE', 'CONNECT', '') }),
});
type Case = typeof caseArb extends fc.Arbitrary<infer T> ? T : never;

describe('admission properties over HTTPS', () => {
  let plain: TestServer;
  let optIn: TestServer;
  let clients: { plain: LeanClient; optIn: LeanClient };
  const tally = { cases: 0, patched: 0, rejected: 0, envOps: 0, createdMetadata: 0 };
  const protoKeys = Object.getOwnPropertyNames(Object.prototype).sort().join();

  beforeAll(async () => {
    const cluster = staticClusterView(NAMESPACE_LABELS, AG_IPS);
    [plain, optIn] = await Promise.all([
      startTestServer({ cluster, configYaml: 'logLevel: warn' }),
      startTestServer({ cluster, configYaml: `logLevel: warn\n${OPT_IN_CONFIG}` }),
    ]);
    // Keep-alive connections, like the API server's; each server has its own self-signed CA.
    clients = { plain: new LeanClient(plain.server.port, plain.ca, 8), optIn: new LeanClient(optIn.server.port, optIn.ca, 8) };
  });
  afterAll(async () => {
    clients?.plain.close();
    clients?.optIn.close();
    await Promise.all([plain?.close(), optIn?.close()]);
    // eslint-disable-next-line no-console
    console.log(`fuzz: ${tally.cases} pods (seed ${SEED}): ${tally.patched} patched, ${tally.rejected} rejected 4xx, ${tally.envOps} env ops, ${tally.createdMetadata} created /metadata`);
  });

  async function checkCase(c: Case): Promise<void> {
    const client = c.optIn ? clients.optIn : clients.plain;
    let pod = c.pod;
    if (c.huge && typeof pod === 'object' && pod !== null) {
      pod = structuredClone(pod) as Record<string, unknown>;
      const p = pod as { metadata?: unknown };
      if (typeof p.metadata !== 'object' || p.metadata === null) p.metadata = {};
      const m = p.metadata as { annotations?: unknown };
      if (typeof m.annotations !== 'object' || m.annotations === null || Array.isArray(m.annotations)) m.annotations = {};
      (m.annotations as Record<string, string>)[c.huge.key] = c.huge.fill.repeat(Math.ceil(c.huge.bytes / Buffer.byteLength(c.huge.fill)));
    }
    const uid = randomUUID();
    const first = decodeReply(await post(client, buildReview(pod, c.namespace, uid, c.operation)), uid);
    tally.cases++;
    if (first === 'rejected') {
      tally.rejected++;
      check((c.huge?.bytes ?? 0) > 3 * 1024 * 1024, 'only a body over the 3 MiB limit is refused');
      return;
    }
    if (first.length === 0) return;
    tally.patched++;
    if (first.some((op) => ENV_VALUE_PATH.test(op.path))) tally.envOps++;
    if (first.some((op) => op.path === '/metadata')) tally.createdMetadata++;
    check(c.operation === 'CREATE', 'only a CREATE is patched');
    checkOps(pod as Record<string, unknown>, first);
    const patched = applyChecked(pod, first);
    const uid2 = randomUUID();
    const second = decodeReply(await post(client, buildReview(patched, c.namespace, uid2, c.operation)), uid2);
    check(second !== 'rejected' && second.length === 0, `the webhook on its own output returns no ops, got ${JSON.stringify(second).slice(0, 300)}`);
  }

  it(`${RUNS * BATCH} generated pods: well-formed answers, patches that apply, idempotent, no prototype pollution`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(caseArb, { minLength: BATCH, maxLength: BATCH }), async (cases) => {
        await Promise.all(
          cases.map((c) =>
            checkCase(c).catch((err: unknown) => {
              // Name the one failing pod, compactly (the whole batch is printed by fast-check).
              const shown = JSON.stringify(c, (_k, v: unknown) => (typeof v === 'string' && v.length > 200 ? `${v.slice(0, 40)}…(${v.length} chars)` : v));
              throw new Error(`${err instanceof Error ? err.message : String(err)}\nfailing case: ${shown}`);
            }),
          ),
        );
        check(({} as Record<string, unknown>).polluted === undefined, 'Object.prototype.polluted is set');
        check(Object.getOwnPropertyNames(Object.prototype).sort().join() === protoKeys, 'Object.prototype gained a property');
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: false, verbose: 0 },
    ).catch((err: unknown) => {
      // fast-check's message names the seed and path; add the failing pod and the assertion.
      const cause = err instanceof Error && err.cause instanceof Error ? `\n${err.cause.message}` : '';
      throw new Error(`property failed (reproduce with FUZZ_SEED=${SEED}):${cause}\n${err instanceof Error ? err.message.slice(0, 4000) : String(err)}`);
    });
    expect(tally.cases).toBeGreaterThanOrEqual(RUNS * BATCH);
    // The generators must actually reach the rules, not only the shape checks.
    expect(tally.patched).toBeGreaterThan(RUNS * BATCH * 0.05);
  }, 180_000);
});
