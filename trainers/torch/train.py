#!/usr/bin/env python3
"""trm-forge's own small PyTorch trainer for `runner: external` (and `models import`).

  train.py train   --data EXPORT_DIR --config CONFIG.json --out OUT_DIR [--steps N] [--device auto|cpu|cuda]
                   [--names reference|repo]
  train.py predict --weights W.safetensors --inputs X.npy --puzzle-ids P.npy --out PRED.safetensors

`train` reads the dataset that `trm-forge dataset export --format trm-npy` wrote (train/all__*.npy,
vocab.json), trains the Tiny Recursive Model with deep supervision, and writes OUT_DIR/model.safetensors
in the reference's tensor names (or the official repository's with --names repo), float32, with
trm_config, vocab_sha256 and the step count in the metadata. The file is written under a temporary
name and renamed, so a reader never sees half of it.

Progress protocol (stdout, one JSON object per line, flushed):
  {"type": "progress", "step": 3, "total_steps": 20, "loss": 2.31, "token_accuracy": 0.12, "lr": 0.0003}
Any other line is a log line. The exit status is 0 only when the weights were written.

`predict` answers as trm-forge serves: supervision steps until q_halt > 0 or halt_max_steps, and
writes logits [B, L, V], predictions [B, L], steps [B] and q_halt [B].

Needs torch and numpy only (Debian: python3-torch python3-numpy).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# ---- safetensors (u64-LE header length, JSON header, little-endian data) ----------------------------

_DT = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I32": np.int32, "I64": np.int64, "U8": np.uint8}


def write_safetensors(path, tensors, metadata):
    header, chunks, off = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        kind = {np.dtype(np.float32): "F32", np.dtype(np.int32): "I32"}[a.dtype]
        raw = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": kind, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for c in chunks:
            f.write(c)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        raw = data[8 + n + b : 8 + n + end]
        if e["dtype"] == "BF16":
            arr = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, np.dtype(_DT[e["dtype"]]).newbyteorder("<"))
        out[name] = torch.from_numpy(arr.reshape(e["shape"]).astype(arr.dtype.newbyteorder("="), copy=True))
    return out, meta


# ---- the model ---------------------------------------------------------------------------------------


def swiglu_width(size, expansion):
    w = round(expansion * size * 2 / 3)  # Python rounds halves to even, as the reference does
    return -(-w // 256) * 256


def normalise_config(c):
    c = dict(c)
    if c["puzzle_emb_ndim"] < 0:
        c["puzzle_emb_ndim"] = c["hidden_size"]
    if c["puzzle_emb_ndim"] == 0:
        c["puzzle_emb_len"] = 0
    return c


def rms(x, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


class GatedMLP(nn.Module):
    def __init__(self, size, expansion):
        super().__init__()
        self.width = swiglu_width(size, expansion)
        self.gate_up = nn.Linear(size, 2 * self.width, bias=False)
        self.down = nn.Linear(self.width, size, bias=False)

    def forward(self, x):
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class SelfAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.o = nn.Linear(dim, dim, bias=False)

    def forward(self, x, rope):
        B, S, D = x.shape
        hd = D // self.heads
        q, k, v = self.qkv(x).reshape(B, S, 3, self.heads, hd).permute(2, 0, 3, 1, 4)  # 3 x [B, H, S, hd]
        if rope is not None:
            cos, sin = rope

            def rotate(t):
                a, b = t[..., : hd // 2], t[..., hd // 2 :]
                return t * cos + torch.cat([-b, a], dim=-1) * sin

            q, k = rotate(q), rotate(k)
        w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(hd), dim=-1)
        return self.o((w @ v).transpose(1, 2).reshape(B, S, D))


class Layer(nn.Module):
    def __init__(self, c, positions):
        super().__init__()
        self.eps, self.token_mix = c["rms_norm_eps"], c["mlp_t"]
        if self.token_mix:
            self.mlp_t = GatedMLP(positions, c["expansion"])
        else:
            self.attn = SelfAttention(c["hidden_size"], c["num_heads"])
        self.mlp = GatedMLP(c["hidden_size"], c["expansion"])

    def forward(self, h, rope):
        if self.token_mix:  # mixes along the sequence; its norm runs over the sequence axis too
            t = h.transpose(1, 2)
            h = rms(t + self.mlp_t(t), self.eps).transpose(1, 2)
        else:
            h = rms(h + self.attn(h, rope), self.eps)
        return rms(h + self.mlp(h), self.eps)


class TinyRecursiveModel(nn.Module):
    def __init__(self, c, seed=0):
        super().__init__()
        self.c = c
        D, V, P = c["hidden_size"], c["vocab_size"], c["puzzle_emb_len"]
        self.S = c["seq_len"] + P
        torch.manual_seed(seed)

        def tn(shape, std):  # truncated at 2 standard deviations, as the reference initialises
            return nn.init.trunc_normal_(torch.empty(shape), std=std, a=-2 * std, b=2 * std)

        self.embed_tokens = nn.Parameter(tn((V, D), 1 / math.sqrt(D)))
        self.layers = nn.ModuleList(Layer(c, self.S) for _ in range(c["num_layers"]))
        self.lm_head = nn.Linear(D, V, bias=False)
        self.q_head = nn.Linear(D, 2, bias=True)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                m.weight.data.copy_(tn(m.weight.shape, 1 / math.sqrt(m.in_features)))
        self.q_head.weight.data.zero_()
        self.q_head.bias.data.fill_(-5.0)  # "don't halt yet" at the start
        self.embed_pos = nn.Parameter(tn((self.S, D), 1 / math.sqrt(D))) if c["pos_encodings"] == "learned" else None
        ndim = c["puzzle_emb_ndim"]
        self.puzzle_emb = nn.Parameter(torch.zeros(c["num_puzzle_identifiers"], ndim)) if ndim > 0 else None
        self.register_buffer("H_init", tn((D,), 1.0))
        self.register_buffer("L_init", tn((D,), 1.0))
        self.rope = None
        if c["pos_encodings"] == "rope" and not c["mlp_t"]:
            hd = D // c["num_heads"]
            freq = c["rope_theta"] ** (-torch.arange(0, hd, 2, dtype=torch.float32) / hd)
            angle = torch.arange(self.S, dtype=torch.float32)[:, None] * freq[None, :]
            angle = torch.cat([angle, angle], dim=-1)
            self.register_buffer("rope_cos", angle.cos(), persistent=False)
            self.register_buffer("rope_sin", angle.sin(), persistent=False)
            self.rope = True

    def inputs(self, tokens, pids):
        c = self.c
        e = self.embed_tokens[tokens]
        if self.puzzle_emb is not None:
            B, P, D = tokens.shape[0], c["puzzle_emb_len"], c["hidden_size"]
            rows = F.pad(self.puzzle_emb[pids], (0, P * D - c["puzzle_emb_ndim"]))
            e = torch.cat([rows.view(B, P, D), e], dim=1)
        if self.embed_pos is not None:
            e = 0.707106781 * (e + self.embed_pos)
        return math.sqrt(c["hidden_size"]) * e

    def f(self, state, injection):
        h = state + injection
        rope = (self.rope_cos, self.rope_sin) if self.rope else None
        for layer in self.layers:
            h = layer(h, rope)
        return h

    def step(self, zH, zL, x):
        """One supervision step: T-1 recursions without gradients, then one with."""
        c = self.c
        with torch.no_grad():
            for _ in range(c["H_cycles"] - 1):
                for _ in range(c["L_cycles"]):
                    zL = self.f(zL, zH + x)
                zH = self.f(zH, zL)
        for _ in range(c["L_cycles"]):
            zL = self.f(zL, zH + x)
        zH = self.f(zH, zL)
        logits = self.lm_head(zH)[:, c["puzzle_emb_len"] :]
        q = self.q_head(zH[:, 0])
        return zH, zL, logits, q[:, 0]

    def fresh(self, B):
        D = self.c["hidden_size"]
        return self.H_init.expand(B, self.S, D).clone(), self.L_init.expand(B, self.S, D).clone()

    # Bare parameters get the reference's ".weight" names.
    BARE = {"embed_tokens": "embed_tokens.weight", "embed_pos": "embed_pos.weight", "puzzle_emb": "puzzle_emb.weight"}

    def reference_tensors(self):
        return {self.BARE.get(k, k): v.detach().cpu().float().numpy() for k, v in self.state_dict().items()}

    def load_reference(self, tensors):
        back = {v: k for k, v in self.BARE.items()}
        self.load_state_dict({back.get(k, k): v for k, v in tensors.items()}, strict=True)


# The official repository's state_dict names (its checkpoints come from a compiled ACT wrapper).
def repo_name(name):
    n = name.replace("embed_tokens.weight", "embed_tokens.embedding_weight")
    n = n.replace("embed_pos.weight", "embed_pos.embedding_weight").replace("puzzle_emb.weight", "puzzle_emb.weights")
    if n.startswith("layers."):
        n = "L_level." + n.replace(".attn.qkv.", ".self_attn.qkv_proj.").replace(".attn.o.", ".self_attn.o_proj.")
        n = n.replace(".gate_up.", ".gate_up_proj.").replace(".down.", ".down_proj.")
    return "_orig_mod.model.inner." + n


# ---- loss ---------------------------------------------------------------------------------------------


def token_log_probs(logits, kind):
    if kind == "softmax":
        return torch.log_softmax(logits.double(), -1)
    x = logits.double()
    s = torch.where(x < 0, 1 / (1 - x), x + 1)
    return torch.log(s / s.sum(-1, keepdim=True))


def supervision_loss(c, logits, q_halt, labels):
    valid = labels != 0  # the export writes ignored labels as pad (0)
    safe = torch.where(valid, labels, torch.zeros_like(labels))
    nll = -token_log_probs(logits, c["loss_type"]).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    counts = valid.sum(-1).clamp(min=1)
    lm = ((nll * valid).sum(-1) / counts).float()
    correct = ((logits.argmax(-1) == labels) | ~valid).all(-1)
    halt = F.binary_cross_entropy_with_logits(q_halt, correct.float(), reduction="none")
    acc = ((logits.argmax(-1) == labels) & valid).sum() / valid.sum().clamp(min=1)
    return (lm + 0.5 * halt).mean(), float(acc)


# ---- commands -----------------------------------------------------------------------------------------


def emit(**event):
    print(json.dumps({"type": "progress", **event}), flush=True)


def lr_at(step, t):
    warm = t.get("warmup_steps", 0)
    if step < warm:
        return t["lr"] * (step + 1) / warm
    span = max(1, t["max_steps"] - warm)
    floor = t.get("lr_min_ratio", 1.0)
    return t["lr"] * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / span))))


def cmd_train(a):
    with open(a.config) as f:
        spec = json.load(f)
    c = normalise_config(spec["model"])
    t = dict(spec.get("train", {}))
    t.setdefault("lr", 3e-4)
    t.setdefault("batch_size", 16)
    t.setdefault("seed", 0)
    t.setdefault("weight_decay", 0.1)
    if a.steps:
        t["max_steps"] = a.steps
    t.setdefault("max_steps", 20)
    device = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else ("cpu" if a.device == "auto" else a.device))
    torch.manual_seed(t["seed"])
    split = os.path.join(a.data, "train")
    X = torch.from_numpy(np.load(os.path.join(split, "all__inputs.npy")).astype(np.int64))
    Y = torch.from_numpy(np.load(os.path.join(split, "all__labels.npy")).astype(np.int64))
    PID = torch.from_numpy(np.load(os.path.join(split, "all__puzzle_identifiers.npy")).astype(np.int64))
    with open(os.path.join(a.data, "vocab.json"), "rb") as f:
        vocab_sha = hashlib.sha256(f.read()).hexdigest()
    if X.shape[1] != c["seq_len"]:
        sys.exit(f"the export's sequence length {X.shape[1]} is not the config's {c['seq_len']}")
    print(f"training on {len(X)} examples, {t['max_steps']} steps, batch {t['batch_size']}, device {device}", flush=True)

    model = TinyRecursiveModel(c, seed=t["seed"]).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=t["lr"], betas=(0.9, 0.95), weight_decay=t["weight_decay"])
    g = torch.Generator().manual_seed(t["seed"])
    B = min(t["batch_size"], len(X))
    carry = None
    started = time.time()
    for step in range(t["max_steps"]):
        if carry is None:  # a new batch starts from the initial state; deep supervision carries it on
            idx = torch.randint(len(X), (B,), generator=g)
            zH, zL = model.fresh(B)
            carry = {"x": X[idx].to(device), "y": Y[idx].to(device), "p": PID[idx].to(device), "zH": zH, "zL": zL, "n": 0}
        for group in opt.param_groups:
            group["lr"] = lr_at(step, t)
        x = model.inputs(carry["x"], carry["p"])
        zH, zL, logits, q_halt = model.step(carry["zH"], carry["zL"], x)
        loss, acc = supervision_loss(c, logits, q_halt, carry["y"])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        carry.update(zH=zH.detach(), zL=zL.detach(), n=carry["n"] + 1)
        if carry["n"] >= c["halt_max_steps"] or bool((q_halt > 0).all()):
            carry = None
        elapsed = time.time() - started
        emit(step=step + 1, total_steps=t["max_steps"], loss=round(float(loss), 6), token_accuracy=round(acc, 6),
             lr=lr_at(step, t), eta_s=round(elapsed / (step + 1) * (t["max_steps"] - step - 1), 1))

    os.makedirs(a.out, exist_ok=True)
    tensors = model.reference_tensors()
    if a.names == "repo":
        tensors = {repo_name(k): v for k, v in tensors.items()}
    meta = {"format": "trm-ref-v1", "trm_config": json.dumps(c), "vocab_sha256": vocab_sha,
            "trainer": "trm-forge-torch/1", "steps": t["max_steps"], "torch": torch.__version__}
    write_safetensors(os.path.join(a.out, a.output), tensors, meta)
    print(f"wrote {a.output} after {t['max_steps']} steps", flush=True)


def cmd_predict(a):
    weights, meta = read_safetensors(a.weights)
    c = normalise_config(json.loads(meta["trm_config"]))
    model = TinyRecursiveModel(c)
    model.load_reference({k: v for k, v in weights.items() if not k.startswith(("input.", "expected."))})
    model.eval()
    X = torch.from_numpy(np.load(a.inputs).astype(np.int64))
    PID = torch.from_numpy(np.load(a.puzzle_ids).astype(np.int64))
    B, L, V = X.shape[0], c["seq_len"], c["vocab_size"]
    out_logits = torch.zeros(B, L, V)
    out_q = torch.zeros(B)
    steps = torch.zeros(B, dtype=torch.int32)
    max_steps = a.max_steps or c["halt_max_steps"]
    with torch.no_grad():
        zH, zL = model.fresh(B)
        x = model.inputs(X, PID)
        live = torch.ones(B, dtype=torch.bool)
        for s in range(1, max_steps + 1):
            zH, zL, logits, q = model.step(zH, zL, x)
            done = live & ((q > 0) | (s == max_steps))
            out_logits[done], out_q[done], steps[done] = logits[done], q[done], s
            live &= ~done
            if not live.any():
                break
    write_safetensors(a.out, {"logits": out_logits.numpy(), "predictions": out_logits.argmax(-1).to(torch.int32).numpy(),
                              "steps": steps.numpy(), "q_halt": out_q.numpy()}, {"trainer": "trm-forge-torch/1"})


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--data", required=True)
    t.add_argument("--config", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--output", default="model.safetensors")
    t.add_argument("--steps", type=int, default=0)
    t.add_argument("--device", default="auto")
    t.add_argument("--names", choices=["reference", "repo"], default="reference")
    q = sub.add_parser("predict")
    q.add_argument("--weights", required=True)
    q.add_argument("--inputs", required=True)
    q.add_argument("--puzzle-ids", required=True)
    q.add_argument("--out", required=True)
    q.add_argument("--max-steps", type=int, default=0)
    a = p.parse_args()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    cmd_train(a) if a.cmd == "train" else cmd_predict(a)


if __name__ == "__main__":
    main()
