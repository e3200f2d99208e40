import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { writeRawHomelab } from "../../../src/bench/homelab-raw.js";
import { type Config, parseConfig } from "../../../src/config/index.js";
import { predictBatch } from "../../../src/model/act.js";
import { initBackend } from "../../../src/model/backend.js";
import type { TRMConfig } from "../../../src/model/config.js";
import {
  decodeSafetensors,
  encodeSafetensors,
  type StoredTensor,
  type TensorToWrite,
  toFloat32,
  toInt32,
} from "../../../src/model/safetensors.js";
import { Trainer } from "../../../src/model/trainer.js";
import { TRM } from "../../../src/model/trm.js";
import {
  buildDataset,
  type Dataset,
  exportTrmNpy,
  npyBytes,
  openDataset,
} from "../../../src/pipeline/dataset/index.js";
import { ModelRegistry } from "../../../src/pipeline/deploy/registry.js";
import { configForDataset, ImportError, importModel } from "../../../src/pipeline/import/index.js";
import { repoName } from "../../../src/pipeline/import/weights.js";
import { FsStore } from "../../../src/store/index.js";
import { sha256 } from "../../../src/util/fs.js";
import { logTraceDataset, tinyModel } from "../../helpers/tiny-config.js";
import { TRAINER, torchPython } from "../helpers/torch.js";

const dir = mkdtempSync(join(tmpdir(), "trm-import-"));
const store = new FsStore(join(dir, "store"));
const registry = new ModelRegistry(store, { dataDir: join(dir, "data") });
let config: Config;
let ds: Dataset;
let cfg: TRMConfig;

/** A model file as this project writes it, as a tensor map to tamper with. */
function tensorsOf(bytes: Uint8Array): {
  tensors: Map<string, TensorToWrite>;
  metadata: Record<string, string>;
} {
  const file = decodeSafetensors(bytes);
  const tensors = new Map<string, TensorToWrite>();
  for (const [n, t] of file.tensors) tensors.set(n, { shape: t.shape, data: toFloat32(t as StoredTensor) });
  return { tensors, metadata: file.metadata };
}

function write(name: string, tensors: Map<string, TensorToWrite>, metadata: Record<string, string>): string {
  const path = join(dir, name);
  writeFileSync(path, encodeSafetensors(tensors, metadata));
  return path;
}

const run = (path: string, extra: Partial<Parameters<typeof importModel>[0]> = {}) =>
  importModel({ config, store, registry, agent: "sre", path, actor: "cli:tester", ...extra });

beforeAll(async () => {
  await initBackend("auto");
  config = parseConfig({
    data_dir: join(dir, "data"),
    agents: { sre: {} },
    model: tinyModel({ L_cycles: 2, halt_max_steps: 3 }),
    train: { batch_size: 8, max_steps: 6, lr: 0.003, warmup_steps: 0 },
    dataset: logTraceDataset(80),
    gate: { min_examples: 5 },
  });
  await writeRawHomelab({
    store,
    agent: "sre",
    days: 4,
    files: 10,
    logLines: 600,
    traces: 300,
    series: 6,
    end: Date.parse("2026-11-29T00:00:00Z"),
  });
  await buildDataset({ store, agent: "sre", config: config.dataset });
  ds = await openDataset(store, "sre");
  cfg = configForDataset(config, ds);
}, 120_000);

