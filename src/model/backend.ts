// Which TensorFlow.js backend runs the model. The order is fixed, the first that loads wins
// (unless the config names one), and the report says why each earlier one is not in use.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import type { MatmulPrecision } from "../config/schema.js";
import "./gradients.js";
import { loadNative, type NativeInfo, readBuildStatus } from "./native/index.js";
import { NATIVE_BACKEND, registerNativeBackend } from "./native/kernels.js";
import { PooledCpuBackend } from "./native/pool.js";

export const BACKEND_ORDER = ["tensorflow", "native", "wasm", "cpu"] as const;
export type BackendName = (typeof BACKEND_ORDER)[number];
export type BackendPreference = "auto" | BackendName;

export interface BackendCandidate {
  name: BackendName;
  /** in-use: running now; available: would load; the rest say why it is not in use. */
  status: "in-use" | "available" | "not-installed" | "failed" | "not-built" | "not-selected";
  reason?: string;
}

export interface BackendReport {
  preference: BackendPreference;
  /** The backend running the model (initBackend) or the one that would (describeBackends). */
  backend: BackendName | null;
  /** Every backend up to and including the chosen one, in preference order. */
  candidates: BackendCandidate[];
  native: {
    loaded: boolean;
    /** Why the addon is not in use; from build/native-status.json when the build failed. */
    reason?: string;
    buildStatus: { built: boolean; reason: string; at?: string } | null;
    info?: NativeInfo;
  };
}

type Attempt = { ok: true } | { ok: false; status: BackendCandidate["status"]; reason: string };

const require = createRequire(import.meta.url);

function isMissingModule(err: unknown, pkg: string): boolean {
  const e = err as { code?: string; message?: string };
  return (
    (e?.code === "ERR_MODULE_NOT_FOUND" || e?.code === "MODULE_NOT_FOUND") && String(e.message).includes(pkg)
  );
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split("\n")[0];
}

/** tfjs-node-gpu, then tfjs-node: each registers the "tensorflow" backend when imported. */
async function loadTensorflow(activate: boolean): Promise<Attempt> {
  const notes: string[] = [];
  for (const pkg of ["@tensorflow/tfjs-node-gpu", "@tensorflow/tfjs-node"]) {
    if (!activate) {
      try {
        require.resolve(pkg);
        return { ok: true };
      } catch {
        notes.push(`${pkg} not installed`);
        continue;
      }
    }
    try {
      await import(pkg);
    } catch (err) {
      notes.push(
        isMissingModule(err, pkg) ? `${pkg} not installed` : `${pkg} failed to load: ${firstLine(err)}`,
      );
      continue;
    }
    if (!tf.findBackendFactory("tensorflow")) {
      notes.push(`${pkg} loaded but registered its backend with another copy of @tensorflow/tfjs-core`);
      continue;
    }
    try {
      if (await tf.setBackend("tensorflow")) return { ok: true };
      notes.push(`${pkg} loaded but its backend failed to initialise`);
    } catch (err) {
      notes.push(`${pkg} backend failed to initialise: ${firstLine(err)}`);
    }
  }
  const installed = notes.some((n) => !n.endsWith("not installed"));
  return { ok: false, status: installed ? "failed" : "not-installed", reason: notes.join("; ") };
}

async function loadNativeBackend(activate: boolean): Promise<Attempt> {
  const native = loadNative();
  if (!native.ok) {
    const status = native.reason.startsWith("native addon failed") ? "failed" : "not-built";
    return { ok: false, status, reason: native.reason };
  }
  try {
    registerNativeBackend(native.addon);
    if (activate && !(await tf.setBackend(NATIVE_BACKEND))) {
      return { ok: false, status: "failed", reason: "the native backend failed to initialise" };
    }
    return { ok: true };
  } catch (err) {
    return { ok: false, status: "failed", reason: `native backend failed: ${firstLine(err)}` };
  }
}

function wasmDir(): string {
  // The package's main entry lives in dist/, next to the .wasm binaries.
  return dirname(require.resolve("@tensorflow/tfjs-backend-wasm"));
}

