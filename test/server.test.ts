/** The HTTPS transport and the admission contract, over a real socket (issue 2). */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot, review, decodePatch, applyOps, type ReviewResponse } from './support/review.js';
import { startTestServer, waitFor, type TestServer } from './support/server.js';
import { httpsRequest } from './support/process.js';

const sample = JSON.parse(fs.readFileSync(path.join(repoRoot, 'examples/review-istio-cni-node.json'), 'utf8'));
const samplePod = sample.request.object;
const appPod = { apiVersion: 'v1', kind: 'Pod', metadata: { generateName: 'web-', namespace: 'shop' }, spec: { containers: [{ name: 'web', image: 'nginx' }] } };

function rawPost(s: TestServer, body: Buffer) {
  return httpsRequest({ port: s.server.port, ca: s.ca, method: 'POST', path: '/mutate', body });
}

function admissionLines(s: TestServer) {
  return s.logs.filter((l) => l.msg === 'admission');
}

describe('POST /mutate', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer();
  });
  afterAll(() => s.close());

  it('echoes the uid and returns a JSONPatch for the sample Istio CNI review', async () => {
    const res = await s.mutate(sample).expect(200).expect('content-type', /application\/json/);
    expect(res.body.apiVersion).toBe('admission.k8s.io/v1');
    expect(res.body.kind).toBe('AdmissionReview');
    const response = res.body.response as ReviewResponse;
    expect(response.uid).toBe(sample.request.uid);
    expect(response.allowed).toBe(true);
    const ops = decodePatch(response);
    expect(ops).toEqual([{ op: 'add', path: '/metadata/annotations/oneagent.dynatrace.com~1inject', value: 'false' }]);
    expect(response.auditAnnotations).toEqual({ 'mutated-by': 'node-agent-guard' });

    const patched = applyOps(samplePod, ops);
    const again = await s.mutate(review(patched)).expect(200);
    expect(again.body.response.patch).toBeUndefined();
    expect(again.body.response.patchType).toBeUndefined();
    expect(again.body.response.auditAnnotations).toBeUndefined();
  });

  it('logs one line per admission with uid, namespace, pod, rules, ops and duration, and no pod body', async () => {
    const body = review(samplePod);
    await s.mutate(body).expect(200);
    const uid = (body.request as { uid: string }).uid;
    await waitFor(() => admissionLines(s).some((l) => l.uid === uid));
    const lines = admissionLines(s).filter((l) => l.uid === uid);
    expect(lines).toHaveLength(1);
    const line = lines[0]!;
    expect(line).toMatchObject({ namespace: 'istio-system', pod: 'istio-cni-node-', ops: 1, outcome: 'patched' });
    expect(typeof line.durationMs).toBe('number');
    expect(line.rules).toEqual([
      expect.objectContaining({ rule: 'node-agent-guard', mode: 'enforce', changes: ['oneagent.dynatrace.com/inject: (unset) → "false"'] }),
    ]);
    expect(JSON.stringify(line)).not.toContain('install-cni:1.30.3');
  });

  it('answers an ordinary pod with allowed and no patch', async () => {
    const res = await s.mutate(review(appPod)).expect(200);
    expect(res.body.response).toEqual({ uid: expect.any(String), allowed: true });
  });

  it.each([
    ['not JSON', '{"apiVersion": ', /not valid JSON/],
    ['a JSON array', '[]', /not a JSON object/],
    ['JSON null', 'null', /not a JSON object/],
    ['another apiVersion', JSON.stringify({ ...sample, apiVersion: 'admission.k8s.io/v1beta1' }), /admission.k8s.io\/v1/],
    ['another kind', JSON.stringify({ ...sample, kind: 'Pod' }), /AdmissionReview/],
    ['no request', JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }), /no request/],
    ['no uid', JSON.stringify({ ...sample, request: { ...sample.request, uid: undefined } }), /uid/],
    ['a numeric uid', JSON.stringify({ ...sample, request: { ...sample.request, uid: 42 } }), /uid/],
  ])('400 with a JSON error for %s', async (_name, body, message) => {
    const res = await s.mutate(body as string).expect(400).expect('content-type', /application\/json/);
    expect(res.body.error).toMatch(message);
  });

  it('400 with a JSON error for invalid UTF-8', async () => {
    const body = Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]);
    const res = await rawPost(s, body);
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body).error).toMatch(/UTF-8/);
  });

  it('400 for JSON nested 100,000 levels deep, and keeps serving', async () => {
    const deep = '['.repeat(100_000) + ']'.repeat(100_000);
    const res = await s.mutate(deep).expect(400);
    expect(res.body.error).toBeTruthy();
    await s.mutate(review(appPod)).expect(200);
  });

  it('413 with a JSON error for a body over 3 MiB', async () => {
    const big = JSON.stringify({ ...sample, padding: 'x'.repeat(3 * 1024 * 1024) });
    const res = await s.mutate(big).expect(413);
    expect(res.body.error).toMatch(/larger than 3145728 bytes/);
  });

  it('accepts a body just under 3 MiB', async () => {
    const pod = structuredClone(samplePod);
    pod.metadata.annotations['example.com/big'] = 'x'.repeat(3 * 1024 * 1024 - 4096);
    const res = await s.mutate(review(pod)).expect(200);
    expect(decodePatch(res.body.response)).toHaveLength(1);
  });

  it('415 for another content type', async () => {
    const res = await s.mutate('x').set('content-type', 'text/plain').expect(415);
    expect(res.body.error).toMatch(/application\/json/);
  });

  it.each([
    ['a ConfigMap', { kind: { group: '', version: 'v1', kind: 'ConfigMap' }, resource: { group: '', version: 'v1', resource: 'configmaps' } }],
    ['a Pod UPDATE', { operation: 'UPDATE' }],
    ['a Pod DELETE', { operation: 'DELETE', object: null }],
    ['a pods/ephemeralcontainers subresource', { subResource: 'ephemeralcontainers' }],
    ['a Deployment CREATE', { kind: { group: 'apps', version: 'v1', kind: 'Deployment' }, resource: { group: 'apps', version: 'v1', resource: 'deployments' } }],
  ])('allows %s without a patch', async (_n, overrides) => {
    const res = await s.mutate(review(samplePod, overrides)).expect(200);
    expect(res.body.response).toEqual({ uid: expect.any(String), allowed: true });
  });

  it.each([
    ['no metadata at all', { spec: samplePod.spec }],
    ['annotations: null', { ...samplePod, metadata: { ...samplePod.metadata, annotations: null } }],
    ['labels and annotations missing', { metadata: { generateName: 'istio-cni-node-' }, spec: {} }],
  ])('odd shape with %s gets a patch that applies and converges', async (_n, pod) => {
    const res = await s.mutate(review(pod)).expect(200);
    const patched = applyOps(pod, decodePatch(res.body.response));
    expect((patched as typeof samplePod).metadata.annotations['oneagent.dynatrace.com/inject']).toBe('false');
    const again = await s.mutate(review(patched)).expect(200);
    expect(again.body.response.patch).toBeUndefined();
  });

  it.each([
    ['a non-string annotation value', { ...samplePod, metadata: { ...samplePod.metadata, annotations: { a: 1 } } }],
    ['annotations that are a list', { ...samplePod, metadata: { ...samplePod.metadata, annotations: ['x'] } }],
    ['metadata that is a string', { ...samplePod, metadata: 'x' }],
    ['an invalid annotation key', { ...samplePod, metadata: { ...samplePod.metadata, annotations: { 'bad key': 'v' } } }],
    ['containers that are a map', { ...samplePod, spec: { containers: { a: 1 } } }],
    ['an object that is a number', 7],
    ['no object', undefined],
  ])('odd shape with %s is allowed unchanged, and logged', async (_n, pod) => {
    const body = review(pod);
    const res = await s.mutate(body).expect(200);
    expect(res.body.response).toEqual({ uid: (body.request as { uid: string }).uid, allowed: true });
    await waitFor(() => admissionLines(s).some((l) => l.uid === (body.request as { uid: string }).uid));
    const line = admissionLines(s).find((l) => l.uid === (body.request as { uid: string }).uid)!;
    expect(line.outcome).toBe('unexpected-shape');
    expect(line.reason).toBeTruthy();
  });

  it('leaves a pod with mesh-guard.io/skip: "true" untouched', async () => {
    const pod = structuredClone(samplePod);
    pod.metadata.annotations['mesh-guard.io/skip'] = 'true';
    const res = await s.mutate(review(pod)).expect(200);
    expect(res.body.response.patch).toBeUndefined();
  });

  it('serves HTTP/1.1 keep-alive longer than the API server reuses idle connections (90 s)', () => {
    expect(s.server.app.fastify.server.keepAliveTimeout).toBeGreaterThan(90_000);
    expect(s.server.app.fastify.server.headersTimeout).toBeLessThanOrEqual(s.server.app.fastify.server.requestTimeout);
  });

  it('refuses TLS 1.1', async () => {
    const err = await new Promise<Error | undefined>((resolve) => {
      const sock = tls.connect({ host: '127.0.0.1', port: s.server.port, ca: s.ca, servername: 'localhost', maxVersion: 'TLSv1.1', minVersion: 'TLSv1' }, () => {
        sock.end();
        resolve(undefined);
      });
      sock.on('error', resolve);
    });
    expect(err).toBeDefined();
  });

  it('answers /healthz, /readyz and /metrics', async () => {
    await s.get('/healthz').expect(200);
    const ready = await s.get('/readyz').expect(200);
    expect(ready.body).toEqual({ status: 'ready', clusterView: 'off' });
    const metrics = await s.get('/metrics').expect(200);
    expect(metrics.text).toMatch(/mesh_guard_admissions_total\{outcome="patched"\} \d+/);
    expect(metrics.text).toMatch(/mesh_guard_admission_duration_seconds_bucket\{le="0.005"\}/);
    expect(metrics.text).toMatch(/mesh_guard_rule_changes_total\{rule="node-agent-guard",mode="enforce"\} \d+/);
    await s.get('/nope').expect(404);
  });
});

