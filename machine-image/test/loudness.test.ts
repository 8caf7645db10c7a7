/**
 * Loudness normalization (issue 12): a quiet source comes out at the job's EBU R128 target, every
 * audio rendition within ±1 LU, measured here by ffmpeg's own ebur128 meter on what was published.
 */
import { presets } from "@tcoder/worker/contract";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseLoudnormReports } from "../src/media/loudness.ts";
import { clips } from "./support/clips.ts";
import { integratedLoudness } from "./support/outputs.ts";
import { completed, type Pipeline, startPipeline } from "./support/pipeline.ts";

let pipeline: Pipeline;
let source: string;
let sourceLoudness: number[];

beforeAll(async () => {
  pipeline = await startPipeline();
  source = await clips.quiet(pipeline.dir);
  sourceLoudness = [await integratedLoudness(source, "0:a:0"), await integratedLoudness(source, "0:a:1")];
});

afterAll(async () => {
  await pipeline?.stop();
});

describe("loudness normalization", () => {
  it("brings every HLS audio rendition of a quiet source to −16 LUFS and records both measurements", async () => {
    // The source really is quiet: far below either target.
    for (const level of sourceLoudness) expect(level).toBeLessThan(-35);
    const run = await pipeline.transcode(source, { preset: presets["hls-small"], loudness: { targetLufs: -16 } });
    const { outputs } = completed(run);
    expect(outputs.audio?.map((a) => a.name)).toEqual(["audio-0", "audio-1"]);
    for (const audio of outputs.audio ?? [])
      expect(Math.abs((await integratedLoudness(run.local(audio.playlist))) + 16), audio.name).toBeLessThanOrEqual(1);
    // The MP4 is remuxed from the same renditions.
    for (const stream of ["0:a:0", "0:a:1"])
      expect(Math.abs((await integratedLoudness(run.local(outputs.mp4 ?? ""), stream)) + 16)).toBeLessThanOrEqual(1);

    expect(outputs.loudness?.targetLufs).toBe(-16);
    expect(outputs.loudness?.renditions.map((r) => [r.name, r.channels])).toEqual([
      ["audio-0", 1],
      ["audio-1", 2],
    ]);
    for (const [i, rendition] of (outputs.loudness?.renditions ?? []).entries()) {
      expect(Math.abs(rendition.input.integratedLufs - (sourceLoudness[i] ?? 0))).toBeLessThanOrEqual(0.5);
      expect(Math.abs(rendition.output.integratedLufs + 16)).toBeLessThanOrEqual(1);
      expect(rendition.output.truePeakDbtp).toBeLessThanOrEqual(-1);
    }
  });

  it("normalizes the direct MP4 of a preset without HLS to −23 LUFS", async () => {
    const run = await pipeline.transcode(source, { preset: presets["mp4-720p"], loudness: { targetLufs: -23 } });
    const { outputs } = completed(run);
    for (const stream of ["0:a:0", "0:a:1"])
      expect(Math.abs((await integratedLoudness(run.local(outputs.mp4 ?? ""), stream)) + 23)).toBeLessThanOrEqual(1);
    expect(outputs.loudness?.renditions.map((r) => Math.abs(r.output.integratedLufs + 23) <= 1)).toEqual([true, true]);
  });

  it("leaves the audio at the source's level when the job asks for no normalization", async () => {
    const run = await pipeline.transcode(source, { preset: presets["mp4-720p"] });
    const { outputs } = completed(run);
    expect(outputs.loudness).toBeUndefined();
    expect(Math.abs((await integratedLoudness(run.local(outputs.mp4 ?? ""))) - (sourceLoudness[0] ?? 0))).toBeLessThan(
      1,
    );
  });
});

describe("parseLoudnormReports", () => {
  it("orders loudnorm's JSON blocks by filter position, not by when ffmpeg printed them, and reads silence as −∞", () => {
    const block = (position: number, inputI: string) =>
      `[Parsed_loudnorm_${position} @ 0x55d0] \n{\n\t"input_i" : "${inputI}",\n\t"input_tp" : "-30.00",\n\t"input_lra" : "1.20",\n\t"input_thresh" : "-50.00",\n\t"output_i" : "-16.00",\n\t"normalization_type" : "dynamic",\n\t"target_offset" : "0.10"\n}\n`;
    const reports = parseLoudnormReports(`noise\n${block(3, "-inf")}more\n${block(1, "-40.73")}`);
    expect(reports.map((r) => r.integratedLufs)).toEqual([-40.73, Number.NaN]);
    expect(reports[0]).toMatchObject({ truePeakDbtp: -30, rangeLu: 1.2, thresholdLufs: -50, targetOffsetLu: 0.1 });
  });
});
