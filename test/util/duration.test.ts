import { describe, expect, it } from "vitest";
import { formatDuration, parseDuration } from "../../src/util/duration.js";

describe("parseDuration", () => {
  it("reads each unit into milliseconds", () => {
    expect(parseDuration("500ms")).toBe(500);
    expect(parseDuration("30s")).toBe(30_000);
    expect(parseDuration("5m")).toBe(300_000);
    expect(parseDuration("12h")).toBe(43_200_000);
    expect(parseDuration("7d")).toBe(604_800_000);
    expect(parseDuration("1w")).toBe(604_800_000);
    expect(parseDuration("0s")).toBe(0);
  });

  it("takes fractions and rounds to whole milliseconds", () => {
    expect(parseDuration("1.5h")).toBe(5_400_000);
    expect(parseDuration("0.0004s")).toBe(0);
    expect(parseDuration("2.5ms")).toBe(3);
  });

  it("ignores surrounding white space", () => {
    expect(parseDuration(" 15m\n")).toBe(900_000);
  });

  it("refuses anything but a number and one unit", () => {
    for (const bad of ["", "30", "m", "5 m", "-5m", "1h30m", "5x", "1e3s", ".5s", "5M", "1y"])
      expect(parseDuration(bad), bad).toBeNull();
  });
});

describe("formatDuration", () => {
  it("writes the largest exact unit", () => {
    expect(formatDuration(90_000)).toBe("90s");
    expect(formatDuration(3_600_000)).toBe("1h");
    expect(formatDuration(1_209_600_000)).toBe("14d");
    expect(formatDuration(1500)).toBe("1500ms");
    expect(formatDuration(0)).toBe("0ms");
  });

  it("gives back what parseDuration reads", () => {
    for (const ms of [0, 1, 999, 1000, 61_000, 300_000, 86_400_000, 90 * 60_000, 10 * 86_400_000])
      expect(parseDuration(formatDuration(ms))).toBe(ms);
  });
});
