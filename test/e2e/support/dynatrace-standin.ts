/**
 * What the Dynatrace Operator's pod webhook does to a pod (dynatrace.md §1, §4; peers-2026-12.md
 * §1, §3), as a pure function of the pod and the DynaKube it stands for.
 *
 * Source: Dynatrace/dynatrace-operator 70d37e5, under pkg/webhook/mutation/pod/ unless a line
 * says otherwise. The namespace gate (`dynakube.internal.dynatrace.com/instance`) is the
 * webhook configuration's namespaceSelector, so the API server applies it (peers.ts).
 *
 * Not modelled: OTLP exporter injection, split mounts, OpenShift, `oc debug` pods, the
 * `metadata.dynatrace.com` JSON annotation and the full `--attribute*` content, the bootstrapper
 * Secret replication (assumed present), the ZIP-download mode, network zone and version labels.
 */
import type { V1Container, V1EnvVar, V1Pod, V1Volume } from '@kubernetes/client-node';
import {
  DT_INJECT,
  DT_ONEAGENT_INJECT,
  DT_VOLUME_TYPE,
  dynatraceBool,
  dynatraceContainerExcluded,
} from '../../../src/admission/annotations.js';

/** The DynaKube the stand-in serves (applicationMonitoring, CSI driver on: the Helm defaults). */
export interface DynatraceOptions {
  /** DynaKube name: the CSI volume's `dynakube` attribute. */
  dynakube?: string;
  /** The webhook pod's image, used for the init container. */
  operatorImage?: string;
  /**
   * Code-module delivery when the pod does not choose: "csi" (CSI driver on, the Helm default),
   * "ephemeral" (emptyDir filled from `codeModulesImage`) or "image" (a Kubernetes image volume,
   * Operator 1.11: peers-2026-12.md §3, from the docs, not yet in the source read).
   */
  volumeType?: 'csi' | 'ephemeral' | 'image';
  /** spec.oneAgent.applicationMonitoring.codeModulesImage; the pod's volume-type annotation counts only when set. */
  codeModulesImage?: string;
  /** DynaKube FF feature.dynatrace.com/automatic-injection (true): the default of the pod annotations. */
  automaticInjection?: boolean;
  /** spec.metadataEnrichment.enabled: enrichment without OneAgent when the pod opts out of OneAgent only. */
  metadataEnrichment?: boolean;
  /** FF feature.dynatrace.com/injection-failure-policy ("silent"). */
  injectionFailurePolicy?: string;
  /** DynaKube annotations: `container.inject.dynatrace.com/<name>` may sit there too (mutator/container.go). */
  dynakubeAnnotations?: Readonly<Record<string, string>>;
  /** status.kubeSystemUUID, in DT_DEPLOYMENT_METADATA. */
  kubeSystemUUID?: string;
}

export const DT = {
  initContainer: 'dynatrace-operator', // mutator/config.go InstallContainerName
  binVolume: 'oneagent-bin', // mutator/oneagent/volumes.go BinVolumeName
  configVolume: 'dynatrace-config', // volumes/volumes.go ConfigVolumeName
  inputVolume: 'dynatrace-input', // volumes/volumes.go InputVolumeName
  installPath: '/opt/dynatrace/oneagent-paas', // mutator/oneagent/config.go DefaultInstallPath
  dynakubeInjected: 'dynakube.dynatrace.com/injected',
  dynakubeReason: 'dynakube.dynatrace.com/reason',
  oneagentInjected: 'oneagent.dynatrace.com/injected',
  oneagentReason: 'oneagent.dynatrace.com/reason',
  metadataInject: 'metadata-enrichment.dynatrace.com/inject',
  metadataInjected: 'metadata-enrichment.dynatrace.com/injected',
  metadataReason: 'metadata-enrichment.dynatrace.com/reason',
  installPathAnnotation: 'oneagent.dynatrace.com/install-path',
  failurePolicy: 'oneagent.dynatrace.com/failure-policy',
} as const;

