// Unknown-field check for Kubernetes objects, like `kubectl apply --validate=strict`: the
// kubernetes-models schemas allow extra keys, so a typo ("readinessprobe") would pass them. The
// field lists come from @kubernetes/client-node's generated models.
import * as k8s from "@kubernetes/client-node";

type AttributeMap = { name: string; baseName: string; type: string }[];
type ModelClass = { getAttributeTypeMap(): AttributeMap };

const PRIMITIVE = new Set([
  "string",
  "number",
  "boolean",
  "Date",
  "any",
  "object",
  "IntOrString",
  "RuntimeRawExtension",
]);

/** Returns "path: unknown field x" for every key the model does not define; [] when clean. */
export function unknownFields(value: unknown, typeName: string, path = ""): string[] {
  if (value === null || value === undefined) return [];
  const arr = /^Array<(.+)>$/.exec(typeName);
  if (arr) {
    if (!Array.isArray(value)) return [`${path}: expected a list`];
    return value.flatMap((v, i) => unknownFields(v, arr[1], `${path}[${i}]`));
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(typeName);
  if (map) {
    if (typeof value !== "object" || Array.isArray(value)) return [`${path}: expected a map`];
    return Object.entries(value as object).flatMap(([k, v]) => unknownFields(v, map[1], `${path}.${k}`));
  }
  if (PRIMITIVE.has(typeName)) return [];
  const model = (k8s as unknown as Record<string, ModelClass | undefined>)[typeName];
  if (!model || typeof model.getAttributeTypeMap !== "function") return [];
  if (typeof value !== "object" || Array.isArray(value)) return [`${path}: expected an object (${typeName})`];
  const attrs = model.getAttributeTypeMap();
  const out: string[] = [];
  for (const [key, v] of Object.entries(value as object)) {
    const attr = attrs.find((a) => a.baseName === key);
    if (!attr) out.push(`${path || "."}: unknown field "${key}" in ${typeName}`);
    else out.push(...unknownFields(v, attr.type, `${path}.${key}`));
  }
  return out;
}

/** The client-node model of a built-in kind, e.g. apps/v1 Deployment -> V1Deployment. */
export function modelName(apiVersion: string, kind: string): string {
  const version = apiVersion.split("/").at(-1)!;
  return `${version[0].toUpperCase()}${version.slice(1)}${kind}`;
}
