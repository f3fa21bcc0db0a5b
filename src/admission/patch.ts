/**
 * The one place that builds JSON Patch operations.
 *
 * A patch the API server cannot apply fails pod creation hard, even under
 * failurePolicy: Ignore (webhook-engineering.md §1.3). So: escape keys for JSON Pointer,
 * create a missing metadata/annotations/labels map before writing into it, "add" for a new
 * key and "replace" only for one that exists, never "remove", and no op for a value that is
 * already in place (idempotence). The order is the order of the changes, which is fixed.
 */
import type { PodView } from './pod.js';
import type { Change } from '../rules/types.js';
import { escapePointer } from './annotations.js';

export type PatchOperation =
  | { op: 'add'; path: string; value: unknown }
  | { op: 'replace'; path: string; value: unknown };

/** A change with the value it replaces, for the audit log (env values are withheld). */
export interface ResolvedChange {
  readonly change: Change;
  readonly old: string | undefined;
}

type MapName = 'annotations' | 'labels';

export function buildPatch(pod: PodView, changes: readonly Change[]): PatchOperation[] {
  const ops: PatchOperation[] = [];
  const raw = pod.raw as { metadata?: Record<string, unknown> | null };
  const hasMetadata = typeof raw.metadata === 'object' && raw.metadata !== null;
  let metadataCreated = false;
  const created: Record<MapName, Record<string, string> | undefined> = { annotations: undefined, labels: undefined };

  // Last change for a key wins, so two rules writing one key still yield one op.
  const finalValue = new Map<string, Change>();
  for (const c of changes) finalValue.set(changeId(c), c);

  for (const c of finalValue.values()) {
    if (c.kind === 'env') {
      ops.push({
        op: 'replace',
        path: `/spec/${c.list}/${c.containerIndex}/env/${c.envIndex}/value`,
        value: c.value,
      });
      continue;
    }
    const mapName: MapName = c.kind === 'annotation' ? 'annotations' : 'labels';
    const current = c.kind === 'annotation' ? pod.annotations : pod.labels;
    if (current.get(c.key) === c.value) continue;
    const existingMap = hasMetadata ? (raw.metadata as Record<string, unknown>)[mapName] : undefined;
    const mapExists = typeof existingMap === 'object' && existingMap !== null;
    if (mapExists) {
      ops.push({
        op: current.has(c.key) ? 'replace' : 'add',
        path: `/metadata/${mapName}/${escapePointer(c.key)}`,
        value: c.value,
      });
      continue;
    }
    let fresh = created[mapName];
    if (!fresh) {
      if (!hasMetadata && !metadataCreated) {
        ops.push({ op: 'add', path: '/metadata', value: {} });
        metadataCreated = true;
      }
      // One op creates the map; later keys for the same map land in the same object.
      fresh = Object.create(null) as Record<string, string>;
      created[mapName] = fresh;
      ops.push({ op: 'add', path: `/metadata/${mapName}`, value: fresh });
    }
    fresh[c.key] = c.value;
  }
  // Null-prototype objects serialise like plain ones; hand out plain objects to callers.
  return ops.map((op) => (op.value !== null && typeof op.value === 'object' ? { ...op, value: { ...(op.value as object) } } : op));
}

export function resolveChanges(pod: PodView, changes: readonly Change[]): ResolvedChange[] {
  return changes.map((change) => ({
    change,
    old:
      change.kind === 'annotation' ? pod.annotations.get(change.key)
      : change.kind === 'label' ? pod.labels.get(change.key)
      : undefined,
  }));
}

function changeId(c: Change): string {
  return c.kind === 'env' ? `env\0${c.list}\0${c.containerIndex}\0${c.envIndex}` : `${c.kind}\0${c.key}`;
}

/** Human-readable "key: old → new" for logs; env values are never shown. */
export function describeChange({ change, old }: ResolvedChange): string {
  if (change.kind === 'env') return `env ${change.name} on ${change.list}[${change.containerName}] updated (value withheld)`;
  const where = change.kind === 'label' ? 'label ' : '';
  return `${where}${change.key}: ${old === undefined ? '(unset)' : JSON.stringify(old)} → ${JSON.stringify(change.value)}`;
}
