// The TRM architecture config. Field names are exactly those of ref_trm.py's TRMConfig, because the
// same JSON travels in the safetensors metadata (`trm_config`) between this port and the reference.
import * as z from "zod";
import type { ModelSection } from "../config/schema.js";
import { ConfigError } from "../errors.js";

/** Upper bounds that keep a hostile config (e.g. from a file's metadata) from asking for absurd allocations. */
const MAX_DIM = 1 << 16;
const MAX_IDS = 1 << 24;

const dim = z.number().int().min(1).max(MAX_DIM);

/** The JSON form; defaults are the reference dataclass defaults. */
export const TRMConfigSchema = z
  .object({
    vocab_size: dim.default(11),
    seq_len: dim.default(81),
    hidden_size: dim.default(512),
    num_heads: dim.default(8),
    num_layers: z.number().int().min(1).max(64).default(2),
    expansion: z.number().positive().max(64).default(4),
    H_cycles: z.number().int().min(1).max(64).default(3),
    L_cycles: z.number().int().min(1).max(64).default(6),
    halt_max_steps: z.number().int().min(1).max(1024).default(16),
    halt_exploration_prob: z.number().min(0).max(1).default(0.1),
    no_ACT_continue: z.boolean().default(true),
    puzzle_emb_len: z.number().int().min(0).max(MAX_DIM).default(16),
    puzzle_emb_ndim: z.number().int().min(-1).max(MAX_DIM).default(-1),
    num_puzzle_identifiers: z.number().int().min(1).max(MAX_IDS).default(1),
    pos_encodings: z.enum(["rope", "learned", "none"]).default("rope"),
    rope_theta: z.number().positive().default(10000),
    rms_norm_eps: z.number().positive().max(1).default(1e-5),
    mlp_t: z.boolean().default(false),
    loss_type: z.enum(["stablemax", "softmax"]).default("stablemax"),
  })
  .strict();

/** A validated, normalised config (the reference's __post_init__ applied). */
export type TRMConfig = z.output<typeof TRMConfigSchema>;
export type TRMConfigInput = z.input<typeof TRMConfigSchema>;

/**
 * Validates and normalises, as the reference's __post_init__ does: puzzle_emb_ndim -1 means
 * hidden_size, 0 means no puzzle embedding and therefore no prefix at all.
 */
export function parseTRMConfig(raw: unknown, source = "model config"): TRMConfig {
  const r = TRMConfigSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const at = issue.path.length ? issue.path.join(".") : "(root)";
    throw new ConfigError(`${source}: ${at}: ${issue.message}`);
  }
  const c = { ...r.data };
  if (c.puzzle_emb_ndim < 0) c.puzzle_emb_ndim = c.hidden_size;
  if (c.puzzle_emb_ndim > 0 && c.puzzle_emb_ndim > c.puzzle_emb_len * c.hidden_size)
    throw new ConfigError(
      `${source}: puzzle_emb_ndim ${c.puzzle_emb_ndim} must fit into puzzle_emb_len * hidden_size (${c.puzzle_emb_len} * ${c.hidden_size})`,
    );
  if (c.puzzle_emb_ndim === 0) c.puzzle_emb_len = 0;
  if (c.hidden_size % c.num_heads !== 0)
    throw new ConfigError(
      `${source}: hidden_size ${c.hidden_size} is not divisible by num_heads ${c.num_heads}`,
    );
  if (usesRope(c) && (c.hidden_size / c.num_heads) % 2 !== 0)
    throw new ConfigError(
      `${source}: RoPE needs an even head size, got ${c.hidden_size}/${c.num_heads} = ${c.hidden_size / c.num_heads}`,
    );
  if (!c.no_ACT_continue)
    throw new ConfigError(
      `${source}: no_ACT_continue=false (the Q-learning continue target) is not supported; the paper drops it`,
    );
  return c;
}

export function totalLen(c: TRMConfig): number {
  return c.seq_len + c.puzzle_emb_len;
}

export function headDim(c: TRMConfig): number {
  return c.hidden_size / c.num_heads;
}

/** RoPE applies only to the attention variant. */
export function usesRope(c: Pick<TRMConfig, "pos_encodings" | "mlp_t">): boolean {
  return c.pos_encodings === "rope" && !c.mlp_t;
}

/** Python's round(): halves go to the even neighbour. */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** SwiGLU intermediate width: round(expansion * size * 2/3), rounded up to a multiple of 256. */
export function swigluWidth(size: number, expansion: number): number {
  const w = roundHalfEven((expansion * size * 2) / 3);
  return Math.ceil(w / 256) * 256;
}

