/**
 * What a source is, according to ffprobe, and whether this machine will transcode it.
 * Every way a source can be unacceptable ends as a `MediaRejection` with a stable code, so a bad
 * upload becomes a failed job and never a crashing (and re-claiming) machine.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import type { JobErrorCode, ProbeSummary } from "@tcoder/worker/contract";
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
  channels: z.number().optional(),
  sample_rate: z.string().optional(),
  duration: z.string().optional(),
  tags: z.record(z.string(), z.string()).optional(),
  side_data_list: z.array(z.looseObject({ rotation: z.number().optional() })).optional(),
  disposition: z.looseObject({ attached_pic: z.number().optional() }).optional(),
});

export const FfprobeOutput = z.object({
  streams: z.array(ffprobeStream).default([]),
  format: z
    .looseObject({
      format_name: z.string().optional(),
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
const rotationOf = (stream: z.infer<typeof ffprobeStream>): number => {
  const raw = stream.side_data_list?.find((s) => s.rotation !== undefined)?.rotation ?? toNumber(stream.tags?.rotate);
  if (raw === undefined) return 0;
  return (((Math.round(raw / 90) * 90) % 360) + 360) % 360;
};

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
  const audioStream = output.streams.find((s) => s.codec_type === "audio");
  const duration =
    toNumber(output.format?.duration) ?? toNumber(videoStream?.duration) ?? toNumber(audioStream?.duration) ?? 0;
  const bitRate = toNumber(output.format?.bit_rate);

  let video: ProbeSummary["video"];
  if (videoStream?.width && videoStream.height) {
    const rotation = rotationOf(videoStream);
    const quarterTurn = rotation === 90 || rotation === 270;
    video = {
      codec: videoStream.codec_name ?? "unknown",
      width: videoStream.width,
      height: videoStream.height,
      displayWidth: quarterTurn ? videoStream.height : videoStream.width,
      displayHeight: quarterTurn ? videoStream.width : videoStream.height,
      rotation,
      frameRate: parseRate(videoStream.avg_frame_rate) ?? parseRate(videoStream.r_frame_rate) ?? 25,
      ...(videoStream.pix_fmt ? { pixelFormat: videoStream.pix_fmt } : {}),
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

  const probe: ProbeSummary = {
    formatName,
    durationSeconds: Math.max(0, duration),
    sizeBytes,
    ...(bitRate !== undefined ? { bitRate: Math.round(bitRate) } : {}),
    ...(video ? { video } : {}),
    ...(audio ? { audio } : {}),
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
