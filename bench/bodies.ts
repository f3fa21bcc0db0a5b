/**
 * Realistic AdmissionReview v1 bodies for the benchmark, built from realistic pods.
 *
 * Pods look like what the API server sends for a CREATE from a controller: generateName
 * set, no name, ownerReferences, managedFields already filled in (the field manager runs
 * before admission), the projected service-account token volume, default tolerations.
 * Sizes: small ≈ 6 KB, medium ≈ 12 KB (two containers plus an init container, env, probes,
 * volumes, resources, annotations), large ≈ 60 KB (many env vars). Each size comes as a
 * mix of twelve variants, four of which are pods a rule is about:
 *   - an Istio CNI node agent (node-agent-guard),
 *   - a Dynatrace CSI driver pod (csi-driver-guard),
 *   - a meshed pod asking Dynatrace to scrape it (metrics.dynatrace.com/scrape + port),
 *   - a Consul connect-injected pod.
 * The last two need namespace labels to be judged; with no cluster the server sees the
 * namespace as unknown, so they usually pass unchanged (the bench reports the patched share).
 */
import { createHash } from 'node:crypto';

export type Size = 'small' | 'medium' | 'large';
export type Variant = 'plain' | 'istio-cni' | 'csi-driver' | 'meshed-scrape' | 'consul';

export const SIZE_TARGET: Record<Size, number> = { small: 6 * 1024, medium: 12 * 1024, large: 60 * 1024 };

/** Twelve slots, four of which a rule is about: about a third. */
export const MIX: readonly Variant[] = [
  'plain', 'istio-cni', 'plain', 'plain', 'meshed-scrape', 'plain',
  'plain', 'consul', 'plain', 'plain', 'csi-driver', 'plain',
];

type Json = Record<string, unknown>;

function hex(seed: string, n: number): string {
  return createHash('sha256').update(seed).digest('hex').slice(0, n);
}

function uuid(seed: string): string {
  const h = hex(seed, 32);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

const suffix = (seed: string) => hex(seed, 5).replace(/[0-9]/g, (d) => 'bcdfghjklm'[Number(d)]!);

function probe(path: string, port: number | string, initialDelay: number): Json {
  return {
    httpGet: { path, port, scheme: 'HTTP' },
    initialDelaySeconds: initialDelay,
    timeoutSeconds: 1,
    periodSeconds: 10,
    successThreshold: 1,
    failureThreshold: 3,
  };
}

function envList(prefix: string, n: number, seed: string): Json[] {
  const out: Json[] = [];
  for (let i = 0; i < n; i++) {
    const k = i % 7;
    if (k === 5) {
      out.push({ name: `${prefix}_SECRET_${i}`, valueFrom: { secretKeyRef: { name: `${prefix.toLowerCase()}-secrets`, key: `key-${i}` } } });
    } else if (k === 6) {
      out.push({ name: `${prefix}_CONFIG_${i}`, valueFrom: { configMapKeyRef: { name: `${prefix.toLowerCase()}-config`, key: `setting.${i}`, optional: true } } });
    } else {
      out.push({ name: `${prefix}_SETTING_${i}`, value: `https://svc-${i}.internal.example.com:8443/api/v2?region=eu-central-1&token=${hex(seed + i, 16)}` });
    }
  }
  return out;
}

const downward: Json[] = [
  { name: 'POD_NAME', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } } },
  { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } } },
  { name: 'POD_IP', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'status.podIP' } } },
  { name: 'NODE_NAME', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'spec.nodeName' } } },
];

function resources(cpuReq: string, memReq: string, cpuLim: string, memLim: string): Json {
  return { requests: { cpu: cpuReq, memory: memReq }, limits: { cpu: cpuLim, memory: memLim } };
}

const tokenVolume = (name: string): Json => ({
  name,
  projected: {
    defaultMode: 420,
    sources: [
      { serviceAccountToken: { expirationSeconds: 3607, path: 'token' } },
      { configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
      { downwardAPI: { items: [{ path: 'namespace', fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } }] } },
    ],
  },
});

