/**
 * What a source is, according to ffprobe, and whether this machine will transcode it.
 * Every way a source can be unacceptable ends as a `MediaRejection` with a stable code, so a bad
 * upload becomes a failed job and never a crashing (and re-claiming) machine.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import {
  type AudioStreamSummary,
  type DynamicRange,
  type JobErrorCode,
  languageTag,
  type ProbeSummary,
  type SubtitleStreamSummary,
} from "@tcoder/worker/contract";
import { z } from "zod";

const execFileAsync = promisify(execFile);

const ffprobeStream = z.looseObject({
  codec_type: z.string().optional(),
  codec_name: z.string().optional(),
  width: z.number().optional(),
  height: z.number().optional(),
  pix_fmt: z.string().optional(),
  avg_frame_rate: z.string().optional(),
  r_frame_rate: z.string().optional(),
  sample_aspect_ratio: z.string().optional(),
  field_order: z.string().optional(),
  color_primaries: z.string().optional(),
  color_transfer: z.string().optional(),
  color_space: z.string().optional(),
  channels: z.number().optional(),
  channel_layout: z.string().optional(),
  sample_rate: z.string().optional(),
  duration: z.string().optional(),
  tags: z.record(z.string(), z.string()).optional(),
  side_data_list: z.array(z.looseObject({ rotation: z.number().optional() })).optional(),
  disposition: z
    .looseObject({ attached_pic: z.number().optional(), default: z.number().optional(), forced: z.number().optional() })
    .optional(),
});
type FfprobeStream = z.infer<typeof ffprobeStream>;

export const FfprobeOutput = z.object({
  streams: z.array(ffprobeStream).default([]),
  format: z
    .looseObject({
      format_name: z.string().optional(),
      start_time: z.string().optional(),
      duration: z.string().optional(),
      size: z.string().optional(),
      bit_rate: z.string().optional(),
      probe_score: z.number().optional(),
    })
    .optional(),
});
export type FfprobeOutput = z.infer<typeof FfprobeOutput>;

export interface MediaRejection {
  code: Extract<JobErrorCode, "invalid_media" | "unsupported" | "too_large">;
  message: string;
}

export type ProbeResult = { ok: true; probe: ProbeSummary } | ({ ok: false; probe?: ProbeSummary } & MediaRejection);

export interface MediaLimits {
  maxDurationSeconds: number;
  maxPixels: number;
}

const parseRate = (rate: string | undefined): number | undefined => {
  if (!rate) return undefined;
  const [num, den] = rate.split("/").map(Number);
  if (num === undefined || !Number.isFinite(num) || num <= 0) return undefined;
  const value = den === undefined ? num : den > 0 ? num / den : Number.NaN;
  return Number.isFinite(value) && value > 0 ? value : undefined;
};

const toNumber = (value: string | undefined): number | undefined => {
  if (value === undefined) return undefined;
  const n = Number(value);
  return Number.isFinite(n) ? n : undefined;
};

/** Rotation in degrees, normalised to 0/90/180/270, from the display matrix or the legacy tag. */
const rotationOf = (stream: FfprobeStream): number => {
  const raw = stream.side_data_list?.find((s) => s.rotation !== undefined)?.rotation ?? toNumber(stream.tags?.rotate);
  if (raw === undefined) return 0;
  return (((Math.round(raw / 90) * 90) % 360) + 360) % 360;
};

/** The sample aspect ratio as [num, den] when pixels are not square; ffprobe says `0:1` or `N/A` for unknown. */
const sampleAspectOf = (stream: FfprobeStream): [number, number] | undefined => {
  const [num, den] = (stream.sample_aspect_ratio ?? "").split(":").map(Number);
  if (!num || !den || !Number.isFinite(num) || !Number.isFinite(den) || num <= 0 || den <= 0 || num === den)
    return undefined;
  return [num, den];
};

/** PQ (SMPTE ST 2084) and HLG (ARIB STD-B67) are the HDR transfers; everything else is shown as SDR. */
const dynamicRangeOf = (transfer: string | undefined): DynamicRange =>
  transfer === "smpte2084" ? "pq" : transfer === "arib-std-b67" ? "hlg" : "sdr";

const known = (value: string | undefined) => (value && value !== "unknown" ? value : undefined);

