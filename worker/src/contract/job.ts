/**
 * Job states, the transitions between them, and the public shape of a job record.
 * Every other module imports these; no state name is written as a string anywhere else.
 */
import { z } from "zod";
import { LoudnessReport, LoudnessSetting } from "./loudness.ts";
import { playbackPolicies } from "./playback.ts";

export const jobStates = [
  "awaiting_upload",
  "pending",
  "running",
  "completed",
  "failed",
  "canceled",
  "expired",
  "deleted",
] as const;
export const JobState = z.enum(jobStates);
export type JobState = z.infer<typeof JobState>;

export const terminalStates = [
  "completed",
  "failed",
  "canceled",
  "expired",
  "deleted",
] as const satisfies readonly JobState[];
export type TerminalState = (typeof terminalStates)[number];
export const isTerminal = (state: JobState): state is TerminalState =>
  (terminalStates as readonly JobState[]).includes(state);

/**
 * Allowed moves. Anything not listed is refused, so no event order can move a job backwards
 * (a late `progress` after `completed`, a replayed upload event after `running`, ...).
 * Every job can be deleted; `deleted` is a tombstone nothing moves out of (a running job's machine
 * is told to abort on its next event, exactly as on cancel).
 */
export const transitions = {
  awaiting_upload: ["pending", "canceled", "expired", "deleted"],
  pending: ["running", "canceled", "deleted"],
  running: ["completed", "failed", "pending", "canceled", "deleted"],
  completed: ["deleted"],
  failed: ["pending", "deleted"],
  canceled: ["pending", "deleted"],
  expired: ["deleted"],
  deleted: [],
} as const satisfies Record<JobState, readonly JobState[]>;

export const canTransition = (from: JobState, to: JobState): boolean =>
  (transitions[from] as readonly JobState[]).includes(to);

/** What a running job is doing; reported by machines with progress. */
export const jobStages = ["queued", "downloading", "probing", "transcoding", "uploading", "publishing"] as const;
export const JobStage = z.enum(jobStages);
export type JobStage = z.infer<typeof JobStage>;

/** Stable failure codes (API problem `code`s for jobs, and `job.error.code`). */
export const jobErrorCodes = [
  "invalid_media",
  "unsupported",
  "too_large",
  "input_missing",
  "transcode_failed",
  /** ffmpeg was killed for lack of memory: the machine size (MACHINE_MEMORY_MB) is too small for the job. */
  "out_of_memory",
  "upload_failed",
  "lease_expired",
  /** URL ingest: the source URL could not be fetched (refused address, redirects, HTTP error, network). */
  "source_unreachable",
  /** URL ingest: the source passed MAX_UPLOAD_BYTES or the duration limit while downloading. */
  "source_too_large",
  "internal",
] as const;
export const JobErrorCode = z.enum(jobErrorCodes);
export type JobErrorCode = z.infer<typeof JobErrorCode>;

export const JobError = z.object({ code: JobErrorCode, message: z.string().max(2000) });
export type JobError = z.infer<typeof JobError>;

/** Transfer characteristics: SDR, or the two HDR curves phones and broadcasters record (contract for HDR handling). */
export const dynamicRanges = ["sdr", "pq", "hlg"] as const;
export const DynamicRange = z.enum(dynamicRanges);
export type DynamicRange = z.infer<typeof DynamicRange>;

/** One audio stream of the source; `index` is its position among the source's audio streams (`0:a:<index>`). */
export const AudioStreamSummary = z.object({
  index: z.number().int().nonnegative(),
  codec: z.string(),
  channels: z.number().int().positive(),
  channelLayout: z.string().optional(),
  sampleRate: z.number().int().positive(),
  /** BCP 47 tag from the stream's language tag (ISO 639-2 `eng` becomes `en`); absent when untagged. */
  language: z.string().optional(),
  title: z.string().optional(),
  /** The stream the source marks as default (or the first, when it marks none). */
  default: z.boolean(),
});
export type AudioStreamSummary = z.infer<typeof AudioStreamSummary>;

/** One subtitle stream of the source; `index` is its position among the source's subtitle streams (`0:s:<index>`). */
export const SubtitleStreamSummary = z.object({
  index: z.number().int().nonnegative(),
  codec: z.string(),
  /** Text subtitles become WebVTT renditions; image ones (PGS, DVB, DVD) cannot and are skipped. */
  text: z.boolean(),
  language: z.string().optional(),
  title: z.string().optional(),
  default: z.boolean(),
  forced: z.boolean(),
});
export type SubtitleStreamSummary = z.infer<typeof SubtitleStreamSummary>;