const tolerations: Json[] = [
  { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
  { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
];

/** metadata.managedFields as the field manager fills it in for a controller-created pod. */
function managedFields(manager: string, containers: readonly Json[], volumes: readonly Json[], labels: Json, annotations: Json): Json[] {
  const fContainers: Json = {};
  for (const c of containers) {
    const env: Json = {};
    for (const e of (c.env as Json[] | undefined) ?? []) env[`k:{"name":"${e.name as string}"}`] = { '.': {}, 'f:name': {}, [e.valueFrom ? 'f:valueFrom' : 'f:value']: {} };
    fContainers[`k:{"name":"${c.name as string}"}`] = {
      '.': {}, 'f:env': { '.': {}, ...env }, 'f:image': {}, 'f:imagePullPolicy': {}, 'f:name': {},
      'f:ports': { '.': {}, 'k:{"containerPort":8080,"protocol":"TCP"}': { '.': {}, 'f:containerPort': {}, 'f:name': {}, 'f:protocol': {} } },
      'f:resources': { '.': {}, 'f:limits': { '.': {}, 'f:cpu': {}, 'f:memory': {} }, 'f:requests': { '.': {}, 'f:cpu': {}, 'f:memory': {} } },
      'f:terminationMessagePath': {}, 'f:terminationMessagePolicy': {}, 'f:volumeMounts': { '.': {} },
    };
  }
  const fVolumes: Json = {};
  for (const v of volumes) fVolumes[`k:{"name":"${v.name as string}"}`] = { '.': {}, 'f:name': {} };
  const keys = (m: Json) => Object.fromEntries(Object.keys(m).map((k) => [`f:${k}`, {}]));
  return [
    {
      manager,
      operation: 'Update',
      apiVersion: 'v1',
      time: '2026-11-21T09:14:07Z',
      fieldsType: 'FieldsV1',
      fieldsV1: {
        'f:metadata': {
          'f:annotations': { '.': {}, ...keys(annotations) },
          'f:generateName': {},
          'f:labels': { '.': {}, ...keys(labels) },
          'f:ownerReferences': { '.': {}, 'k:{"uid":"6f0c4b1e-8a51-4a57-9d3b-1f7c2e9d4a10"}': {} },
        },
        'f:spec': {
          'f:containers': fContainers,
          'f:dnsPolicy': {}, 'f:enableServiceLinks': {}, 'f:restartPolicy': {}, 'f:schedulerName': {},
          'f:securityContext': {}, 'f:serviceAccount': {}, 'f:serviceAccountName': {},
          'f:terminationGracePeriodSeconds': {}, 'f:volumes': { '.': {}, ...fVolumes },
        },
      },
    },
  ];
}

interface Shape {
  namespace: string;
  generateName: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  owner: { kind: string; name: string; apiVersion: string };
  serviceAccount: string;
  containers: Json[];
  initContainers: Json[];
  volumes: Json[];
  extraSpec?: Json;
}

function appContainer(name: string, image: string, envCount: number, seed: string, port: number): Json {
  return {
    name,
    image,
    imagePullPolicy: 'IfNotPresent',
    args: ['--config=/etc/app/config.yaml', '--log-format=json', `--listen=:${port}`],
    ports: [
      { name: 'http', containerPort: port, protocol: 'TCP' },
      { name: 'metrics', containerPort: 9090, protocol: 'TCP' },
    ],
    env: [...downward, ...envList(name.toUpperCase().replace(/-/g, '_'), envCount, seed)],
    resources: resources('250m', '256Mi', '1', '512Mi'),
    livenessProbe: probe('/healthz', 'http', 15),
    readinessProbe: probe('/readyz', 'http', 5),
    startupProbe: { ...probe('/healthz', 'http', 0), failureThreshold: 30, periodSeconds: 2 },
    volumeMounts: [
      { name: 'config', mountPath: '/etc/app', readOnly: true },
      { name: 'cache', mountPath: '/var/cache/app' },
      { name: 'kube-api-access-x7k2p', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true },
    ],
    securityContext: {
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      runAsUser: 10001,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    terminationMessagePath: '/dev/termination-log',
    terminationMessagePolicy: 'File',
  };
}

function sizedShape(size: Size, variant: Variant, seed: string, envCount: number): Shape {
  const app = variant === 'consul' ? 'billing-api' : variant === 'meshed-scrape' ? 'payments-api' : 'checkout';
  const hash = hex(seed + 'rs', 10);
  const labels: Record<string, string> = {
    app,
    'app.kubernetes.io/name': app,
    'app.kubernetes.io/instance': `${app}-prod`,
    'app.kubernetes.io/version': '4.12.3',
    'app.kubernetes.io/component': 'backend',
    'app.kubernetes.io/part-of': 'webshop',
    'app.kubernetes.io/managed-by': 'Helm',
    version: 'v4',
    'pod-template-hash': hash,
  };
  const annotations: Record<string, string> = {
    'kubectl.kubernetes.io/restartedAt': '2026-11-20T17:32:11Z',
    'checksum/config': hex(seed + 'cfg', 64),
    'checksum/secret': hex(seed + 'sec', 64),
    'cluster-autoscaler.kubernetes.io/safe-to-evict': 'true',
  };
  let namespace = 'shop';
  if (variant === 'meshed-scrape') {
    namespace = 'payments'; // labelled istio-injection=enabled in the cluster this models
    annotations['metrics.dynatrace.com/scrape'] = 'true';
    annotations['metrics.dynatrace.com/port'] = '9090';
    annotations['metrics.dynatrace.com/path'] = '/metrics';
  }
  if (variant === 'consul') {
    namespace = 'billing';
    annotations['consul.hashicorp.com/connect-inject'] = 'true';
    annotations['consul.hashicorp.com/connect-service'] = app;
    annotations['consul.hashicorp.com/connect-service-upstreams'] = 'ledger:9191,fraud-check:9292';
    annotations['consul.hashicorp.com/transparent-proxy'] = 'true';
  }
  const image = (n: string) => `registry.example.com/webshop/${n}:4.12.3@sha256:${hex(n, 64)}`;
  const containers = [appContainer(app, image(app), envCount, seed + 'a', 8080)];
  const initContainers: Json[] = [];
  const volumes: Json[] = [
    { name: 'config', configMap: { name: `${app}-config`, defaultMode: 420 } },
    { name: 'cache', emptyDir: { sizeLimit: '256Mi' } },
    tokenVolume('kube-api-access-x7k2p'),
  ];
  if (size !== 'small') {
    containers.push({
      ...appContainer('log-shipper', image('log-shipper'), 8, seed + 'b', 2020),
      resources: resources('50m', '64Mi', '200m', '128Mi'),
    });
    initContainers.push({
      name: 'migrate-db',
      image: image('db-migrate'),
      imagePullPolicy: 'IfNotPresent',
      command: ['/bin/migrate', 'up', '--timeout=120s'],
      env: [...downward, ...envList('MIGRATE', 6, seed + 'c')],
      resources: resources('100m', '128Mi', '500m', '256Mi'),
      volumeMounts: [{ name: 'kube-api-access-x7k2p', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true }],
      terminationMessagePath: '/dev/termination-log',
      terminationMessagePolicy: 'File',
    });
    volumes.push({ name: 'tls', secret: { secretName: `${app}-tls`, defaultMode: 256 } });
  }
  return {
    namespace,
    generateName: `${app}-${hash}-`,
    labels,
    annotations,
    owner: { kind: 'ReplicaSet', name: `${app}-${hash}`, apiVersion: 'apps/v1' },
    serviceAccount: app,
    containers,
    initContainers,
    volumes,
    extraSpec: size === 'small' ? {} : {
      affinity: {
        podAntiAffinity: {
          preferredDuringSchedulingIgnoredDuringExecution: [
            { weight: 100, podAffinityTerm: { topologyKey: 'kubernetes.io/hostname', labelSelector: { matchLabels: { app } } } },
          ],
        },
      },
      topologySpreadConstraints: [
        { maxSkew: 1, topologyKey: 'topology.kubernetes.io/zone', whenUnsatisfiable: 'ScheduleAnyway', labelSelector: { matchLabels: { app } } },
      ],
    },
  };
}

/** The Istio CNI DaemonSet pod (istio-cni chart 1.30 defaults), padded with env to the size. */
function istioCniShape(seed: string, envCount: number): Shape {
  const hash = hex(seed + 'crh', 10);
  return {
    namespace: 'istio-system',
    generateName: 'istio-cni-node-',
    labels: {
      'k8s-app': 'istio-cni-node',
      'sidecar.istio.io/inject': 'false',
      'istio.io/dataplane-mode': 'none',
      'app.kubernetes.io/name': 'istio-cni',
      'app.kubernetes.io/managed-by': 'Helm',
      'app.kubernetes.io/instance': 'istio-cni',
      'app.kubernetes.io/part-of': 'istio',
      'app.kubernetes.io/version': '1.30.3',
      'helm.sh/chart': 'cni-1.30.3',
      'controller-revision-hash': hash,
      'pod-template-generation': '1',
    },
    annotations: {
      'sidecar.istio.io/inject': 'false',
      'prometheus.io/scrape': 'true',
      'prometheus.io/port': '15014',
      'prometheus.io/path': '/metrics',
      'container.apparmor.security.beta.kubernetes.io/install-cni': 'unconfined',
    },
    owner: { kind: 'DaemonSet', name: 'istio-cni-node', apiVersion: 'apps/v1' },
    serviceAccount: 'istio-cni',
    containers: [
      {
        name: 'install-cni',
        image: 'registry.istio.io/release/install-cni:1.30.3',
        imagePullPolicy: 'IfNotPresent',
        command: ['install-cni'],
        args: ['--log_output_level=info'],
        ports: [{ containerPort: 15014, name: 'metrics', protocol: 'TCP' }],
        readinessProbe: probe('/readyz', 8000, 0),
        env: [
          { name: 'REPAIR_ENABLED', value: 'true' },
          { name: 'REPAIR_LABEL_PODS', value: 'false' },
          { name: 'REPAIR_DELETE_PODS', value: 'false' },
          { name: 'REPAIR_REPAIR_PODS', value: 'true' },
          { name: 'REPAIR_NODE_NAME', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'spec.nodeName' } } },
          { name: 'REPAIR_LABEL_KEY', value: 'cni.istio.io/uninitialized' },
          { name: 'REPAIR_LABEL_VALUE', value: 'true' },
          { name: 'REPAIR_SIDECAR_ANNOTATION', value: 'sidecar.istio.io/status' },
          { name: 'REPAIR_INIT_CONTAINER_NAME', value: 'istio-validation' },
          { name: 'REPAIR_BROKEN_POD_LABEL_KEY', value: 'cni.istio.io/uninitialized' },
          { name: 'REPAIR_BROKEN_POD_LABEL_VALUE', value: 'true' },
          { name: 'NODE_NAME', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'spec.nodeName' } } },
          { name: 'GOMEMLIMIT', valueFrom: { resourceFieldRef: { divisor: '0', resource: 'limits.memory' } } },
          { name: 'GOMAXPROCS', valueFrom: { resourceFieldRef: { divisor: '0', resource: 'limits.cpu' } } },
          { name: 'POD_NAME', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } } },
          { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } } },
          ...envList('CNI', envCount, seed),
        ],
        resources: { requests: { cpu: '100m', memory: '100Mi' } },
        securityContext: {
          privileged: false,
          runAsGroup: 0,
          runAsUser: 0,
          runAsNonRoot: false,
          capabilities: { drop: ['ALL'], add: ['NET_ADMIN', 'NET_RAW', 'SYS_PTRACE', 'SYS_ADMIN', 'DAC_OVERRIDE'] },
          seLinuxOptions: { type: 'spc_t' },
        },
        volumeMounts: [
          { mountPath: '/host/opt/cni/bin', name: 'cni-bin-dir' },
          { mountPath: '/host/proc', name: 'cni-host-procfs', readOnly: true },
          { mountPath: '/host/etc/cni/net.d', name: 'cni-net-dir' },
          { mountPath: '/var/run/istio-cni', name: 'cni-socket-dir' },
          { mountPath: '/host/var/run/netns', mountPropagation: 'HostToContainer', name: 'cni-netns-dir' },
          { mountPath: '/var/run/ztunnel', name: 'cni-ztunnel-sock-dir' },
          { mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', name: 'kube-api-access-q9m4t', readOnly: true },
        ],
        terminationMessagePath: '/dev/termination-log',
        terminationMessagePolicy: 'File',
      },
    ],
    initContainers: [],
    volumes: [
      { name: 'cni-bin-dir', hostPath: { path: '/opt/cni/bin', type: '' } },
      { name: 'cni-host-procfs', hostPath: { path: '/proc', type: 'Directory' } },
      { name: 'cni-ztunnel-sock-dir', hostPath: { path: '/var/run/ztunnel', type: 'DirectoryOrCreate' } },
      { name: 'cni-net-dir', hostPath: { path: '/etc/cni/net.d', type: '' } },
      { name: 'cni-socket-dir', hostPath: { path: '/var/run/istio-cni', type: '' } },
      { name: 'cni-netns-dir', hostPath: { path: '/var/run/netns', type: 'DirectoryOrCreate' } },
      tokenVolume('kube-api-access-q9m4t'),
    ],
    extraSpec: {
      nodeSelector: { 'kubernetes.io/os': 'linux' },
      priorityClassName: 'system-node-critical',
      hostNetwork: false,
      affinity: {
        nodeAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: {
            nodeSelectorTerms: [{ matchFields: [{ key: 'metadata.name', operator: 'In', values: [`node-${suffix(seed)}`] }] }],
          },
        },
      },
    },
  };
}