// Bitmap subtitles: they cannot become text (WebVTT) without OCR, so they are reported as skipped.
const IMAGE_SUBTITLE_CODECS = new Set(["hdmv_pgs_subtitle", "dvb_subtitle", "dvd_subtitle", "xsub", "dvb_teletext"]);

const tagOf = (stream: FfprobeStream, name: string) => {
  const value = stream.tags?.[name] ?? stream.tags?.[name.toUpperCase()];
  return value?.trim() ? value.trim() : undefined;
};

/** The stream flagged default, else the first: what a player without a track menu should get. */
const defaultIndex = (streams: FfprobeStream[]) =>
  Math.max(
    0,
    streams.findIndex((s) => s.disposition?.default === 1),
  );

function summarizeAudioStreams(streams: FfprobeStream[]): AudioStreamSummary[] {
  const chosen = defaultIndex(streams);
  return streams.map((s, index) => {
    const language = languageTag(tagOf(s, "language"));
    const title = tagOf(s, "title") ?? tagOf(s, "handler_name");
    return {
      index,
      codec: s.codec_name ?? "unknown",
      channels: Math.max(1, s.channels ?? 2),
      ...(s.channel_layout ? { channelLayout: s.channel_layout } : {}),
      sampleRate: Math.max(1, Math.round(toNumber(s.sample_rate) ?? 48_000)),
      ...(language ? { language } : {}),
      // MP4 muxers name every track "SoundHandler": a handler name only counts when it says something.
      ...(title && !/^(Sound|Video|Subtitle)Handler$/i.test(title) ? { title } : {}),
      default: index === chosen,
    };
  });
}

function summarizeSubtitleStreams(streams: FfprobeStream[]): SubtitleStreamSummary[] {
  return streams.map((s, index) => {
    const codec = s.codec_name ?? "unknown";
    const language = languageTag(tagOf(s, "language"));
    const title = tagOf(s, "title");
    return {
      index,
      codec,
      text: !IMAGE_SUBTITLE_CODECS.has(codec) && codec !== "unknown",
      ...(language ? { language } : {}),
      ...(title && !/^SubtitleHandler$/i.test(title) ? { title } : {}),
      default: s.disposition?.default === 1,
      forced: s.disposition?.forced === 1,
    };
  });
}

/**
 * At or below this probe score ffmpeg itself warns "detected only with low score, misdetection
 * possible" (AVPROBE_SCORE_RETRY): random bytes now and then read as lyrics text or a raw H.263
 * stream that way. Real files score far higher.
 */
const MISDETECTION_SCORE = 25;

