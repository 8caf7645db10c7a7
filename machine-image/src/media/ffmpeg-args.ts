/**
 * The one ffmpeg command that turns a source into every output of a preset: a single decode,
 * `split` into one `scale` per rendition (plus thumbnails and a poster), every rendition encoded
 * with the same fixed GOP so segment boundaries line up across the ladder.
 */
import { join } from "node:path";
import type { Preset } from "@tcoder/worker/contract";
import type { PlannedAudio } from "./audio-plan.ts";
import {
  colorTagArgs,
  fromHdrBranch,
  HDR_BRANCH_FILTERS,
  headFilters,
  rungScale,
  sdrBranchFilters,
} from "./conditioning.ts";
import type { HdrMetadata } from "./hdr.ts";
import { type LadderPlan, type PlannedRendition, primaryRendition } from "./ladder.ts";
import { type LoudnessPlan, normalizeFilter } from "./loudness.ts";
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
  /** Each text subtitle stream as one WebVTT file, segmented when packaging. */
  subtitle: (rendition: string) => join("subs", `${rendition}.vtt`),
  subtitlesDir: "subs",
  thumbsDir: "thumbs",
  thumbPattern: join("thumbs", "t_%05d.jpg"),
  poster: "poster.jpg",
} as const;

export interface TranscodeSpec {
  inputPath: string;
  workDir: string;
  preset: Preset;
  plan: LadderPlan;
  durationSeconds: number;
  x264Preset: X264Preset;
  /** Thumbnail size (width × height); null when the preset has none or the source has no video. */
  thumbnail: { width: number; height: number; intervalSeconds: number } | null;
  /** An HDR source's mastering metadata, kept on HEVC HDR renditions. */
  hdr?: HdrMetadata;
  /** Loudness normalization (pass 2): the target and each audio rendition's measured source. */
  loudness?: LoudnessPlan;
  /**
   * One part of a chunked job (contract/tasks.ts) instead of everything: a video chunk (every rung,
   * its frames only), the audio (every audio rendition and the subtitles, whole), or the stills.
   */
  part?: { kind: "video"; chunk: VideoChunk } | { kind: "audio" } | { kind: "stills" };
}

/** A video chunk as ffmpeg needs it: where it starts in the source and the output, how much of it. */
export interface VideoChunk {
  /** Start in the output timeline (seconds from the source's start). */
  startSeconds: number;
  /** The source's own start time, which its timestamps count from. */
  sourceStartSeconds: number;
  /** Frames to encode; absent: to the end of the source. */
  frames?: number;
  durationSeconds: number;
  /** Media sequence number of the chunk's first segment. */
  firstSegment: number;
}

// Fixed GOP, no scene-cut keyframes, and forced keyframes on the same timestamps in every rendition.
// A chunk counts frames instead: it starts on a GOP boundary, and its timestamps (the source's) do
// not start at zero.
const gopArgs = (plan: LadderPlan, chunked = false): string[] => [
  "-g",
  String(plan.gopFrames),
  "-keyint_min",
  String(plan.gopFrames),
  "-force_key_frames",
  chunked ? `expr:eq(mod(n,${plan.gopFrames}),0)` : `expr:gte(t,n_forced*${plan.gopSeconds})`,
];

const rateArgs = (r: PlannedRendition): string[] => [
  "-b:v",
  `${r.videoBitrateKbps}k`,
  "-maxrate",
  `${r.maxrateKbps}k`,
  "-bufsize",
  `${r.bufsizeKbps}k`,
];

/** x265's own settings: quiet, closed fixed GOPs, and the source's HDR10 metadata on HDR rungs. */
const x265Params = (r: PlannedRendition, plan: LadderPlan, hdr: HdrMetadata): string => {
  const params = [
    "log-level=error",
    `keyint=${plan.gopFrames}`,
    `min-keyint=${plan.gopFrames}`,
    "scenecut=0",
    "open-gop=0",
  ];
  if (r.dynamicRange === "pq") {
    params.push("hdr10=1", "hdr10-opt=1");
    if (hdr.masterDisplay) params.push(`master-display=${hdr.masterDisplay}`);
    if (hdr.maxCll) params.push(`max-cll=${hdr.maxCll}`);
  }
  return params.join(":");
};