/** The Dynatrace Operator's CSI driver DaemonSet pod. */
function csiDriverShape(seed: string, envCount: number): Shape {
  const hash = hex(seed + 'crh', 10);
  const image = 'public.ecr.aws/dynatrace/dynatrace-operator:v1.7.2';
  const sidecar = (name: string, args: string[]): Json => ({
    name,
    image,
    imagePullPolicy: 'IfNotPresent',
    args,
    resources: resources('20m', '32Mi', '100m', '64Mi'),
    securityContext: { privileged: false, readOnlyRootFilesystem: true, runAsUser: 0 },
    volumeMounts: [{ mountPath: '/csi', name: 'plugin-dir' }, { mountPath: '/registration', name: 'registration-dir' }],
    terminationMessagePath: '/dev/termination-log',
    terminationMessagePolicy: 'File',
  });
  return {
    namespace: 'dynatrace',
    generateName: 'dynatrace-oneagent-csi-driver-',
    labels: {
      'app.kubernetes.io/name': 'dynatrace-operator',
      'app.kubernetes.io/component': 'csi-driver',
      'app.kubernetes.io/version': '1.7.2',
      'internal.oneagent.dynatrace.com/app': 'csi-driver',
      'internal.oneagent.dynatrace.com/component': 'csi-driver',
      'controller-revision-hash': hash,
      'pod-template-generation': '3',
    },
    annotations: { 'kubectl.kubernetes.io/default-container': 'provisioner', 'dynatrace.com/inject': 'false' },
    owner: { kind: 'DaemonSet', name: 'dynatrace-oneagent-csi-driver', apiVersion: 'apps/v1' },
    serviceAccount: 'dynatrace-oneagent-csi-driver',
    containers: [
      {
        name: 'server',
        image,
        imagePullPolicy: 'IfNotPresent',
        args: ['csi-server', '--endpoint=unix://csi/csi.sock', '--node-id=$(KUBE_NODE_NAME)', '--health-probe-bind-address=:10080'],
        env: [
          { name: 'KUBE_NODE_NAME', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'spec.nodeName' } } },
          { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } } },
          ...envList('CSI', envCount, seed),
        ],
        livenessProbe: probe('/livez', 'livez', 5),
        ports: [{ containerPort: 10080, name: 'livez', protocol: 'TCP' }],
        resources: resources('50m', '100Mi', '300m', '100Mi'),
        securityContext: { privileged: true, runAsUser: 0, seLinuxOptions: { level: 's0' } },
        volumeMounts: [
          { mountPath: '/csi', name: 'plugin-dir' },
          { mountPath: '/var/lib/kubelet/pods/', mountPropagation: 'Bidirectional', name: 'mountpoint-dir' },
          { mountPath: '/data', name: 'dynatrace-dir' },
        ],
        terminationMessagePath: '/dev/termination-log',
        terminationMessagePolicy: 'File',
      },
      sidecar('provisioner', ['csi-provisioner', '--csi-address=/csi/csi.sock', '--health-probe-bind-address=']),
      sidecar('registrar', ['--csi-address=/csi/csi.sock', '--kubelet-registration-path=/var/lib/kubelet/plugins/csi.oneagent.dynatrace.com/csi.sock']),
      sidecar('liveness-probe', ['--csi-address=/csi/csi.sock', '--health-port=9898']),
    ],
    initContainers: [],
    volumes: [
      { name: 'registration-dir', hostPath: { path: '/var/lib/kubelet/plugins_registry/', type: 'Directory' } },
      { name: 'plugin-dir', hostPath: { path: '/var/lib/kubelet/plugins/csi.oneagent.dynatrace.com', type: 'DirectoryOrCreate' } },
      { name: 'mountpoint-dir', hostPath: { path: '/var/lib/kubelet/pods', type: 'DirectoryOrCreate' } },
      { name: 'dynatrace-dir', hostPath: { path: '/var/lib/kubelet/plugins/csi.oneagent.dynatrace.com/data', type: 'DirectoryOrCreate' } },
      tokenVolume('kube-api-access-w2c8v'),
    ],
    extraSpec: { priorityClassName: 'dynatrace-high-priority', nodeSelector: { 'kubernetes.io/os': 'linux' } },
  };
}

