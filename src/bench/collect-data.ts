// Generated data for the collection benchmark and tests: ordinary log lines (what redaction must
// leave alone), lines carrying random secrets in many forms (what it must remove), log streams,
// traces and a mixed-language repository. Everything is seeded, so a run can be repeated.
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { SERVICE_NAMES } from "../simulator/homelab.js";

export type Rand = () => number;

/** mulberry32: small, fast and good enough for test data. */
export function seeded(seed: number): Rand {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
export const int = (r: Rand, lo: number, hi: number): number => lo + Math.floor(r() * (hi - lo + 1));

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const B64 = `${ALNUM}+/`;
const LOWER_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789";
const UPPER_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

export function chars(r: Rand, alphabet: string, n: number): string {
  let s = "";
  for (let i = 0; i < n; i++) s += alphabet[Math.floor(r() * alphabet.length)];
  return s;
}
export const hex = (r: Rand, n: number) => chars(r, "0123456789abcdef", n);
export const uuid = (r: Rand) => `${hex(r, 8)}-${hex(r, 4)}-4${hex(r, 3)}-a${hex(r, 3)}-${hex(r, 12)}`;
const randomBytes = (r: Rand, n: number) =>
  Buffer.from(Array.from({ length: n }, () => Math.floor(r() * 256)));

/** The simulator's services: one table for every fake homelab. */
const SERVICES = SERVICE_NAMES;
const NAMESPACES = ["ai-agents", "knative-lambda", "monitoring", "default", "notifi"];
const WORDS = [
  "reconcile",
  "request",
  "completed",
  "failed",
  "retrying",
  "cache",
  "miss",
  "hit",
  "connection",
  "established",
  "timeout",
  "scheduled",
  "event",
  "received",
  "published",
  "handler",
  "revision",
  "ready",
  "scaling",
  "deployment",
  "updated",
  "token",
  "refresh",
  "password",
  "reset",
  "key",
  "rotation",
  "secret",
  "mounted",
];

export function podName(r: Rand): string {
  const svc = pick(r, SERVICES);
  return r() < 0.5
    ? `${svc}-${String(int(r, 1, 99999)).padStart(5, "0")}-deployment-${hex(r, 9)}-${chars(r, LOWER_ALNUM, 5)}`
    : `${svc}-${hex(r, 10)}-${chars(r, LOWER_ALNUM, 5)}`;
}

function isoTime(r: Rand): string {
  const ms = Date.UTC(2026, 10, 1) + Math.floor(r() * 30 * 86400e3);
  return new Date(ms).toISOString().replace("Z", `${String(int(r, 0, 999999)).padStart(6, "0")}Z`);
}

function base64Payload(r: Rand): string {
  const obj = { id: uuid(r), service: pick(r, SERVICES), count: int(r, 0, 999), ok: r() < 0.5 };
  const text = r() < 0.5 ? JSON.stringify(obj) : `${pick(r, WORDS)} ${pick(r, WORDS)} from ${podName(r)}`;
  return Buffer.from(text).toString(r() < 0.8 ? "base64" : "base64url");
}

/** Log lines with ids, hashes, payloads and names that are not secrets, in the forms homelabs log. */
export function ordinaryLine(r: Rand): string {
  const t = int(r, 0, 23);
  const svc = pick(r, SERVICES);
  const ns = pick(r, NAMESPACES);
  switch (t) {
    case 0:
      return `level=info ts=${isoTime(r)} msg="request completed" request_id=${uuid(r)} duration=${int(r, 1, 900)}ms status=200`;
    case 1:
      return `level=debug msg="cache hit" key=sha256:${hex(r, 64)} size=${int(r, 10, 99999)}`;
    case 2:
      return `{"level":"info","time":"${isoTime(r)}","msg":"event published","payload":"${base64Payload(r)}","topic":"${svc}.events"}`;
    case 3:
      return `Successfully assigned ${ns}/${podName(r)} to node-${int(r, 1, 6)}`;
    case 4:
      return `Pulling image "ghcr.io/acme/${svc}@sha256:${hex(r, 64)}"`;
    case 5:
      return `level=info msg="built from git" commit=${hex(r, 40)} branch=main dirty=false`;
    case 6:
      return `${isoTime(r)} INFO  [${svc}] trace_id=${hex(r, 32)} span_id=${hex(r, 16)} ${pick(r, WORDS)} ${pick(r, WORDS)}`;
    case 7:
      return `GET https://api.github.com/repos/acme/${svc}/pulls?page=${int(r, 1, 9)}&per_page=100 200 ${int(r, 5, 500)}ms`;
    case 8:
      return `goroutine ${int(r, 1, 900)} [running]:\n\tmain.(*Server).handleRequest(0xc000${hex(r, 6)}, {0x${hex(r, 7)}, 0x${hex(r, 12)}})`;
    case 9:
      return `\tat com.acme.notifications.NotificationService.sendEmail(NotificationService.java:${int(r, 10, 900)})`;
    case 10:
      return `{"level":"info","msg":"llm call","model":"llama3.1:8b","max_tokens":${int(r, 64, 4096)},"token_count":${int(r, 1, 9999)},"auth_enabled":true}`;
    case 11:
      return `level=warn msg="${pick(r, ["password reset email sent", "token refresh succeeded", "invalid API key provided", "Authorization header missing", "secret mounted"])}" user_id=${int(r, 1, 99999)} pod=${podName(r)}`;
    case 12:
      return `mounted volume /var/lib/kubelet/pods/${uuid(r)}/volumes/kubernetes.io~projected/kube-api-access-${chars(r, LOWER_ALNUM, 5)}`;
    case 13:
      return `ReconcileKnativeServiceRevisionHandlerV${int(r, 1, 3)}: revision ${svc}-${String(int(r, 1, 999)).padStart(5, "0")} is Ready (generation=${int(r, 1, 40)})`;
    case 14:
      return `http_request_duration_seconds_bucket{le="${pick(r, ["0.1", "0.5", "1", "+Inf"])}",service="${svc}"} ${int(r, 0, 99999)} ${Date.now()}`;
    case 15:
      return `level=info msg="secret reference resolved" secretName=${svc}-db secretKey=password passwordPolicy=strong tokenTTL=3600`;
    case 16:
      return `${isoTime(r)} upstream connect to 10.${int(r, 0, 255)}.${int(r, 0, 255)}.${int(r, 0, 255)}:${int(r, 1024, 65535)} ok, peer=${svc}.${ns}.svc.cluster.local`;
    case 17:
      return `knative revision ${svc}-${String(int(r, 1, 99999)).padStart(5, "0")} image digest sha256:${hex(r, 64)} etag="${hex(r, 32)}"`;
    case 18:
      return `level=error msg="reconcile failed" err="context deadline exceeded" ts_ns=${Date.now()}${int(r, 100000, 999999)} attempt=${int(r, 1, 5)}`;
    case 19:
      return `{"ts":${Date.now() / 1000},"caller":"server/handler.go:${int(r, 10, 900)}","msg":"decoded","data":"${base64Payload(r)}"}`;
    case 20:
      return `Created container ${svc} from image docker.io/acme/${svc}:v${int(r, 0, 3)}.${int(r, 0, 30)}.${int(r, 0, 9)}-${hex(r, 7)}`;
    case 21:
      return `module github.com/acme/${svc} v0.0.0-2026${String(int(r, 1e9, 9e9))}-${hex(r, 12)} loaded from /go/pkg/mod/cache/download`;
    case 22:
      return `src/Controllers/UserAccountController.cs(${int(r, 1, 400)},${int(r, 1, 80)}): warning CS8618: Non-nullable property 'ConnectionString' must contain a non-null value`;
    default:
      return `level=info msg="${pick(r, WORDS)} ${pick(r, WORDS)}" namespace=${ns} pod=${podName(r)} revision=${svc}-${String(int(r, 1, 999)).padStart(5, "0")}`;
  }
}

/** A line that carries a random secret, and the secret itself. Forms go beyond the canaries. */
export function secretLine(r: Rand): { line: string; secret: string } {
  const t = int(r, 0, 21);
  const s = (secret: string, line: string) => ({ line, secret });
  switch (t) {
    case 0: {
      const k = `AKIA${chars(r, UPPER_ALNUM, 16)}`;
      return s(k, `using aws key ${k} for s3 uploads`);
    }
    case 1: {
      const k = chars(r, B64, 40);
      return s(k, `AWS_SECRET_ACCESS_KEY=${k}`);
    }
    case 2: {
      const k = `ghp_${chars(r, ALNUM, 36)}`;
      return s(k, `export GITHUB_TOKEN=${k}`);
    }
    case 3: {
      const k = `glpat-${chars(r, ALNUM, 20)}`;
      return s(k, `curl --header "PRIVATE-TOKEN: ${k}" https://gitlab.example.com/api/v4/projects`);
    }
    case 4: {
      const k = `hf_${chars(r, ALNUM, 34)}`;
      return s(k, `level=debug msg="downloading model" hf_token=${k}`);
    }
    case 5: {
      const k = chars(r, ALNUM, 24);
      return s(
        k,
        `webhook: https://hooks.slack.com/services/T${chars(r, UPPER_ALNUM, 8)}/B${chars(r, UPPER_ALNUM, 8)}/${k}`,
      );
    }
    case 6: {
      const k = Buffer.from(`admin:${chars(r, ALNUM, 14)}`).toString("base64");
      return s(k, `proxy request headers: {"Authorization": "Basic ${k}", "Accept": "*/*"}`);
    }
    case 7: {
      const body = chars(r, B64, 64);
      return s(
        body,
        `{"type":"service_account","private_key":"-----BEGIN PRIVATE KEY-----\\n${body}\\n${chars(r, B64, 64)}\\n-----END PRIVATE KEY-----\\n","client_email":"x@y.iam.gserviceaccount.com"}`,
      );
    }
    case 8: {
      const k = Buffer.from(chars(r, ALNUM, 18)).toString("base64");
      return s(
        k,
        `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"db"},"data":{"DB_PASS":"${k}"},"type":"Opaque"}`,
      );
    }
    case 9: {
      const k = `${chars(r, B64, 86)}==`;
      return s(
        k,
        `DefaultEndpointsProtocol=https;AccountName=acmestore;AccountKey=${k};EndpointSuffix=core.windows.net`,
      );
    }
    case 10: {
      const k = chars(r, ALNUM, 16);
      return s(k, `mongo connect mongodb+srv://app:${k}@cluster0.mongodb.net/prod?retryWrites=true`);
    }
    case 11: {
      const k = chars(r, ALNUM, 20);
      return s(k, `redis: dial redis://:${k}@redis-master.cache.svc:6379/0 failed`);
    }
    case 12: {
      const k = `${chars(r, ALNUM, 12)}!9`;
      return s(k, `running: pg_dump --host db --password ${k} --dbname app`);
    }
    case 13: {
      const k = chars(r, ALNUM, 32);
      return s(k, `client_secret: ${k}`);
    }
    case 14: {
      const k = chars(r, ALNUM, 32);
      return s(k, `GET /v1/items X-Api-Key: ${k} 200`);
    }
    case 15: {
      const k = chars(r, ALNUM, 40);
      return s(k, `set-cookie: session=${k}; Path=/; HttpOnly`);
    }
    case 16: {
      const k = `SG.${chars(r, ALNUM, 22)}.${chars(r, ALNUM, 43)}`;
      return s(k, `sendgrid client initialised with ${k}`);
    }
    case 17: {
      const k = `sk-ant-api03-${chars(r, ALNUM, 40)}`;
      return s(k, `ANTHROPIC_API_KEY="${k}"`);
    }
    case 18: {
      const k = `npm_${chars(r, ALNUM, 36)}`;
      return s(k, `//registry.npmjs.org/:_authToken=${k}`);
    }
    case 19: {
      const k = chars(r, ALNUM, 28);
      return s(k, `{\\"user\\":\\"svc\\",\\"password\\":\\"${k}\\"}`);
    }
    case 20: {
      const k = randomBytes(r, 32).toString("base64");
      return s(k, `loaded signing material ${k}`);
    }
    default: {
      const k = `xoxp-${int(r, 1e10, 9e10)}-${int(r, 1e10, 9e10)}-${chars(r, ALNUM, 32)}`;
      return s(k, `slack user token ${k}`);
    }
  }
}

// ---- files --------------------------------------------------------------------------------------

function write(path: string, body: string | Buffer): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, body);
}

