// Field schemas more than one config section uses.
import * as z from "zod";

export const positiveInt = z.number().int().positive();

/** A credential given by reference, never inline: an environment variable or a file (a mounted Secret). */
export const SecretRefSchema = z.union([
  z.object({ env: z.string().min(1) }).strict(),
  z.object({ file: z.string().min(1) }).strict(),
]);
export type SecretRef = z.infer<typeof SecretRefSchema>;

/** A duration such as 500ms, 30s, 5m, 12h, 7d or 1w. */
export const DurationSchema = z
  .string()
  .regex(/^\d+(\.\d+)?(ms|s|m|h|d|w)$/, "expected a duration such as 30s, 5m, 12h or 7d");
