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

export interface S3Settings {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

export function createS3Client(settings: S3Settings): S3Client {
  return new S3Client({
    endpoint: settings.endpoint,
    region: settings.region,
    credentials: { accessKeyId: settings.accessKeyId, secretAccessKey: settings.secretAccessKey },
    // Path-style works on R2 and on the local store alike; virtual-host style needs DNS per bucket.
    forcePathStyle: true,
    maxAttempts: 4,
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

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });

/** Streams one file up (multipart when large), retrying the whole file on failure. */
export async function uploadFile(
  s3: S3Client,
  bucket: string,
  item: UploadItem,
  { attempts = 4, signal }: { attempts?: number; signal?: AbortSignal } = {},
): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    signal?.throwIfAborted();
    try {
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
      return;
    } catch (error) {
      if (signal?.aborted || attempt >= attempts) throw error;
      await sleep(250 * 2 ** attempt + Math.random() * 250, signal);
    }
  }
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
