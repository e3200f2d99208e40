// The agent's code repository: a walk of the checkout that honours include/exclude globs and
// .gitignore files, skips large and binary files, never follows a symlink out of the root, and
// stores a file again only when its sha256 changed. Its "watermark" is the path → sha256 index.
// Retention deletes raw days by age, code included, so the whole tree is stored again once its
// last full snapshot is half a dataset window old: every file the repository holds keeps a copy
// in the window, however long ago it last changed.
import { createHash } from "node:crypto";
import type { Dirent } from "node:fs";
import { readdir, readFile, realpath, stat } from "node:fs/promises";
import { basename, extname, join, relative, resolve, sep } from "node:path";
import ignore, { type Ignore } from "ignore";
import picomatch from "picomatch";
import * as z from "zod";
import type { CodeSourceConfig } from "../../config/schema.js";
import { type CollectContext, segmentFull } from "./context.js";
import { dayOf } from "./raw-store.js";
import type { CodeFileRecord } from "./records.js";
import { Redactor } from "./redact.js";
import { bumpSkipped, newQueryReport, type QueryReport } from "./report.js";
import { commitSegment, readWatermark, writeWatermark } from "./watermarks.js";

export const CODE_QUERY = "repo";

const Index = z.object({
  version: z.literal(1),
  commit: z.string().nullable(),
  files: z.record(z.string(), z.string().regex(/^[0-9a-f]{64}$/)),
  /** When the last full snapshot ended (absent in indexes from before it was recorded: none yet). */
  snapshot_at: z.iso.datetime().optional(),
});
type Index = z.infer<typeof Index>;

const LANGUAGES: Record<string, string> = {
  ".cs": "csharp",
  ".yaml": "yaml",
  ".yml": "yaml",
  ".json": "json",
  ".mustache": "mustache",
  ".md": "markdown",
  ".ts": "typescript",
  ".tsx": "typescript",
  ".mts": "typescript",
  ".cts": "typescript",
  ".js": "javascript",
  ".jsx": "javascript",
  ".mjs": "javascript",
  ".cjs": "javascript",
  ".go": "go",
  ".py": "python",
  ".dockerfile": "dockerfile",
};

export function languageOf(path: string): string {
  const name = basename(path);
  if (name === "Dockerfile" || name.startsWith("Dockerfile.")) return "dockerfile";
  return LANGUAGES[extname(name).toLowerCase()] ?? "text";
}

/** NUL bytes or invalid UTF-8 in the first 8 KiB mean binary, as git decides it (plus the UTF-8 check). */
export function isBinary(buf: Buffer): boolean {
  const head = buf.subarray(0, 8192);
  if (head.includes(0)) return true;
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(trimPartialUtf8(head));
    return false;
  } catch {
    return true;
  }
}

/** A cut at 8 KiB may split a multi-byte character; drop the partial tail before decoding. */
function trimPartialUtf8(b: Buffer): Buffer {
  let end = b.length;
  for (let i = 1; i <= 3 && end - i >= 0; i++) {
    const c = b[end - i];
    if ((c & 0xc0) === 0x80) continue; // continuation byte
    const need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    if (need > i) end -= i;
    break;
  }
  return b.subarray(0, end);
}

/** The commit checked out at root, read from .git without running git; null when not a checkout. */
export async function headCommit(root: string): Promise<string | null> {
  let gitDir = join(root, ".git");
  try {
    const s = await stat(gitDir);
    if (s.isFile()) {
      const m = /^gitdir:\s*(.+)$/m.exec(await readFile(gitDir, "utf8"));
      if (!m) return null;
      gitDir = resolve(root, m[1].trim());
    }
    const head = (await readFile(join(gitDir, "HEAD"), "utf8")).trim();
    if (/^[0-9a-f]{40,64}$/.test(head)) return head;
    const ref = /^ref:\s*(.+)$/.exec(head)?.[1];
    if (!ref) return null;
    // Worktrees keep refs in the common dir.
    const common = await readFile(join(gitDir, "commondir"), "utf8").then(
      (c) => resolve(gitDir, c.trim()),
      () => gitDir,
    );
    for (const dir of [gitDir, common]) {
      const loose = await readFile(join(dir, ref), "utf8").catch(() => null);
      if (loose && /^[0-9a-f]{40,64}\s*$/.test(loose)) return loose.trim();
      const packed = await readFile(join(dir, "packed-refs"), "utf8").catch(() => null);
      const line = packed?.split("\n").find((l) => l.endsWith(` ${ref}`));
      if (line) return line.split(" ")[0];
    }
    return null;
  } catch {
    return null;
  }
}

