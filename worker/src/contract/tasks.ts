/**
 * Chunked jobs: a long source is encoded as tasks on many machines at once. The machine that
 * claims the job probes it and, when it is longer than three chunks of `CHUNK_SECONDS`, answers
 * with a split (`SplitPlan`): one `audio` task (every audio rendition and the subtitles, for the whole source,
 * so no AAC priming gap ever falls between chunks), one `video` task per time range (every rung,
 * closed GOPs, timestamps at the chunk's place in the source), one `stills` task (poster and
 * thumbnails) and, once those are done, one `finalize` task that stitches the package.
 *
 * Tasks are queued, claimed, leased, heartbeated, retried and recovered like jobs (state/scripts/);
 * a queue entry `<jobId>/<task>` is a task, a bare `<jobId>` a job.
 */
import { z } from "zod";
import { ProbeSummary } from "./job.ts";
import { LoudnessReport } from "./loudness.ts";

/** The video task of chunk `k` is `v<k>`. */
export const taskNames = {
  audio: "audio",
  stills: "stills",
  finalize: "finalize",
  video: (index: number) => `v${index}`,
} as const;

export const TASK_SEPARATOR = "/";
export const taskIdOf = (jobId: string, task: string) => `${jobId}${TASK_SEPARATOR}${task}`;

export const taskStates = ["pending", "running", "done", "canceled"] as const;
export const TaskState = z.enum(taskStates);
export type TaskState = z.infer<typeof TaskState>;

/** A chunk of the source's video: frames `[startFrame, startFrame + frames)` at the output frame rate. */
export const VideoTaskSpec = z.object({
  kind: z.literal("video"),
  index: z.number().int().nonnegative(),
  startFrame: z.number().int().nonnegative(),
  /** Absent for the last chunk: it runs to the end of the source. */
  frames: z.number().int().positive().optional(),
  /** The chunk's start in the output timeline, seconds (exact to the microsecond). */
  startSeconds: z.number().nonnegative(),
  /** Nominal length in seconds (the last chunk's is what remains of the source). */
  durationSeconds: z.number().positive(),
  /** Media sequence number of the chunk's first segment: segment names are global. */
  firstSegment: z.number().int().nonnegative(),
});
export type VideoTaskSpec = z.infer<typeof VideoTaskSpec>;

export const TaskSpec = z.discriminatedUnion("kind", [
  VideoTaskSpec,
  z.object({ kind: z.literal("audio"), durationSeconds: z.number().positive() }),
  z.object({ kind: z.literal("stills"), durationSeconds: z.number().positive() }),
  z.object({ kind: z.literal("finalize"), durationSeconds: z.number().positive() }),
]);
export type TaskSpec = z.infer<typeof TaskSpec>;
export type TaskKind = TaskSpec["kind"];

/** What the splitting machine sends: the probe and every task but `finalize`, in queue order. */
export const SplitPlan = z.object({
  probe: ProbeSummary,
  tasks: z.array(z.object({ name: z.string().min(1).max(16), spec: TaskSpec })).min(2),
});
export type SplitPlan = z.infer<typeof SplitPlan>;

/** One encoded segment: its key in the output bucket, relative to the package's attempt prefix. */
export const EncodedSegment = z.object({
  uri: z.string(),
  durationSeconds: z.number().positive(),
  sizeBytes: z.number().int().nonnegative(),
});

/** One rendition's part of a task: its init segment (by content hash) and its media segments. */
export const EncodedTrack = z.object({
  name: z.string(),
  init: z.object({ uri: z.string(), sha256: z.string(), sizeBytes: z.number().int().nonnegative() }),
  /** RFC 6381 codec string read from the init segment. */
  codec: z.string(),
  segments: z.array(EncodedSegment).min(1),
});
export type EncodedTrack = z.infer<typeof EncodedTrack>;

export const TaskResult = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("video"), tracks: z.array(EncodedTrack) }),
  z.object({
    kind: z.literal("audio"),
    tracks: z.array(EncodedTrack),
    /** Each text subtitle rendition as one WebVTT file (segmented by the finalize task). */
    subtitles: z.array(z.object({ name: z.string(), uri: z.string() })),
    loudness: LoudnessReport.optional(),
  }),
  z.object({
    kind: z.literal("stills"),
    poster: z.string().optional(),
    /** The thumbnails' sprite and cue file, and how many thumbnails the sprite holds. */
    thumbnails: z.object({ sprite: z.string(), vtt: z.string(), count: z.number().int().positive() }).optional(),
  }),
]);
export type TaskResult = z.infer<typeof TaskResult>;

/** Where the growing playlists of a running chunked job live, below its attempt prefix. */
export const livePaths = {
  master: "hls/live.m3u8",
  rendition: (name: string) => `hls/${name}/live.m3u8`,
} as const;
