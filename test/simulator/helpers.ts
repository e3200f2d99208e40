// Shared by the simulator tests: HTTP helpers, the recorded samples, and a structural comparison
// of a response with a sample (same keys, same JSON types, element by element).
import { readFileSync } from "node:fs";
import { join } from "node:path";

export const END = "2026-11-30T00:00:00Z";
export const END_MS = Date.parse(END);
export const END_S = END_MS / 1000;
export const DAY_S = 86_400;

export function fixture(name: string): unknown {
  return JSON.parse(readFileSync(join(__dirname, "..", "fixtures", "simulator", name), "utf8"));
}

export interface Got {
  status: number;
  type: string;
  text: string;
  json: any;
}

export async function get(
  base: string,
  path: string,
  params: Record<string, string | number> = {},
): Promise<Got> {
  const qs = new URLSearchParams(
    Object.entries(params).map(([k, v]): [string, string] => [k, String(v)]),
  ).toString();
  const res = await fetch(`${base}${path}${qs ? `?${qs}` : ""}`);
  const text = await res.text();
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  return { status: res.status, type: res.headers.get("content-type") ?? "", text, json };
}

/** Loki nanosecond time parameter for a unix-seconds time. */
export function ns(seconds: number): string {
  return `${BigInt(Math.round(seconds * 1000)) * 1_000_000n}`;
}

function kind(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v;
}

export interface ShapeOptions {
  /** Paths whose value is a label map: any keys, string values (e.g. "$.data.result[].metric"). */
  maps?: string[];
  /** Paths of objects that may carry keys the sample lacks (e.g. a stats object). */
  open?: string[];
  /** Paths of objects whose sample keys are alternatives, none required (e.g. an OTLP AnyValue). */
  optional?: string[];
}

/** The template an array's sample elements share: keys in every element are required. */
function mergeObjects(items: Record<string, unknown>[]): {
  template: Record<string, unknown>;
  required: Set<string>;
} {
  const template: Record<string, unknown> = {};
  const counts = new Map<string, number>();
  for (const it of items) {
    for (const [k, v] of Object.entries(it)) {
      if (!(k in template)) template[k] = v;
      counts.set(k, (counts.get(k) ?? 0) + 1);
    }
  }
  const required = new Set([...counts].filter(([, n]) => n === items.length).map(([k]) => k));
  return { template, required };
}

/**
 * Where `actual` differs in structure from `sample`: a missing key, an unexpected key, or a value
 * of another JSON type. Arrays are compared element by element against the sample's elements
 * (tuples position by position). An empty list means the shapes agree.
 */
export function shapeProblems(
  actual: unknown,
  sample: unknown,
  opts: ShapeOptions = {},
  path = "$",
): string[] {
  const problems: string[] = [];
  if (opts.maps?.includes(path)) {
    if (kind(actual) !== "object") return [`${path}: expected a label map, got ${kind(actual)}`];
    for (const [k, v] of Object.entries(actual as object)) {
      if (typeof v !== "string") problems.push(`${path}.${k}: label value is ${kind(v)}, not string`);
    }
    return problems;
  }
  if (kind(actual) !== kind(sample)) return [`${path}: expected ${kind(sample)}, got ${kind(actual)}`];
  if (Array.isArray(sample)) {
    const act = actual as unknown[];
    if (sample.length === 0) return problems;
    if (sample.every((e) => Array.isArray(e))) {
      const tuple = sample[0] as unknown[];
      act.forEach((e, i) => {
        if (!Array.isArray(e) || e.length < tuple.length) {
          problems.push(`${path}[${i}]: expected a ${tuple.length}-tuple`);
          return;
        }
        for (let j = 0; j < tuple.length; j++)
          problems.push(...shapeProblems(e[j], tuple[j], opts, `${path}[][${j}]`));
      });
      return problems;
    }
    if (sample.every((e) => kind(e) === "object")) {
      const { template, required } = mergeObjects(sample as Record<string, unknown>[]);
      for (const e of act) problems.push(...objectProblems(e, template, required, opts, `${path}[]`));
      return problems;
    }
    for (const e of act) problems.push(...shapeProblems(e, sample[0], opts, `${path}[]`));
    return problems;
  }
  if (kind(sample) === "object") {
    const s = sample as Record<string, unknown>;
    return objectProblems(actual, s, new Set(Object.keys(s)), opts, path);
  }
  return problems;
}

function objectProblems(
  actual: unknown,
  template: Record<string, unknown>,
  required: Set<string>,
  opts: ShapeOptions,
  path: string,
): string[] {
  if (kind(actual) !== "object") return [`${path}: expected object, got ${kind(actual)}`];
  const a = actual as Record<string, unknown>;
  const problems: string[] = [];
  if (!opts.optional?.includes(path))
    for (const k of required) if (!(k in a)) problems.push(`${path}.${k}: missing`);
  for (const [k, v] of Object.entries(a)) {
    if (!(k in template)) {
      if (!opts.open?.includes(path)) problems.push(`${path}.${k}: not in the sample`);
      continue;
    }
    problems.push(...shapeProblems(v, template[k], opts, `${path}.${k}`));
  }
  return problems;
}
