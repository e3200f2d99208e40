import { describe, expect, it } from "vitest";
import { formatEta } from "../../src/util/format.js";

describe("formatEta", () => {
  it("writes seconds, then minutes and seconds, then hours", () => {
    expect(formatEta(45.2)).toBe("45s");
    expect(formatEta(725)).toBe("12m5s");
    expect(formatEta(8280)).toBe("2.3h");
    expect(formatEta(null)).toBe("?");
    expect(formatEta(Number.POSITIVE_INFINITY)).toBe("?");
  });

  it("rounds before splitting minutes from seconds", () => {
    // 599.6 s is 10m0s, not "9m60s" (both progress bars printed that before they shared this).
    expect(formatEta(599.6)).toBe("10m0s");
    expect(formatEta(119.5)).toBe("2m0s");
  });
});
