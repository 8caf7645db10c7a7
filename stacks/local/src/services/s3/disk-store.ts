/**
 * Objects on disk: `<dir>/<bucket>/<sha256(key)>.json` holds an object's metadata and names its
 * data files, in order: one for a single PUT, the parts themselves for a multipart upload (moved,
 * never copied, as R2 and S3 keep them). Bytes are streamed to a temp file first and the metadata
 * file is renamed into place last, so a reader sees the old object or the new one, never half of
 * one. An in-memory index (rebuilt from the metadata files on start) answers HEAD and LIST.
 */
import { createHash, randomUUID } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, open, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
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
  /** The object's bytes are these files' bytes, one after another. */
  files: DataFile[];
}

/** A file in the bucket's directory holding `size` of an object's bytes. */
export interface DataFile {
  file: string;
  size: number;
}

/** Metadata written before multipart objects kept their parts: one data file held every byte. */
type SingleFileObject = Omit<StoredObject, "files"> & { dataFile: string };

/** Bytes of an object, both ends included (as `Range: bytes=start-end` counts them). */
export interface ByteRange {
  start: number;
  end: number;
}

/** An object whose bytes are already open: an overwrite or delete after opening cannot take them away. */
export interface OpenObject {
  object: StoredObject;
  /** The bytes asked for when opening, in order. */
  bytes(): AsyncIterable<Buffer>;
  close(): Promise<void>;
}

