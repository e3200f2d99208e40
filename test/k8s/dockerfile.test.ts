// Lints the Dockerfile (Docker cannot build here, and Debian has no hadolint): the stages and
// targets, pinned bases, COPY sources that exist in a clean clone and pass .dockerignore, a
// non-root user, production dependencies only, the health check and the entry point.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import picomatch from "picomatch";
import { describe, expect, it } from "vitest";
import { built, one, REPO } from "./helpers.js";

interface Instr {
  op: string;
  args: string;
  line: number;
}
interface Stage {
  base: string;
  name: string | null;
  instrs: Instr[];
}

/** Instructions with continuation lines joined and comments dropped, split into stages. */
function parseDockerfile(text: string): { args: Record<string, string>; stages: Stage[] } {
  const instrs: Instr[] = [];
  let buf = "";
  let start = 0;
  text.split("\n").forEach((raw, i) => {
    const line = raw.trimEnd();
    if (!buf && (line.trim().startsWith("#") || !line.trim())) return;
    if (buf && line.trim().startsWith("#")) return;
    if (!buf) start = i + 1;
    if (line.endsWith("\\")) {
      buf += `${line.slice(0, -1)} `;
      return;
    }
    buf += line;
    const m = /^\s*([A-Za-z]+)\s+(.*)$/s.exec(buf);
    if (!m) throw new Error(`Dockerfile line ${start}: cannot parse "${buf}"`);
    instrs.push({ op: m[1].toUpperCase(), args: m[2].trim(), line: start });
    buf = "";
  });
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const ins of instrs) {
    if (ins.op === "ARG" && !stages.length) {
      const [k, v] = ins.args.split("=");
      args[k] = v ?? "";
    } else if (ins.op === "FROM") {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      if (!m) throw new Error(`FROM on line ${ins.line}`);
      const base = m[1].replace(/\$\{(\w+)\}/g, (_, k) => args[k] ?? "");
      stages.push({ base, name: m[2] ?? null, instrs: [] });
    } else {
      if (!stages.length) throw new Error(`${ins.op} before FROM on line ${ins.line}`);
      stages.at(-1)!.instrs.push(ins);
    }
  }
  return { args, stages };
}

/** .dockerignore: patterns from the context root, `**`, `!` exceptions; a match excludes a whole tree. */
function dockerignore(text: string): (path: string) => boolean {
  const rules = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"))
    .map((l) => {
      const negate = l.startsWith("!");
      const pattern = (negate ? l.slice(1) : l).replace(/^\/+/, "").replace(/\/+$/, "");
      return { negate, match: picomatch(pattern, { dot: true }) };
    });
  return (path: string) => {
    const parts = path.split("/");
    let excluded = false;
    for (let i = 1; i <= parts.length; i++) {
      const prefix = parts.slice(0, i).join("/");
      for (const r of rules) if (r.match(prefix)) excluded = !r.negate;
    }
    return excluded;
  };
}

const text = readFileSync(join(REPO, "Dockerfile"), "utf8");
const { stages } = parseDockerfile(text);
const pkg = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8"));
const tracked = new Set(
  execFileSync("git", ["ls-files"], { cwd: REPO, encoding: "utf8" }).split("\n").filter(Boolean),
);
const stageByName = new Map(stages.filter((s) => s.name).map((s) => [s.name!, s]));

/** The instructions in effect for a target: its stage and the stages it is FROM. */
function chain(name: string): Stage[] {
  const s = stageByName.get(name);
  if (!s) throw new Error(`no stage ${name}`);
  return stageByName.has(s.base) ? [...chain(s.base), s] : [s];
}

function copies(
  stage: Stage,
): { from: string | null; sources: string[]; dest: string; chown: string | null }[] {
  return stage.instrs
    .filter((i) => i.op === "COPY")
    .map((i) => {
      const words = i.args.split(/\s+/);
      const flags = words.filter((w) => w.startsWith("--"));
      const paths = words.filter((w) => !w.startsWith("--"));
      const flag = (n: string) => flags.find((f) => f.startsWith(`--${n}=`))?.split("=")[1] ?? null;
      return { from: flag("from"), sources: paths.slice(0, -1), dest: paths.at(-1)!, chown: flag("chown") };
    });
}