describe('dry-run', () => {
  it('global dryRun returns no patch and logs the would-be change', async () => {
    const s = await startTestServer({ configYaml: 'dryRun: true' });
    try {
      const res = await s.mutate(sample).expect(200);
      expect(res.body.response.patch).toBeUndefined();
      expect(res.body.response.patchType).toBeUndefined();
      expect(res.body.response.auditAnnotations).toEqual({ 'dry-run-would-mutate': 'node-agent-guard' });
      await waitFor(() => admissionLines(s).length > 0);
      expect(admissionLines(s)[0]).toMatchObject({
        outcome: 'unchanged',
        dryRun: true,
        rules: [expect.objectContaining({ rule: 'node-agent-guard', mode: 'dry-run', changes: ['oneagent.dynatrace.com/inject: (unset) → "false"'] })],
      });
      const metrics = await s.get('/metrics').expect(200);
      expect(metrics.text).toMatch(/mesh_guard_rule_changes_total\{rule="node-agent-guard",mode="dry-run"\} 1/);
    } finally {
      await s.close();
    }
  });

  it('a per-rule dry-run mode only holds back that rule', async () => {
    const s = await startTestServer({ configYaml: 'rules: { node-agent-guard: dry-run }' });
    try {
      const res = await s.mutate(sample).expect(200);
      expect(res.body.response.patch).toBeUndefined();
      const off = await startTestServer({ configYaml: 'rules: { node-agent-guard: "off" }' });
      try {
        const r2 = await off.mutate(sample).expect(200);
        expect(r2.body.response).toEqual({ uid: sample.request.uid, allowed: true });
      } finally {
        await off.close();
      }
    } finally {
      await s.close();
    }
  });
});

