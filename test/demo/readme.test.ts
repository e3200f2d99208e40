// The README's config reference against the one schema: every key of the config file is
// documented there, and nothing documented there is a key the schema does not have.
import { existsSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import * as z from "zod";
import { ConfigSchema } from "../../src/config/schema.js";

type Json = {
  $ref?: string;
  properties?: Record<string, Json>;
  additionalProperties?: Json | boolean;
  items?: Json;
  anyOf?: Json[];
  oneOf?: Json[];
  allOf?: Json[];
};

/** Every key path of the schema: `a.b`, `<agent>` for an agent name, `[]` for a list entry. */
function schemaKeys(): Set<string> {
  const root = z.toJSONSchema(ConfigSchema, { io: "input", unrepresentable: "any" }) as Json & {
    $defs?: Record<string, Json>;
  };
  const out = new Set<string>();
  const walk = (s: Json | undefined, path: string, depth: number) => {
    if (!s || depth > 40) return;
    if (s.$ref) return walk(root.$defs?.[s.$ref.split("/").pop()!], path, depth + 1);
    for (const alt of [...(s.anyOf ?? []), ...(s.oneOf ?? []), ...(s.allOf ?? [])])
      walk(alt, path, depth + 1);
    for (const [k, v] of Object.entries(s.properties ?? {})) {
      const p = path ? `${path}.${k}` : k;
      out.add(p);
      walk(v, p, depth + 1);
    }
    // Records whose values are objects with keys of their own: agents and per-agent schedules.
    if (s.additionalProperties && typeof s.additionalProperties === "object" && path) {
      const before = out.size;
      walk(s.additionalProperties, `${path}.<agent>`, depth + 1);
      if (out.size > before) out.add(`${path}.<agent>`);
    }
    if (s.items) walk(s.items, `${path}[]`, depth + 1);
  };
  walk(root, "", 0);
  return out;
}

/** `a.{b,c}.d` -> a.b.d, a.c.d (any number of groups). */
function expand(text: string): string[] {
  const m = /\{([^{}]*)\}/.exec(text);
  if (!m) return [text];
  return m[1]
    .split(",")
    .flatMap((alt) => expand(text.slice(0, m.index) + alt + text.slice(m.index + m[0].length)));
}

function documentedKeys(readme: string, topLevel: Set<string>): Set<string> {
  const at = readme.indexOf("\n## Config reference");
  expect(at, "the README has a Config reference section").toBeGreaterThan(0);
  const section = readme.slice(at);
  const out = new Set<string>();
  for (const m of section.matchAll(/`([^`\n]+)`/g)) {
    for (const key of expand(m[1])) {
      if (!/^[a-z_]+(\[\])?(\.(<agent>|[A-Za-z_][A-Za-z0-9_]*)(\[\])?)*$/.test(key)) continue;
      if (!topLevel.has(key.split(/[.[]/)[0])) continue;
      out.add(key);
    }
  }
  return out;
}

describe("the README's config reference", () => {
  const readme = readFileSync("README.md", "utf8");
  const keys = schemaKeys();
  const top = new Set([...keys].filter((k) => !k.includes(".") && !k.includes("[")));

  it("finds the schema's keys (the walk itself works)", () => {
    expect(keys.size).toBeGreaterThan(250);
    for (const k of [
      "data_dir",
      "agents.<agent>.sources.tempo.search_window",
      "tokens[].identity",
      "store.bucket",
    ])
      expect(keys.has(k), k).toBe(true);
  });

  it("documents every key of the config file", () => {
    const documented = documentedKeys(readme, top);
    const missing = [...keys].filter((k) => !documented.has(k));
    expect(missing).toEqual([]);
  });

  it("documents no key the schema does not have", () => {
    const documented = documentedKeys(readme, top);
    const unknown = [...documented].filter((k) => !keys.has(k));
    expect(unknown).toEqual([]);
  });

  it("shows the data-flow picture it points to", () => {
    const pics = [...readme.matchAll(/!\[[^\]]*\]\(([^)]+)\)/g)].map((m) => m[1]);
    expect(pics).toContain("docs/data-flow.svg");
    for (const p of pics) expect(existsSync(p), p).toBe(true);
    expect(readFileSync("docs/data-flow.svg", "utf8")).toMatch(
      /^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/,
    );
  });
});
