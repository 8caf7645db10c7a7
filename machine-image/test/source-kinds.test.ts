/**
 * Media people really upload (issue 12): non-square pixels, interlaced broadcast, HDR phone video,
 * several audio tracks, subtitles. Each case is a clip generated with ffmpeg, transcoded by the real
 * pipeline, and checked with ffprobe on what was published.
 */
import { presets } from "@tcoder/worker/contract";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clips } from "./support/clips.ts";
import { interlaceDetection, mediaFacts } from "./support/outputs.ts";
import { completed, type Pipeline, startPipeline } from "./support/pipeline.ts";

let pipeline: Pipeline;

beforeAll(async () => {
  pipeline = await startPipeline();
});

afterAll(async () => {
  await pipeline?.stop();
});

/** Within 1% of the expected display aspect, with square pixels. */
const expectShape = (facts: Awaited<ReturnType<typeof mediaFacts>>, aspect: number) => {
  expect(facts.video?.sampleAspectRatio).toBe("1:1");
  expect(Math.abs((facts.video?.displayAspect ?? 0) / aspect - 1)).toBeLessThan(0.01);
};

describe("non-square pixels", () => {
  it.each([
    ["NTSC 16:9 (720×480 at 32:27)", "720x480", "32/27", { displayWidth: 853, displayHeight: 480 }],
    ["NTSC 4:3 (720×480 at 8:9)", "720x480", "8/9", { displayWidth: 640, displayHeight: 480 }],
  ] as const)(
    "gives %s its display shape in square pixels: every rung, the MP4, poster and sprite",
    async (_, size, sar, display) => {
      const source = await clips.anamorphic(pipeline.dir, size, sar);
      const sourceAspect = (await mediaFacts(source)).video?.displayAspect ?? 0;
      const run = await pipeline.transcode(source, { preset: presets["hls-small"] });
      const { outputs, probe } = completed(run);
      expect(probe.video).toMatchObject({
        width: 720,
        height: 480,
        sampleAspectRatio: sar.replace("/", ":"),
        ...display,
      });
      expect(Math.abs(display.displayWidth / display.displayHeight / sourceAspect - 1)).toBeLessThan(0.01);

      expect(outputs.renditions.map((r) => r.height)).toEqual([360, 234]);
      for (const rendition of outputs.renditions) {
        const facts = await mediaFacts(run.local(rendition.playlist));
        expect(facts.video).toMatchObject({ width: rendition.width, height: rendition.height });
        expectShape(facts, sourceAspect);
      }
      for (const key of [outputs.mp4, outputs.poster, outputs.thumbnailsSprite])
        expectShape(await mediaFacts(run.local(key ?? "")), sourceAspect);
    },
  );
});

describe("interlaced sources", () => {
  it.each([
    ["top field first MPEG-2", "tff", "tt"],
    ["bottom field first H.264", "bff", "bb"],
  ] as const)("deinterlaces %s one frame per frame, so no rung shows combing", async (_, order, fieldOrder) => {
    const source = await clips.interlaced(pipeline.dir, order);
    // The source really is combed: idet sees the field order in nearly every frame.
    const before = await interlaceDetection(source);
    expect(before[order]).toBeGreaterThanOrEqual(20);
    const run = await pipeline.transcode(source, { preset: presets["hls-small"] });
    const { outputs, probe } = completed(run);
    expect(probe.video).toMatchObject({ fieldOrder, frameRate: 25 });
    expect(outputs.renditions.map((r) => r.name)).toEqual(["360p", "234p"]);
    for (const key of [...outputs.renditions.map((r) => r.playlist), outputs.mp4 ?? ""]) {
      const after = await interlaceDetection(run.local(key));
      expect(after.tff + after.bff).toBeLessThanOrEqual(1);
      expect(after.progressive).toBeGreaterThanOrEqual(20);
      expect((await mediaFacts(run.local(key))).video?.frameRate).toBe(25);
    }
  });
});