describe("models import: hostile and mismatched files", () => {
  let good: { tensors: Map<string, TensorToWrite>; metadata: Record<string, string> };
  beforeAll(() => {
    const t = Trainer.create(cfg, {}, 3);
    good = tensorsOf(t.exportModel());
    t.dispose();
  });
  const variant = (
    edit: (t: Map<string, TensorToWrite>, m: Record<string, string>) => void,
    name: string,
  ) => {
    const tensors = new Map(good.tensors);
    const metadata = { ...good.metadata };
    edit(tensors, metadata);
    return write(name, tensors, metadata);
  };

  it("names a missing tensor, an extra one, a wrong shape and a NaN weight", async () => {
    const missing = variant((t) => t.delete("layers.1.mlp.down.weight"), "missing.safetensors");
    await expect(run(missing)).rejects.toThrow(
      /missing tensors for this config.*layers\.1\.mlp\.down\.weight/,
    );
    const extra = variant(
      (t) => t.set("layers.7.attn.o.weight", { shape: [1], data: new Float32Array(1) }),
      "extra.safetensors",
    );
    await expect(run(extra)).rejects.toThrow(/tensors this config does not have: layers\.7\.attn\.o\.weight/);
    const shape = variant((t) => {
      const w = t.get("lm_head.weight")!;
      t.set("lm_head.weight", { shape: [w.shape[1]!, w.shape[0]!], data: w.data });
    }, "shape.safetensors");
    await expect(run(shape)).rejects.toThrow(
      new RegExp(
        `wrong shapes: "lm_head.weight" is \\[${cfg.hidden_size},${cfg.vocab_size}\\], the config needs \\[${cfg.vocab_size},${cfg.hidden_size}\\]`,
      ),
    );
    const nan = variant((t) => {
      const w = t.get("layers.0.attn.qkv.weight")!;
      const data = Float32Array.from(w.data as Float32Array);
      data[5] = Number.NaN;
      data[9] = Number.POSITIVE_INFINITY;
      t.set("layers.0.attn.qkv.weight", { shape: w.shape, data });
    }, "nan.safetensors");
    await expect(run(nan)).rejects.toThrow(/"layers\.0\.attn\.qkv\.weight" holds 2 NaN or infinite values/);
    expect((await registry.read("sre")).versions).toEqual([]);
  });

  it("refuses a different vocabulary, by size and by content", async () => {
    const t = Trainer.create({ ...cfg, vocab_size: cfg.vocab_size - 2 }, {}, 3);
    const small = write("small-vocab.safetensors", tensorsOf(t.exportModel()).tensors, t.model.metadata());
    t.dispose();
    await expect(run(small)).rejects.toThrow(
      new RegExp(
        `a different vocabulary: the weights have ${cfg.vocab_size - 2} tokens, dataset ${ds.id} has ${cfg.vocab_size}`,
      ),
    );
    const other = variant((_, m) => {
      m.vocab_sha256 = sha256("another vocabulary");
    }, "other-vocab.safetensors");
    await expect(run(other)).rejects.toThrow(ImportError);
    await expect(run(other)).rejects.toThrow(/a different vocabulary: its vocab_sha256/);
    // A vocab.json beside the weights is compared by content.
    const folder = join(dir, "beside");
    mkdirSync(folder);
    writeFileSync(join(folder, "model.safetensors"), encodeSafetensors(good.tensors, good.metadata));
    const vocab = JSON.parse(ds.vocab.serialize());
    vocab.classes = [...vocab.classes].reverse();
    writeFileSync(join(folder, "vocab.json"), JSON.stringify(vocab));
    await expect(run(folder)).rejects.toThrow(/vocab\.json beside it differs/);
  });

  it("reads the official repository's state_dict names, and says so when they come without --format trm-repo", async () => {
    const renamed = new Map<string, TensorToWrite>();
    const toRepo = (n: string) =>
      `_orig_mod.model.inner.${n
        .replace("embed_tokens.weight", "embed_tokens.embedding_weight")
        .replace("puzzle_emb.weight", "puzzle_emb.weights")
        .replace(/^layers\./, "L_level.layers.")
        .replace(".attn.qkv.", ".self_attn.qkv_proj.")
        .replace(".attn.o.", ".self_attn.o_proj.")
        .replace(".gate_up.", ".gate_up_proj.")
        .replace(".down.", ".down_proj.")}`;
    for (const [n, t] of good.tensors) renamed.set(toRepo(n), t);
    // Derived buffers the repository saves are dropped.
    renamed.set("_orig_mod.model.inner.rotary_emb.cos_cached", { shape: [2], data: new Float32Array(2) });
    for (const n of renamed.keys())
      if (!n.includes("rotary")) expect(good.tensors.has(repoName(n))).toBe(true);
    const path = write("repo.safetensors", renamed, { trm_config: good.metadata.trm_config! });
    await expect(run(path, { format: "safetensors" })).rejects.toThrow(/use --format trm-repo/);
    const r = await run(path, { format: "trm-repo" });
    expect(r.origin.format).toBe("trm-repo");
    expect(r.origin.config_from).toBe("metadata");
    expect(r.origin.vocab_check).toBe("size");
    const m = await registry.getManifest("sre", r.version);
    expect(m.created_by).toBe("import:cli:tester");
    expect(m.lineage.run_id).toBeNull();
    const card = (await registry.readArtifact("sre", r.version, "card.md")).toString("utf8");
    expect(card).toContain("## Origin");
    expect(card).toContain("`repo.safetensors` (official TinyRecursiveModels state_dict names");
    expect(card).toContain("by size only");
    // The stored weights answer exactly as the file's.
    const stored = TRM.fromSafetensors(
      decodeSafetensors(await registry.readArtifact("sre", r.version, "model.safetensors")),
    );
    const orig = TRM.fromSafetensors(decodeSafetensors(encodeSafetensors(good.tensors, good.metadata)));
    const b = ds.val.batch([0, 1, 2]);
    const a1 = predictBatch(stored, stored.weights, { tokens: b.inputs, puzzleIds: b.puzzleIds });
    const a2 = predictBatch(orig, orig.weights, { tokens: b.inputs, puzzleIds: b.puzzleIds });
    expect(Array.from(a1.logits)).toEqual(Array.from(a2.logits));
    stored.dispose();
    orig.dispose();
  });
});