export function resolveDynatraceOptions(o: DynatraceOptions = {}): Required<DynatraceOptions> {
  return {
    dynakube: o.dynakube ?? 'dynakube',
    operatorImage: o.operatorImage ?? 'public.ecr.aws/dynatrace/dynatrace-operator:v1.11.0',
    volumeType: o.volumeType ?? 'csi',
    codeModulesImage: o.codeModulesImage ?? (o.volumeType && o.volumeType !== 'csi' ? 'public.ecr.aws/dynatrace/dynatrace-codemodules:1.325.0' : ''),
    automaticInjection: o.automaticInjection ?? true,
    metadataEnrichment: o.metadataEnrichment ?? false,
    injectionFailurePolicy: o.injectionFailurePolicy ?? 'silent',
    dynakubeAnnotations: o.dynakubeAnnotations ?? {},
    kubeSystemUUID: o.kubeSystemUUID ?? '00000000-0000-0000-0000-000000000000',
  };
}

/**
 * mutator/container.go IsContainerExcludedFromInjection: the DynaKube's annotations, then the
 * pod's; checkInjectionAnnotation excludes only on the exact string "false".
 */
function containerExcluded(podAnnotations: Readonly<Record<string, string>>, name: string, o: Required<DynatraceOptions>): boolean {
  const key = `container.inject.dynatrace.com/${name}`;
  return dynatraceContainerExcluded(o.dynakubeAnnotations[key]) || dynatraceContainerExcluded(podAnnotations[key]);
}

/** mutator/request.go NewContainers: spec.containers only (never native sidecars), not excluded, not yet instrumented. */
function newContainers(pod: V1Pod, o: Required<DynatraceOptions>, isInjected: (c: V1Container) => boolean): V1Container[] {
  const a = pod.metadata?.annotations ?? {};
  return (pod.spec?.containers ?? []).filter((c) => !containerExcluded(a, c.name, o) && !isInjected(c));
}

/** volumes/volumes.go HasCommonConfigVolumeMounts: the metadata pass marks a container by its /var/lib/dynatrace mount. */
const hasConfigMount = (c: V1Container) => (c.volumeMounts ?? []).some((m) => m.mountPath === '/var/lib/dynatrace');
/** mutator/oneagent/mutator.go containerIsInjected: a mount of the oneagent-bin volume. */
const hasBinMount = (c: V1Container) => (c.volumeMounts ?? []).some((m) => m.name === DT.binVolume);

/** mutator/oneagent/mutator.go IsEnabled (the DynaKube has app injection and no OneAgent namespaceSelector here). */
const oneAgentEnabled = (pod: V1Pod, o: Required<DynatraceOptions>) => dynatraceBool(pod.metadata?.annotations?.[DT_ONEAGENT_INJECT], o.automaticInjection);
/** mutator/metadata/mutator.go IsEnabled. */
const metadataEnabled = (pod: V1Pod, o: Required<DynatraceOptions>) =>
  o.metadataEnrichment && dynatraceBool(pod.metadata?.annotations?.[DT.metadataInject], o.automaticInjection);

/**
 * mutator/oneagent/mutator.go isCSIVolume: the pod's `oneagent.dynatrace.com/volume-type`
 * (maputils.GetField: absent or empty → default) counts only when the DynaKube has a
 * code-modules image. "image" is the 1.11 image-volume mode.
 */
function volumeType(pod: V1Pod, o: Required<DynatraceOptions>): 'csi' | 'ephemeral' | 'image' {
  if (o.codeModulesImage === '') return o.volumeType === 'csi' ? 'csi' : 'ephemeral';
  const raw = pod.metadata?.annotations?.[DT_VOLUME_TYPE];
  const chosen = raw === undefined || raw === '' ? o.volumeType : raw;
  return chosen === 'csi' ? 'csi' : chosen === 'image' ? 'image' : 'ephemeral';
}

/** handler/injection/init.go createInitContainerBase (non-OpenShift). */
function initContainerBase(pod: V1Pod, o: Required<DynatraceOptions>): V1Container {
  const args = ['bootstrap', '--config-directory=/mnt/config', '--input-directory=/mnt/input'];
  // areErrorsSuppressed: anything but "fail" suppresses.
  const policy = pod.metadata?.annotations?.[DT.failurePolicy];
  if ((policy === undefined || policy === '' ? o.injectionFailurePolicy : policy) !== 'fail') args.push('--suppress-error');
  return {
    name: DT.initContainer,
    image: o.operatorImage,
    imagePullPolicy: 'IfNotPresent',
    securityContext: {
      readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, privileged: false, capabilities: { drop: ['ALL'] },
      runAsGroup: 1001, runAsUser: 1001, runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' },
    },
    resources: { requests: { cpu: '30m', memory: '30Mi' }, limits: { cpu: '100m', memory: '60Mi' } },
    args,
  };
}

