/**
 * The transcode pipeline end to end on real ffmpeg and the local S3 store: each generated source
 * gives the right renditions (checked with ffprobe on what was published) or the right failure.
 */
import { execFileSync } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { presets } from "@tcoder/worker/contract";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { manifestKey, outputPrefix } from "../src/package/layout.ts";
import type { Manifest } from "../src/package/manifest.ts";
import { listKeys } from "../src/storage/s3.ts";
import { AttemptStoppedError } from "../src/transcode.ts";
import { clips } from "./support/clips.ts";
import { headObject, isFaststart, keyframeTimes, mediaFacts } from "./support/outputs.ts";
import { completed, OUTPUTS, type Pipeline, type Run, startPipeline } from "./support/pipeline.ts";

let pipeline: Pipeline;
let dir: string;
let s3: Pipeline["s3"];
const transcode: Pipeline["transcode"] = (source, options) => pipeline.transcode(source, options);

beforeAll(async () => {
  pipeline = await startPipeline();
  ({ dir, s3 } = pipeline);
});

afterAll(async () => {
  await pipeline?.stop();
});

/** Checks every rendition with ffprobe: size, duration, audio, and keyframes shared across the ladder. */
async function expectLadder(
  run: Run,
  expected: { sizes: string[]; durationSeconds: number; audio: boolean; frameRate?: number },
) {
  const { outputs } = completed(run);
  expect(outputs.renditions.map((r) => `${r.width}x${r.height}`)).toEqual(expected.sizes);
  const keyframes: string[][] = [];
  for (const rendition of outputs.renditions) {
    const playlist = run.local(rendition.playlist);
    const facts = await mediaFacts(playlist);
    expect(facts.video).toMatchObject({ width: rendition.width, height: rendition.height, rotation: 0 });
    expect(Math.abs(facts.durationSeconds - expected.durationSeconds)).toBeLessThanOrEqual(0.2);
    if (expected.frameRate) expect(facts.video?.frameRate).toBeCloseTo(expected.frameRate, 2);
    // Audio is never muxed into a video rung: it is a set of alternate renditions they share.
    expect(facts.audio).toBeUndefined();
    keyframes.push(await keyframeTimes(playlist));
  }
  expect((outputs.audio ?? []).length > 0).toBe(expected.audio);
  for (const times of keyframes) expect(times).toEqual(keyframes[0]);
  // Fixed two-second GOP: a keyframe at the start (after the AAC priming offset) and every 2 s after it.
  const first = (keyframes[0] ?? []).map(Number);
  const start = first[0] ?? Number.NaN;
  expect(start).toBeLessThan(0.05);
  expect(first.length).toBe(Math.ceil(expected.durationSeconds / 2));
  for (const [i, t] of first.entries()) expect(t - start).toBeCloseTo(i * 2, 2);
}

