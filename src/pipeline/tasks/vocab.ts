// The token vocabulary shared by every task: 4 specials, 256 byte tokens, numeric bins, then
// class tokens built from the data. Class ids are append-only: a vocabulary grown for a
// fine-tune keeps every old id, so an old model's embedding rows still mean the same thing.
import * as z from "zod";
import { sha256 } from "../../util/fs.js";

export const PAD = 0;
export const MASK = 1;
export const SEP = 2;
export const UNK = 3;
export const SPECIALS = ["<pad>", "<mask>", "<sep>", "<unk>"] as const;
export const BYTE_BASE = SPECIALS.length;
export const BIN_BASE = BYTE_BASE + 256;
/** Label value of positions the loss ignores. */
export const IGNORE = -100;

export const VOCAB_FORMAT = "trm-forge/vocab";
export const VOCAB_VERSION = 1;

/** Classes every vocabulary has, whatever the data holds, so a live answer can always name them. */
export const FIXED_CLASSES = [
  "level:debug",
  "level:info",
  "level:warn",
  "level:error",
  "level:fatal",
  "level:unknown",
  "incident:no",
  "incident:yes",
  "status:ok",
  "status:error",
  "latency:<100ms",
  "latency:<1s",
  "latency:<5s",
  "latency:>=5s",
  "service:<other>",
] as const;

/** What encode/decode need besides token ids; it travels with the vocabulary to the served model. */
export const EncodingSpec = z
  .object({
    seq_len: z.number().int().min(16).max(65535),
    metric_forecast: z
      .object({
        points: z.number().int().min(1),
        step_ms: z.number().positive(),
        z_max: z.number().positive(),
        /** Earlier days whose same hours are rows of the input (absent: a vocabulary from before them). */
        lag_days: z.array(z.number().int().min(1).max(28)).max(8).optional(),
      })
      .strict(),
  })
  .strict();
export type EncodingSpec = z.infer<typeof EncodingSpec>;

const CLASS_RE = /^[a-z_]+:.+$/s;

export const VocabFile = z
  .object({
    format: z.literal(VOCAB_FORMAT),
    version: z.literal(VOCAB_VERSION),
    /** Bumped each time classes are appended. */
    revision: z.number().int().min(1),
    /** sha256 of the vocab.json this one grew from, or null for a fresh vocabulary. */
    parent_sha256: z
      .string()
      .regex(/^[0-9a-f]{64}$/)
      .nullable(),
    specials: z.tuple([z.literal("<pad>"), z.literal("<mask>"), z.literal("<sep>"), z.literal("<unk>")]),
    byte_base: z.literal(BYTE_BASE),
    bin_base: z.literal(BIN_BASE),
    num_bins: z.number().int().min(1).max(4096),
    class_base: z.number().int(),
    /** Class names in id order: classes[i] has id class_base + i. */
    classes: z.array(z.string().regex(CLASS_RE, "a class is namespace:value")),
    size: z.number().int(),
    encoding: EncodingSpec,
  })
  .strict()
  .superRefine((v, ctx) => {
    if (v.class_base !== BIN_BASE + v.num_bins)
      ctx.addIssue({
        code: "custom",
        message: "class_base must be bin_base + num_bins",
        path: ["class_base"],
      });
    if (v.size !== v.class_base + v.classes.length)
      ctx.addIssue({ code: "custom", message: "size must be class_base + classes.length", path: ["size"] });
    if (new Set(v.classes).size !== v.classes.length)
      ctx.addIssue({ code: "custom", message: "duplicate class names", path: ["classes"] });
  });
export type VocabFile = z.infer<typeof VocabFile>;

export class VocabError extends Error {
  override name = "VocabError";
}

export class Vocab {
  readonly classBase: number;
  readonly size: number;
  private readonly ids = new Map<string, number>();
  private readonly namespaces = new Map<string, number[]>();

  private constructor(
    readonly numBins: number,
    readonly classes: readonly string[],
    readonly encoding: EncodingSpec,
    readonly revision: number,
    readonly parentSha256: string | null,
  ) {
    this.classBase = BIN_BASE + numBins;
    this.size = this.classBase + classes.length;
    classes.forEach((name, i) => {
      const id = this.classBase + i;
      this.ids.set(name, id);
      const ns = name.slice(0, name.indexOf(":"));
      const list = this.namespaces.get(ns);
      if (list) list.push(id);
      else this.namespaces.set(ns, [id]);
    });
  }

  /** A fresh vocabulary: the fixed classes, then `classes` (sorted, de-duplicated). */
  static create(opts: { numBins: number; encoding: EncodingSpec; classes?: Iterable<string> }): Vocab {
    const extra = [...new Set(opts.classes ?? [])].filter(
      (c) => !(FIXED_CLASSES as readonly string[]).includes(c),
    );
    const all = [...FIXED_CLASSES, ...extra.sort()];
    for (const c of all) if (!CLASS_RE.test(c)) throw new VocabError(`bad class name ${JSON.stringify(c)}`);
    return new Vocab(opts.numBins, all, EncodingSpec.parse(opts.encoding), 1, null);
  }

