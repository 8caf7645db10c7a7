/**
 * Downloading an object to disk against the local S3 store: a small object takes one request; a
 * large one arrives byte-identical from ranged GETs, a bounded number at a time, each conditional on
 * the first answer's ETag; an object replaced mid-download fails it instead of mixing versions; a
 * part cut short is fetched again by itself; an abort leaves no request running; a missing object
 * is an ObjectMissingError. Faults are injected on the client side (a middleware that tampers with
 * the answers), since the store's own faults are random and the SDK retries them before we see them.
 */
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { pipeline, type Readable, Transform } from "node:stream";
import {
  type GetObjectCommandInput,
  type GetObjectCommandOutput,
  HeadObjectCommand,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { describe, expect, it } from "vitest";
import { downloadToFile, ObjectChangedError, ObjectMissingError } from "../src/storage/s3.ts";
import { useLocalStore } from "./support/local-store.ts";

const BUCKET = "inputs";
const MiB = 1024 * 1024;

const local = useLocalStore("download", [BUCKET]);
let n = 0;

async function putObject(bytes: Buffer, key = `objects/${++n}`): Promise<{ key: string; etag: string }> {
  await local.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: bytes }));
  const head = await local.s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
  return { key, etag: head.ETag ?? "" };
}

const target = () => join(local.dir, `download-${++n}`);

/** What one GetObject asked for, in the order they were sent. */
interface SentGet {
  range: string | undefined;
  ifMatch: string | undefined;
}

interface ObservedClient {
  client: S3Client;
  gets: SentGet[];
  /** Requests not yet answered plus bodies neither ended nor destroyed. */
  open(): number;
  /** The most requests and bodies open at once (counted until a body ends or closes). */
  mostOpen(): number;
}

/**
 * A client that records each GetObject and lets `onAnswer` tamper with its answer (replace the
 * body, change the object) before the download sees it.
 */
function observedClient(
  onAnswer?: (get: SentGet, output: GetObjectCommandOutput, index: number) => void | Promise<void>,
): ObservedClient {
  const client = local.client();
  const gets: SentGet[] = [];
  const bodies: Readable[] = [];
  let pending = 0;
  let counted = 0;
  let most = 0;
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName !== "GetObjectCommand") return next(args);
      const input = args.input as GetObjectCommandInput;
      const get = { range: input.Range, ifMatch: input.IfMatch };
      const index = gets.push(get) - 1;
      pending++;
      most = Math.max(most, ++counted);
      let release = () => counted--;
      try {
        const result = await next(args);
        const output = result.output as GetObjectCommandOutput;
        await onAnswer?.(get, output, index);
        const body = output.Body as Readable;
        bodies.push(body);
        const releaseOnce = () => {
          release();
          release = () => 0;
        };
        body.once("end", releaseOnce).once("close", releaseOnce);
        return result;
      } catch (error) {
        release();
        throw error;
      } finally {
        pending--;
      }
    },
    { step: "initialize", name: "observeGets" },
  );
  return {
    client,
    gets,
    open: () => pending + bodies.filter((b) => !b.destroyed && !b.readableEnded).length,
    mostOpen: () => most,
  };
}

/** The body as a connection cut after `bytes` would leave it: it errors instead of ending. */
function cutAfter(body: Readable, bytes: number): Readable {
  let passed = 0;
  const cut = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      passed += chunk.length;
      if (passed <= bytes) return done(null, chunk);
      done(Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }));
    },
  });
  return pipeline(body, cut, () => {});
}

/** The body as a stalled connection leaves it: one chunk, then nothing until it is destroyed. */
function stallAfterFirstChunk(body: Readable): Readable {
  let first = true;
  const stall = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      if (first) done(null, chunk);
      first = false;
    },
  });
  return pipeline(body, stall, () => {});
}

const rangeOf = (start: number, length: number) => `bytes=${start}-${start + length - 1}`;

