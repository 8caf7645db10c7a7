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
          dynamicRange: "sdr",
        },
        audio: { codec: "aac", channels: 2, sampleRate: 48000 },
        audioStreams: [{ index: 0, codec: "aac", channels: 2, sampleRate: 48000, default: true }],
      },
    });
  });

  it("swaps the display size for a quarter-turn rotation", () => {
    const rotated = { ...videoStream, side_data_list: [{ side_data_type: "Display Matrix", rotation: -90 }] };
    const result = summarizeProbe({ streams: [rotated], format }, 1, limits);
    expect(result.ok && result.probe.video).toMatchObject({ displayWidth: 1080, displayHeight: 1920, rotation: 270 });
  });

  it("applies non-square pixels to the width, then the rotation, for the display size", () => {
    const pal169 = { ...videoStream, width: 720, height: 576, sample_aspect_ratio: "64:45" };
    const hdv = { ...videoStream, width: 1440, height: 1080, sample_aspect_ratio: "4:3" };
    const ntsc43Rotated = {
      ...videoStream,
      width: 720,
      height: 480,
      sample_aspect_ratio: "8:9",
      side_data_list: [{ rotation: 90 }],
    };
    const square = { ...videoStream, sample_aspect_ratio: "1:1" };
    const unknown = { ...videoStream, sample_aspect_ratio: "0:1" };
    const display = (stream: typeof videoStream) => {
      const result = summarizeProbe({ streams: [stream], format }, 1, limits);
      const v = result.ok ? result.probe.video : undefined;
      return v && [v.displayWidth, v.displayHeight, v.sampleAspectRatio];
    };
    expect(display(pal169)).toEqual([1024, 576, "64:45"]);
    expect(display(hdv)).toEqual([1920, 1080, "4:3"]);
    expect(display(ntsc43Rotated)).toEqual([480, 640, "8:9"]);
    expect(display(square)).toEqual([1920, 1080, undefined]);
    expect(display(unknown)).toEqual([1920, 1080, undefined]);
  });

  it("reports field order and the HDR transfer", () => {
    const interlacedHdr = {
      ...videoStream,
      field_order: "tt",
      color_primaries: "bt2020",
      color_transfer: "smpte2084",
      color_space: "bt2020nc",
    };
    const result = summarizeProbe({ streams: [interlacedHdr], format }, 1, limits);
    expect(result.ok && result.probe.video).toMatchObject({
      fieldOrder: "tt",
      dynamicRange: "pq",
      colorPrimaries: "bt2020",
      colorTransfer: "smpte2084",
      colorSpace: "bt2020nc",
    });
    const hlg = { ...videoStream, color_transfer: "arib-std-b67", field_order: "progressive" };
    const hlgResult = summarizeProbe({ streams: [hlg], format }, 1, limits);
    expect(hlgResult.ok && hlgResult.probe.video).toMatchObject({ fieldOrder: "progressive", dynamicRange: "hlg" });
  });

  it("lists every audio and subtitle stream with BCP 47 languages, titles and the default", () => {
    const english = { ...audioStream, tags: { language: "eng", handler_name: "SoundHandler" } };
    const french = {
      ...audioStream,
      channels: 6,
      channel_layout: "5.1",
      tags: { language: "fre", title: "Français 5.1" },
      disposition: { default: 1 },
    };
    const srt = { codec_type: "subtitle", codec_name: "subrip", tags: { language: "ger" }, disposition: { forced: 1 } };
    const pgs = { codec_type: "subtitle", codec_name: "hdmv_pgs_subtitle", tags: { language: "und" } };
    const result = summarizeProbe({ streams: [videoStream, english, french, srt, pgs], format }, 1, limits);
    if (!result.ok) throw new Error(result.message);
    expect(result.probe.audio).toEqual({ codec: "aac", channels: 6, sampleRate: 48000 });
    expect(result.probe.audioStreams).toEqual([
      { index: 0, codec: "aac", channels: 2, sampleRate: 48000, language: "en", default: false },
      {
        index: 1,
        codec: "aac",
        channels: 6,
        channelLayout: "5.1",
        sampleRate: 48000,
        language: "fr",
        title: "Français 5.1",
        default: true,
      },
    ]);
    expect(result.probe.subtitleStreams).toEqual([
      { index: 0, codec: "subrip", text: true, language: "de", default: false, forced: true },
      { index: 1, codec: "hdmv_pgs_subtitle", text: false, default: false, forced: false },
    ]);
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
