/** Real media made by ffmpeg at test time. */
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

/** A short H.264/AAC MP4. */
export async function makeClip(path: string, { seconds = 2, size = "320x240" } = {}): Promise<string> {
  await run("ffmpeg", [
    ...["-hide_banner", "-loglevel", "error", "-y"],
    ...["-f", "lavfi", "-i", `testsrc2=size=${size}:rate=25:duration=${seconds}`],
    ...["-f", "lavfi", "-i", `sine=frequency=330:sample_rate=48000:duration=${seconds}`],
    ...["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "25", "-c:a", "aac", "-shortest", path],
  ]);
  return path;
}

/**
 * Uncompressed 1080p video in Matroska: `frames` × 3,110,400 bytes of real, decodable media, so a
 * large source costs no encoding time to make and very little to transcode (40 frames ≈ 124 MB,
 * 1.6 s of video).
 */
export async function makeRawClip(path: string, frames: number): Promise<string> {
  await run("ffmpeg", [
    ...["-hide_banner", "-loglevel", "error", "-y"],
    ...["-f", "lavfi", "-i", `testsrc2=size=1920x1080:rate=25`],
    ...["-frames:v", String(frames), "-c:v", "rawvideo", "-pix_fmt", "yuv420p", path],
  ]);
  return path;
}
