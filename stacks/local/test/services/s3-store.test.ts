import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { crc32 } from "node:zlib";
import { Sha256 } from "@aws-crypto/sha256-js";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { HttpRequest } from "@smithy/protocol-http";
import { SignatureV4 } from "@smithy/signature-v4";
import { bucketCors } from "@tcoder/worker/bindings";
import { R2EventNotification } from "@tcoder/worker/contract";
import { MAX_SINGLE_UPLOAD_BYTES } from "@tcoder/worker/contract/object-store.ts";
import { AwsClient } from "aws4fetch";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { decodeAwsChunked } from "../../src/services/s3/aws-chunked.ts";
import { chunkSigner } from "../../src/services/s3/sigv4.ts";
import { type S3Store, startS3Store } from "../../src/services/s3-store.ts";

const credentials = { accessKeyId: "local-access-key", secretAccessKey: "local-secret-key" };
const region = "auto";
/** The page origin the buckets' CORS rules allow (as `tcoder:corsOrigins` does in the cloud). */
const appOrigin = "https://app.example";
const md5 = (bytes: Buffer | string) => createHash("md5").update(bytes).digest("hex");
const crc32Base64 = (text: string) => {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(crc32(text));
  return bytes.toString("base64");
};
type WithBody = { Body?: { transformToByteArray(): Promise<Uint8Array> } };
const bodyBytes = async (output: WithBody) => Buffer.from((await output.Body?.transformToByteArray()) ?? []);
const bodyText = async (output: WithBody) => (await bodyBytes(output)).toString("utf8");

let dir: string;
let store: S3Store;
let events: { bucket: string; event: R2EventNotification }[] = [];
let failNextDelivery = false;
let s3: S3Client;
let aws: AwsClient;

async function start() {
  return startS3Store({
    dir,
    credentials,
    region,
    buckets: ["uploads", "outputs"],
    publicReadBuckets: ["outputs"],
    cors: {
      uploads: [{ ...bucketCors.INPUT_BUCKET, origins: [appOrigin] }],
      outputs: [{ ...bucketCors.OUTPUT_BUCKET, origins: [appOrigin] }],
    },
    onObjectCreated: (bucket, event) => {
      if (failNextDelivery) {
        failNextDelivery = false;
        throw new Error("consumer hiccup");
      }
      events.push({ bucket, event });
    },
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tcoder-s3-"));
  store = await start();
  s3 = new S3Client({ endpoint: store.endpoint, region, forcePathStyle: true, credentials });
  aws = new AwsClient({ ...credentials, service: "s3", region });
});
afterAll(async () => {
  s3?.destroy();
  await store?.stop();
  await rm(dir, { recursive: true, force: true });
});
beforeEach(() => {
  events = [];
  store.setFaults(undefined);
});

async function eventFor(key: string): Promise<{ bucket: string; event: R2EventNotification }> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const found = events.find((e) => e.event.object.key === key);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no event for ${key}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Stops the store and starts it again on the same dir, as a restarted local stack does. */
async function restart(whileStopped?: () => Promise<void>) {
  await store.stop();
  await whileStopped?.();
  store = await start();
  s3.destroy();
  s3 = new S3Client({ endpoint: store.endpoint, region, forcePathStyle: true, credentials });
}

/** What a multipart upload of these parts is called: md5 of the parts' binary md5s, then `-N`. */
const multipartEtag = (parts: Buffer[]) =>
  `"${md5(Buffer.concat(parts.map((p) => Buffer.from(md5(p), "hex"))))}-${parts.length}"`;

/** Uploads `parts` as one multipart upload, part by part with the SDK's commands; its ETag. */
async function uploadInParts(Bucket: string, Key: string, parts: Buffer[]): Promise<string | undefined> {
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key }));
  const Parts = await Promise.all(
    parts.map(async (Body, i) => {
      const { ETag } = await s3.send(new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: i + 1, Body }));
      return { PartNumber: i + 1, ETag };
    }),
  );
  const done = await s3.send(new CompleteMultipartUploadCommand({ Bucket, Key, UploadId, MultipartUpload: { Parts } }));
  return done.ETag;
}

/** The files holding the bucket's bytes on disk (all but the metadata). */
const dataFiles = async (bucket: string) => (await readdir(join(dir, bucket))).filter((f) => !f.endsWith(".json"));

/** Data files of the bucket that `before` did not have. */
const newDataFiles = async (bucket: string, before: string[]) =>
  (await dataFiles(bucket)).filter((f) => !before.includes(f));

async function getRange(Key: string, Range: string) {
  const got = await s3.send(new GetObjectCommand({ Bucket: "uploads", Key, Range }));
  return { status: got.$metadata.httpStatusCode, contentRange: got.ContentRange, bytes: await bodyBytes(got) };
}

/** A presigned URL the way the worker makes them: aws4fetch, query-signed, every header signed. */
async function presign(method: string, path: string, headers: Record<string, string> = {}, extra = {}) {
  const signed = await aws.sign(`${store.endpoint}${path}`, {
    method,
    headers,
    aws: { signQuery: true, allHeaders: true, ...extra },
  });
  return new URL(signed.url);
}

