// Weights trained elsewhere, read and checked before anything scores or stores them: a file (or a
// folder holding one) in the reference's safetensors names, or in the official TinyRecursiveModels
// state_dict names. Every refusal names the tensor and what was expected, so a person can act on it.
import { readdir, readFile, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { WorkError } from "../../errors.js";
import type { TRMConfig } from "../../model/config.js";
import { parseTRMConfig, totalLen } from "../../model/config.js";
import {
  DEFAULT_MAX_FILE,
  decodeSafetensors,
  encodeSafetensors,
  type SafetensorsContents,
  type StoredTensor,
  toFloat32,
} from "../../model/safetensors.js";
import { TRM, weightSpecs } from "../../model/trm.js";
import { sha256 } from "../../util/fs.js";
import type { Dataset } from "../dataset/index.js";
import { Vocab } from "../tasks/vocab.js";
import { isZip, readTorchCheckpoint } from "./torch-zip.js";

export const IMPORT_FORMATS = ["safetensors", "trm-repo"] as const;
export type ImportFormat = (typeof IMPORT_FORMATS)[number];

export class ImportError extends WorkError {
  override name = "ImportError";
}

/** Where checked weights came from, for the model card and the run record. */
export interface WeightsOrigin {
  /** The file's name (never the host's path: it reaches cards and MCP callers). */
  file: string;
  format: ImportFormat;
  sha256: string;
  bytes: number;
  tensors: number;
  /** How the config was found: the file's trm_config, a trm_config.json beside it, or the agent's model section. */
  config_from: "metadata" | "trm_config.json" | "model section";
  /** How the vocabulary was checked: by its content (vocab.json or the metadata's vocab_sha256) or by size only. */
  vocab_check: "content" | "size";
  /** The writer's own metadata (e.g. trainer, steps), strings only, cut short. */
  metadata: Record<string, string>;
}

export interface CheckedWeights {
  /** A model file in this project's form: reference names, F32, trm_config in the metadata. */
  model: Uint8Array;
  config: TRMConfig;
  origin: WeightsOrigin;
}

export interface ReadWeightsOptions {
  /** A weights file, or a folder holding model.safetensors (or exactly one .safetensors file). */
  path: string;
  /** Default: detected from the tensor names. */
  format?: ImportFormat;
  dataset: Dataset;
  /** The config to check against when the file carries none (the agent's model section, resolved). */
  fallbackConfig: TRMConfig;
  maxBytes?: number;
}

/** Tensor names the official repository uses, mapped to the reference's (shared/reference documents them). */
const REPO_PREFIXES = ["_orig_mod.", "model.", "inner."];
const REPO_RENAMES: [string, string][] = [
  ["embed_tokens.embedding_weight", "embed_tokens.weight"],
  ["embed_pos.embedding_weight", "embed_pos.weight"],
  ["puzzle_emb.weights", "puzzle_emb.weight"],
  ["L_level.layers.", "layers."],
  [".self_attn.qkv_proj.", ".attn.qkv."],
  [".self_attn.o_proj.", ".attn.o."],
  [".gate_up_proj.", ".gate_up."],
  [".down_proj.", ".down."],
];
/** Buffers the repository saves that are derived (rotary tables) or per-batch scratch (sparse embedding). */
const REPO_DERIVED = /^(rotary_emb\.|puzzle_emb\.local_)/;
/** Extra tensors a reference fixture carries beside the weights. */
const FIXTURE_EXTRA = /^(input|expected)\./;

export function repoName(name: string): string {
  let n = name;
  for (const p of REPO_PREFIXES) if (n.startsWith(p)) n = n.slice(p.length);
  for (const [from, to] of REPO_RENAMES) n = n.replace(from, to);
  return n;
}

function looksLikeRepo(names: Iterable<string>): boolean {
  for (const n of names)
    if (n.startsWith("_orig_mod.") || n.startsWith("model.inner.") || n.includes("L_level.")) return true;
  return false;
}

/** Checkpoint files the official repository writes (`step_<n>`), or torch.save files by extension. */
const TORCH_FILE = /^(step_(\d+)|.+\.(pt|pth|ckpt))$/;

/**
 * The weights file a path names: itself, or in a folder model.safetensors, the one .safetensors
 * file, or else the newest torch checkpoint (the highest step_<n>, as the official repository saves them).
 */
export async function resolveWeightsFile(path: string): Promise<string> {
  let st: Awaited<ReturnType<typeof stat>>;
  try {
    st = await stat(path);
  } catch (err) {
    throw new ImportError(
      `${basename(path)}: cannot read it (${(err as NodeJS.ErrnoException).code ?? err})`,
    );
  }
  if (st.isFile()) return path;
  if (!st.isDirectory()) throw new ImportError(`${basename(path)} is neither a file nor a folder`);
  const all = (await readdir(path)).sort();
  const names = all.filter((n) => n.endsWith(".safetensors"));
  if (names.includes("model.safetensors")) return join(path, "model.safetensors");
  if (names.length === 1) return join(path, names[0]!);
  if (names.length)
    throw new ImportError(
      `${basename(path)}/ holds ${names.length} .safetensors files (${names.slice(0, 5).join(", ")}); name one, or call it model.safetensors`,
    );
  const torch = all
    .map((n) => ({ n, m: TORCH_FILE.exec(n) }))
    .filter((x) => x.m)
    .sort((a, b) => Number(a.m![2] ?? -1) - Number(b.m![2] ?? -1));
  if (torch.length) return join(path, torch.at(-1)!.n);
  throw new ImportError(
    `${basename(path)}/ holds no .safetensors file and no torch checkpoint (step_<n>, *.pt)`,
  );
}

async function readBeside(file: string, name: string): Promise<string | null> {
  try {
    return await readFile(join(file, "..", name), "utf8");
  } catch {
    return null;
  }
}

/** Reads, renames and checks weights against the dataset; returns them in this project's form. */
export async function readImportWeights(o: ReadWeightsOptions): Promise<CheckedWeights> {
  const file = await resolveWeightsFile(o.path);
  const name = basename(file);
  const size = (await stat(file)).size;
  const max = o.maxBytes ?? DEFAULT_MAX_FILE;
  if (size > max) throw new ImportError(`${name}: file is ${size} bytes, more than the ${max} allowed`);
  const buf = new Uint8Array(await readFile(file));
  let contents: SafetensorsContents;
  try {
    // torch.save writes a zip archive; everything else must be safetensors.
    contents = isZip(buf)
      ? { tensors: readTorchCheckpoint(buf, name), metadata: {} }
      : decodeSafetensors(buf, name);
  } catch (err) {
    throw new ImportError((err as Error).message);
  }
  const format = o.format ?? (looksLikeRepo(contents.tensors.keys()) ? "trm-repo" : "safetensors");
  const tensors = renamed(contents.tensors, format, name);

  let config: TRMConfig;
  let configFrom: WeightsOrigin["config_from"];
  const besideConfig = await readBeside(file, "trm_config.json");
  if (contents.metadata.trm_config !== undefined) {
    config = parseConfig(contents.metadata.trm_config, `${name}: trm_config`);
    configFrom = "metadata";
  } else if (besideConfig !== null) {
    config = parseConfig(besideConfig, `${name}: trm_config.json`);
    configFrom = "trm_config.json";
  } else {
    config = o.fallbackConfig;
    configFrom = "model section";
  }

  const vocabCheck = await checkVocabulary(o.dataset, config, contents.metadata, file, name);
  checkDataShape(o.dataset, config, name);
  checkTensors(tensors, config, name);

  const model = TRM.fromSafetensors({ tensors, metadata: {} }, name, config);
  let bytes: Uint8Array;
  try {
    bytes = encodeSafetensors(model.exportTensors(), model.metadata());
  } finally {
    model.dispose();
  }
  const metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(contents.metadata))
    if (k !== "trm_config" && Object.keys(metadata).length < 16) metadata[k.slice(0, 64)] = v.slice(0, 200);
  return {
    model: bytes,
    config,
    origin: {
      file: name,
      format,
      sha256: sha256(buf),
      bytes: size,
      tensors: contents.tensors.size,
      config_from: configFrom,
      vocab_check: vocabCheck,
      metadata,
    },
  };
}