describe('config reload', () => {
  it('applies a changed file without a restart and keeps the old config when the new one is invalid', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-guard-cfg-'));
    const file = path.join(dir, 'config.yaml');
    fs.writeFileSync(file, 'dryRun: false\n');
    const s = await startTestServer({ configFile: file, configYaml: 'dryRun: false' });
    try {
      expect((await s.mutate(sample).expect(200)).body.response.patch).toBeDefined();
      fs.writeFileSync(file, 'dryRun: true\n');
      await waitFor(() => s.server.config().dryRun);
      expect((await s.mutate(sample).expect(200)).body.response.patch).toBeUndefined();
      fs.writeFileSync(file, 'dryRun: maybe\n');
      await waitFor(() => s.logs.some((l) => String(l.msg).includes('config change rejected')));
      expect(s.logs.find((l) => String(l.msg).includes('config change rejected'))!.error).toMatch(/dryRun/);
      expect(s.server.config().dryRun).toBe(true);
    } finally {
      await s.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('shutdown', () => {
  it('turns /readyz 503 at once, keeps answering during the drain delay, then stops', async () => {
    const s = await startTestServer({ shutdownDelayMs: 400 });
    const done = s.server.shutdown();
    let finished = false;
    void done.then(() => (finished = true));
    expect((await s.get('/readyz')).status).toBe(503);
    const res = await s.mutate(sample).expect(200);
    expect(res.body.response.uid).toBe(sample.request.uid);
    expect(finished).toBe(false);
    await done;
    await expect(s.get('/healthz')).rejects.toThrow(/ECONNREFUSED/);
  });
});
