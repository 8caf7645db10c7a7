/**
 * The one ffmpeg command that turns a source into every output of a preset: a single decode,
 * `split` into one `scale` per rendition (plus thumbnails and a poster), every rendition encoded
 * with the same fixed GOP so segment boundaries line up across the ladder.
 */
import { join } from "node:path";
import type { Preset } from "@tcoder/worker/contract";
import { headFilters } from "./conditioning.ts";
import type { LadderPlan, PlannedRendition } from "./ladder.ts";
import { ffmpegQuiet } from "./run-ffmpeg.ts";

export type X264Preset = "ultrafast" | "superfast" | "veryfast" | "faster" | "fast" | "medium" | "slow";

/** Where the command writes, relative to its work directory. Packaging reads the same layout. */
export const workLayout = {
  hlsDir: (rendition: string) => join("hls", rendition),
  playlist: (rendition: string) => join("hls", rendition, "playlist.m3u8"),
  segmentPattern: (rendition: string) => join("hls", rendition, "seg_%05d.m4s"),
  initSegment: "init.mp4",
  /** Progressive MP4 written directly by presets without HLS. */
  directMp4: "direct.mp4",
  thumbsDir: "thumbs",
  thumbPattern: join("thumbs", "t_%05d.jpg"),
  poster: "poster.jpg",
} as const;

/** Name of the audio-only rendition (audio-only sources). */
export const AUDIO_RENDITION = "audio";

export interface TranscodeSpec {
  inputPath: string;
  workDir: string;
  preset: Preset;
  plan: LadderPlan;
  durationSeconds: number;
  x264Preset: X264Preset;
  /** Thumbnail size (width × height); null when the preset has none or the source has no video. */
  thumbnail: { width: number; height: number; intervalSeconds: number } | null;
}

const videoEncoderArgs = (r: PlannedRendition, plan: LadderPlan, x264Preset: X264Preset): string[] => [
  "-c:v",
  "libx264",
  "-preset",
  x264Preset,
  "-profile:v",
  r.profile,
  "-pix_fmt",
  "yuv420p",
  "-b:v",
  `${r.videoBitrateKbps}k`,
  "-maxrate",
  `${r.maxrateKbps}k`,
  "-bufsize",
  `${r.bufsizeKbps}k`,
  // Fixed GOP, no scene-cut keyframes, and forced keyframes on the same timestamps in every rendition.
  "-g",
  String(plan.gopFrames),
  "-keyint_min",
  String(plan.gopFrames),
  "-sc_threshold",
  "0",
  "-force_key_frames",
  `expr:gte(t,n_forced*${plan.gopSeconds})`,
];

const audioEncoderArgs = (plan: LadderPlan): string[] =>
  plan.audio
    ? [
        "-c:a",
        "aac",
        "-b:a",
        `${plan.audio.bitrateKbps}k`,
        "-ac",
        String(plan.audio.channels),
        "-ar",
        String(plan.audio.sampleRate),
      ]
    : [];

const hlsMuxerArgs = (workDir: string, rendition: string, segmentSeconds: number): string[] => [
  "-f",
  "hls",
  "-hls_time",
  String(segmentSeconds),
  "-hls_playlist_type",
  "vod",
  "-hls_segment_type",
  "fmp4",
  "-hls_fmp4_init_filename",
  workLayout.initSegment,
  "-hls_segment_filename",
  join(workDir, workLayout.segmentPattern(rendition)),
  "-hls_flags",
  "independent_segments",
  join(workDir, workLayout.playlist(rendition)),
];

/** The poster is taken a little into the clip, where a title card or black lead-in is less likely. */
export const posterTimeSeconds = (durationSeconds: number) => Math.min(2, durationSeconds * 0.25);

/** Directories the command writes into (ffmpeg does not create them). */
export function outputDirs(spec: TranscodeSpec): string[] {
  const dirs: string[] = [];
  if (spec.preset.hls) {
    const names = spec.plan.renditions.length > 0 ? spec.plan.renditions.map((r) => r.name) : [AUDIO_RENDITION];
    for (const name of names) dirs.push(join(spec.workDir, workLayout.hlsDir(name)));
  }
  if (spec.thumbnail) dirs.push(join(spec.workDir, workLayout.thumbsDir));
  return dirs;
}

