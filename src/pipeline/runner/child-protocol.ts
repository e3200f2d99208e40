// The messages between a server and the child process that runs one of its stages
// (process.ts forks stage-child.ts). Both sides check what they receive: a child that prints
// nonsense fails its stage with a clear error instead of corrupting the run record.
import * as z from "zod";

const Level = z.enum(["debug", "info", "warn", "error"]);

/** The stages a server runs in a child: the ones that hold the CPU for minutes. */
export const ChildStage = z.enum(["train", "evaluate"]);
export type ChildStage = z.infer<typeof ChildStage>;

/** Parent to child. */
export const ToChild = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("start"),
    stage: ChildStage,
    runId: z.string(),
    agent: z.string(),
    attempt: z.number().int(),
    fromScratch: z.boolean(),
    /** The run record as it stands (JSON), and the server's parsed config. */
    record: z.record(z.string(), z.unknown()),
    config: z.record(z.string(), z.unknown()),
  }),
  /** Stop at the next step boundary, checkpoint first. */
  z.object({ type: z.literal("abort"), message: z.string() }),
]);
export type ToChild = z.infer<typeof ToChild>;

/** Child to parent. */
export const ToParent = z.discriminatedUnion("type", [
  z.object({ type: z.literal("ready"), pid: z.number().int() }),
  z.object({ type: z.literal("log"), level: Level, msg: z.string() }),
  z.object({
    type: z.literal("progress"),
    progress: z.object({
      message: z.string(),
      step: z.number().nullable(),
      total: z.number().nullable(),
      eta_s: z.number().nullable(),
      metrics: z.record(z.string(), z.number()),
    }),
    detail: z.unknown().optional(),
  }),
  z.object({ type: z.literal("done"), output: z.record(z.string(), z.unknown()) }),
  z.object({
    type: z.literal("failed"),
    name: z.string(),
    message: z.string(),
    transient: z.boolean(),
    cancelled: z.boolean(),
  }),
]);
export type ToParent = z.infer<typeof ToParent>;