const EXT_LANG: [string, (r: Rand, name: string) => string][] = [
  [
    "cs",
    (r, n) =>
      `namespace Acme.${n} {\n  public class ${n}Service {\n    private readonly ILogger _log;\n    public async Task<int> Handle${n}(int id) {\n      _log.LogInformation("handling {Id}", id);\n      return await Task.FromResult(id * ${int(r, 2, 9)});\n    }\n  }\n}\n`,
  ],
  [
    "go",
    (r, n) =>
      `package ${n.toLowerCase()}\n\nimport "fmt"\n\nfunc Handle${n}(id int) error {\n\tif id < 0 {\n\t\treturn fmt.Errorf("bad id %d", id)\n\t}\n\treturn nil // ${hex(r, 8)}\n}\n`,
  ],
  [
    "py",
    (r, n) =>
      `def handle_${n.toLowerCase()}(event: dict) -> dict:\n    """Handle ${n} events."""\n    count = event.get("count", ${int(r, 0, 9)})\n    return {"ok": True, "count": count}\n`,
  ],
  [
    "ts",
    (r, n) =>
      `export async function handle${n}(id: number): Promise<number> {\n  const res = await fetch(\`/api/${n.toLowerCase()}/\${id}\`);\n  return res.status + ${int(r, 0, 9)};\n}\n`,
  ],
  [
    "js",
    (r, n) =>
      `module.exports.handle${n} = function (req, res) {\n  res.json({ ok: true, n: ${int(r, 0, 99)} });\n};\n`,
  ],
  [
    "yaml",
    (r, n) =>
      `apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ${n.toLowerCase()}\nspec:\n  replicas: ${int(r, 1, 3)}\n  template:\n    spec:\n      containers:\n        - name: app\n          image: ghcr.io/acme/${n.toLowerCase()}:v1.${int(r, 0, 9)}\n`,
  ],
  [
    "json",
    (r, n) =>
      `${JSON.stringify({ name: n, version: `1.${int(r, 0, 9)}.0`, scripts: { build: "tsc" } }, null, 2)}\n`,
  ],
  [
    "md",
    (r, n) =>
      `# ${n}\n\nThis service handles ${n} events. See the runbook for alerts.\n\n- step ${int(r, 1, 9)}: check the logs\n`,
  ],
  ["mustache", (_r, n) => `<h1>{{title}}</h1>\n{{#items}}<li>{{name}} (${n})</li>{{/items}}\n`],
];

