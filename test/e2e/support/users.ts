/**
 * Identities other than the admin, for what RBAC decides: a ServiceAccount's bound token (the
 * TokenRequest API, as the kubelet projects it into a pod) and a kubeconfig that uses it. With
 * `--authorization-mode=RBAC` the real API server answers such a user with its own 403s.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CoreV1Api, RbacAuthorizationV1Api, type V1PolicyRule } from '@kubernetes/client-node';
import type { ControlPlane } from './controlplane.js';

/** A bound token of an existing ServiceAccount, valid for a day. */
export async function serviceAccountToken(cp: ControlPlane, namespace: string, name: string): Promise<string> {
  const tr = await cp.kc.makeApiClient(CoreV1Api).createNamespacedServiceAccountToken({
    name,
    namespace,
    body: { spec: { audiences: [], expirationSeconds: 24 * 3600 } },
  });
  return tr.status!.token;
}

/** Writes a kubeconfig for `token` against the control plane (its CA) into `dir`. */
export function tokenKubeconfig(cp: ControlPlane, token: string, dir: string, user: string, namespace = 'default'): string {
  const file = path.join(dir, `${user}.kubeconfig`);
  const lines = [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: e2e',
    `  cluster: {server: "${cp.url}", certificate-authority-data: ${Buffer.from(cp.caPem).toString('base64')}}`,
    'users:',
    `- name: ${user}`,
    `  user: {token: "${token}"}`,
    'contexts:',
    '- name: e2e',
    `  context: {cluster: e2e, user: ${user}, namespace: ${namespace}}`,
    'current-context: e2e',
    '',
  ];
  fs.writeFileSync(file, lines.join('\n'), { mode: 0o600 });
  return file;
}

export interface LimitedUser {
  /** `system:serviceaccount:<namespace>:<name>`, as the API server names it in a 403. */
  readonly username: string;
  readonly token: string;
  readonly kubeconfigPath: string;
}

/**
 * A ServiceAccount `namespace/name` allowed exactly `rules`, cluster-wide (a ClusterRole and its
 * binding, both named `e2e-<namespace>-<name>`); no rules means no binding at all.
 */
export async function limitedUser(cp: ControlPlane, namespace: string, name: string, rules: V1PolicyRule[]): Promise<LimitedUser> {
  await cp.ensureNamespace(namespace);
  const core = cp.kc.makeApiClient(CoreV1Api);
  try {
    await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name } } });
  } catch (err) {
    if ((err as { code?: number }).code !== 409) throw err;
  }
  if (rules.length) {
    const rbac = cp.kc.makeApiClient(RbacAuthorizationV1Api);
    const roleName = `e2e-${namespace}-${name}`;
    await rbac.createClusterRole({ body: { metadata: { name: roleName }, rules } });
    await rbac.createClusterRoleBinding({
      body: {
        metadata: { name: roleName },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: roleName },
        subjects: [{ kind: 'ServiceAccount', name, namespace }],
      },
    });
  }
  const token = await serviceAccountToken(cp, namespace, name);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-guard-e2e-user-'));
  return { username: `system:serviceaccount:${namespace}:${name}`, token, kubeconfigPath: tokenKubeconfig(cp, token, dir, name, namespace) };
}
