/** Short clips made by real ffmpeg at test time. */
import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { promisify } from "node:util";

const run = promisify(execFile);

export async function makeClip(
  path: string,
  { seconds = 2, size = "320x240", rate = 25 as number | string } = {},
): Promise<string> {
  await run("ffmpeg", [
    ...["-hide_banner", "-loglevel", "error", "-y"],
    ...["-f", "lavfi", "-i", `testsrc2=size=${size}:rate=${rate}:duration=${seconds}`],
    ...["-f", "lavfi", "-i", `sine=frequency=330:sample_rate=48000:duration=${seconds}`],
    ...["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", path],
  ]);
  return path;
}

/** Bytes that are no media at all, under a name that says otherwise. */
export async function makeCorruptFile(path: string): Promise<string> {
  const bytes = new Uint8Array(64 * 1024);
  crypto.getRandomValues(bytes);
  await writeFile(path, bytes);
  return path;
}

export interface StreamInfo {
  codec_type: string;
  codec_name: string;
  width?: number;
  height?: number;
}

export async function ffprobe(target: string): Promise<{ streams: StreamInfo[]; format: { duration?: string } }> {
  const { stdout } = await run("ffprobe", ["-v", "error", "-show_streams", "-show_format", "-of", "json", target]);
  return JSON.parse(stdout) as { streams: StreamInfo[]; format: { duration?: string } };
}