function parseConfig(text: string, source: string): TRMConfig {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new ImportError(`${source} is not JSON`);
  }
  // trm_config.json may wrap it as { model: {...} }, as a run's config.json does.
  const body =
    json && typeof json === "object" && "model" in json && typeof json.model === "object" ? json.model : json;
  try {
    return parseTRMConfig(body, source);
  } catch (err) {
    throw new ImportError((err as Error).message);
  }
}

function renamed(
  tensors: Map<string, StoredTensor>,
  format: ImportFormat,
  source: string,
): Map<string, StoredTensor> {
  if (format === "safetensors") {
    if (looksLikeRepo(tensors.keys()))
      throw new ImportError(
        `${source} holds the official repository's tensor names (e.g. L_level.*): use --format trm-repo`,
      );
    return tensors;
  }
  const out = new Map<string, StoredTensor>();
  for (const [n, t] of tensors) {
    const m = repoName(n);
    if (REPO_DERIVED.test(m)) continue;
    if (out.has(m)) throw new ImportError(`${source}: tensors "${n}" and another both map to "${m}"`);
    out.set(m, t);
  }
  return out;
}

async function checkVocabulary(
  ds: Dataset,
  cfg: TRMConfig,
  meta: Record<string, string>,
  file: string,
  source: string,
): Promise<WeightsOrigin["vocab_check"]> {
  if (cfg.vocab_size !== ds.vocab.size)
    throw new ImportError(
      `${source}: a different vocabulary: the weights have ${cfg.vocab_size} tokens, dataset ${ds.id} has ${ds.vocab.size}`,
    );
  const mine = ds.vocab.serialize();
  const beside = await readBeside(file, "vocab.json");
  if (beside !== null) {
    let theirs: string;
    try {
      theirs = Vocab.parse(beside).serialize();
    } catch (err) {
      throw new ImportError(
        `${source}: vocab.json beside it is not a vocabulary (${(err as Error).message})`,
      );
    }
    if (theirs !== mine)
      throw new ImportError(
        `${source}: a different vocabulary: vocab.json beside it differs from dataset ${ds.id}'s (same size, other tokens)`,
      );
    return "content";
  }
  if (meta.vocab_sha256 !== undefined) {
    if (meta.vocab_sha256 !== sha256(mine))
      throw new ImportError(
        `${source}: a different vocabulary: its vocab_sha256 ${meta.vocab_sha256.slice(0, 12)}… is not dataset ${ds.id}'s ${sha256(mine).slice(0, 12)}…`,
      );
    return "content";
  }
  return "size";
}

