import { describe, expect, it } from "vitest";
import { type FfprobeOutput, summarizeProbe } from "../src/media/probe.ts";

const limits = { maxDurationSeconds: 4 * 3600, maxPixels: 4096 * 2304 };
const format = { format_name: "mov,mp4,m4a,3gp,3g2,mj2", duration: "3.000000", bit_rate: "500000" };
const videoStream = {
  codec_type: "video",
  codec_name: "h264",
  width: 1920,
  height: 1080,
  avg_frame_rate: "30/1",
  pix_fmt: "yuv420p",
};
const audioStream = { codec_type: "audio", codec_name: "aac", channels: 2, sample_rate: "48000" };

describe("summarizeProbe", () => {
  it("summarizes video and audio", () => {
    const result = summarizeProbe({ streams: [videoStream, audioStream], format }, 1234, limits);
    expect(result).toEqual({
      ok: true,
      probe: {
        formatName: format.format_name,
        durationSeconds: 3,
        sizeBytes: 1234,
        bitRate: 500000,
        video: {
          codec: "h264",
          width: 1920,
          height: 1080,
          displayWidth: 1920,
          displayHeight: 1080,
          rotation: 0,
          frameRate: 30,
          pixelFormat: "yuv420p",
        },
        audio: { codec: "aac", channels: 2, sampleRate: 48000 },
      },
    });
  });

  it("swaps the display size for a quarter-turn rotation", () => {
    const rotated = { ...videoStream, side_data_list: [{ side_data_type: "Display Matrix", rotation: -90 }] };
    const result = summarizeProbe({ streams: [rotated], format }, 1, limits);
    expect(result.ok && result.probe.video).toMatchObject({ displayWidth: 1080, displayHeight: 1920, rotation: 270 });
  });

  it("rejects a container with neither video nor audio as unsupported", () => {
    const result = summarizeProbe({ streams: [{ codec_type: "subtitle" }], format }, 1, limits);
    expect(result).toMatchObject({ ok: false, code: "unsupported" });
  });

  it("rejects what ffprobe only guesses at (random bytes read as lyrics or raw H.263) as invalid media", () => {
    for (const guess of [
      { streams: [{ codec_type: "subtitle", codec_name: "text" }], format: { format_name: "lrc", probe_score: 5 } },
      {
        streams: [{ ...videoStream, codec_name: "h263" }],
        format: { ...format, format_name: "h263", probe_score: 25 },
      },
    ]) {
      const result = summarizeProbe(guess, 65536, limits);
      expect(result).toMatchObject({ ok: false, code: "invalid_media" });
      expect(result.ok ? "" : result.message).toMatch(/not a readable media file: only a weak guess/);
    }
    // A real container probes with full confidence.
    expect(summarizeProbe({ streams: [videoStream], format: { ...format, probe_score: 100 } }, 1, limits).ok).toBe(
      true,
    );
  });

  it("ignores cover art when looking for video", () => {
    const cover = { ...videoStream, codec_name: "mjpeg", disposition: { attached_pic: 1 } };
    const result = summarizeProbe({ streams: [cover, audioStream], format }, 1, limits);
    expect(result.ok && result.probe.video).toBeUndefined();
  });

  it("rejects zero duration as invalid media", () => {
    const result = summarizeProbe({ streams: [videoStream], format: { ...format, duration: "0" } }, 1, limits);
    expect(result).toMatchObject({ ok: false, code: "invalid_media" });
  });

  it("rejects sources beyond the duration or pixel limits as too large, keeping the probe", () => {
    const long: FfprobeOutput = { streams: [videoStream], format: { ...format, duration: String(5 * 3600) } };
    expect(summarizeProbe(long, 1, limits)).toMatchObject({
      ok: false,
      code: "too_large",
      probe: { durationSeconds: 18000 },
    });
    const huge = { streams: [{ ...videoStream, width: 7680, height: 4320 }], format };
    expect(summarizeProbe(huge, 1, limits)).toMatchObject({ ok: false, code: "too_large" });
  });
});
