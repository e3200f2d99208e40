// A log line that states its level in a field (logfmt level=, JSON "level":, a bracketed level in
// its header) is answered with that
// level, marked as read from the input, whatever the model would have guessed; the model's own
// answer stays beside it. Through the serving API, on a real (tiny) served model.
import { afterEach, describe, expect, it } from "vitest";
import { ModelServer } from "../../src/serve/index.js";
import { registerVersion, testServeEnv } from "./helpers.js";

const AGENT = "agent-sre";

describe("log_triage: a level the line states", () => {
  let server: ModelServer | null = null;
  afterEach(async () => {
    await server?.stop();
    server = null;
  });

  it("is the served level, with level_source input; lines without one are the model's", async () => {
    const env = testServeEnv();
    const v1 = await registerVersion(env.registry, AGENT, { seed: 1 });
    await env.registry.promote(AGENT, v1, { actor: "test", reason: "first" });
    server = new ModelServer({
      config: env.config,
      store: env.store,
      registry: env.registry,
      agents: [AGENT],
    });
    await server.start();
    type Level = { value: string | null; confidence: number };
    const ask = async (line: string) =>
      (await server!.predict(AGENT, "log_triage", line)).answer as {
        level: Level;
        service: Level;
        level_source?: string;
        model_level?: string | null;
      };
    const cases: [string, string][] = [
      ['level=error msg="db timeout"', "error"],
      ['{"level":"warn","msg":"slow"}', "warn"],
      ["lvl=DEBUG cache hit", "debug"],
      ['{"severity":"critical","msg":"x"}', "fatal"],
      ["2026-12-01 20:45:04.565500+00:00 [error] <0.24766.0> closing AMQP connection", "error"],
      ["[2026-12-01 10:00:00,123] [WARNING] pool exhausted", "warn"],
      ["[info] started", "info"],
    ];
    for (const [line, level] of cases) {
      const a = await ask(line);
      expect(a.level, line).toEqual({ value: level, confidence: 1 });
      expect(a.level_source, line).toBe("input");
      expect(["debug", "info", "warn", "error", "fatal", "unknown", null]).toContain(a.model_level);
      expect(a.service.confidence).toBeLessThan(1);
    }
    // A stated level past what the model's window holds still counts: the whole line is read.
    const long = `${"x".repeat(40)} level=fatal`;
    expect((await ask(long)).level).toEqual({ value: "fatal", confidence: 1 });
    // "ERROR" as a word is a guess for the model, not a field; so are "level=" inside a quoted value
    // and a bracket in the message rather than the header.
    for (const line of [
      "ERROR db timeout",
      "message level is fine",
      'msg="level=error"',
      "got [error] from upstream",
      "2026-12-01 10:00:00 retry 1 2 3 [error]",
    ]) {
      const a = await ask(line);
      expect(a.level_source, line).toBeUndefined();
      expect(a.model_level, line).toBeUndefined();
    }
  });
});
