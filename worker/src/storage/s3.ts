/**
 * The object store through its S3 API (R2 in the cloud, the on-disk store locally), signed with
 * SigV4 by aws4fetch. Path-style URLs: `${S3_ENDPOINT}/${bucket}/${key}`.
 */
import { AwsClient, AwsV4Signer } from "aws4fetch";
import type { Settings } from "../bindings.ts";

export type S3Settings = Pick<Settings, "S3_ENDPOINT" | "S3_REGION" | "S3_ACCESS_KEY_ID" | "S3_SECRET_ACCESS_KEY">;

/** SigV4 presigned URLs cannot outlive a week. */
export const MAX_PRESIGN_SECONDS = 7 * 24 * 3600;

export const objectUrl = (settings: Pick<Settings, "S3_ENDPOINT">, bucket: string, key: string): string =>
  `${settings.S3_ENDPOINT.replace(/\/+$/, "")}/${bucket}/${key.split("/").map(encodeURIComponent).join("/")}`;

export interface PresignedPut {
  url: string;
  method: "PUT";
  /** Exactly these headers must accompany the PUT: they are part of the signature. */
  headers: { "content-type": string; "content-length": string };
  expiresAt: string;
}

/**
 * A SigV4 query-signed URL for `method` on `url`, valid `expiresInSeconds` from `nowMs`. Every
 * header in `headers` is signed (aws4fetch skips content-type/length by default; signing them is
 * what binds an upload to its declared type and size), so the request must carry exactly those.
 */
export async function presignUrl(
  settings: S3Settings,
  args: { url: URL; method: string; headers: Record<string, string>; expiresInSeconds: number; nowMs: number },
): Promise<{ url: string; expiresAt: string }> {
  const expires = Math.max(1, Math.min(Math.floor(args.expiresInSeconds), MAX_PRESIGN_SECONDS));
  const url = new URL(args.url);
  url.searchParams.set("X-Amz-Expires", String(expires));
  const signed = await new AwsV4Signer({
    url: url.toString(),
    method: args.method,
    headers: args.headers,
    accessKeyId: settings.S3_ACCESS_KEY_ID,
    secretAccessKey: settings.S3_SECRET_ACCESS_KEY,
    service: "s3",
    region: settings.S3_REGION,
    signQuery: true,
    allHeaders: true,
    datetime: new Date(args.nowMs).toISOString().replace(/[:-]|\.\d{3}/g, ""),
  }).sign();
  return { url: signed.url.toString(), expiresAt: new Date(args.nowMs + expires * 1000).toISOString() };
}

/**
 * A presigned PUT bound to the declared type and size: `content-type` and `content-length` are
 * signed headers, so the store refuses a body of another size or a different type.
 */
export async function presignPut(
  settings: S3Settings,
  args: {
    bucket: string;
    key: string;
    contentType: string;
    sizeBytes: number;
    expiresInSeconds: number;
    nowMs: number;
  },
): Promise<PresignedPut> {
  const headers = { "content-type": args.contentType, "content-length": String(args.sizeBytes) };
  const signed = await presignUrl(settings, {
    url: new URL(objectUrl(settings, args.bucket, args.key)),
    method: "PUT",
    headers,
    expiresInSeconds: args.expiresInSeconds,
    nowMs: args.nowMs,
  });
  return { url: signed.url, method: "PUT", headers, expiresAt: signed.expiresAt };
}

export interface ObjectHead {
  sizeBytes?: number;
  contentType?: string;
  eTag?: string;
}

export class StorageError extends Error {
  override readonly name = "StorageError";
}

const s3Client = (settings: S3Settings) =>
  new AwsClient({
    accessKeyId: settings.S3_ACCESS_KEY_ID,
    secretAccessKey: settings.S3_SECRET_ACCESS_KEY,
    service: "s3",
    region: settings.S3_REGION,
    retries: 2,
  });

/** A signed call to the store; a network failure (after aws4fetch's retries) is a StorageError naming `what`. */
export async function s3Fetch(settings: S3Settings, url: string, init: RequestInit, what: string): Promise<Response> {
  try {
    return await s3Client(settings).fetch(url, init);
  } catch (err) {
    throw new StorageError(`${what} failed: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** HEAD an object: its metadata, or null when it does not exist. */
export async function headObject(settings: S3Settings, bucket: string, key: string): Promise<ObjectHead | null> {
  const res = await s3Fetch(settings, objectUrl(settings, bucket, key), { method: "HEAD" }, "HEAD");
  if (res.status === 404) return null;
  if (!res.ok) throw new StorageError(`HEAD answered ${res.status}`);
  const length = res.headers.get("content-length");
  return {
    ...(length !== null && /^\d+$/.test(length) ? { sizeBytes: Number(length) } : {}),
    ...(res.headers.get("content-type") ? { contentType: res.headers.get("content-type") as string } : {}),
    ...(res.headers.get("etag") ? { eTag: (res.headers.get("etag") as string).replaceAll('"', "") } : {}),
  };
}

/**
 * GET (or HEAD) an object as the store answers it, `Range` passed through: 200, 206, 304, 404 and
 * 416 come back as they are, for the caller to relay.
 */
export function fetchObject(
  settings: S3Settings,
  bucket: string,
  key: string,
  { method = "GET", range }: { method?: "GET" | "HEAD"; range?: string | undefined } = {},
): Promise<Response> {
  return s3Fetch(settings, objectUrl(settings, bucket, key), { method, headers: range ? { range } : {} }, method);
}

/** PUT a small object (a playlist, a WebVTT file) with the headers players are served. */
export async function putObject(
  settings: S3Settings,
  bucket: string,
  key: string,
  body: string,
  headers: { contentType: string; cacheControl: string },
): Promise<void> {
  const res = await s3Fetch(
    settings,
    objectUrl(settings, bucket, key),
    { method: "PUT", headers: { "content-type": headers.contentType, "cache-control": headers.cacheControl }, body },
    "PUT",
  );
  if (!res.ok) throw new StorageError(`PUT answered ${res.status}`);
}

/** GET a small object as text; null when it does not exist. */
export async function getObjectText(settings: S3Settings, bucket: string, key: string): Promise<string | null> {
  const res = await fetchObject(settings, bucket, key);
  if (res.status === 404) {
    await res.body?.cancel();
    return null;
  }
  if (!res.ok) throw new StorageError(`GET answered ${res.status}`);
  return res.text();
}
