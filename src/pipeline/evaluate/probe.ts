// The robustness probe: validation log lines rewritten the way agents paste them (timestamp
// prefix stripped, cut short, quotes changed, logfmt turned into JSON and back), scored with the
// task's own code next to the same lines clean. The labels stay the clean line's: the line still
// means the same thing, the model should still say so.
import { type Example, logTriage, SEP, scoreTask, tokensToText, type Vocab } from "../tasks/index.js";
import { statedLevel } from "../tasks/log-normalize.js";

export const PROBE_VARIANTS = ["prefix_stripped", "truncated", "requoted", "reformatted"] as const;
export type ProbeVariant = (typeof PROBE_VARIANTS)[number];

/** Validation lines probed at most (evenly spread): four variants each bounds the extra work. */
export const PROBE_MAX_LINES = 100;

export interface ProbeCase {
  variant: ProbeVariant;
  /** Index of the clean example among the task's validation examples. */
  source: number;
  line: string;
  example: Example;
}

export interface ProbeScores {
  exact_all: number;
  level_accuracy: number;
}

export interface ProbeVariantResult {
  variant: ProbeVariant;
  /** Lines the variant applies to (a line without quotes cannot be re-quoted). */
  examples: number;
  /** The same lines, clean. */
  clean: ProbeScores;
  probe: ProbeScores;
  /** Level accuracy of what serving answers: a level the line states in a field is taken as stated. */
  served_level_accuracy: number;
}

export interface ProbeResult {
  task: "log_triage";
  lines: number;
  variants: ProbeVariantResult[];
}

const PREFIX = /^\s*(?:[[(]?<ts>[\])]?[\s,|:-]*)+/;

/** logfmt pairs: key=value, key="quoted value". */
const PAIR = /([A-Za-z_][\w.-]*)=("(?:[^"\\]|\\.)*"|\S*)/g;

/** The variants of a (normalised) line that differ from it. */
export function variantsOf(text: string): Partial<Record<ProbeVariant, string>> {
  const out: Partial<Record<ProbeVariant, string>> = {};
  const stripped = text.replace(PREFIX, "");
  if (stripped && stripped !== text) out.prefix_stripped = stripped;
  if (text.length >= 24) out.truncated = text.slice(0, Math.max(16, Math.floor(text.length * 0.6)));
  if (text.includes('"')) out.requoted = text.replaceAll('"', "'");
  else if (text.includes("'")) out.requoted = text.replaceAll("'", '"');
  const other = reformat(text);
  if (other && other !== text) out.reformatted = other;
  return out;
}

/** A JSON object line as logfmt, a logfmt line (two pairs or more) as JSON; else null. */
export function reformat(text: string): string | null {
  const brace = text.indexOf("{");
  if (brace >= 0 && text.trimEnd().endsWith("}")) {
    // Placeholders stand where numbers were: quote them so the object parses.
    const body = text.slice(brace).replace(/:(\s*)(<[a-z]+>)/g, ':$1"$2"');
    try {
      const obj = JSON.parse(body) as unknown;
      if (obj && typeof obj === "object" && !Array.isArray(obj)) {
        const pairs = Object.entries(obj as Record<string, unknown>).map(([k, v]) => {
          const s = typeof v === "string" ? v : JSON.stringify(v);
          return `${k}=${/[\s"=]/.test(s) || !s ? JSON.stringify(s) : s}`;
        });
        return `${text.slice(0, brace)}${pairs.join(" ")}`;
      }
    } catch {
      // Not JSON after all: try logfmt.
    }
  }
  const pairs = [...text.matchAll(PAIR)];
  if (pairs.length < 2) return null;
  const obj: Record<string, string> = {};
  for (const m of pairs) obj[m[1]] = m[2].startsWith('"') ? unquote(m[2]) : m[2];
  return `${text.slice(0, pairs[0].index)}${JSON.stringify(obj)}`;
}

function unquote(q: string): string {
  try {
    return JSON.parse(q) as string;
  } catch {
    return q.slice(1, -1);
  }
}

/** The line an encoded log_triage example holds (after its separator). */
function lineOf(ex: Example, vocab: Vocab): string {
  return tokensToText(ex.inputs, vocab, ex.inputs.indexOf(SEP) + 1);
}

/** Variants of up to `max` validation lines, encoded as live queries are, with the clean labels. */
export function buildProbe(examples: readonly Example[], vocab: Vocab, max = PROBE_MAX_LINES): ProbeCase[] {
  const n = examples.length;
  const picks =
    n <= max ? [...examples.keys()] : Array.from({ length: max }, (_, i) => Math.floor((i * n) / max));
  const out: ProbeCase[] = [];
  for (const source of picks) {
    const ex = examples[source];
    for (const [variant, line] of Object.entries(variantsOf(lineOf(ex, vocab))) as [ProbeVariant, string][]) {
      if (!line.trim()) continue;
      const enc = logTriage.encode({ line }, vocab);
      out.push({
        variant,
        source,
        line,
        example: { task: "log_triage", inputs: enc.inputs, labels: ex.labels, time: ex.time, aux: enc.aux },
      });
    }
  }
  return out;
}

/** The probe's scores per variant, beside the clean scores of the same lines. */
export function scoreProbe(
  cases: readonly ProbeCase[],
  predictions: readonly Int32Array[],
  examples: readonly Example[],
  cleanPredictions: readonly Int32Array[],
  vocab: Vocab,
): ProbeResult {
  const levelAt = logTriage.slots.find((s) => s.name === "level")!.position;
  const scores = (ex: Example[], preds: Int32Array[]): ProbeScores => {
    const m = scoreTask("log_triage", ex, preds, vocab).metrics;
    return { exact_all: m.exact_all, level_accuracy: m.level_accuracy };
  };
  const variants: ProbeVariantResult[] = [];
  for (const variant of PROBE_VARIANTS) {
    const at = cases.flatMap((c, i) => (c.variant === variant ? [i] : []));
    if (!at.length) continue;
    const probeEx = at.map((i) => cases[i].example);
    const probePreds = at.map((i) => predictions[i]);
    let served = 0;
    for (const i of at) {
      const stated = statedLevel(cases[i].line);
      const said = stated ? vocab.classId(`level:${stated}`) : predictions[i][levelAt];
      if (said === cases[i].example.labels[levelAt]) served++;
    }
    variants.push({
      variant,
      examples: at.length,
      clean: scores(
        at.map((i) => examples[cases[i].source]),
        at.map((i) => cleanPredictions[cases[i].source]),
      ),
      probe: scores(probeEx, probePreds),
      served_level_accuracy: served / at.length,
    });
  }
  return { task: "log_triage", lines: new Set(cases.map((c) => c.source)).size, variants };
}
