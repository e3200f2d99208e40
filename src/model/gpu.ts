// The NVIDIA GPUs `doctor` reports, as nvidia-smi sees them, and whether the in-process GPU backend
// can use each. @tensorflow/tfjs-node-gpu 4.22 loads libtensorflow 2.9.1, built against CUDA 11.2
// and cuDNN 8.1 with kernels for sm_35 to sm_75 plus PTX for compute_80: newer GPUs run only after
// the driver JIT-compiles that PTX, which the CUDA compute cache keeps for later starts.
import { execFile } from "node:child_process";

export interface TfjsGpuVerdict {
  /** Whether tfjs-node-gpu 4.22 can run on this GPU with this driver. */
  usable: "yes" | "no" | "unknown";
  /** sass: libtensorflow ships machine code for it; ptx-jit: the driver compiles PTX at start-up. */
  kernels: "sass" | "ptx-jit" | null;
  /** What a start costs before the first step, in words. */
  startup: string;
  reason: string;
}

export interface GpuInfo {
  index: number;
  name: string;
  compute_capability: string | null;
  driver_version: string | null;
  tfjs_node_gpu: TfjsGpuVerdict;
}

export interface JitCache {
  /** CUDA_CACHE_PATH, or null for the driver's default (~/.nv/ComputeCache). */
  path: string | null;
  /** CUDA_CACHE_MAXSIZE in bytes, or null for the driver's default (256 MiB). */
  max_size: number | null;
  disabled: boolean;
}

export interface GpuReport {
  /** absent: no nvidia-smi on PATH; failed: it ran but gave no GPU list (the error says why). */
  nvidia_smi: "ok" | "absent" | "failed";
  error?: string;
  driver_version: string | null;
  /** The newest CUDA the driver supports (nvidia-smi's header), not the CUDA an image ships. */
  cuda_version: string | null;
  gpus: GpuInfo[];
  jit_cache: JitCache;
}

export interface ProbeOptions {
  /** The environment nvidia-smi is looked up and run in (PATH) and the cache settings read from. */
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  maxBytes?: number;
}

/** Each nvidia-smi call is bounded: a hung driver or a flood of output cannot stall doctor. */
const TIMEOUT_MS = 10_000;
const MAX_BYTES = 256 * 1024;
const MAX_GPUS = 64;
export const QUERY_FIELDS = "name,compute_cap,driver_version";
/** CUDA's documented default and maximum for CUDA_CACHE_MAXSIZE. */
export const CUDA_CACHE_DEFAULT_BYTES = 256 * 1024 * 1024;
export const CUDA_CACHE_MAX_BYTES = 4 * 1024 * 1024 * 1024;

type Run = { ok: true; stdout: string } | { ok: false; absent: boolean; message: string; output: string };

function run(args: string[], opts: Required<ProbeOptions>): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      "nvidia-smi",
      args,
      {
        env: opts.env,
        timeout: opts.timeoutMs,
        maxBuffer: opts.maxBytes,
        killSignal: "SIGKILL",
        encoding: "utf8",
        windowsHide: true,
      },
      (err, stdout, stderr) => {
        if (!err) return resolve({ ok: true, stdout });
        const e = err as NodeJS.ErrnoException & { killed?: boolean; code?: string | number };
        const output = `${stdout}\n${stderr}`.trim();
        let message: string;
        if (e.code === "ENOENT") message = "nvidia-smi is not on PATH";
        else if (e.code === "ERR_CHILD_PROCESS_STDIO_MAXBUFFER")
          message = `nvidia-smi ${args.join(" ")} printed more than ${opts.maxBytes} bytes`;
        else if (e.killed)
          message = `nvidia-smi ${args.join(" ")} did not answer within ${opts.timeoutMs} ms`;
        else message = `nvidia-smi ${args.join(" ")} exited with ${e.code}: ${firstLines(output)}`;
        resolve({ ok: false, absent: e.code === "ENOENT", message, output });
      },
    );
  });
}

function firstLines(text: string): string {
  const lines = text.split("\n").filter((l) => l.trim());
  return (lines.slice(0, 2).join(" ") || "no output").slice(0, 300);
}

const NA = /^\[?(N\/A|Not Supported|Unknown Error)\]?$/i;
const value = (s: string | undefined): string | null => (s === undefined || !s || NA.test(s) ? null : s);

/** Rows of `--format=csv,noheader`: one GPU a line, fields split on commas (GPU names hold none). */
function parseRows(stdout: string, fields: number): string[][] | null {
  const rows = stdout
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean)
    .slice(0, MAX_GPUS)
    .map((l) => l.split(",").map((c) => c.trim()));
  return rows.length && rows.every((r) => r.length === fields) ? rows : null;
}

/** The CUDA version from nvidia-smi's header ("CUDA Version: 12.2"; "CUDA UMD Version: 13.3" from R610). */
export function parseCudaVersion(text: string): string | null {
  return /CUDA (?:UMD )?Version\s*:\s*(\d+\.\d+)/i.exec(text)?.[1] ?? null;
}

function versionAtLeast(version: string, min: number[]): boolean {
  const parts = version.split(".").map((p) => Number.parseInt(p, 10));
  for (let i = 0; i < min.length; i++) {
    const v = Number.isFinite(parts[i]) ? parts[i] : 0;
    if (v !== min[i]) return v > min[i];
  }
  return true;
}

export function jitCacheOf(env: NodeJS.ProcessEnv): JitCache {
  const size = env.CUDA_CACHE_MAXSIZE ? Number(env.CUDA_CACHE_MAXSIZE) : Number.NaN;
  return {
    path: env.CUDA_CACHE_PATH || null,
    max_size: Number.isFinite(size) && size >= 0 ? size : null,
    disabled: env.CUDA_CACHE_DISABLE === "1",
  };
}

