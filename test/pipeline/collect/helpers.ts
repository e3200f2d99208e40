// Shared by the collection tests: configs in a temporary data dir, the canaries, and a scan of
// everything a store holds on disk.
import { mkdtempSync, readdirSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { type Config, parseConfig } from "../../../src/config/index.js";
import { listSegments, readSegment } from "../../../src/pipeline/collect/raw-store.js";
import type { RecordOf, SourceName } from "../../../src/pipeline/collect/records.js";
import type { ObjectStore } from "../../../src/store/index.js";

const FIXTURES = new URL("../../fixtures/collect/", import.meta.url);

export const canaryLines = (): string[] =>
  readFileSync(new URL("secrets.txt", FIXTURES), "utf8").split("\n").filter(Boolean);

export const canaryValues = (): string[] =>
  readFileSync(new URL("secret-values.txt", FIXTURES), "utf8").split("\n").filter(Boolean);

export function tempDir(prefix = "trm-collect-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A validated config with one agent "lab" whose sources are given, in a fresh data dir. */
export function labConfig(sources: Record<string, unknown>, extra: Record<string, unknown> = {}): Config {
  const config = parseConfig({
    data_dir: tempDir("trm-data-"),
    agents: { lab: { sources } },
    ...extra,
  });
  return config;
}

/** Every file under root as text, gzip members unpacked. */
export function storeText(root: string): string {
  const parts: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else {
        const buf = readFileSync(p);
        parts.push(p.endsWith(".gz") ? gunzipSync(buf).toString("utf8") : buf.toString("utf8"));
        parts.push(name);
      }
    }
  };
  walk(root);
  return parts.join("\n");
}

/** The canary values found anywhere under root (should be none). */
export function leakedCanaries(root: string): string[] {
  const text = storeText(root);
  return canaryValues().filter((v) => text.includes(v));
}

export async function readAll<S extends SourceName>(
  store: ObjectStore,
  agent: string,
  source: S,
): Promise<RecordOf<S>[]> {
  const out: RecordOf<S>[] = [];
  for (const ref of await listSegments(store, agent, source)) {
    out.push(...(await readSegment(store, { key: ref.key, source })).records);
  }
  return out;
}
