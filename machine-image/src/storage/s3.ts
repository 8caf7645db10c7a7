/**
 * The object store as the machine uses it: stream a source to disk, stream files up with retries
 * and per-file Content-Type / Cache-Control, a bounded number at a time.
 */
import { createReadStream, createWriteStream } from "node:fs";
import { stat } from "node:fs/promises";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  NoSuchKey,
  S3Client,
  S3ServiceException,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { retry } from "@tcoder/worker/contract";

export interface S3Settings {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/** Tries of each request, the SDK's own retries included. */
const REQUEST_ATTEMPTS = 4;

export function createS3Client(settings: S3Settings): S3Client {
  return new S3Client({
    endpoint: settings.endpoint,
    region: settings.region,
    credentials: { accessKeyId: settings.accessKeyId, secretAccessKey: settings.secretAccessKey },
    // Path-style works on R2 and on the local store alike; virtual-host style needs DNS per bucket.
    forcePathStyle: true,
    maxAttempts: REQUEST_ATTEMPTS,
  });
}

/** The source does not exist in the input bucket (deleted or never uploaded). */
export class ObjectMissingError extends Error {
  constructor(readonly key: string) {
    super(`object ${key} not found`);
    this.name = "ObjectMissingError";
  }
}

export async function downloadToFile(
  s3: S3Client,
  bucket: string,
  key: string,
  path: string,
  signal?: AbortSignal,
): Promise<{ sizeBytes: number }> {
  let body: Readable;
  try {
    const response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }), { abortSignal: signal });
    body = response.Body as Readable;
  } catch (error) {
    if (error instanceof NoSuchKey || (error instanceof S3ServiceException && error.$metadata.httpStatusCode === 404))
      throw new ObjectMissingError(key);
    throw error;
  }
  await pipeline(body, createWriteStream(path), signal ? { signal } : {});
  return { sizeBytes: (await stat(path)).size };
}

export interface UploadItem {
  /** Local file. */
  path: string;
  key: string;
  contentType: string;
  cacheControl: string;
}

/**
 * The S3 client tries each request REQUEST_ATTEMPTS times itself. A file whose upload still failed
 * (a part that failed them all, a read of the local file cut short) is sent once more from the
 * start: one part is tried at most 2 × REQUEST_ATTEMPTS times, not a product of two loops of four.
 */
const WHOLE_FILE_ATTEMPTS = 2;

/** Streams one file up (multipart when large), retrying the whole file once on failure. */
export async function uploadFile(
  s3: S3Client,
  bucket: string,
  item: UploadItem,
  { attempts = WHOLE_FILE_ATTEMPTS, signal }: { attempts?: number; signal?: AbortSignal } = {},
): Promise<void> {
  const sendFile = async () => {
    const upload = new Upload({
      client: s3,
      params: {
        Bucket: bucket,
        Key: item.key,
        Body: createReadStream(item.path),
        ContentType: item.contentType,
        CacheControl: item.cacheControl,
      },
      queueSize: 2,
      partSize: 16 * 1024 * 1024,
    });
    const abort = () => void upload.abort();
    signal?.addEventListener("abort", abort, { once: true });
    try {
      await upload.done();
    } finally {
      signal?.removeEventListener("abort", abort);
    }
  };
  await retry(sendFile, { attempts, baseDelayMs: 1_000, maxDelayMs: 8_000, ...(signal ? { signal } : {}) });
}

/** Runs `task` over `items` with at most `concurrency` in flight; the first failure rejects. */
export async function forEachBounded<T>(
  items: readonly T[],
  concurrency: number,
  task: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      const item = items[next++] as T;
      try {
        await task(item);
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, worker));
}

/** Keys under a prefix (for cleaning up what an interrupted attempt left behind). */
export async function listKeys(s3: S3Client, bucket: string, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ...(token ? { ContinuationToken: token } : {}) }),
    );
    for (const object of page.Contents ?? []) if (object.Key) keys.push(object.Key);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return keys;
}

export async function deleteKeys(s3: S3Client, bucket: string, keys: readonly string[]): Promise<void> {
  for (let i = 0; i < keys.length; i += 1000) {
    const batch = keys.slice(i, i + 1000);
    await s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: batch.map((Key) => ({ Key })) } }));
  }
}