/**
 * mutator/metadata/mutator.go AddContainerAttributes: each new container gets the
 * `/var/lib/dynatrace` config mount (subPath = its name) and an `--attribute-container` arg on
 * the init container. Also the reinvocation path, so containers added later get it too.
 */
function addContainerAttributes(pod: V1Pod, init: V1Container, o: Required<DynatraceOptions>): boolean {
  const containers = newContainers(pod, o, hasConfigMount);
  for (const c of containers) {
    init.args = [...(init.args ?? []), `--attribute-container=${JSON.stringify({ 'k8s.container.name': c.name })}`];
    (c.volumeMounts ??= []).push({ name: DT.configVolume, mountPath: '/var/lib/dynatrace', subPath: c.name });
  }
  return containers.length > 0;
}

/** mutator/oneagent/env.go addPreloadEnv: appended with ":" (or " " when the value has a space) unless already there. */
function addPreloadEnv(env: V1EnvVar[], installPath: string): void {
  const preload = `${installPath}/agent/lib64/liboneagentproc.so`;
  const cur = env.find((e) => e.name === 'LD_PRELOAD');
  if (!cur) env.push({ name: 'LD_PRELOAD', value: preload });
  else if (!(cur.value ?? '').includes(installPath)) cur.value = (cur.value ?? '').includes(' ') ? `${cur.value} ${preload}` : `${cur.value}:${preload}`;
}

/** mutator/oneagent/mutator.go addOneAgentToContainer: mounts (volumes.go addVolumeMounts) and env (env.go). */
function addOneAgentToContainer(c: V1Container, installPath: string, o: Required<DynatraceOptions>): void {
  (c.volumeMounts ??= []).push(
    { name: DT.binVolume, mountPath: installPath, readOnly: true },
    { name: DT.configVolume, mountPath: '/etc/ld.so.preload', subPath: 'oneagent/ld.so.preload', readOnly: true },
  );
  const env = (c.env ??= []);
  if (!env.some((e) => e.name === 'DT_DEPLOYMENT_METADATA')) {
    // pkg/controllers/dynakube/deploymentmetadata/deploymentmetadata.go AsString (version.Version is "snapshot" in dev builds).
    env.push({ name: 'DT_DEPLOYMENT_METADATA', value: `orchestration_tech=Operator-application_monitoring;script_version=snapshot;orchestrator_id=${o.kubeSystemUUID}` });
  }
  addPreloadEnv(env, installPath);
  if (!env.some((e) => e.name === 'DT_STORAGE')) env.push({ name: 'DT_STORAGE', value: '/var/lib/dynatrace/oneagent' });
}

/** mutator/oneagent/volumes.go addCSIBinVolume / addEmptyDirBinVolume; "image" per the 1.11 docs. */
function binVolume(type: 'csi' | 'ephemeral' | 'image', o: Required<DynatraceOptions>): V1Volume {
  if (type === 'csi') {
    return {
      name: DT.binVolume,
      csi: { driver: 'csi.oneagent.dynatrace.com', readOnly: true, volumeAttributes: { mode: 'app', dynakube: o.dynakube, retryTimeout: '10m0s' } },
    };
  }
  if (type === 'image') return { name: DT.binVolume, image: { reference: o.codeModulesImage, pullPolicy: 'IfNotPresent' } };
  return { name: DT.binVolume, emptyDir: {} };
}