/** What ffprobe said about the source, as recorded on the job. */
export const ProbeSummary = z.object({
  formatName: z.string(),
  durationSeconds: z.number().nonnegative(),
  /** The container's start time: what every stream's timestamps are measured from (MPEG-TS rarely starts at 0). */
  startSeconds: z.number().optional(),
  sizeBytes: z.number().int().nonnegative(),
  bitRate: z.number().int().nonnegative().optional(),
  video: z
    .object({
      codec: z.string(),
      width: z.number().int().positive(),
      height: z.number().int().positive(),
      /** Display size: the sample aspect ratio applied to the width, then the rotation. */
      displayWidth: z.number().int().positive(),
      displayHeight: z.number().int().positive(),
      rotation: z.number().int(),
      frameRate: z.number().positive(),
      pixelFormat: z.string().optional(),
      /** Shape of one coded pixel (`64:45` for PAL DV at 16:9); absent when pixels are square. */
      sampleAspectRatio: z.string().optional(),
      /** Interlaced (`tt`, `bb`, `tb`, `bt`: field order) or `progressive`; absent when the source does not say. */
      fieldOrder: z.string().optional(),
      dynamicRange: DynamicRange.optional(),
      colorPrimaries: z.string().optional(),
      colorTransfer: z.string().optional(),
      colorSpace: z.string().optional(),
    })
    .optional(),
  /** The default audio stream (what a single-track player hears). */
  audio: z
    .object({
      codec: z.string(),
      channels: z.number().int().positive(),
      sampleRate: z.number().int().positive(),
    })
    .optional(),
  /** Every audio stream, in source order; each becomes an alternate audio rendition. */
  audioStreams: z.array(AudioStreamSummary).optional(),
  /** Every subtitle stream, in source order. */
  subtitleStreams: z.array(SubtitleStreamSummary).optional(),
});
export type ProbeSummary = z.infer<typeof ProbeSummary>;

/** One alternate audio rendition of a package, as the master playlist names it. */
export const AudioRendition = z.object({
  name: z.string(),
  /** HLS NAME: the stream's title, else its language's name. */
  label: z.string(),
  language: z.string().optional(),
  channels: z.number().int().positive(),
  /** DEFAULT=YES: the source's default stream. */
  default: z.boolean(),
  bandwidth: z.number().int().positive(),
});
export type AudioRendition = z.infer<typeof AudioRendition>;

/** One WebVTT subtitle rendition of a package (`EXT-X-MEDIA TYPE=SUBTITLES`). */
export const SubtitleRendition = z.object({
  name: z.string(),
  /** HLS NAME: the stream's title, else its language's name. */
  label: z.string(),
  language: z.string().optional(),
  default: z.boolean(),
  forced: z.boolean(),
});
export type SubtitleRendition = z.infer<typeof SubtitleRendition>;

/** A subtitle stream of the source that could not become WebVTT (image subtitles: PGS, DVB, DVD). */
export const SkippedSubtitle = z.object({
  index: z.number().int().nonnegative(),
  codec: z.string(),
  language: z.string().optional(),
  reason: z.string(),
});
export type SkippedSubtitle = z.infer<typeof SkippedSubtitle>;

/** Keys (relative to the output bucket) of a published package, as machines report them. */
export const OutputKeys = z.object({
  manifest: z.string(),
  hlsMaster: z.string().optional(),
  /** DASH manifest (`manifest.mpd`) over the same CMAF segments as the HLS renditions. */
  dashManifest: z.string().optional(),
  renditions: z
    .array(
      z.object({
        name: z.string(),
        width: z.number().int().nonnegative(),
        height: z.number().int().nonnegative(),
        bandwidth: z.number().int().positive(),
        playlist: z.string(),
      }),
    )
    .default([]),
  /** Alternate audio renditions (`EXT-X-MEDIA TYPE=AUDIO`): one stereo per source stream, plus 5.1 where kept. */
  audio: z.array(AudioRendition.extend({ playlist: z.string() })).optional(),
  /** WebVTT subtitle renditions: `playlist` is segmented on the video's boundaries, `vtt` the whole file. */
  subtitles: z.array(SubtitleRendition.extend({ playlist: z.string(), vtt: z.string() })).optional(),
  /** Subtitle streams of the source that were not converted, and why. */
  skippedSubtitles: z.array(SkippedSubtitle).optional(),
  /** A job with a loudness setting: each audio rendition's loudness before and after normalization. */
  loudness: LoudnessReport.optional(),
  mp4: z.string().optional(),
  poster: z.string().optional(),
  thumbnailsVtt: z.string().optional(),
  thumbnailsSprite: z.string().optional(),
});
export type OutputKeys = z.infer<typeof OutputKeys>;

const ObjectRef = z.object({ key: z.string(), url: z.url() });

