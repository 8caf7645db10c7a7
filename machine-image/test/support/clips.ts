/**
 * Source clips generated at test time with lavfi (testsrc2 + sine): short and small, each one a
 * case the machine must handle.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

const ffmpeg = (args: string[]) =>
  execFileAsync("ffmpeg", ["-hide_banner", "-nostdin", "-y", "-loglevel", "error", ...args]);

const video = (size: string, rate: number, seconds: number) => [
  "-f",
  "lavfi",
  "-i",
  `testsrc2=size=${size}:rate=${rate}:duration=${seconds}`,
];
const tone = (seconds: number) => ["-f", "lavfi", "-i", `sine=frequency=440:sample_rate=48000:duration=${seconds}`];
const fastH264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"];

const SUBTITLE_CUES = [
  "1\n00:00:01,000 --> 00:00:02,500\nHello there\n",
  "2\n00:00:05,500 --> 00:00:06,500\nAcross the boundary\n",
  "3\n00:00:07,000 --> 00:00:07,800\n<i>Last</i> line\n",
].join("\n");

export const clips = {
  /** 1080p, 30 fps, stereo-less sine audio, 3 s. */
  async landscape1080(dir: string, seconds = 3) {
    const path = join(dir, "landscape-1080p.mp4");
    await ffmpeg([...video("1920x1080", 30, seconds), ...tone(seconds), ...fastH264, "-c:a", "aac", "-shortest", path]);
    return path;
  },
  /** 960×540 coded, tagged to display rotated a quarter turn (540×960 portrait), 3 s. */
  async portraitRotated(dir: string) {
    const plain = join(dir, "portrait-plain.mp4");
    const path = join(dir, "portrait-rotated.mp4");
    await ffmpeg([...video("960x540", 30, 3), ...tone(3), ...fastH264, "-c:a", "aac", "-shortest", plain]);
    // ffmpeg 5.1 writes the display matrix from the `rotate` tag only when stream-copying.
    await ffmpeg(["-i", plain, "-c", "copy", "-metadata:s:v:0", "rotate=90", path]);
    return path;
  },
  /** 640×360 video without any audio stream, 2 s. */
  async noAudio(dir: string) {
    const path = join(dir, "no-audio.mp4");
    await ffmpeg([...video("640x360", 30, 2), ...fastH264, path]);
    return path;
  },
  /** AAC audio only (an .m4a), 3 s. */
  async audioOnly(dir: string) {
    const path = join(dir, "audio-only.m4a");
    await ffmpeg([...tone(3), "-c:a", "aac", path]);
    return path;
  },
  /** 321×241 at 8 fps with audio, 3 s: odd dimensions, below every rung, low frame rate. */
  async oddSize8fps(dir: string) {
    const path = join(dir, "odd-8fps.mp4");
    await ffmpeg([
      ...video("321x241", 8, 3),
      ...tone(3),
      "-c:v",
      "libx264",
      "-preset",
      "ultrafast",
      "-pix_fmt",
      "yuv444p",
      "-c:a",
      "aac",
      "-shortest",
      path,
    ]);
    return path;
  },
  /** 320×180 at 10 fps with audio, 11 s: long enough for several thumbnails, cheap to encode. */
  async smallLong(dir: string) {
    const path = join(dir, "small-long.mp4");
    await ffmpeg([...video("320x180", 10, 11), ...tone(11), ...fastH264, "-c:a", "aac", "-shortest", path]);
    return path;
  },
  /**
   * Non-square pixels: `size` coded, each pixel `sar` wide (e.g. NTSC 720×480 at 32:27 shows as
   * 16:9, at 8:9 as 4:3), with audio, 1 s.
   */
  async anamorphic(dir: string, size: string, sar: `${number}/${number}`) {
    const path = join(dir, `anamorphic-${size}-${sar.replace("/", "x")}.mp4`);
    await ffmpeg([
      "-f",
      "lavfi",
      "-i",
      `testsrc2=size=${size}:rate=25:duration=1,setsar=${sar}`,
      ...tone(1),
      ...fastH264,
      "-c:a",
      "aac",
      "-shortest",
      path,
    ]);
    return path;
  },
  /**
   * Interlaced 640×360, 25 frames/s of 50 moving fields, 1 s: top field first as broadcast MPEG-2
   * in MPEG-TS, or bottom field first as interlaced H.264 (DV's order). Combing shows on motion.
   */
  async interlaced(dir: string, order: "tff" | "bff") {
    const path = join(dir, order === "tff" ? "interlaced-tff.ts" : "interlaced-bff.mp4");
    const codec =
      order === "tff"
        ? ["-c:v", "mpeg2video", "-q:v", "3", "-flags", "+ilme+ildct", "-top", "1", "-c:a", "mp2"]
        : [...fastH264, "-flags", "+ilme+ildct", "-x264-params", "bff=1", "-c:a", "aac"];
    await ffmpeg([
      "-f",
      "lavfi",
      "-i",
      `testsrc2=size=640x360:rate=50:duration=1,interlace=scan=${order}`,
      ...tone(1),
      ...codec,
      "-shortest",
      path,
    ]);
    return path;
  },
  /**
   * What a phone records: 10-bit HEVC, BT.2020, PQ (with HDR10 mastering metadata for a 1000 nit
   * display) or HLG, made from the same 640×360 test pattern as `sdrReference`, 1 s with audio.
   */
  async hdr(dir: string, transfer: "pq" | "hlg") {
    const path = join(dir, `hdr-${transfer}.mp4`);
    const trc = transfer === "pq" ? "smpte2084" : "arib-std-b67";
    const x265 =
      transfer === "pq"
        ? "log-level=error:hdr10=1:master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50):max-cll=1000,400"
        : "log-level=error";
    await ffmpeg([
      "-f",
      "lavfi",
      "-i",
      `testsrc2=size=640x360:rate=25:duration=1,zscale=tin=bt709:min=bt709:pin=bt709:rin=tv:t=${trc}:m=bt2020nc:p=bt2020:r=tv:npl=100,format=yuv420p10le`,
      ...tone(1),
      ...["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", x265, "-tag:v", "hvc1"],
      ...["-color_primaries", "bt2020", "-color_trc", trc, "-colorspace", "bt2020nc"],
      ...["-c:a", "aac", "-shortest", path],
    ]);
    return path;
  },
  /** The SDR picture the HDR clips were made from: what a tone-mapped rendition should resemble. */
  async sdrReference(dir: string) {
    const path = join(dir, "sdr-reference.mp4");
    await ffmpeg([...video("640x360", 25, 1), ...fastH264, path]);
    return path;
  },
  /**
   * A dubbed film in miniature (Matroska, which keeps track titles): 320×180 video, an English mono
   * track (the default) and a French 5.1 track titled "Doublage" whose dialog is a 440 Hz tone in
   * the centre channel only, 1.5 s.
   */
  async twoLanguages(dir: string) {
    const path = join(dir, "two-languages.mkv");
    await ffmpeg([
      ...video("320x180", 25, 1.5),
      ...tone(1.5),
      ...["-f", "lavfi", "-i", "aevalsrc=0|0|0.5*sin(2*PI*440*t)|0|0|0:c=5.1:s=48000:d=1.5"],
      ...["-map", "0:v", "-map", "1:a", "-map", "2:a", ...fastH264, "-c:a", "aac"],
      ...["-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=fre", "-metadata:s:a:1", "title=Doublage"],
      ...["-disposition:a:0", "default", "-disposition:a:1", "0", "-shortest", path],
    ]);
    return path;
  },
  /**
   * Text subtitles, 320×180 at 10 fps for 8 s (two 6 s HLS segments): in Matroska an English
   * SubRip and a French ASS track titled "Français (forcés)", or in MP4 an English mov_text track.
   * Cues: 1.0–2.5 s, 5.5–6.5 s (across the segment boundary), 7.0–7.8 s.
   */
  async subtitled(dir: string, container: "mkv" | "mp4") {
    const srt = join(dir, "cues.srt");
    await writeFile(srt, SUBTITLE_CUES);
    const ass = join(dir, "cues.ass");
    await ffmpeg(["-i", srt, ass]);
    const path = join(dir, `subtitled.${container}`);
    const tracks =
      container === "mkv"
        ? [
            ...["-i", srt, "-i", ass, "-map", "0:v", "-map", "1:s", "-map", "2:s", "-c:s:0", "srt", "-c:s:1", "ass"],
            ...["-metadata:s:s:0", "language=eng", "-metadata:s:s:1", "language=fre"],
            ...["-metadata:s:s:1", "title=Français (forcés)", "-disposition:s:1", "forced"],
          ]
        : ["-i", srt, "-map", "0:v", "-map", "1:s", "-c:s", "mov_text", "-metadata:s:s:0", "language=eng"];
    await ffmpeg([...video("320x180", 10, 8), ...tracks, ...fastH264, path]);
    return path;
  },
  /**
   * A quiet programme, 5 s (loudnorm measures in 3 s windows): 320×180 video, a mono tone at about
   * −42 LUFS and stereo pink noise at about −45 LUFS, two audio streams to normalize.
   */
  async quiet(dir: string) {
    const path = join(dir, "quiet.mkv");
    await ffmpeg([
      ...video("320x180", 10, 5),
      "-f",
      "lavfi",
      "-i",
      "sine=frequency=440:sample_rate=48000:duration=5,volume=-20dB",
      "-f",
      "lavfi",
      "-i",
      "anoisesrc=color=pink:amplitude=0.02:sample_rate=48000:duration=5,aformat=channel_layouts=stereo",
      "-map",
      "0:v",
      "-map",
      "1:a",
      "-map",
      "2:a",
      ...fastH264,
      "-c:a",
      "aac",
      "-b:a",
      "96k",
      path,
    ]);
    return path;
  },
  /** The first half of an MP4 whose index (moov) is at the end: unreadable. */
  async truncated(dir: string) {
    const whole = join(dir, "whole.mp4");
    const path = join(dir, "truncated.mp4");
    await ffmpeg([...video("320x180", 30, 2), ...tone(2), ...fastH264, "-c:a", "aac", "-shortest", whole]);
    const bytes = await readFile(whole);
    await writeFile(path, bytes.subarray(0, Math.floor(bytes.length / 2)));
    return path;
  },
  /** Random bytes wearing an .mp4 name. */
  async randomBytes(dir: string) {
    const path = join(dir, "random.mp4");
    await writeFile(path, randomBytes(64 * 1024));
    return path;
  },
};
