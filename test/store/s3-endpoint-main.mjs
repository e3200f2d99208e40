// Runs the project's S3 endpoint (s3-endpoint.ts) in a process of its own, as a real S3 runs
// apart from its clients: a client that blocks its event loop for minutes (a 7m training) then
// cannot stall the server side of its sockets. The module is transpiled with typescript (no type
// check; it imports only node builtins) into a temporary directory. Prints {"port": n} once it
// listens; then answers each "inspect" line on stdin with one JSON line: every object's bucket,
// key, size, parts and ETag (no bodies), the number of unfinished multipart uploads, and every
// request served so far (op, key, status, part number, bytes). Exits
// when stdin closes.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";
import ts from "typescript";

const here = dirname(fileURLToPath(import.meta.url));
const out = ts.transpileModule(readFileSync(join(here, "s3-endpoint.ts"), "utf8"), {
  compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 },
});
const dir = mkdtempSync(join(tmpdir(), "trm-s3-endpoint-"));
const file = join(dir, "s3-endpoint.mjs");
writeFileSync(file, out.outputText);
const { S3Endpoint } = await import(pathToFileURL(file).href);
rmSync(dir, { recursive: true, force: true });

const s3 = new S3Endpoint();
const port = await s3.start(Number(process.argv[2] ?? 0));
process.stdout.write(`${JSON.stringify({ port })}\n`);

createInterface({ input: process.stdin })
  .on("line", (line) => {
    if (line.trim() !== "inspect") return;
    const objects = [];
    for (const [bucket, items] of s3.buckets)
      for (const [key, o] of items)
        objects.push({ bucket, key, size: o.body.length, parts: o.parts, etag: o.etag });
    process.stdout.write(`${JSON.stringify({ objects, uploads: s3.uploads.size, calls: s3.calls })}\n`);
  })
  .on("close", () => {
    void s3.close().then(() => process.exit(0));
  });
