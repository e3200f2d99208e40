// Redaction: the canaries, many more secret forms with random values, and a large body of
// ordinary lines that must come through untouched (the false-positive rate).
import { describe, expect, it } from "vitest";
import { ordinaryLine, secretLine, seeded } from "../../../src/bench/collect-data.js";
import { classifyKey, Redactor, secretLike } from "../../../src/pipeline/collect/redact.js";
import { canaryLines, canaryValues } from "./helpers.js";

describe("redaction", () => {
  it("removes every canary secret, line by line and as one text, with typed placeholders", () => {
    const values = canaryValues();
    const lines = canaryLines();
    const r = new Redactor();
    const out = lines.map((l) => r.redact(l));
    for (const v of values) expect(out.join("\n")).not.toContain(v);
    const whole = new Redactor().redact(lines.join("\n"));
    for (const v of values) expect(whole).not.toContain(v);
    expect(out[0]).toBe(
      'level=info msg="using credentials" aws_access_key_id=<redacted:aws_access_key> region=eu-west-1',
    );
    expect(out[2]).toBe("git clone https://<redacted:github_token>@github.com/acme/notifi-services.git");
    expect(out[4]).toBe("2026-11-02T10:11:12Z WARN request rejected Authorization: Bearer <redacted:jwt>");
    expect(out[5]).toBe("connecting to postgres://notifi:<redacted:password>@db.internal:5432/notifications");
    expect(out[8]).toBe("  password: <redacted:password>    # kind: Secret data");
    expect(whole).toContain("<redacted:private_key>");
    expect(whole).not.toContain("PRIVATE KEY-----\n1qdX");
    expect(Object.keys(r.counts).sort()).toEqual(
      expect.arrayContaining([
        "aws_access_key",
        "github_token",
        "slack_token",
        "jwt",
        "password",
        "stripe_key",
        "google_api_key",
        "openai_key",
        "high_entropy",
      ]),
    );
  });

  it("removes random secrets in 22 further forms (5,000 lines, none may survive)", () => {
    const rand = seeded(11);
    const r = new Redactor();
    const missed: string[] = [];
    for (let i = 0; i < 5000; i++) {
      const { line, secret } = secretLine(rand);
      const out = r.redact(line);
      if (out.includes(secret) || !out.includes("<redacted:")) missed.push(`${line} => ${out}`);
    }
    expect(missed).toEqual([]);
  });

  it("leaves ordinary lines alone: UUIDs, hashes, base64 payloads, pod names, digests, SHAs, timestamps (FP rate < 0.5%)", () => {
    const rand = seeded(5);
    const r = new Redactor();
    const n = 20_000;
    const changed: string[] = [];
    for (let i = 0; i < n; i++) {
      const line = ordinaryLine(rand);
      if (r.redact(line) !== line) changed.push(line);
    }
    expect(changed.length / n).toBeLessThan(0.005);
  });

  it("keeps lines that only mention secrets, or name them without holding them", () => {
    const keep = [
      "password reset email sent to user 4711",
      "invalid API key provided",
      '{"max_tokens":512,"token_count":37,"auth_enabled":true}',
      "secretKeyRef: {name: db-creds, key: password}",
      "        - name: DB_PASSWORD\n          valueFrom:\n            secretKeyRef:\n              name: db\n              key: password",
      'password = os.environ["DB_PASSWORD"]',
      'token := req.Header.Get("Authorization")',
      "apiKey: process.env.STRIPE_KEY,",
      "passwordPolicy=strong tokenTTL=3600 secretName=agent-sre-db",
      "request_id=550e8400-e29b-41d4-a716-446655440000 trace_id=0af7651916cd43dd8448eb211c80319c",
      "image=ghcr.io/acme/agent-sre@sha256:3f2a9c0d1e8b7a6f5e4d3c2b1a0f9e8d7c6b5a493f2a9c0d1e8b7a6f5e4d3c2b",
      "payload=eyJ1c2VyIjoiYm9iIiwiYWN0aW9uIjoibG9naW4iLCJvayI6dHJ1ZX0=",
      "pod/lambda-pod-restart-00001-deployment-5d8c7b9f4-abcde Started",
      "Authorization header missing",
      "src/Controllers/UserAccountController2.cs: ReconcileKnativeServiceRevisionHandlerV2",
      "at Microsoft/AspNetCore/Mvc/Controller XMLHttpRequestUpload2 HTTPServerConfig2 AWSSecretsManagerClient",
      "System/Collections/Generic/List2 NotificationServiceImpl InvalidOperationException",
      "integrity sha512-Bx3qFn8dXy9Kq2Vz7Lp1Wm4Rt6Ys0Uc5Ea8Gh2Jk3Nb7Mv9Qw1Zs4Xd6Tf8Ry0Ui2Op4As6Df8Gh0Jk2Lz4Xc6Vb8Nm0==",
      "connecting to postgres://notifi@db.internal:5432/notifications",
      'img src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="',
    ];
    const r = new Redactor();
    for (const line of keep) expect(r.redact(line), line).toBe(line);
  });

  it("redacts Kubernetes Secret data in YAML and JSON, and JSON-escaped PEM keys", () => {
    const r = new Redactor();
    const yaml = [
      "apiVersion: v1",
      "kind: Secret",
      "metadata:",
      "  name: db",
      "data:",
      "  username: YWRtaW4=",
      "  password: MUEydWZlVjEzZE5OdE1iZQ==",
      "stringData:",
      "  config.yaml: |",
      "    url: https://example.com",
      "    apiSecret: plain-text-here",
      "type: Opaque",
    ].join("\n");
    const out = r.redact(yaml);
    expect(out).not.toMatch(/YWRtaW4=|MUEydWZl|plain-text-here/);
    expect(out).toContain("username: <redacted:k8s_secret>");
    expect(out).toContain("type: Opaque");
    const json =
      '{"apiVersion":"v1","kind":"Secret","data":{"token":"c2VjcmV0LXZhbHVl","ca.crt":"LS0tLS1C"},"type":"Opaque"}';
    expect(r.redact(json)).toBe(
      '{"apiVersion":"v1","kind":"Secret","data":{"token":"<redacted:k8s_secret>","ca.crt":"<redacted:k8s_secret>"},"type":"Opaque"}',
    );
    const escaped =
      '{"private_key":"-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n-----END PRIVATE KEY-----\\n","x":1}';
    expect(r.redact(escaped)).toBe('{"private_key":"<redacted:private_key>\\n","x":1}');
    expect(r.redact("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n")).toBe(
      "<redacted:private_key>",
    );
  });

  it("classifies key names and entropy the way the rules intend", () => {
    expect(classifyKey("password")).toEqual({ kind: "password", strong: true });
    expect(classifyKey("aws_secret_access_key")?.strong).toBe(true);
    expect(classifyKey("X-Api-Key")).toEqual({ kind: "api_key", strong: true });
    expect(classifyKey("clientSecret")?.kind).toBe("secret");
    expect(classifyKey("max_tokens")).toBeNull();
    expect(classifyKey("token_count")).toBeNull();
    expect(classifyKey("secretName")).toBeNull();
    expect(classifyKey("author")).toBeNull();
    expect(classifyKey("cache_key")?.strong).toBe(false);
    expect(secretLike("7ozHhNNbIA3kGzLtr9MWixrZ19ksQv80")).toBe(true);
    expect(secretLike("ReconcileKnativeServiceRevisionHandlerV2")).toBe(false);
    expect(secretLike("0af7651916cd43dd8448eb211c80319c")).toBe(false);
    expect(secretLike("agent-sre-00012-deployment-7c9d8f6b5-x2k4q")).toBe(false);
    expect(secretLike(Buffer.from('{"user":"bob","ok":true}').toString("base64"))).toBe(false);
    expect(secretLike(Buffer.from("1A2ufeV13dNNtMbe").toString("base64"))).toBe(true);
    // Random key material whose letters happen to form word-like runs (found by the benchmark).
    expect(secretLike("TPj2OQoKqicfbw50FhyfpqNkKgLebYd+MHsfgabaO9w=")).toBe(true);
    expect(secretLike("S4IXAZ9BHrItZrBQbe8khcoobJihppeUIOoGC3dUQUI=")).toBe(true);
  });
});
