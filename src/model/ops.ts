// The few fused operations the TRM spends its time in. Each has a composite implementation
// from plain tf ops, which runs on every backend; a backend that registers a kernel of the
// same name (the native CPU backend does) runs that instead, with the gradient registered here.
import * as tf from "@tensorflow/tfjs-core";
import "./gradients.js";

export interface RopeTables {
  /** [S, hd] cosines and sines in the rotate-half layout: cat(freqs, freqs). */
  cos: tf.Tensor2D;
  sin: tf.Tensor2D;
}

/** Kernel names a backend may register to run the fused ops natively (forward and backward). */
export const FusedKernel = {
  RmsNorm: "TrmRmsNorm",
  RmsNormGrad: "TrmRmsNormGrad",
  AddRmsNorm: "TrmAddRmsNorm",
  SiluGateMul: "TrmSiluGateMul",
  SiluGateMulGrad: "TrmSiluGateMulGrad",
  Attention: "TrmAttention",
  AttentionRope: "TrmAttentionRope",
  AttentionGrad: "TrmAttentionGrad",
  LogStablemax: "TrmLogStablemax",
  LogStablemaxGrad: "TrmLogStablemaxGrad",
  Linear: "TrmLinear",
} as const;

function hasKernel(name: string, x: tf.Tensor): boolean {
  return x.dtype === "float32" && tf.getKernel(name, tf.getBackend()) !== undefined;
}

function run(name: string, inputs: tf.NamedTensorMap, attrs: Record<string, number> = {}): tf.Tensor {
  return tf.engine().runKernel(name, inputs, attrs) as tf.Tensor;
}

/** x @ w for x [..., in] and w [in, out] (weights are stored transposed from torch's [out, in]). */
export function linear(x: tf.Tensor, w: tf.Tensor2D): tf.Tensor {
  // The fused kernel takes any rank directly: a reshape around it would hold its gradient's
  // memory to the end of the backward pass.
  if (hasKernel(FusedKernel.Linear, x)) return run(FusedKernel.Linear, { x, w });
  const shape = x.shape;
  const inDim = shape[shape.length - 1];
  const x2 = x.rank === 2 ? (x as tf.Tensor2D) : tf.reshape(x, [-1, inDim]);
  const y = tf.matMul(x2 as tf.Tensor2D, w);
  return x.rank === 2 ? y : tf.reshape(y, [...shape.slice(0, -1), w.shape[1]]);
}

/** Parameter-free RMSNorm over the last axis: x * rsqrt(mean(x^2) + eps). */
export function rmsNorm(x: tf.Tensor, eps: number): tf.Tensor {
  if (hasKernel(FusedKernel.RmsNorm, x))
    return first(tf.engine().runKernel(FusedKernel.RmsNorm, { x }, { eps }));
  return tf.tidy(() => {
    const ms = tf.mean(tf.square(x), -1, true);
    return tf.mul(x, tf.rsqrt(tf.add(ms, eps)));
  });
}

/**
 * rmsNorm(a + b): the post-norm residual of a block in one pass. The fused kernel keeps only its
 * output for backward, where the separate add would keep both of its inputs.
 */
export function addRmsNorm(a: tf.Tensor, b: tf.Tensor, eps: number): tf.Tensor {
  if (
    hasKernel(FusedKernel.AddRmsNorm, a) &&
    b.dtype === "float32" &&
    tf.util.arraysEqual(a.shape, b.shape)
  ) {
    return first(tf.engine().runKernel(FusedKernel.AddRmsNorm, { a, b }, { eps }));
  }
  return rmsNorm(tf.add(a, b), eps);
}

/** The first output of a multi-output kernel; the others are only for its gradient. */
function first(outs: tf.Tensor | tf.Tensor[]): tf.Tensor {
  if (!Array.isArray(outs)) return outs;
  tf.dispose(outs.slice(1));
  return outs[0]!;
}

/** SwiGLU activation on the fused gate|up projection [..., 2I] -> silu(gate) * up, [..., I]. */
export function siluGateMul(gateUp: tf.Tensor): tf.Tensor {
  if (hasKernel(FusedKernel.SiluGateMul, gateUp)) return run(FusedKernel.SiluGateMul, { gateUp });
  return tf.tidy(() => {
    const [g, u] = tf.split(gateUp, 2, -1);
    return tf.mul(tf.mul(g, tf.sigmoid(g)), u);
  });
}

/** Rotate-half RoPE on x [B, S, H, hd]. */
export function applyRope(x: tf.Tensor4D, rope: RopeTables): tf.Tensor4D {
  return tf.tidy(() => {
    const hd = x.shape[3];
    const half = hd / 2;
    const [a, b] = tf.split(x, [half, half], 3);
    const rot = tf.concat([tf.neg(b), a], 3);
    const cos = tf.reshape(rope.cos, [1, rope.cos.shape[0], 1, hd]);
    const sin = tf.reshape(rope.sin, [1, rope.sin.shape[0], 1, hd]);
    return tf.add(tf.mul(x, cos), tf.mul(rot, sin)) as tf.Tensor4D;
  });
}

