// Gradients of the standard kernels the TRM differentiates through. tfjs-core's Node build ships
// no gradients at all (the @tensorflow/tfjs union package registers them), and even that set has
// none for comparisons such as Less, which a tf.where condition puts on the gradient path. Each
// one is written from the math and registered only where no gradient exists yet, so the official
// ones win when tfjs-node brings them along.
import * as tf from "@tensorflow/tfjs-core";

type Attrs = Record<string, unknown>;
type GradMap = Record<string, () => tf.Tensor>;
type GradFunc = (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: Attrs) => GradMap;

function define(
  kernelName: string,
  gradFunc: GradFunc,
  save: { inputs?: string[]; outputs?: boolean[]; all?: boolean } = {},
): void {
  if (tf.getGradient(kernelName)) return;
  tf.registerGradient({
    kernelName,
    inputsToSave: save.inputs,
    outputsToSave: save.outputs,
    saveAllInputs: save.all,
    gradFunc: gradFunc as tf.GradConfig["gradFunc"],
  });
}

const one = (dy: tf.Tensor | tf.Tensor[]) => dy as tf.Tensor;

/** Sums a broadcast gradient back to the shape of the input it came from. */
function unbroadcast(g: tf.Tensor, shape: number[]): tf.Tensor {
  if (g.rank === shape.length && g.shape.every((d, i) => d === shape[i])) return g;
  const lead = g.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++) if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  return tf.reshape(axes.length ? tf.sum(g, axes) : g, shape);
}

function normAxes(axis: unknown, rank: number): number[] {
  if (axis === null || axis === undefined) return Array.from({ length: rank }, (_, i) => i);
  const list = Array.isArray(axis) ? (axis as number[]) : [axis as number];
  return list.map((a) => (a < 0 ? a + rank : a));
}

/** Shape of a reduction's output with the reduced axes kept as 1. */
function keptShape(shape: number[], axes: number[]): number[] {
  return shape.map((d, i) => (axes.includes(i) ? 1 : d));
}

// ---- elementwise binary (with broadcasting) ----------------------------------------------
define(
  "Add",
  (dy, [a, b]) => ({ a: () => unbroadcast(one(dy), a!.shape), b: () => unbroadcast(one(dy), b!.shape) }),
  { inputs: ["a", "b"] },
);
define(
  "Sub",
  (dy, [a, b]) => ({
    a: () => unbroadcast(one(dy), a!.shape),
    b: () => unbroadcast(tf.neg(one(dy)), b!.shape),
  }),
  { inputs: ["a", "b"] },
);
define(
  "Multiply",
  (dy, [a, b]) => ({
    a: () => unbroadcast(tf.mul(one(dy), b!), a!.shape),
    b: () => unbroadcast(tf.mul(one(dy), a!), b!.shape),
  }),
  { inputs: ["a", "b"] },
);
define(
  "RealDiv",
  (dy, [a, b]) => ({
    a: () => unbroadcast(tf.div(one(dy), b!), a!.shape),
    b: () => unbroadcast(tf.neg(tf.div(tf.mul(one(dy), a!), tf.square(b!))), b!.shape),
  }),
  { inputs: ["a", "b"] },
);

// Comparisons are piecewise constant: zero gradient (they sit on the path of a where() condition).
for (const k of ["Less", "LessEqual", "Greater", "GreaterEqual", "Equal", "NotEqual"])
  define(k, (_dy, [a, b]) => ({ a: () => tf.zeros(a!.shape), b: () => tf.zeros(b!.shape) }), {
    inputs: ["a", "b"],
  });
define("ArgMax", (_dy, [x]) => ({ x: () => tf.zeros(x!.shape) }), { inputs: ["x"] });

define(
  "Select",
  (dy, [c]) => ({
    condition: () => tf.zeros(c!.shape),
    t: () => tf.mul(one(dy), tf.cast(c!, "float32")),
    e: () => tf.mul(one(dy), tf.cast(tf.logicalNot(c!), "float32")),
  }),
  { inputs: ["condition"] },
);

// ---- elementwise unary ----------------------------------------------------------------------
define("Identity", (dy) => ({ x: () => tf.clone(one(dy)) }));
define("Neg", (dy) => ({ x: () => tf.neg(one(dy)) }));
define("Square", (dy, [x]) => ({ x: () => tf.mul(one(dy), tf.mul(x!, 2)) }), { inputs: ["x"] });
define("Sqrt", (dy, [y]) => ({ x: () => tf.div(one(dy), tf.mul(y!, 2)) }), { outputs: [true] });
// d/dx x^(-1/2) = -0.5 * x^(-1/2) / x
define("Rsqrt", (dy, [x]) => ({ x: () => tf.mul(one(dy), tf.div(tf.mul(tf.rsqrt(x!), -0.5), x!)) }), {
  inputs: ["x"],
});
define("Sigmoid", (dy, [y]) => ({ x: () => tf.mul(one(dy), tf.mul(y!, tf.sub(1, y!))) }), {
  outputs: [true],
});
define("Exp", (dy, [y]) => ({ x: () => tf.mul(one(dy), y!) }), { outputs: [true] });
define("Log", (dy, [x]) => ({ x: () => tf.div(one(dy), x!) }), { inputs: ["x"] });
define("Log1p", (dy, [x]) => ({ x: () => tf.div(one(dy), tf.add(x!, 1)) }), { inputs: ["x"] });
define("Softplus", (dy, [x]) => ({ x: () => tf.mul(one(dy), tf.sigmoid(x!)) }), { inputs: ["x"] });
define("Relu", (dy, [x]) => ({ x: () => tf.mul(one(dy), tf.cast(tf.greater(x!, 0), "float32")) }), {
  inputs: ["x"],
});
define("Abs", (dy, [x]) => ({ x: () => tf.mul(one(dy), tf.sign(x!)) }), { inputs: ["x"] });