// CUDA 11.2's minimum Linux drivers: 450.80.02 runs its machine code (minor version compatibility),
// 460.27.03 also JIT-compiles its PTX (CUDA compatibility guide).
const CUDA_11_MIN_DRIVER = [450, 80, 2];
const CUDA_11_2_PTX_DRIVER = [460, 27, 3];

function cacheAdvice(cache: JitCache): string {
  if (cache.disabled) return "the compute cache is off (CUDA_CACHE_DISABLE=1), so every start pays it again";
  const where = cache.path ?? "~/.nv/ComputeCache (CUDA_CACHE_PATH unset)";
  const size = cache.max_size ?? CUDA_CACHE_DEFAULT_BYTES;
  const small =
    size < 1024 ** 3
      ? `; CUDA_CACHE_MAXSIZE is ${cache.max_size === null ? "the default 256 MiB" : `${size} bytes`}, which may not hold all of TensorFlow's kernels: raise it (at most ${CUDA_CACHE_MAX_BYTES})`
      : "";
  return `later starts reuse the compute cache at ${where} if it persists${small}`;
}

/** Whether tfjs-node-gpu 4.22 (libtensorflow 2.9.1, CUDA 11.2) runs on a GPU, and what a start costs. */
export function tfjsGpuVerdict(
  computeCapability: string | null,
  driverVersion: string | null,
  cache: JitCache,
): TfjsGpuVerdict {
  if (!computeCapability || !/^\d+\.\d+$/.test(computeCapability)) {
    return {
      usable: "unknown",
      kernels: null,
      startup: "unknown",
      reason:
        "nvidia-smi did not report the compute capability (its driver predates the compute_cap field); " +
        "look it up: up to 7.5 runs native kernels, 8.0 and newer JIT-compiles PTX",
    };
  }
  const [major, minor] = computeCapability.split(".").map(Number);
  const cc = major * 10 + minor;
  if (cc < 35) {
    return {
      usable: "no",
      kernels: null,
      startup: "n/a",
      reason: `libtensorflow 2.9.1 needs compute capability 3.5 or newer; this GPU has ${computeCapability}`,
    };
  }
  if (driverVersion && !versionAtLeast(driverVersion, CUDA_11_MIN_DRIVER)) {
    return {
      usable: "no",
      kernels: null,
      startup: "n/a",
      reason: `CUDA 11.2 needs NVIDIA driver 450.80.02 or newer; this one is ${driverVersion}`,
    };
  }
  if (cc <= 75) {
    return {
      usable: "yes",
      kernels: "sass",
      startup: "none: libtensorflow 2.9.1 ships machine code for it",
      reason: `compute capability ${computeCapability} is within sm_35..sm_75, which libtensorflow 2.9.1 is built for`,
    };
  }
  if (driverVersion && !versionAtLeast(driverVersion, CUDA_11_2_PTX_DRIVER)) {
    return {
      usable: "no",
      kernels: "ptx-jit",
      startup: "n/a",
      reason: `compute capability ${computeCapability} runs only from CUDA 11.2 PTX, which needs driver 460.27.03 or newer to compile; this one is ${driverVersion}`,
    };
  }
  return {
    usable: "yes",
    kernels: "ptx-jit",
    startup: `the first start JIT-compiles libtensorflow's compute_80 PTX for sm_${cc} (TensorFlow warns this "could take 30 minutes or longer"); ${cacheAdvice(cache)}`,
    reason: `libtensorflow 2.9.1 has no machine code for compute capability ${computeCapability}, only PTX for 8.0`,
  };
}

/** Asks nvidia-smi for every GPU's name, compute capability and driver, and the driver's CUDA version. */
export async function probeGpus(options: ProbeOptions = {}): Promise<GpuReport> {
  const opts: Required<ProbeOptions> = {
    env: options.env ?? process.env,
    timeoutMs: options.timeoutMs ?? TIMEOUT_MS,
    maxBytes: options.maxBytes ?? MAX_BYTES,
  };
  const jit_cache = jitCacheOf(opts.env);
  const empty = { driver_version: null, cuda_version: null, gpus: [], jit_cache };
  let query = await run([`--query-gpu=${QUERY_FIELDS}`, "--format=csv,noheader"], opts);
  let fields = 3;
  // Drivers older than the compute_cap field refuse the whole query: ask again without it.
  if (!query.ok && /not a valid field to query/i.test(query.output)) {
    query = await run(["--query-gpu=name,driver_version", "--format=csv,noheader"], opts);
    fields = 2;
  }
  if (!query.ok) return { nvidia_smi: query.absent ? "absent" : "failed", error: query.message, ...empty };
  const rows = parseRows(query.stdout, fields);
  if (!rows) {
    return {
      nvidia_smi: "failed",
      error: `nvidia-smi listed no GPU in the expected form: ${firstLines(query.stdout)}`,
      ...empty,
    };
  }
  // The CUDA version is only in the summary's header (or -q); the query has no field for it.
  const summary = await run([], opts);
  const cuda_version = summary.ok ? parseCudaVersion(summary.stdout) : null;
  const gpus = rows.map((r, index): GpuInfo => {
    const compute_capability = fields === 3 ? value(r[1]) : null;
    const driver_version = value(r[fields - 1]);
    return {
      index,
      name: r[0],
      compute_capability,
      driver_version,
      tfjs_node_gpu: tfjsGpuVerdict(compute_capability, driver_version, jit_cache),
    };
  });
  return {
    nvidia_smi: "ok",
    ...(summary.ok ? {} : { error: `no CUDA version: ${summary.message}` }),
    driver_version: gpus[0]?.driver_version ?? null,
    cuda_version,
    gpus,
    jit_cache,
  };
}
