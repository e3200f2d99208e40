import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { writeRawHomelab } from "../../../src/bench/homelab-raw.js";
import { parseConfig } from "../../../src/config/index.js";
import {
  buildDataset,
  DatasetFormatError,
  decodeSplit,
  encodeSplit,
  exportTrmNpy,
  openDataset,
} from "../../../src/pipeline/dataset/index.js";
import { type Example, IGNORE, TASK_NAMES } from "../../../src/pipeline/tasks/index.js";
import { FsStore } from "../../../src/store/index.js";

/** Reads an .npy file (format 1.x, little-endian int32, C order) without the writer's code. */
function readNpy(path: string): { shape: number[]; data: Int32Array; headerLen: number } {
  const buf = readFileSync(path);
  expect(buf.subarray(0, 6).toString("latin1")).toBe("\x93NUMPY");
  expect(buf[6]).toBe(1);
  const hlen = buf.readUInt16LE(8);
  const header = buf.subarray(10, 10 + hlen).toString("latin1");
  expect(header.endsWith("\n")).toBe(true);
  expect(header).toMatch(/'descr': '<i4'/);
  expect(header).toMatch(/'fortran_order': False/);
  const shape = /'shape': \(([^)]*)\)/
    .exec(header)![1]
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const start = 10 + hlen;
  expect(buf.length - start).toBe(count * 4);
  const data = new Int32Array(count);
  for (let i = 0; i < count; i++) data[i] = buf.readInt32LE(start + 4 * i);
  return { shape, data, headerLen: 10 + hlen };
}

function same(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

describe("split format", () => {
  const ex = (task: Example["task"], fill: number, aux: number[]): Example => ({
    task,
    inputs: new Int32Array(16).fill(fill),
    labels: Int32Array.from({ length: 16 }, (_, i) => (i % 2 ? IGNORE : fill + 1)),
    time: 1_767_225_600_000 + fill,
    aux: Float64Array.from(aux),
  });

  it("round-trips examples, ignore labels and aux of any width", () => {
    const examples = [
      ex("log_triage", 5, []),
      { ...ex("metric_forecast", 300, [1.5, Number.NaN, -2e9]), inputSeenInTrain: true },
      ex("code_infill", 259, []),
    ];
    const buf = encodeSplit("val", examples, 16, TASK_NAMES);
    const a = decodeSplit(buf);
    expect(a.header.count).toBe(3);
    expect(Array.from(a.task)).toEqual([1, 2, 0]);
    expect(Array.from(a.inputs.slice(16, 32))).toEqual(Array(16).fill(300));
    expect(Array.from(a.labels.slice(0, 4))).toEqual([6, IGNORE, 6, IGNORE]);
    expect(Array.from(a.time)).toEqual(examples.map((e) => e.time));
    expect(Array.from(a.flags)).toEqual([0, 1, 0]);
    expect(Array.from(a.auxOffsets)).toEqual([0, 0, 3, 3]);
    expect(Array.from(a.aux)).toEqual([1.5, Number.NaN, -2e9]);
    // Reading does not depend on where the bytes sit in memory.
    const shifted = Buffer.alloc(buf.length + 3);
    buf.copy(shifted, 3);
    expect(Array.from(decodeSplit(shifted.subarray(3)).aux)).toEqual([1.5, Number.NaN, -2e9]);
  });

  it("refuses files that are not splits or are cut short", () => {
    const buf = encodeSplit("val", [ex("log_triage", 5, [])], 16, TASK_NAMES);
    expect(() => decodeSplit(Buffer.from("hello world, not a split"))).toThrow(DatasetFormatError);
    expect(() => decodeSplit(buf.subarray(0, buf.length - 8))).toThrow(/runs past the end/);
    const bad = Buffer.from(buf);
    bad.writeUInt32LE(1_000_000, 8);
    expect(() => decodeSplit(bad)).toThrow(/header runs past/);
    expect(() =>
      encodeSplit(
        "x",
        [{ ...ex("log_triage", 5, []), inputs: new Int32Array(16).fill(70000) }],
        16,
        TASK_NAMES,
      ),
    ).toThrow(/does not fit/);
  });
});

describe("export --format trm-npy", () => {
  it("writes the official repository's layout, readable as plain .npy", async () => {
    const store = new FsStore(mkdtempSync(join(tmpdir(), "trm-npy-")));
    await writeRawHomelab({
      store,
      agent: "a",
      days: 10,
      files: 20,
      logLines: 2000,
      traces: 1000,
      series: 16,
    });
    await buildDataset({ store, agent: "a", config: parseConfig({ dataset: { window: "10d" } }).dataset });
    const ds = await openDataset(store, "a");
    const dir = mkdtempSync(join(tmpdir(), "trm-npy-out-"));
    await exportTrmNpy(ds, dir);

    expect(JSON.parse(readFileSync(join(dir, "identifiers.json"), "utf8"))).toEqual([
      "<blank>",
      "code_infill",
      "log_triage",
      "metric_forecast",
      "trace_outcome",
    ]);
    for (const [folder, split] of [
      ["train", ds.train],
      ["test", ds.val],
    ] as const) {
      const meta = JSON.parse(readFileSync(join(dir, folder, "dataset.json"), "utf8"));
      expect(meta).toEqual({
        seq_len: 128,
        vocab_size: ds.vocab.size,
        pad_id: 0,
        ignore_label_id: 0,
        blank_identifier_id: 0,
        num_puzzle_identifiers: 5,
        total_groups: split.size,
        mean_puzzle_examples: 1,
        total_puzzles: split.size,
        sets: ["all"],
      });
      const inputs = readNpy(join(dir, folder, "all__inputs.npy"));
      expect(inputs.headerLen % 64).toBe(0);
      expect(inputs.shape).toEqual([split.size, 128]);
      expect(same(inputs.data, split.inputs)).toBe(true);
      const labels = readNpy(join(dir, folder, "all__labels.npy"));
      expect(labels.shape).toEqual([split.size, 128]);
      // -100 becomes the ignore label id (0), which the reference loader maps back to -100.
      expect(
        same(
          labels.data,
          Array.from(split.labels, (l) => (l === IGNORE ? 0 : l)),
        ),
      ).toBe(true);
      expect(labels.data.includes(-100)).toBe(false);
      const ids = readNpy(join(dir, folder, "all__puzzle_identifiers.npy"));
      expect(ids.shape).toEqual([split.size]);
      expect(same(ids.data, split.puzzleIds)).toBe(true);
      expect(new Set(ids.data)).toEqual(new Set([1, 2, 3, 4]));
      for (const name of ["all__puzzle_indices.npy", "all__group_indices.npy"]) {
        const idx = readNpy(join(dir, folder, name));
        expect(idx.shape).toEqual([split.size + 1]);
        expect(
          same(
            idx.data,
            Array.from({ length: split.size + 1 }, (_, i) => i),
          ),
        ).toBe(true);
      }
    }
  });
});
