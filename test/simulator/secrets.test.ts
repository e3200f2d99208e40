// The raw simulated data carries fake secrets in the forms that leak in homelabs, so that the
// collectors' redaction has work to do; the ground truth lists every value so a test of the
// store can prove none got through.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSimulator, SERVICE_NAMES, type Simulator } from "../../src/simulator/index.js";
import { HOUR_MS } from "../../src/simulator/logs.js";
import { TRACE_BUCKET_MS } from "../../src/simulator/traces.js";
import { DAY_S, END, END_S, get, ns } from "./helpers.js";

let sim: Simulator;

beforeAll(async () => {
  sim = await createSimulator({ seed: 1, days: 30, end: END });
});
afterAll(async () => {
  await sim.close();
});

describe("fake secrets", () => {
  it("come in the canary forms and are listed in the ground truth", () => {
    const s = sim.world.secrets;
    expect(s.awsAccessKeyId).toMatch(/^AKIA[A-Z2-7]{16}$/);
    expect(s.awsSecretAccessKey).toMatch(/^[A-Za-z0-9+/]{40}$/);
    expect(s.githubToken).toMatch(/^ghp_[A-Za-z0-9]{36}$/);
    expect(s.slackToken).toMatch(/^xoxb-\d{11}-\d{12}-[A-Za-z0-9]{24}$/);
    expect(s.jwt).toMatch(/^eyJ[\w-]+\.eyJ[\w-]+\.[\w-]{43}$/);
    expect(s.stripeKey).toMatch(/^sk_live_[A-Za-z0-9]{24}$/);
    expect(s.googleApiKey).toMatch(/^AIza[\w-]{35}$/);
    expect(s.openaiKey).toMatch(/^sk-proj-[A-Za-z0-9]{48}$/);
    expect(Buffer.from(s.k8sSecretData, "base64").toString("base64")).toBe(s.k8sSecretData);
    for (const line of s.pemLines) expect(line).toMatch(/^[A-Za-z0-9+/]{64}$/);
    expect(sim.groundTruth.secrets).toHaveLength(11 + s.pemLines.length);
  });

  it("every one of them appears in the raw logs or span attributes of 30 days, in some lines only", () => {
    const w = sim.world;
    const text: string[] = [];
    let lines = 0;
    let withSecret = 0;
    for (let h = Math.floor(w.start / HOUR_MS); h * HOUR_MS < w.end; h++) {
      for (const name of SERVICE_NAMES) {
        for (const e of w.logs.bucket(name, h)) {
          if (e.ms < w.start || e.ms >= w.end) continue;
          lines++;
          if (sim.groundTruth.secrets.some((v) => e.line.includes(v))) {
            withSecret++;
            text.push(e.line);
          }
          // The entry's own flag says the same thing as the search.
          expect(e.secret, e.line).toBe(sim.groundTruth.secrets.some((v) => e.line.includes(v)));
        }
      }
    }
    for (let b = Math.floor(w.start / TRACE_BUCKET_MS); b * TRACE_BUCKET_MS < w.end; b++) {
      for (const t of w.traces.bucket(b)) for (const s of t.spans) text.push(JSON.stringify(s.attrs));
    }
    const all = text.join("\n");
    const missing = sim.groundTruth.secrets.filter((v) => !all.includes(v));
    expect(missing).toEqual([]);
    expect(withSecret).toBeGreaterThan(50);
    expect(withSecret / lines).toBeLessThan(0.05);
  });

  it("reach a client through the APIs", async () => {
    const logs = await get(sim.url, "/loki/api/v1/query_range", {
      query: '{namespace="notifi"} |= "xoxb-"',
      start: ns(END_S - 7 * DAY_S),
      end: ns(END_S),
      limit: 100,
    });
    const lines = logs.json.data.result.flatMap((s: { values: string[][] }) => s.values.map((v) => v[1]));
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) expect(l).toContain(sim.world.secrets.slackToken);

    const traces = await get(sim.url, "/api/search", {
      q: '{ span.db.connection_string =~ "postgres://.*" }',
      start: END_S - 7 * DAY_S,
      end: END_S,
      limit: 1,
    });
    expect(traces.json.traces).toHaveLength(1);
    const body = await get(sim.url, `/api/v2/traces/${traces.json.traces[0].traceID}`);
    expect(body.text).toContain(sim.world.secrets.dbPassword);
  });
});
