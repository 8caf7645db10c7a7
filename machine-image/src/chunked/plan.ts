/**
 * Whether a source is encoded in chunks, and how: the tasks of a split (contract/tasks.ts). A source
 * longer than MIN_CHUNKS × `CHUNK_SECONDS` is.
 *
 * Chunks are cut in output frames, on GOP boundaries, so every chunk starts with a keyframe at the
 * same place in every rung and the frame-rate grid never shifts between chunks. The first chunk is
 * one GOP, so the job is watchable as soon as that is encoded; the others are `CHUNK_SECONDS`
 * (whole segments) long, the last taking what remains. Audio is one task for the whole source.
 */
import type { Preset, ProbeSummary, SplitPlan, VideoTaskSpec } from "@tcoder/worker/contract";
import { taskNames } from "@tcoder/worker/contract";
import type { LadderPlan } from "../media/ladder.ts";

/** The output frame rate as a fraction, from ladder.ts's `expr` (`30000/1001`). */
export function frameRateFraction(expr: string): { num: number; den: number } {
  const [num, den] = expr.split("/").map(Number);
  if (!num || !den) throw new Error(`frame rate ${expr} is not a fraction`);
  return { num, den };
}

/**
 * Only a source of more than three chunks is split: below that, what a split adds (a second
 * decode for the stills, each task's start, the stitch) outweighs what the machines share, and a
 * clip of a minute or so is done in about its own length on one machine anyway.
 */
export const MIN_CHUNKS = 3;

/** Null when the source is encoded in one piece (short, no video, no HLS, or chunking off). */
export function planSplit(
  preset: Preset,
  probe: ProbeSummary,
  plan: LadderPlan,
  chunkSeconds: number,
): SplitPlan | null {
  if (chunkSeconds <= 0 || !preset.hls || !plan.frameRate || plan.renditions.length === 0) return null;
  const duration = probe.durationSeconds;
  if (duration <= chunkSeconds * MIN_CHUNKS) return null;

  const { num, den } = frameRateFraction(plan.frameRate.expr);
  const secondsOf = (frames: number) => (frames * den) / num;
  const gopsPerSegment = Math.max(1, Math.round(preset.segmentSeconds / preset.gopSeconds));
  const segmentFrames = plan.gopFrames * gopsPerSegment;
  const chunkFrames = segmentFrames * Math.max(1, Math.round(chunkSeconds / preset.segmentSeconds));
  const totalFrames = Math.floor((duration * num) / den + 1e-6);

  const chunks: VideoTaskSpec[] = [];
  let start = 0;
  let segment = 0;
  for (let index = 0; start < totalFrames; index++) {
    const wanted = index === 0 ? plan.gopFrames : chunkFrames;
    // The last chunk takes the rest rather than leave a sliver of less than a segment.
    const last = totalFrames - (start + wanted) < segmentFrames;
    const frames = last ? undefined : wanted;
    chunks.push({
      kind: "video",
      index,
      startFrame: start,
      ...(frames === undefined ? {} : { frames }),
      startSeconds: secondsOf(start),
      durationSeconds: frames === undefined ? Math.max(0.001, duration - secondsOf(start)) : secondsOf(frames),
      firstSegment: segment,
    });
    if (frames === undefined) break;
    start += frames;
    segment += Math.ceil(frames / segmentFrames);
  }
  if (chunks.length < 2) return null;

  return {
    probe,
    tasks: [
      // Audio first: a chunk is only watchable with it; stills last: nobody waits for them.
      ...(plan.audio.length > 0 || plan.subtitles.length > 0
        ? [{ name: taskNames.audio, spec: { kind: "audio" as const, durationSeconds: duration } }]
        : []),
      ...chunks.map((spec) => ({ name: taskNames.video(spec.index), spec })),
      ...(preset.poster || preset.thumbnails
        ? [{ name: taskNames.stills, spec: { kind: "stills" as const, durationSeconds: duration } }]
        : []),
    ],
  };
}
