// Export to the on-disk format of the official TRM repository (dataset/common.py,
// puzzle_dataset.py), so the same data trains with the PyTorch code:
//   DIR/identifiers.json
//   DIR/{train,test}/dataset.json
//   DIR/{train,test}/all__{inputs,labels,puzzle_identifiers,puzzle_indices,group_indices}.npy
// Each example is its own puzzle and group; its puzzle identifier is its task id (0 = blank).
// Labels the loss ignores are written as ignore_label_id (0 = pad), which the reference loader
// turns back into -100.
import { join } from "node:path";
import { atomicWrite } from "../../util/fs.js";
import { NUM_PUZZLE_IDENTIFIERS, PUZZLE_IDENTIFIER_NAMES } from "../tasks/types.js";
import { IGNORE, PAD } from "../tasks/vocab.js";
import type { Dataset, DatasetSplit } from "./reader.js";

type NpyDtype = "<i4";

/** An .npy file (format 1.0) of a C-order int32 array. */
export function npyBytes(data: Int32Array, shape: number[], dtype: NpyDtype = "<i4"): Buffer {
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== data.length)
    throw new Error(`npy: shape ${shape.join("x")} does not hold ${data.length} values`);
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
  let header = `{'descr': '${dtype}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  // magic(6) + version(2) + length(2) + header, padded with spaces and a newline to 64 bytes.
  const total = Math.ceil((10 + header.length + 1) / 64) * 64;
  header = `${header}${" ".repeat(total - 10 - header.length - 1)}\n`;
  const buf = Buffer.alloc(total + data.length * 4);
  buf.write("\x93NUMPY", 0, "latin1");
  buf[6] = 1;
  buf[7] = 0;
  buf.writeUInt16LE(header.length, 8);
  buf.write(header, 10, "latin1");
  for (let i = 0; i < data.length; i++) buf.writeInt32LE(data[i], total + 4 * i);
  return buf;
}

export interface TrmNpyMetadata {
  seq_len: number;
  vocab_size: number;
  pad_id: number;
  ignore_label_id: number;
  blank_identifier_id: number;
  num_puzzle_identifiers: number;
  total_groups: number;
  mean_puzzle_examples: number;
  total_puzzles: number;
  sets: string[];
}

async function writeSplit(dir: string, split: DatasetSplit, vocabSize: number): Promise<TrmNpyMetadata> {
  const N = split.size;
  const S = split.seqLen;
  const labels = Int32Array.from(split.labels, (l) => (l === IGNORE ? PAD : l));
  const steps = Int32Array.from({ length: N + 1 }, (_, i) => i);
  const files: [string, Int32Array, number[]][] = [
    ["all__inputs.npy", split.inputs, [N, S]],
    ["all__labels.npy", labels, [N, S]],
    ["all__puzzle_identifiers.npy", split.puzzleIds, [N]],
    ["all__puzzle_indices.npy", steps, [N + 1]],
    ["all__group_indices.npy", steps, [N + 1]],
  ];
  for (const [name, data, shape] of files) await atomicWrite(join(dir, name), npyBytes(data, shape));
  const meta: TrmNpyMetadata = {
    seq_len: S,
    vocab_size: vocabSize,
    pad_id: PAD,
    ignore_label_id: PAD,
    blank_identifier_id: 0,
    num_puzzle_identifiers: NUM_PUZZLE_IDENTIFIERS,
    total_groups: N,
    mean_puzzle_examples: 1,
    total_puzzles: N,
    sets: ["all"],
  };
  await atomicWrite(join(dir, "dataset.json"), `${JSON.stringify(meta, null, 2)}\n`);
  return meta;
}

/** Writes the dataset in the reference layout under dir; validation becomes the test split. */
export async function exportTrmNpy(
  ds: Dataset,
  dir: string,
): Promise<{ dir: string; train: TrmNpyMetadata; test: TrmNpyMetadata }> {
  const train = await writeSplit(join(dir, "train"), ds.train, ds.vocab.size);
  const test = await writeSplit(join(dir, "test"), ds.val, ds.vocab.size);
  await atomicWrite(join(dir, "identifiers.json"), `${JSON.stringify([...PUZZLE_IDENTIFIER_NAMES])}\n`);
  await atomicWrite(join(dir, "vocab.json"), ds.vocab.serialize());
  return { dir, train, test };
}
