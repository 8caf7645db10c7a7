import { type Preset, type ProbeSummary, presets } from "@tcoder/worker/contract";
import { describe, expect, it } from "vitest";
import { frameRateExpr, planLadder } from "../src/media/ladder.ts";

const video = (displayWidth: number, displayHeight: number, frameRate = 30): ProbeSummary => ({
  formatName: "mov,mp4,m4a,3gp,3g2,mj2",
  durationSeconds: 10,
  sizeBytes: 1000,
  video: {
    codec: "h264",
    width: displayWidth,
    height: displayHeight,
    displayWidth,
    displayHeight,
    rotation: 0,
    frameRate,
  },
  audio: { codec: "aac", channels: 2, sampleRate: 48000 },
});

const sizes = (probe: ProbeSummary, preset: Preset = presets["hls-ladder"]) =>
  planLadder(preset, probe).renditions.map((r) => `${r.name}:${r.width}x${r.height}`);

describe("planLadder", () => {
  it("gives a 1080p source every rung of the ladder, tallest first", () => {
    expect(sizes(video(1920, 1080))).toEqual(["1080p:1920x1080", "720p:1280x720", "540p:960x540", "360p:640x360"]);
  });

  it("never upscales: rungs taller than the source are dropped", () => {
    expect(sizes(video(1280, 720))).toEqual(["720p:1280x720", "540p:960x540", "360p:640x360"]);
    expect(sizes(video(1000, 600))).toEqual(["540p:900x540", "360p:600x360"]);
  });

  it("keeps one rung at source size when the source is below the smallest rung, made even", () => {
    const plan = planLadder(presets["hls-ladder"], video(321, 241, 8));
    expect(plan.renditions).toHaveLength(1);
    expect(plan.renditions[0]).toMatchObject({ width: 320, height: 240, name: "240p" });
    expect(plan.renditions[0]?.videoBitrateKbps).toBeLessThan(800);
  });

  it("sizes portrait sources by their short side and keeps the aspect ratio", () => {
    expect(sizes(video(1080, 1920))).toEqual(["1080p:1080x1920", "720p:720x1280", "540p:540x960", "360p:360x640"]);
  });

  it("uses the same GOP in frames for every rendition, from the preset's seconds", () => {
    expect(planLadder(presets["hls-ladder"], video(1920, 1080, 30)).gopFrames).toBe(60);
    expect(planLadder(presets["hls-ladder"], video(320, 240, 8)).gopFrames).toBe(16);
  });

  it("plans audio only (no renditions) for a source without video", () => {
    const { video: _, ...audioOnly } = video(1, 1);
    const plan = planLadder(presets["hls-ladder"], audioOnly);
    expect(plan.renditions).toEqual([]);
    expect(plan.audio).toEqual([
      {
        name: "audio-0",
        sourceIndex: 0,
        group: "stereo",
        channels: 2,
        bitrateKbps: 128,
        sampleRate: 48000,
        label: "Audio 1",
        default: true,
      },
    ]);
  });

  it("plans no audio for a source without audio", () => {
    const { audio: _, ...silent } = video(1920, 1080);
    expect(planLadder(presets["hls-ladder"], silent).audio).toEqual([]);
  });

  it("keeps only the top rung for presets without HLS", () => {
    expect(sizes(video(1920, 1080), presets["mp4-720p"])).toEqual(["720p:1280x720"]);
  });
});

describe("frameRateExpr", () => {
  it("keeps NTSC rates exact and caps at 60", () => {
    expect(frameRateExpr(29.97)).toEqual({ expr: "30000/1001", value: 30000 / 1001 });
    expect(frameRateExpr(25)).toEqual({ expr: "25/1", value: 25 });
    expect(frameRateExpr(120).value).toBe(60);
  });
});

describe("planConditioning", () => {
  const source = (fields: Partial<NonNullable<ProbeSummary["video"]>>) => {
    const probe = video(1920, 1080);
    return planLadder(presets["hls-ladder"], {
      ...probe,
      video: { ...(probe.video as NonNullable<ProbeSummary["video"]>), ...fields },
    }).conditioning;
  };

  it("deinterlaces sources whose field order says interlaced, and never progressive or unknown ones", () => {
    for (const fieldOrder of ["tt", "bb", "tb", "bt"]) expect(source({ fieldOrder })?.deinterlace).toBe(true);
    expect(source({ fieldOrder: "progressive" })?.deinterlace).toBe(false);
    expect(source({})?.deinterlace).toBe(false);
  });

  it("takes the YCbCr matrix from the tags, else BT.709 for HD and BT.601 for SD", () => {
    expect(source({ colorSpace: "smpte170m" })?.matrix).toBe("bt601");
    expect(source({ colorSpace: "bt2020nc" })?.matrix).toBe("bt2020");
    expect(source({})?.matrix).toBe("bt709");
    expect(source({ width: 720, height: 576 })?.matrix).toBe("bt601");
  });
});

describe("planAudio", () => {
  const stream = (index: number, channels: number, extra: object = {}) => ({
    index,
    codec: "aac",
    channels,
    sampleRate: 48000,
    default: index === 0,
    ...extra,
  });

  it("gives every stream a stereo rendition and surround streams a 5.1 one where the preset allows", () => {
    const probe = {
      ...video(1920, 1080),
      audioStreams: [stream(0, 2, { language: "en" }), stream(1, 6, { language: "de" })],
    };
    const plan = planLadder(presets["hls-ladder"], probe).audio;
    expect(plan.map((a) => [a.name, a.group, a.channels, a.bitrateKbps, a.label])).toEqual([
      ["audio-0", "stereo", 2, 128, "English"],
      ["audio-1", "stereo", 2, 128, "German"],
      ["audio-1-5.1", "surround", 6, 384, "German"],
    ]);
    expect(planLadder(presets["hls-small"], probe).audio.map((a) => a.name)).toEqual(["audio-0", "audio-1"]);
  });

  it("keeps names unique in a group", () => {
    const probe = {
      ...video(1920, 1080),
      audioStreams: [stream(0, 2, { language: "en" }), stream(1, 2, { language: "en" })],
    };
    expect(planLadder(presets["hls-ladder"], probe).audio.map((a) => a.label)).toEqual(["English", "English (2)"]);
  });
});

describe("planSubtitles", () => {
  it("plans text streams as WebVTT renditions and reports image streams as skipped", () => {
    const probe: ProbeSummary = {
      ...video(1920, 1080),
      subtitleStreams: [
        { index: 0, codec: "subrip", text: true, language: "en", default: true, forced: false },
        { index: 1, codec: "hdmv_pgs_subtitle", text: false, language: "de", default: false, forced: false },
        { index: 2, codec: "dvb_subtitle", text: false, default: false, forced: false },
      ],
    };
    const plan = planLadder(presets["hls-ladder"], probe);
    expect(plan.subtitles).toEqual([
      { name: "subs-0", sourceIndex: 0, label: "English", language: "en", default: true, forced: false },
    ]);
    expect(plan.skippedSubtitles).toEqual([
      {
        index: 1,
        codec: "hdmv_pgs_subtitle",
        language: "de",
        reason: "hdmv_pgs_subtitle subtitles are images; only text subtitles become WebVTT",
      },
      {
        index: 2,
        codec: "dvb_subtitle",
        reason: "dvb_subtitle subtitles are images; only text subtitles become WebVTT",
      },
    ]);
  });
});
