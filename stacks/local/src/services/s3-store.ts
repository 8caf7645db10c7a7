/**
 * The local cloud's object store: S3-compatible enough for the AWS SDK, aws4fetch and browsers
 * (path-style `http://127.0.0.1:<port>/<bucket>/<key>`), objects on disk, SigV4 verified on every
 * non-public request, and an R2-shaped event notification for every created object — delivered
 * after the response, as R2 does, so consumers see the same ordering they will in the cloud.
 */
import { randomUUID } from "node:crypto";
import type { FileHandle } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { pipeline } from "node:stream/promises";
import type { R2EventNotification } from "@tcoder/worker/contract";
import { DiskStore, type ObjectHeaders, type StoredObject } from "./s3/disk-store.ts";
import { accessDenied, invalidRequest, noSuchBucket, S3Error } from "./s3/errors.ts";
import { incomingBody, readSmallBody } from "./s3/incoming-body.ts";
import { decodeContinuationToken, encodeContinuationToken, listPage } from "./s3/list-objects.ts";
import { type Credentials, isSigned, type VerifiedRequest, verifySigV4 } from "./s3/sigv4.ts";
import { renderXml, xmlBlocks, xmlText } from "./s3/xml.ts";

export interface S3Faults {
  /** Fraction (0..1) of matching requests answered 500 InternalError. */
  failRate?: number;
  /** Which requests may fail: object reads (GET/HEAD) and/or writes (PUT, parts, completes). Both if unset. */
  ops?: ("get" | "put")[];
}

export interface S3StoreOptions {
  /** Objects live here and survive restarts on the same dir. */
  dir: string;
  port?: number;
  credentials: Credentials;
  /** The region clients sign for; informational, any region in a valid signature is accepted. */
  region?: string;
  buckets: string[];
  /** Buckets anyone may GET/HEAD objects from without signing (like an R2 public bucket). */
  publicReadBuckets?: string[];
  onObjectCreated?: (bucket: string, event: R2EventNotification) => void | Promise<void>;
  faults?: S3Faults;
  /** `account` in event notifications. */
  accountId?: string;
}

export interface S3Store {
  /** `http://127.0.0.1:<port>`: the S3 endpoint (path-style). */
  endpoint: string;
  /** Where anonymous readers fetch a public bucket's objects: `${endpoint}/${bucket}`. */
  publicBaseUrl(bucket: string): string;
  /** Replace the fault injection settings at runtime (undefined turns faults off). */
  setFaults(faults: S3Faults | undefined): void;
  stop(): Promise<void>;
}

type Created = {
  action: "PutObject" | "CompleteMultipartUpload" | "CopyObject";
  object: StoredObject;
  copySource?: { bucket: string; object: string };
};

interface Route {
  method: string;
  url: URL;
  bucket: string;
  key: string;
  auth: VerifiedRequest | null;
}

const eventAttempts = 5;

export async function startS3Store(opts: S3StoreOptions): Promise<S3Store> {
  const store = await DiskStore.open(opts.dir, opts.buckets);
  const publicBuckets = new Set(opts.publicReadBuckets ?? []);
  let faults = opts.faults;
  const deliveries = new Set<Promise<void>>();

  const deliver = (bucket: string, created: Created) => {
    if (!opts.onObjectCreated) return;
    const event: R2EventNotification = {
      account: opts.accountId ?? "local",
      action: created.action,
      bucket,
      object: { key: created.object.key, size: created.object.size, eTag: created.object.etag },
      eventTime: new Date().toISOString(),
      ...(created.copySource ? { copySource: created.copySource } : {}),
    };
    const delivery = deliverWithRetries(() => opts.onObjectCreated?.(bucket, event), event).finally(() =>
      deliveries.delete(delivery),
    );
    deliveries.add(delivery);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://s3.local");
    const method = req.method ?? "GET";
    if (method === "OPTIONS") return preflight(req, res);

    const [bucketSegment = "", ...keySegments] = url.pathname.slice(1).split("/");
    const bucket = decodePath(bucketSegment);
    const key = decodePath(keySegments.join("/"));
    const auth = isSigned(req, url) ? verifySigV4(req, url, [opts.credentials]) : null;
    if (auth === null && !(publicBuckets.has(bucket) && key !== "" && (method === "GET" || method === "HEAD"))) {
      throw accessDenied();
    }
    if (bucket !== "" && !store.hasBucket(bucket)) throw noSuchBucket(bucket);
    injectFault(faults, method, key);

    const route: Route = { method, url, bucket, key, auth };
    const created = await dispatch(store, route, req, res);
    // "close", not "finish": the object exists even if the client hung up before reading the reply.
    if (created) res.once("close", () => deliver(bucket, created));
  };

  const server = createServer((req, res) => {
    const requestId = randomUUID().replace(/-/g, "").slice(0, 16).toUpperCase();
    res.setHeader("x-amz-request-id", requestId);
    res.setHeader("access-control-allow-origin", "*");
    res.setHeader(
      "access-control-expose-headers",
      "ETag, Content-Length, Content-Range, Content-Type, Accept-Ranges, Last-Modified, x-amz-request-id, x-amz-version-id",
    );
    handle(req, res).catch((error: unknown) => sendError(req, res, error, requestId));
  });
  await new Promise<void>((done) => server.listen(opts.port ?? 0, "127.0.0.1", done));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    endpoint,
    publicBaseUrl: (bucket) => `${endpoint}/${bucket}`,
    setFaults(next) {
      faults = next;
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((done) => server.close(() => done()));
      // A consumer that never settles must not keep the store from stopping.
      await Promise.race([Promise.allSettled([...deliveries]), new Promise((r) => setTimeout(r, 10_000).unref())]);
    },
  };
}