describe("objects through the AWS SDK", () => {
  it("puts a Buffer with headers and metadata, then gets and heads it back", async () => {
    const body = Buffer.from("fake mp4 bytes");
    const put = await s3.send(
      new PutObjectCommand({
        Bucket: "uploads",
        Key: "in/clip one.mp4",
        Body: body,
        ContentType: "video/mp4",
        CacheControl: "max-age=60",
        ContentDisposition: 'attachment; filename="clip.mp4"',
        Metadata: { jobid: "job-1" },
      }),
    );
    expect(put.ETag).toBe(`"${md5(body)}"`);

    const got = await s3.send(new GetObjectCommand({ Bucket: "uploads", Key: "in/clip one.mp4" }));
    expect(await bodyBytes(got)).toEqual(body);
    expect(got.ContentType).toBe("video/mp4");
    expect(got.CacheControl).toBe("max-age=60");
    expect(got.ContentDisposition).toBe('attachment; filename="clip.mp4"');
    expect(got.Metadata).toEqual({ jobid: "job-1" });

    const head = await s3.send(new HeadObjectCommand({ Bucket: "uploads", Key: "in/clip one.mp4" }));
    expect(head.ContentLength).toBe(body.length);
    expect(head.ETag).toBe(put.ETag);
  });

  it("stores the real bytes of a streamed body sent aws-chunked with a checksum trailer", async () => {
    const seen: Record<string, string>[] = [];
    const client = new S3Client({ endpoint: store.endpoint, region, forcePathStyle: true, credentials });
    client.middlewareStack.add(
      (next) => async (args) => {
        seen.push({ ...(args.request as { headers: Record<string, string> }).headers });
        return next(args);
      },
      { step: "finalizeRequest", priority: "low" },
    );
    const body = randomBytes(300_000);
    await client.send(
      new PutObjectCommand({
        Bucket: "uploads",
        Key: "streamed.bin",
        Body: Readable.from([body.subarray(0, 100_000), body.subarray(100_000)]),
        ContentLength: body.length,
      }),
    );
    client.destroy();
    expect(seen[0]?.["content-encoding"]).toContain("aws-chunked");
    expect(seen[0]?.["x-amz-trailer"]).toBe("x-amz-checksum-crc32");

    const got = await s3.send(new GetObjectCommand({ Bucket: "uploads", Key: "streamed.bin" }));
    expect((await bodyBytes(got)).equals(body)).toBe(true);
    expect(got.ETag).toBe(`"${md5(body)}"`);
    expect(got.ContentEncoding).toBeUndefined();
  });

  it("uploads a 12 MB body in parts with lib-storage; the ETag is md5 of the part md5s, -3", async () => {
    const body = randomBytes(12 * 1024 * 1024);
    const upload = new Upload({
      client: s3,
      params: { Bucket: "uploads", Key: "big/input.mp4", Body: body, ContentType: "video/mp4" },
      partSize: 5 * 1024 * 1024,
    });
    const done = await upload.done();
    const partMd5s = [0, 1, 2].map((i) =>
      Buffer.from(md5(body.subarray(i * 5 * 1024 * 1024, (i + 1) * 5 * 1024 * 1024)), "hex"),
    );
    const expectedEtag = `"${md5(Buffer.concat(partMd5s))}-3"`;
    expect(done.ETag).toBe(expectedEtag);

    const got = await s3.send(new GetObjectCommand({ Bucket: "uploads", Key: "big/input.mp4" }));
    expect(got.ContentType).toBe("video/mp4");
    expect(got.ContentLength).toBe(body.length);
    expect(md5(await bodyBytes(got))).toBe(md5(body));

    const { event } = await eventFor("big/input.mp4");
    expect(event).toMatchObject({
      action: "CompleteMultipartUpload",
      object: { size: body.length, eTag: expectedEtag.slice(1, -1) },
    });
  });

  it("lists the parts of an unfinished multipart upload and forgets it once aborted", async () => {
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: "uploads", Key: "parts.bin" }));
    const part1 = randomBytes(5 * 1024 * 1024);
    const one = await s3.send(
      new UploadPartCommand({ Bucket: "uploads", Key: "parts.bin", UploadId, PartNumber: 1, Body: part1 }),
    );
    await s3.send(
      new UploadPartCommand({ Bucket: "uploads", Key: "parts.bin", UploadId, PartNumber: 2, Body: "tail" }),
    );
    const listed = await s3.send(new ListPartsCommand({ Bucket: "uploads", Key: "parts.bin", UploadId }));
    expect(listed.Parts?.map((p) => [p.PartNumber, p.ETag, p.Size])).toEqual([
      [1, one.ETag, part1.length],
      [2, `"${md5("tail")}"`, 4],
    ]);
    await s3.send(new AbortMultipartUploadCommand({ Bucket: "uploads", Key: "parts.bin", UploadId }));
    await expect(
      s3.send(new ListPartsCommand({ Bucket: "uploads", Key: "parts.bin", UploadId })),
    ).rejects.toMatchObject({
      name: "NoSuchUpload",
    });
    await expect(s3.send(new HeadObjectCommand({ Bucket: "uploads", Key: "parts.bin" }))).rejects.toMatchObject({
      $metadata: { httpStatusCode: 404 },
    });
  });

  it("refuses to complete an upload whose parts (but the last) are under 5 MiB", async () => {
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: "uploads", Key: "small-parts.bin" }));
    const a = await s3.send(
      new UploadPartCommand({ Bucket: "uploads", Key: "small-parts.bin", UploadId, PartNumber: 1, Body: "a" }),
    );
    const b = await s3.send(
      new UploadPartCommand({ Bucket: "uploads", Key: "small-parts.bin", UploadId, PartNumber: 2, Body: "b" }),
    );
    await expect(
      s3.send(
        new CompleteMultipartUploadCommand({
          Bucket: "uploads",
          Key: "small-parts.bin",
          UploadId,
          MultipartUpload: {
            Parts: [
              { PartNumber: 1, ETag: a.ETag },
              { PartNumber: 2, ETag: b.ETag },
            ],
          },
        }),
      ),
    ).rejects.toMatchObject({ name: "EntityTooSmall" });
  });

  it("answers a Range request with 206 and only those bytes", async () => {
    await s3.send(new PutObjectCommand({ Bucket: "uploads", Key: "range.txt", Body: "0123456789" }));
    const got = await s3.send(new GetObjectCommand({ Bucket: "uploads", Key: "range.txt", Range: "bytes=2-5" }));
    expect(got.$metadata.httpStatusCode).toBe(206);
    expect(got.ContentRange).toBe("bytes 2-5/10");
    expect(await bodyText(got)).toBe("2345");
    const tail = await s3.send(new GetObjectCommand({ Bucket: "uploads", Key: "range.txt", Range: "bytes=-3" }));
    expect(await bodyText(tail)).toBe("789");
  });

  it("answers If-None-Match with the current ETag with 304", async () => {
    const { ETag } = await s3.send(new PutObjectCommand({ Bucket: "uploads", Key: "cached.txt", Body: "v1" }));
    await expect(
      s3.send(new GetObjectCommand({ Bucket: "uploads", Key: "cached.txt", IfNoneMatch: ETag })),
    ).rejects.toMatchObject({
      $metadata: { httpStatusCode: 304 },
    });
    const fresh = await s3.send(new GetObjectCommand({ Bucket: "uploads", Key: "cached.txt", IfNoneMatch: '"other"' }));
    expect(await bodyText(fresh)).toBe("v1");
  });

  it("lists with prefix, delimiter, max-keys and continuation tokens", async () => {
    const keys = ["list/a.txt", "list/b/1.ts", "list/b/2.ts", "list/c.txt", "list/d/1.ts", "other.txt"];
    for (const Key of keys) await s3.send(new PutObjectCommand({ Bucket: "uploads", Key, Body: Key }));

    const grouped = await s3.send(new ListObjectsV2Command({ Bucket: "uploads", Prefix: "list/", Delimiter: "/" }));
    expect(grouped.Contents?.map((o) => o.Key)).toEqual(["list/a.txt", "list/c.txt"]);
    expect(grouped.CommonPrefixes?.map((p) => p.Prefix)).toEqual(["list/b/", "list/d/"]);
    expect(grouped.Contents?.[0]?.Size).toBe("list/a.txt".length);

    const pages: string[][] = [];
    let token: string | undefined;
    do {
      const page = await s3.send(
        new ListObjectsV2Command({
          Bucket: "uploads",
          Prefix: "list/",
          Delimiter: "/",
          MaxKeys: 1,
          ContinuationToken: token,
        }),
      );
      pages.push([
        ...(page.Contents ?? []).map((o) => o.Key ?? ""),
        ...(page.CommonPrefixes ?? []).map((p) => p.Prefix ?? ""),
      ]);
      token = page.NextContinuationToken;
      expect(page.IsTruncated).toBe(token !== undefined);
    } while (token);
    expect(pages).toEqual([["list/a.txt"], ["list/b/"], ["list/c.txt"], ["list/d/"]]);

    const flat = await s3.send(new ListObjectsV2Command({ Bucket: "uploads", Prefix: "list/b/" }));
    expect(flat.Contents?.map((o) => o.Key)).toEqual(["list/b/1.ts", "list/b/2.ts"]);
  });

  it("pages the original ListObjects with markers", async () => {
    for (const Key of ["v1/a", "v1/b", "v1/c"])
      await s3.send(new PutObjectCommand({ Bucket: "uploads", Key, Body: Key }));
    const first = await s3.send(new ListObjectsCommand({ Bucket: "uploads", Prefix: "v1/", MaxKeys: 2 }));
    expect(first.Contents?.map((o) => o.Key)).toEqual(["v1/a", "v1/b"]);
    expect(first.IsTruncated).toBe(true);
    const rest = await s3.send(new ListObjectsCommand({ Bucket: "uploads", Prefix: "v1/", Marker: first.NextMarker }));
    expect(rest.Contents?.map((o) => o.Key)).toEqual(["v1/c"]);
    expect(rest.IsTruncated).toBe(false);
  });

  it("copies an object, keeping its headers, and announces it as CopyObject", async () => {
    await s3.send(new PutObjectCommand({ Bucket: "uploads", Key: "src/a.mp4", Body: "abc", ContentType: "video/mp4" }));
    await s3.send(new CopyObjectCommand({ Bucket: "outputs", Key: "copied/a.mp4", CopySource: "uploads/src/a.mp4" }));
    const head = await s3.send(new HeadObjectCommand({ Bucket: "outputs", Key: "copied/a.mp4" }));
    expect(head.ContentType).toBe("video/mp4");
    const { bucket, event } = await eventFor("copied/a.mp4");
    expect(bucket).toBe("outputs");
    expect(event).toMatchObject({ action: "CopyObject", copySource: { bucket: "uploads", object: "src/a.mp4" } });
  });

  it("deletes objects, one or many, and then answers NoSuchKey", async () => {
    for (const Key of ["del/1", "del/2", "del/3"])
      await s3.send(new PutObjectCommand({ Bucket: "uploads", Key, Body: "x" }));
    await s3.send(new DeleteObjectCommand({ Bucket: "uploads", Key: "del/1" }));
    await s3.send(
      new DeleteObjectsCommand({ Bucket: "uploads", Delete: { Objects: [{ Key: "del/2" }, { Key: "del/3" }] } }),
    );
    const left = await s3.send(new ListObjectsV2Command({ Bucket: "uploads", Prefix: "del/" }));
    expect(left.KeyCount).toBe(0);
    await expect(s3.send(new GetObjectCommand({ Bucket: "uploads", Key: "del/1" }))).rejects.toMatchObject({
      name: "NoSuchKey",
      $metadata: { httpStatusCode: 404 },
    });
  });

  it("answers NoSuchBucket for a bucket it does not have", async () => {
    await expect(s3.send(new GetObjectCommand({ Bucket: "nope", Key: "k" }))).rejects.toMatchObject({
      name: "NoSuchBucket",
    });
  });

  it("refuses a client signing with the wrong secret (SignatureDoesNotMatch) or an unknown key id", async () => {
    const wrongSecret = new S3Client({
      endpoint: store.endpoint,
      region,
      forcePathStyle: true,
      credentials: { ...credentials, secretAccessKey: "guess" },
    });
    await expect(
      wrongSecret.send(new PutObjectCommand({ Bucket: "uploads", Key: "x", Body: "x" })),
    ).rejects.toMatchObject({
      name: "SignatureDoesNotMatch",
      $metadata: { httpStatusCode: 403 },
    });
    const unknownKey = new S3Client({
      endpoint: store.endpoint,
      region,
      forcePathStyle: true,
      credentials: { ...credentials, accessKeyId: "someone" },
    });
    await expect(unknownKey.send(new GetObjectCommand({ Bucket: "uploads", Key: "x" }))).rejects.toMatchObject({
      name: "InvalidAccessKeyId",
    });
    wrongSecret.destroy();
    unknownKey.destroy();
  });
});