/**
 * Bidirectional multi-head attention on a fused projection qkv [B, S, 3D] (q | k | v, each
 * head-major), with optional RoPE on q and k. Returns the heads merged back: [B, S, D].
 */
export function attention(qkv: tf.Tensor3D, numHeads: number, rope: RopeTables | null): tf.Tensor3D {
  if (rope && hasKernel(FusedKernel.AttentionRope, qkv)) {
    return run(FusedKernel.AttentionRope, { qkv, cos: rope.cos, sin: rope.sin }, { numHeads }) as tf.Tensor3D;
  }
  if (!rope && hasKernel(FusedKernel.Attention, qkv)) {
    return run(FusedKernel.Attention, { qkv }, { numHeads }) as tf.Tensor3D;
  }
  return tf.tidy(() => {
    const [B, S, D3] = qkv.shape;
    const D = D3 / 3;
    const hd = D / numHeads;
    const parts = tf.split(tf.reshape(qkv, [B, S, 3, numHeads, hd]), 3, 2);
    let q = tf.reshape(parts[0], [B, S, numHeads, hd]) as tf.Tensor4D;
    let k = tf.reshape(parts[1], [B, S, numHeads, hd]) as tf.Tensor4D;
    const v = tf.reshape(parts[2], [B, S, numHeads, hd]) as tf.Tensor4D;
    if (rope) {
      q = applyRope(q, rope);
      k = applyRope(k, rope);
    }
    const qh = tf.transpose(q, [0, 2, 1, 3]); // [B, H, S, hd]
    const kh = tf.transpose(k, [0, 2, 1, 3]);
    const vh = tf.transpose(v, [0, 2, 1, 3]);
    const scores = tf.mul(tf.matMul(qh, kh, false, true), 1 / Math.sqrt(hd));
    const out = tf.matMul(tf.softmax(scores), vh); // [B, H, S, hd]
    return tf.reshape(tf.transpose(out, [0, 2, 1, 3]), [B, S, D]) as tf.Tensor3D;
  });
}

/** log(stablemax(x)) over the last axis: s(x) = x + 1 for x >= 0, 1 / (1 - x) for x < 0. */
export function logStablemax(x: tf.Tensor): tf.Tensor {
  if (hasKernel(FusedKernel.LogStablemax, x)) return run(FusedKernel.LogStablemax, { x });
  return tf.tidy(() => {
    const pos = tf.add(x, 1);
    // 1e-30 guards the division exactly as the reference does.
    const neg = tf.div(1, tf.add(tf.sub(1, x), 1e-30));
    const s = tf.where(tf.less(x, 0), neg, pos);
    return tf.sub(tf.log(s), tf.log(tf.sum(s, -1, true)));
  });
}

// Gradients of the fused kernels: each backward is a kernel of its own on the same backend.
// Only inputs that need a gradient are differentiated (rope tables are constants).
//
// tfjs keeps every saved tensor and every intermediate gradient until the whole backward pass
// is over, which more than doubles the peak memory of a training step. Here each gradient frees
// what it consumed as soon as its closures have run: its saved tensors (private clones) and its
// dy when the backward pass made it (never a caller's dy). A dy is final once its node runs,
// since backprop walks the tape in reverse; see unaliasGradients for the one way it could be
// shared.

interface EngineScopes {
  state: { scopeStack: Array<{ id: number; name: string }> };
}

/** True when t was made by the running backward pass (not passed in by the caller). */
function madeByBackward(t: tf.Tensor): boolean {
  const stack = (tf.engine() as unknown as EngineScopes).state.scopeStack;
  // Inside a gradient closure: [..., "backward", the closure's own tidy].
  const backward = stack[stack.length - 2];
  return (
    backward?.name === "backward" && (t as unknown as { scopeId?: number }).scopeId === backward.id && !t.kept
  );
}

/** Runs each closure's f; after `uses` of them, frees the saved tensors and a backward-made dy. */
function freeAfter(saved: tf.Tensor[], uses: number, dy?: tf.Tensor) {
  let left = uses;
  return <T>(f: () => T): T => {
    const out = f();
    if (--left === 0) {
      tf.dispose(saved);
      if (dy && !dy.isDisposed && madeByBackward(dy)) dy.dispose();
    }
    return out;
  };
}

/**
 * Makes every registered gradient return distinct tensors for distinct inputs (a zero-copy clone
 * where a gradient hands the same tensor to two inputs, as x + y's does). Two map entries holding
 * one tensor would make freeing a consumed dy unsafe. Runs once, over what is registered now.
 */
