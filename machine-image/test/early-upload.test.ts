import { mkdir, mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startEarlyUploads } from "../src/package/early-upload.ts";
import { uploadItem } from "../src/package/layout.ts";
import type { UploadItem } from "../src/storage/s3.ts";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "early-upload-"));
  for (const rendition of ["720p", "audio"]) await mkdir(join(dir, rendition));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

/** A segment as ffmpeg writes it with `temp_file`: under a temporary name, renamed once whole. */
const writeSegment = async (rendition: string, name: string) => {
  await writeFile(join(dir, rendition, `${name}.tmp`), `bytes of ${name}`);
  await rename(join(dir, rendition, `${name}.tmp`), join(dir, rendition, name));
};

const start = (send: (item: UploadItem) => Promise<void>, signal?: AbortSignal) =>
  startEarlyUploads({
    sources: ["720p", "audio"].map((rendition) => ({
      dir: join(dir, rendition),
      packagePath: (segment) => `hls/${rendition}/${segment}`,
    })),
    itemFor: (path, packagePath) => uploadItem(path, `outputs/job/1/${packagePath}`),
    send,
    concurrency: { encoding: 1, packaging: 3 },
    scanIntervalMs: 20,
    ...(signal ? { signal } : {}),
  });

describe("startEarlyUploads", () => {
  it("sends whole segments while the encode goes on, never a temporary or an init file, each once", async () => {
    const sent: UploadItem[] = [];
    const early = start(async (item) => {
      sent.push(item);
    });
    await writeFile(join(dir, "720p", "init.mp4"), "init");
    await writeFile(join(dir, "720p", "seg_00001.m4s.tmp"), "half a segment");
    await writeSegment("720p", "seg_00000.m4s");
    await writeSegment("audio", "seg_00000.m4s");
    await expect.poll(() => sent.length).toBe(2);
    expect(sent.map((item) => item.key).sort()).toEqual([
      "outputs/job/1/hls/720p/seg_00000.m4s",
      "outputs/job/1/hls/audio/seg_00000.m4s",
    ]);
    expect(sent[0]?.contentType).toBe("video/iso.segment");

    // ffmpeg exits: the last segment is there, and goes up without waiting for a scan; so does
    // what packaging makes, each file once however often it is named.
    await rename(join(dir, "720p", "seg_00001.m4s.tmp"), join(dir, "720p", "seg_00001.m4s"));
    await early.encoded();
    await writeFile(join(dir, "video.mp4"), "the MP4");
    early.add(uploadItem(join(dir, "video.mp4"), "outputs/job/1/video.mp4"));
    early.add(uploadItem(join(dir, "720p", "seg_00000.m4s"), "outputs/job/1/hls/720p/seg_00000.m4s"));
    const uploaded = await early.settle();
    expect([...uploaded].sort()).toEqual([
      "outputs/job/1/hls/720p/seg_00000.m4s",
      "outputs/job/1/hls/720p/seg_00001.m4s",
      "outputs/job/1/hls/audio/seg_00000.m4s",
      "outputs/job/1/video.mp4",
    ]);
    expect(sent).toHaveLength(4);
    // Settled: nothing more is taken.
    early.add(uploadItem(join(dir, "video.mp4"), "outputs/job/1/poster.jpg"));
    expect(sent).toHaveLength(4);
  });

  it("uploads one at a time while ffmpeg encodes and several at once while packaging", async () => {
    let inFlight = 0;
    let most = 0;
    const mostAt: number[] = [];
    const early = start(async () => {
      most = Math.max(most, ++inFlight);
      await new Promise((resolve) => setTimeout(resolve, 30));
      inFlight--;
    });
    for (const name of ["seg_00000.m4s", "seg_00001.m4s", "seg_00002.m4s"]) await writeSegment("720p", name);
    await new Promise((resolve) => setTimeout(resolve, 60));
    mostAt.push(most);
    await early.encoded();
    for (const name of ["a", "b", "c", "d"]) early.add(uploadItem(join(dir, name), `outputs/job/1/${name}.jpg`));
    await early.settle();
    mostAt.push(most);
    expect(mostAt).toEqual([1, 3]);
  });

  it("leaves a segment whose upload failed to the package (it is not reported as sent)", async () => {
    const early = start(async (item) => {
      if (item.key.endsWith("720p/seg_00000.m4s")) throw new Error("503 Slow Down");
    });
    await writeSegment("720p", "seg_00000.m4s");
    await writeSegment("720p", "seg_00001.m4s");
    await early.encoded();
    expect([...(await early.settle())]).toEqual(["outputs/job/1/hls/720p/seg_00001.m4s"]);
  });

  it("stop waits for the upload in flight and sends nothing more", async () => {
    let release = () => {};
    const sent: string[] = [];
    const early = start(async (item) => {
      sent.push(item.key);
      if (sent.length === 1) await new Promise<void>((resolve) => (release = resolve));
    });
    await writeSegment("720p", "seg_00000.m4s");
    await writeSegment("720p", "seg_00001.m4s");
    await expect.poll(() => sent.length).toBe(1);
    const stopped = early.stop();
    release();
    expect([...(await stopped)]).toEqual(["outputs/job/1/hls/720p/seg_00000.m4s"]);
    expect(sent).toHaveLength(1);
  });

  it("an abort stops the scans and the workers", async () => {
    const abort = new AbortController();
    const sent: string[] = [];
    const early = start(async (item) => {
      sent.push(item.key);
    }, abort.signal);
    abort.abort();
    await writeSegment("720p", "seg_00000.m4s");
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(sent).toEqual([]);
    expect((await early.stop()).size).toBe(0);
  });
});