interface Candidate {
  rel: string;
  abs: string;
}

/** Walks the tree: excluded and git-ignored directories are pruned, not walked. */
async function walk(rootReal: string, cfg: CodeSourceConfig, report: QueryReport): Promise<Candidate[]> {
  const include = picomatch(cfg.include, { dot: true });
  const exclude = picomatch(cfg.exclude, { dot: true });
  const out: Candidate[] = [];
  // Each .gitignore applies to paths below its directory, relative to it.
  const visit = async (dir: string, rules: { base: string; ig: Ignore }[]): Promise<void> => {
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      bumpSkipped(report, "unreadable");
      report.warnings.length < 50 &&
        report.warnings.push(
          `cannot read ${relative(rootReal, dir) || "."}: ${(err as NodeJS.ErrnoException).code}`,
        );
      return;
    }
    let here = rules;
    if (cfg.respect_gitignore && entries.some((e) => e.name === ".gitignore" && e.isFile())) {
      const text = await readFile(join(dir, ".gitignore"), "utf8").catch(() => "");
      here = [...rules, { base: dir, ig: ignore().add(text) }];
    }
    const ignored = (abs: string, isDir: boolean) =>
      here.some(({ base, ig }) => {
        const r = relative(base, abs).split(sep).join("/");
        return r !== "" && ig.ignores(isDir ? `${r}/` : r);
      });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const abs = join(dir, e.name);
      const rel = relative(rootReal, abs).split(sep).join("/");
      let isDir = e.isDirectory();
      let isFile = e.isFile();
      if (e.isSymbolicLink()) {
        let target: string;
        try {
          target = await realpath(abs);
        } catch {
          bumpSkipped(report, "broken_symlinks");
          continue;
        }
        if (target !== rootReal && !target.startsWith(rootReal + sep)) {
          bumpSkipped(report, "symlinks_outside_root");
          continue;
        }
        const s = await stat(target);
        // A directory link inside the root would walk the same files twice (or loop): skip it.
        if (s.isDirectory()) {
          bumpSkipped(report, "symlinked_dirs");
          continue;
        }
        isDir = false;
        isFile = s.isFile();
      }
      if (isDir) {
        if (e.name === ".git" || exclude(`${rel}/x`) || ignored(abs, true)) continue;
        await visit(abs, here);
      } else if (isFile) {
        if (!include(rel)) continue;
        if (exclude(rel)) {
          bumpSkipped(report, "excluded");
          continue;
        }
        if (ignored(abs, false)) {
          bumpSkipped(report, "gitignored");
          continue;
        }
        out.push({ rel, abs });
      }
    }
  };
  await visit(rootReal, []);
  return out;
}

export async function collectCode(ctx: CollectContext, cfg: CodeSourceConfig): Promise<QueryReport[]> {
  const report = newQueryReport("code", CODE_QUERY);
  const t0 = Date.now();
  try {
    await collectRepo(ctx, cfg, report);
  } catch (err) {
    report.errors.push(`code query "${CODE_QUERY}": ${(err as Error).message}`);
    report.status = ctx.signal.aborted ? "cancelled" : report.records ? "partial" : "failed";
  }
  report.duration_ms = Date.now() - t0;
  return [report];
}