describe("downloadToFile", () => {
  it("fetches an object no larger than a part with one request", async () => {
    const bytes = randomBytes(100_000);
    const { key } = await putObject(bytes);
    const observed = observedClient();
    const path = target();

    expect(await downloadToFile(observed.client, BUCKET, key, path)).toEqual({ sizeBytes: bytes.length });
    expect((await readFile(path)).equals(bytes)).toBe(true);
    expect(observed.gets).toEqual([{ range: rangeOf(0, 8 * MiB), ifMatch: undefined }]);
    observed.client.destroy();
  });

  it("fetches an empty object with one request", async () => {
    const { key } = await putObject(Buffer.alloc(0));
    const observed = observedClient();
    const path = target();

    expect(await downloadToFile(observed.client, BUCKET, key, path)).toEqual({ sizeBytes: 0 });
    expect((await readFile(path)).length).toBe(0);
    expect(observed.gets).toHaveLength(1);
    observed.client.destroy();
  });

  it("fetches a large object as ranged GETs, at most `concurrency` at a time, each on the first answer's ETag", async () => {
    const bytes = randomBytes(20 * MiB + 123);
    const { key, etag } = await putObject(bytes);
    const observed = observedClient();
    const path = target();

    const result = await downloadToFile(observed.client, BUCKET, key, path, { partSizeBytes: MiB, concurrency: 4 });
    expect(result).toEqual({ sizeBytes: bytes.length });
    expect((await readFile(path)).equals(bytes)).toBe(true);

    const expected = Array.from({ length: 21 }, (_, i) => rangeOf(i * MiB, Math.min(MiB, bytes.length - i * MiB)));
    expect(observed.gets[0]).toEqual({ range: rangeOf(0, MiB), ifMatch: undefined });
    expect(observed.gets.map((g) => g.range).sort()).toEqual(expected.sort());
    expect(observed.gets.slice(1).every((g) => g.ifMatch === etag)).toBe(true);
    expect(observed.mostOpen()).toBeGreaterThan(1);
    expect(observed.mostOpen()).toBeLessThanOrEqual(4);
    observed.client.destroy();
  });

  it("fails with ObjectChangedError when the object is replaced mid-download, stopping the parts still running; the next try gets the new version", async () => {
    const { key, etag } = await putObject(randomBytes(8 * MiB));
    const replacement = randomBytes(8 * MiB);
    const observed = observedClient(async (_get, output, index) => {
      if (index !== 0) return;
      await local.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: replacement }));
      // The old version's first part stalls: only stopping it lets the download end.
      output.Body = stallAfterFirstChunk(output.Body as Readable) as never;
    });

    const error = await downloadToFile(observed.client, BUCKET, key, target(), { partSizeBytes: MiB }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ObjectChangedError);
    expect(observed.gets.slice(1).every((g) => g.ifMatch === etag)).toBe(true);
    expect(observed.open()).toBe(0);

    const path = target();
    await downloadToFile(observed.client, BUCKET, key, path, { partSizeBytes: MiB });
    expect((await readFile(path)).equals(replacement)).toBe(true);
    observed.client.destroy();
  }, 20_000);

  it("fetches a part cut short again by itself", async () => {
    const bytes = randomBytes(8 * MiB);
    const { key } = await putObject(bytes);
    const broken = rangeOf(5 * MiB, MiB);
    let cuts = 0;
    const observed = observedClient((get, output) => {
      if (get.range === broken && cuts++ === 0) output.Body = cutAfter(output.Body as Readable, 64 * 1024) as never;
    });
    const path = target();

    await downloadToFile(observed.client, BUCKET, key, path, { partSizeBytes: MiB });
    expect((await readFile(path)).equals(bytes)).toBe(true);
    expect(observed.gets.filter((g) => g.range === broken)).toHaveLength(2);
    expect(observed.gets).toHaveLength(9);
    observed.client.destroy();
  });

  it("fails when a part is cut short on every try, and leaves no request running", async () => {
    const { key } = await putObject(randomBytes(8 * MiB));
    const broken = rangeOf(2 * MiB, MiB);
    const observed = observedClient((get, output) => {
      if (get.range === broken) output.Body = cutAfter(output.Body as Readable, 64 * 1024) as never;
    });

    await expect(downloadToFile(observed.client, BUCKET, key, target(), { partSizeBytes: MiB })).rejects.toThrow(
      /broke off/,
    );
    expect(observed.gets.filter((g) => g.range === broken)).toHaveLength(3);
    expect(observed.open()).toBe(0);
    observed.client.destroy();
  });

  it("stops every request when aborted, rejecting with the abort's reason", async () => {
    const { key } = await putObject(randomBytes(20 * MiB));
    const controller = new AbortController();
    const reason = new Error("attempt stopped");
    const observed = observedClient((_get, _output, index) => {
      if (index === 2) controller.abort(reason);
    });

    const download = downloadToFile(observed.client, BUCKET, key, target(), {
      partSizeBytes: MiB,
      signal: controller.signal,
    });
    await expect(download).rejects.toBe(reason);
    expect(observed.open()).toBe(0);
    expect(observed.gets.length).toBeLessThan(20);
    observed.client.destroy();
  });

  it("reports a missing object as ObjectMissingError", async () => {
    const observed = observedClient();
    await expect(downloadToFile(observed.client, BUCKET, "objects/never-uploaded", target())).rejects.toBeInstanceOf(
      ObjectMissingError,
    );
    expect(observed.gets).toHaveLength(1);
    observed.client.destroy();
  });
});