/** A zip archive of stored (uncompressed) entries, as torch.save writes them. */
function storedZip(entries: [string, Uint8Array][]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const [name, data] of entries) {
    const n = Buffer.from(name);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(n.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(n.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, n, Buffer.from(data));
    centrals.push(central, n);
    offset += 30 + n.length + data.length;
  }
  const dir = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(dir.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, dir, end]);
}

describe("models import: torch.save checkpoints", () => {
  it("refuses a pickle that names anything but tensors and storages, and never runs it", async () => {
    const evil = Buffer.from("\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85R.", "latin1");
    const path = join(dir, "step_1");
    writeFileSync(path, storedZip([["ckpt/data.pkl", evil]]));
    await expect(run(path)).rejects.toThrow(/step_1: data\.pkl: refuses the global os\.system/);
    writeFileSync(path, storedZip([["ckpt/version", Buffer.from("3\n")]]));
    await expect(run(path)).rejects.toThrow(/the archive has no data\.pkl/);
  });
});

describe.skipIf(!torchPython())("import round trip with PyTorch", () => {
  it("exports, trains with the PyTorch trainer, imports, evaluates, promotes, and predicts as PyTorch does", async () => {
    const py = torchPython()!;
    const exportDir = join(dir, "rt-export");
    const out = join(dir, "rt-out");
    await exportTrmNpy(ds, exportDir);
    writeFileSync(join(dir, "rt-config.json"), JSON.stringify({ model: cfg, train: config.train }));
    const log = execFileSync(
      py,
      [
        TRAINER,
        "train",
        "--data",
        exportDir,
        "--config",
        join(dir, "rt-config.json"),
        "--out",
        out,
        "--device",
        "cpu",
      ],
      { encoding: "utf8", timeout: 300_000 },
    );
    const progress = log
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l));
    expect(progress.map((p) => p.step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(
      progress.every((p) => p.type === "progress" && p.total_steps === 6 && Number.isFinite(p.loss)),
    ).toBe(true);

    const before = (await registry.read("sre")).aliases.champion;
    const r = await run(out);
    expect(r.origin.file).toBe("model.safetensors");
    expect(r.origin.vocab_check).toBe("content");
    expect(r.origin.metadata.trainer).toBe("trm-forge-torch/1");
    expect(r.champion_before).toBe(before);
    const m = await registry.getManifest("sre", r.version);
    expect(m.gate).toEqual(r.gate);
    expect(Object.keys(m.scores).sort()).toEqual(["log_triage", "trace_outcome"]);
    const metrics = JSON.parse(
      (await registry.readArtifact("sre", r.version, "metrics.json")).toString("utf8"),
    );
    expect(metrics.evaluation.tasks.log_triage.baselines).not.toEqual({});
    // The gate decides: promoted exactly when it passed.
    const index = await registry.read("sre");
    expect(r.promoted_to).toBe(r.gate.passed ? "champion" : null);
    expect(index.aliases.champion).toBe(r.gate.passed ? r.version : before);
    if (!r.gate.passed)
      await registry.promote("sre", r.version, { actor: "cli:tester", reason: "parity check", force: true });
    expect((await registry.read("sre")).aliases.champion).toBe(r.version);

    // The champion answers the validation inputs as PyTorch does.
    const idx = Array.from({ length: Math.min(24, ds.val.size) }, (_, i) => i);
    const b = ds.val.batch(idx);
    writeFileSync(join(dir, "x.npy"), npyBytes(b.inputs, [idx.length, cfg.seq_len]));
    writeFileSync(join(dir, "p.npy"), npyBytes(b.puzzleIds, [idx.length]));
    execFileSync(py, [
      TRAINER,
      "predict",
      "--weights",
      join(out, "model.safetensors"),
      "--inputs",
      join(dir, "x.npy"),
      "--puzzle-ids",
      join(dir, "p.npy"),
      "--out",
      join(dir, "pred.safetensors"),
    ]);
    const torch = decodeSafetensors(readFileSync(join(dir, "pred.safetensors")));
    const champ = TRM.fromSafetensors(
      decodeSafetensors(await registry.readArtifact("sre", r.version, "model.safetensors")),
    );
    const mine = predictBatch(champ, champ.weights, { tokens: b.inputs, puzzleIds: b.puzzleIds });
    champ.dispose();
    const tLogits = toFloat32(torch.tensors.get("logits")!);
    const tPred = toInt32(torch.tensors.get("predictions")!);
    const tSteps = toInt32(torch.tensors.get("steps")!);
    let maxDiff = 0;
    let scale = 0;
    for (let i = 0; i < tLogits.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(tLogits[i]! - mine.logits[i]!));
      scale = Math.max(scale, Math.abs(tLogits[i]!));
    }
    console.log(
      `import parity: max |logit diff| ${maxDiff.toExponential(2)} at logit scale ${scale.toFixed(2)}`,
    );
    expect(maxDiff).toBeLessThan(1e-4 * Math.max(1, scale));
    expect(Array.from(mine.steps)).toEqual(Array.from(tSteps));
    expect(Array.from(mine.predictions)).toEqual(Array.from(tPred));
  }, 600_000);

  it("reads the official repository's torch.save checkpoint (state_dict names, a step_<n> file, trm_config.json beside it)", async () => {
    const py = torchPython()!;
    const ckpt = join(dir, "repo-ckpt");
    mkdirSync(ckpt);
    // The round trip's weights, saved as the official repository saves its model: torch.save of a
    // state_dict under _orig_mod.model.inner.*, with its rotary buffers, one tensor a transposed view.
    const script = [
      "import sys, json, collections, torch",
      `sys.path.insert(0, ${JSON.stringify(join(TRAINER, ".."))})`,
      "import train as T",
      `w, meta = T.read_safetensors(${JSON.stringify(join(dir, "rt-out", "model.safetensors"))})`,
      "sd = collections.OrderedDict((T.repo_name(k), v) for k, v in sorted(w.items()))",
      "sd['_orig_mod.model.inner.rotary_emb.cos_cached'] = torch.zeros(4, 2)",
      "k = '_orig_mod.model.inner.lm_head.weight'",
      "sd[k] = sd[k].t().contiguous().t()",
      `torch.save(sd, ${JSON.stringify(join(ckpt, "step_6"))})`,
      `open(${JSON.stringify(join(ckpt, "trm_config.json"))}, 'w').write(meta['trm_config'])`,
    ].join("\n");
    execFileSync(py, ["-c", script]);
    writeFileSync(join(ckpt, "step_2"), "an older checkpoint, not read");
    const r = await run(ckpt);
    expect(r.origin).toMatchObject({ file: "step_6", format: "trm-repo", config_from: "trm_config.json" });
    const index = await registry.read("sre");
    const first = index.versions.find(
      (v) => v.version !== r.version && v.parent_version === null && v.run_id === null,
    );
    expect(first).toBeDefined();
    // Same weights as the safetensors import of the round trip: the same model file.
    const rt = index.aliases.champion!;
    expect(sha256(await registry.readArtifact("sre", r.version, "model.safetensors"))).toBe(
      sha256(await registry.readArtifact("sre", rt, "model.safetensors")),
    );
  }, 300_000);
});
