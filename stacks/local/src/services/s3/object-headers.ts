/** Which request headers an object keeps, and the headers GET/HEAD answer with. */
import type { IncomingMessage } from "node:http";
import type { ObjectHeaders, StoredObject } from "./disk-store.ts";
import { checkMetadata } from "./limits.ts";

export function objectHeaders(req: IncomingMessage): ObjectHeaders {
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
  checkMetadata(userMetadata);
  return {
    contentType: get("content-type") ?? "binary/octet-stream",
    cacheControl: get("cache-control"),
    contentDisposition: get("content-disposition"),
    contentEncoding: contentEncoding || undefined,
    contentLanguage: get("content-language"),
    userMetadata,
  };
}

export function storedHeaders(object: StoredObject): ObjectHeaders {
  const { contentType, cacheControl, contentDisposition, contentEncoding, contentLanguage, userMetadata } = object;
  return { contentType, cacheControl, contentDisposition, contentEncoding, contentLanguage, userMetadata };
}

/** Headers a GET/HEAD answers with; signed requests may override some with `response-*` params. */
export function responseHeaders(object: StoredObject, overrides: URLSearchParams | null): Record<string, string> {
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

export function parseRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | "unsatisfiable" | null {
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

export const httpDate = (iso: string) => new Date(iso).toUTCString();