const videoEncoderArgs = (
  r: PlannedRendition,
  plan: LadderPlan,
  x264Preset: X264Preset,
  hdr: HdrMetadata = {},
  chunked = false,
): string[] =>
  r.codec === "hevc"
    ? [
        "-c:v",
        "libx265",
        // x265 has the same speed preset names as x264.
        "-preset",
        x264Preset,
        "-profile:v",
        r.profile,
        "-pix_fmt",
        "yuv420p10le",
        // `hvc1` (parameter sets in the sample entry) is what Apple players require of HEVC in fMP4.
        "-tag:v",
        "hvc1",
        ...rateArgs(r),
        ...gopArgs(plan, chunked),
        // ffmpeg's forced keyframes are plain I-frames for x265 unless asked for IDR.
        "-forced-idr",
        "1",
        "-x265-params",
        x265Params(r, plan, hdr),
        ...colorTagArgs(r.dynamicRange),
      ]
    : [
        "-c:v",
        "libx264",
        "-preset",
        x264Preset,
        "-profile:v",
        r.profile,
        "-pix_fmt",
        "yuv420p",
        ...rateArgs(r),
        ...gopArgs(plan, chunked),
        "-sc_threshold",
        "0",
        ...colorTagArgs("sdr"),
      ];

/**
 * AAC for one audio rendition; `stream` addresses it among several in one output (the direct MP4).
 * `-ac` down-mixes with ffmpeg's default matrix (centre and surrounds at −3 dB, no LFE); with a
 * loudness plan, the down-mix happens in the filter, before `loudnorm` (the same matrix).
 */
const audioEncoderArgs = (a: PlannedAudio, loudness: LoudnessPlan | undefined, stream?: number): string[] => {
  const at = stream === undefined ? "" : `:${stream}`;
  const measured = loudness?.input.get(a.name);
  return [
    ...(loudness && measured ? [`-filter:a${at}`, normalizeFilter(a.channels, loudness.targetLufs, measured)] : []),
    `-c:a${at}`,
    "aac",
    `-b:a${at}`,
    `${a.bitrateKbps}k`,
    `-ac${at}`,
    String(a.channels),
    `-ar${at}`,
    String(a.sampleRate),
  ];
};

/** Every audio rendition in one output (the progressive MP4), the source's default stream marked default. */
const allAudioArgs = (plan: LadderPlan, loudness: LoudnessPlan | undefined): string[] =>
  plan.audio.flatMap((a, i) => [
    "-map",
    `0:a:${a.sourceIndex}`,
    ...audioEncoderArgs(a, loudness, i),
    `-disposition:a:${i}`,
    a.default && a.group === "stereo" ? "default" : "0",
  ]);

const hlsMuxerArgs = (workDir: string, rendition: string, segmentSeconds: number, chunk?: VideoChunk): string[] => [
  ...(chunk
    ? [
        // Each fragment's decode time is its packets' (the source's, kept by -copyts), so the
        // chunk's segments continue the previous chunk's timeline; no shift to make them positive.
        "-avoid_negative_ts",
        "disabled",
        "-hls_segment_options",
        "movflags=+frag_discont",
        "-start_number",
        String(chunk.firstSegment),
        ...(chunk.frames === undefined ? [] : ["-frames:v", String(chunk.frames)]),
      ]
    : []),
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
  // temp_file: a segment appears under its name only once whole, so it can be uploaded while the
  // encode goes on (package/early-upload.ts).
  "independent_segments+temp_file",
  join(workDir, workLayout.playlist(rendition)),
];

/** The poster is taken a little into the clip, where a title card or black lead-in is less likely. */
export const posterTimeSeconds = (durationSeconds: number) => Math.min(2, durationSeconds * 0.25);