async function loadWasm(activate: boolean): Promise<Attempt> {
  let dir: string;
  try {
    dir = wasmDir();
  } catch {
    return { ok: false, status: "not-installed", reason: "@tensorflow/tfjs-backend-wasm not installed" };
  }
  if (!existsSync(join(dir, "tfjs-backend-wasm.wasm"))) {
    return { ok: false, status: "failed", reason: `no tfjs-backend-wasm.wasm in ${dir}` };
  }
  if (!activate) return { ok: true };
  try {
    const wasm = await import("@tensorflow/tfjs-backend-wasm");
    wasm.setWasmPaths(`${dir}/`);
    if (await tf.setBackend("wasm")) return { ok: true };
    return { ok: false, status: "failed", reason: "the wasm backend failed to initialise" };
  } catch (err) {
    const msg = (err as { message?: string })?.message ?? String(err);
    return { ok: false, status: "failed", reason: `wasm backend failed: ${msg.split("\n")[0]}` };
  }
}

async function loadCpu(activate: boolean): Promise<Attempt> {
  await import("@tensorflow/tfjs-backend-cpu");
  if (activate && !(await tf.setBackend("cpu"))) {
    return { ok: false, status: "failed", reason: "the cpu backend failed to initialise" };
  }
  return { ok: true };
}

const LOADERS: Record<BackendName, (activate: boolean) => Promise<Attempt>> = {
  tensorflow: loadTensorflow,
  native: loadNativeBackend,
  wasm: loadWasm,
  cpu: loadCpu,
};

function nativeSection(): BackendReport["native"] {
  const native = loadNative();
  const buildStatus = readBuildStatus();
  if (!native.ok) return { loaded: false, reason: native.reason, buildStatus };
  return { loaded: true, buildStatus, info: native.addon.info() };
}

async function choose(preference: BackendPreference, activate: boolean): Promise<BackendReport> {
  const candidates: BackendCandidate[] = [];
  const report: BackendReport = { preference, backend: null, candidates, native: nativeSection() };
  for (const name of BACKEND_ORDER) {
    if (preference !== "auto" && name !== preference) {
      if (BACKEND_ORDER.indexOf(name) > BACKEND_ORDER.indexOf(preference)) break;
      candidates.push({ name, status: "not-selected", reason: `model.backend is "${preference}"` });
      continue;
    }
    const attempt = await LOADERS[name](activate);
    if (attempt.ok) {
      candidates.push({ name, status: activate ? "in-use" : "available" });
      report.backend = name;
      report.native = nativeSection();
      return report;
    }
    candidates.push({ name, status: attempt.status, reason: attempt.reason });
  }
  return report;
}

/**
 * Selects and activates the backend: with "auto" the first of tensorflow, native, wasm, cpu that
 * loads; with a name, that one or an error saying why it cannot run.
 */
export async function initBackend(preference: BackendPreference = "auto"): Promise<BackendReport> {
  const report = await choose(preference, true);
  if (!report.backend) {
    const why = report.candidates.map((c) => `${c.name}: ${c.reason ?? c.status}`).join("; ");
    throw new Error(`no TensorFlow.js backend could be started for model.backend "${preference}" (${why})`);
  }
  await tf.ready();
  return report;
}

/** What initBackend would choose, without switching backends (modules are resolved, not run). */
export async function describeBackends(preference: BackendPreference = "auto"): Promise<BackendReport> {
  return choose(preference, false);
}

/**
 * Gives back memory the native backend keeps for reuse (its buffer pool, up to 2 GiB after a
 * training run). Call it when a long-lived process is done training; a no-op on other backends.
 */
export function releaseBackendMemory(): void {
  const b = tf.findBackend(NATIVE_BACKEND);
  if (b instanceof PooledCpuBackend) b.releasePool();
}

/**
 * Sets the precision of the native backend's matrix products on this thread and returns the one
 * in effect: "bf16" needs the native backend active and a CPU with AVX-512 BF16, else it stays
 * "float32". The caller restores "float32" when done.
 */
export function setMatmulPrecision(want: MatmulPrecision): MatmulPrecision {
  const native = loadNative();
  // An addon built before bf16 existed (a checkout not yet rebuilt) has no switch: float32.
  if (!native.ok || typeof native.addon.setMatmulBf16 !== "function") return "float32";
  const on = want === "bf16" && tf.getBackend() === NATIVE_BACKEND;
  return native.addon.setMatmulBf16(on) ? "bf16" : "float32";
}

/** The backend the model runs on right now, by the names this module uses. */
export function activeBackend(): string {
  return tf.getBackend();
}