function checkDataShape(ds: Dataset, cfg: TRMConfig, source: string): void {
  if (cfg.seq_len !== ds.manifest.seq_len)
    throw new ImportError(
      `${source}: sequence length ${cfg.seq_len}, but dataset ${ds.id} has ${ds.manifest.seq_len}`,
    );
  if (cfg.num_puzzle_identifiers !== ds.manifest.num_puzzle_identifiers)
    throw new ImportError(
      `${source}: ${cfg.num_puzzle_identifiers} puzzle identifiers, but dataset ${ds.id} has ${ds.manifest.num_puzzle_identifiers} (one per task)`,
    );
}

/** Every tensor of the config present with its shape and finite; nothing else that looks like a weight. */
function checkTensors(tensors: Map<string, StoredTensor>, cfg: TRMConfig, source: string): void {
  const want = new Map<string, number[]>(weightSpecs(cfg).map((s) => [s.name, s.torchShape]));
  want.set("H_init", [cfg.hidden_size]);
  want.set("L_init", [cfg.hidden_size]);
  if (cfg.puzzle_emb_ndim > 0)
    want.set("puzzle_emb.weight", [cfg.num_puzzle_identifiers, cfg.puzzle_emb_ndim]);
  const missing = [...want.keys()].filter((n) => !tensors.has(n));
  if (missing.length)
    throw new ImportError(
      `${source}: missing tensors for this config (hidden ${cfg.hidden_size}, ${cfg.num_layers} layers, ${totalLen(cfg)} positions): ${list(missing)}`,
    );
  const extra = [...tensors.keys()].filter((n) => !want.has(n) && !FIXTURE_EXTRA.test(n));
  if (extra.length) throw new ImportError(`${source}: tensors this config does not have: ${list(extra)}`);
  const wrong: string[] = [];
  for (const [n, shape] of want) {
    const t = tensors.get(n)!;
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
      wrong.push(`"${n}" is [${t.shape}], the config needs [${shape}]`);
  }
  if (wrong.length) throw new ImportError(`${source}: wrong shapes: ${list(wrong)}`);
  for (const n of want.keys()) {
    let v: Float32Array;
    try {
      v = toFloat32(tensors.get(n)!, n);
    } catch (err) {
      throw new ImportError(`${source}: ${(err as Error).message}`);
    }
    let bad = 0;
    for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i])) bad++;
    if (bad) throw new ImportError(`${source}: "${n}" holds ${bad} NaN or infinite values`);
  }
}

function list(items: string[]): string {
  return items.length > 8 ? `${items.slice(0, 8).join(", ")} and ${items.length - 8} more` : items.join(", ");
}
