// Free text a caller writes into the store (alias-history reasons and the like). Control characters
// would be stored raw and replayed into terminals, logs and cards: NUL, C0/C1 (ESC starts ANSI
// sequences, CR/LF forge lines), and the bidi overrides/isolates that reorder what a reader sees.
import * as z from "zod";
import { UsageError } from "../errors.js";

// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

/** Where the first control character is, as "U+001B at 4"; null when there is none. */
export function controlCharIn(text: string): string | null {
  const m = CONTROL.exec(text);
  if (!m) return null;
  return `U+${m[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")} at ${m.index}`;
}

/** A one-line string of min..max characters without control, line-break or bidi-override characters. */
export function freeText(max: number, min = 0) {
  return z
    .string()
    .min(min)
    .max(max)
    .superRefine((s, ctx) => {
      const at = controlCharIn(s);
      if (at)
        ctx.addIssue({
          code: "custom",
          message: `control characters are not allowed (found ${at}): write plain one-line text without NUL, escape sequences, line breaks or bidi overrides`,
        });
    });
}

/** freeText for a CLI option: the value, or a UsageError naming the option. */
export function cliFreeText(value: string, option: string, max: number, min = 0): string {
  const r = freeText(max, min).safeParse(value);
  if (!r.success) throw new UsageError(`${option}: ${r.error.issues.map((i) => i.message).join("; ")}`);
  return r.data;
}