function unaliasGradients(): void {
  const flag = Symbol.for("trm-forge.unaliased-gradients");
  const g = globalThis as Record<symbol, Set<string> | undefined>;
  const done = g[flag] ?? new Set<string>();
  g[flag] = done;
  const names = (Object.values(tf) as unknown[]).filter((v): v is string => typeof v === "string");
  for (const name of names) {
    const cfg = tf.getGradient(name);
    if (!cfg || done.has(name) || name.startsWith("Trm")) continue;
    done.add(name);
    const inner = cfg.gradFunc;
    tf.unregisterGradient(name);
    tf.registerGradient({
      ...cfg,
      gradFunc: (dy, saved, attrs) => {
        const grads = inner(dy, saved, attrs);
        const given = new Set<tf.Tensor>();
        const out: Record<string, () => tf.Tensor> = {};
        for (const [input, f] of Object.entries(grads)) {
          out[input] = () => {
            const t = f();
            if (given.has(t)) return tf.clone(t);
            given.add(t);
            return t;
          };
        }
        return out;
      },
    });
  }
}
unaliasGradients();

// RMSNorm keeps its output y and per-row scale r (y is the next layer's input, alive anyway)
// rather than its input; dx = r (dy - y mean(dy y)).
function rmsNormBackward(dys: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], uses: number) {
  const [dy, dr] = dys as tf.Tensor[];
  const [y, r] = saved;
  const done = freeAfter(saved, uses, dy);
  return () =>
    done(() => {
      const dx = run(FusedKernel.RmsNormGrad, { dy: dy!, y: y!, r: r! });
      // The scale's own gradient is the zeros the engine made for an unused output.
      if (dr && !dr.isDisposed && madeByBackward(dr)) dr.dispose();
      return dx;
    });
}

tf.registerGradient({
  kernelName: FusedKernel.RmsNorm,
  outputsToSave: [true, true],
  gradFunc: (dys, saved) => ({ x: rmsNormBackward(dys, saved, 1) }),
});

// d(a + b) = dx for both; each input gets a tensor of its own (computed twice: one cheap pass,
// where sharing one tensor would keep it to the end of the backward pass).
tf.registerGradient({
  kernelName: FusedKernel.AddRmsNorm,
  outputsToSave: [true, true],
  gradFunc: (dys, saved) => {
    const dx = rmsNormBackward(dys, saved, 2);
    return { a: dx, b: dx };
  },
});

tf.registerGradient({
  kernelName: FusedKernel.SiluGateMul,
  inputsToSave: ["gateUp"],
  gradFunc: (dy, saved) => {
    const done = freeAfter(saved, 1, dy as tf.Tensor);
    return {
      gateUp: () => done(() => run(FusedKernel.SiluGateMulGrad, { dy: dy as tf.Tensor, gateUp: saved[0] })),
    };
  },
});

tf.registerGradient({
  kernelName: FusedKernel.Attention,
  inputsToSave: ["qkv"],
  gradFunc: (dy, saved, attrs) => {
    const done = freeAfter(saved, 1, dy as tf.Tensor);
    return {
      qkv: () =>
        done(() =>
          run(
            FusedKernel.AttentionGrad,
            { dy: dy as tf.Tensor, qkv: saved[0] },
            attrs as { numHeads: number },
          ),
        ),
    };
  },
});

tf.registerGradient({
  kernelName: FusedKernel.AttentionRope,
  inputsToSave: ["qkv", "cos", "sin"],
  gradFunc: (dy, saved, attrs) => {
    const [qkv, cos, sin] = saved;
    const done = freeAfter([qkv], 1, dy as tf.Tensor);
    return {
      qkv: () =>
        done(() =>
          run(
            FusedKernel.AttentionGrad,
            { dy: dy as tf.Tensor, qkv, cos, sin },
            attrs as { numHeads: number },
          ),
        ),
      cos: () => tf.zeros(cos.shape),
      sin: () => tf.zeros(sin.shape),
    };
  },
});

tf.registerGradient({
  kernelName: FusedKernel.LogStablemax,
  inputsToSave: ["x"],
  gradFunc: (dy, saved) => {
    const done = freeAfter(saved, 1, dy as tf.Tensor);
    return { x: () => done(() => run(FusedKernel.LogStablemaxGrad, { dy: dy as tf.Tensor, x: saved[0] })) };
  },
});

// y = x w: dx = dy w^T, dw = x^T dy over all leading axes. x and dy are freed after both have
// run (when one of them is pruned because its input is a constant, they live to the end of the
// pass as usual).
tf.registerGradient({
  kernelName: FusedKernel.Linear,
  inputsToSave: ["x", "w"],
  gradFunc: (dy, saved) => {
    const [x, w] = saved;
    const g = dy as tf.Tensor;
    const [inDim, outDim] = w.shape;
    const done = freeAfter(saved, 2, g);
    return {
      x: () => done(() => tf.reshape(tf.matMul(tf.reshape(g, [-1, outDim]), w, false, true), x.shape)),
      w: () => done(() => tf.matMul(tf.reshape(x, [-1, inDim]), tf.reshape(g, [-1, outDim]), true, false)),
    };
  },
});
