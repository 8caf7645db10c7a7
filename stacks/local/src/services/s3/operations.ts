/** The S3 operations, chosen by method, path shape and query (`?uploads`, `?uploadId`, `?list-type=2`, …). */
import type { IncomingMessage, ServerResponse } from "node:http";
import { pipeline } from "node:stream/promises";
import type { ByteRange, DiskStore, ObjectHeaders, OpenObject, StoredObject } from "./disk-store.ts";
import { invalidRequest, noSuchBucket, S3Error } from "./errors.ts";
import { incomingBody, readSmallBody } from "./incoming-body.ts";
import { withinUploadLimit } from "./limits.ts";
import { listObjectsV1Xml, listObjectsXml } from "./list-objects.ts";
import { httpDate, objectHeaders, parseRange, responseHeaders, storedHeaders } from "./object-headers.ts";
import type { VerifiedRequest } from "./sigv4.ts";
import { renderXml, sendXml, xmlBlocks, xmlText } from "./xml.ts";

export type Created = {
  action: "PutObject" | "CompleteMultipartUpload" | "CopyObject";
  object: StoredObject;
  copySource?: { bucket: string; object: string };
};

export interface Route {
  method: string;
  url: URL;
  bucket: string;
  key: string;
  auth: VerifiedRequest | null;
}

export async function dispatch(
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
          withinUploadLimit(req, body.bytes),
          body.verify,
        );
        return void res.writeHead(200, { etag: `"${part.etag}"` }).end();
      }
      if (req.headers["x-amz-copy-source"] !== undefined) return await copyObject(store, route, req, res);
      const body = incomingBody(req, route.auth);
      const object = await store.put(bucket, key, withinUploadLimit(req, body.bytes), objectHeaders(req), body.verify);
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
  const opened = await store.open(route.bucket, route.key, (object) => (withBody ? bodyBytes(req, object) : null));
  try {
    await sendObject(opened, route, req, res, withBody);
  } finally {
    await opened.close();
  }
}

/** The bytes a GET's body holds: the range asked for, else all of them; none if the range cannot be met. */
function bodyBytes(req: IncomingMessage, object: StoredObject): ByteRange | null {
  const range = parseRange(req.headers.range, object.size);
  if (range === "unsatisfiable") return null;
  return range ?? { start: 0, end: object.size - 1 };
}

async function sendObject(
  opened: OpenObject,
  route: Route,
  req: IncomingMessage,
  res: ServerResponse,
  withBody: boolean,
) {
  const { object } = opened;
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
  await pipeline(opened.bytes(), res);
}

async function copyObject(store: DiskStore, route: Route, req: IncomingMessage, res: ServerResponse): Promise<Created> {
  const rawSource = String(req.headers["x-amz-copy-source"]).split("?")[0] ?? "";
  const source = decodeURIComponent(rawSource).replace(/^\//, "");
  const slash = source.indexOf("/");
  const sourceBucket = source.slice(0, slash);
  const sourceKey = source.slice(slash + 1);
  if (slash <= 0 || sourceKey === "") throw invalidRequest("Invalid copy source");
  if (!store.hasBucket(sourceBucket)) throw noSuchBucket(sourceBucket);
  // The copy gets files of its own: it outlives the source being deleted or overwritten.
  const original = await store.open(sourceBucket, sourceKey);
  const replace = String(req.headers["x-amz-metadata-directive"] ?? "COPY").toUpperCase() === "REPLACE";
  const headers: ObjectHeaders = replace ? objectHeaders(req) : storedHeaders(original.object);
  const object = await store.put(route.bucket, route.key, original.bytes(), headers).finally(() => original.close());
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

function listBucketsXml(store: DiskStore): string {
  return renderXml("ListAllMyBucketsResult", {
    Owner: { ID: "local", DisplayName: "local" },
    Buckets: { Bucket: store.buckets().map((Name) => ({ Name, CreationDate: new Date(0).toISOString() })) },
  });
}

export const notImplemented = () =>
  new S3Error(501, "NotImplemented", "A header or operation you provided is not implemented.");
