// The code repository source on a real directory tree: globs, .gitignore, size and binary skips,
// symlinks that point out of the root, the commit from .git, unchanged files, and redaction.
import { createHash } from "node:crypto";
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { headCommit, isBinary, languageOf } from "../../../src/pipeline/collect/code.js";
import { collect } from "../../../src/pipeline/collect/index.js";
import type { CodeFileRecord } from "../../../src/pipeline/collect/records.js";
import { ModelRegistry } from "../../../src/pipeline/deploy/registry.js";
import { runGc } from "../../../src/pipeline/retention/gc.js";
import { FsStore } from "../../../src/store/index.js";
import { canaryLines, labConfig, leakedCanaries, readAll, tempDir } from "./helpers.js";

const COMMIT = "3f2a9c0d1e8b7a6f5e4d3c2b1a0f9e8d7c6b5a49";

function put(root: string, rel: string, body: string | Buffer): void {
  mkdirSync(dirname(join(root, rel)), { recursive: true });
  writeFileSync(join(root, rel), body);
}

function makeRepo(): { root: string; outside: string } {
  const root = tempDir("trm-repo-");
  const outside = tempDir("trm-outside-");
  put(root, ".git/HEAD", "ref: refs/heads/main\n");
  put(root, ".git/packed-refs", `# pack-refs with: peeled fully-peeled sorted\n${COMMIT} refs/heads/main\n`);
  put(root, ".git/config", "[core]\n");
  put(root, "src/Api/OrdersController.cs", "namespace Acme.Api { public class OrdersController {} }\n");
  put(root, "src/handler.ts", "export const handler = () => 1;\n");
  put(root, "src/legacy.js", "module.exports = 1;\n");
  put(root, "cmd/main.go", "package main\nfunc main() {}\n");
  put(root, "tools/fit.py", "def fit():\n    return 1\n");
  put(root, "deploy/values.yaml", "replicas: 2\n");
  put(root, "deploy/chart/Chart.yml", "name: x\n");
  put(root, "config/app.json", '{"a":1}\n');
  put(root, "templates/mail.mustache", "<p>{{name}}</p>\n");
  put(root, "README.md", "# demo\n");
  put(root, "Dockerfile", "FROM node:20\n");
  put(root, "build/Dockerfile.ci", "FROM node:20\n"); // build/ is excluded by default
  put(root, "docker/api.dockerfile", "FROM alpine\n");
  put(root, "notes.txt", "not included\n");
  put(root, "node_modules/dep/index.js", "module.exports = 2;\n");
  put(root, "src/bin/Debug/app.json", "{}\n");
  put(root, "vendor/lib/x.go", "package x\n");
  put(root, "web/app.min.js", "var a=1;\n");
  put(root, ".gitignore", "secrets/\n*.generated.ts\n");
  put(root, "secrets/keys.json", '{"k":1}\n');
  put(root, "src/api.generated.ts", "export {}\n");
  put(root, "src/nested/.gitignore", "local.py\n");
  put(root, "src/nested/local.py", "x = 1\n");
  put(root, "src/nested/kept.py", "y = 2\n");
  put(root, "data/big.json", `[${"1,".repeat(600_000)}1]\n`);
  put(root, "data/blob.json", Buffer.from([0x7b, 0x00, 0x01, 0x7d]));
  put(root, "data/latin1.md", Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0a]));
  put(outside, "stolen.ts", "export const secret = 1;\n");
  mkdirSync(join(outside, "dir"));
  put(outside, "dir/also.ts", "export {}\n");
  symlinkSync(join(outside, "stolen.ts"), join(root, "src/stolen.ts"));
  symlinkSync(join(outside, "dir"), join(root, "src/outdir"));
  symlinkSync(join(root, "src/handler.ts"), join(root, "src/alias.ts"));
  symlinkSync(join(root, "cmd"), join(root, "cmd-link"));
  return { root, outside };
}

const sha = (s: string | Buffer) => createHash("sha256").update(s).digest("hex");

