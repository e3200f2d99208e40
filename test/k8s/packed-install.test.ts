// What the cpu image contains, built and run without Docker. The Dockerfile's own steps for /app
// (npm pack; the tarball unpacked with the lock file; production dependencies without the
// optional tfjs-node builds; the native kernels built in the build stage) run on the Node version
// of its base image, then a copy of /app (the runtime stage's COPY) is started as the image starts
// it: ENTRYPOINT and the Deployment's args, its env, and the cpu overlay's config with the cluster's
// services swapped for local ones (the S3 endpoint for MinIO, the simulator for the sources).
// This catches files missing from package.json `files`, dev-only imports at run time, a native
// build the runtime would have to compile, and a backend other than the tested native kernels.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml, stringify } from "yaml";
import { agentConfigFor, createSimulator, type Simulator } from "../../src/simulator/index.js";
import { call, connectHttp, textOf } from "../server/helpers.js";
import { S3Endpoint } from "../store/s3-endpoint.js";
import { parseDockerfile, stage } from "./dockerfile.js";
import { built, one, REPO } from "./helpers.js";

const { args: dockerArgs, stages } = parseDockerfile(readFileSync(join(REPO, "Dockerfile"), "utf8"));
const NODE_VERSION = dockerArgs.NODE_VERSION!;
const MINIO = { MINIO_ACCESS_KEY: "packed-access", MINIO_SECRET_KEY: "packed-secret-key" };
const TOKEN = "packed-install-token-0123456789";

/** A stage's RUN commands in `WORKDIR dir`, up to the next WORKDIR. */
function runsIn(name: string, dir: string): string[] {
  const instrs = stage(stages, name).instrs;
  const at = instrs.findIndex((i) => i.op === "WORKDIR" && i.args === dir);
  expect(at, `${name} has WORKDIR ${dir}`).toBeGreaterThanOrEqual(0);
  const next = instrs.findIndex((i, n) => n > at && i.op === "WORKDIR");
  return instrs
    .slice(at + 1, next < 0 ? undefined : next)
    .filter((i) => i.op === "RUN")
    .map((i) => i.args);
}

function sh(command: string, cwd: string, env: NodeJS.ProcessEnv): string {
  try {
    return execFileSync("sh", ["-c", command], {
      cwd,
      env,
      encoding: "utf8",
      stdio: "pipe",
      timeout: 600_000,
    });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(
      `${command}\nfailed: ${e.message}\n${(e.stdout ?? "").slice(-2000)}\n${(e.stderr ?? "").slice(-4000)}`,
    );
  }
}

/** This environment without the npm_* variables `npm test` sets (prefix, node-gyp, package). */
function npmFree(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));
}

/**
 * The bin directory of Node NODE_VERSION: this process's when it is that version, else the
 * official build the npm registry carries as node-<platform>-<arch> (kept in the temp dir).
 */
function nodeBin(): string {
  if (process.version === `v${NODE_VERSION}`) return dirname(process.execPath);
  const pkg = `node-${process.platform}-${process.arch}`;
  const dir = join(tmpdir(), `trm-forge-test-${pkg}-${NODE_VERSION}`);
  const bin = join(dir, "node_modules", pkg, "bin");
  if (!existsSync(join(bin, "node"))) {
    const tmp = mkdtempSync(`${dir}.tmp-`);
    sh(`npm install --no-save --no-audit --no-fund --prefix . ${pkg}@${NODE_VERSION}`, tmp, npmFree());
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  }
  expect(execFileSync(join(bin, "node"), ["--version"], { encoding: "utf8" }).trim()).toBe(
    `v${NODE_VERSION}`,
  );
  return bin;
}