// Presets. Vocabulary, sequence length and the number of task ids always come from the dataset.
//  7m    the paper's network (hidden 512, 8 heads, 2 layers, T=3, n=6, N_sup=16): 6.83M parameters at Sudoku
//        shapes, 47.6 GFLOP per training sample-step; a GPU or native-BLAS job.
//  small hidden 128 like bench config (b), but n=4: 0.59M parameters, 15 net calls per step, 4.1 GFLOP per
//        training sample-step at 128 tokens.
//  demo  hidden 64, T=2, n=3, N_sup=6: 0.16M parameters; at 128 tokens one training sample-step is 0.71 GFLOP,
//        so a few thousand sample-steps take minutes on 2 cores with native kernels. The width rule still gives
//        a 256-wide SwiGLU, so the net is not starved. A 4-position prefix holds the task vector plus registers.
type Preset = Omit<TRMConfigInput, "vocab_size" | "seq_len" | "num_puzzle_identifiers">;
export const PRESETS: Record<ModelSection["preset"], Preset> = {
  "7m": {
    hidden_size: 512,
    num_heads: 8,
    num_layers: 2,
    expansion: 4,
    H_cycles: 3,
    L_cycles: 6,
    halt_max_steps: 16,
    halt_exploration_prob: 0.1,
    puzzle_emb_len: 16,
    puzzle_emb_ndim: -1,
    pos_encodings: "rope",
  },
  small: {
    hidden_size: 128,
    num_heads: 4,
    num_layers: 2,
    expansion: 4,
    H_cycles: 3,
    L_cycles: 4,
    halt_max_steps: 8,
    halt_exploration_prob: 0.1,
    puzzle_emb_len: 8,
    puzzle_emb_ndim: -1,
    pos_encodings: "rope",
  },
  demo: {
    hidden_size: 64,
    num_heads: 4,
    num_layers: 2,
    expansion: 4,
    H_cycles: 2,
    L_cycles: 3,
    halt_max_steps: 6,
    halt_exploration_prob: 0.1,
    puzzle_emb_len: 4,
    puzzle_emb_ndim: -1,
    pos_encodings: "rope",
  },
};

export interface DataShape {
  vocab_size: number;
  seq_len: number;
  num_puzzle_identifiers: number;
}

/** The config file's model section (preset + overrides) plus the dataset's shape -> a full config. */
export function resolveModelConfig(section: Partial<ModelSection>, data: DataShape): TRMConfig {
  const { preset = "7m", backend: _backend, ...overrides } = section;
  const base = PRESETS[preset];
  if (!base) throw new ConfigError(`model.preset: unknown preset "${preset}"`);
  const set = Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined));
  return parseTRMConfig(
    {
      ...base,
      ...set,
      vocab_size: data.vocab_size,
      seq_len: data.seq_len,
      num_puzzle_identifiers: data.num_puzzle_identifiers,
    },
    "model",
  );
}

export interface ParamCount {
  per_layer: number;
  network: number;
  io: number;
  /** Everything the optimiser trains (the puzzle table is a buffer and is not counted). */
  trainable: number;
  puzzle_emb_table: number;
  swiglu_width: number;
}

/** The reference's count_params. */
export function countParams(c: TRMConfig): ParamCount {
  const D = c.hidden_size;
  const V = c.vocab_size;
  const S = totalLen(c);
  const I = swigluWidth(D, c.expansion);
  const mix = c.mlp_t ? 3 * S * swigluWidth(S, c.expansion) : 4 * D * D;
  const perLayer = mix + 3 * D * I;
  const network = c.num_layers * perLayer;
  const heads = 2 * V * D + 2 * D + 2;
  const extra = c.pos_encodings === "learned" ? S * D : 0;
  return {
    per_layer: perLayer,
    network,
    io: heads + extra,
    trainable: network + heads + extra,
    puzzle_emb_table: c.num_puzzle_identifiers * c.puzzle_emb_ndim,
    swiglu_width: I,
  };
}

export interface Flops {
  per_net_call: number;
  net_calls: number;
  forward: number;
  train: number;
}

/** The reference's flops_per_sample: matmul FLOPs (2 per MAC) for one sample and one supervision step. */
export function flopsPerSample(c: TRMConfig): Flops {
  const D = c.hidden_size;
  const S = totalLen(c);
  const L = c.seq_len;
  const V = c.vocab_size;
  const I = swigluWidth(D, c.expansion);
  const mix = c.mlp_t ? 2 * D * 3 * S * swigluWidth(S, c.expansion) : S * 2 * 4 * D * D + 2 * 2 * S * S * D;
  const layer = mix + S * 2 * 3 * D * I;
  const call = c.num_layers * layer;
  const calls = c.H_cycles * (c.L_cycles + 1);
  const gradCalls = c.L_cycles + 1;
  const head = 2 * L * D * V + 2 * 2 * D;
  const forward = calls * call + head;
  // Backward costs about twice the forward, and only the last recursion has one.
  const train = forward + 2 * (gradCalls * call + head);
  return { per_net_call: call, net_calls: calls, forward, train };
}