describe("code repository collection", () => {
  it("collects the included files with language, size, sha256 and commit; skips what it must", async () => {
    const { root } = makeRepo();
    const cfg = labConfig({ code: { path: root, max_file_bytes: 1_000_000 } });
    const report = await collect(cfg, { agent: "lab", now: Date.UTC(2026, 10, 2) });
    const q = report.sources.find((s) => s.source === "code")!.queries[0];
    expect(q.errors).toEqual([]);
    const recs = (await readAll(new FsStore(`${cfg.data_dir}/store`), "lab", "code")) as CodeFileRecord[];
    const paths = recs.map((r) => r.path).sort();
    expect(paths).toEqual(
      [
        "Dockerfile",
        "README.md",
        "cmd/main.go",
        "config/app.json",
        "deploy/chart/Chart.yml",
        "deploy/values.yaml",
        "docker/api.dockerfile",
        "src/Api/OrdersController.cs",
        "src/alias.ts",
        "src/handler.ts",
        "src/legacy.js",
        "src/nested/kept.py",
        "templates/mail.mustache",
        "tools/fit.py",
      ].sort(),
    );
    const byPath = Object.fromEntries(recs.map((r) => [r.path, r]));
    const cs = "namespace Acme.Api { public class OrdersController {} }\n";
    expect(byPath["src/Api/OrdersController.cs"]).toMatchObject({
      language: "csharp",
      size: Buffer.byteLength(cs),
      sha256: sha(cs),
      commit: COMMIT,
      content: cs,
      collected_at: "2026-11-02T00:00:00.000Z",
    });
    expect(byPath.Dockerfile.language).toBe("dockerfile");
    expect(byPath["docker/api.dockerfile"].language).toBe("dockerfile");
    expect(byPath["templates/mail.mustache"].language).toBe("mustache");
    expect(byPath["deploy/chart/Chart.yml"].language).toBe("yaml");
    expect(q.skipped).toMatchObject({
      too_large: 1,
      binary: 2,
      gitignored: 2, // src/api.generated.ts, src/nested/local.py; the ignored secrets/ directory is not walked
      symlinks_outside_root: 2,
      symlinked_dirs: 1,
    });
    expect(q.segments).toHaveLength(1);
    expect(q.segments[0]).toMatch(/^raw\/lab\/code\/2026-11-02\/repo-[0-9a-f]{16}\.jsonl\.gz$/);
  });

  it("stores a file again only when its sha256 changed, and notes removed files", async () => {
    const { root } = makeRepo();
    const cfg = labConfig({ code: { path: root } });
    const store = new FsStore(`${cfg.data_dir}/store`);
    await collect(cfg, { agent: "lab" });
    const second = await collect(cfg, { agent: "lab" });
    const q2 = second.sources.find((s) => s.source === "code")!.queries[0];
    expect(q2.records).toBe(0);
    expect(q2.segments).toEqual([]);
    expect(q2.skipped.unchanged).toBe(14);
    put(root, "src/handler.ts", "export const handler = () => 2;\n");
    rmSync(join(root, "README.md"));
    const third = await collect(cfg, { agent: "lab" });
    const q3 = third.sources.find((s) => s.source === "code")!.queries[0];
    expect(q3.records).toBe(2); // handler.ts and the alias that points to it
    expect(q3.skipped.removed_since_last_run).toBe(1);
    const all = (await readAll(store, "lab", "code")) as CodeFileRecord[];
    expect(all.filter((r) => r.path === "src/handler.ts").map((r) => r.content)).toEqual(
      expect.arrayContaining(["export const handler = () => 1;\n", "export const handler = () => 2;\n"]),
    );
  });

  it("stores the whole tree again every half dataset window, so gc never takes a file's only copy", async () => {
    const { root } = makeRepo();
    const cfg = labConfig({ code: { path: root } }); // dataset.window: 30 days
    const store = new FsStore(`${cfg.data_dir}/store`);
    const DAY = 86_400_000;
    const T0 = Date.parse("2026-11-02T03:00:00Z");
    const code = async (days: number) =>
      (await collect(cfg, { agent: "lab", now: T0 + days * DAY })).sources.find((s) => s.source === "code")!
        .queries[0];
    expect((await code(0)).records).toBe(14);
    const unchanged = await code(14);
    expect(unchanged.records).toBe(0);
    expect(unchanged.skipped.unchanged).toBe(14);
    expect((await code(15)).records).toBe(14); // the last full snapshot is 15 days old
    expect((await code(16)).records).toBe(0);
    // 45 days on, gc's age rule (the window and 14 days) takes the first snapshot's day...
    const gc = await runGc({
      store,
      registry: new ModelRegistry(store, { dataDir: cfg.data_dir }),
      config: cfg,
      agent: "lab",
      now: new Date(T0 + 45 * DAY),
      actor: "test",
    });
    expect(gc.items.map((i) => i.id)).toContain("code/2026-11-02");
    // ...and every file of the tree still has a copy, from the second snapshot.
    const left = (await readAll(store, "lab", "code")) as CodeFileRecord[];
    expect(new Set(left.map((r) => r.path)).size).toBe(14);
    expect(new Set(left.map((r) => r.collected_at))).toEqual(new Set(["2026-11-17T03:00:00.000Z"]));
  });

  it("redacts secrets in files before storing them: canaries, a Kubernetes Secret, a PEM key", async () => {
    const root = tempDir("trm-repo-");
    put(root, "config/settings.yaml", `${canaryLines().join("\n")}\n`);
    put(
      root,
      "deploy/secret.yaml",
      "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ntype: Opaque\ndata:\n  username: bm90aWZp\n  password: NjBqYlhqSWFudHRGYXltYkE1\nstringData:\n  token: |\n    7ozHhNNbIA3kGzLtr9MWixrZ19ksQv80\n---\napiVersion: v1\nkind: ConfigMap\ndata:\n  level: info\n",
    );
    put(root, "src/keys.ts", `export const key = "${canaryLines().slice(11).join("\\n")}";\n`);
    const cfg = labConfig({ code: { path: root } });
    const report = await collect(cfg, { agent: "lab" });
    const q = report.sources.find((s) => s.source === "code")!.queries[0];
    expect(q.records).toBe(3);
    expect(leakedCanaries(cfg.data_dir)).toEqual([]);
    const recs = (await readAll(new FsStore(`${cfg.data_dir}/store`), "lab", "code")) as CodeFileRecord[];
    const secret = recs.find((r) => r.path === "deploy/secret.yaml")!;
    expect(secret.content).not.toContain("NjBqYlhqSWFudHRGYXltYkE1");
    expect(secret.content).toContain("password: <redacted:k8s_secret>");
    expect(secret.content).toContain("level: info"); // the ConfigMap is left alone
    expect(secret.redactions).toBe(3);
    expect(recs.find((r) => r.path === "src/keys.ts")!.content).toContain("<redacted:private_key>");
    expect(q.redactions.private_key).toBeGreaterThanOrEqual(2);
  });

  it("reports an unreadable repository as a failed source without stopping the others", async () => {
    const cfg = labConfig({ code: { path: "/nonexistent/repo" } });
    const report = await collect(cfg, { agent: "lab" });
    const q = report.sources.find((s) => s.source === "code")!.queries[0];
    expect(q.status).toBe("failed");
    expect(q.errors[0]).toMatch(
      /^code query "repo": repository \/nonexistent\/repo is not readable \(ENOENT\)/,
    );
  });

  it("reads the commit from loose refs, packed refs and a detached HEAD", async () => {
    const a = tempDir();
    put(a, ".git/HEAD", "ref: refs/heads/dev\n");
    put(a, ".git/refs/heads/dev", `${COMMIT}\n`);
    expect(await headCommit(a)).toBe(COMMIT);
    const b = tempDir();
    put(b, ".git/HEAD", `${COMMIT}\n`);
    expect(await headCommit(b)).toBe(COMMIT);
    expect(await headCommit(tempDir())).toBeNull();
  });

  it("tells binary from text and names languages", () => {
    expect(isBinary(Buffer.from("hello\n"))).toBe(false);
    expect(isBinary(Buffer.from("caf\u00e9\n"))).toBe(false);
    expect(isBinary(Buffer.from([0x68, 0x00]))).toBe(true);
    expect(isBinary(Buffer.from([0x63, 0xe9, 0x0a]))).toBe(true);
    // A multi-byte character cut by the 8 KiB window is still text.
    expect(isBinary(Buffer.concat([Buffer.alloc(8191, 0x61), Buffer.from("é")]))).toBe(false);
    expect(languageOf("a/b/c.mts")).toBe("typescript");
    expect(languageOf("Dockerfile.prod")).toBe("dockerfile");
    expect(languageOf("x.txt")).toBe("text");
  });
});