describe("the cpu image's /app, built from the packed package and run as the image runs it", () => {
  const work = mkdtempSync(join(tmpdir(), "trm-packed-"));
  const s3 = new S3Endpoint();
  let sim: Simulator;
  let server: ChildProcess | null = null;
  let serverLog = "";
  let env: NodeJS.ProcessEnv = {};
  let client: Client | null = null;

  beforeAll(async () => {
    await s3.start();
    sim = await createSimulator({ seed: 7, days: 2, logsPerDay: 200, tracesPerDay: 80 });
  });
  afterAll(async () => {
    await client?.close().catch(() => undefined);
    if (server && server.exitCode === null) {
      server.kill("SIGKILL");
      await new Promise((r) => server!.once("exit", r));
    }
    await sim?.close();
    await s3.close();
    rmSync(work, { recursive: true, force: true });
  });

  it("installs from the tarball on the base image's Node, the native kernels built, no tfjs-node", {
    timeout: 900_000,
  }, () => {
    expect(existsSync(join(REPO, "dist", "cli.js")), "dist/ is built (npm test's pretest)").toBe(true);
    const bin = nodeBin();
    const buildEnv = { ...npmFree(), PATH: `${bin}${delimiter}${process.env.PATH}` };
    // The build stage: `npm pack` of the compiled tree, then the RUN after `WORKDIR /app`, with
    // /tmp (where the tarball went) and /src (the checkout) pointing here.
    const packDir = join(work, "pack");
    const appBuild = join(work, "build-app");
    mkdirSync(packDir);
    mkdirSync(appBuild);
    const [pack, app] = [runsIn("build-cpu", "/src").at(-1)!, runsIn("build-cpu", "/app")];
    expect(pack).toMatch(/npm pack --ignore-scripts --pack-destination \/tmp$/);
    sh(pack.replace(/^.*&& (npm pack .*)\/tmp$/, `$1${packDir}`), REPO, buildEnv);
    expect(readdirSync(packDir)).toEqual([
      `trm-forge-${JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")).version}.tgz`,
    ]);
    expect(app.length).toBe(1);
    const steps = app[0]!.replaceAll("/tmp/", `${packDir}/`).replaceAll("/src/", `${REPO}/`);
    expect(steps).not.toBe(app[0]);
    sh(steps, appBuild, buildEnv);
    expect(JSON.parse(readFileSync(join(appBuild, "build", "native-status.json"), "utf8"))).toMatchObject({
      built: true,
    });
    expect(existsSync(join(appBuild, "node_modules", "@tensorflow", "tfjs-node"))).toBe(false);
    expect(existsSync(join(appBuild, "node_modules", "vitest"))).toBe(false);
    expect(existsSync(join(appBuild, "src", "server")), "only `files` is packed").toBe(false);

    // The runtime stage: /app copied, the build stage gone; the bin linked as the image links it.
    const appDir = join(work, "app");
    cpSync(appBuild, appDir, { recursive: true, verbatimSymlinks: true });
    rmSync(appBuild, { recursive: true, force: true });
    const runtime = stage(stages, "cpu");
    const link = runtime.instrs
      .filter((i) => i.op === "RUN")
      .map((i) => /ln -s \/app\/(\S+) \/usr\/local\/bin\/(\S+)/.exec(i.args))
      .find(Boolean)!;
    const binDir = join(work, "bin");
    mkdirSync(binDir);
    symlinkSync(join(appDir, link[1]!), join(binDir, link[2]!));
    const data = join(work, "data");
    mkdirSync(data);
    // The image's ENV (HOME is /data), and nothing of this process's environment but PATH.
    const imageEnv = Object.fromEntries(
      runtime.instrs
        .filter((i) => i.op === "ENV")
        .flatMap((i) => i.args.split(/\s+/).map((kv) => kv.split("=") as [string, string])),
    );
    expect(imageEnv.HOME).toBe("/data");
    env = { ...imageEnv, HOME: data, PATH: [binDir, bin, "/usr/bin", "/bin"].join(delimiter), ...MINIO };
  });

  it("serves with the cpu overlay's config on the entry point, doctor names the native kernels", async () => {
    expect(env.PATH, "the install above passed").toBeDefined();
    const objects = built("overlays/cpu");
    const container = one(objects, "Deployment", "trm-forge").spec.template.spec.containers[0];
    const cm = one(
      objects.filter((o) => o.metadata.name.startsWith("trm-forge-config")),
      "ConfigMap",
    );
    const shipped = parseYaml(cm.data["config.yaml"]);
    // The cluster's services become local ones; everything else is as shipped (preset included).
    const tokenDir = join(work, "tokens");
    mkdirSync(tokenDir);
    const config = {
      ...shipped,
      data_dir: join(work, "data"),
      store: { ...shipped.store, endpoint: "127.0.0.1", port: s3.port },
      agents: Object.fromEntries(
        Object.keys(shipped.agents).map((a) => [a, agentConfigFor(sim.url, { lookback: "2d" })]),
      ),
      ollama: { enabled: false },
      tokens: shipped.tokens.map((t: any) => {
        const file = join(tokenDir, t.identity);
        writeFileSync(file, `${TOKEN}-${t.identity}\n`, { mode: 0o400 });
        return { ...t, token: { file } };
      }),
      // The test starts the training itself, and a tiny one: the preset is the shipped one.
      schedule: { ...shipped.schedule, enabled: false },
      dataset: {
        ...shipped.dataset,
        window: "2d",
        seq_len: 64,
        tasks: {
          code_infill: { enabled: false },
          metric_forecast: { enabled: false },
          log_triage: { max_examples: 24, min_examples: 1 },
          trace_outcome: { max_examples: 24, min_examples: 1 },
        },
      },
      // The shipped learning settings (lr, init, EMA), on a tiny budget.
      train: {
        ...shipped.train,
        max_steps: 3,
        batch_size: 4,
        checkpoint_interval: 2,
        eval_interval: 3,
        eval_examples: 8,
      },
      gate: { min_examples: 1 },
    };
    const configPath = join(work, "config.yaml");
    writeFileSync(configPath, stringify(config));
    const podEnv = Object.fromEntries(
      (container.env ?? []).filter((e: any) => e.value !== undefined).map((e: any) => [e.name, e.value]),
    );
    expect(podEnv.TRM_FORGE_CONFIG).toBeDefined();
    env = { ...env, ...podEnv, TRM_FORGE_CONFIG: configPath };

    const doctor = JSON.parse(
      execFileSync("trm-forge", ["doctor", "--json"], { env, cwd: join(work, "data"), encoding: "utf8" }),
    );
    expect(doctor.node).toBe(`v${NODE_VERSION}`);
    expect(doctor.config.path).toBe(configPath);
    expect(doctor.backend.preference).toBe(config.model?.backend ?? "auto");
    expect(doctor.backend.backend).toBe("native");
    expect(doctor.backend.candidates[0]).toMatchObject({ name: "tensorflow", status: "not-installed" });
    expect(doctor.backend.native).toMatchObject({ loaded: true, buildStatus: { built: true } });

    // ENTRYPOINT + the Deployment's args (the image's CMD), on a free port.
    const entry = JSON.parse(stage(stages, "cpu").instrs.find((i) => i.op === "ENTRYPOINT")!.args);
    const args: string[] = [...container.args];
    expect(args).toEqual(JSON.parse(stage(stages, "cpu").instrs.find((i) => i.op === "CMD")!.args));
    args[args.indexOf("--port") + 1] = "0";
    server = spawn(entry[0], [...entry.slice(1), ...args], {
      env,
      cwd: join(work, "data"),
      stdio: ["ignore", "pipe", "pipe"],
    });
    server.stdout!.on("data", (d) => (serverLog += d));
    server.stderr!.on("data", (d) => (serverLog += d));
    const url = await new Promise<string>((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`no server:\n${serverLog.slice(-3000)}`)), 60_000);
      server!.stderr!.on("data", () => {
        const m = /MCP over Streamable HTTP at http:\/\/[^:/]+:(\d+)(\/\S*)/.exec(serverLog);
        if (m) {
          clearTimeout(timer);
          res(`http://127.0.0.1:${m[1]}${m[2]}`);
        }
      });
      server!.once("exit", (code) =>
        rej(new Error(`server exited with ${code}:\n${serverLog.slice(-3000)}`)),
      );
    });
    const health = await fetch(new URL("/healthz", url));
    expect(health.status, serverLog.slice(-2000)).toBe(200);
    client = await connectHttp(url, `${TOKEN}-agent-sre`);
  });

  it("trains and registers a tiny run through training_start, on the native kernels", {
    timeout: 600_000,
  }, async () => {
    expect(client, "the server above started").not.toBeNull();
    const started = (await call(client!, "training_start", {})).structuredContent as any;
    expect(started?.started, JSON.stringify(started)).toBe(true);
    const jobId = started.job.job_id;
    let v: any;
    for (const end = Date.now() + 540_000; Date.now() < end; ) {
      const r = await call(client!, "job_status", { job_id: jobId, wait_s: 5 });
      expect(r.isError, textOf(r)).toBeFalsy();
      v = r.structuredContent;
      if (v.status !== "running" && v.status !== "queued") break;
    }
    expect(v.status, `${JSON.stringify(v)}\n${serverLog.slice(-3000)}`).toBe("succeeded");
    const run = JSON.parse(s3.object("trm-forge", `runs/agent-sre/${jobId}/run.json`)!.body.toString("utf8"));
    expect(run.status).toBe("succeeded");
    expect(run.stages.find((s: any) => s.name === "train").output).toMatchObject({
      steps: 3,
      backend: "native",
    });
    const version: string = run.model_version;
    expect(version).toMatch(/^v/);
    expect(JSON.stringify(v)).toContain(version);
    const models = await call(client!, "models_list", {});
    expect(textOf(models)).toContain(version);
    // A rollout stops the container with SIGTERM: it exits cleanly.
    await client!.close();
    client = null;
    const exited = new Promise((r) => server!.once("exit", (code, signal) => r(code ?? signal)));
    server!.kill("SIGTERM");
    expect(await exited, serverLog.slice(-2000)).toBe(0);
  });
});