  static fromJSON(value: unknown): Vocab {
    const res = VocabFile.safeParse(value);
    if (!res.success) {
      const i = res.error.issues[0];
      throw new VocabError(`bad vocab.json: ${i.path.join(".") || "(top level)"}: ${i.message}`);
    }
    const v = res.data;
    return new Vocab(v.num_bins, v.classes, v.encoding, v.revision, v.parent_sha256);
  }

  static parse(text: string | Uint8Array): Vocab {
    let value: unknown;
    try {
      value = JSON.parse(typeof text === "string" ? text : Buffer.from(text).toString("utf8"));
    } catch {
      throw new VocabError("bad vocab.json: not JSON");
    }
    return Vocab.fromJSON(value);
  }

  toJSON(): VocabFile {
    return {
      format: VOCAB_FORMAT,
      version: VOCAB_VERSION,
      revision: this.revision,
      parent_sha256: this.parentSha256,
      specials: [...SPECIALS],
      byte_base: BYTE_BASE,
      bin_base: BIN_BASE,
      num_bins: this.numBins,
      class_base: this.classBase,
      classes: [...this.classes],
      size: this.size,
      encoding: this.encoding,
    };
  }

  /** The bytes of vocab.json (stable: the same vocabulary always serialises the same). */
  serialize(): string {
    return `${JSON.stringify(this.toJSON(), null, 2)}\n`;
  }

  sha256(): string {
    return sha256(this.serialize());
  }

  /**
   * The vocabulary grown by the classes it lacks: old ids unchanged, new classes appended in
   * sorted order, revision + 1. Returns this vocabulary when nothing is new.
   */
  extend(classes: Iterable<string>): Vocab {
    const added = [...new Set(classes)].filter((c) => !this.ids.has(c)).sort();
    if (!added.length) return this;
    for (const c of added) if (!CLASS_RE.test(c)) throw new VocabError(`bad class name ${JSON.stringify(c)}`);
    return new Vocab(
      this.numBins,
      [...this.classes, ...added],
      this.encoding,
      this.revision + 1,
      this.sha256(),
    );
  }

  /** The same ids with another encoding spec (a new dataset's sequence length or metric step). */
  withEncoding(encoding: EncodingSpec): Vocab {
    const spec = EncodingSpec.parse(encoding);
    if (JSON.stringify(spec) === JSON.stringify(this.encoding)) return this;
    return new Vocab(this.numBins, this.classes, spec, this.revision, this.parentSha256);
  }

  byte(b: number): number {
    return BYTE_BASE + (b & 0xff);
  }

  isByte(id: number): boolean {
    return id >= BYTE_BASE && id < BIN_BASE;
  }

  bin(i: number): number {
    if (i < 0 || i >= this.numBins) throw new VocabError(`bin ${i} out of range 0..${this.numBins - 1}`);
    return BIN_BASE + i;
  }

  isBin(id: number): boolean {
    return id >= BIN_BASE && id < this.classBase;
  }

  /** The id of a class, or undefined when the vocabulary does not hold it. */
  classId(name: string): number | undefined {
    return this.ids.get(name);
  }

  /** The class name of an id, or undefined for a non-class id. */
  className(id: number): string | undefined {
    return id >= this.classBase && id < this.size ? this.classes[id - this.classBase] : undefined;
  }

  /** Ids of every class in a namespace ("service", "level", ...), in id order. */
  namespaceIds(namespace: string): readonly number[] {
    return this.namespaces.get(namespace) ?? [];
  }

  /** A readable name for any id, for reports. */
  tokenName(id: number): string {
    if (id === IGNORE) return "<ignore>";
    if (id >= 0 && id < BYTE_BASE) return SPECIALS[id];
    if (this.isByte(id)) return `<0x${(id - BYTE_BASE).toString(16).padStart(2, "0")}>`;
    if (this.isBin(id)) return `<bin ${id - BIN_BASE}>`;
    return this.className(id) ?? `<id ${id}>`;
  }
}

/** How a vocabulary grew: the ids an old model keeps, and the rows a model must add. */
export interface VocabGrowth {
  oldSize: number;
  newSize: number;
  added: { id: number; name: string }[];
}

/**
 * Checks that `next` keeps every id of `prev` (same bins, same classes at the same ids) and
 * lists what it added. Throws when an old id would change meaning.
 */
export function vocabGrowth(prev: Vocab, next: Vocab): VocabGrowth {
  if (prev.numBins !== next.numBins)
    throw new VocabError(`bin count changed (${prev.numBins} -> ${next.numBins}): old ids would move`);
  for (let i = 0; i < prev.classes.length; i++) {
    if (next.classes[i] !== prev.classes[i])
      throw new VocabError(
        `class id ${prev.classBase + i} changed meaning (${prev.classes[i]} -> ${next.classes[i] ?? "nothing"})`,
      );
  }
  const added = next.classes.slice(prev.classes.length).map((name, i) => ({
    id: prev.size + i,
    name,
  }));
  return { oldSize: prev.size, newSize: next.size, added };
}