describe("multipart objects, kept as the parts they were uploaded in", () => {
  const partBytes = 5 * 1024 * 1024;
  /** Distinct bytes everywhere, so a range read from the wrong offset cannot pass. */
  const partsOf = (count: number, tail: number) => [
    ...Array.from({ length: count }, () => randomBytes(partBytes)),
    randomBytes(tail),
  ];

  it("completes an upload of 11 parts by keeping their files, without a MaxListeners warning", async () => {
    const parts = partsOf(10, 1000);
    const before = await dataFiles("uploads");
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(warning.name);
    process.on("warning", onWarning);
    const etag = await uploadInParts("uploads", "mp/eleven.bin", parts).finally(() =>
      process.off("warning", onWarning),
    );
    expect(etag).toBe(multipartEtag(parts));
    expect(warnings).not.toContain("MaxListenersExceededWarning");
    // The parts' own files, not one file the bytes were copied into.
    const added = await newDataFiles("uploads", before);
    const sizes = await Promise.all(added.map(async (f) => (await stat(join(dir, "uploads", f))).size));
    expect(sizes.sort((a, b) => a - b)).toEqual(parts.map((p) => p.length).sort((a, b) => a - b));

    const body = Buffer.concat(parts);
    const got = await s3.send(new GetObjectCommand({ Bucket: "uploads", Key: "mp/eleven.bin" }));
    expect(got.ContentLength).toBe(body.length);
    expect((await bodyBytes(got)).equals(body)).toBe(true);
    const head = await s3.send(new HeadObjectCommand({ Bucket: "uploads", Key: "mp/eleven.bin" }));
    expect(head).toMatchObject({ ContentLength: body.length, ETag: etag });
  });

  it("answers ranges within a part, across part boundaries, open-ended and from the end", async () => {
    const parts = partsOf(3, 1000);
    const body = Buffer.concat(parts);
    const size = body.length;
    await uploadInParts("uploads", "mp/ranges.bin", parts);
    const cases: [range: string, start: number, end: number][] = [
      [`bytes=10-20`, 10, 20],
      [`bytes=${partBytes - 5}-${partBytes + 4}`, partBytes - 5, partBytes + 4],
      [`bytes=${partBytes - 1}-${2 * partBytes}`, partBytes - 1, 2 * partBytes],
      [`bytes=${partBytes}-${2 * partBytes - 1}`, partBytes, 2 * partBytes - 1],
      [`bytes=1-${size - 2}`, 1, size - 2],
      [`bytes=${3 * partBytes - 3}-`, 3 * partBytes - 3, size - 1],
      [`bytes=${size - 2}-${size + 100}`, size - 2, size - 1],
      ["bytes=-10", size - 10, size - 1],
      [`bytes=-${1000 + 7}`, size - 1007, size - 1],
    ];
    for (const [range, start, end] of cases) {
      const got = await getRange("mp/ranges.bin", range);
      expect({ range, status: got.status, contentRange: got.contentRange }).toEqual({
        range,
        status: 206,
        contentRange: `bytes ${start}-${end}/${size}`,
      });
      expect(got.bytes.equals(body.subarray(start, end + 1)), range).toBe(true);
    }
    await expect(
      s3.send(new GetObjectCommand({ Bucket: "uploads", Key: "mp/ranges.bin", Range: `bytes=${size}-` })),
    ).rejects.toMatchObject({ name: "InvalidRange", $metadata: { httpStatusCode: 416 } });
  });

  it("keeps a copy of a multipart object readable after the source is overwritten, then deleted", async () => {
    const parts = partsOf(1, 1000);
    const body = Buffer.concat(parts);
    await uploadInParts("uploads", "mp/source.bin", parts);
    await s3.send(
      new CopyObjectCommand({ Bucket: "outputs", Key: "mp/copy.bin", CopySource: "uploads/mp/source.bin" }),
    );
    await s3.send(
      new CopyObjectCommand({ Bucket: "uploads", Key: "mp/copy.bin", CopySource: "uploads/mp/source.bin" }),
    );
    await s3.send(new PutObjectCommand({ Bucket: "uploads", Key: "mp/source.bin", Body: "replaced" }));
    const afterOverwrite = await s3.send(new GetObjectCommand({ Bucket: "outputs", Key: "mp/copy.bin" }));
    expect((await bodyBytes(afterOverwrite)).equals(body)).toBe(true);
    await s3.send(new DeleteObjectCommand({ Bucket: "uploads", Key: "mp/source.bin" }));
    const afterDelete = await s3.send(new GetObjectCommand({ Bucket: "uploads", Key: "mp/copy.bin" }));
    expect((await bodyBytes(afterDelete)).equals(body)).toBe(true);
    const across = await getRange("mp/copy.bin", `bytes=${partBytes - 2}-${partBytes + 1}`);
    expect(across.bytes.equals(body.subarray(partBytes - 2, partBytes + 2))).toBe(true);
  });

  it("deletes a multipart object, one or in a batch, with every one of its part files", async () => {
    const before = await dataFiles("uploads");
    await uploadInParts("uploads", "mp/del/1", partsOf(1, 10));
    await uploadInParts("uploads", "mp/del/2", partsOf(1, 20));
    expect(await newDataFiles("uploads", before)).toHaveLength(4);
    await s3.send(new DeleteObjectCommand({ Bucket: "uploads", Key: "mp/del/1" }));
    expect(await newDataFiles("uploads", before)).toHaveLength(2);
    await s3.send(new DeleteObjectsCommand({ Bucket: "uploads", Delete: { Objects: [{ Key: "mp/del/2" }] } }));
    expect(await newDataFiles("uploads", before)).toEqual([]);
    await expect(s3.send(new GetObjectCommand({ Bucket: "uploads", Key: "mp/del/2" }))).rejects.toMatchObject({
      name: "NoSuchKey",
    });
  });

  it("overwrites a PUT object with a multipart one and back, leaving no file of the object replaced", async () => {
    const before = await dataFiles("uploads");
    await s3.send(new PutObjectCommand({ Bucket: "uploads", Key: "mp/over.bin", Body: "single" }));
    expect(await newDataFiles("uploads", before)).toHaveLength(1);
    const parts = partsOf(1, 100);
    const etag = await uploadInParts("uploads", "mp/over.bin", parts);
    expect(await newDataFiles("uploads", before)).toHaveLength(2);
    const multipart = await s3.send(new GetObjectCommand({ Bucket: "uploads", Key: "mp/over.bin" }));
    expect(multipart.ETag).toBe(etag);
    expect((await bodyBytes(multipart)).equals(Buffer.concat(parts))).toBe(true);
    await s3.send(new PutObjectCommand({ Bucket: "uploads", Key: "mp/over.bin", Body: "single again" }));
    expect(await newDataFiles("uploads", before)).toHaveLength(1);
    expect(await bodyText(await s3.send(new GetObjectCommand({ Bucket: "uploads", Key: "mp/over.bin" })))).toBe(
      "single again",
    );
  });

  it("makes the object once when its upload is completed twice at the same time", async () => {
    const Key = "mp/twice.bin";
    const parts = partsOf(2, 100);
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: "uploads", Key }));
    const Parts = await Promise.all(
      parts.map(async (Body, i) => {
        const { ETag } = await s3.send(
          new UploadPartCommand({ Bucket: "uploads", Key, UploadId, PartNumber: i + 1, Body }),
        );
        return { PartNumber: i + 1, ETag };
      }),
    );
    // Without retries, so an error of the store's own is seen, not retried away.
    const once = new S3Client({ endpoint: store.endpoint, region, forcePathStyle: true, credentials, maxAttempts: 1 });
    const complete = () =>
      once.send(new CompleteMultipartUploadCommand({ Bucket: "uploads", Key, UploadId, MultipartUpload: { Parts } }));
    const [first, second] = await Promise.allSettled([complete(), complete()]);
    once.destroy();
    const outcomes = [first, second].map((r) =>
      r.status === "fulfilled" ? r.value.ETag : (r.reason as { name: string }).name,
    );
    expect(outcomes).toContain(multipartEtag(parts));
    expect(outcomes.filter((o) => o !== multipartEtag(parts))).toEqual([
      expect.stringMatching(/^(OperationAborted|NoSuchUpload)$/),
    ]);
    const got = await s3.send(new GetObjectCommand({ Bucket: "uploads", Key }));
    expect((await bodyBytes(got)).equals(Buffer.concat(parts))).toBe(true);
  });

  it("never lets a ranged reader see parts of two objects while a multipart object is overwritten", async () => {
    const versions = Array.from({ length: 4 }, () => partsOf(1, 64 * 1024));
    const bodies = new Map(versions.map((parts) => [multipartEtag(parts), Buffer.concat(parts)]));
    await uploadInParts("uploads", "mp/hot.bin", versions[0] ?? []);
    const start = partBytes - 32 * 1024;
    const end = partBytes + 32 * 1024;
    const reads: Promise<{ etag: string | undefined; bytes: Buffer }>[] = [];
    await Promise.all(
      versions.map(async (parts) => {
        await uploadInParts("uploads", "mp/hot.bin", parts);
        for (let r = 0; r < 3; r++) {
          reads.push(
            s3
              .send(new GetObjectCommand({ Bucket: "uploads", Key: "mp/hot.bin", Range: `bytes=${start}-${end}` }))
              .then(async (got) => ({ etag: got.ETag, bytes: await bodyBytes(got) })),
          );
        }
      }),
    );
    for (const read of await Promise.all(reads)) {
      const body = bodies.get(read.etag ?? "");
      expect(body).toBeDefined();
      expect(read.bytes.equals(body?.subarray(start, end + 1) ?? Buffer.alloc(0))).toBe(true);
    }
  });
});

