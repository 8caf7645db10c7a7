/**
 * One attempt at one job: download the source, probe and validate it, run the single ffmpeg
 * command, package (master playlist, MP4, sprite + VTT, manifest) and publish. The result is a
 * value (`completed` or `failed` with a stable code); only being stopped (AbortSignal) throws.
 */
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
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
} from "@tcoder/worker/contract";
import { buildTranscodeArgs, outputDirs, type TranscodeSpec, type X264Preset } from "./media/ffmpeg-args.ts";
import { readHdrMetadata } from "./media/hdr.ts";
import { encodedDurationSeconds } from "./media/inspect.ts";
import { type LadderPlan, planLadder } from "./media/ladder.ts";
import { type LoudnessPlan, measureLoudness } from "./media/loudness.ts";
import { machineMemoryBytes, oomKillCount } from "./media/out-of-memory.ts";
import { type MediaLimits, probeFile } from "./media/probe.ts";
import { FfmpegAbortedError, FfmpegError, runFfmpeg } from "./media/run-ffmpeg.ts";
import { buildPackage } from "./package/build.ts";
import { manifestKey, outputPrefix } from "./package/layout.ts";
import { type Manifest, outputKeysOf } from "./package/manifest.ts";
import { planThumbnails } from "./package/thumbnails.ts";
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
  signal?: AbortSignal;
  log?: (message: string, fields?: Record<string, unknown>) => void;
}

export type TranscodeOutcome =
  | { kind: "completed"; outputs: OutputKeys; probe: ProbeSummary; manifest: Manifest }
  | { kind: "failed"; error: JobError; retryable: boolean; probe?: ProbeSummary };

/** Thrown (only) when the attempt was stopped through its AbortSignal. */
export class AttemptStoppedError extends Error {
  constructor() {
    super("attempt stopped");
    this.name = "AttemptStoppedError";
  }
}

const DOWNLOAD_ATTEMPTS = 3;

// Overall progress is split across stages by their typical share of the work.
const STAGE_SPAN: Record<Exclude<JobStage, "queued">, [number, number]> = {
  downloading: [0, 0.05],
  probing: [0.05, 0.06],
  transcoding: [0.06, 0.88],
  uploading: [0.88, 0.98],
  publishing: [0.98, 1],
};

const failure = (
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
  const dir = join(deps.workDir, `${job.jobId}-${job.attempt}`);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  try {
    return await runAttempt(job, deps, dir);
  } catch (error) {
    if (deps.signal?.aborted || error instanceof FfmpegAbortedError) throw new AttemptStoppedError();
    throw error;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function runAttempt(job: JobToRun, deps: TranscodeDeps, dir: string): Promise<TranscodeOutcome> {
  const { signal } = deps;
  const report = (stage: Exclude<JobStage, "queued">, fraction: number) => {
    const [from, to] = STAGE_SPAN[stage];
    deps.onProgress?.(stage, from + (to - from) * Math.min(1, Math.max(0, fraction)));
  };

  report("downloading", 0);
  const sourcePath = join(dir, "source");
  let sizeBytes = 0;
  // The SDK retries requests; a body stream cut mid-way is retried here, from the start.
  for (let attempt = 1; ; attempt++) {
    try {
      ({ sizeBytes } = await downloadToFile(deps.s3, deps.inputBucket, job.inputKey, sourcePath, signal));
      break;
    } catch (error) {
      if (signal?.aborted) throw error;
      if (error instanceof ObjectMissingError && job.source) {
        const fetched = await fetchSourceFromUrl(job, job.source, deps, sourcePath, report);
        if ("kind" in fetched) return fetched;
        ({ sizeBytes } = fetched);
        break;
      }
      if (error instanceof ObjectMissingError)
        return failure("input_missing", `source ${job.inputKey} not found`, false);
      if (attempt >= DOWNLOAD_ATTEMPTS)
        return failure("internal", `download failed: ${(error as Error).message}`, true);
      await new Promise((resolve) => setTimeout(resolve, 500 * 2 ** attempt));
    }
  }

  report("probing", 0);
  const probed = await probeFile(sourcePath, sizeBytes, deps.limits);
  if (!probed.ok) return failure(probed.code, probed.message, false, probed.probe);
  const probe = probed.probe;

  report("transcoding", 0);
  const plan = planLadder(job.preset, probe);
  const thumbnailPlan = planThumbnails(job.preset, probe);
  const spec: TranscodeSpec = {
    inputPath: sourcePath,
    workDir: dir,
    preset: job.preset,
    plan,
    durationSeconds: probe.durationSeconds,
    x264Preset: deps.x264Preset,
    thumbnail: thumbnailPlan,
    ...(probe.video?.dynamicRange === "pq" ? { hdr: await readHdrMetadata(sourcePath) } : {}),
    ...(job.loudness && plan.audio.length > 0
      ? { loudness: await measureSourceLoudness(sourcePath, plan, job.loudness, signal) }
      : {}),
  };
  for (const d of outputDirs(spec)) await mkdir(d, { recursive: true });
  const oomKillsBefore = await oomKillCount();
  try {
    await runFfmpeg(buildTranscodeArgs(spec), {
      ...(signal ? { signal } : {}),
      onProgress: (p) => report("transcoding", p.outTimeSeconds / probe.durationSeconds),
    });
  } catch (error) {
    if (!(error instanceof FfmpegError)) throw error;
    // Killed by the OOM killer: this source needs more memory than the machine has, and another
    // attempt on the same machine size would end the same way.
    const oomKillsAfter = error.exitCode === null ? await oomKillCount() : undefined;
    if (oomKillsBefore !== undefined && oomKillsAfter !== undefined && oomKillsAfter > oomKillsBefore) {
      const megabytes = Math.round((await machineMemoryBytes()) / 2 ** 20);
      return failure(
        "out_of_memory",
        `ffmpeg was killed for lack of memory: ${job.preset} of this source needs more than the machine's ${megabytes} MB (raise MACHINE_MEMORY_MB or choose a smaller preset)`,
        false,
        probe,
      );
    }
    // The source probed fine, so an error exit means damaged media (not worth retrying); any other
    // kill by a signal is the machine's fault and worth another attempt.
    return failure(
      "transcode_failed",
      `ffmpeg failed: ${error.stderrTail.split("\n").slice(-3).join(" | ") || error.message}`,
      error.exitCode === null,
      probe,
    );
  }

  const built = await buildPackage(job, spec, thumbnailPlan, probe, signal);

  report("uploading", 0);
  let uploaded = 0;
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

/**
 * Loudness pass 1: each audio rendition's source stream, down-mixed as the rendition will be. A
 * silent stream has no loudness to correct and is encoded as it is.
 */
async function measureSourceLoudness(
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
async function removeUnreferenced(job: JobToRun, manifest: Manifest, deps: TranscodeDeps) {
  const referenced = new Set([...manifest.files.map((f) => f.key), manifestKey(job.jobId)]);
  const prefix = outputPrefix(job.jobId);
  const attemptOf = (key: string) => Number(key.slice(prefix.length).split("/")[0]);
  const stale = (await listKeys(deps.s3, deps.outputBucket, prefix)).filter(
    (k) => !referenced.has(k) && attemptOf(k) <= job.attempt,
  );
  if (stale.length > 0) await deleteKeys(deps.s3, deps.outputBucket, stale);
}