// ---- shapes -----------------------------------------------------------------------------------
define("Reshape", (dy, [x]) => ({ x: () => tf.reshape(one(dy), x!.shape) }), { inputs: ["x"] });
define("Transpose", (dy, _s, attrs) => {
  const perm = attrs.perm as number[];
  const inv = new Array<number>(perm.length);
  perm.forEach((p, i) => {
    inv[p] = i;
  });
  return { x: () => tf.transpose(one(dy), inv) };
});
define("SplitV", (dy, _s, attrs) => ({ x: () => tf.concat(dy as tf.Tensor[], attrs.axis as number) }));
define(
  "Concat",
  (dy, saved, attrs) => {
    const rank = saved[0]!.rank;
    const axis = normAxes(attrs.axis, rank)[0]!;
    const grads: GradMap = {};
    let offset = 0;
    saved.forEach((t, i) => {
      const begin = t.shape.map((_, k) => (k === axis ? offset : 0));
      offset += t.shape[axis]!;
      grads[i] = () => tf.slice(one(dy), begin, t.shape);
    });
    return grads;
  },
  { all: true },
);
define(
  "Slice",
  (dy, [x], attrs) => {
    const shape = x!.shape;
    const b = attrs.begin as number | number[];
    const s = attrs.size as number | number[] | undefined;
    const begin = shape.map((_, i) => (Array.isArray(b) ? (b[i] ?? 0) : i === 0 ? b : 0));
    const size = shape.map((d, i) => {
      const v = s === undefined ? -1 : Array.isArray(s) ? (s[i] ?? -1) : i === 0 ? s : -1;
      return v === -1 ? d - begin[i]! : v;
    });
    const pads = shape.map((d, i) => [begin[i]!, d - begin[i]! - size[i]!] as [number, number]);
    return { x: () => tf.pad(one(dy), pads) };
  },
  { inputs: ["x"] },
);
define(
  "PadV2",
  (dy, [x], attrs) => {
    const begin = (attrs.paddings as [number, number][]).map((p) => p[0]);
    return { x: () => tf.slice(one(dy), begin, x!.shape) };
  },
  { inputs: ["x"] },
);
define(
  "Tile",
  (dy, [x], attrs) => {
    // dy viewed as [r0, d0, r1, d1, ...]: sum over the repeat axes.
    const reps = attrs.reps as number[];
    const shape = x!.shape;
    return {
      x: () => {
        const split = shape.flatMap((d, i) => [reps[i]!, d]);
        const axes = shape.map((_, i) => 2 * i);
        return tf.reshape(tf.sum(tf.reshape(one(dy), split), axes), shape);
      },
    };
  },
  { inputs: ["x"] },
);

// ---- reductions -----------------------------------------------------------------------------
define(
  "Sum",
  (dy, [x], attrs) => {
    const axes = normAxes(attrs.axis, x!.rank);
    return { x: () => tf.mul(tf.reshape(one(dy), keptShape(x!.shape, axes)), tf.ones(x!.shape)) };
  },
  { inputs: ["x"] },
);
define(
  "Mean",
  (dy, [x], attrs) => {
    const axes = normAxes(attrs.axis, x!.rank);
    const n = axes.reduce((p, a) => p * x!.shape[a]!, 1);
    return {
      x: () => tf.mul(tf.reshape(tf.div(one(dy), n), keptShape(x!.shape, axes)), tf.ones(x!.shape)),
    };
  },
  { inputs: ["x"] },
);
define(
  "Softmax",
  (dy, [y], attrs) => {
    const dim = attrs.dim as number;
    return { logits: () => tf.mul(y!, tf.sub(one(dy), tf.sum(tf.mul(one(dy), y!), dim, true))) };
  },
  { outputs: [true] },
);

// ---- matmul -----------------------------------------------------------------------------------
define(
  "BatchMatMul",
  (dy, [a, b], attrs) => {
    const ta = Boolean(attrs.transposeA);
    const tb = Boolean(attrs.transposeB);
    const g = one(dy);
    // With C = op(A) @ op(B): dA = dC @ op(B)^T (then transposed back if A was), dB likewise.
    const da = () =>
      unbroadcast(
        ta
          ? tb
            ? tf.matMul(b!, g, true, true)
            : tf.matMul(b!, g, false, true)
          : tf.matMul(g, b!, false, !tb),
        a!.shape,
      );
    const db = () =>
      unbroadcast(
        tb
          ? ta
            ? tf.matMul(g, a!, true, true)
            : tf.matMul(g, a!, true, false)
          : tf.matMul(a!, g, !ta, false),
        b!.shape,
      );
    return { a: da, b: db };
  },
  { inputs: ["a", "b"] },
);
