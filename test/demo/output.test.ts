// How the demo prints a duration: seconds under a minute and a half, then minutes and seconds.
import { describe, expect, it } from "vitest";
import { secs } from "../../src/demo/output.js";

describe("the demo's durations", () => {
  it("rounds before splitting minutes from seconds", () => {
    expect(secs(27.84)).toBe("27.8 s");
    expect(secs(364.2)).toBe("6 min 4 s");
    // 599.6 s is 10 min 0 s, not "9 min 60 s" (the CPU total of a demo printed that).
    expect(secs(599.6)).toBe("10 min 0 s");
    expect(secs(119.5)).toBe("2 min 0 s");
  });
});