export function buildTranscodeArgs(spec: TranscodeSpec): string[] {
  const { plan, preset, workDir } = spec;
  const args = [...ffmpegQuiet, "-progress", "pipe:1", "-nostats"];
  args.push("-i", spec.inputPath);
  const outputs: string[][] = [];
  const hasAudio = plan.audio !== null;
  const audioMap = hasAudio ? ["-map", "0:a:0"] : [];

  if (plan.renditions.length > 0 && plan.frameRate) {
    const wantPoster = preset.poster;
    const branches = plan.renditions.length + (spec.thumbnail ? 1 : 0) + (wantPoster ? 1 : 0);
    const graph: string[] = [];
    const labels = Array.from({ length: branches }, (_, i) => `[s${i}]`);
    const head = [...(plan.conditioning ? headFilters(plan.conditioning) : []), `fps=${plan.frameRate.expr}`];
    graph.push(`[0:v:0]${head.join(",")},format=yuv420p,split=${branches}${labels.join("")}`);
    let branch = 0;
    plan.renditions.forEach((r, i) => {
      graph.push(`[s${branch++}]scale=${r.width}:${r.height}:flags=bicubic,setsar=1[v${i}]`);
    });
    if (spec.thumbnail) {
      const t = spec.thumbnail;
      // The first frame at or after each multiple of the interval: thumbnail i shows time i·interval
      // (the fps filter drops the last one at end of stream).
      graph.push(
        `[s${branch++}]select='gte(t\\,selected_n*${t.intervalSeconds})',scale=${t.width}:${t.height},setsar=1[thumbs]`,
      );
    }
    if (wantPoster) {
      const top = plan.renditions[0] as PlannedRendition;
      const at = posterTimeSeconds(spec.durationSeconds).toFixed(3);
      graph.push(
        `[s${branch++}]select='isnan(prev_selected_t)*gte(t\\,${at})',scale=${top.width}:${top.height},setsar=1[poster]`,
      );
    }
    args.push("-filter_complex", graph.join(";"));

    if (preset.hls) {
      plan.renditions.forEach((r, i) => {
        outputs.push([
          "-map",
          `[v${i}]`,
          ...audioMap,
          ...videoEncoderArgs(r, plan, spec.x264Preset),
          ...audioEncoderArgs(plan),
          ...hlsMuxerArgs(workDir, r.name, preset.segmentSeconds),
        ]);
      });
    } else if (preset.mp4) {
      const top = plan.renditions[0] as PlannedRendition;
      outputs.push([
        "-map",
        "[v0]",
        ...audioMap,
        ...videoEncoderArgs(top, plan, spec.x264Preset),
        ...audioEncoderArgs(plan),
        "-movflags",
        "+faststart",
        join(workDir, workLayout.directMp4),
      ]);
    }
    if (spec.thumbnail)
      outputs.push([
        "-map",
        "[thumbs]",
        "-fps_mode",
        "passthrough",
        "-q:v",
        "4",
        "-start_number",
        "0",
        join(workDir, workLayout.thumbPattern),
      ]);
    if (wantPoster)
      outputs.push([
        "-map",
        "[poster]",
        "-frames:v",
        "1",
        "-q:v",
        "2",
        "-update",
        "1",
        join(workDir, workLayout.poster),
      ]);
  } else if (hasAudio) {
    if (preset.hls)
      outputs.push([
        ...audioMap,
        "-vn",
        ...audioEncoderArgs(plan),
        ...hlsMuxerArgs(workDir, AUDIO_RENDITION, preset.segmentSeconds),
      ]);
    else if (preset.mp4)
      outputs.push([
        ...audioMap,
        "-vn",
        ...audioEncoderArgs(plan),
        "-movflags",
        "+faststart",
        join(workDir, workLayout.directMp4),
      ]);
  }
  if (outputs.length === 0) throw new Error("nothing to encode: no video rendition and no audio");
  for (const output of outputs) args.push(...output);
  return args;
}

/** Arguments for one rendition on its own (the benchmark's baseline: one ffmpeg run per rung). */
export function buildSingleRenditionArgs(spec: TranscodeSpec, index: number): string[] {
  const r = spec.plan.renditions[index];
  if (!r || !spec.plan.frameRate) throw new Error(`no rendition ${index}`);
  return [
    ...ffmpegQuiet,
    "-i",
    spec.inputPath,
    "-vf",
    [
      ...(spec.plan.conditioning ? headFilters(spec.plan.conditioning) : []),
      `fps=${spec.plan.frameRate.expr},format=yuv420p,scale=${r.width}:${r.height}:flags=bicubic,setsar=1`,
    ].join(","),
    "-map",
    "0:v:0",
    ...(spec.plan.audio ? ["-map", "0:a:0"] : []),
    ...videoEncoderArgs(r, spec.plan, spec.x264Preset),
    ...audioEncoderArgs(spec.plan),
    ...hlsMuxerArgs(spec.workDir, r.name, spec.preset.segmentSeconds),
  ];
}