describe("presigned URLs", () => {
  it("accepts a valid presigned PUT from fetch and delivers an R2-shaped event after it", async () => {
    const body = "hello world";
    const url = await presign("PUT", "/uploads/presigned/in.mp4", {
      "content-type": "video/mp4",
      "content-length": "11",
    });
    expect(url.searchParams.get("X-Amz-SignedHeaders")).toBe("content-length;content-type;host");
    const response = await fetch(url, { method: "PUT", body, headers: { "content-type": "video/mp4" } });
    expect(response.status).toBe(200);
    expect(response.headers.get("etag")).toBe(`"${md5(body)}"`);

    const { bucket, event } = await eventFor("presigned/in.mp4");
    expect(bucket).toBe("uploads");
    expect(R2EventNotification.parse(event)).toEqual({
      account: "local",
      action: "PutObject",
      bucket: "uploads",
      object: { key: "presigned/in.mp4", size: 11, eTag: md5(body) },
      eventTime: expect.any(String),
    });
    expect(new Date(event.eventTime).toISOString()).toBe(event.eventTime);
  });

  it("refuses a presigned URL whose signature was tampered with", async () => {
    const url = await presign("PUT", "/uploads/tampered.mp4");
    const signature = url.searchParams.get("X-Amz-Signature") ?? "";
    url.searchParams.set("X-Amz-Signature", `${signature.slice(0, -1)}${signature.endsWith("0") ? "1" : "0"}`);
    const response = await fetch(url, { method: "PUT", body: "x" });
    expect(response.status).toBe(403);
    expect(await response.text()).toContain("<Code>SignatureDoesNotMatch</Code>");
    const head = await s3.send(new HeadObjectCommand({ Bucket: "uploads", Key: "tampered.mp4" })).catch((e) => e);
    expect(head).toMatchObject({ $metadata: { httpStatusCode: 404 } });
  });

  it("refuses a presigned URL used for another key than it signed", async () => {
    const url = await presign("PUT", "/uploads/allowed.mp4");
    const other = new URL(url.toString().replace("/uploads/allowed.mp4", "/uploads/other.mp4"));
    expect((await fetch(other, { method: "PUT", body: "x" })).status).toBe(403);
  });

  it("refuses a presigned URL made with an access key it does not know", async () => {
    const stranger = new AwsClient({ accessKeyId: "stranger", secretAccessKey: "whatever", service: "s3", region });
    const signed = await stranger.sign(`${store.endpoint}/uploads/x.mp4`, { method: "PUT", aws: { signQuery: true } });
    const response = await fetch(signed.url, { method: "PUT", body: "x" });
    expect(response.status).toBe(403);
    expect(await response.text()).toContain("<Code>InvalidAccessKeyId</Code>");
  });

  it("refuses an expired presigned URL as R2 does: 403 ExpiredRequest", async () => {
    const anHourAgo = new Date(Date.now() - 3600_000).toISOString().replace(/[:-]|\.\d{3}/g, "");
    const signed = await aws.sign(`${store.endpoint}/uploads/late.mp4?X-Amz-Expires=900`, {
      method: "PUT",
      aws: { signQuery: true, datetime: anHourAgo },
    });
    const response = await fetch(signed.url, { method: "PUT", body: "x" });
    expect(response.status).toBe(403);
    expect(await response.text()).toContain("<Code>ExpiredRequest</Code>");
  });

  it("refuses a presigned URL valid for more than a week as R2 does: 400 InvalidArgument", async () => {
    const signed = await aws.sign(`${store.endpoint}/uploads/long.mp4?X-Amz-Expires=604801`, {
      method: "PUT",
      aws: { signQuery: true },
    });
    const response = await fetch(signed.url, { method: "PUT", body: "x" });
    expect(response.status).toBe(400);
    const xml = await response.text();
    expect(xml).toContain("<Code>InvalidArgument</Code>");
    expect(xml).toContain("X-Amz-Expires must be less than a week");
  });

  it("refuses a SigV2 or other non-SigV4 Authorization header as R2 does: 401 Unauthorized", async () => {
    for (const authorization of [`AWS ${credentials.accessKeyId}:c2lnbmF0dXJl`, "Bearer some-token"]) {
      const response = await fetch(`${store.endpoint}/uploads/v2.mp4`, { headers: { authorization } });
      expect(response.status).toBe(401);
      expect(await response.text()).toContain("<Code>Unauthorized</Code>");
    }
  });

  it("refuses a presigned PUT whose content-length or content-type differ from what was signed", async () => {
    const url = await presign("PUT", "/uploads/sized.mp4", { "content-type": "video/mp4", "content-length": "5" });
    const longer = await fetch(url, { method: "PUT", body: "123456", headers: { "content-type": "video/mp4" } });
    expect(longer.status).toBe(403);
    const otherType = await fetch(url, { method: "PUT", body: "12345", headers: { "content-type": "text/html" } });
    expect(otherType.status).toBe(403);
    const exact = await fetch(url, { method: "PUT", body: "12345", headers: { "content-type": "video/mp4" } });
    expect(exact.status).toBe(200);
  });

  it("serves presigned GET and PUT URLs made by @aws-sdk/s3-request-presigner", async () => {
    const putUrl = await getSignedUrl(s3, new PutObjectCommand({ Bucket: "uploads", Key: "sdk-presigned.txt" }), {
      expiresIn: 60,
    });
    const put = await fetch(putUrl, { method: "PUT", body: "via presigner" });
    expect(put.status).toBe(200);
    const getUrl = await getSignedUrl(
      s3,
      new GetObjectCommand({ Bucket: "uploads", Key: "sdk-presigned.txt", ResponseContentDisposition: "attachment" }),
      { expiresIn: 60 },
    );
    const got = await fetch(getUrl);
    expect(await got.text()).toBe("via presigner");
    expect(got.headers.get("content-disposition")).toBe("attachment");
  });

  it("checks a signed x-amz-content-sha256 against the bytes that arrived", async () => {
    const claimed = createHash("sha256").update("the body I signed").digest("hex");
    const signed = await aws.sign(`${store.endpoint}/uploads/hashed.txt`, {
      method: "PUT",
      headers: { "x-amz-content-sha256": claimed },
    });
    const response = await fetch(signed.url, { method: "PUT", headers: signed.headers, body: "another body" });
    expect(response.status).toBe(400);
    expect(await response.text()).toContain("XAmzContentSHA256Mismatch");
    const honest = await aws.fetch(`${store.endpoint}/uploads/hashed.txt`, {
      method: "PUT",
      body: "the body I signed",
    });
    expect(honest.status).toBe(200);
  });
});

