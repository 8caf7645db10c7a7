/**
 * Objects on disk: `<dir>/<bucket>/<sha256(key)>.json` holds an object's metadata and names its
 * data file. Bytes are streamed to a temp file first and the metadata file is renamed into place
 * last, so a reader sees the old object or the new one, never half of one. An in-memory index
 * (rebuilt from the metadata files on start) answers HEAD and LIST.
 */
import { createHash, randomUUID } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { type FileHandle, mkdir, open, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { MIN_PART_BYTES } from "@tcoder/worker/contract/object-store.ts";
import { noSuchBucket, noSuchKey, noSuchUpload, S3Error } from "./errors.ts";

/** Headers stored with an object and served back on GET/HEAD. */
export interface ObjectHeaders {
  contentType?: string;
  cacheControl?: string;
  contentDisposition?: string;
  contentEncoding?: string;
  contentLanguage?: string;
  /** `x-amz-meta-*` without the prefix. */
  userMetadata: Record<string, string>;
}

export interface StoredObject extends ObjectHeaders {
  key: string;
  size: number;
  /** Unquoted: md5 hex for a single PUT, `md5(part md5s)-N` for a multipart upload. */
  etag: string;
  lastModified: string;
  dataFile: string;
}

export interface StoredPart {
  partNumber: number;
  size: number;
  etag: string;
  lastModified: string;
}

interface Upload {
  uploadId: string;
  bucket: string;
  key: string;
  headers: ObjectHeaders;
  initiated: string;
}

export interface WrittenBytes {
  size: number;
  md5Hex: string;
}

/** Runs after the bytes are on disk, before they become visible; throwing discards them. */
export type BeforeCommit = (written: WrittenBytes) => void | Promise<void>;

export class DiskStore {
  private readonly index = new Map<string, Map<string, StoredObject>>();

  private constructor(private readonly dir: string) {}

  static async open(dir: string, buckets: readonly string[]): Promise<DiskStore> {
    const store = new DiskStore(dir);
    await mkdir(join(dir, ".tmp"), { recursive: true });
    await mkdir(join(dir, ".uploads"), { recursive: true });
    for (const bucket of buckets) await store.loadBucket(bucket);
    return store;
  }

  private async loadBucket(bucket: string) {
    const bucketDir = join(this.dir, bucket);
    await mkdir(bucketDir, { recursive: true });
    const objects = new Map<string, StoredObject>();
    const files = await readdir(bucketDir);
    for (const file of files.filter((f) => f.endsWith(".json"))) {
      const meta = JSON.parse(await readFile(join(bucketDir, file), "utf8")) as StoredObject;
      objects.set(meta.key, meta);
    }
    // Data files no metadata points at are leftovers of an overwrite interrupted by a crash.
    const referenced = new Set([...objects.values()].map((o) => o.dataFile));
    for (const file of files.filter((f) => f.endsWith(".data") && !referenced.has(f))) {
      await rm(join(bucketDir, file), { force: true });
    }
    this.index.set(bucket, objects);
  }

  hasBucket(bucket: string): boolean {
    return this.index.has(bucket);
  }

  buckets(): string[] {
    return [...this.index.keys()];
  }

  private objects(bucket: string): Map<string, StoredObject> {
    const objects = this.index.get(bucket);
    if (!objects) throw noSuchBucket(bucket);
    return objects;
  }

  head(bucket: string, key: string): StoredObject {
    const object = this.objects(bucket).get(key);
    if (!object) throw noSuchKey(key);
    return object;
  }

  /** Every object of the bucket, sorted by key (S3 lists in UTF-8 binary order). */
  list(bucket: string): StoredObject[] {
    return [...this.objects(bucket).values()].sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));
  }

  /**
   * The current object with its data file already open: an overwrite committed right after the
   * lookup deletes the old data file, so a lookup whose file is gone is simply repeated.
   */
  async open(bucket: string, key: string): Promise<{ object: StoredObject; file: FileHandle }> {
    for (let attempt = 1; ; attempt++) {
      const object = this.head(bucket, key);
      try {
        return { object, file: await open(join(this.dir, bucket, object.dataFile), "r") };
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "ENOENT" || attempt === 3) throw error;
      }
    }
  }

  async put(
    bucket: string,
    key: string,
    source: AsyncIterable<Buffer>,
    headers: ObjectHeaders,
    beforeCommit?: BeforeCommit,
  ): Promise<StoredObject> {
    this.objects(bucket);
    const tmp = this.tempPath();
    try {
      const written = await writeHashed(source, tmp);
      await beforeCommit?.(written);
      return await this.commit(bucket, key, tmp, { ...headers, size: written.size, etag: written.md5Hex });
    } finally {
      await rm(tmp, { force: true });
    }
  }

  async delete(bucket: string, key: string): Promise<void> {
    const objects = this.objects(bucket);
    const object = objects.get(key);
    if (!object) return;
    objects.delete(key);
    await rm(this.metaPath(bucket, key), { force: true });
    await rm(join(this.dir, bucket, object.dataFile), { force: true });
  }

  private async commit(
    bucket: string,
    key: string,
    tmp: string,
    fields: ObjectHeaders & { size: number; etag: string },
  ): Promise<StoredObject> {
    const objects = this.objects(bucket);
    const object: StoredObject = {
      ...fields,
      key,
      lastModified: new Date().toISOString(),
      dataFile: `${keyId(key)}.${randomUUID()}.data`,
    };
    await rename(tmp, join(this.dir, bucket, object.dataFile));
    const metaTmp = this.tempPath();
    await writeFile(metaTmp, JSON.stringify(object));
    await rename(metaTmp, this.metaPath(bucket, key));
    const previous = objects.get(key);
    objects.set(key, object);
    if (previous) await rm(join(this.dir, bucket, previous.dataFile), { force: true });
    return object;
  }

  async createUpload(bucket: string, key: string, headers: ObjectHeaders): Promise<string> {
    this.objects(bucket);
    const uploadId = randomUUID().replace(/-/g, "");
    const upload: Upload = { uploadId, bucket, key, headers, initiated: new Date().toISOString() };
    await mkdir(this.uploadDir(uploadId), { recursive: true });
    await writeFile(join(this.uploadDir(uploadId), "upload.json"), JSON.stringify(upload));
    return uploadId;
  }

  private async upload(bucket: string, key: string, uploadId: string): Promise<Upload> {
    if (!/^[0-9a-f]{32}$/.test(uploadId)) throw noSuchUpload(uploadId);
    const upload = await readFile(join(this.uploadDir(uploadId), "upload.json"), "utf8").then(
      (text) => JSON.parse(text) as Upload,
      () => null,
    );
    if (!upload || upload.bucket !== bucket || upload.key !== key) throw noSuchUpload(uploadId);
    return upload;
  }

  async putPart(
    bucket: string,
    key: string,
    uploadId: string,
    partNumber: number,
    source: AsyncIterable<Buffer>,
    beforeCommit?: BeforeCommit,
  ): Promise<StoredPart> {
    await this.upload(bucket, key, uploadId);
    if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > 10_000) {
      throw new S3Error(400, "InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive");
    }
    const tmp = this.tempPath();
    try {
      const written = await writeHashed(source, tmp);
      await beforeCommit?.(written);
      const part: StoredPart = {
        partNumber,
        size: written.size,
        etag: written.md5Hex,
        lastModified: new Date().toISOString(),
      };
      const dir = this.uploadDir(uploadId);
      await rename(tmp, join(dir, `part-${partNumber}`));
      await writeFile(join(dir, `part-${partNumber}.json`), JSON.stringify(part));
      return part;
    } finally {
      await rm(tmp, { force: true });
    }
  }

  async listParts(bucket: string, key: string, uploadId: string): Promise<StoredPart[]> {
    await this.upload(bucket, key, uploadId);
    const dir = this.uploadDir(uploadId);
    const files = (await readdir(dir)).filter((f) => /^part-\d+\.json$/.test(f));
    const parts = await Promise.all(
      files.map(async (f) => JSON.parse(await readFile(join(dir, f), "utf8")) as StoredPart),
    );
    return parts.sort((a, b) => a.partNumber - b.partNumber);
  }

  /** Joins the chosen parts into the object; its ETag is md5 of the parts' binary md5s, then `-N`. */
  async completeUpload(
    bucket: string,
    key: string,
    uploadId: string,
    chosen: { partNumber: number; etag: string }[],
  ): Promise<StoredObject> {
    const upload = await this.upload(bucket, key, uploadId);
    if (chosen.length === 0) {
      throw new S3Error(400, "MalformedXML", "You must specify at least one part.");
    }
    const stored = new Map((await this.listParts(bucket, key, uploadId)).map((p) => [p.partNumber, p]));
    const parts = chosen.map(({ partNumber, etag }, i) => {
      const part = stored.get(partNumber);
      if (!part || part.etag !== etag.replace(/"/g, "")) {
        throw new S3Error(400, "InvalidPart", "One or more of the specified parts could not be found.");
      }
      if (i > 0 && partNumber <= (chosen[i - 1]?.partNumber ?? 0)) {
        throw new S3Error(400, "InvalidPartOrder", "The list of parts was not in ascending order.");
      }
      if (i < chosen.length - 1 && part.size < MIN_PART_BYTES) {
        throw new S3Error(400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size");
      }
      // R2, unlike S3, wants every part but the last the same size (its error 10048).
      const first = stored.get(chosen[0]?.partNumber ?? 0);
      if (i < chosen.length - 1 && part.size !== first?.size) {
        throw new S3Error(400, "InvalidPart", "All non-trailing parts must have the same size.");
      }
      return part;
    });
    const dir = this.uploadDir(uploadId);
    const tmp = this.tempPath();
    try {
      const out = createWriteStream(tmp);
      for (const part of parts) {
        await pipeline(createReadStream(join(dir, `part-${part.partNumber}`)), out, { end: false });
      }
      await new Promise<void>((done, fail) => out.end((error?: Error | null) => (error ? fail(error) : done())));
      const md5s = Buffer.concat(parts.map((p) => Buffer.from(p.etag, "hex")));
      const etag = `${createHash("md5").update(md5s).digest("hex")}-${parts.length}`;
      const size = parts.reduce((sum, p) => sum + p.size, 0);
      const object = await this.commit(bucket, key, tmp, { ...upload.headers, size, etag });
      await rm(dir, { recursive: true, force: true });
      return object;
    } finally {
      await rm(tmp, { force: true });
    }
  }

  async abortUpload(bucket: string, key: string, uploadId: string): Promise<void> {
    await this.upload(bucket, key, uploadId);
    await rm(this.uploadDir(uploadId), { recursive: true, force: true });
  }

  private tempPath() {
    return join(this.dir, ".tmp", randomUUID());
  }

  private uploadDir(uploadId: string) {
    return join(this.dir, ".uploads", uploadId);
  }

  private metaPath(bucket: string, key: string) {
    return join(this.dir, bucket, `${keyId(key)}.json`);
  }
}

const keyId = (key: string) => createHash("sha256").update(key).digest("hex");

async function writeHashed(source: AsyncIterable<Buffer>, path: string): Promise<WrittenBytes> {
  const md5 = createHash("md5");
  let size = 0;
  async function* hashing() {
    for await (const chunk of source) {
      md5.update(chunk);
      size += chunk.length;
      yield chunk;
    }
  }
  await pipeline(hashing(), createWriteStream(path));
  return { size, md5Hex: md5.digest("hex") };
}
