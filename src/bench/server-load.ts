// The callers of the server bench: `callers` loops over a set of calls for a fixed time, timing
// each. Runs in the bench's main thread for direct function calls, and in a worker thread for the
// MCP clients (so clients and server do not share one event loop, as in production).
import { parentPort, workerData } from "node:worker_threads";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

/** One call; i counts the caller's calls, caller is its index. True when it succeeded. */
export type Work = (i: number, caller: number) => Promise<boolean>;

export const LINES = [
  "ERROR [checkout] connection refused to db:5432 after 3 retries",
  "INFO [api] GET /api/v1/orders/8812 200 14ms",
  "WARN [payments] payment declined for order 77123 (card expired)",
  "ERROR [queue] queue depth 1204 exceeds 1000",
];

const pct = (sorted: number[], q: number) =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : Number.NaN;
const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

export interface ToolStats {
  calls: number;
  p50_ms: number;
  p99_ms: number;
}

export interface LoadResult {
  per_tool: Record<string, ToolStats>;
  errors: number;
  calls_per_s: number;
  /** A phase's probe: /healthz and models_list, one at a time from a session of their own. */
  probe?: LoadResult;
}

/** `callers` concurrent loops over the tools in turn for durationMs (at least `minRounds` calls each). */
export async function load(
  callers: number,
  durationMs: number,
  work: Record<string, Work>,
  minRounds = 2,
): Promise<LoadResult> {
  const names = Object.keys(work);
  const ms: Record<string, number[]> = Object.fromEntries(names.map((k) => [k, []]));
  let errors = 0;
  const end = performance.now() + durationMs;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: callers }, async (_, c) => {
      for (let i = 0; i < minRounds || performance.now() < end; i++) {
        const name = names[(i + c) % names.length];
        const s = performance.now();
        let ok = false;
        try {
          ok = await work[name](i, c);
        } catch {
          ok = false;
        }
        if (ok) ms[name].push(performance.now() - s);
        else errors++;
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  const per_tool = Object.fromEntries(
    Object.entries(ms).map(([k, v]) => {
      const s = [...v].sort((a, b) => a - b);
      return [k, { calls: s.length, p50_ms: round(pct(s, 0.5)), p99_ms: round(pct(s, 0.99)) }];
    }),
  );
  const total = Object.values(ms).reduce((n, x) => n + x.length, 0);
  return { per_tool, errors, calls_per_s: round(total / secs) };
}

export interface ClientJob {
  url: string;
  token: string;
  sessions: number;
  /** callers 0 runs only the probe (the server is busy with something else: a training). */
  phases: { callers: number; durationMs: number; tools: string[]; probe?: boolean }[];
}

/** In the worker: open the sessions, run each phase, post the results. */
async function clientMain(job: ClientJob): Promise<LoadResult[]> {
  const clients: Client[] = [];
  for (let s = 0; s < job.sessions; s++) {
    const c = new Client({ name: `bench-${s}`, version: "0" });
    await c.connect(
      new StreamableHTTPClientTransport(new URL(job.url), {
        requestInit: { headers: { Authorization: `Bearer ${job.token}` } },
      }),
    );
    clients.push(c);
  }
  const calls: Record<string, (c: Client, i: number) => Promise<boolean>> = {
    models_list: async (c) => !(await c.callTool({ name: "models_list", arguments: { limit: 20 } })).isError,
    model_predict: async (c, i) =>
      !(
        await c.callTool({
          name: "model_predict",
          arguments: { task: "log_triage", input: LINES[i % LINES.length] },
        })
      ).isError,
  };
  // Warm-up: every session once, so no phase pays for connection set-up.
  await Promise.all(clients.map((c) => calls.models_list(c, 0)));
  const prober = clients.at(-1)!;
  const healthz = job.url.replace(/\/mcp$/, "/healthz");
  const probeWork: Record<string, Work> = {
    healthz: async () => {
      const r = await fetch(healthz, { signal: AbortSignal.timeout(30_000) });
      await r.text();
      return r.ok;
    },
    models_list: (i) => calls.models_list(prober, i),
  };
  const out: LoadResult[] = [];
  for (const p of job.phases) {
    const callers = p.probe ? clients.slice(0, -1) : clients;
    const work = Object.fromEntries(
      p.tools.map((t) => [t, (i: number, caller: number) => calls[t](callers[caller % callers.length], i)]),
    );
    const [main, probe] = await Promise.all([
      p.callers > 0 ? load(p.callers, p.durationMs, work) : null,
      p.probe ? load(1, p.durationMs, probeWork) : null,
    ]);
    const result = main ?? { per_tool: {}, errors: 0, calls_per_s: 0 };
    if (probe) result.probe = probe;
    out.push(result);
  }
  await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
  return out;
}

if (parentPort && (workerData as { benchServerClients?: ClientJob } | undefined)?.benchServerClients) {
  const port = parentPort;
  clientMain((workerData as { benchServerClients: ClientJob }).benchServerClients).then(
    (results) => port.postMessage({ results }),
    (err) => port.postMessage({ error: err instanceof Error ? err.message : String(err) }),
  );
}