async function collectRepo(ctx: CollectContext, cfg: CodeSourceConfig, report: QueryReport): Promise<void> {
  const root = resolve(cfg.path);
  let rootReal: string;
  try {
    rootReal = await realpath(root);
    if (!(await stat(rootReal)).isDirectory()) throw new Error("not a directory");
  } catch (err) {
    throw new Error(
      `repository ${root} is not readable (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    );
  }
  const commit = await headCommit(rootReal);
  const prev = await readWatermark(ctx.store, ctx.agent, "code", CODE_QUERY, Index);
  const lastSnapshot = prev?.snapshot_at ? Date.parse(prev.snapshot_at) : Number.NEGATIVE_INFINITY;
  const full = ctx.now - lastSnapshot >= ctx.codeSnapshotEveryMs;
  // Until a full snapshot ends, the index keeps the last one's time: a snapshot cut short by a
  // crash or a cancel is taken again whole by the next run.
  const index: Index = {
    version: 1,
    commit,
    files: { ...(prev?.files ?? {}) },
    ...(prev?.snapshot_at ? { snapshot_at: prev.snapshot_at } : {}),
  };
  const redactor = new Redactor();
  report.redactions = redactor.counts;
  const collectedAt = new Date(ctx.now).toISOString();
  const day = dayOf(ctx.now);

  const candidates = await walk(rootReal, cfg, report);
  const present = new Set<string>();
  let batch: CodeFileRecord[] = [];
  let batchBytes = 0;
  const flush = async () => {
    if (!batch.length) return;
    // Named by what it holds: a re-run after a crash writes the same name again.
    const h = createHash("sha256");
    for (const r of batch) h.update(`${r.path}\0${r.sha256}\n`);
    for (const r of batch) index.files[r.path] = r.sha256;
    await commitSegment(
      ctx.store,
      ctx.agent,
      "code",
      CODE_QUERY,
      day,
      `${CODE_QUERY}-${h.digest("hex").slice(0, 16)}`,
      batch,
      index,
      report,
    );
    batch = [];
    batchBytes = 0;
  };

  // Reads run a few at a time (file I/O waits on the thread pool); files are handled in walk order.
  const load = async (c: Candidate): Promise<{ size: number; buf: Buffer | null } | null> => {
    try {
      const s = await stat(c.abs);
      return { size: s.size, buf: s.size > cfg.max_file_bytes ? null : await readFile(c.abs) };
    } catch {
      return null;
    }
  };
  const READ_AHEAD = 16;
  const pending = candidates.slice(0, READ_AHEAD).map(load);
  for (let i = 0; i < candidates.length; i++) {
    if (ctx.signal.aborted) throw new Error("cancelled");
    const c = candidates[i];
    const loaded = await pending[i];
    if (i + READ_AHEAD < candidates.length) pending.push(load(candidates[i + READ_AHEAD]));
    pending[i] = Promise.resolve(null); // let the buffer go
    if (!loaded) {
      bumpSkipped(report, "unreadable");
      continue;
    }
    present.add(c.rel);
    if (!loaded.buf) {
      bumpSkipped(report, "too_large");
      delete index.files[c.rel];
      continue;
    }
    const buf = loaded.buf;
    if (isBinary(buf)) {
      bumpSkipped(report, "binary");
      delete index.files[c.rel];
      continue;
    }
    const sha = createHash("sha256").update(buf).digest("hex");
    if (!full && prev?.files[c.rel] === sha) {
      bumpSkipped(report, "unchanged");
      continue;
    }
    const before = redactor.total;
    const content = redactor.redact(buf.toString("utf8"));
    batch.push({
      kind: "code_file",
      path: c.rel,
      language: languageOf(c.rel),
      size: buf.length,
      sha256: sha,
      commit,
      content,
      redactions: redactor.total - before,
      collected_at: collectedAt,
    });
    batchBytes += content.length;
    if (segmentFull(ctx, batch.length, batchBytes)) await flush();
  }
  await flush();
  let removed = 0;
  for (const path of Object.keys(index.files)) {
    if (!present.has(path)) {
      delete index.files[path];
      removed++;
    }
  }
  bumpSkipped(report, "removed_since_last_run", removed);
  if (full) index.snapshot_at = collectedAt;
  // The final index: the commit, files deleted since the last run dropped, the snapshot's time.
  await writeWatermark(ctx.store, ctx.agent, "code", CODE_QUERY, index);
}
