/**
 * One attempt at one job: download the source, probe and validate it, run the single ffmpeg
 * command, package (master playlist, MP4, sprite + VTT, manifest) and publish. The result is a
 * value (`completed` or `failed` with a stable code); only being stopped (AbortSignal) throws.
 */
import { mkdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { S3Client } from "@aws-sdk/client-s3";
import type {
  JobError,
  JobStage,
  LoudnessSetting,
  OutputKeys,
  PlaybackPolicy,
  Preset,
  ProbeSummary,
  SourceFetchPolicy,
  SplitPlan,
  TaskResult,
  TaskSpec,
} from "@tcoder/worker/contract";
import { retry } from "@tcoder/worker/contract";
import { planSplit } from "./chunked/plan.ts";
import { keepSource } from "./chunked/source-cache.ts";
import {
  buildTranscodeArgs,
  outputDirs,
  type TranscodeSpec,
  workLayout,
  type X264Preset,
} from "./media/ffmpeg-args.ts";
import { readHdrMetadata } from "./media/hdr.ts";
import { encodedDurationSeconds } from "./media/inspect.ts";
import { type LadderPlan, planLadder } from "./media/ladder.ts";
import { type LoudnessPlan, measureLoudness } from "./media/loudness.ts";
import { machineMemoryBytes, oomKillCount } from "./media/out-of-memory.ts";
import { type MediaLimits, probeFile } from "./media/probe.ts";
import { FfmpegAbortedError, FfmpegError, runFfmpeg } from "./media/run-ffmpeg.ts";
import { type BuiltPackage, buildPackage } from "./package/build.ts";
import { type EarlyUploads, startEarlyUploads } from "./package/early-upload.ts";
import { manifestKey, outputPrefix, uploadItem } from "./package/layout.ts";
import { type Manifest, outputKeysOf, packageKey } from "./package/manifest.ts";
import { planThumbnails } from "./package/thumbnails.ts";
import { openProgressiveSource, type ProgressiveSource } from "./storage/progressive-source.ts";
import {
  deleteKeys,
  downloadToFile,
  forEachBounded,
  listKeys,
  ObjectMissingError,
  type UploadItem,
  uploadFile,
} from "./storage/s3.ts";
import { downloadSourceUrl, SourceFetchError } from "./storage/source-url.ts";

export interface JobToRun {
  jobId: string;
  attempt: number;
  preset: Preset;
  inputKey: string;
  /** Which bucket the package goes to (contract `packageBucketVar`); absent means public. */
  playback?: PlaybackPolicy;
  /**
   * A job ingested from a URL: when `inputKey` does not exist yet (the first attempt), the source is
   * downloaded from there within these limits and then kept at `inputKey` for later attempts.
   */
  source?: SourceFetchPolicy;
  /** Normalize every audio rendition to this loudness (two-pass loudnorm). */
  loudness?: LoudnessSetting;
  /** A task of a chunked job (chunked/tasks.ts): `attempt` is the job's, the task has its own. */
  task?: { name: string; attempt: number; spec: TaskSpec; results: Record<string, TaskResult> };
  /** The probe the job was split on (tasks only). */
  probe?: ProbeSummary;
}

export interface TranscodeDeps {
  s3: S3Client;
  inputBucket: string;
  outputBucket: string;
  workDir: string;
  limits: MediaLimits;
  x264Preset: X264Preset;
  uploadConcurrency: number;
  /** Called with the stage and overall progress (0..1) as work advances. */
  onProgress?: (stage: JobStage, progress: number) => void;
  /** Asks the control plane whether this attempt still holds the lease, right before publishing. */
  confirmLease?: () => Promise<boolean>;
  /** Sources longer than this are split into tasks (contract/tasks.ts); 0 never splits. */
  chunkSeconds?: number;
  signal?: AbortSignal;
  log?: (message: string, fields?: Record<string, unknown>) => void;
}

export type TranscodeOutcome =
  | { kind: "completed"; outputs: OutputKeys; probe: ProbeSummary; manifest: Manifest }
  | { kind: "failed"; error: JobError; retryable: boolean; probe?: ProbeSummary }
  /** The source is long: the job becomes these tasks (the source stays cached for them). */
  | { kind: "split"; plan: SplitPlan }
  /** A task of a chunked job is done (finalize completes the job instead). */
  | { kind: "task_completed"; result: TaskResult };

/** Thrown (only) when the attempt was stopped through its AbortSignal. */
export class AttemptStoppedError extends Error {
  constructor() {
    super("attempt stopped");
    this.name = "AttemptStoppedError";
  }
}

// The SDK retries each request and downloadToFile each part cut short; this starts the download over
// when a part failed all its tries or the object changed under it (a new upload of the same key).
const DOWNLOAD_RETRY = { attempts: 3, baseDelayMs: 1000, maxDelayMs: 4000 };

// Overall progress is split across stages by their typical share of the work.
const STAGE_SPAN: Record<Exclude<JobStage, "queued">, [number, number]> = {
  downloading: [0, 0.05],
  probing: [0.05, 0.06],
  transcoding: [0.06, 0.88],
  uploading: [0.88, 0.98],
  publishing: [0.98, 1],
};

export const failure = (
  code: JobError["code"],
  message: string,
  retryable: boolean,
  probe?: ProbeSummary,
): TranscodeOutcome => ({
  kind: "failed",
  error: { code, message: message.slice(0, 2000) },
  retryable,
  ...(probe ? { probe } : {}),
});

export async function transcodeJob(job: JobToRun, deps: TranscodeDeps): Promise<TranscodeOutcome> {
  const dir = join(
    deps.workDir,
    job.task ? `${job.jobId}-${job.task.name}-${job.task.attempt}` : `${job.jobId}-${job.attempt}`,
  );
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  try {
    if (job.task) {
      // Imported when needed: a machine that never runs a chunked job never loads it.
      const { runTask } = await import("./chunked/tasks.ts");
      return await runTask(job, job.task, deps, dir);
    }
    return await runAttempt(job, deps, dir);
  } catch (error) {
    if (deps.signal?.aborted || error instanceof FfmpegAbortedError) throw new AttemptStoppedError();
    throw error;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function runAttempt(job: JobToRun, deps: TranscodeDeps, dir: string): Promise<TranscodeOutcome> {
  const report = (stage: Exclude<JobStage, "queued">, fraction: number) => {
    const [from, to] = STAGE_SPAN[stage];
    deps.onProgress?.(stage, from + (to - from) * Math.min(1, Math.max(0, fraction)));
  };

  report("downloading", 0);
  const source = await openSource(job, deps, join(dir, "source"), report);
  if ("kind" in source) return source;
  try {
    return await transcodeSource(job, deps, source, report);
  } finally {
    await source.close();
  }
}

async function transcodeSource(
  job: JobToRun,
  deps: TranscodeDeps,
  source: SourceInput,
  report: (stage: Exclude<JobStage, "queued">, fraction: number) => void,
): Promise<TranscodeOutcome> {
  const { signal } = deps;
  report("probing", 0);
  const probed = await probeFile(source.input, source.sizeBytes, deps.limits);
  if (!probed.ok) return source.failed() ?? failure(probed.code, probed.message, false, probed.probe);
  const probe = probed.probe;

  report("transcoding", 0);
  const plan = planLadder(job.preset, probe);
  const split = planSplit(job.preset, probe, plan, deps.chunkSeconds ?? 0);
  if (split) {
    // This machine is likely to take one of the tasks next: the source stays here for it.
    const whole = await source.whole();
    if (whole) return whole;
    await keepSource(deps.workDir, job.jobId, source.path);
    return { kind: "split", plan: split };
  }
  const thumbnailPlan = planThumbnails(job.preset, probe);
  const spec: TranscodeSpec = {
    inputPath: source.input,
    workDir: dirname(source.path),
    preset: job.preset,
    plan,
    durationSeconds: probe.durationSeconds,
    x264Preset: deps.x264Preset,
    thumbnail: thumbnailPlan,
    ...(probe.video?.dynamicRange === "pq" ? { hdr: await readHdrMetadata(source.input) } : {}),
    ...(job.loudness && plan.audio.length > 0
      ? { loudness: await measureSourceLoudness(source.input, plan, job.loudness, signal) }
      : {}),
  };
  for (const d of outputDirs(spec)) await mkdir(d, { recursive: true });
  const early = uploadWhileEncoding(job, spec, deps);
  let sentEarly: ReadonlySet<string>;
  let built: BuiltPackage;
  try {
    const failed = await runTranscode(
      spec,
      job,
      probe,
      (p) => report("transcoding", p / probe.durationSeconds),
      signal,
    );
    if (failed) {
      // What went up of an encode that failed is nobody's: this attempt's own keys, removed.
      const sent = await early.stop();
      if (sent.size > 0)
        await deleteKeys(deps.s3, deps.outputBucket, [...sent]).catch((error: Error) =>
          deps.log?.("could not remove the segments of a failed encode", { error: error.message }),
        );
      // ffmpeg fails too when the source's download does: that is the outcome to report.
      return source.failed() ?? failed;
    }
    await early.encoded();
    // The last segments, then each file packaging makes, go up while packaging goes on.
    built = await buildPackage(job, spec, thumbnailPlan, probe, signal, undefined, early.add);
    sentEarly = await early.settle();
  } catch (error) {
    await early.stop();
    throw error;
  }
  report("uploading", 0);
  let uploaded = 0;
  built.media = built.media.filter((item) => !sentEarly.has(item.key));
  const total = built.media.length + built.playlists.length + built.indexes.length;
  const upload = async (items: UploadItem[]) =>
    forEachBounded(items, deps.uploadConcurrency, async (item) => {
      await uploadFile(deps.s3, deps.outputBucket, item, signal ? { signal } : {});
      report("uploading", ++uploaded / total);
    });
  try {
    // Referenced before referencing: media, then the playlists that list it, then the master.
    await upload(built.media);
    await upload(built.playlists);
    await upload(built.indexes);
    report("publishing", 0);
    // Fence: publish only while this attempt provably holds the lease, so a machine that lost it
    // (partitioned from the control plane) never overwrites or cleans up a newer attempt's package.
    if (deps.confirmLease && !(await deps.confirmLease())) throw new AttemptStoppedError();
    await uploadFile(deps.s3, deps.outputBucket, built.manifestUpload, signal ? { signal } : {});
  } catch (error) {
    if (signal?.aborted || error instanceof AttemptStoppedError) throw error;
    return failure("upload_failed", `upload failed: ${(error as Error).message}`, true, probe);
  }
  await removeUnreferenced(job, built.manifest, deps).catch((error: Error) =>
    deps.log?.("could not remove unreferenced files of earlier attempts", { error: error.message }),
  );
  report("publishing", 1);
  return { kind: "completed", outputs: outputKeysOf(built.manifest), probe, manifest: built.manifest };
}

/** Each HLS rendition's finished segments, uploaded while ffmpeg still encodes the rest (package/early-upload.ts). */
function uploadWhileEncoding(job: JobToRun, spec: TranscodeSpec, deps: TranscodeDeps): EarlyUploads {
  const { signal } = deps;
  return startEarlyUploads({
    sources: spec.preset.hls
      ? [...spec.plan.renditions, ...spec.plan.audio].map(({ name }) => ({
          dir: join(spec.workDir, workLayout.hlsDir(name)),
          packagePath: (segment: string) => `${workLayout.hlsDir(name)}/${segment}`,
        }))
      : [],
    itemFor: (path, packagePath) => uploadItem(path, packageKey(job.jobId, job.attempt, packagePath)),
    send: (item) => uploadFile(deps.s3, deps.outputBucket, item, signal ? { signal } : {}),
    // One at a time while ffmpeg has the cores; then as many as the package's own upload.
    concurrency: { encoding: 1, packaging: deps.uploadConcurrency },
    ...(signal ? { signal } : {}),
    ...(deps.log ? { log: deps.log } : {}),
  });
}

/**
 * Runs the transcode of `spec`; a failure comes back as the job's outcome. ffmpeg killed by the OOM
 * killer means this source needs more memory than the machine has (another attempt on the same
 * size would end the same way); an error exit of a source that probed fine is damaged media (not
 * worth retrying); any other kill by a signal is the machine's fault and worth another attempt.
 */
export async function runTranscode(
  spec: TranscodeSpec,
  job: Pick<JobToRun, "preset">,
  probe: ProbeSummary,
  onOutTime: (seconds: number) => void,
  signal: AbortSignal | undefined,
): Promise<TranscodeOutcome | null> {
  const oomKillsBefore = await oomKillCount();
  try {
    await runFfmpeg(buildTranscodeArgs(spec), {
      ...(signal ? { signal } : {}),
      onProgress: (p) => onOutTime(p.outTimeSeconds),
    });
    return null;
  } catch (error) {
    if (!(error instanceof FfmpegError)) throw error;
    const oomKillsAfter = error.exitCode === null ? await oomKillCount() : undefined;
    if (oomKillsBefore !== undefined && oomKillsAfter !== undefined && oomKillsAfter > oomKillsBefore) {
      const megabytes = Math.round((await machineMemoryBytes()) / 2 ** 20);
      return failure(
        "out_of_memory",
        `ffmpeg was killed for lack of memory: ${job.preset.name} of this source needs more than the machine's ${megabytes} MB (raise MACHINE_MEMORY_MB or choose a smaller preset)`,
        false,
        probe,
      );
    }
    return failure(
      "transcode_failed",
      `ffmpeg failed: ${error.stderrTail.split("\n").slice(-3).join(" | ") || error.message}`,
      error.exitCode === null,
      probe,
    );
  }
}

/** A job's source as ffmpeg reads it while (or after) it arrives at `path`. */
interface SourceInput {
  /** ffmpeg's input: the progressive source's URL, or the file. */
  input: string;
  path: string;
  sizeBytes: number;
  /** Waits for the whole file; the download's failure as the job's outcome, if it failed. */
  whole(): Promise<TranscodeOutcome | null>;
  /** The download's failure as the job's outcome, once it failed. */
  failed(): TranscodeOutcome | null;
  close(): Promise<void>;
}

/**
 * The source of a job, read as it downloads (storage/progressive-source.ts): ffmpeg starts on the
 * first bytes instead of the last. A job ingested from a URL on its first attempt fetches it whole.
 */
async function openSource(
  job: JobToRun,
  deps: TranscodeDeps,
  path: string,
  report: (stage: "downloading", fraction: number) => void,
): Promise<SourceInput | TranscodeOutcome> {
  const { signal } = deps;
  let source: ProgressiveSource;
  try {
    source = await retry(
      () => openProgressiveSource(deps.s3, deps.inputBucket, job.inputKey, path, signal ? { signal } : {}),
      { ...DOWNLOAD_RETRY, retryIf: (error) => !(error instanceof ObjectMissingError), ...(signal ? { signal } : {}) },
    );
  } catch (error) {
    if (!(error instanceof ObjectMissingError) || !job.source) return downloadFailure(error, job, signal);
    const fetched = await fetchSourceFromUrl(job, job.source, deps, path, report);
    if ("kind" in fetched) return fetched;
    return {
      input: path,
      path,
      sizeBytes: fetched.sizeBytes,
      whole: async () => null,
      failed: () => null,
      close: async () => {},
    };
  }
  const failed = () => {
    const error = source.failure();
    return error ? downloadFailure(error, job, signal) : null;
  };
  return {
    input: source.url,
    path,
    sizeBytes: source.sizeBytes,
    whole: () => source.downloaded.then(() => null, failed),
    failed,
    close: () => source.close(),
  };
}

/** A download that failed as the job's outcome; a stopped attempt stays a throw. */
function downloadFailure(error: unknown, job: JobToRun, signal: AbortSignal | undefined): TranscodeOutcome {
  if (signal?.aborted) throw error;
  if (error instanceof ObjectMissingError) return failure("input_missing", `source ${job.inputKey} not found`, false);
  return failure("internal", `download failed: ${(error as Error).message}`, true);
}

/**
 * The source on disk at `path`: from the input bucket, or for a job ingested from a URL on its
 * first attempt, from that URL.
 */
export async function obtainSource(
  job: JobToRun,
  deps: TranscodeDeps,
  path: string,
  report: (stage: "downloading", fraction: number) => void,
): Promise<{ sizeBytes: number } | TranscodeOutcome> {
  const { signal } = deps;
  try {
    return await retry(() => downloadToFile(deps.s3, deps.inputBucket, job.inputKey, path, { signal }), {
      ...DOWNLOAD_RETRY,
      retryIf: (error) => !(error instanceof ObjectMissingError),
      ...(signal ? { signal } : {}),
    });
  } catch (error) {
    if (signal?.aborted) throw error;
    if (error instanceof ObjectMissingError && job.source)
      return fetchSourceFromUrl(job, job.source, deps, path, report);
    if (error instanceof ObjectMissingError) return failure("input_missing", `source ${job.inputKey} not found`, false);
    return failure("internal", `download failed: ${(error as Error).message}`, true);
  }
}

/**
 * Loudness pass 1: each audio rendition's source stream, down-mixed as the rendition will be. A
 * silent stream has no loudness to correct and is encoded as it is.
 */
export async function measureSourceLoudness(
  sourcePath: string,
  plan: LadderPlan,
  setting: LoudnessSetting,
  signal: AbortSignal | undefined,
): Promise<LoudnessPlan> {
  const measured = await measureLoudness(
    plan.audio.map((a) => ({ path: sourcePath, stream: `0:a:${a.sourceIndex}`, channels: a.channels })),
    setting.targetLufs,
    signal,
  );
  const input: LoudnessPlan["input"] = new Map();
  plan.audio.forEach((a, i) => {
    const m = measured[i];
    if (m && Number.isFinite(m.integratedLufs)) input.set(a.name, m);
  });
  return { targetLufs: setting.targetLufs, input };
}

/**
 * The first attempt at a job ingested from a URL: download it (source-url.ts enforces the address
 * rules and MAX_UPLOAD_BYTES while it streams; a container that declares a duration over the limit
 * in its first megabyte stops it too), then keep it at `inputKey` like an uploaded source, so later
 * attempts transcode the same bytes and deleting the job removes it.
 */
async function fetchSourceFromUrl(
  job: JobToRun,
  source: SourceFetchPolicy,
  deps: TranscodeDeps,
  path: string,
  report: (stage: "downloading", fraction: number) => void,
): Promise<{ sizeBytes: number } | TranscodeOutcome> {
  const { maxDurationSeconds } = deps.limits;
  let fetched: Awaited<ReturnType<typeof downloadSourceUrl>>;
  try {
    fetched = await downloadSourceUrl(source, path, {
      ...(deps.signal ? { signal: deps.signal } : {}),
      onBytes: (received, total) => total && report("downloading", received / total),
      checkPartial: async (partial) => {
        const declared = await encodedDurationSeconds(partial);
        return declared !== undefined && declared > maxDurationSeconds
          ? `the source declares ${Math.round(declared)} s, over the limit of ${maxDurationSeconds} s`
          : null;
      },
    });
  } catch (error) {
    if (error instanceof SourceFetchError) return failure(error.code, error.message, error.retryable);
    throw error;
  }
  const keep: UploadItem = {
    path,
    key: job.inputKey,
    contentType: fetched.contentType ?? "application/octet-stream",
    cacheControl: "private, no-store",
  };
  await uploadFile(deps.s3, deps.inputBucket, keep, deps.signal ? { signal: deps.signal } : {}).catch((error: Error) =>
    // Not fatal: a later attempt fetches the URL again.
    deps.log?.("could not keep the downloaded source in the input bucket", { error: error.message }),
  );
  return { sizeBytes: fetched.sizeBytes };
}

/**
 * Files no manifest refers to (an interrupted earlier attempt, or a released attempt that had
 * begun uploading under the same number) are removed once this attempt's manifest is out. Later
 * attempts' prefixes are never touched.
 */
export async function removeUnreferenced(
  job: JobToRun,
  manifest: Manifest,
  deps: TranscodeDeps,
  // A chunked job's own attempt keeps what its tasks wrote (retried chunks, live playlists).
  { olderAttemptsOnly = false }: { olderAttemptsOnly?: boolean } = {},
) {
  const referenced = new Set([...manifest.files.map((f) => f.key), manifestKey(job.jobId)]);
  const prefix = outputPrefix(job.jobId);
  const attemptOf = (key: string) => Number(key.slice(prefix.length).split("/")[0]);
  const stale = (await listKeys(deps.s3, deps.outputBucket, prefix)).filter(
    (k) => !referenced.has(k) && (olderAttemptsOnly ? attemptOf(k) < job.attempt : attemptOf(k) <= job.attempt),
  );
  if (stale.length > 0) await deleteKeys(deps.s3, deps.outputBucket, stale);
}