/** Directories the command writes into (ffmpeg does not create them). */
export function outputDirs(spec: TranscodeSpec): string[] {
  const dirs: string[] = [];
  if (spec.preset.hls)
    for (const { name } of [...spec.plan.renditions, ...spec.plan.audio])
      dirs.push(join(spec.workDir, workLayout.hlsDir(name)));
  if (spec.thumbnail) dirs.push(join(spec.workDir, workLayout.thumbsDir));
  if (spec.preset.hls && spec.plan.subtitles.length > 0) dirs.push(join(spec.workDir, workLayout.subtitlesDir));
  return dirs;
}

/**
 * One decode, conditioned once (deinterlace, frame-rate cap), then split: an SDR branch (tone-mapped
 * from HDR when need be) feeds the SDR rungs, the thumbnails and the poster; an HDR branch feeds
 * the HEVC rungs that keep the source's range. Outputs `[v<i>]` per rendition, `[thumbs]`, `[poster]`.
 */
function videoGraph(spec: TranscodeSpec, rungs: readonly PlannedRendition[], wantThumbs: boolean, wantPoster: boolean) {
  const { plan } = spec;
  const conditioning = plan.conditioning;
  const frameRate = plan.frameRate as NonNullable<LadderPlan["frameRate"]>;
  const chunk = spec.part?.kind === "video" ? spec.part.chunk : undefined;
  const head = [
    // A chunk keeps the source's timestamps (-copyts), measured from its start; the frame rate
    // grid starts where the chunk does, so its first frame lands exactly on the chunk's start.
    ...(chunk && chunk.sourceStartSeconds !== 0 ? [`setpts=PTS-${chunk.sourceStartSeconds.toFixed(6)}/TB`] : []),
    ...(conditioning ? headFilters(conditioning) : []),
    chunk ? `fps=fps=${frameRate.expr}:start_time=${chunk.startSeconds.toFixed(6)}` : `fps=${frameRate.expr}`,
  ].join(",");
  const hdrRungs = rungs.filter(fromHdrBranch);
  const sdrOutputs = rungs.length - hdrRungs.length + (wantThumbs ? 1 : 0) + (wantPoster ? 1 : 0);
  const graph: string[] = [];
  const split = (input: string, filters: string, labels: string[]) =>
    graph.push(`${input}${filters},split=${labels.length}${labels.map((l) => `[${l}]`).join("")}`);

  if (hdrRungs.length > 0 && sdrOutputs > 0) {
    split("[0:v:0]", head, ["hdr_in", "sdr_in"]);
    split(
      "[hdr_in]",
      HDR_BRANCH_FILTERS,
      hdrRungs.map((_, i) => `hdr${i}`),
    );
    split(
      "[sdr_in]",
      sdrBranchFilters(conditioning),
      Array.from({ length: sdrOutputs }, (_, i) => `sdr${i}`),
    );
  } else if (hdrRungs.length > 0) {
    split(
      "[0:v:0]",
      `${head},${HDR_BRANCH_FILTERS}`,
      hdrRungs.map((_, i) => `hdr${i}`),
    );
  } else {
    split(
      "[0:v:0]",
      `${head},${sdrBranchFilters(conditioning)}`,
      Array.from({ length: sdrOutputs }, (_, i) => `sdr${i}`),
    );
  }
  let hdrBranch = 0;
  let sdrBranch = 0;
  rungs.forEach((r, i) => {
    const input = fromHdrBranch(r) ? `hdr${hdrBranch++}` : `sdr${sdrBranch++}`;
    graph.push(`[${input}]${rungScale(r)}[v${i}]`);
  });
  if (wantThumbs && spec.thumbnail) {
    const t = spec.thumbnail;
    // The first frame at or after each multiple of the interval: thumbnail i shows time i·interval
    // (the fps filter drops the last one at end of stream).
    graph.push(
      `[sdr${sdrBranch++}]select='gte(t\\,selected_n*${t.intervalSeconds})',scale=${t.width}:${t.height},setsar=1[thumbs]`,
    );
  }
  if (wantPoster) {
    const primary = primaryRendition(plan) as PlannedRendition;
    const at = posterTimeSeconds(spec.durationSeconds).toFixed(3);
    graph.push(
      `[sdr${sdrBranch++}]select='isnan(prev_selected_t)*gte(t\\,${at})',scale=${primary.width}:${primary.height},setsar=1[poster]`,
    );
  }
  return graph;
}