describe("Dockerfile", () => {
  it("has the cpu and gpu targets on the right bases, every base pinned", () => {
    expect(stageByName.has("cpu")).toBe(true);
    expect(stageByName.has("gpu")).toBe(true);
    for (const s of stages) {
      if (stageByName.has(s.base)) continue;
      expect(s.base, `FROM ${s.base}`).toMatch(/^[\w./-]+:[\w.-]+$/);
      expect(s.base.split(":")[1]).not.toMatch(/latest/);
    }
    // Node 22 LTS slim for cpu; the CUDA 11.x + cuDNN 8 runtime for gpu, as tfjs-node-gpu 4.22 needs.
    expect(chain("cpu")[0].base).toMatch(/^node:22\.\d+\.\d+-bookworm-slim$/);
    expect(chain("gpu")[0].base).toMatch(/^nvidia\/cuda:11\.\d+\.\d+-cudnn8-runtime-ubuntu\d\d\.\d\d$/);
    expect(pkg.optionalDependencies["@tensorflow/tfjs-node-gpu"]).toMatch(/^\^?4\.22\./);
    // The gpu image gets Node 22 from the pinned node stage.
    const gpuCopies = copies(stageByName.get("gpu")!);
    expect(gpuCopies.some((c) => c.from === "node" && c.sources.includes("/usr/local/bin/node"))).toBe(true);
    expect(stageByName.get("node")!.base).toMatch(/^node:22\./);
    // The native kernels build against OpenBLAS; the runtime has the OpenBLAS library.
    for (const build of ["build-cpu", "build-gpu"]) {
      expect(
        stageByName.get(build)!.instrs.some((i) => i.op === "RUN" && /libopenblas-dev/.test(i.args)),
      ).toBe(true);
    }
    for (const t of ["cpu", "gpu"])
      expect(stageByName.get(t)!.instrs.some((i) => i.op === "RUN" && /libopenblas0/.test(i.args))).toBe(
        true,
      );
  });

  it("copies only sources that a clean clone has and .dockerignore lets through", () => {
    const ignored = dockerignore(readFileSync(join(REPO, ".dockerignore"), "utf8"));
    const checked: string[] = [];
    for (const s of stages) {
      for (const c of copies(s)) {
        if (c.from) {
          expect(stageByName.has(c.from), `COPY --from=${c.from}`).toBe(true);
          expect(stages.indexOf(stageByName.get(c.from)!)).toBeLessThan(stages.indexOf(s));
          continue;
        }
        for (const src of c.sources) {
          const rel = src.replace(/^\.\//, "").replace(/\/$/, "");
          expect(existsSync(join(REPO, rel)), `COPY ${src}: exists`).toBe(true);
          const files = [...tracked].filter((f) => f === rel || f.startsWith(`${rel}/`));
          expect(files.length, `COPY ${src}: tracked by git`).toBeGreaterThan(0);
          for (const f of files) expect(ignored(f), `${f} excluded by .dockerignore`).toBe(false);
          checked.push(rel);
        }
      }
    }
    // What the build needs: the lock file, TypeScript sources, the native kernels and their build script.
    expect(checked).toEqual(
      expect.arrayContaining([
        "package.json",
        "package-lock.json",
        "tsconfig.json",
        "binding.gyp",
        "scripts",
        "src",
      ]),
    );
    expect(tracked.has("scripts/build-native.mjs")).toBe(true);
    expect([...tracked].some((f) => f.startsWith("src/model/native/") && f.endsWith(".cc"))).toBe(true);
    // And what it must not send: dependencies, build outputs, tests, git.
    for (const p of ["node_modules/zod/package.json", "dist/cli.js", "test/k8s/kustomize.ts", ".git/HEAD"])
      expect(ignored(p), p).toBe(true);
  });

  it("runs as a non-root user, the one the manifests use, with the code read-only to it", () => {
    const runAsUser = one(built("overlays/cpu"), "Deployment").spec.template.spec.securityContext.runAsUser;
    for (const target of ["cpu", "gpu"]) {
      const users = chain(target)
        .flatMap((s) => s.instrs)
        .filter((i) => i.op === "USER");
      expect(users.length, `${target} sets USER`).toBeGreaterThan(0);
      const user = users.at(-1)!.args;
      expect(user).not.toMatch(/^(root|0)(:|$)/);
      expect(Number(user.split(":")[0])).toBe(runAsUser);
      const stage = stageByName.get(target)!;
      // Nothing copied into the image is owned by the runtime user; only /data is theirs.
      for (const c of copies(stage)) expect(c.chown, `COPY ${c.sources} --chown`).toBeNull();
      expect(stage.instrs.find((i) => i.op === "WORKDIR" && i.args === "/data")).toBeDefined();
      expect(stage.instrs.some((i) => i.op === "RUN" && /chown 10001:10001 \/data/.test(i.args))).toBe(true);
    }
  });

  it("ships production dependencies only", () => {
    for (const [target, build] of [
      ["cpu", "build-cpu"],
      ["gpu", "build-gpu"],
    ]) {
      const runs = stageByName
        .get(build)!
        .instrs.filter((i) => i.op === "RUN")
        .map((i) => i.args);
      const all = runs.join(" && ");
      const ci = all.indexOf("npm ci");
      const prune = all.indexOf("npm prune --omit=dev");
      expect(ci, `${build} installs from the lock file`).toBeGreaterThanOrEqual(0);
      expect(prune, `${build} prunes dev dependencies after installing`).toBeGreaterThan(ci);
      // No install in the runtime stage, and node_modules comes from the pruned build stage.
      const runtime = stageByName.get(target)!;
      expect(runtime.instrs.some((i) => i.op === "RUN" && /npm (ci|install)/.test(i.args))).toBe(false);
      expect(copies(runtime).find((c) => c.sources.includes("/app/node_modules"))?.from).toBe(build);
      // Each image keeps the tfjs-node build for its hardware and drops the other.
      const other = target === "cpu" ? "@tensorflow/tfjs-node-gpu" : "@tensorflow/tfjs-node ";
      expect(`${all} `).toContain(`rm -rf node_modules/${other.trim()} `);
    }
  });

  it("starts `trm-forge serve --http` through the package's bin and checks /healthz", () => {
    const [bin, target] = Object.entries(pkg.bin as Record<string, string>)[0];
    expect(
      readFileSync(join(REPO, "src", target.replace(/^dist\//, "").replace(/\.js$/, ".ts")), "utf8"),
    ).toMatch(/^#!\/usr\/bin\/env node/);
    for (const t of ["cpu", "gpu"]) {
      const s = stageByName.get(t)!;
      const entry = JSON.parse(s.instrs.find((i) => i.op === "ENTRYPOINT")!.args);
      const cmd = JSON.parse(s.instrs.find((i) => i.op === "CMD")!.args);
      expect(entry).toEqual([bin]);
      expect(cmd.slice(0, 2)).toEqual(["serve", "--http"]);
      // The bin is on PATH and points at package.json's bin target.
      expect(
        s.instrs.some((i) => i.op === "RUN" && i.args.includes(`ln -s /app/${target} /usr/local/bin/${bin}`)),
      ).toBe(true);
      expect(copies(s).some((c) => c.sources.includes("/app/dist"))).toBe(true);
      expect(copies(s).some((c) => c.sources.includes("/app/package.json"))).toBe(true);
      // The health check probes /healthz on the port the server is started on.
      const port = cmd[cmd.indexOf("--port") + 1];
      const hc = s.instrs.find((i) => i.op === "HEALTHCHECK")!.args;
      expect(hc).toContain(`http://127.0.0.1:${port}/healthz`);
      expect(s.instrs.find((i) => i.op === "EXPOSE")!.args).toBe(port);
      const deploymentPort = one(built("overlays/cpu"), "Deployment").spec.template.spec.containers[0]
        .ports[0].containerPort;
      expect(Number(port)).toBe(deploymentPort);
    }
  });
});