/** Outputs as the API shows them: every key with its public URL. */
export const JobOutputs = z.object({
  manifest: ObjectRef,
  hlsMaster: ObjectRef.optional(),
  dashManifest: ObjectRef.optional(),
  renditions: z.array(
    z.object({
      name: z.string(),
      width: z.number().int(),
      height: z.number().int(),
      bandwidth: z.number().int(),
      playlist: ObjectRef,
    }),
  ),
  audio: z.array(AudioRendition.extend({ playlist: ObjectRef })).optional(),
  subtitles: z.array(SubtitleRendition.extend({ playlist: ObjectRef, vtt: ObjectRef })).optional(),
  skippedSubtitles: z.array(SkippedSubtitle).optional(),
  loudness: LoudnessReport.optional(),
  mp4: ObjectRef.optional(),
  poster: ObjectRef.optional(),
  thumbnailsVtt: ObjectRef.optional(),
  thumbnailsSprite: ObjectRef.optional(),
});
export type JobOutputs = z.infer<typeof JobOutputs>;

/** `public`: players read the public output bucket; `signed`: only through the worker, with a token (playback.ts). */
export const PlaybackPolicy = z.enum(playbackPolicies);
export type PlaybackPolicy = z.infer<typeof PlaybackPolicy>;

export const Metadata = z
  .record(z.string().max(64), z.string().max(512))
  .refine((m) => Object.keys(m).length <= 32, "at most 32 metadata keys");

/**
 * What a job has cost so far: machine time per attempt (from its claim to its outcome, or to the
 * machine's last heartbeat when its lease ran out), the encoded output and what it keeps stored.
 */
export const JobUsage = z.object({
  machineSeconds: z.number().nonnegative(),
  attempts: z.array(
    z.object({
      attempt: z.number().int().nonnegative(),
      machineId: z.string(),
      startedAt: z.iso.datetime(),
      seconds: z.number().nonnegative(),
      /** The event or transition that ended it: completed, failed, released, canceled, deleted, lease_expired. */
      outcome: z.string(),
      /** The task of a chunked job this time went to (contract/tasks.ts); absent for the job's own attempt. */
      task: z.string().optional(),
    }),
  ),
  /** Minutes of video (or audio) in the published package. */
  outputMinutes: z.number().nonnegative().optional(),
  /** Source plus package, while the job keeps them (0 once deleted). */
  storedBytes: z.number().int().nonnegative().optional(),
});
export type JobUsage = z.infer<typeof JobUsage>;

/** A chunked job's tasks (contract/tasks.ts) by state, as the job record shows them. */
export const TaskCounts = z.object({
  total: z.number().int().nonnegative(),
  pending: z.number().int().nonnegative(),
  running: z.number().int().nonnegative(),
  done: z.number().int().nonnegative(),
});
export type TaskCounts = z.infer<typeof TaskCounts>;

/** The public job record (GET /v1/jobs/:id). Timestamps are ISO 8601. */
export const Job = z.object({
  id: z.string(),
  state: JobState,
  preset: z.string(),
  playback: PlaybackPolicy,
  /** Audio normalized to this integrated loudness (EBU R128); absent: audio keeps the source's level. */
  loudness: LoudnessSetting.optional(),
  progress: z.number().min(0).max(1),
  stage: JobStage.optional(),
  attempts: z.number().int().nonnegative(),
  maxAttempts: z.number().int().positive(),
  input: z.object({
    /** Where the source is (or will be) kept in the input bucket. */
    key: z.string(),
    /** The URL the source is downloaded from (`POST /v1/jobs {url}`). */
    url: z.url().optional(),
    filename: z.string().optional(),
    contentType: z.string().optional(),
    sizeBytes: z.number().int().nonnegative().optional(),
  }),
  probe: ProbeSummary.optional(),
  outputs: JobOutputs.optional(),
  /**
   * True once the job can be watched: a completed package, or for a chunked job still running, its
   * live playlists (`live`), which list contiguous segments as they are encoded.
   */
  playable: z.boolean(),
  /** A chunked job's growing HLS master playlist (`EVENT`, then `VOD` with `#EXT-X-ENDLIST` once complete). */
  live: z.object({ hlsMaster: ObjectRef }).optional(),
  /** A chunked job's tasks by state. */
  tasks: TaskCounts.optional(),
  error: JobError.optional(),
  machineId: z.string().optional(),
  callbackUrl: z.url().optional(),
  callback: z
    .object({
      state: z.enum(["pending", "delivered", "failed"]),
      attempts: z.number().int().nonnegative(),
      lastError: z.string().optional(),
    })
    .optional(),
  metadata: z.record(z.string(), z.string()).optional(),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
  uploadExpiresAt: z.iso.datetime().optional(),
  queuedAt: z.iso.datetime().optional(),
  startedAt: z.iso.datetime().optional(),
  finishedAt: z.iso.datetime().optional(),
  leaseExpiresAt: z.iso.datetime().optional(),
  usage: JobUsage.optional(),
  /** When the job was deleted: its record is then a tombstone without outputs. */
  deletedAt: z.iso.datetime().optional(),
  /** When every object of a deleted job (source, every attempt's outputs) was confirmed gone. */
  purgedAt: z.iso.datetime().optional(),
});
export type Job = z.infer<typeof Job>;