export function buildTranscodeArgs(spec: TranscodeSpec): string[] {
  const { plan, preset, workDir, part } = spec;
  const chunk = part?.kind === "video" ? part.chunk : undefined;
  const args = [...ffmpegQuiet, "-progress", "pipe:1", "-nostats"];
  if (chunk)
    // Input seeking decodes only the chunk (from the keyframe before it); a second of slack past
    // its end lets the frame count, not the demuxer, end it.
    args.push(
      "-copyts",
      "-ss",
      (chunk.sourceStartSeconds + chunk.startSeconds).toFixed(6),
      ...(chunk.frames === undefined ? [] : ["-t", (chunk.durationSeconds + 1).toFixed(6)]),
    );
  args.push("-i", spec.inputPath);
  const outputs: string[][] = [];
  const hasVideo = plan.renditions.length > 0 && plan.frameRate !== null;
  const rungs = part && part.kind !== "video" ? [] : plan.renditions;
  const wantThumbs = hasVideo && spec.thumbnail !== null && (!part || part.kind === "stills");
  const wantPoster = hasVideo && preset.poster && (!part || part.kind === "stills");
  const wantAudio = !part || part.kind === "audio";
  if (hasVideo && (rungs.length > 0 || wantThumbs || wantPoster))
    args.push("-filter_complex", videoGraph(spec, rungs, wantThumbs, wantPoster).join(";"));

  if (preset.hls) {
    // Video rungs carry no audio: audio is a set of alternate renditions every rung shares.
    rungs.forEach((r, i) => {
      outputs.push([
        "-map",
        `[v${i}]`,
        ...videoEncoderArgs(r, plan, spec.x264Preset, spec.hdr, chunk !== undefined),
        ...hlsMuxerArgs(workDir, r.name, preset.segmentSeconds, chunk),
      ]);
    });
    if (wantAudio)
      for (const a of plan.audio)
        outputs.push([
          "-map",
          `0:a:${a.sourceIndex}`,
          "-vn",
          ...audioEncoderArgs(a, spec.loudness),
          ...hlsMuxerArgs(workDir, a.name, preset.segmentSeconds),
        ]);
  } else if (preset.mp4 && (hasVideo || plan.audio.length > 0)) {
    const primary = primaryRendition(plan);
    outputs.push([
      ...(hasVideo && primary ? ["-map", "[v0]", ...videoEncoderArgs(primary, plan, spec.x264Preset, spec.hdr)] : []),
      ...allAudioArgs(plan, spec.loudness),
      "-movflags",
      "+faststart",
      join(workDir, workLayout.directMp4),
    ]);
  }
  if (wantThumbs)
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
    outputs.push(["-map", "[poster]", "-frames:v", "1", "-q:v", "2", "-update", "1", join(workDir, workLayout.poster)]);
  // Text subtitles ride along the same run (no decode of their own): WebVTT, cut up when packaging.
  if (preset.hls && wantAudio)
    for (const sub of plan.subtitles)
      outputs.push([
        "-map",
        `0:s:${sub.sourceIndex}`,
        "-c:s",
        "webvtt",
        "-f",
        "webvtt",
        join(workDir, workLayout.subtitle(sub.name)),
      ]);
  if (outputs.length === 0) throw new Error("nothing to encode: no video rendition, audio or subtitles");
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
      `fps=${spec.plan.frameRate.expr}`,
      fromHdrBranch(r) ? HDR_BRANCH_FILTERS : sdrBranchFilters(spec.plan.conditioning),
      rungScale(r),
    ].join(","),
    "-map",
    "0:v:0",
    ...(spec.plan.audio[0] ? ["-map", `0:a:${spec.plan.audio[0].sourceIndex}`] : []),
    ...videoEncoderArgs(r, spec.plan, spec.x264Preset, spec.hdr),
    ...(spec.plan.audio[0] ? audioEncoderArgs(spec.plan.audio[0], spec.loudness) : []),
    ...hlsMuxerArgs(spec.workDir, r.name, spec.preset.segmentSeconds),
  ];
}