/** Where a data file comes from when an object is committed: a temp file, or a part of its upload. */
interface Incoming {
  path: string;
  size: number;
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
  /** Uploads whose parts are being moved into their object. */
  private readonly completing = new Set<string>();

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
      const meta = JSON.parse(await readFile(join(bucketDir, file), "utf8")) as StoredObject | SingleFileObject;
      objects.set(meta.key, withFiles(meta));
    }
    // Data files no metadata points at are leftovers of a commit or an overwrite interrupted by a crash.
    const referenced = new Set([...objects.values()].flatMap((o) => o.files.map((f) => f.file)));
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
   * The current object with the files holding the bytes `wanted` picks already open (only those: a
   * HEAD opens none, a ranged GET only the parts it spans). An overwrite committed right after the
   * lookup deletes the old files, so a lookup whose files are gone is simply repeated.
   */
  async open(
    bucket: string,
    key: string,
    wanted: (object: StoredObject) => ByteRange | null = wholeObject,
  ): Promise<OpenObject> {
    for (let attempt = 1; ; attempt++) {
      const object = this.head(bucket, key);
      const range = wanted(object);
      try {
        return await openPieces(join(this.dir, bucket), object, range ? piecesOf(object.files, range) : []);
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
      const fields = { ...headers, size: written.size, etag: written.md5Hex };
      return await this.commit(bucket, key, fields, [{ path: tmp, size: written.size }]);
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
    await this.removeFiles(bucket, object);
  }

  /**
   * Moves the incoming files into the bucket's directory under new names (no reader knows them
   * yet), then renames the metadata over the old object's: that one rename is the switch from the
   * old object to the new. A commit that fails moves the files back to where they came from.
   */
  private async commit(
    bucket: string,
    key: string,
    fields: ObjectHeaders & { size: number; etag: string },
    incoming: Incoming[],
  ): Promise<StoredObject> {
    const objects = this.objects(bucket);
    const name = `${keyId(key)}.${randomUUID()}`;
    const fileName = (i: number) => `${name}.${i + 1}.data`;
    const files = incoming.map(({ size }, i) => ({ file: fileName(i), size }));
    const object: StoredObject = { ...fields, key, lastModified: new Date().toISOString(), files };
    const moves = incoming.map(({ path }, i) => ({ from: path, to: join(this.dir, bucket, fileName(i)) }));
    await renameAll(moves);
    const metaTmp = this.tempPath();
    try {
      await writeFile(metaTmp, JSON.stringify(object));
      await rename(metaTmp, this.metaPath(bucket, key));
    } catch (error) {
      await rm(metaTmp, { force: true });
      await renameAll(moves.map(({ from, to }) => ({ from: to, to: from }))).catch(() => {});
      throw error;
    }
    const previous = objects.get(key);
    objects.set(key, object);
    if (previous) await this.removeFiles(bucket, previous);
    return object;
  }

  private async removeFiles(bucket: string, object: StoredObject) {
    await Promise.all(object.files.map(({ file }) => rm(join(this.dir, bucket, file), { force: true })));
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

  /**
   * Makes the chosen parts the object, in their order, by moving their files (no byte is copied);
   * its ETag is md5 of the parts' binary md5s, then `-N`.
   */
  async completeUpload(
    bucket: string,
    key: string,
    uploadId: string,
    chosen: { partNumber: number; etag: string }[],
  ): Promise<StoredObject> {
    // A second complete of the upload (a client retrying too soon) would find parts moved away.
    if (this.completing.has(uploadId)) {
      throw new S3Error(
        409,
        "OperationAborted",
        "A conflicting conditional operation is currently in progress against this resource. Try again.",
      );
    }
    this.completing.add(uploadId);
    try {
      const upload = await this.upload(bucket, key, uploadId);
      const parts = chosenParts(chosen, await this.listParts(bucket, key, uploadId));
      const md5s = Buffer.concat(parts.map((p) => Buffer.from(p.etag, "hex")));
      const etag = `${createHash("md5").update(md5s).digest("hex")}-${parts.length}`;
      const size = parts.reduce((sum, p) => sum + p.size, 0);
      const dir = this.uploadDir(uploadId);
      const incoming = parts.map((p) => ({ path: join(dir, `part-${p.partNumber}`), size: p.size }));
      const object = await this.commit(bucket, key, { ...upload.headers, size, etag }, incoming);
      await rm(dir, { recursive: true, force: true });
      return object;
    } finally {
      this.completing.delete(uploadId);
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

const wholeObject = (object: StoredObject): ByteRange => ({ start: 0, end: object.size - 1 });

function withFiles(meta: StoredObject | SingleFileObject): StoredObject {
  if (!("dataFile" in meta)) return meta;
  const { dataFile, ...object } = meta;
  return { ...object, files: [{ file: dataFile, size: meta.size }] };
}

/** The parts a complete names, checked as R2 checks them, in the order they make the object. */
function chosenParts(chosen: { partNumber: number; etag: string }[], uploaded: StoredPart[]): StoredPart[] {
  if (chosen.length === 0) {
    throw new S3Error(400, "MalformedXML", "You must specify at least one part.");
  }
  const stored = new Map(uploaded.map((p) => [p.partNumber, p]));
  return chosen.map(({ partNumber, etag }, i) => {
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
}

/** Renames every `from` to its `to`, or (putting back those it did) none. */
async function renameAll(moves: { from: string; to: string }[]): Promise<void> {
  const results = await Promise.allSettled(moves.map(({ from, to }) => rename(from, to)));
  const failed = results.find((r) => r.status === "rejected");
  if (!failed) return;
  const done = moves.filter((_, i) => results[i]?.status === "fulfilled");
  await Promise.all(done.map(({ from, to }) => rename(to, from).catch(() => {})));
  throw failed.reason;
}

/** The stretches of the object's files that hold `range`, in order. */
function piecesOf(files: DataFile[], range: ByteRange): { file: string; start: number; end: number }[] {
  const pieces: { file: string; start: number; end: number }[] = [];
  let offset = 0;
  for (const { file, size } of files) {
    const start = Math.max(range.start - offset, 0);
    const end = Math.min(range.end - offset, size - 1);
    if (start <= end) pieces.push({ file, start, end });
    offset += size;
  }
  return pieces;
}

/** Opens every piece's file before any byte is read, so the bytes are the ones the lookup saw. */
async function openPieces(
  bucketDir: string,
  object: StoredObject,
  pieces: { file: string; start: number; end: number }[],
): Promise<OpenObject> {
  const opened = await Promise.allSettled(
    pieces.map(async (piece) => ({ ...piece, handle: await open(join(bucketDir, piece.file), "r") })),
  );
  const ready = opened.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  const close = async () => void (await Promise.all(ready.map(({ handle }) => handle.close().catch(() => {}))));
  const failed = opened.find((r) => r.status === "rejected");
  if (failed) {
    await close();
    throw failed.reason;
  }
  async function* bytes(): AsyncIterable<Buffer> {
    for (const { handle, start, end } of ready) yield* handle.createReadStream({ start, end, autoClose: false });
  }
  return { object, bytes, close };
}

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
