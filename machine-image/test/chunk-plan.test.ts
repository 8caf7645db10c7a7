import { type Preset, type ProbeSummary, presets, type VideoTaskSpec } from "@tcoder/worker/contract";
import { describe, expect, it } from "vitest";
import { planSplit } from "../src/chunked/plan.ts";
import { planLadder } from "../src/media/ladder.ts";

const source = (durationSeconds: number, frameRate = 30000 / 1001, audio = true): ProbeSummary => ({
  formatName: "mov,mp4,m4a,3gp,3g2,mj2",
  durationSeconds,
  sizeBytes: 1000,
  video: {
    codec: "h264",
    width: 1280,
    height: 720,
    displayWidth: 1280,
    displayHeight: 720,
    rotation: 0,
    frameRate,
  },
  ...(audio ? { audio: { codec: "aac", channels: 2, sampleRate: 48000 } } : {}),
});

const split = (probe: ProbeSummary, chunkSeconds: number, preset: Preset = presets["hls-small"]) =>
  planSplit(preset, probe, planLadder(preset, probe), chunkSeconds);

const videoTasks = (probe: ProbeSummary, chunkSeconds: number) =>
  (split(probe, chunkSeconds)?.tasks ?? []).flatMap((t) => (t.spec.kind === "video" ? [t.spec] : []));

describe("planSplit", () => {
  it("cuts chunks in output frames on GOP boundaries: one GOP first, then whole segments, the last taking the rest", () => {
    const chunks = videoTasks(source(26), 6);
    // 29.97 fps: a 2 s GOP is 60 frames, a 6 s segment 180; 26 s is 779 frames, and the 179 after
    // frame 600 are less than a segment: the last chunk takes them with its own.
    expect(chunks.map((c) => [c.startFrame, c.frames])).toEqual([
      [0, 60],
      [60, 180],
      [240, 180],
      [420, undefined],
    ]);
    expect(chunks.map((c) => c.firstSegment)).toEqual([0, 1, 2, 3]);
    for (const c of chunks) expect(c.startSeconds).toBeCloseTo((c.startFrame * 1001) / 30000, 9);
    const last = chunks.at(-1) as VideoTaskSpec;
    expect(last.startSeconds + last.durationSeconds).toBeCloseTo(26, 6);
  });

  it("queues audio first and stills last, around the chunks", () => {
    expect(split(source(40), 12)?.tasks.map((t) => t.name)).toEqual(["audio", "v0", "v1", "v2", "v3", "stills"]);
    expect(split(source(40, 25, false), 12)?.tasks.map((t) => t.name)).toEqual(["v0", "v1", "v2", "v3", "stills"]);
  });

  it("counts segments of a chunk that holds several", () => {
    const chunks = videoTasks(source(100, 25), 30);
    // 25 fps: GOP 50 frames, segment 150, chunk of 30 s = 5 segments = 750 frames.
    expect(chunks.map((c) => [c.startFrame, c.firstSegment])).toEqual([
      [0, 0],
      [50, 1],
      [800, 6],
      [1550, 11],
      [2300, 16],
    ]);
  });

  it("leaves short sources, presets without HLS and CHUNK_SECONDS=0 in one piece", () => {
    // Three chunks or fewer stay whole.
    expect(split(source(90), 30)).toBeNull();
    expect(split(source(91), 30)?.tasks.length).toBeGreaterThan(3);
    expect(split(source(300), 0)).toBeNull();
    expect(split(source(300), 30, presets["mp4-720p"])).toBeNull();
    const audioOnly: ProbeSummary = {
      formatName: "mp3",
      durationSeconds: 600,
      sizeBytes: 1,
      audio: { codec: "mp3", channels: 2, sampleRate: 44100 },
    };
    expect(split(audioOnly, 30)).toBeNull();
  });
});
