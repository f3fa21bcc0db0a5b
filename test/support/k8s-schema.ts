/**
 * A strict unknown-field check for built-in objects, from @kubernetes/client-node's generated
 * model metadata (kubectl's --validate=strict needs a cluster).
 */
import * as k8s from '@kubernetes/client-node';

type Obj = Record<string, any>;
type AttrMap = Array<{ baseName: string; type: string }>;
export const models = k8s as unknown as Record<string, { attributeTypeMap?: AttrMap } | undefined>;

/** Unknown fields anywhere in a built-in object, from client-node's generated model metadata. */
export function unknownFields(value: unknown, type: string, at: string, out: string[]): string[] {
  if (value === null || value === undefined) return out;
  const arr = /^Array<(.+)>$/.exec(type);
  if (arr) {
    if (Array.isArray(value)) value.forEach((v, i) => unknownFields(v, arr[1]!, `${at}[${i}]`, out));
    return out;
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) {
    for (const [k, v] of Object.entries(value as Obj)) unknownFields(v, map[1]!, `${at}.${k}`, out);
    return out;
  }
  const attrs = models[type]?.attributeTypeMap;
  if (!attrs || typeof value !== 'object') return out; // primitives, IntOrString, quantities
  for (const [k, v] of Object.entries(value as Obj)) {
    const attr = attrs.find((a) => a.baseName === k);
    if (!attr) out.push(`${at}.${k}`);
    else unknownFields(v, attr.type, `${at}.${k}`, out);
  }
  return out;
}
