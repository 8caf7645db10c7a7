/** Real media made by ffmpeg at test time. */
import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
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

/**
 * A film as people upload them, in Matroska: H.264 video, English (440 Hz) and French (660 Hz,
 * the source's second track) audio, and French SubRip subtitles with "Bonjour" from 1 to 3 s.
 */
export async function makeMultilingualClip(path: string, { seconds = 8, size = "640x360" } = {}): Promise<string> {
  const srt = `${path}.fr.srt`;
  await writeFile(srt, "1\n00:00:01,000 --> 00:00:03,000\nBonjour\n\n2\n00:00:06,500 --> 00:00:07,500\nAu revoir\n");
  await run("ffmpeg", [
    ...["-hide_banner", "-loglevel", "error", "-y"],
    ...["-f", "lavfi", "-i", `testsrc2=size=${size}:rate=25:duration=${seconds}`],
    ...["-f", "lavfi", "-i", `sine=frequency=440:sample_rate=48000:duration=${seconds}`],
    ...["-f", "lavfi", "-i", `sine=frequency=660:sample_rate=48000:duration=${seconds}`],
    ...["-i", srt, "-map", "0:v", "-map", "1:a", "-map", "2:a", "-map", "3:s"],
    ...["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "25", "-c:a", "aac", "-c:s", "srt"],
    ...["-metadata:s:a:0", "language=eng", "-metadata:s:a:0", "title=English"],
    ...["-metadata:s:a:1", "language=fre", "-metadata:s:a:1", "title=Français"],
    ...["-metadata:s:s:0", "language=fre", "-disposition:a:0", "default", "-disposition:a:1", "0", path],
  ]);
  return path;
}