async function dispatch(
  store: DiskStore,
  route: Route,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<Created | undefined> {
  const { method, url, bucket, key } = route;
  const q = url.searchParams;
  if (bucket === "") {
    if (method === "GET") return void sendXml(res, 200, listBucketsXml(store));
    throw notImplemented();
  }
  if (key === "") {
    if (method === "HEAD") return void res.writeHead(200).end();
    if (method === "GET" && q.get("list-type") === "2") return void sendXml(res, 200, listObjectsXml(store, bucket, q));
    if (method === "GET" && !q.has("uploads")) return void sendXml(res, 200, listObjectsV1Xml(store, bucket, q));
    if (method === "POST" && q.has("delete")) return void (await deleteObjects(store, route, req, res));
    throw notImplemented();
  }
  switch (method) {
    case "GET":
      if (q.has("uploadId")) return void (await listParts(store, route, res));
      return void (await getObject(store, route, req, res, true));
    case "HEAD":
      return void (await getObject(store, route, req, res, false));
    case "PUT": {
      if (q.has("uploadId")) {
        const body = incomingBody(req, route.auth);
        const part = await store.putPart(
          bucket,
          key,
          q.get("uploadId") ?? "",
          Number(q.get("partNumber")),
          body.bytes,
          body.verify,
        );
        return void res.writeHead(200, { etag: `"${part.etag}"` }).end();
      }
      if (req.headers["x-amz-copy-source"] !== undefined) return await copyObject(store, route, req, res);
      const body = incomingBody(req, route.auth);
      const object = await store.put(bucket, key, body.bytes, objectHeaders(req), body.verify);
      res.writeHead(200, { etag: `"${object.etag}"` }).end();
      return { action: "PutObject", object };
    }
    case "POST": {
      if (q.has("uploads")) {
        const uploadId = await store.createUpload(bucket, key, objectHeaders(req));
        return void sendXml(
          res,
          200,
          renderXml("InitiateMultipartUploadResult", { Bucket: bucket, Key: key, UploadId: uploadId }),
        );
      }
      if (q.has("uploadId")) return await completeUpload(store, route, req, res);
      throw notImplemented();
    }
    case "DELETE":
      if (q.has("uploadId")) await store.abortUpload(bucket, key, q.get("uploadId") ?? "");
      else await store.delete(bucket, key);
      return void res.writeHead(204).end();
    default:
      throw notImplemented();
  }
}

async function getObject(store: DiskStore, route: Route, req: IncomingMessage, res: ServerResponse, withBody: boolean) {
  const { object, file } = await store.open(route.bucket, route.key);
  try {
    await sendObject(object, file, route, req, res, withBody);
  } finally {
    await file.close().catch(() => {});
  }
}

async function sendObject(
  object: StoredObject,
  file: FileHandle,
  route: Route,
  req: IncomingMessage,
  res: ServerResponse,
  withBody: boolean,
) {
  const etag = `"${object.etag}"`;
  const ifNoneMatch = req.headers["if-none-match"];
  if (ifNoneMatch !== undefined && (ifNoneMatch === "*" || ifNoneMatch.split(",").some((t) => t.trim() === etag))) {
    return void res.writeHead(304, { etag, "last-modified": httpDate(object.lastModified) }).end();
  }
  const ifMatch = req.headers["if-match"];
  if (ifMatch !== undefined && ifMatch !== "*" && !ifMatch.split(",").some((t) => t.trim() === etag)) {
    throw new S3Error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold");
  }
  const headers = responseHeaders(object, route.auth !== null ? route.url.searchParams : null);
  const range = parseRange(req.headers.range, object.size);
  if (range === "unsatisfiable") {
    throw new S3Error(416, "InvalidRange", "The requested range is not satisfiable", {
      ActualObjectSize: String(object.size),
    });
  }
  if (range) {
    res.writeHead(206, {
      ...headers,
      "content-length": range.end - range.start + 1,
      "content-range": `bytes ${range.start}-${range.end}/${object.size}`,
    });
  } else {
    res.writeHead(200, { ...headers, "content-length": object.size });
  }
  if (!withBody || object.size === 0) return void res.end();
  await pipeline(file.createReadStream({ ...(range ?? {}), autoClose: false }), res);
}

async function copyObject(store: DiskStore, route: Route, req: IncomingMessage, res: ServerResponse): Promise<Created> {
  const rawSource = String(req.headers["x-amz-copy-source"]).split("?")[0] ?? "";
  const source = decodeURIComponent(rawSource).replace(/^\//, "");
  const slash = source.indexOf("/");
  const sourceBucket = source.slice(0, slash);
  const sourceKey = source.slice(slash + 1);
  if (slash <= 0 || sourceKey === "") throw invalidRequest("Invalid copy source");
  if (!store.hasBucket(sourceBucket)) throw noSuchBucket(sourceBucket);
  const { object: original, file } = await store.open(sourceBucket, sourceKey);
  const replace = String(req.headers["x-amz-metadata-directive"] ?? "COPY").toUpperCase() === "REPLACE";
  const headers: ObjectHeaders = replace ? objectHeaders(req) : storedHeaders(original);
  const object = await store
    .put(route.bucket, route.key, file.createReadStream({ autoClose: false }), headers)
    .finally(() => file.close().catch(() => {}));
  sendXml(res, 200, renderXml("CopyObjectResult", { LastModified: object.lastModified, ETag: `"${object.etag}"` }));
  return { action: "CopyObject", object, copySource: { bucket: sourceBucket, object: sourceKey } };
}

async function completeUpload(
  store: DiskStore,
  route: Route,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<Created> {
  const xml = await readSmallBody(incomingBody(req, route.auth));
  const parts = xmlBlocks(xml, "Part").map((part) => ({
    partNumber: Number(xmlText(part, "PartNumber")),
    etag: xmlText(part, "ETag") ?? "",
  }));
  const uploadId = route.url.searchParams.get("uploadId") ?? "";
  const object = await store.completeUpload(route.bucket, route.key, uploadId, parts);
  sendXml(
    res,
    200,
    renderXml("CompleteMultipartUploadResult", {
      Location: `/${route.bucket}/${route.key}`,
      Bucket: route.bucket,
      Key: route.key,
      ETag: `"${object.etag}"`,
    }),
  );
  return { action: "CompleteMultipartUpload", object };
}

async function listParts(store: DiskStore, route: Route, res: ServerResponse) {
  const uploadId = route.url.searchParams.get("uploadId") ?? "";
  const marker = Number(route.url.searchParams.get("part-number-marker") ?? 0);
  const maxParts = Number(route.url.searchParams.get("max-parts") ?? 1000);
  const all = (await store.listParts(route.bucket, route.key, uploadId)).filter((p) => p.partNumber > marker);
  const page = all.slice(0, maxParts);
  sendXml(
    res,
    200,
    renderXml("ListPartsResult", {
      Bucket: route.bucket,
      Key: route.key,
      UploadId: uploadId,
      PartNumberMarker: marker,
      NextPartNumberMarker: page.at(-1)?.partNumber ?? marker,
      MaxParts: maxParts,
      IsTruncated: all.length > page.length,
      Part: page.map((p) => ({
        PartNumber: p.partNumber,
        LastModified: p.lastModified,
        ETag: `"${p.etag}"`,
        Size: p.size,
      })),
    }),
  );
}

async function deleteObjects(store: DiskStore, route: Route, req: IncomingMessage, res: ServerResponse) {
  const xml = await readSmallBody(incomingBody(req, route.auth));
  const keys = xmlBlocks(xml, "Object").map((o) => xmlText(o, "Key") ?? "");
  const quiet = xmlText(xml, "Quiet") === "true";
  for (const key of keys) await store.delete(route.bucket, key);
  sendXml(res, 200, renderXml("DeleteResult", { Deleted: quiet ? [] : keys.map((Key) => ({ Key })) }));
}

function listObjectsXml(store: DiskStore, bucket: string, q: URLSearchParams): string {
  const prefix = q.get("prefix") ?? "";
  const delimiter = q.get("delimiter") ?? "";
  const maxKeys = Math.min(Number(q.get("max-keys") ?? 1000), 1000);
  const token = q.get("continuation-token");
  const startAfter = q.get("start-after") ?? "";
  const after = token ? decodeContinuationToken(token) : startAfter;
  const page = listPage(store.list(bucket), { prefix, delimiter, maxKeys, after });
  const encode = q.get("encoding-type") === "url" ? (s: string) => encodeURIComponent(s) : (s: string) => s;
  return renderXml("ListBucketResult", {
    Name: bucket,
    Prefix: encode(prefix),
    Delimiter: delimiter ? encode(delimiter) : undefined,
    StartAfter: startAfter ? encode(startAfter) : undefined,
    ContinuationToken: token ?? undefined,
    NextContinuationToken: page.nextAfter !== null ? encodeContinuationToken(page.nextAfter) : undefined,
    KeyCount: page.objects.length + page.commonPrefixes.length,
    MaxKeys: maxKeys,
    EncodingType: q.get("encoding-type") ?? undefined,
    IsTruncated: page.nextAfter !== null,
    Contents: page.objects.map((o) => ({
      Key: encode(o.key),
      LastModified: o.lastModified,
      ETag: `"${o.etag}"`,
      Size: o.size,
      StorageClass: "STANDARD",
    })),
    CommonPrefixes: page.commonPrefixes.map((p) => ({ Prefix: encode(p) })),
  });
}

/** The original ListObjects: a `marker` (the last key seen) instead of an opaque token. */
function listObjectsV1Xml(store: DiskStore, bucket: string, q: URLSearchParams): string {
  const prefix = q.get("prefix") ?? "";
  const delimiter = q.get("delimiter") ?? "";
  const maxKeys = Math.min(Number(q.get("max-keys") ?? 1000), 1000);
  const marker = q.get("marker") ?? "";
  const page = listPage(store.list(bucket), { prefix, delimiter, maxKeys, after: marker });
  return renderXml("ListBucketResult", {
    Name: bucket,
    Prefix: prefix,
    Marker: marker,
    NextMarker: page.nextAfter ?? undefined,
    MaxKeys: maxKeys,
    Delimiter: delimiter || undefined,
    IsTruncated: page.nextAfter !== null,
    Contents: page.objects.map((o) => ({
      Key: o.key,
      LastModified: o.lastModified,
      ETag: `"${o.etag}"`,
      Size: o.size,
      StorageClass: "STANDARD",
    })),
    CommonPrefixes: page.commonPrefixes.map((p) => ({ Prefix: p })),
  });
}

function listBucketsXml(store: DiskStore): string {
  return renderXml("ListAllMyBucketsResult", {
    Owner: { ID: "local", DisplayName: "local" },
    Buckets: { Bucket: store.buckets().map((Name) => ({ Name, CreationDate: new Date(0).toISOString() })) },
  });
}

function objectHeaders(req: IncomingMessage): ObjectHeaders {
  const get = (name: string) => {
    const value = req.headers[name];
    return Array.isArray(value) ? value.join(",") : value;
  };
  // aws-chunked is how the body travelled, not how the object is encoded.
  const contentEncoding = (get("content-encoding") ?? "")
    .split(",")
    .map((e) => e.trim())
    .filter((e) => e !== "" && e !== "aws-chunked")
    .join(",");
  const userMetadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (name.startsWith("x-amz-meta-") && value !== undefined) userMetadata[name.slice(11)] = String(value);
  }
  return {
    contentType: get("content-type") ?? "binary/octet-stream",
    cacheControl: get("cache-control"),
    contentDisposition: get("content-disposition"),
    contentEncoding: contentEncoding || undefined,
    contentLanguage: get("content-language"),
    userMetadata,
  };
}

function storedHeaders(object: StoredObject): ObjectHeaders {
  const { contentType, cacheControl, contentDisposition, contentEncoding, contentLanguage, userMetadata } = object;
  return { contentType, cacheControl, contentDisposition, contentEncoding, contentLanguage, userMetadata };
}

/** Headers a GET/HEAD answers with; signed requests may override some with `response-*` params. */
function responseHeaders(object: StoredObject, overrides: URLSearchParams | null): Record<string, string> {
  const headers: Record<string, string | undefined> = {
    etag: `"${object.etag}"`,
    "last-modified": httpDate(object.lastModified),
    "accept-ranges": "bytes",
    "content-type": overrides?.get("response-content-type") ?? object.contentType,
    "cache-control": overrides?.get("response-cache-control") ?? object.cacheControl,
    "content-disposition": overrides?.get("response-content-disposition") ?? object.contentDisposition,
    "content-encoding": overrides?.get("response-content-encoding") ?? object.contentEncoding,
    "content-language": overrides?.get("response-content-language") ?? object.contentLanguage,
  };
  for (const [name, value] of Object.entries(object.userMetadata)) headers[`x-amz-meta-${name}`] = value;
  return Object.fromEntries(Object.entries(headers).filter((e): e is [string, string] => e[1] !== undefined));
}

function parseRange(header: string | undefined, size: number): { start: number; end: number } | "unsatisfiable" | null {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header?.trim() ?? "");
  if (!m || (m[1] === "" && m[2] === "")) return null;
  if (m[1] === "") {
    const suffix = Number(m[2]);
    if (suffix === 0 || size === 0) return "unsatisfiable";
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  if (start >= size) return "unsatisfiable";
  const end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  return end < start ? null : { start, end };
}

function preflight(req: IncomingMessage, res: ServerResponse) {
  res.writeHead(200, {
    "access-control-allow-methods": "GET, PUT, POST, DELETE, HEAD",
    "access-control-allow-headers": req.headers["access-control-request-headers"] ?? "*",
    "access-control-max-age": "3600",
    vary: "Origin, Access-Control-Request-Headers, Access-Control-Request-Method",
  });
  res.end();
}

function injectFault(faults: S3Faults | undefined, method: string, key: string) {
  if (!faults?.failRate || key === "") return;
  const op = method === "GET" || method === "HEAD" ? "get" : method === "PUT" || method === "POST" ? "put" : null;
  if (op === null || (faults.ops && !faults.ops.includes(op))) return;
  if (Math.random() < faults.failRate) {
    throw new S3Error(500, "InternalError", "We encountered an internal error. Please try again. (injected fault)");
  }
}

function sendXml(res: ServerResponse, status: number, xml: string) {
  res.writeHead(status, { "content-type": "application/xml", "content-length": Buffer.byteLength(xml) });
  res.end(xml);
}

function sendError(req: IncomingMessage, res: ServerResponse, error: unknown, requestId: string) {
  const s3Error =
    error instanceof S3Error
      ? error
      : new S3Error(500, "InternalError", `We encountered an internal error: ${(error as Error).message}`);
  if (!(error instanceof S3Error)) console.error("[s3-store]", error);
  if (res.headersSent) return void res.destroy();
  // Whatever the client is still sending is not wanted; read it so the response reaches it.
  req.resume();
  if (req.method === "HEAD") return void res.writeHead(s3Error.status).end();
  const resource = decodeURIComponentSafe((req.url ?? "/").split("?")[0] ?? "/");
  sendXml(
    res,
    s3Error.status,
    renderXml(
      "Error",
      { Code: s3Error.code, Message: s3Error.message, ...s3Error.extra, Resource: resource, RequestId: requestId },
      false,
    ),
  );
}

function decodePath(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new S3Error(400, "InvalidURI", "Couldn't parse the specified URI.");
  }
}

function decodeURIComponentSafe(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

const httpDate = (iso: string) => new Date(iso).toUTCString();
const notImplemented = () =>
  new S3Error(501, "NotImplemented", "A header or operation you provided is not implemented.");

async function deliverWithRetries(send: () => void | Promise<void>, event: R2EventNotification): Promise<void> {
  for (let attempt = 1; attempt <= eventAttempts; attempt++) {
    try {
      await send();
      return;
    } catch (error) {
      if (attempt === eventAttempts) {
        console.error(`[s3-store] dropping ${event.action} event for ${event.bucket}/${event.object.key}`, error);
        return;
      }
      await new Promise((r) => setTimeout(r, 50 * 2 ** attempt));
    }
  }
}
