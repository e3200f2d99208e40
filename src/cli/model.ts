// `trm-forge model ...`: check the engine against a PyTorch reference fixture, and size a config.
import { type Command, InvalidArgumentError } from "commander";
import { UsageError } from "../errors.js";
import { BACKEND_ORDER, type BackendPreference, initBackend } from "../model/backend.js";
import {
  countParams,
  flopsPerSample,
  PRESETS,
  resolveModelConfig,
  swigluWidth,
  type TRMConfig,
} from "../model/config.js";
import { TRM } from "../model/trm.js";
import { type VerifyReport, verifyFile } from "../model/verify.js";
import { action, emit, loadCliConfig, parseIntOption } from "./common.js";

function backendOption(value: string): BackendPreference {
  if (value === "auto" || (BACKEND_ORDER as readonly string[]).includes(value))
    return value as BackendPreference;
  throw new InvalidArgumentError(`must be one of auto, ${BACKEND_ORDER.join(", ")}`);
}

function fmt(x: number): string {
  return Number.isFinite(x) ? x.toExponential(2) : String(x);
}

function humanReport(r: VerifyReport): string {
  const c = r.config;
  const lines = [
    `${r.file}`,
    `  config: hidden ${c.hidden_size}, heads ${c.num_heads}, layers ${c.num_layers}, seq ${c.seq_len}, vocab ${c.vocab_size}, ` +
      `prefix ${c.puzzle_emb_len}, T=${c.H_cycles} n=${c.L_cycles} N_sup=${c.halt_max_steps}, ` +
      `${c.mlp_t ? "mlp_t" : `attention/${c.pos_encodings}`}, ${c.loss_type}; backend ${r.backend}`,
  ];
  const w = Math.max(...r.checks.map((k) => k.name.length));
  lines.push(`  ${"tensor".padEnd(w)}  max abs    max rel    tol      result`);
  for (const k of r.checks) {
    let res = k.ok ? "ok" : `FAIL${k.error ? ` (${k.error})` : ""}`;
    if (k.sensitivity !== undefined)
      res += ` (one-ulp weight nudge alone moves it by ${fmt(k.sensitivity)} rel${k.sensitivity > k.tolerance ? ": ill-conditioned fixture" : ""})`;
    lines.push(
      `  ${k.name.padEnd(w)}  ${fmt(k.maxAbs).padEnd(9)}  ${fmt(k.maxRel).padEnd(9)}  ${fmt(k.tolerance).padEnd(7)}  ${res}`,
    );
  }
  lines.push(
    r.ok ? "  all within tolerance" : `  ${r.checks.filter((k) => !k.ok).length} tensor(s) beyond tolerance`,
  );
  return lines.join("\n");
}

export function registerModelCommands(program: Command): void {
  const model = program
    .command("model")
    .description("The TRM engine: parity with the PyTorch reference, parameter counts");

  model
    .command("verify")
    .description(
      "Load a reference fixture (ref_trm.py --make-fixture), recompute every expected.* tensor and print the max " +
        "abs/rel error of each; exit 1 beyond tolerance (1e-4 rel for step 1 and gradients, 1e-3 for step N)",
    )
    .argument("<files...>", ".safetensors fixtures")
    .option("--json", "print the report as JSON")
    .option(
      "--backend <name>",
      "auto|tensorflow|native|wasm|cpu (default: model.backend of the config)",
      backendOption,
    )
    .action(
      action(async (files: string[], opts: { json?: boolean; backend?: BackendPreference }, cmd: Command) => {
        const preference = opts.backend ?? loadCliConfig(cmd).config.model.backend;
        await initBackend(preference);
        const reports: VerifyReport[] = [];
        for (const f of files) reports.push(await verifyFile(f));
        const ok = reports.every((r) => r.ok);
        emit(opts.json, files.length === 1 ? reports[0] : { ok, reports }, () =>
          reports.map(humanReport).join("\n\n"),
        );
        return ok ? 0 : 1;
      }),
    );

  model
    .command("params")
    .description("Parameters and FLOPs per sample of a config (the config file's model section, or a preset)")
    .option("--preset <name>", `one of ${Object.keys(PRESETS).join(", ")} (default: the config's)`)
    .option("--vocab <n>", "vocabulary size", parseIntOption("--vocab"), 11)
    .option("--seq-len <n>", "sequence length", parseIntOption("--seq-len"), 81)
    .option("--num-puzzles <n>", "task identifiers", parseIntOption("--num-puzzles"), 1)
    .option("--build", "also build the model and count its variables")
    .option("--json", "print as JSON")
    .action(
      action(
        async (
          opts: {
            preset?: string;
            vocab: number;
            seqLen: number;
            numPuzzles: number;
            build?: boolean;
            json?: boolean;
          },
          cmd: Command,
        ) => {
          const section = { ...loadCliConfig(cmd).config.model };
          if (opts.preset) {
            if (!(opts.preset in PRESETS))
              throw new UsageError(`--preset must be one of ${Object.keys(PRESETS).join(", ")}`);
            section.preset = opts.preset as keyof typeof PRESETS;
          }
          const cfg: TRMConfig = resolveModelConfig(section, {
            vocab_size: opts.vocab,
            seq_len: opts.seqLen,
            num_puzzle_identifiers: opts.numPuzzles,
          });
          let built: number | undefined;
          if (opts.build) {
            await initBackend(section.backend);
            const m = TRM.init(cfg, 0);
            built = m.parameterCount();
            m.dispose();
          }
          const params = countParams(cfg);
          const flops = flopsPerSample(cfg);
          emit(opts.json, { config: cfg, params, flops, built_parameters: built }, () =>
            [
              `preset ${section.preset}: hidden ${cfg.hidden_size}, heads ${cfg.num_heads}, layers ${cfg.num_layers}, ` +
                `SwiGLU width ${swigluWidth(cfg.hidden_size, cfg.expansion)}, T=${cfg.H_cycles} n=${cfg.L_cycles} N_sup=${cfg.halt_max_steps}`,
              `trainable parameters: ${params.trainable.toLocaleString("en")} (network ${params.network.toLocaleString("en")})` +
                (built !== undefined ? `; built model: ${built.toLocaleString("en")}` : ""),
              `task-embedding table: ${params.puzzle_emb_table.toLocaleString("en")} values (a buffer, not counted)`,
              `per sample and supervision step: forward ${(flops.forward / 1e9).toFixed(3)} GFLOP, ` +
                `train ${(flops.train / 1e9).toFixed(3)} GFLOP (${flops.net_calls} net calls)`,
            ].join("\n"),
          );
        },
      ),
    );
}
