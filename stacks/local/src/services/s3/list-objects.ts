/** ListObjects (V2 and the original) over the sorted keys of a bucket: prefix, delimiter, max-keys, paging. */
import type { DiskStore, StoredObject } from "./disk-store.ts";
import { renderXml } from "./xml.ts";

export interface ListRequest {
  prefix: string;
  delimiter: string;
  maxKeys: number;
  /** Return only keys after this one (from start-after or a continuation token). */
  after: string;
}

export interface ListPage {
  objects: StoredObject[];
  commonPrefixes: string[];
  /** The key or common prefix the page ended on when there is more; feeds the next token. */
  nextAfter: string | null;
}

export function listPage(sorted: StoredObject[], request: ListRequest): ListPage {
  const objects: StoredObject[] = [];
  const commonPrefixes: string[] = [];
  let last: string | null = null;
  for (const object of sorted) {
    if (!object.key.startsWith(request.prefix) || object.key <= request.after) continue;
    // A page that ended on a common prefix resumes after everything under it.
    if (request.delimiter && request.after.endsWith(request.delimiter) && object.key.startsWith(request.after))
      continue;
    const rest = object.key.slice(request.prefix.length);
    const cut = request.delimiter ? rest.indexOf(request.delimiter) : -1;
    const commonPrefix = cut >= 0 ? request.prefix + rest.slice(0, cut + request.delimiter.length) : null;
    if (commonPrefix !== null && commonPrefix === last) continue;
    if (objects.length + commonPrefixes.length >= request.maxKeys) return { objects, commonPrefixes, nextAfter: last };
    if (commonPrefix !== null) {
      commonPrefixes.push(commonPrefix);
      last = commonPrefix;
    } else {
      objects.push(object);
      last = object.key;
    }
  }
  return { objects, commonPrefixes, nextAfter: null };
}

export const encodeContinuationToken = (after: string) => Buffer.from(after, "utf8").toString("base64url");
export const decodeContinuationToken = (token: string) => Buffer.from(token, "base64url").toString("utf8");

export function listObjectsXml(store: DiskStore, bucket: string, q: URLSearchParams): string {
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
export function listObjectsV1Xml(store: DiskStore, bucket: string, q: URLSearchParams): string {
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