/** Turns ffprobe's JSON into the contract's ProbeSummary, or says why the source is unusable. */
export function summarizeProbe(output: FfprobeOutput, sizeBytes: number, limits: MediaLimits): ProbeResult {
  const formatName = output.format?.format_name;
  if (!formatName) return { ok: false, code: "invalid_media", message: "ffprobe found no container format" };
  const score = output.format?.probe_score;
  if (score !== undefined && score <= MISDETECTION_SCORE)
    return {
      ok: false,
      code: "invalid_media",
      message: `not a readable media file: only a weak guess of ${formatName} (probe score ${score})`,
    };
  // Cover art is a video stream in ffprobe's eyes but not something to transcode.
  const videoStream = output.streams.find((s) => s.codec_type === "video" && s.disposition?.attached_pic !== 1);
  const audioStreams = output.streams.filter((s) => s.codec_type === "audio");
  const audioStream = audioStreams[defaultIndex(audioStreams)];
  const subtitleStreams = output.streams.filter((s) => s.codec_type === "subtitle");
  const duration =
    toNumber(output.format?.duration) ?? toNumber(videoStream?.duration) ?? toNumber(audioStream?.duration) ?? 0;
  const bitRate = toNumber(output.format?.bit_rate);

  let video: ProbeSummary["video"];
  if (videoStream?.width && videoStream.height) {
    const rotation = rotationOf(videoStream);
    const quarterTurn = rotation === 90 || rotation === 270;
    // Non-square pixels stretch the width (ffmpeg's convention: the height is the scan lines), then
    // a quarter turn swaps the sides.
    const sar = sampleAspectOf(videoStream);
    const width = sar ? Math.max(1, Math.round((videoStream.width * sar[0]) / sar[1])) : videoStream.width;
    const height = videoStream.height;
    const fieldOrder = known(videoStream.field_order);
    const colorPrimaries = known(videoStream.color_primaries);
    const colorTransfer = known(videoStream.color_transfer);
    const colorSpace = known(videoStream.color_space);
    video = {
      codec: videoStream.codec_name ?? "unknown",
      width: videoStream.width,
      height: videoStream.height,
      displayWidth: quarterTurn ? height : width,
      displayHeight: quarterTurn ? width : height,
      rotation,
      frameRate: parseRate(videoStream.avg_frame_rate) ?? parseRate(videoStream.r_frame_rate) ?? 25,
      ...(videoStream.pix_fmt ? { pixelFormat: videoStream.pix_fmt } : {}),
      ...(sar ? { sampleAspectRatio: `${sar[0]}:${sar[1]}` } : {}),
      ...(fieldOrder ? { fieldOrder } : {}),
      dynamicRange: dynamicRangeOf(colorTransfer),
      ...(colorPrimaries ? { colorPrimaries } : {}),
      ...(colorTransfer ? { colorTransfer } : {}),
      ...(colorSpace ? { colorSpace } : {}),
    };
  }
  let audio: ProbeSummary["audio"];
  if (audioStream) {
    audio = {
      codec: audioStream.codec_name ?? "unknown",
      channels: Math.max(1, audioStream.channels ?? 2),
      sampleRate: Math.max(1, Math.round(toNumber(audioStream.sample_rate) ?? 48_000)),
    };
  }

  const startSeconds = toNumber(output.format?.start_time);
  const probe: ProbeSummary = {
    formatName,
    durationSeconds: Math.max(0, duration),
    ...(startSeconds !== undefined && startSeconds !== 0 ? { startSeconds } : {}),
    sizeBytes,
    ...(bitRate !== undefined ? { bitRate: Math.round(bitRate) } : {}),
    ...(video ? { video } : {}),
    ...(audio ? { audio } : {}),
    ...(audioStreams.length > 0 ? { audioStreams: summarizeAudioStreams(audioStreams) } : {}),
    ...(subtitleStreams.length > 0 ? { subtitleStreams: summarizeSubtitleStreams(subtitleStreams) } : {}),
  };

  if (!video && !audio)
    return { ok: false, probe, code: "unsupported", message: `no video or audio stream in ${formatName}` };
  if (!(probe.durationSeconds > 0))
    return { ok: false, probe, code: "invalid_media", message: "source has zero duration" };
  if (probe.durationSeconds > limits.maxDurationSeconds)
    return {
      ok: false,
      probe,
      code: "too_large",
      message: `duration ${probe.durationSeconds.toFixed(1)} s exceeds the limit of ${limits.maxDurationSeconds} s`,
    };
  if (video && video.width * video.height > limits.maxPixels)
    return {
      ok: false,
      probe,
      code: "too_large",
      message: `frame ${video.width}×${video.height} exceeds the limit of ${limits.maxPixels} pixels`,
    };
  return { ok: true, probe };
}

/** Runs ffprobe on a local file. A file ffprobe cannot read is `invalid_media` with its reason. */
export async function probeFile(path: string, sizeBytes: number, limits: MediaLimits): Promise<ProbeResult> {
  let stdout: string;
  try {
    ({ stdout } = await execFileAsync(
      "ffprobe",
      ["-v", "error", "-show_format", "-show_streams", "-of", "json", path],
      { maxBuffer: 16 * 1024 * 1024 },
    ));
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim();
    const reason =
      stderr?.split("\n").slice(-2).join("; ").replaceAll(`${path}: `, "") || "ffprobe could not read the file";
    return { ok: false, code: "invalid_media", message: `not a readable media file: ${reason}` };
  }
  let json: unknown;
  try {
    json = JSON.parse(stdout);
  } catch {
    return { ok: false, code: "invalid_media", message: "ffprobe produced no readable description" };
  }
  const parsed = FfprobeOutput.safeParse(json);
  if (!parsed.success) return { ok: false, code: "invalid_media", message: "ffprobe output had an unexpected shape" };
  return summarizeProbe(parsed.data, sizeBytes, limits);
}
