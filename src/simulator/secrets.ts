// Fake secrets in the forms that leak in homelabs (the same forms as shared/canaries/secrets.txt),
// generated from the seed: random strings, never real credentials. The simulator's logs and span
// attributes carry them so that the collectors' redaction has real work to do, and the ground truth
// lists every value so a test can prove none survives into the store.
import { Rng } from "./rng.js";

const UPPER_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URLSAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

export interface FakeSecrets {
  awsAccessKeyId: string;
  awsSecretAccessKey: string;
  githubToken: string;
  slackToken: string;
  jwt: string;
  dbPassword: string;
  stripeKey: string;
  googleApiKey: string;
  /** base64 of a password, as in a Kubernetes Secret's `data`. */
  k8sSecretData: string;
  apiKey: string;
  openaiKey: string;
  /** PEM body lines (64 base64 characters each). */
  pemLines: string[];
}

function b64url(s: string): string {
  return Buffer.from(s).toString("base64url");
}

export function fakeSecrets(seed: number): FakeSecrets {
  const r = Rng.of(seed, "secrets");
  const header = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const payload = b64url(JSON.stringify({ sub: r.chars(10), exp: 1893456000 + r.int(10_000_000) }));
  const sig = r.chars(43, URLSAFE);
  return {
    awsAccessKeyId: `AKIA${r.chars(16, UPPER_DIGITS)}`,
    awsSecretAccessKey: r.chars(40, B64),
    githubToken: `ghp_${r.chars(36)}`,
    slackToken: `xoxb-${r.chars(11, "0123456789")}-${r.chars(12, "0123456789")}-${r.chars(24)}`,
    jwt: `${header}.${payload}.${sig}`,
    dbPassword: r.chars(18),
    stripeKey: `sk_live_${r.chars(24)}`,
    googleApiKey: `AIza${r.chars(35, URLSAFE)}`,
    k8sSecretData: Buffer.from(r.chars(16)).toString("base64"),
    apiKey: r.chars(32),
    openaiKey: `sk-proj-${r.chars(48)}`,
    pemLines: Array.from({ length: 6 }, () => r.chars(64, B64)),
  };
}

/** Every secret value, one string each (PEM lines separately): what must never reach the store. */
export function secretValues(s: FakeSecrets): string[] {
  return [
    s.awsAccessKeyId,
    s.awsSecretAccessKey,
    s.githubToken,
    s.slackToken,
    s.jwt,
    s.dbPassword,
    s.stripeKey,
    s.googleApiKey,
    s.k8sSecretData,
    s.apiKey,
    s.openaiKey,
    ...s.pemLines,
  ];
}

export function pemBlock(s: FakeSecrets): string {
  return `-----BEGIN RSA PRIVATE KEY-----\n${s.pemLines.join("\n")}\n-----END RSA PRIVATE KEY-----`;
}
