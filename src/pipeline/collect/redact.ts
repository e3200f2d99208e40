// Redaction, run on every text before it is written: log lines, code files, span attributes,
// metric and stream labels. A secret becomes a typed placeholder such as <redacted:jwt>, so the
// model still learns that a token stood there. Rules run from the most specific (PEM blocks,
// Kubernetes Secrets, known token prefixes) to the most general (key names, then entropy).

export type RedactionCounts = Record<string, number>;

const ph = (kind: string) => `<redacted:${kind}>`;
const isPlaceholder = (s: string) => s.startsWith("<redacted:");

// ---- known token shapes ------------------------------------------------------------------------

interface PrefixRule {
  kind: string;
  /** Cheap substring checks: the regex runs only when one of them occurs. */
  needles: string[];
  re: RegExp;
}

// (?<![\w-]) / (?![\w-]) stand in for word boundaries that also respect "-" and "_".
const PREFIX_RULES: PrefixRule[] = [
  { kind: "jwt", needles: ["eyJ"], re: /eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/g },
  {
    kind: "aws_access_key",
    needles: ["AKIA", "ASIA", "ABIA", "ACCA", "AROA", "AIDA", "AGPA", "ANPA", "APKA"],
    re: /(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA|AROA|AIDA|AGPA|ANPA|APKA)[A-Z0-9]{16}(?![A-Za-z0-9])/g,
  },
  {
    kind: "github_token",
    needles: ["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"],
    re: /(?<![\w-])(?:gh[pousr]_[A-Za-z0-9]{30,255}|github_pat_[A-Za-z0-9_]{40,255})(?![\w-])/g,
  },
  {
    kind: "gitlab_token",
    needles: ["glpat-", "glrt-", "gldt-", "glptt-", "glsoat-"],
    re: /(?<![\w-])gl(?:pat|rt|dt|ptt|soat)-[A-Za-z0-9_-]{20,}/g,
  },
  { kind: "slack_token", needles: ["xox"], re: /(?<![\w-])xox[abposre]-[A-Za-z0-9-]{10,}/g },
  {
    kind: "slack_webhook",
    needles: ["hooks.slack.com"],
    re: /hooks\.slack\.com\/(?:services|workflows)\/[A-Za-z0-9/_-]+/g,
  },
  {
    kind: "stripe_key",
    needles: ["sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_"],
    re: /(?<![\w-])(?:(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}|whsec_[A-Za-z0-9]{20,})/g,
  },
  { kind: "google_api_key", needles: ["AIza"], re: /(?<![\w-])AIza[0-9A-Za-z_-]{35}(?![\w-])/g },
  { kind: "anthropic_key", needles: ["sk-ant-"], re: /(?<![\w-])sk-ant-[A-Za-z0-9_-]{20,}/g },
  { kind: "openai_key", needles: ["sk-"], re: /(?<![\w-])sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}/g },
  { kind: "huggingface_token", needles: ["hf_"], re: /(?<![\w-])hf_[A-Za-z0-9]{30,}(?![\w-])/g },
  { kind: "npm_token", needles: ["npm_"], re: /(?<![\w-])npm_[A-Za-z0-9]{36}(?![\w-])/g },
  {
    kind: "digitalocean_token",
    needles: ["dop_v1_", "doo_v1_", "dor_v1_"],
    re: /(?<![\w-])do[opr]_v1_[a-f0-9]{64}/g,
  },
  { kind: "sendgrid_key", needles: ["SG."], re: /(?<![\w-])SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{30,}/g },
  { kind: "age_key", needles: ["AGE-SECRET-KEY-"], re: /AGE-SECRET-KEY-1[0-9A-Z]{50,}/g },
];

const PEM_RE =
  /-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY( BLOCK)?-----[\s\S]*?(?:-----END \1PRIVATE KEY\2-----|$(?![\s\S]))/g;

