// A small S3 endpoint for tests, for what s3rver lacks: multipart uploads (initiate, upload part,
// complete, abort, ListMultipartUploads, ListParts) and conditional writes (If-None-Match: * and
// If-Match on PUT and complete, 412 PreconditionFailed). It answers with the XML and headers of
// the S3 API reference, computes ETags as S3 does (md5 hex of a single PUT; md5 of the parts'
// binary md5s plus "-N" for a multipart object), keeps objects in memory, and records every
// request so a test can see what the client did. Signatures (SigV4) are accepted unverified.
// Fault hooks let a test fail chosen requests (a status with S3's error body, a dropped
// connection, or a request that takes effect and then loses its answer).
import { createHash, randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export type S3Op =
  | "ListBuckets"
  | "HeadBucket"
  | "CreateBucket"
  | "GetBucketLocation"
  | "ListObjectsV2"
  | "ListMultipartUploads"
  | "PutObject"
  | "GetObject"
  | "HeadObject"
  | "DeleteObject"
  | "CreateMultipartUpload"
  | "UploadPart"
  | "CompleteMultipartUpload"
  | "AbortMultipartUpload"
  | "ListParts"
  | "PutObjectTagging"
  | "GetObjectTagging";

export interface S3Call {
  op: S3Op;
  bucket: string;
  key: string;
  /** The answer's status; -1: dropped unserved, -2: served but the answer dropped. */
  status: number;
  partNumber?: number;
  bytes: number;
}

/**
 * What a fault does to a request: answer with this status (S3 error body), drop the connection
 * before serving it ("reset"), or serve it and drop the connection before the answer is sent
 * ("apply-then-reset": the write happened, the client cannot know).
 */
export type Fault = { status: number; code: string } | "reset" | "apply-then-reset";

export interface StoredObject {
  body: Buffer;
  etag: string;
  lastModified: Date;
  /** content-type and x-amz-meta-* as sent. */
  headers: Record<string, string>;
  /** Number of parts for a multipart object, else 0. */
  parts: number;
  tags: string | null;
}

interface Upload {
  id: string;
  bucket: string;
  key: string;
  initiated: Date;
  headers: Record<string, string>;
  parts: Map<number, { body: Buffer; etag: string; lastModified: Date }>;
}

const NS = "http://s3.amazonaws.com/doc/2006-03-01/";
const MIN_PART = 5 * 1024 * 1024;
const MAX_BODY = 1024 * 1024 * 1024;

class S3Error extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export class S3Endpoint {
  readonly buckets = new Map<string, Map<string, StoredObject>>();
  readonly uploads = new Map<string, Upload>();
  readonly calls: S3Call[] = [];
  /** Called for every request before it is served; a returned fault replaces the answer. */
  fault:
    | ((call: {
        op: S3Op;
        key: string;
        partNumber?: number;
        headers: IncomingMessage["headers"];
      }) => Fault | undefined)
    | null = null;
  private server: Server | null = null;
  port = 0;

  async start(port = 0): Promise<number> {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err) => {
        if (!res.headersSent) sendError(res, 500, "InternalError", String(err));
        else res.destroy();
      });
    });
    // Idle keep-alive sockets stay open as long as a real S3 keeps them, so a client whose event
    // loop was busy (training in the same process) does not reuse one the server just closed.
    this.server.keepAliveTimeout = 65_000;
    // Node measures header and request time on its event loop; a loop blocked by training in the
    // same process would make every request look late (a real S3 runs apart from its clients).
    this.server.headersTimeout = 0;
    this.server.requestTimeout = 0;
    await new Promise<void>((resolve) => this.server?.listen(port, "127.0.0.1", resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this.port;
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  /** Fails the n-th (1-based) request of an op once, counting from now. */
  failNth(op: S3Op, n: number, fault: Fault): void {
    let seen = 0;
    const prev = this.fault;
    this.fault = (call) => {
      if (call.op === op && ++seen === n) return fault;
      return prev?.(call);
    };
  }

  object(bucket: string, key: string): StoredObject | undefined {
    return this.buckets.get(bucket)?.get(key);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<unknown> {
    const url = new URL(req.url ?? "/", "http://s3.local");
    const q = url.searchParams;
    const [bucketPart, ...keyParts] = url.pathname.slice(1).split("/");
    const bucket = decodeURIComponent(bucketPart ?? "");
    const key = keyParts.map(decodeURIComponent).join("/");
    const method = req.method ?? "GET";
    const op = opOf(method, bucket, key, q);
    const partNumber = q.has("partNumber") ? Number(q.get("partNumber")) : undefined;
    const body = await readBody(req);
    const call: S3Call = { op: op ?? "ListBuckets", bucket, key, status: 0, partNumber, bytes: body.length };
    this.calls.push(call);
    res.on("finish", () => {
      if (call.status === 0) call.status = res.statusCode;
    });
    if (!op)
      return sendError(
        res,
        501,
        "NotImplemented",
        `${method} ${url.pathname}${url.search} is not implemented`,
      );
    const fault = this.fault?.({ op, key, partNumber, headers: req.headers });
    if (fault === "reset") {
      call.status = -1;
      req.socket.destroy();
      return;
    }
    if (fault === "apply-then-reset") {
      call.status = -2;
      res.on("error", () => undefined);
      req.socket.destroy();
    } else if (fault) return sendError(res, fault.status, fault.code, "injected fault");
    try {
      this.serve(op, req, res, bucket, key, q, body);
    } catch (err) {
      if (err instanceof S3Error) return sendError(res, err.status, err.code, err.message, key);
      throw err;
    }
  }

  private serve(
    op: S3Op,
    req: IncomingMessage,
    res: ServerResponse,
    bucket: string,
    key: string,
    q: URLSearchParams,
    body: Buffer,
  ): ServerResponse {
    if (op === "ListBuckets") {
      const list = [...this.buckets.keys()].map((b) => `<Bucket><Name>${esc(b)}</Name></Bucket>`).join("");
      return sendXml(
        res,
        200,
        `<ListAllMyBucketsResult xmlns="${NS}"><Buckets>${list}</Buckets></ListAllMyBucketsResult>`,
      );
    }
    if (op === "CreateBucket") {
      if (!this.buckets.has(bucket)) this.buckets.set(bucket, new Map());
      res.setHeader("Location", `/${bucket}`);
      return res.writeHead(200).end();
    }
    const objects = this.buckets.get(bucket);
    if (!objects) {
      if (op === "HeadBucket" || method(req) === "HEAD") return res.writeHead(404).end();
      throw new S3Error(404, "NoSuchBucket", "The specified bucket does not exist");
    }
    switch (op) {
      case "HeadBucket":
        return res.writeHead(200).end();
      case "GetBucketLocation":
        return sendXml(res, 200, `<LocationConstraint xmlns="${NS}"></LocationConstraint>`);
      case "ListObjectsV2":
        return this.listObjects(res, bucket, objects, q);
      case "ListMultipartUploads":
        return this.listUploads(res, bucket, q);
      case "PutObject": {
        if (req.headers["x-amz-copy-source"])
          throw new S3Error(501, "NotImplemented", "CopyObject is not implemented");
        checkMd5(req, body);
        checkCondition(req, objects.get(key));
        const etag = md5hex(body);
        objects.set(key, {
          body,
          etag,
          lastModified: new Date(),
          headers: objectHeaders(req),
          parts: 0,
          tags: null,
        });
        res.setHeader("ETag", `"${etag}"`);
        return res.writeHead(200).end();
      }
      case "GetObject":
      case "HeadObject": {
        const o = objects.get(key);
        if (!o) {
          if (op === "HeadObject") return res.writeHead(404).end();
          throw new S3Error(404, "NoSuchKey", "The specified key does not exist.");
        }
        res.setHeader("ETag", `"${o.etag}"`);
        res.setHeader("Last-Modified", o.lastModified.toUTCString());
        res.setHeader("Content-Length", String(o.body.length));
        res.setHeader("Content-Type", o.headers["content-type"] ?? "binary/octet-stream");
        for (const [k, v] of Object.entries(o.headers)) if (k.startsWith("x-amz-meta-")) res.setHeader(k, v);
        res.writeHead(200);
        return op === "HeadObject" ? res.end() : res.end(o.body);
      }
      case "DeleteObject":
        objects.delete(key);
        return res.writeHead(204).end();
      case "CreateMultipartUpload": {
        const id = randomBytes(12).toString("hex");
        this.uploads.set(id, {
          id,
          bucket,
          key,
          initiated: new Date(),
          headers: objectHeaders(req),
          parts: new Map(),
        });
        return sendXml(
          res,
          200,
          `<InitiateMultipartUploadResult xmlns="${NS}"><Bucket>${esc(bucket)}</Bucket><Key>${esc(key)}</Key><UploadId>${id}</UploadId></InitiateMultipartUploadResult>`,
        );
      }
      case "UploadPart": {
        const up = this.upload(q.get("uploadId"), bucket, key);
        const n = Number(q.get("partNumber"));
        if (!Number.isInteger(n) || n < 1 || n > 10_000)
          throw new S3Error(
            400,
            "InvalidArgument",
            "Part number must be an integer between 1 and 10000, inclusive",
          );
        checkMd5(req, body);
        const etag = md5hex(body);
        up.parts.set(n, { body, etag, lastModified: new Date() });
        res.setHeader("ETag", `"${etag}"`);
        return res.writeHead(200).end();
      }
      case "CompleteMultipartUpload":
        return this.complete(req, res, objects, this.upload(q.get("uploadId"), bucket, key), body);
      case "AbortMultipartUpload":
        this.upload(q.get("uploadId"), bucket, key);
        this.uploads.delete(q.get("uploadId") ?? "");
        return res.writeHead(204).end();
      case "ListParts":
        return this.listParts(res, this.upload(q.get("uploadId"), bucket, key), q);
      case "PutObjectTagging":
      case "GetObjectTagging": {
        const o = objects.get(key);
        if (!o) throw new S3Error(404, "NoSuchKey", "The specified key does not exist.");
        if (op === "GetObjectTagging")
          return sendXml(res, 200, o.tags ?? `<Tagging xmlns="${NS}"><TagSet></TagSet></Tagging>`);
        o.tags = body.toString("utf8");
        return res.writeHead(200).end();
      }
    }
  }

  private upload(id: string | null, bucket: string, key: string): Upload {
    const up = id ? this.uploads.get(id) : undefined;
    if (!up || up.bucket !== bucket || up.key !== key)
      throw new S3Error(
        404,
        "NoSuchUpload",
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
      );
    return up;
  }

  private complete(
    req: IncomingMessage,
    res: ServerResponse,
    objects: Map<string, StoredObject>,
    up: Upload,
    body: Buffer,
  ): ServerResponse {
    const xml = body.toString("utf8");
    if (!/<CompleteMultipartUpload[\s>]/.test(xml))
      throw new S3Error(400, "MalformedXML", "The XML you provided was not well-formed");
    const listed = [...xml.matchAll(/<Part>([\s\S]*?)<\/Part>/g)].map((m) => ({
      n: Number(/<PartNumber>\s*(\d+)\s*<\/PartNumber>/.exec(m[1])?.[1]),
      etag: (/<ETag>([\s\S]*?)<\/ETag>/.exec(m[1])?.[1] ?? "").replace(/&quot;|&#34;|"/g, "").trim(),
    }));
    if (listed.length === 0)
      throw new S3Error(400, "MalformedXML", "The XML you provided was not well-formed");
    const chunks: Buffer[] = [];
    const md5s: Buffer[] = [];
    let prev = 0;
    for (const [i, p] of listed.entries()) {
      if (!(p.n > prev))
        throw new S3Error(400, "InvalidPartOrder", "The list of parts was not in ascending order.");
      prev = p.n;
      const part = up.parts.get(p.n);
      if (!part || part.etag !== p.etag)
        throw new S3Error(400, "InvalidPart", "One or more of the specified parts could not be found.");
      if (i < listed.length - 1 && part.body.length < MIN_PART)
        throw new S3Error(
          400,
          "EntityTooSmall",
          "Your proposed upload is smaller than the minimum allowed object size.",
        );
      chunks.push(part.body);
      md5s.push(Buffer.from(part.etag, "hex"));
    }
    checkCondition(req, objects.get(up.key));
    const etag = `${md5hex(Buffer.concat(md5s))}-${listed.length}`;
    objects.set(up.key, {
      body: Buffer.concat(chunks),
      etag,
      lastModified: new Date(),
      headers: up.headers,
      parts: listed.length,
      tags: null,
    });
    this.uploads.delete(up.id);
    return sendXml(
      res,
      200,
      `<CompleteMultipartUploadResult xmlns="${NS}"><Location>http://127.0.0.1:${this.port}/${esc(up.bucket)}/${esc(up.key)}</Location><Bucket>${esc(up.bucket)}</Bucket><Key>${esc(up.key)}</Key><ETag>"${etag}"</ETag></CompleteMultipartUploadResult>`,
    );
  }

  private listObjects(
    res: ServerResponse,
    bucket: string,
    objects: Map<string, StoredObject>,
    q: URLSearchParams,
  ): ServerResponse {
    const prefix = q.get("prefix") ?? "";
    const delimiter = q.get("delimiter") ?? "";
    const maxKeys = Math.min(Number(q.get("max-keys") ?? 1000) || 1000, 1000);
    const after = q.get("continuation-token") ?? q.get("start-after") ?? "";
    const url = q.get("encoding-type") === "url";
    const enc = (s: string) => esc(url ? encodeURIComponent(s) : s);
    const keys = [...objects.keys()].filter((k) => k.startsWith(prefix) && k > after).sort();
    const contents: string[] = [];
    const prefixes = new Set<string>();
    let last = "";
    let truncated = false;
    for (const k of keys) {
      if (contents.length + prefixes.size >= maxKeys) {
        truncated = true;
        break;
      }
      last = k;
      const rest = k.slice(prefix.length);
      const cut = delimiter ? rest.indexOf(delimiter) : -1;
      if (cut >= 0) {
        prefixes.add(prefix + rest.slice(0, cut + delimiter.length));
        continue;
      }
      const o = objects.get(k) as StoredObject;
      contents.push(
        `<Contents><Key>${enc(k)}</Key><LastModified>${o.lastModified.toISOString()}</LastModified><ETag>"${o.etag}"</ETag><Size>${o.body.length}</Size><StorageClass>STANDARD</StorageClass></Contents>`,
      );
    }
    const cps = [...prefixes]
      .map((p) => `<CommonPrefixes><Prefix>${enc(p)}</Prefix></CommonPrefixes>`)
      .join("");
    return sendXml(
      res,
      200,
      `<ListBucketResult xmlns="${NS}"><Name>${esc(bucket)}</Name><Prefix>${enc(prefix)}</Prefix><KeyCount>${contents.length + prefixes.size}</KeyCount><MaxKeys>${maxKeys}</MaxKeys><Delimiter>${enc(delimiter)}</Delimiter><IsTruncated>${truncated}</IsTruncated>${truncated ? `<NextContinuationToken>${esc(last)}</NextContinuationToken>` : ""}${url ? "<EncodingType>url</EncodingType>" : ""}${contents.join("")}${cps}</ListBucketResult>`,
    );
  }

  private listUploads(res: ServerResponse, bucket: string, q: URLSearchParams): ServerResponse {
    const prefix = q.get("prefix") ?? "";
    const keyMarker = q.get("key-marker") ?? "";
    const ups = [...this.uploads.values()]
      .filter((u) => u.bucket === bucket && u.key.startsWith(prefix) && u.key > keyMarker)
      .sort((a, b) =>
        a.key < b.key ? -1 : a.key > b.key ? 1 : a.initiated.getTime() - b.initiated.getTime(),
      );
    const items = ups
      .map(
        (u) =>
          `<Upload><Key>${esc(u.key)}</Key><UploadId>${u.id}</UploadId><Initiated>${u.initiated.toISOString()}</Initiated><StorageClass>STANDARD</StorageClass></Upload>`,
      )
      .join("");
    return sendXml(
      res,
      200,
      `<ListMultipartUploadsResult xmlns="${NS}"><Bucket>${esc(bucket)}</Bucket><KeyMarker>${esc(keyMarker)}</KeyMarker><UploadIdMarker></UploadIdMarker><Prefix>${esc(prefix)}</Prefix><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>${items}</ListMultipartUploadsResult>`,
    );
  }

  private listParts(res: ServerResponse, up: Upload, q: URLSearchParams): ServerResponse {
    const marker = Number(q.get("part-number-marker") ?? 0);
    const parts = [...up.parts.entries()].filter(([n]) => n > marker).sort(([a], [b]) => a - b);
    const items = parts
      .map(
        ([n, p]) =>
          `<Part><PartNumber>${n}</PartNumber><LastModified>${p.lastModified.toISOString()}</LastModified><ETag>"${p.etag}"</ETag><Size>${p.body.length}</Size></Part>`,
      )
      .join("");
    return sendXml(
      res,
      200,
      `<ListPartsResult xmlns="${NS}"><Bucket>${esc(up.bucket)}</Bucket><Key>${esc(up.key)}</Key><UploadId>${up.id}</UploadId><PartNumberMarker>${marker}</PartNumberMarker><NextPartNumberMarker>${parts.at(-1)?.[0] ?? 0}</NextPartNumberMarker><MaxParts>1000</MaxParts><IsTruncated>false</IsTruncated>${items}</ListPartsResult>`,
    );
  }
}

function method(req: IncomingMessage): string {
  return req.method ?? "GET";
}

function opOf(m: string, bucket: string, key: string, q: URLSearchParams): S3Op | null {
  if (!bucket) return m === "GET" ? "ListBuckets" : null;
  if (!key) {
    if (m === "HEAD") return "HeadBucket";
    if (m === "PUT" && [...q.keys()].length === 0) return "CreateBucket";
    if (m === "GET" && q.has("location")) return "GetBucketLocation";
    if (m === "GET" && q.has("uploads")) return "ListMultipartUploads";
    if (m === "GET" && q.get("list-type") === "2") return "ListObjectsV2";
    return null;
  }
  if (q.has("tagging")) return m === "PUT" ? "PutObjectTagging" : m === "GET" ? "GetObjectTagging" : null;
  if (m === "POST" && q.has("uploads")) return "CreateMultipartUpload";
  if (m === "POST" && q.has("uploadId")) return "CompleteMultipartUpload";
  if (m === "PUT" && q.has("uploadId") && q.has("partNumber")) return "UploadPart";
  if (m === "DELETE" && q.has("uploadId")) return "AbortMultipartUpload";
  if (m === "GET" && q.has("uploadId")) return "ListParts";
  if ([...q.keys()].some((k) => !k.startsWith("X-Amz-"))) return null;
  return (
    ({ PUT: "PutObject", GET: "GetObject", HEAD: "HeadObject", DELETE: "DeleteObject" } as const)[
      m as "PUT"
    ] ?? null
  );
}

/** S3's conditional write: If-None-Match: * needs no object; If-Match needs one with that ETag. */
function checkCondition(req: IncomingMessage, current: StoredObject | undefined): void {
  const none = req.headers["if-none-match"];
  const match = req.headers["if-match"];
  if (none !== undefined) {
    if (none.trim() !== "*") throw new S3Error(501, "NotImplemented", "If-None-Match accepts only *");
    if (current)
      throw new S3Error(
        412,
        "PreconditionFailed",
        "At least one of the pre-conditions you specified did not hold",
      );
  }
  if (match !== undefined) {
    if (!current) throw new S3Error(404, "NoSuchKey", "The specified key does not exist.");
    const tags = match.split(",").map((t) => t.trim().replace(/^"|"$/g, ""));
    if (!tags.includes(current.etag) && !tags.includes("*"))
      throw new S3Error(
        412,
        "PreconditionFailed",
        "At least one of the pre-conditions you specified did not hold",
      );
  }
}

function checkMd5(req: IncomingMessage, body: Buffer): void {
  const want = req.headers["content-md5"];
  if (want && createHash("md5").update(body).digest("base64") !== want)
    throw new S3Error(400, "BadDigest", "The Content-MD5 you specified did not match what we received.");
  const len = req.headers["content-length"];
  if (len !== undefined && Number(len) !== body.length)
    throw new S3Error(
      400,
      "IncompleteBody",
      "You did not provide the number of bytes specified by the Content-Length HTTP header",
    );
}

function objectHeaders(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) {
    if (typeof v !== "string") continue;
    if (k === "content-type" || k.startsWith("x-amz-meta-")) out[k] = v;
  }
  return out;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req) {
    n += (c as Buffer).length;
    if (n > MAX_BODY) throw new Error("request body too large for the test endpoint");
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

function md5hex(b: Buffer): string {
  return createHash("md5").update(b).digest("hex");
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function sendXml(res: ServerResponse, status: number, xml: string): ServerResponse {
  const body = Buffer.from(`<?xml version="1.0" encoding="UTF-8"?>\n${xml}`);
  res.writeHead(status, { "Content-Type": "application/xml", "Content-Length": String(body.length) });
  return res.end(body);
}

function sendError(
  res: ServerResponse,
  status: number,
  code: string,
  message: string,
  key = "",
): ServerResponse {
  const id = randomBytes(8).toString("hex").toUpperCase();
  res.setHeader("x-amz-request-id", id);
  return sendXml(
    res,
    status,
    `<Error><Code>${esc(code)}</Code><Message>${esc(message)}</Message>${key ? `<Key>${esc(key)}</Key>` : ""}<RequestId>${id}</RequestId></Error>`,
  );
}