/**
 * A mixed-language repository: `files` text files of about `totalBytes` together, a .gitignore,
 * some ignored and binary files, and a .git directory with a HEAD commit.
 */
export function generateRepo(
  root: string,
  opts: { files: number; totalBytes: number; seed?: number },
): { files: number; bytes: number; commit: string } {
  const r = seeded(opts.seed ?? 7);
  const per = Math.max(64, Math.floor(opts.totalBytes / opts.files));
  let bytes = 0;
  for (let i = 0; i < opts.files; i++) {
    const [ext, gen] = EXT_LANG[i % EXT_LANG.length];
    const name = `Mod${i}`;
    const unit = gen(r, name);
    let body = "";
    while (body.length < per) body += unit.replace(/Mod\d+/g, `${name}x${body.length}`);
    const dir = join(root, `pkg${i % 40}`, `sub${i % 7}`);
    const file =
      ext === "yaml" && i % 90 === 5 ? join(dir, "Dockerfile") : join(dir, `${name.toLowerCase()}.${ext}`);
    const text = file.endsWith("Dockerfile")
      ? `FROM node:20-slim\nCOPY . /app\nRUN npm ci\n${body.replace(/^/gm, "# ")}`
      : body;
    write(file, text);
    bytes += Buffer.byteLength(text);
  }
  write(join(root, ".gitignore"), "generated/\n*.log\n");
  write(join(root, "generated", "skip.ts"), "export const x = 1;\n");
  write(join(root, "node_modules", "dep", "index.js"), "module.exports = 1;\n");
  write(join(root, "assets", "logo.json"), Buffer.from([0x7b, 0, 1, 2, 3, 0x7d]));
  const commit = hex(r, 40);
  write(join(root, ".git", "HEAD"), "ref: refs/heads/main\n");
  write(join(root, ".git", "refs", "heads", "main"), `${commit}\n`);
  return { files: opts.files, bytes, commit };
}
