/** Facts about files this machine just encoded (codec profile/level, duration), via ffprobe. */
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

export interface EncodedStreamInfo {
  videoProfile?: string;
  videoLevel?: number;
  durationSeconds?: number;
}

export async function inspectEncoded(path: string): Promise<EncodedStreamInfo> {
  const { stdout } = await execFileAsync("ffprobe", [
    "-v",
    "error",
    "-show_entries",
    "stream=codec_type,profile,level:format=duration",
    "-of",
    "json",
    path,
  ]);
  const json = JSON.parse(stdout) as {
    streams?: { codec_type?: string; profile?: string; level?: number }[];
    format?: { duration?: string };
  };
  const video = json.streams?.find((s) => s.codec_type === "video");
  const duration = Number(json.format?.duration);
  return {
    ...(video?.profile ? { videoProfile: video.profile } : {}),
    ...(video?.level !== undefined ? { videoLevel: video.level } : {}),
    ...(Number.isFinite(duration) ? { durationSeconds: duration } : {}),
  };
}
