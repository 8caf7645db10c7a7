/**
 * Reading a source while it downloads, against the local S3 store: ffprobe and ffmpeg get byte
 * ranges from the loopback server as soon as those bytes are on disk, an MP4 whose index is at its
 * end is probed from its first and last parts before the middle has arrived, and a download that
 * fails fails every read and says why.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { type GetObjectCommandInput, PutObjectCommand } from "@aws-sdk/client-s3";
import { describe, expect, it } from "vitest";
import { openProgressiveSource, parseRange, WrittenRanges } from "../src/storage/progressive-source.ts";
import { clips } from "./support/clips.ts";
import { useLocalStore } from "./support/local-store.ts";

const execFileAsync = promisify(execFile);
const BUCKET = "inputs";
const KiB = 1024;

const local = useLocalStore("progressive", [BUCKET]);
let n = 0;

async function putObject(bytes: Buffer): Promise<string> {
  const key = `sources/${++n}`;
  await local.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: bytes }));
  return key;
}

/** A client whose ranged GETs wait until `release` unless `passes(range)` says they may go now. */
function gatedClient(passes: (range: string) => boolean) {
  const client = local.client();
  let release = () => {};
  const released = new Promise<void>((resolve) => (release = resolve));
  const ranges: string[] = [];
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName !== "GetObjectCommand") return next(args);
      const range = (args.input as GetObjectCommandInput).Range ?? "";
      ranges.push(range);
      if (!passes(range)) await released;
      return next(args);
    },
    { step: "initialize", name: "gateGets" },
  );
  return { client, release, ranges };
}

const ffprobeDuration = async (input: string) =>
  Number(
    (
      await execFileAsync(
        "ffprobe",
        ["-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1", input],
        { timeout: 30_000 },
      )
    ).stdout.trim(),
  );

describe("parseRange", () => {
  it("reads the forms ffmpeg and browsers send, clamped to the size", () => {
    expect(parseRange(undefined, 100)).toBeNull();
    expect(parseRange("bytes=0-", 100)).toEqual({ start: 0, end: 100 });
    expect(parseRange("bytes=10-19", 100)).toEqual({ start: 10, end: 20 });
    expect(parseRange("bytes=90-500", 100)).toEqual({ start: 90, end: 100 });
    expect(parseRange("bytes=-30", 100)).toEqual({ start: 70, end: 100 });
    expect(parseRange("bytes=-300", 100)).toEqual({ start: 0, end: 100 });
    expect(parseRange("bytes=100-", 100)).toBe("unsatisfiable");
    expect(parseRange("bytes=20-10", 100)).toBe("unsatisfiable");
    expect(parseRange("bytes=-0", 100)).toBe("unsatisfiable");
  });
});

describe("WrittenRanges", () => {
  it("answers with the end of the written run, waiting for bytes not there yet", async () => {
    const written = new WrittenRanges();
    written.add(0, 10);
    written.add(20, 30);
    expect(await written.availableFrom(5)).toBe(10);
    let answered: number | undefined;
    const waiting = written.availableFrom(12).then((end) => (answered = end));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(answered).toBeUndefined();
    written.add(10, 20);
    expect(await waiting).toBe(30);
  });

  it("fails a waiting read when the download fails", async () => {
    const written = new WrittenRanges();
    const waiting = written.availableFrom(0);
    written.fail(new Error("part cut short three times"));
    await expect(waiting).rejects.toThrow("part cut short three times");
  });
});

describe("openProgressiveSource", () => {
  it("serves every range byte-identical, and the whole file is on disk once downloaded", async () => {
    const bytes = randomBytes(3 * 1024 * KiB + 123);
    const key = await putObject(bytes);
    const path = join(local.dir, `download-${++n}`);
    const source = await openProgressiveSource(local.s3, BUCKET, key, path, { partSizeBytes: 256 * KiB });
    try {
      expect(source.sizeBytes).toBe(bytes.length);
      const whole = await fetch(source.url);
      expect(whole.status).toBe(200);
      expect(Buffer.from(await whole.arrayBuffer()).equals(bytes)).toBe(true);
      const ranged = await fetch(source.url, { headers: { Range: "bytes=1000000-2500000" } });
      expect(ranged.status).toBe(206);
      expect(ranged.headers.get("content-range")).toBe(`bytes 1000000-2500000/${bytes.length}`);
      expect(Buffer.from(await ranged.arrayBuffer()).equals(bytes.subarray(1_000_000, 2_500_001))).toBe(true);
      const suffix = await fetch(source.url, { headers: { Range: "bytes=-100" } });
      expect(Buffer.from(await suffix.arrayBuffer()).equals(bytes.subarray(-100))).toBe(true);
      expect((await fetch(source.url, { headers: { Range: `bytes=${bytes.length}-` } })).status).toBe(416);
      await source.downloaded;
      expect((await readFile(path)).equals(bytes)).toBe(true);
    } finally {
      await source.close();
    }
  });

  it("probes an MP4 with its index at the end from the first and last parts, before the middle arrives", async () => {
    const clip = await readFile(await clips.landscape1080(local.dir, 4));
    const key = await putObject(clip);
    const partSizeBytes = 1024 * KiB;
    const lastPartStart = Math.floor((clip.length - 1) / partSizeBytes) * partSizeBytes;
    // Only the first and the last part may arrive until the probe has answered.
    const gate = gatedClient((range) => range.startsWith("bytes=0-") || range.startsWith(`bytes=${lastPartStart}-`));
    const source = await openProgressiveSource(gate.client, BUCKET, key, join(local.dir, `download-${++n}`), {
      partSizeBytes,
    });
    try {
      expect(clip.length).toBeGreaterThan(4 * partSizeBytes);
      // The case this is about: the index (moov) after the media, in the last part.
      expect(clip.lastIndexOf("moov")).toBeGreaterThan(lastPartStart);
      expect(gate.ranges[1]).toBe(`bytes=${lastPartStart}-${clip.length - 1}`);
      expect(await ffprobeDuration(source.url)).toBeCloseTo(4, 1);
      let downloaded = false;
      void source.downloaded.then(() => (downloaded = true));
      expect(downloaded).toBe(false);
      gate.release();
      await source.downloaded;
      // ffmpeg decodes the whole source through the server as it would from the file.
      await execFileAsync("ffmpeg", ["-v", "error", "-xerror", "-i", source.url, "-f", "null", "-"]);
    } finally {
      gate.release();
      await source.close();
      gate.client.destroy();
    }
  });

  it("fails every read when the download fails, and says why", async () => {
    const bytes = randomBytes(1024 * KiB);
    const key = await putObject(bytes);
    const client = local.client();
    // The object is replaced after the first part: every later part is refused (412), not mixed in.
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const range = (args.input as GetObjectCommandInput).Range ?? "";
        if (context.commandName === "GetObjectCommand" && !range.startsWith("bytes=0-"))
          await local.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: randomBytes(1024 * KiB) }));
        return next(args);
      },
      { step: "initialize", name: "replaceObject" },
    );
    const source = await openProgressiveSource(client, BUCKET, key, join(local.dir, `download-${++n}`), {
      partSizeBytes: 256 * KiB,
    });
    try {
      await expect(source.downloaded).rejects.toThrow(/changed during the download/);
      expect(source.failure()?.message).toMatch(/changed during the download/);
      await expect(
        fetch(source.url, { headers: { Range: "bytes=600000-700000" } }).then((r) => r.arrayBuffer()),
      ).rejects.toThrow();
    } finally {
      await source.close();
      client.destroy();
    }
  });
});