describe("upload integrity", () => {
  it("refuses a body whose flexible checksum or Content-MD5 does not match, and stores nothing", async () => {
    const wrongCrc = await aws.fetch(`${store.endpoint}/uploads/crc.bin`, {
      method: "PUT",
      headers: { "x-amz-checksum-crc32": "AAAAAA==" },
      body: "not empty",
    });
    expect(wrongCrc.status).toBe(400);
    expect(await wrongCrc.text()).toContain("<Code>BadDigest</Code>");
    const wrongMd5 = await aws.fetch(`${store.endpoint}/uploads/crc.bin`, {
      method: "PUT",
      headers: { "content-md5": createHash("md5").update("other").digest("base64") },
      body: "not empty",
    });
    expect(wrongMd5.status).toBe(400);
    await expect(s3.send(new HeadObjectCommand({ Bucket: "uploads", Key: "crc.bin" }))).rejects.toMatchObject({
      $metadata: { httpStatusCode: 404 },
    });
    const right = await aws.fetch(`${store.endpoint}/uploads/crc.bin`, {
      method: "PUT",
      headers: { "x-amz-checksum-crc32": crc32Base64("not empty") },
      body: "not empty",
    });
    expect(right.status).toBe(200);
  });
});

describe("browsers and players", () => {
  it("lets anyone GET and HEAD objects of a public bucket, with their content type", async () => {
    await s3.send(
      new PutObjectCommand({
        Bucket: "outputs",
        Key: "job-1/hls/master.m3u8",
        Body: "#EXTM3U",
        ContentType: "application/vnd.apple.mpegurl",
      }),
    );
    const response = await fetch(`${store.publicBaseUrl("outputs")}/job-1/hls/master.m3u8`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("application/vnd.apple.mpegurl");
    expect(await response.text()).toBe("#EXTM3U");
    expect((await fetch(`${store.publicBaseUrl("outputs")}/job-1/hls/master.m3u8`, { method: "HEAD" })).status).toBe(
      200,
    );
  });

  it("refuses anonymous reads of a private bucket and anonymous writes anywhere", async () => {
    await s3.send(new PutObjectCommand({ Bucket: "uploads", Key: "private.mp4", Body: "x" }));
    const read = await fetch(`${store.endpoint}/uploads/private.mp4`);
    expect(read.status).toBe(403);
    expect(await read.text()).toContain("<Code>AccessDenied</Code>");
    expect((await fetch(`${store.publicBaseUrl("outputs")}/evil.html`, { method: "PUT", body: "x" })).status).toBe(403);
    expect((await fetch(`${store.publicBaseUrl("outputs")}/job-1/hls/master.m3u8`, { method: "DELETE" })).status).toBe(
      403,
    );
    expect((await fetch(`${store.publicBaseUrl("outputs")}?list-type=2`)).status).toBe(403);
  });
});

describe("R2's limits", () => {
  it("refuses a single PUT over 4.995 GiB with EntityTooLarge before storing a byte", async () => {
    // The AWS SDK declares the length; the store answers from the headers, with the body still coming.
    const neverEnding = new Readable({ read() {} });
    neverEnding.push(Buffer.alloc(64 * 1024));
    const refused = await s3
      .send(
        new PutObjectCommand({
          Bucket: "uploads",
          Key: "huge.bin",
          Body: neverEnding,
          ContentLength: MAX_SINGLE_UPLOAD_BYTES + 1,
        }),
      )
      .catch((error: unknown) => error);
    neverEnding.destroy();
    expect(refused).toMatchObject({ name: "EntityTooLarge", $metadata: { httpStatusCode: 400 } });
    await expect(s3.send(new HeadObjectCommand({ Bucket: "uploads", Key: "huge.bin" }))).rejects.toMatchObject({
      $metadata: { httpStatusCode: 404 },
    });
  });

  it("refuses a part over 4.995 GiB too, storing nothing", async () => {
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: "uploads", Key: "huge-part.bin" }));
    const neverEnding = new Readable({ read() {} });
    neverEnding.push(Buffer.alloc(1024));
    const refused = await s3
      .send(
        new UploadPartCommand({
          Bucket: "uploads",
          Key: "huge-part.bin",
          UploadId,
          PartNumber: 1,
          Body: neverEnding,
          ContentLength: MAX_SINGLE_UPLOAD_BYTES + 1,
        }),
      )
      .catch((error: unknown) => error);
    neverEnding.destroy();
    expect(refused).toMatchObject({ name: "EntityTooLarge" });
    expect((await s3.send(new ListPartsCommand({ Bucket: "uploads", Key: "huge-part.bin", UploadId }))).Parts).toBe(
      undefined,
    );
  });

  it("refuses to complete an upload whose parts but the last differ in size (R2's InvalidPart)", async () => {
    const Key = "uneven.bin";
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: "uploads", Key }));
    const sizes = [6 * 1024 * 1024, 5 * 1024 * 1024, 1];
    const Parts = await Promise.all(
      sizes.map(async (size, i) => {
        const part = await s3.send(
          new UploadPartCommand({ Bucket: "uploads", Key, UploadId, PartNumber: i + 1, Body: Buffer.alloc(size) }),
        );
        return { PartNumber: i + 1, ETag: part.ETag };
      }),
    );
    await expect(
      s3.send(new CompleteMultipartUploadCommand({ Bucket: "uploads", Key, UploadId, MultipartUpload: { Parts } })),
    ).rejects.toMatchObject({ name: "InvalidPart", $metadata: { httpStatusCode: 400 } });
    // The same upload completes from parts of one size (the last smaller).
    const even = await s3.send(
      new UploadPartCommand({ Bucket: "uploads", Key, UploadId, PartNumber: 1, Body: Buffer.alloc(sizes[1] ?? 0) }),
    );
    const done = await s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: "uploads",
        Key,
        UploadId,
        MultipartUpload: { Parts: [{ PartNumber: 1, ETag: even.ETag }, ...Parts.slice(1)] },
      }),
    );
    expect(done.ETag).toMatch(/-3"$/);
  });

  it("refuses a key over 1,024 bytes (UTF-8) with R2's InvalidObjectName", async () => {
    const tooLong = "é".repeat(513); // 513 characters, 1,026 bytes
    await expect(s3.send(new PutObjectCommand({ Bucket: "uploads", Key: tooLong, Body: "x" }))).rejects.toMatchObject({
      name: "InvalidObjectName",
      $metadata: { httpStatusCode: 400 },
    });
    await expect(s3.send(new CreateMultipartUploadCommand({ Bucket: "uploads", Key: tooLong }))).rejects.toMatchObject({
      name: "InvalidObjectName",
    });
    const longest = "é".repeat(512);
    await s3.send(new PutObjectCommand({ Bucket: "uploads", Key: longest, Body: "x" }));
    expect((await s3.send(new HeadObjectCommand({ Bucket: "uploads", Key: longest }))).ContentLength).toBe(1);
  });

  it("refuses custom metadata over 8,192 bytes with MetadataTooLarge", async () => {
    const tooMuch = { owner: "o".repeat(8192 - "owner".length + 1) };
    await expect(
      s3.send(new PutObjectCommand({ Bucket: "uploads", Key: "meta.bin", Body: "x", Metadata: tooMuch })),
    ).rejects.toMatchObject({ name: "MetadataTooLarge", $metadata: { httpStatusCode: 400 } });
    await expect(
      s3.send(new CreateMultipartUploadCommand({ Bucket: "uploads", Key: "meta.bin", Metadata: tooMuch })),
    ).rejects.toMatchObject({ name: "MetadataTooLarge" });
    const atTheLimit = { owner: "o".repeat(8192 - "owner".length) };
    await s3.send(new PutObjectCommand({ Bucket: "uploads", Key: "meta.bin", Body: "x", Metadata: atTheLimit }));
    expect((await s3.send(new HeadObjectCommand({ Bucket: "uploads", Key: "meta.bin" }))).Metadata).toEqual(atTheLimit);
  });
});

