import { describe, expect, it } from "vitest";
import * as z from "zod";
import { ConfigSchema, parseConfig } from "../../src/config/index.js";
import { ConfigError } from "../../src/errors.js";

const agent = (extra: Record<string, unknown> = {}) => ({
  sources: { prometheus: { url: "http://127.0.0.1:9090", timeout: "90s", step: "5m" } },
  ...extra,
});

describe("durations in the config", () => {
  it("are milliseconds once parsed, defaults included", () => {
    const c = parseConfig({ agents: { lab: agent({ lookback: "2d" }) } });
    expect(c.runs.lease).toBe(60_000);
    expect(c.runs.backoff_max).toBe(600_000);
    expect(c.collect.backoff_base).toBe(500);
    expect(c.dataset.window).toBe(30 * 86_400_000);
    expect(c.dataset.incidents.bucket).toBe(300_000);
    expect(c.dataset.tasks.metric_forecast.step).toBe(3_600_000);
    expect(c.server.session_idle_timeout).toBe(1_800_000);
    expect(c.schedule.retention.tempo).toBe(86_400_000);
    expect(c.agents.lab.lookback).toBe(2 * 86_400_000);
    expect(c.agents.lab.sources.prometheus?.timeout).toBe(90_000);
    expect(c.agents.lab.sources.prometheus?.scrape_interval).toBe(30_000);
  });

  it("take every form both old duration fields took: fractions, ms, weeks", () => {
    const c = parseConfig({
      runs: { backoff: "1.5s", lease: "1w" },
      dataset: { window: "0.5d", incidents: { bucket: "250ms" } },
    });
    expect(c.runs.backoff).toBe(1500);
    expect(c.runs.lease).toBe(7 * 86_400_000);
    expect(c.dataset.window).toBe(43_200_000);
    expect(c.dataset.incidents.bucket).toBe(250);
  });

  it("refuse anything else with the key and the expected form", () => {
    for (const bad of ["30", "5 m", "1h30m", "-1s", "soon"]) {
      const err = (() => {
        try {
          parseConfig({ runs: { lease: bad } });
        } catch (e) {
          return e;
        }
      })();
      expect(err, bad).toBeInstanceOf(ConfigError);
      expect(String((err as Error).message)).toMatch(/runs\.lease: expected a duration such as 500ms, 30s/);
    }
    expect(() => parseConfig({ runs: { lease: 60_000 } })).toThrow(/runs\.lease: .*expected string/);
  });

  it("encode back to the file's form, which parses to the same config (a config sent to a child process)", () => {
    const c = parseConfig({
      agents: { lab: agent({ lookback: "36h" }) },
      runs: { backoff: "1.5s" },
      scan: { max_window: "24h" },
      tokens: [{ identity: "lab", scopes: ["read"], token: { env: "LAB_TOKEN" } }],
    });
    const file = z.encode(ConfigSchema, c);
    expect(file.runs?.backoff).toBe("1500ms");
    expect(file.agents?.lab?.lookback).toBe("36h");
    expect(file.scan?.max_window).toBe("1d");
    expect(JSON.parse(JSON.stringify(file))).toEqual(file);
    expect(parseConfig(file)).toEqual(c);
  });
});
