/** Reads a published package back: download it, and ask ffprobe what is really in it. */
import { execFile } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { GetObjectCommand, HeadObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { listKeys } from "../../src/storage/s3.ts";

const execFileAsync = promisify(execFile);

/** Downloads every object under `prefix` into `dir`, keeping the key as the relative path. */
export async function downloadPrefix(s3: S3Client, bucket: string, prefix: string, dir: string): Promise<string[]> {
  const keys = await listKeys(s3, bucket, prefix);
  for (const key of keys) {
    const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    const path = join(dir, key);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(
      path,
      await (object.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
    );
  }
  return keys.sort();
}

export async function headObject(s3: S3Client, bucket: string, key: string) {
  const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
  return { contentType: head.ContentType, cacheControl: head.CacheControl };
}

export interface MediaFacts {
  durationSeconds: number;
  video?: {
    width: number;
    height: number;
    frameRate: number;
    rotation: number;
    codec: string;
    /** `1:1` for square pixels (ffprobe's `0:1`, unknown, counts as square too). */
    sampleAspectRatio: string;
    /** Width ÷ height as displayed: sample aspect ratio applied. */
    displayAspect: number;
    colorPrimaries?: string;
    colorTransfer?: string;
    colorSpace?: string;
    pixelFormat?: string;
    profile?: string;
    /** The sample entry: `avc1`, `hvc1`, … */
    codecTag?: string;
  };
  audio?: { codec: string; channels: number };
}

export async function mediaFacts(path: string): Promise<MediaFacts> {
  const { stdout } = await execFileAsync("ffprobe", [
    "-v",
    "error",
    "-show_format",
    "-show_streams",
    "-of",
    "json",
    path,
  ]);
  const json = JSON.parse(stdout) as {
    format: { duration: string };
    streams: {
      codec_type: string;
      codec_name: string;
      width?: number;
      height?: number;
      avg_frame_rate?: string;
      r_frame_rate?: string;
      channels?: number;
      side_data_list?: { rotation?: number }[];
      sample_aspect_ratio?: string;
      color_primaries?: string;
      color_transfer?: string;
      color_space?: string;
      pix_fmt?: string;
      profile?: string;
      codec_tag_string?: string;
    }[];
  };
  const v = json.streams.find((s) => s.codec_type === "video");
  const a = json.streams.find((s) => s.codec_type === "audio");
  const rate = (r?: string) => {
    const [n, d] = (r ?? "0/1").split("/").map(Number);
    return (n ?? 0) / (d || 1);
  };
  const sar = (r?: string) => (!r || r === "0:1" || r === "N/A" ? "1:1" : r);
  return {
    durationSeconds: Number(json.format.duration),
    ...(v
      ? {
          video: {
            width: v.width ?? 0,
            height: v.height ?? 0,
            frameRate: rate(v.avg_frame_rate) || rate(v.r_frame_rate),
            rotation: v.side_data_list?.find((s) => s.rotation !== undefined)?.rotation ?? 0,
            codec: v.codec_name,
            sampleAspectRatio: sar(v.sample_aspect_ratio),
            displayAspect: ((v.width ?? 0) * rate(sar(v.sample_aspect_ratio).replace(":", "/"))) / (v.height || 1),
            ...(v.color_primaries ? { colorPrimaries: v.color_primaries } : {}),
            ...(v.color_transfer ? { colorTransfer: v.color_transfer } : {}),
            ...(v.color_space ? { colorSpace: v.color_space } : {}),
            ...(v.pix_fmt ? { pixelFormat: v.pix_fmt } : {}),
            ...(v.profile ? { profile: v.profile } : {}),
            ...(v.codec_tag_string ? { codecTag: v.codec_tag_string } : {}),
          },
        }
      : {}),
    ...(a ? { audio: { codec: a.codec_name, channels: a.channels ?? 0 } } : {}),
  };
}

/** Presentation times (s, 3 decimals) of the video keyframes. */
export async function keyframeTimes(path: string): Promise<string[]> {
  const { stdout } = await execFileAsync("ffprobe", [
    "-v",
    "error",
    "-select_streams",
    "v:0",
    "-skip_frame",
    "nokey",
    "-show_entries",
    "frame=pts_time",
    "-of",
    "csv=p=0",
    path,
  ]);
  return stdout
    .split("\n")
    .map((l) => l.trim().replace(/,$/, ""))
    .filter(Boolean)
    .map((t) => Number(t).toFixed(3));
}

/** True when the `moov` box comes before `mdat` (progressive playback starts before the download ends). */
export function isFaststart(bytes: Uint8Array): boolean {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let offset = 0;
  while (offset + 8 <= bytes.length) {
    const size = view.getUint32(offset);
    const type = String.fromCharCode(...bytes.subarray(offset + 4, offset + 8));
    if (type === "moov") return true;
    if (type === "mdat") return false;
    if (size < 8) return false;
    offset += size;
  }
  return false;
}

/** What ffmpeg logs while running one stream of a file through an analysis filter (idet, astats, ebur128). */
async function analysisLog(path: string, stream: string, filter: { video: string } | { audio: string }) {
  const [flag, graph] = "video" in filter ? ["-vf", filter.video] : ["-af", filter.audio];
  const { stderr } = await execFileAsync("ffmpeg", [
    "-hide_banner",
    "-nostats",
    "-i",
    path,
    "-map",
    stream,
    flag,
    graph,
    "-f",
    "null",
    "-",
  ]);
  return stderr;
}

/** ffmpeg's interlace detector over the whole file: frames it judged top/bottom field first or progressive. */
export async function interlaceDetection(path: string): Promise<{ tff: number; bff: number; progressive: number }> {
  const stderr = await analysisLog(path, "0:v:0", { video: "idet" });
  const line = /Multi frame detection: TFF:\s*(\d+) BFF:\s*(\d+) Progressive:\s*(\d+)/.exec(stderr);
  if (!line) throw new Error(`idet printed no multi-frame detection for ${path}`);
  return { tff: Number(line[1]), bff: Number(line[2]), progressive: Number(line[3]) };
}

/** Mean luma (0–255) and mean saturation of the first frame, by ffmpeg's signalstats. */
export async function firstFrameStats(path: string): Promise<{ luma: number; saturation: number }> {
  const { stdout } = await execFileAsync("ffmpeg", [
    "-hide_banner",
    "-nostats",
    "-i",
    path,
    "-map",
    "0:v:0",
    "-frames:v",
    "1",
    "-vf",
    "format=yuv420p,signalstats,metadata=print:file=-",
    "-f",
    "null",
    "-",
  ]);
  const value = (key: string) => Number(new RegExp(`lavfi\\.signalstats\\.${key}=([\\d.]+)`).exec(stdout)?.[1]);
  return { luma: value("YAVG"), saturation: value("SATAVG") };
}

/** Side data types (e.g. `Mastering display metadata`) on the first video frame. */
export async function firstFrameSideData(path: string): Promise<string[]> {
  const { stdout } = await execFileAsync("ffprobe", [
    "-v",
    "error",
    "-select_streams",
    "v:0",
    "-read_intervals",
    "%+#1",
    "-show_frames",
    "-of",
    "json",
    path,
  ]);
  const frames = (JSON.parse(stdout) as { frames?: { side_data_list?: { side_data_type?: string }[] }[] }).frames;
  return (frames?.[0]?.side_data_list ?? []).map((s) => s.side_data_type ?? "");
}

/** Every audio stream: codec, channels, language tag and whether it is the default track. */
export async function audioStreams(path: string) {
  const { stdout } = await execFileAsync("ffprobe", [
    "-v",
    "error",
    "-select_streams",
    "a",
    "-show_entries",
    "stream=codec_name,channels:stream_tags=language:stream_disposition=default",
    "-of",
    "json",
    path,
  ]);
  const streams = (
    JSON.parse(stdout) as {
      streams: {
        codec_name: string;
        channels: number;
        tags?: { language?: string };
        disposition?: { default?: number };
      }[];
    }
  ).streams;
  return streams.map((s) => ({
    codec: s.codec_name,
    channels: s.channels,
    language: s.tags?.language,
    default: s.disposition?.default === 1,
  }));
}

/** RMS level (dBFS) of each channel of the first audio stream, by ffmpeg's astats. */
export async function channelRmsLevels(path: string): Promise<number[]> {
  const stderr = await analysisLog(path, "0:a:0", {
    audio: "astats=measure_overall=none:measure_perchannel=RMS_level",
  });
  return [...stderr.matchAll(/RMS level dB: (-?[\d.]+|-inf)/g)].map((m) =>
    m[1] === "-inf" ? -Infinity : Number(m[1]),
  );
}

/** Integrated loudness (LUFS) of one audio stream, by ffmpeg's EBU R128 meter (ebur128). */
export async function integratedLoudness(path: string, stream = "0:a:0"): Promise<number> {
  const stderr = await analysisLog(path, stream, { audio: "ebur128=framelog=verbose" });
  const summary = stderr.slice(stderr.lastIndexOf("Integrated loudness:"));
  const match = /I:\s+(-?[\d.]+|-inf) LUFS/.exec(summary);
  if (!match) throw new Error(`no integrated loudness in ebur128's summary for ${path}`);
  return match[1] === "-inf" ? -Infinity : Number(match[1]);
}

/** Decodes every stream of a file or manifest to nowhere; returns the streams ffmpeg found. */
export async function decodeAll(path: string): Promise<{ type: string; codec: string }[]> {
  await execFileAsync("ffmpeg", [
    "-hide_banner",
    "-nostats",
    "-v",
    "error",
    "-xerror",
    "-i",
    path,
    "-map",
    "0",
    "-f",
    "null",
    "-",
  ]);
  const { stdout } = await execFileAsync("ffprobe", [
    "-v",
    "error",
    "-show_entries",
    "stream=codec_type,codec_name",
    "-of",
    "json",
    path,
  ]);
  return (JSON.parse(stdout) as { streams: { codec_type: string; codec_name: string }[] }).streams.map((s) => ({
    type: s.codec_type,
    codec: s.codec_name,
  }));
}