function shapeFor(size: Size, variant: Variant, seed: string, envCount: number): Shape {
  if (variant === 'istio-cni') return istioCniShape(seed, envCount);
  if (variant === 'csi-driver') return csiDriverShape(seed, envCount);
  return sizedShape(size, variant, seed, envCount);
}

function podFrom(s: Shape): Json {
  return {
    kind: 'Pod',
    apiVersion: 'v1',
    metadata: {
      generateName: s.generateName,
      namespace: s.namespace,
      creationTimestamp: null,
      labels: s.labels,
      annotations: s.annotations,
      ownerReferences: [{ ...s.owner, uid: '6f0c4b1e-8a51-4a57-9d3b-1f7c2e9d4a10', controller: true, blockOwnerDeletion: true }],
      managedFields: managedFields('kube-controller-manager', s.containers, s.volumes, s.labels, s.annotations),
    },
    spec: {
      volumes: s.volumes,
      ...(s.initContainers.length ? { initContainers: s.initContainers } : {}),
      containers: s.containers,
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 30,
      dnsPolicy: 'ClusterFirst',
      serviceAccountName: s.serviceAccount,
      serviceAccount: s.serviceAccount,
      securityContext: { fsGroup: 10001, seccompProfile: { type: 'RuntimeDefault' } },
      schedulerName: 'default-scheduler',
      tolerations,
      priority: 0,
      enableServiceLinks: true,
      preemptionPolicy: 'PreemptLowerPriority',
      ...s.extraSpec,
    },
    status: {},
  };
}

