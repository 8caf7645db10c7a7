/**
 * Which renditions a source gets: the preset's ladder cut to the source (never upscaling),
 * sized to keep the displayed aspect ratio, with even dimensions H.264 needs.
 */
import type { DynamicRange, Preset, ProbeSummary, Rendition, SkippedSubtitle } from "@tcoder/worker/contract";
import { type PlannedAudio, planAudio } from "./audio-plan.ts";
import { type Conditioning, planConditioning } from "./conditioning.ts";
import { type PlannedSubtitle, planSubtitles } from "./subtitle-plan.ts";

export interface PlannedRendition {
  name: string;
  width: number;
  height: number;
  codec: Rendition["codec"];
  profile: Rendition["profile"];
  /** What the rendition shows: HEVC keeps the source's range, H.264 is always SDR (tone-mapped if need be). */
  dynamicRange: DynamicRange;
  videoBitrateKbps: number;
  maxrateKbps: number;
  bufsizeKbps: number;
}

export interface LadderPlan {
  /** Video renditions, tallest first; empty for audio-only sources. */
  renditions: PlannedRendition[];
  /** Alternate audio renditions, one stereo per source stream (+ 5.1); empty without audio. */
  audio: PlannedAudio[];
  /** Text subtitle streams, each a WebVTT rendition; image ones are in `skippedSubtitles`. */
  subtitles: PlannedSubtitle[];
  skippedSubtitles: SkippedSubtitle[];
  /** Output frame rate as ffmpeg's rational string and as a number. */
  frameRate: { expr: string; value: number } | null;
  /** Frames between keyframes; identical in every rendition so HLS can switch at any segment. */
  gopFrames: number;
  gopSeconds: number;
  /** What the source needs before scaling (deinterlace, tone-map); null without video. */
  conditioning: Conditioning | null;
}

const MAX_FRAME_RATE = 60;
const MIN_BITRATE_KBPS = 150;

// Down to even, never up: a one-pixel upscale is still an upscale, and H.264 4:2:0 needs even sides.
const even = (n: number) => Math.max(2, 2 * Math.floor(n / 2 + 1e-6));

/** Rational form ffmpeg keeps exact: 29.97 → 30000/1001, 8 → 8/1. */
export function frameRateExpr(fps: number): { expr: string; value: number } {
  const capped = Math.min(fps, MAX_FRAME_RATE);
  const ntsc = Math.round((capped * 1001) / 1000);
  if (Math.abs((ntsc * 1000) / 1001 - capped) < 0.005 && !Number.isInteger(capped))
    return { expr: `${ntsc * 1000}/1001`, value: (ntsc * 1000) / 1001 };
  const rounded = Math.round(capped * 1000) / 1000;
  if (Number.isInteger(rounded)) return { expr: `${rounded}/1`, value: rounded };
  return { expr: `${Math.round(rounded * 1000)}/1000`, value: rounded };
}

/** Size of a rung whose short side is `shortSide`, keeping the source's displayed aspect ratio. */
export function scaledSize(displayWidth: number, displayHeight: number, shortSide: number) {
  if (displayWidth >= displayHeight)
    return { width: even((displayWidth * shortSide) / displayHeight), height: even(shortSide) };
  return { width: even(shortSide), height: even((displayHeight * shortSide) / displayWidth) };
}

const planRung = (
  rung: Rendition,
  width: number,
  height: number,
  videoBitrateKbps: number,
  source: DynamicRange,
): PlannedRendition => ({
  name: rung.name,
  width,
  height,
  codec: rung.codec,
  profile: rung.profile,
  dynamicRange: rung.codec === "hevc" ? source : "sdr",
  videoBitrateKbps,
  maxrateKbps: Math.round(videoBitrateKbps * rung.maxrateFactor),
  bufsizeKbps: Math.round(videoBitrateKbps * rung.maxrateFactor * 2),
});

/** The rendition the progressive MP4 and the poster are made from: the tallest H.264 one (plays everywhere). */
export const primaryRendition = (plan: LadderPlan): PlannedRendition | undefined =>
  plan.renditions.find((r) => r.codec === "h264") ?? plan.renditions[0];

export function planLadder(preset: Preset, probe: ProbeSummary): LadderPlan {
  const audio = planAudio(preset, probe);
  const { renditions: subtitles, skipped: skippedSubtitles } = planSubtitles(probe);
  const video = probe.video;
  if (!video)
    return {
      renditions: [],
      audio,
      subtitles,
      skippedSubtitles,
      frameRate: null,
      gopFrames: 0,
      gopSeconds: preset.gopSeconds,
      conditioning: null,
    };

  const { displayWidth, displayHeight } = video;
  const shortSide = Math.min(displayWidth, displayHeight);
  const source = video.dynamicRange ?? "sdr";
  // Each codec is its own ladder (an HDR preset has HEVC rungs and an H.264 fallback), in preset order.
  const codecs = [...new Set(preset.renditions.map((r) => r.codec))];
  let renditions = codecs.flatMap((codec) => {
    const rungs = preset.renditions.filter((r) => r.codec === codec).sort((a, b) => b.height - a.height);
    const fitting = rungs
      .filter((rung) => rung.height <= shortSide)
      .map((rung) => {
        const size = scaledSize(displayWidth, displayHeight, rung.height);
        return planRung(rung, size.width, size.height, rung.videoBitrateKbps, source);
      });
    if (fitting.length > 0) return fitting;
    // Smaller than the smallest rung: one rendition at source size, its bitrate scaled by area.
    const smallest = rungs.at(-1) as Rendition;
    const width = even(displayWidth);
    const height = even(displayHeight);
    const rungArea = ((smallest.height * 16) / 9) * smallest.height;
    const kbps = Math.max(MIN_BITRATE_KBPS, Math.round((smallest.videoBitrateKbps * width * height) / rungArea));
    const name = `${Math.min(width, height)}p${codec === "hevc" ? "-hevc" : ""}`;
    return [{ ...planRung(smallest, width, height, kbps, source), name }];
  });
  if (renditions.length === 0) throw new Error(`preset ${preset.name} has no renditions`);
  // Without HLS only the progressive MP4 is published, and it is made from the primary rung alone.
  if (!preset.hls) {
    const primary = renditions.find((r) => r.codec === "h264") ?? (renditions[0] as PlannedRendition);
    renditions = [primary];
  }
  const frameRate = frameRateExpr(video.frameRate);
  return {
    renditions,
    audio,
    subtitles,
    skippedSubtitles,
    frameRate,
    gopFrames: Math.max(1, Math.round(frameRate.value * preset.gopSeconds)),
    gopSeconds: preset.gopSeconds,
    conditioning: planConditioning(video),
  };
}