describe("transcoding real sources", () => {
  let landscape: Run;
  beforeAll(async () => {
    landscape = await transcode(await clips.landscape1080(dir));
  });

  it("gives a 1080p30 source with audio the whole ladder with aligned keyframes", async () => {
    await expectLadder(landscape, {
      sizes: ["1920x1080", "1280x720", "960x540", "640x360"],
      durationSeconds: 3,
      audio: true,
      frameRate: 30,
    });
  });

  it("writes a master playlist with bandwidth, average bandwidth, resolution, codecs and frame rate", async () => {
    const { outputs } = completed(landscape);
    const master = await readFile(landscape.local(outputs.hlsMaster ?? ""), "utf8");
    const variants = master.split("\n").filter((l) => l.startsWith("#EXT-X-STREAM-INF:"));
    expect(variants).toHaveLength(4);
    for (const variant of variants)
      expect(variant).toMatch(
        /^#EXT-X-STREAM-INF:BANDWIDTH=\d+,AVERAGE-BANDWIDTH=\d+,RESOLUTION=\d+x\d+,CODECS="avc1\.[0-9A-F]{6},mp4a\.40\.2",FRAME-RATE=30\.000,VIDEO-RANGE=SDR,AUDIO="stereo"$/,
      );
    expect(master).toContain("1080p/playlist.m3u8");
    // The master plays through ffprobe as a whole, from its own relative references.
    expect((await mediaFacts(landscape.local(outputs.hlsMaster ?? ""))).video?.width).toBe(1920);
  });

  it("publishes a faststart MP4, a poster, and a sprite sheet with a WebVTT track", async () => {
    const { outputs } = completed(landscape);
    const mp4 = landscape.local(outputs.mp4 ?? "");
    expect(isFaststart(await readFile(mp4))).toBe(true);
    const mp4Facts = await mediaFacts(mp4);
    expect(mp4Facts.video).toMatchObject({ width: 1920, height: 1080 });
    expect(mp4Facts.audio?.codec).toBe("aac");
    expect(Math.abs(mp4Facts.durationSeconds - 3)).toBeLessThanOrEqual(0.2);
    expect((await mediaFacts(landscape.local(outputs.poster ?? ""))).video).toMatchObject({
      width: 1920,
      height: 1080,
    });
    // 3 s at one thumbnail per 5 s: one 160×90 tile.
    expect((await mediaFacts(landscape.local(outputs.thumbnailsSprite ?? ""))).video).toMatchObject({
      width: 160,
      height: 90,
    });
    const vtt = await readFile(landscape.local(outputs.thumbnailsVtt ?? ""), "utf8");
    expect(vtt).toBe("WEBVTT\n\n00:00:00.000 --> 00:00:03.000\nsprite.jpg#xywh=0,0,160,90\n");
  });

  it("publishes manifest.json last, at the job level, describing the attempt's package", async () => {
    const { outputs, manifest } = completed(landscape);
    expect(outputs.manifest).toBe(manifestKey(landscape.jobId));
    const published = JSON.parse(await readFile(landscape.local(outputs.manifest), "utf8")) as Manifest;
    expect(published).toEqual(JSON.parse(JSON.stringify(manifest)));
    expect(published.hls?.renditions.map((r) => r.name)).toEqual(["1080p", "720p", "540p", "360p"]);
    for (const r of published.hls?.renditions ?? []) expect(Math.abs(r.durationSeconds - 3)).toBeLessThanOrEqual(0.2);
    // Everything else lives under the attempt prefix, and every published file is listed.
    const attemptKeys = landscape.keys.filter((k) => k !== outputs.manifest);
    for (const key of attemptKeys) expect(key.startsWith(`outputs/${landscape.jobId}/1/`)).toBe(true);
    expect(published.files.map((f) => f.key).sort()).toEqual(attemptKeys);
  });

  it("sets Content-Type and Cache-Control per file", async () => {
    const { outputs } = completed(landscape);
    const segment = landscape.keys.find((k) => k.endsWith(".m4s")) ?? "";
    expect(await headObject(s3, OUTPUTS, segment)).toEqual({
      contentType: "video/iso.segment",
      cacheControl: "public, max-age=31536000, immutable",
    });
    expect(await headObject(s3, OUTPUTS, outputs.hlsMaster ?? "")).toEqual({
      contentType: "application/vnd.apple.mpegurl",
      cacheControl: "public, max-age=60",
    });
    expect((await headObject(s3, OUTPUTS, outputs.mp4 ?? "")).contentType).toBe("video/mp4");
  });

  it("keeps a rotated portrait source upright at its display size, without upscaling", async () => {
    const run = await transcode(await clips.portraitRotated(dir));
    await expectLadder(run, { sizes: ["540x960", "360x640"], durationSeconds: 3, audio: true });
    expect(completed(run).probe.video).toMatchObject({
      width: 960,
      height: 540,
      displayWidth: 540,
      displayHeight: 960,
    });
  });

  it("transcodes video without audio to video-only renditions", async () => {
    const run = await transcode(await clips.noAudio(dir));
    await expectLadder(run, { sizes: ["640x360"], durationSeconds: 2, audio: false });
    const master = await readFile(run.local(completed(run).outputs.hlsMaster ?? ""), "utf8");
    expect(master).toMatch(/CODECS="avc1\.[0-9A-F]{6}"/);
  });

  it("turns an audio-only source into audio-only HLS and an audio MP4, without poster or thumbnails", async () => {
    const run = await transcode(await clips.audioOnly(dir));
    const { outputs } = completed(run);
    expect(outputs.renditions).toEqual([]);
    expect(outputs.audio).toEqual([expect.objectContaining({ name: "audio-0", channels: 1, default: true })]);
    const facts = await mediaFacts(run.local(outputs.audio?.[0]?.playlist ?? ""));
    expect(facts.video).toBeUndefined();
    expect(facts.audio?.codec).toBe("aac");
    expect(Math.abs(facts.durationSeconds - 3)).toBeLessThanOrEqual(0.2);
    const master = await readFile(run.local(outputs.hlsMaster ?? ""), "utf8");
    expect(master).toContain('CODECS="mp4a.40.2"');
    expect(master).not.toContain("RESOLUTION");
    expect(outputs.poster).toBeUndefined();
    expect(outputs.thumbnailsVtt).toBeUndefined();
    expect(outputs.mp4).toBeDefined();
  });

  it("keeps an 8 fps odd-sized source at its own size (made even) and frame rate", async () => {
    const run = await transcode(await clips.oddSize8fps(dir));
    await expectLadder(run, { sizes: ["320x240"], durationSeconds: 3, audio: true, frameRate: 8 });
  });

  it("tiles one thumbnail per interval into the sprite, with a cue for each", async () => {
    const run = await transcode(await clips.smallLong(dir));
    const { outputs } = completed(run);
    await expectLadder(run, { sizes: ["320x180"], durationSeconds: 11, audio: true, frameRate: 10 });
    // Thumbnails at 0, 5 and 10 s, side by side (fewer than the preset's 10 columns).
    expect((await mediaFacts(run.local(outputs.thumbnailsSprite ?? ""))).video).toMatchObject({
      width: 480,
      height: 90,
    });
    expect(await readFile(run.local(outputs.thumbnailsVtt ?? ""), "utf8")).toBe(
      [
        "WEBVTT",
        "",
        "00:00:00.000 --> 00:00:05.000\nsprite.jpg#xywh=0,0,160,90",
        "",
        "00:00:05.000 --> 00:00:10.000\nsprite.jpg#xywh=160,0,160,90",
        "",
        "00:00:10.000 --> 00:00:11.000\nsprite.jpg#xywh=320,0,160,90",
        "",
      ].join("\n"),
    );
    // Segments follow the preset's 6 s target on 2 s keyframes.
    const playlist = await readFile(run.local(outputs.renditions[0]?.playlist ?? ""), "utf8");
    expect(playlist.match(/#EXTINF:[\d.]+/g)?.map((l) => Number(l.slice(8)))).toEqual([6, 5]);
  });

  it("makes a single faststart MP4 and poster for a preset without HLS", async () => {
    const run = await transcode(await clips.landscape1080(dir, 2), { preset: presets["mp4-720p"] });
    const { outputs } = completed(run);
    expect(outputs.hlsMaster).toBeUndefined();
    expect(outputs.renditions).toEqual([]);
    const mp4 = run.local(outputs.mp4 ?? "");
    expect(isFaststart(await readFile(mp4))).toBe(true);
    expect((await mediaFacts(mp4)).video).toMatchObject({ width: 1280, height: 720 });
    expect(outputs.poster).toBeDefined();
  });
});

describe("rejecting sources", () => {
  it.each([
    ["a truncated MP4", clips.truncated],
    ["random bytes named .mp4", clips.randomBytes],
  ])("fails %s as invalid_media, not retryable, and publishes nothing", async (_, make) => {
    const run = await transcode(await make(dir));
    expect(run.outcome).toMatchObject({ kind: "failed", retryable: false, error: { code: "invalid_media" } });
    expect(run.outcome.kind === "failed" && run.outcome.error.message).toMatch(/not a readable media file/);
    expect(run.keys).toEqual([]);
  });

  it("fails a source beyond the limits as too_large, with the probe's reason", async () => {
    const run = await transcode(await clips.noAudio(dir), {
      limits: { maxDurationSeconds: 1, maxPixels: 4096 * 2304 },
    });
    expect(run.outcome).toMatchObject({ kind: "failed", error: { code: "too_large" }, probe: { durationSeconds: 2 } });
    expect(run.outcome.kind === "failed" && run.outcome.error.message).toMatch(
      /duration 2\.0 s exceeds the limit of 1 s/,
    );
  });

  it("fails a job whose source is gone as input_missing", async () => {
    const run = await transcode(null);
    expect(run.outcome).toMatchObject({ kind: "failed", retryable: false, error: { code: "input_missing" } });
  });
});

describe("an encode that fails", () => {
  it("removes the segments it uploaded while it ran", async () => {
    // An ffmpeg that writes every segment, lingers long enough for them to go up, then fails.
    const real = execFileSync("sh", ["-c", "command -v ffmpeg"], { encoding: "utf8" }).trim();
    const bin = join(dir, "failing-ffmpeg");
    await mkdir(bin, { recursive: true });
    await writeFile(join(bin, "ffmpeg"), `#!/bin/sh\n"${real}" "$@" || exit $?\nsleep 2\nexit 1\n`, { mode: 0o755 });
    const jobId = "job-failing-encode";
    const sent: string[] = [];
    s3.middlewareStack.add(
      (next, context) => async (args) => {
        const key = (args.input as { Key?: string }).Key ?? "";
        if (context.commandName === "PutObjectCommand" && key.startsWith(outputPrefix(jobId))) sent.push(key);
        return next(args);
      },
      { step: "initialize", name: `count-${jobId}` },
    );
    const clip = await clips.landscape1080(dir, 6);
    const path = process.env.PATH;
    process.env.PATH = `${bin}:${path}`;
    let run: Run;
    try {
      run = await transcode(clip, { jobId, preset: presets["hls-small"] });
    } finally {
      process.env.PATH = path;
      s3.middlewareStack.remove(`count-${jobId}`);
    }
    expect(run.outcome).toMatchObject({ kind: "failed", error: { code: "transcode_failed" } });
    expect(sent.filter((key) => key.endsWith(".m4s")).length).toBeGreaterThan(0);
    expect(run.keys).toEqual([]);
  });
});

describe("publishing", () => {
  it("publishes no manifest when the lease is not confirmed, and the next attempt removes what was left", async () => {
    const clip = await clips.oddSize8fps(dir);
    const jobId = "job-fenced";
    let asked = 0;
    await expect(
      transcode(clip, {
        jobId,
        attempt: 1,
        confirmLease: async () => {
          asked++;
          return false;
        },
      }),
    ).rejects.toBeInstanceOf(AttemptStoppedError);
    expect(asked).toBe(1);
    const leftovers = await listKeys(s3, OUTPUTS, outputPrefix(jobId));
    expect(leftovers.length).toBeGreaterThan(0);
    expect(leftovers).not.toContain(manifestKey(jobId));
    expect(leftovers.every((k) => k.startsWith(`outputs/${jobId}/1/`))).toBe(true);

    const next = await transcode(clip, { jobId, attempt: 2, confirmLease: async () => true });
    expect(completed(next).outputs.manifest).toBe(manifestKey(jobId));
    expect(next.keys).toContain(manifestKey(jobId));
    expect(next.keys.filter((k) => k !== manifestKey(jobId)).every((k) => k.startsWith(`outputs/${jobId}/2/`))).toBe(
      true,
    );
  });
});
