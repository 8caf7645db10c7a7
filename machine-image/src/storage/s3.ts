/**
 * The object store as the machine uses it: stream an object to disk (large ones as parallel ranged
 * GETs), stream files up with retries and per-file Content-Type / Cache-Control, a bounded number
 * at a time.
 */
import { createReadStream } from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import { addAbortSignal, type Readable } from "node:stream";
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
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

/** The object was replaced while it was being downloaded: its parts would mix two versions. */
export class ObjectChangedError extends Error {
  constructor(readonly key: string) {
    super(`object ${key} changed during the download`);
    this.name = "ObjectChangedError";
  }
}

/** Bytes per ranged GET, as the AWS CLI and s5cmd default to; an object no larger takes one request. */
const DOWNLOAD_PART_BYTES = 8 * 1024 * 1024;
/** Ranged GETs in flight per download: one stream to R2 runs well below the link rate. */
const DOWNLOAD_CONCURRENCY = 4;
/**
 * Tries of a part whose body broke off after the answer began. The S3 client retries a failed
 * request itself (REQUEST_ATTEMPTS) but not a body cut short; a part still failing fails the whole
 * download, which the caller starts over.
 */
const PART_RETRY = { attempts: 3, baseDelayMs: 250, maxDelayMs: 1_000 };

export interface DownloadOptions {
  signal?: AbortSignal;
  /** Bytes per ranged GET. */
  partSizeBytes?: number;
  /** Ranged GETs in flight at once. */
  concurrency?: number;
  /** Told of each run of bytes once it is written: [start, start + length) of the object. */
  onWritten?: (start: number, length: number) => void;
  /**
   * Fetch the last part right after the first: a container whose index is at its end (an MP4
   * without faststart) can be read from those two while the rest arrives.
   */
  tailEarly?: boolean;
}

interface ObjectRef {
  s3: S3Client;
  bucket: string;
  key: string;
}

/** A byte range of the object; the first carries the body its request already opened. */
interface Part {
  start: number;
  length: number;
  body?: Readable;
}

/** A download under way: its size is known (the first answer said), its bytes are still arriving. */
export interface StartedDownload {
  sizeBytes: number;
  /** Settles when every part is written and the file closed, or the download failed. */
  done: Promise<void>;
}

/**
 * Streams an object to `path`. The first request asks for the first part and learns the object's
 * size and ETag from the answer; the other parts of a larger object follow, a bounded number at a
 * time, each on the condition that the ETag still matches and written at its own offset, so memory
 * stays at a few chunks per part whatever the object's size.
 */
export async function downloadToFile(
  s3: S3Client,
  bucket: string,
  key: string,
  path: string,
  options: DownloadOptions = {},
): Promise<{ sizeBytes: number }> {
  const { sizeBytes, done } = await startDownload(s3, bucket, key, path, options);
  await done;
  return { sizeBytes };
}

/** `downloadToFile` that returns once the first answer is in, with the rest still arriving. */
export async function startDownload(
  s3: S3Client,
  bucket: string,
  key: string,
  path: string,
  {
    signal,
    partSizeBytes = DOWNLOAD_PART_BYTES,
    concurrency = DOWNLOAD_CONCURRENCY,
    onWritten,
    tailEarly = false,
  }: DownloadOptions = {},
): Promise<StartedDownload> {
  const object = { s3, bucket, key };
  const file = await open(path, "w");
  let first: Awaited<ReturnType<typeof getFirstPart>>;
  try {
    first = await getFirstPart(object, partSizeBytes, signal);
  } catch (error) {
    await file.close();
    throw error;
  }
  if (!first) {
    await file.close();
    return { sizeBytes: 0, done: Promise.resolve() };
  }
  const { part, sizeBytes, etag } = first;
  const rest = remainingParts(part.length, sizeBytes, partSizeBytes);
  const last = tailEarly ? rest.pop() : undefined;
  const parts = [part, ...(last ? [last] : []), ...rest];
  const done = (async () => {
    try {
      await downloadParts(file, object, etag, parts, concurrency, signal, onWritten);
      const { size } = await file.stat();
      if (size !== sizeBytes) throw new Error(`downloaded ${size} of the ${sizeBytes} bytes of ${key}`);
    } finally {
      await file.close();
    }
  })();
  return { sizeBytes, done };
}