// "Authorization: Bearer x", "authorization=Basic x", "\"Authorization\": \"Token x\"".
const AUTH_HEADER_RE =
  /\b((?:proxy-)?authorization)(\\?["']?\s*[:=]\s*\\?["']?)(?:(bearer|basic|token|digest|negotiate|apikey|aws4-hmac-sha256)\s+)?([^\s"'\\,;]+)/gi;
// A bare "Bearer <token>" outside a header name.
const BEARER_RE = /\b(bearer)(\s+)([A-Za-z0-9._~+/-]{16,}=*)/gi;
// scheme://user:password@host — the password goes, the user stays.
const URL_PASSWORD_RE = /\b([a-z][a-z0-9+.-]{1,30}:\/\/)([^\s:@/?#"'<>]*):([^\s@/?#"'<>]+)@/gi;
// scheme://token@host, where the user part is itself a credential.
const URL_TOKEN_RE = /\b(https?:\/\/)([A-Za-z0-9_.~+=-]{16,})@/g;
// --password value / --token value on a command line.
const FLAG_RE =
  /(--?(?:password|passwd|token|secret|api-key|apikey|client-secret|auth-token))(\s+)([^\s"'-][^\s"']*)/gi;

// ---- key = value pairs whose key names a secret ------------------------------------------------

// "key": "v" | key="v" | key: v | key=v, optionally with JSON-escaped quotes inside a string.
const PAIR_RE =
  /(\\?["']?)([A-Za-z_][A-Za-z0-9_.-]{0,80})\1(\s*[:=]\s*)(\\"(?:[^"\\]|\\(?!")[^"])*\\"|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|[^\s,;&"'<>{}[\]()]+)/g;
// Only lines where a secret-ish word is followed by ":" or "=" can hold a named secret.
const PAIR_HINT = /(?:pass|pwd|secret|token|key|auth|cred|cookie|sig|otp|sas)[A-Za-z0-9_.-]*\\?["']?\s*[:=]/i;
const PREFIX_HINT =
  /eyJ|A(?:KIA|SIA|BIA|CCA|ROA|IDA|GPA|NPA|PKA|Iza|GE-SECRET)|gh[pousr]_|github_pat_|gl(?:pat|rt|dt|ptt|soat)-|xox|hooks\.slack|[sr]k_(?:live|test)_|whsec_|sk-|hf_|npm_|do[opr]_v1_|SG\./;
const AUTH_HINT = /authorization/i;
const FLAG_HINT = /--?(?:passw|token|secret|api-?key|client-secret|auth-token)/i;
const BEARER_HINT = /bearer/i;

const STRONG_WORDS = new Set([
  "password",
  "passwd",
  "passphrase",
  "pwd",
  "secret",
  "secrets",
  "token",
  "apikey",
  "accesskey",
  "secretkey",
  "privatekey",
  "credential",
  "credentials",
  "creds",
  "authorization",
  "cookie",
  "otp",
  "clientsecret",
  "authtoken",
  "apitoken",
  "accesstoken",
  "refreshtoken",
  "idtoken",
  "sessiontoken",
  "connectionstring",
]);
/** Whole keys that are secrets although their word is ambiguous elsewhere. */
const STRONG_KEYS = new Set(["pass", "auth", "sig", "sas", "x-auth", "set-cookie"]);
/** "<qualifier> key" names a secret key; e.g. signing_key, x-api-key, accountKey. */
const KEY_QUALIFIERS = new Set([
  "api",
  "access",
  "secret",
  "private",
  "signing",
  "encryption",
  "master",
  "account",
  "auth",
  "client",
  "service",
  "license",
  "app",
  "webhook",
  "shared",
  "session",
  "storage",
  "subscription",
  "admin",
  "root",
  "deploy",
  "hmac",
  "jwt",
  "aes",
  "cipher",
  "crypto",
  "ssh",
  "gpg",
  "pgp",
]);
/** A last word that makes the key metadata about a secret, not the secret. */
const META_WORDS = new Set([
  "count",
  "type",
  "types",
  "length",
  "len",
  "size",
  "limit",
  "ttl",
  "expiry",
  "expires",
  "expiration",
  "exp",
  "url",
  "uri",
  "endpoint",
  "path",
  "file",
  "dir",
  "name",
  "names",
  "id",
  "ids",
  "ref",
  "reference",
  "enabled",
  "disabled",
  "required",
  "header",
  "policy",
  "provider",
  "store",
  "version",
  "mode",
  "format",
  "field",
  "env",
  "var",
  "hint",
  "prefix",
  "suffix",
  "min",
  "max",
  "source",
  "rotation",
  "strength",
  "reset",
  "changed",
  "updated",
  "at",
  "age",
  "usage",
  "used",
  "index",
  "selector",
  "namespace",
  "mount",
  "volume",
  "label",
  "kind",
  "status",
  "valid",
  "invalid",
  "error",
  "errors",
  "method",
  "scheme",
  "algorithm",
  "alg",
  "location",
]);

export type KeyClass = { kind: string; strong: boolean } | null;

const keyCache = new Map<string, KeyClass>();

/** Whether a key (label, attribute, field name) names a secret, and which kind. */
export function classifyKey(key: string): KeyClass {
  const cached = keyCache.get(key);
  if (cached !== undefined) return cached;
  const res = classifyKeyUncached(key);
  if (keyCache.size < 50_000) keyCache.set(key, res);
  return res;
}

function classifyKeyUncached(key: string): KeyClass {
  const lower = key.toLowerCase();
  if (STRONG_KEYS.has(lower)) return { kind: kindOfWords([lower]), strong: true };
  const words = key
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .replace(/([A-Z]+)([A-Z][a-z])/g, "$1 $2")
    .toLowerCase()
    .split(/[\s_.-]+/)
    .filter(Boolean);
  if (!words.length) return null;
  const last = words[words.length - 1];
  if (META_WORDS.has(last)) return null;
  if (words.some((w) => STRONG_WORDS.has(w))) return { kind: kindOfWords(words), strong: true };
  const joined = words.join("");
  for (const w of STRONG_WORDS)
    if (w.length >= 8 && joined.endsWith(w)) return { kind: kindOfWords(words), strong: true };
  if (last === "key" || last === "keys") {
    const q = words[words.length - 2];
    return { kind: "api_key", strong: q !== undefined && KEY_QUALIFIERS.has(q) };
  }
  return null;
}

function kindOfWords(words: string[]): string {
  const s = words.join(" ");
  if (/pass|pwd/.test(s)) return "password";
  if (/cookie/.test(s)) return "cookie";
  if (/token/.test(s)) return "token";
  if (/secret/.test(s)) return "secret";
  if (/authorization|auth$|^auth|cred/.test(s)) return "credentials";
  if (/key/.test(s)) return "api_key";
  return "secret";
}

/** Values that are not secrets even under a secret's name: empties, booleans, references. */
function trivialValue(v: string): boolean {
  if (v.length < 3) return true;
  if (isPlaceholder(v)) return true;
  const l = v.toLowerCase();
  if (l === "null" || l === "nil" || l === "none" || l === "true" || l === "false" || l === "undefined")
    return true;
  if (l === "required" || l === "optional" || l === "redacted" || l === "hidden" || l === "[redacted]")
    return true;
  // "Authorization: Bearer <token>": the scheme is not the secret; the token after it is handled apart.
  if (l === "bearer" || l === "basic" || l === "digest" || l === "negotiate") return true;
  // A value that names the concept ("key: password" in a secretKeyRef) is not the secret.
  if (STRONG_WORDS.has(l) || l === "key" || l === "secret-key") return true;
  if (/^[*x.]+$/i.test(v) || /^<[^>]*>$/.test(v)) return true;
  // ${VAR}, {{ .Values.x }}, $(cmd), %s, process.env.X, os.Getenv("X"), secretKeyRef-style lookups.
  if (/^(\$\{|\{\{|\$\(|\$[A-Z_]|%[sdv])/.test(v)) return true;
  if (/^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)+(\(.*\)?)?$/.test(v) && /[a-z]/.test(v) && !/\d{3}/.test(v))
    return true;
  if (/^[A-Za-z_$][\w$.]*\(/.test(v) || /^[A-Za-z_$][\w$]*\[/.test(v)) return true;
  return false;
}

// ---- generic high-entropy rule -----------------------------------------------------------------

// "=" only as trailing padding, so that key=value never joins into one candidate.
const CANDIDATE_RE = /[A-Za-z0-9+/_-]{20,}={0,2}/g;

function shannon(s: string): number {
  const freq = new Map<number, number>();
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    freq.set(c, (freq.get(c) ?? 0) + 1);
  }
  let h = 0;
  for (const n of freq.values()) {
    const p = n / s.length;
    h -= p * Math.log2(p);
  }
  return h;
}

/** Share of letters that sit in word-like runs (Capitalised or lowercase, 4+ letters, with vowels). */
function wordCoverage(s: string): number {
  let covered = 0;
  for (const m of s.matchAll(/[A-Z]?[a-z]{3,}|[A-Z]{2,}(?![a-z])/g)) {
    const w = m[0];
    // All-capital runs (IXAZ) are as common in random base64 as in acronyms: they do not count.
    if (w.length < 4 || !/[a-z]/.test(w) || /[^aeiouy]{5}/i.test(w)) continue;
    // Words carry vowels (a quarter of their letters or more); random runs mostly do not.
    const vowels = w.match(/[aeiouy]/gi)?.length ?? 0;
    if (vowels / w.length >= 0.25) covered += w.length;
  }
  return covered / s.length;
}

function printableRatio(buf: Buffer): number {
  let ok = 0;
  for (const b of buf) if ((b >= 0x20 && b < 0x7f) || b === 0x09 || b === 0x0a || b === 0x0d) ok++;
  return buf.length ? ok / buf.length : 0;
}

/**
 * Whether a token looks like key material: long, mixed character classes, high entropy, not
 * words, not a hash or id, and not a base64 payload of readable text.
 */
export function secretLike(token: string, minLength = 20): boolean {
  // Cheapest tests first: most candidates in ordinary text have no capital letter at all.
  if (token.length < minLength || !/[A-Z]/.test(token)) return false; // slugs, pod names, paths, uuids, hex
  const t = /^[-_/=+]|[-_/=+]$/.test(token) ? token.replace(/^[-_/=+]+|[-_/=+]+$/g, "") : token;
  if (t.length < minLength) return false;
  if (/^[0-9A-F]+$/.test(t)) return false; // upper-case hashes and ids
  if (t.startsWith("sha") && /^sha(1|256|384|512)-/.test(t)) return false; // subresource integrity
  const lower = /[a-z]/.test(t);
  const digit = /[0-9]/.test(t);
  if (!lower) {
    // base32-ish secrets: upper + digits, no separators, high entropy
    if (!digit || /[-_/]/.test(t) || t.length < 24 || shannon(t) < 4) return false;
    return true;
  }
  if (!digit && t.length < 32) return false;
  if (wordCoverage(t) >= 0.6) return false; // identifiers, paths, words
  if (shannon(t) < (t.length >= 32 ? 4.0 : 3.6)) return false;
  if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(t) || /^[A-Za-z0-9+/]+={0,2}$/.test(token)) {
    const decoded = Buffer.from(token.replace(/-/g, "+").replace(/_/g, "/"), "base64");
    if (decoded.length >= 12 && printableRatio(decoded) >= 0.97) {
      const text = decoded.toString("latin1");
      // Readable text, JSON, key=value: a payload. A single random-looking word: a wrapped password.
      if (/[\s{}":,<>]/.test(text) || wordCoverage(text) >= 0.45) return false;
      return /[A-Za-z]/.test(text) && /[0-9]/.test(text) ? true : shannon(text) >= 3.5;
    }
  }
  return true;
}

// ---- Kubernetes Secret manifests ---------------------------------------------------------------

const K8S_KIND_YAML = /^\s*kind:\s*["']?Secret["']?\s*(#.*)?$/m;
const K8S_KIND_JSON = /"kind"\s*:\s*"Secret"/;

function redactK8sSecretYaml(text: string, bump: (k: string) => void): string {
  const docs = text.split(/(^---.*$)/m);
  for (let d = 0; d < docs.length; d++) {
    if (!K8S_KIND_YAML.test(docs[d])) continue;
    const lines = docs[d].split("\n");
    let blockIndent = -1; // indentation of the data:/stringData: key while inside its block
    let scalarIndent = -1; // inside a block scalar value (|, >) under a data key
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      const indent = line.length - line.trimStart().length;
      const trimmed = line.trim();
      if (scalarIndent >= 0) {
        if (trimmed === "" || indent > scalarIndent) {
          if (trimmed) lines[i] = `${" ".repeat(indent)}${ph("k8s_secret")}`;
          continue;
        }
        scalarIndent = -1;
      }
      if (blockIndent >= 0 && trimmed && !trimmed.startsWith("#") && indent <= blockIndent) blockIndent = -1;
      const head = /^(\s*)(data|stringData):\s*(\{.*\})?\s*$/.exec(line);
      if (head) {
        if (head[3]) {
          lines[i] = `${head[1]}${head[2]}: {${ph("k8s_secret")}}`;
          bump("k8s_secret");
        } else blockIndent = indent;
        continue;
      }
      if (blockIndent < 0 || !trimmed || trimmed.startsWith("#")) continue;
      const kv = /^(\s*[^:#\s][^:]*:\s*)(.*)$/.exec(line);
      if (!kv) continue;
      const value = kv[2].replace(/\s+#.*$/, "").trim();
      if (!value || isPlaceholder(value)) continue;
      if (value === "|" || value === ">" || /^[|>][+-]?$/.test(value)) scalarIndent = indent;
      else lines[i] = `${kv[1]}${ph("k8s_secret")}`;
      bump("k8s_secret");
    }
    docs[d] = lines.join("\n");
  }
  return docs.join("");
}

function redactK8sSecretJson(text: string, bump: (k: string) => void): string {
  return text.replace(
    /("(?:data|stringData)"\s*:\s*\{)([^{}]*)(\})/g,
    (_m, open: string, body: string, close: string) => {
      const inner = body.replace(/("(?:[^"\\]|\\.)*"\s*:\s*)"(?:[^"\\]|\\.)*"/g, (_p, k: string) => {
        bump("k8s_secret");
        return `${k}"${ph("k8s_secret")}"`;
      });
      return `${open}${inner}${close}`;
    },
  );
}

// ---- the redactor ------------------------------------------------------------------------------

export class Redactor {
  /** Redactions made so far, by kind. */
  readonly counts: RedactionCounts = {};
  total = 0;

  private bump = (kind: string): void => {
    this.counts[kind] = (this.counts[kind] ?? 0) + 1;
    this.total++;
  };

  /** Redacts any text: a log line, a whole file, an attribute value. */
  redact(text: string): string {
    if (text.length < 8) return text;
    let s = text;
    if (s.includes("PRIVATE KEY")) {
      s = s.replace(PEM_RE, () => {
        this.bump("private_key");
        return ph("private_key");
      });
    }
    if (s.includes("Secret")) {
      if (K8S_KIND_YAML.test(s)) s = redactK8sSecretYaml(s, this.bump);
      if (K8S_KIND_JSON.test(s)) s = redactK8sSecretJson(s, this.bump);
    }
    if (PREFIX_HINT.test(s)) s = this.prefixRules(s);
    if (AUTH_HINT.test(s)) {
      s = s.replace(
        AUTH_HEADER_RE,
        (m, name: string, sep: string, scheme: string | undefined, value: string) => {
          if (isPlaceholder(value) || value.length < 3) return m;
          const kind = scheme ? (scheme.toLowerCase() === "basic" ? "basic_auth" : "bearer") : "credentials";
          this.bump(kind);
          return `${name}${sep}${scheme ? `${scheme} ` : ""}${ph(kind)}`;
        },
      );
    }
    if (BEARER_HINT.test(s)) {
      s = s.replace(BEARER_RE, (m, word: string, sp: string, value: string) => {
        if (!/[0-9]/.test(value) && !(/[A-Z]/.test(value) && /[a-z]/.test(value))) return m;
        this.bump("bearer");
        return `${word}${sp}${ph("bearer")}`;
      });
    }
    if (s.includes("://")) {
      s = s.replace(URL_PASSWORD_RE, (m, scheme: string, user: string, pw: string) => {
        if (isPlaceholder(pw) || /^\$\{.*\}$/.test(pw)) return m;
        this.bump("password");
        return `${scheme}${user}:${ph("password")}@`;
      });
      s = s.replace(URL_TOKEN_RE, (m, scheme: string, user: string) => {
        if (!secretLike(user, 16)) return m;
        this.bump("token");
        return `${scheme}${ph("token")}@`;
      });
    }
    if (FLAG_HINT.test(s)) {
      s = s.replace(FLAG_RE, (m, flag: string, sp: string, value: string) => {
        if (trivialValue(value)) return m;
        this.bump(kindOfWords([flag.toLowerCase()]));
        return `${flag}${sp}${ph(kindOfWords([flag.toLowerCase()]))}`;
      });
    }
    if (PAIR_HINT.test(s)) s = s.replace(PAIR_RE, this.pairReplacer);
    s = s.replace(CANDIDATE_RE, (tok, offset: number, whole: string) => {
      if (!secretLike(tok)) return tok;
      // data:image/png;base64,... is content, not a credential.
      if (offset >= 7 && whole.slice(offset - 7, offset) === "base64,") return tok;
      this.bump("high_entropy");
      return ph("high_entropy");
    });
    return s;
  }

  private prefixRules(text: string): string {
    let s = text;
    for (const rule of PREFIX_RULES) {
      if (!rule.needles.some((n) => s.includes(n))) continue;
      s = s.replace(rule.re, () => {
        this.bump(rule.kind);
        return ph(rule.kind);
      });
    }
    return s;
  }

  private pairReplacer = (m: string, q: string, key: string, sep: string, raw: string): string => {
    const cls = classifyKey(key);
    if (!cls) return m;
    let open = "";
    let close = "";
    let value = raw;
    if (raw.startsWith('\\"')) {
      open = '\\"';
      close = '\\"';
      value = raw.slice(2, -2);
    } else if (raw.startsWith('"') || raw.startsWith("'")) {
      open = raw[0];
      close = raw[0];
      value = raw.slice(1, -1);
    }
    if (trivialValue(value)) return m;
    if (!cls.strong && !secretLike(value, 16)) return m;
    this.bump(cls.kind);
    return `${q}${key}${q}${sep}${open}${ph(cls.kind)}${close}`;
  };

  /** A value whose name is known (a label, an attribute): the name alone can make it secret. */
  redactValue(key: string, value: string): string {
    const cls = classifyKey(key);
    if (cls && !trivialValue(value) && (cls.strong || secretLike(value, 16))) {
      // Keep the more telling type when the value alone is a known token (token: ghp_… → github_token).
      const probe = new Redactor();
      if (/^<redacted:[a-z_]+>$/.test(probe.redact(value)) && probe.total === 1) {
        const kind = Object.keys(probe.counts)[0];
        this.bump(kind);
        return ph(kind);
      }
      this.bump(cls.kind);
      return ph(cls.kind);
    }
    return this.redact(value);
  }

  /** Redacts every value of a label/attribute map, keeping the keys. */
  redactMap<V>(map: Record<string, V>): Record<string, V> {
    const out: Record<string, V> = {};
    for (const [k, v] of Object.entries(map)) {
      out[k] = (typeof v === "string" ? this.redactValue(k, v) : v) as V;
    }
    return out;
  }
}