describe("CORS, from the same rules the Pulumi program deploys", () => {
  const preflight = (path: string, origin: string, method: string, headers?: string) =>
    fetch(`${store.endpoint}${path}`, {
      method: "OPTIONS",
      headers: {
        origin,
        "access-control-request-method": method,
        ...(headers ? { "access-control-request-headers": headers } : {}),
      },
    });

  it("lets a page on an allowed origin PUT to a presigned URL and read the ETag", async () => {
    // What a browser does: a preflight for the PUT with its content-type, then the PUT itself.
    const allowed = await preflight("/uploads/browser.mp4", appOrigin, "PUT", "content-type");
    expect(allowed.status).toBe(200);
    expect(allowed.headers.get("access-control-allow-origin")).toBe(appOrigin);
    expect(allowed.headers.get("access-control-allow-methods")).toBe("PUT");
    expect(allowed.headers.get("access-control-allow-headers")).toBe("content-type");
    expect(allowed.headers.get("access-control-max-age")).toBe("3600");
    expect(allowed.headers.get("vary")).toContain("Origin");

    const url = await getSignedUrl(
      s3,
      new PutObjectCommand({ Bucket: "uploads", Key: "browser.mp4", ContentType: "video/mp4" }),
      { expiresIn: 60 },
    );
    const put = await fetch(url, {
      method: "PUT",
      body: "x",
      headers: { origin: appOrigin, "content-type": "video/mp4" },
    });
    expect(put.status).toBe(200);
    expect(put.headers.get("access-control-allow-origin")).toBe(appOrigin);
    expect(put.headers.get("access-control-expose-headers")).toBe("ETag");
    expect(put.headers.get("etag")).toBe(`"${md5("x")}"`);
  });

  it("gives a page on another origin no CORS headers and refuses its preflight with 403", async () => {
    const refused = await preflight("/uploads/browser.mp4", "https://evil.example", "PUT", "content-type");
    expect(refused.status).toBe(403);
    expect(await refused.text()).toContain("<Code>AccessForbidden</Code>");
    expect(refused.headers.get("access-control-allow-origin")).toBeNull();
    // Without a preflight (a simple request) the store still answers; the browser hides the answer.
    const url = await presign("PUT", "/uploads/elsewhere.mp4");
    const put = await fetch(url, { method: "PUT", body: "x", headers: { origin: "https://evil.example" } });
    expect(put.status).toBe(200);
    expect(put.headers.get("access-control-allow-origin")).toBeNull();
    expect(put.headers.get("access-control-expose-headers")).toBeNull();
    // A request without an Origin (not from a browser) gets none either.
    const plain = await fetch(await presign("PUT", "/uploads/plain.mp4"), { method: "PUT", body: "x" });
    expect(plain.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("refuses a preflight for a method or header the bucket's rule does not allow", async () => {
    expect((await preflight("/uploads/browser.mp4", appOrigin, "DELETE")).status).toBe(403);
    expect((await preflight("/uploads/browser.mp4", appOrigin, "GET")).status).toBe(403);
    expect((await preflight("/uploads/browser.mp4", appOrigin, "PUT", "content-type, x-amz-meta-owner")).status).toBe(
      403,
    );
    expect((await preflight("/outputs/job/master.m3u8", appOrigin, "PUT", "content-type")).status).toBe(403);
    const missing = await fetch(`${store.endpoint}/uploads/browser.mp4`, { method: "OPTIONS" });
    expect(missing.status).toBe(400);
  });

  it("lets a player on an allowed origin GET outputs with Range and read Content-Range", async () => {
    await s3.send(new PutObjectCommand({ Bucket: "outputs", Key: "job-2/video.mp4", Body: "0123456789" }));
    const allowed = await preflight("/outputs/job-2/video.mp4", appOrigin, "GET", "range");
    expect(allowed.status).toBe(200);
    expect(allowed.headers.get("access-control-allow-methods")).toBe("GET, HEAD");
    const got = await fetch(`${store.publicBaseUrl("outputs")}/job-2/video.mp4`, {
      headers: { origin: appOrigin, range: "bytes=2-4" },
    });
    expect(got.status).toBe(206);
    expect(got.headers.get("access-control-allow-origin")).toBe(appOrigin);
    expect(got.headers.get("access-control-expose-headers")).toBe("Content-Length, Content-Range, ETag");
    expect(await got.text()).toBe("234");
    const elsewhere = await fetch(`${store.publicBaseUrl("outputs")}/job-2/video.mp4`, {
      headers: { origin: "https://evil.example" },
    });
    expect(elsewhere.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("adds the CORS headers to an error answer for an allowed origin, so the page can read it", async () => {
    const url = await presign("PUT", "/uploads/tampered-in-browser.mp4");
    url.searchParams.set("X-Amz-Signature", "0".repeat(64));
    const refused = await fetch(url, { method: "PUT", body: "x", headers: { origin: appOrigin } });
    expect(refused.status).toBe(403);
    expect(refused.headers.get("access-control-allow-origin")).toBe(appOrigin);
    expect(await refused.text()).toContain("<Code>SignatureDoesNotMatch</Code>");
  });
});

describe("durability and faults", () => {
  it("keeps objects across a restart on the same dir", async () => {
    await s3.send(
      new PutObjectCommand({ Bucket: "uploads", Key: "kept.txt", Body: "still here", ContentType: "text/plain" }),
    );
    await restart();
    const got = await s3.send(new GetObjectCommand({ Bucket: "uploads", Key: "kept.txt" }));
    expect(await bodyText(got)).toBe("still here");
    expect(got.ContentType).toBe("text/plain");
  });

  it("keeps a multipart object, still in its parts, across a restart", async () => {
    const parts = [randomBytes(5 * 1024 * 1024), randomBytes(5 * 1024 * 1024), randomBytes(10)];
    const body = Buffer.concat(parts);
    const etag = await uploadInParts("uploads", "kept-in-parts.bin", parts);
    const files = await dataFiles("uploads");
    await restart();
    expect(await dataFiles("uploads")).toEqual(files);
    const got = await s3.send(new GetObjectCommand({ Bucket: "uploads", Key: "kept-in-parts.bin" }));
    expect(got.ETag).toBe(etag);
    expect((await bodyBytes(got)).equals(body)).toBe(true);
    const across = await getRange("kept-in-parts.bin", `bytes=${body.length - 12}-`);
    expect(across.bytes.equals(body.subarray(body.length - 12))).toBe(true);
  });

  it("loads an object stored before multipart objects kept their parts (metadata naming one dataFile)", async () => {
    const key = "before/clip.mp4";
    const body = randomBytes(100_000);
    const id = createHash("sha256").update(key).digest("hex");
    const dataFile = `${id}.${randomUUID()}.data`;
    // What a store of the previous layout left on disk.
    await restart(async () => {
      await writeFile(join(dir, "uploads", dataFile), body);
      await writeFile(
        join(dir, "uploads", `${id}.json`),
        JSON.stringify({
          contentType: "video/mp4",
          userMetadata: { jobid: "job-0" },
          size: body.length,
          etag: md5(body),
          key,
          lastModified: new Date().toISOString(),
          dataFile,
        }),
      );
    });
    const got = await s3.send(new GetObjectCommand({ Bucket: "uploads", Key: key }));
    expect(got).toMatchObject({ ETag: `"${md5(body)}"`, ContentType: "video/mp4", Metadata: { jobid: "job-0" } });
    expect((await bodyBytes(got)).equals(body)).toBe(true);
    expect((await getRange(key, "bytes=-5")).bytes.equals(body.subarray(-5))).toBe(true);
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: "uploads", Prefix: "before/" }));
    expect(listed.Contents?.map((o) => [o.Key, o.Size])).toEqual([[key, body.length]]);
    await s3.send(new PutObjectCommand({ Bucket: "uploads", Key: key, Body: "newer" }));
    expect(await dataFiles("uploads")).not.toContain(dataFile);
  });

  it("never lets a reader see half an object while it is being overwritten", async () => {
    const versions = Array.from({ length: 8 }, (_, i) => Buffer.alloc(200_000 + i * 1000, String(i)));
    const known = new Set(versions.map((v) => md5(v)));
    await s3.send(new PutObjectCommand({ Bucket: "uploads", Key: "hot.bin", Body: versions[0] }));
    const reads: Promise<{ etag: string | undefined; bodyMd5: string }>[] = [];
    const writes = versions.map(async (Body, i) => {
      await s3.send(new PutObjectCommand({ Bucket: "uploads", Key: "hot.bin", Body }));
      for (let r = 0; r < 3; r++) {
        reads.push(
          s3.send(new GetObjectCommand({ Bucket: "uploads", Key: "hot.bin" })).then(async (got) => ({
            etag: got.ETag,
            bodyMd5: md5(await bodyBytes(got)),
          })),
        );
      }
      return i;
    });
    await Promise.all(writes);
    for (const read of await Promise.all(reads)) {
      expect(known.has(read.bodyMd5)).toBe(true);
      expect(read.etag).toBe(`"${read.bodyMd5}"`);
    }
  });

  it("retries an event delivery whose consumer threw", async () => {
    failNextDelivery = true;
    await s3.send(new PutObjectCommand({ Bucket: "uploads", Key: "retried.txt", Body: "x" }));
    const { event } = await eventFor("retried.txt");
    expect(event.action).toBe("PutObject");
    expect(events.filter((e) => e.event.object.key === "retried.txt")).toHaveLength(1);
  });

  it("injects InternalError faults only for the operations asked for", async () => {
    await s3.send(new PutObjectCommand({ Bucket: "uploads", Key: "flaky.txt", Body: "x" }));
    store.setFaults({ failRate: 1, ops: ["get"] });
    const noRetries = new AwsClient({ ...credentials, service: "s3", region, retries: 0 });
    const failing = await noRetries.fetch(`${store.endpoint}/uploads/flaky.txt`);
    expect(failing.status).toBe(500);
    expect(await failing.text()).toContain("<Code>InternalError</Code>");
    const put = await fetch(await presign("PUT", "/uploads/flaky.txt"), { method: "PUT", body: "y" });
    expect(put.status).toBe(200);
    store.setFaults(undefined);
    expect(await (await aws.fetch(`${store.endpoint}/uploads/flaky.txt`)).text()).toBe("y");
  });
});

describe("aws-chunked uploads signed chunk by chunk (STREAMING-AWS4-HMAC-SHA256-PAYLOAD)", () => {
  it("verifies the chunk signature chain of the example in the AWS SigV4 streaming docs", async () => {
    // https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html (66560 bytes of "a", 64 KiB chunks)
    const sign = chunkSigner(
      "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
      { date: "20130524", region: "us-east-1", service: "s3", terminal: "aws4_request" },
      "20130524T000000Z",
    );
    const seedSignature = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
    const framed = Buffer.concat([
      Buffer.from("10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n"),
      Buffer.alloc(65536, "a"),
      Buffer.from("\r\n400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n"),
      Buffer.alloc(1024, "a"),
      Buffer.from("\r\n0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n"),
    ]);
    // Delivered in odd-sized pieces, as a socket would.
    const pieces = Array.from({ length: Math.ceil(framed.length / 7001) }, (_, i) =>
      framed.subarray(i * 7001, (i + 1) * 7001),
    );
    const decoded: Buffer[] = [];
    for await (const chunk of decodeAwsChunked(Readable.from(pieces), { seedSignature, sign }).bytes)
      decoded.push(chunk);
    expect(Buffer.concat(decoded).equals(Buffer.alloc(66560, "a"))).toBe(true);

    const tampered = Buffer.from(framed);
    tampered[200] = "b".charCodeAt(0);
    const consume = async () => {
      for await (const _ of decodeAwsChunked(Readable.from([tampered]), { seedSignature, sign }).bytes);
    };
    await expect(consume()).rejects.toMatchObject({ code: "SignatureDoesNotMatch" });
  });

  async function signedStreamingPut(key: string, data: Buffer, tamper = false) {
    const port = Number(new URL(store.endpoint).port);
    const chunkSize = 64 * 1024;
    const chunks = Array.from({ length: Math.ceil(data.length / chunkSize) }, (_, i) =>
      data.subarray(i * chunkSize, (i + 1) * chunkSize),
    );
    const frameLength = (size: number) => size.toString(16).length + ";chunk-signature=".length + 64 + 2 + size + 2;
    const contentLength = chunks.reduce((sum, c) => sum + frameLength(c.length), 0) + frameLength(0);
    const signer = new SignatureV4({ credentials, region, service: "s3", sha256: Sha256, uriEscapePath: false });
    const signed = await signer.sign(
      new HttpRequest({
        method: "PUT",
        protocol: "http:",
        hostname: "127.0.0.1",
        port,
        path: `/uploads/${key}`,
        headers: {
          host: `127.0.0.1:${port}`,
          "content-encoding": "aws-chunked",
          "content-length": String(contentLength),
          "x-amz-decoded-content-length": String(data.length),
          "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        },
      }),
    );
    const amzDate = signed.headers["x-amz-date"] ?? "";
    const sign = chunkSigner(
      credentials.secretAccessKey,
      { date: amzDate.slice(0, 8), region, service: "s3", terminal: "aws4_request" },
      amzDate,
    );
    let previous = /Signature=([0-9a-f]{64})/.exec(signed.headers.authorization ?? "")?.[1] ?? "";
    const frames = [...chunks, Buffer.alloc(0)].map((chunk) => {
      previous = sign(previous, createHash("sha256").update(chunk).digest("hex"));
      const sent = tamper && chunk.length > 0 ? Buffer.from(chunk).fill(0, 0, 1) : chunk;
      return Buffer.concat([
        Buffer.from(`${chunk.length.toString(16)};chunk-signature=${previous}\r\n`),
        sent,
        Buffer.from("\r\n"),
      ]);
    });
    return new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(
        { host: "127.0.0.1", port, method: "PUT", path: `/uploads/${key}`, headers: signed.headers },
        (res) => {
          let body = "";
          res.on("data", (c) => {
            body += c;
          });
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on("error", reject);
      req.end(Buffer.concat(frames));
    });
  }

  it("stores the bytes of an upload whose every chunk is signed", async () => {
    const data = randomBytes(150_000);
    const response = await signedStreamingPut("signed-stream.bin", data);
    expect(response.status).toBe(200);
    const got = await s3.send(new GetObjectCommand({ Bucket: "uploads", Key: "signed-stream.bin" }));
    expect((await bodyBytes(got)).equals(data)).toBe(true);
  });

  it("refuses an upload with a chunk altered after signing, and stores nothing", async () => {
    const response = await signedStreamingPut("altered-stream.bin", randomBytes(150_000).fill(1, 0, 1), true);
    expect(response.status).toBe(403);
    expect(response.body).toContain("SignatureDoesNotMatch");
    await expect(
      s3.send(new HeadObjectCommand({ Bucket: "uploads", Key: "altered-stream.bin" })),
    ).rejects.toMatchObject({
      $metadata: { httpStatusCode: 404 },
    });
  });
});
