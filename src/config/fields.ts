// Field schemas more than one config section uses.
import * as z from "zod";
import { DURATION_HINT, DURATION_PATTERN, formatDuration, parseDuration } from "../util/duration.js";

export const positiveInt = z.number().int().positive();

/** A credential given by reference, never inline: an environment variable or a file (a mounted Secret). */
export const SecretRefSchema = z.union([
  z.object({ env: z.string().min(1) }).strict(),
  z.object({ file: z.string().min(1) }).strict(),
]);
export type SecretRef = z.infer<typeof SecretRefSchema>;

/**
 * A duration such as 500ms, 30s, 5m, 12h, 7d or 1w in the file, milliseconds in the parsed config:
 * read once here. Give defaults with `.prefault("30s")` (the file's form). `z.encode` writes the
 * file's form back, for a config handed to another process that parses it again.
 */
export const DurationSchema = z.codec(
  z.string().regex(DURATION_PATTERN, `expected ${DURATION_HINT}`),
  z.number().int().min(0),
  { decode: (text) => parseDuration(text)!, encode: formatDuration },
);