/** mutator/oneagent/init.go mutateInitContainer + addInitArgs (applicationMonitoring: no fullstack/tenant args). */
function mutateOneAgent(pod: V1Pod, init: V1Container, installPath: string, o: Required<DynatraceOptions>): void {
  const type = volumeType(pod, o);
  pod.spec!.volumes = [...(pod.spec!.volumes ?? []), binVolume(type, o)];
  init.volumeMounts = [...(init.volumeMounts ?? []), { name: DT.binVolume, mountPath: '/mnt/bin', readOnly: type === 'csi' }];
  if (type !== 'csi') {
    // Self-extracting image: the code-modules image runs the bootstrapper itself, without the leading "bootstrap".
    init.args = (init.args ?? []).slice(1);
    init.image = o.codeModulesImage;
  }
  init.args = [...(init.args ?? []), '--source=/opt/dynatrace/oneagent', '--target=/mnt/bin', `--install-path=${installPath}`];
  for (const c of newContainers(pod, o, hasBinMount)) addOneAgentToContainer(c, installPath, o);
  const a = pod.metadata!.annotations!;
  a[DT.oneagentInjected] = 'true';
  delete a[DT.oneagentReason];
}

/** handler/injection/init.go addInitContainerToPod: init mounts, the input and config volumes, the init container last. */
function addInitContainerToPod(pod: V1Pod, init: V1Container): void {
  init.volumeMounts = [
    ...(init.volumeMounts ?? []),
    { name: DT.configVolume, mountPath: '/mnt/config' },
    { name: DT.inputVolume, mountPath: '/mnt/input', readOnly: true },
  ];
  const spec = pod.spec!;
  spec.volumes = [
    ...(spec.volumes ?? []),
    {
      name: DT.inputVolume,
      projected: {
        sources: [
          { secret: { name: 'dynatrace-bootstrapper-config', optional: false } },
          { secret: { name: 'dynatrace-bootstrapper-certs', optional: true } },
        ],
      },
    },
    { name: DT.configVolume, emptyDir: {} },
  ];
  spec.initContainers = [...(spec.initContainers ?? []), init];
}

/**
 * webhook.go Handle + handler/injection/handle.go Handle: the pod after the Dynatrace webhook,
 * or `undefined` when it answers with an empty patch (opted out, every container excluded).
 */
export function dynatraceMutate(input: V1Pod, options: DynatraceOptions = {}): V1Pod | undefined {
  const o = resolveDynatraceOptions(options);
  const a0 = input.metadata?.annotations ?? {};
  // webhook.go mutationRequired: the master switch, then "is any container left?".
  if (!dynatraceBool(a0[DT_INJECT], true)) return undefined;
  if (!(input.spec?.containers ?? []).some((c) => !containerExcluded(a0, c.name, o))) return undefined;

  const pod = structuredClone(input);
  pod.metadata ??= {};
  const a = (pod.metadata.annotations ??= {});
  // util/map GetField: absent or empty means the default.
  const installPath = a[DT.installPathAnnotation] || DT.installPath;
  const existing = (pod.spec?.initContainers ?? []).find((c) => c.name === DT.initContainer);
  if (existing) {
    // handlePodReinvocation: only containers that appeared since the first pass; nothing is
    // removed, and Handle returns before the injected annotations are touched again.
    addContainerAttributes(pod, existing, o);
    if (oneAgentEnabled(pod, o)) for (const c of newContainers(pod, o, hasBinMount)) addOneAgentToContainer(c, installPath, o);
    return pod;
  }
  const oneAgent = oneAgentEnabled(pod, o);
  if (!oneAgent && !metadataEnabled(pod, o)) {
    // handle.go: annotations.SetNotInjected(..., NoMutationNeededReason).
    a[DT.dynakubeInjected] = 'false';
    a[DT.dynakubeReason] = 'NoMutationNeeded';
    return pod;
  }
  const init = initContainerBase(pod, o);
  // "metaMutator is automatically enabled if oaMutator is enabled" (handle.go).
  init.args = [...(init.args ?? []), '--enable-attributes-dt-kubernetes=false', '--metadata-enrichment'];
  addContainerAttributes(pod, init, o);
  a[DT.metadataInjected] = 'true';
  delete a[DT.metadataReason];
  if (oneAgent) mutateOneAgent(pod, init, installPath, o);
  addInitContainerToPod(pod, init);
  a[DT.dynakubeInjected] = 'true';
  delete a[DT.dynakubeReason];
  return pod;
}