function reviewOf(pod: Json, uid: string, namespace: string, user: string): Json {
  return {
    kind: 'AdmissionReview',
    apiVersion: 'admission.k8s.io/v1',
    request: {
      uid,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      namespace,
      operation: 'CREATE',
      userInfo: {
        username: user,
        uid: uuid(user),
        groups: ['system:serviceaccounts', 'system:serviceaccounts:kube-system', 'system:authenticated'],
      },
      object: pod,
      oldObject: null,
      dryRun: false,
      options: { kind: 'CreateOptions', apiVersion: 'meta.k8s.io/v1' },
    },
  };
}

/** One serialised review of the given size and variant, padded with env vars to the target. */
export function buildReview(size: Size, variant: Variant, index: number): Buffer {
  const seed = `${size}/${variant}/${index}`;
  const uid = uuid(seed);
  const user =
    variant === 'istio-cni' || variant === 'csi-driver'
      ? 'system:serviceaccount:kube-system:daemon-set-controller'
      : 'system:serviceaccount:kube-system:replicaset-controller';
  const make = (envCount: number) => {
    const s = shapeFor(size, variant, seed, envCount);
    return Buffer.from(JSON.stringify(reviewOf(podFrom(s), uid, s.namespace, user)));
  };
  // Grow the env list until the body reaches the target size (each entry is ~200 bytes with its managedFields).
  let n = 0;
  let body = make(n);
  const target = SIZE_TARGET[size];
  while (body.length < target) {
    const step = Math.max(1, Math.floor((target - body.length) / 260));
    n += step;
    body = make(n);
  }
  return body;
}

export interface BodySet {
  readonly size: Size;
  readonly bodies: readonly Buffer[];
  readonly variants: readonly Variant[];
  readonly averageBytes: number;
}

/** `copies` passes over the mix, every body with its own uid and pod-template hash. */
export function bodySet(size: Size, copies = 4): BodySet {
  const bodies: Buffer[] = [];
  const variants: Variant[] = [];
  for (let c = 0; c < copies; c++) {
    MIX.forEach((v, i) => {
      bodies.push(buildReview(size, v, c * MIX.length + i));
      variants.push(v);
    });
  }
  const averageBytes = Math.round(bodies.reduce((a, b) => a + b.length, 0) / bodies.length);
  return { size, bodies, variants, averageBytes };
}