/** The first part with the object's size and ETag, or null for an empty object (it has no first byte to ask for). */
async function getFirstPart(
  object: ObjectRef,
  partSizeBytes: number,
  signal: AbortSignal | undefined,
): Promise<{ part: Part; sizeBytes: number; etag: string | undefined } | null> {
  let response: GetObjectCommandOutput;
  try {
    response = await getRange(object, { start: 0, length: partSizeBytes }, undefined, signal);
  } catch (error) {
    if (error instanceof S3ServiceException && error.$metadata.httpStatusCode === 416) return null;
    throw error;
  }
  const body = response.Body as Readable;
  // A store that ignores Range answers 200 with the whole object: then that is the one part.
  const range = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(response.ContentRange ?? "");
  const sizeBytes = range ? Number(range[3]) : (response.ContentLength ?? 0);
  const length = range ? Number(range[2]) - Number(range[1]) + 1 : sizeBytes;
  return { part: { start: 0, length, body }, sizeBytes, etag: response.ETag };
}

function remainingParts(from: number, sizeBytes: number, partSizeBytes: number): Part[] {
  const parts: Part[] = [];
  for (let start = from; start < sizeBytes; start += partSizeBytes)
    parts.push({ start, length: Math.min(partSizeBytes, sizeBytes - start) });
  return parts;
}

async function getRange(
  object: ObjectRef,
  part: Omit<Part, "body">,
  etag: string | undefined,
  signal: AbortSignal | undefined,
): Promise<GetObjectCommandOutput> {
  try {
    return await object.s3.send(
      new GetObjectCommand({
        Bucket: object.bucket,
        Key: object.key,
        Range: `bytes=${part.start}-${part.start + part.length - 1}`,
        ...(etag ? { IfMatch: etag } : {}),
      }),
      { abortSignal: signal },
    );
  } catch (error) {
    const status = error instanceof S3ServiceException ? error.$metadata.httpStatusCode : undefined;
    if (error instanceof NoSuchKey || status === 404) throw new ObjectMissingError(object.key);
    if (status === 412) throw new ObjectChangedError(object.key);
    throw error;
  }
}

/**
 * Fetches every part, `concurrency` at a time. The first part that fails stops the others, and this
 * returns only once every request has ended, so a failed or aborted download leaves none running.
 */
async function downloadParts(
  file: FileHandle,
  object: ObjectRef,
  etag: string | undefined,
  parts: readonly Part[],
  concurrency: number,
  signal: AbortSignal | undefined,
  onWritten: DownloadOptions["onWritten"],
): Promise<void> {
  const stop = new AbortController();
  const partSignal = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
  let failure: { error: unknown } | undefined;
  await forEachBounded(parts, concurrency, async (part) => {
    if (failure) return void part.body?.destroy();
    try {
      await downloadPart(file, object, etag, part, partSignal, onWritten);
    } catch (error) {
      failure ??= { error };
      stop.abort(error);
    }
  });
  if (failure) {
    signal?.throwIfAborted();
    throw failure.error;
  }
}

/** One part to its offset; a body cut short is fetched again by itself. */
async function downloadPart(
  file: FileHandle,
  object: ObjectRef,
  etag: string | undefined,
  part: Part,
  signal: AbortSignal,
  onWritten: DownloadOptions["onWritten"],
): Promise<void> {
  let opened = part.body;
  try {
    await retry(
      async () => {
        const body = opened ?? ((await getRange(object, part, etag, signal)).Body as Readable);
        opened = undefined;
        await writeAt(file, addAbortSignal(signal, body), part, onWritten);
      },
      { ...PART_RETRY, retryIf: (error) => error instanceof PartCutShortError, signal },
    );
  } finally {
    // Aborted before its first try: the first part's body was never read, and holds a connection.
    opened?.destroy();
  }
}

/** The body of a part broke off (a connection cut) or ended early: worth fetching again. */
class PartCutShortError extends Error {
  constructor(part: Part, written: number, options?: ErrorOptions) {
    super(`the part at byte ${part.start} broke off after ${written} of ${part.length} bytes`, options);
    this.name = "PartCutShortError";
  }
}

async function writeAt(
  file: FileHandle,
  body: Readable,
  part: Part,
  onWritten: DownloadOptions["onWritten"],
): Promise<void> {
  let written = 0;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      // Written on, it would overwrite the next part: the store answered with more than the range.
      if (written + chunk.length > part.length)
        throw new Error(`the part at byte ${part.start} has more than the ${part.length} bytes asked for`);
      await writeFully(file, chunk, part.start + written);
      onWritten?.(part.start + written, chunk.length);
      written += chunk.length;
    }
  } catch (error) {
    // A failed write destroys the body without an error of its own: the disk, not the connection, failed.
    if (body.errored) throw new PartCutShortError(part, written, { cause: error });
    throw error;
  }
  if (written !== part.length) throw new PartCutShortError(part, written);
}

async function writeFully(file: FileHandle, chunk: Buffer, position: number): Promise<void> {
  for (let done = 0; done < chunk.length; )
    done += (await file.write(chunk, done, chunk.length - done, position + done)).bytesWritten;
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
