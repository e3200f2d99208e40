// Lints the Dockerfile (Docker cannot build here, and hadolint cannot be installed): the stages and
// targets, pinned bases, COPY sources that exist in a clean clone and pass .dockerignore, a
// non-root user, the packed package with production dependencies only, hadolint's rules, the
// health check and the entry point. packed-install.test.ts runs what the image contains.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import picomatch from "picomatch";
import { describe, expect, it } from "vitest";
import { parseDockerfile, type Stage } from "./dockerfile.js";
import { built, one, REPO } from "./helpers.js";

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

  it("ships the packed package with production dependencies only, tfjs-node on the gpu target only", () => {
    for (const [target, build] of [
      ["cpu", "build-cpu"],
      ["gpu", "build-gpu"],
    ]) {
      const instrs = stageByName.get(build)!.instrs;
      const all = instrs
        .filter((i) => i.op === "RUN")
        .map((i) => i.args)
        .join(" && ");
      // Compile with every dependency but the optional tfjs-node builds, then pack.
      const compile = all.indexOf("npm ci --omit=optional --ignore-scripts");
      const pack = all.indexOf("npm pack --ignore-scripts");
      expect(compile, `${build} installs from the lock file to compile`).toBeGreaterThanOrEqual(0);
      expect(pack, `${build} packs after compiling`).toBeGreaterThan(all.indexOf("npm run build"));
      // /app: the tarball unpacked, the lock file's production dependencies, the native kernels.
      const app = instrs.findIndex((i) => i.op === "WORKDIR" && i.args === "/app");
      const appRun = instrs
        .slice(app)
        .filter((i) => i.op === "RUN")
        .map((i) => i.args)
        .join(" && ");
      expect(appRun).toMatch(
        /^tar -xzf \/tmp\/trm-forge-\*\.tgz --strip-components=1\s+&& cp \/src\/package-lock\.json/,
      );
      const omits = target === "cpu" ? "--omit=dev --omit=optional" : "--omit=dev";
      expect(appRun).toContain(`npm ci ${omits} --ignore-scripts`);
      expect(appRun.indexOf("npm run install")).toBeGreaterThan(appRun.indexOf("npm ci"));
      expect(appRun).toContain("require('./build/native-status.json').built");
      if (target === "cpu") expect(all).not.toMatch(/tfjs-node/);
      else {
        expect(appRun).toContain("rm -rf node_modules/@tensorflow/tfjs-node ");
        expect(appRun).toContain("npm rebuild @tensorflow/tfjs-node-gpu");
      }
      // No install in the runtime stage: it copies /app whole from the build stage.
      const runtime = stageByName.get(target)!;
      expect(runtime.instrs.some((i) => i.op === "RUN" && /npm (ci|install)/.test(i.args))).toBe(false);
      expect(copies(runtime).filter((c) => c.from === build)).toEqual([
        { from: build, sources: ["/app"], dest: "/app", chown: null },
      ]);
    }
    // What is packed: `files` in package.json names what the runtime needs from the repository.
    expect(pkg.files).toEqual(
      expect.arrayContaining(["dist", "src/model/native", "binding.gyp", "scripts/build-native.mjs"]),
    );
  });

  // hadolint is neither in Debian nor on the npm registry as a binary, so its rules that apply
  // here are checked below (DL numbers as hadolint names them). DL3008 (apt versions pinned) is
  // left out on purpose: the pinned base images fix the Debian/Ubuntu release, and exact package
  // versions would break the build at each security update.
  it("follows hadolint's rules", () => {
    const names = stages.map((s) => s.name).filter(Boolean);
    expect(new Set(names).size, "DL3024 unique stage names").toBe(names.length);
    for (const s of stages) {
      const where = `stage ${s.name ?? s.base}`;
      expect(s.base, `${where}: DL3029 no --platform`).not.toMatch(/--platform/);
      for (const op of ["CMD", "ENTRYPOINT", "HEALTHCHECK"])
        expect(
          s.instrs.filter((i) => i.op === op).length,
          `${where}: DL4003/DL4004/DL3012 one ${op}`,
        ).toBeLessThanOrEqual(1);
      let workdir = false;
      for (const i of s.instrs) {
        const at = `${where}, line ${i.line}`;
        expect(["ADD", "MAINTAINER"], `${at}: DL3020/DL4000`).not.toContain(i.op);
        if (i.op === "WORKDIR") {
          expect(i.args, `${at}: DL3000 absolute WORKDIR`).toMatch(/^\//);
          workdir = true;
        }
        if (i.op === "COPY") {
          const c = copies({ ...s, instrs: [i] })[0]!;
          if (c.sources.length > 1) expect(c.dest, `${at}: DL3021`).toMatch(/\/$/);
          if (!c.dest.startsWith("/"))
            expect(workdir, `${at}: DL3045 relative COPY after WORKDIR`).toBe(true);
        }
        if (i.op === "ENTRYPOINT" || i.op === "CMD")
          expect(() => JSON.parse(i.args), `${at}: DL3025 exec form`).not.toThrow();
        if (i.op === "HEALTHCHECK") {
          const cmd = /\bCMD\s+(.*)$/s.exec(i.args)?.[1] ?? "";
          expect(() => JSON.parse(cmd), `${at}: HEALTHCHECK CMD in exec form`).not.toThrow();
        }
        if (i.op === "EXPOSE")
          for (const p of i.args.split(/\s+/))
            expect(Number(p.split("/")[0]), `${at}: DL3011`).toBeLessThan(65536);
        if (i.op !== "RUN") continue;
        const cmds = i.args.split(/&&|;/).map((c) => c.trim());
        for (const c of cmds) {
          expect(c, `${at}: DL3003 WORKDIR, not cd`).not.toMatch(/^cd\b/);
          expect(c, `${at}: DL3004 no sudo`).not.toMatch(/^sudo\b/);
          expect(c, `${at}: DL3027 apt-get, not apt`).not.toMatch(/^apt\s/);
          expect(c, `${at}: DL3001 no ssh, vim, shutdown...`).not.toMatch(
            /^(ssh|vim|shutdown|service|ps|free|top|kill|mount|ifconfig)\b/,
          );
          expect(c, `${at}: DL3016 npm ci from the lock file, not npm install`).not.toMatch(
            /^npm (install|i)\b/,
          );
          if (/^apt-get install/.test(c)) {
            expect(c, `${at}: DL3014 -y`).toMatch(/\s-y\b/);
            expect(c, `${at}: DL3015 --no-install-recommends`).toContain("--no-install-recommends");
          }
        }
        // DL4006: without SHELL ["/bin/bash", "-o", "pipefail", ...] a pipe hides a failure.
        expect(i.args.replace(/\|\|/g, ""), `${at}: DL4006 no pipes`).not.toMatch(/\|/);
        if (/apt-get install/.test(i.args))
          expect(i.args, `${at}: DL3009 apt lists removed in the same RUN`).toContain(
            "rm -rf /var/lib/apt/lists/*",
          );
      }
    }
    // DL3057: each runtime image has a health check.
    for (const t of ["cpu", "gpu"])
      expect(stageByName.get(t)!.instrs.some((i) => i.op === "HEALTHCHECK")).toBe(true);
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
      expect(copies(s).some((c) => c.sources.includes("/app") && c.dest === "/app")).toBe(true);
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
