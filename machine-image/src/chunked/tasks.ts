/**
 * The tasks of a chunked job (contract/tasks.ts), one attempt each:
 * - `video`: every rung of one chunk, uploaded under `hls/<rung>/<task>.<attempt>/`;
 * - `audio`: every audio rendition (and the subtitles as WebVTT) of the whole source;
 * - `stills`: the poster and the thumbnails' sprite and cues, where the package keeps them;
 * - `finalize`: the media and master playlists, DASH manifest, MP4 (the primary rung and the
 *   audio, concatenated without re-encoding) and manifest, from what the others uploaded.
 * Like an unchunked attempt, the result is a value; only being stopped throws.
 */
import { createHash } from "node:crypto";
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import {
  type EncodedTrack,
  type JobStage,
  type LoudnessReport,
  type ProbeSummary,
  packagePaths,
  parseMediaPlaylist,
  type TaskResult,
  type VideoTaskSpec,
  writeMediaPlaylist,
} from "@tcoder/worker/contract";
import { outputDirs, type TranscodeSpec, workLayout } from "../media/ffmpeg-args.ts";
import { fileExists, joinFiles } from "../media/files.ts";
import { readHdrMetadata } from "../media/hdr.ts";
import { type LadderPlan, planLadder, primaryRendition } from "../media/ladder.ts";
import { loudnessReport, measureLoudness } from "../media/loudness.ts";
import { buildPackage, buildThumbnails } from "../package/build.ts";
import { AAC_LC_CODEC, videoCodecFromInit } from "../package/hls-master.ts";
import { attemptPrefix, uploadItem } from "../package/layout.ts";
import { outputKeysOf } from "../package/manifest.ts";
import { planThumbnails } from "../package/thumbnails.ts";
import { downloadToFile, forEachBounded, type UploadItem, uploadFile } from "../storage/s3.ts";
import {
  AttemptStoppedError,
  failure,
  type JobToRun,
  measureSourceLoudness,
  obtainSource,
  removeUnreferenced,
  runTranscode,
  type TranscodeDeps,
  type TranscodeOutcome,
} from "../transcode.ts";
import { listedSegments, tracksOf, videoResultsInOrder } from "./playlists.ts";
import { cachedSource, keepSource } from "./source-cache.ts";

type Task = NonNullable<JobToRun["task"]>;

interface TaskContext {
  job: JobToRun;
  task: Task;
  deps: TranscodeDeps;
  dir: string;
  probe: ProbeSummary;
  plan: LadderPlan;
  /** Keys of this job's package start here. */
  prefix: string;
  /** Where this task attempt's media go below a rendition's directory. */
  attemptDir: string;
  report: (stage: Exclude<JobStage, "queued">, fraction: number) => void;
}

// A task's own progress (the control plane weighs it into the job's) by stage.
const STAGE_SPAN: Record<Exclude<JobStage, "queued">, [number, number]> = {
  downloading: [0, 0.05],
  probing: [0.05, 0.05],
  transcoding: [0.05, 0.9],
  uploading: [0.9, 1],
  publishing: [1, 1],
};

export async function runTask(job: JobToRun, task: Task, deps: TranscodeDeps, dir: string): Promise<TranscodeOutcome> {
  if (!job.probe) return failure("internal", `task ${task.name} was claimed without the job's probe`, false);
  const ctx: TaskContext = {
    job,
    task,
    deps,
    dir,
    probe: job.probe,
    plan: planLadder(job.preset, job.probe),
    prefix: attemptPrefix(job.jobId, job.attempt),
    attemptDir: `${task.name}.${task.attempt}`,
    report: (stage, fraction) => {
      const [from, to] = STAGE_SPAN[stage];
      deps.onProgress?.(stage, from + (to - from) * Math.min(1, Math.max(0, fraction)));
    },
  };
  if (task.spec.kind === "finalize") return finalize(ctx);

  ctx.report("downloading", 0);
  let source = await cachedSource(deps.workDir, job.jobId);
  if (!source) {
    const path = join(dir, "source");
    const downloaded = await obtainSource(job, deps, path, ctx.report);
    if ("kind" in downloaded) return downloaded;
    source = { path: await keepSource(deps.workDir, job.jobId, path), sizeBytes: downloaded.sizeBytes };
  }
  ctx.report("transcoding", 0);
  switch (task.spec.kind) {
    case "video":
      return encodeVideo(ctx, source.path, task.spec);
    case "audio":
      return encodeAudio(ctx, source.path);
    case "stills":
      return makeStills(ctx, source.path);
  }
}

const baseSpec = (ctx: TaskContext, inputPath: string): TranscodeSpec => ({
  inputPath,
  workDir: ctx.dir,
  preset: ctx.job.preset,
  plan: ctx.plan,
  durationSeconds: ctx.probe.durationSeconds,
  x264Preset: ctx.deps.x264Preset,
  thumbnail: null,
});

async function encodeVideo(ctx: TaskContext, inputPath: string, chunk: VideoTaskSpec): Promise<TranscodeOutcome> {
  const spec: TranscodeSpec = {
    ...baseSpec(ctx, inputPath),
    part: {
      kind: "video",
      chunk: {
        startSeconds: chunk.startSeconds,
        sourceStartSeconds: ctx.probe.startSeconds ?? 0,
        ...(chunk.frames === undefined ? {} : { frames: chunk.frames }),
        durationSeconds: chunk.durationSeconds,
        firstSegment: chunk.firstSegment,
      },
    },
    ...(ctx.probe.video?.dynamicRange === "pq" ? { hdr: await readHdrMetadata(inputPath) } : {}),
  };
  await makeDirs(spec);
  const failed = await runTranscode(
    spec,
    ctx.job,
    ctx.probe,
    // With the source's timestamps kept, ffmpeg reports output time from the source's start.
    (t) => ctx.report("transcoding", (t >= chunk.startSeconds ? t - chunk.startSeconds : t) / chunk.durationSeconds),
    ctx.deps.signal,
  );
  if (failed) return failed;
  const tracks = await uploadTracks(
    ctx,
    ctx.plan.renditions.map((r) => r.name),
    "video",
  );
  if ("kind" in tracks) return tracks;
  return { kind: "task_completed", result: { kind: "video", tracks } };
}

async function encodeAudio(ctx: TaskContext, inputPath: string): Promise<TranscodeOutcome> {
  const { plan, job } = ctx;
  const spec: TranscodeSpec = {
    ...baseSpec(ctx, inputPath),
    part: { kind: "audio" },
    ...(job.loudness && plan.audio.length > 0
      ? { loudness: await measureSourceLoudness(inputPath, plan, job.loudness, ctx.deps.signal) }
      : {}),
  };
  await makeDirs(spec);
  const failed = await runTranscode(
    spec,
    job,
    ctx.probe,
    (t) => ctx.report("transcoding", t / ctx.probe.durationSeconds),
    ctx.deps.signal,
  );
  if (failed) return failed;
  const tracks = await uploadTracks(
    ctx,
    plan.audio.map((a) => a.name),
    "audio",
  );
  if ("kind" in tracks) return tracks;

  const subtitles: { name: string; uri: string }[] = [];
  const uploads: UploadItem[] = [];
  for (const sub of plan.subtitles) {
    const uri = `${workLayout.hlsDir(sub.name)}/${ctx.attemptDir}/source.vtt`;
    uploads.push(item(ctx, join(ctx.dir, workLayout.subtitle(sub.name)), uri));
    subtitles.push({ name: sub.name, uri });
  }
  const uploaded = await upload(ctx, uploads);
  if (uploaded) return uploaded;

  let loudness: LoudnessReport | undefined;
  if (spec.loudness) {
    // What the listener gets: each encoded rendition, measured like its source was.
    const encoded = await Promise.all(
      plan.audio.map(async (a) => ({
        name: a.name,
        channels: a.channels,
        path: await joinTrack(ctx.dir, a.name),
        stream: "0:a:0",
      })),
    );
    const output = await measureLoudness(encoded, spec.loudness.targetLufs, ctx.deps.signal);
    loudness = loudnessReport(
      spec.loudness,
      encoded.flatMap((a, i) => (output[i] ? [{ name: a.name, channels: a.channels, output: output[i] }] : [])),
    );
  }
  return { kind: "task_completed", result: { kind: "audio", tracks, subtitles, ...(loudness ? { loudness } : {}) } };
}

async function makeStills(ctx: TaskContext, inputPath: string): Promise<TranscodeOutcome> {
  const thumbnailPlan = planThumbnails(ctx.job.preset, ctx.probe);
  const spec: TranscodeSpec = { ...baseSpec(ctx, inputPath), thumbnail: thumbnailPlan, part: { kind: "stills" } };
  await makeDirs(spec);
  const failed = await runTranscode(
    spec,
    ctx.job,
    ctx.probe,
    (t) => ctx.report("transcoding", t / ctx.probe.durationSeconds),
    ctx.deps.signal,
  );
  if (failed) return failed;
  const result: Extract<TaskResult, { kind: "stills" }> = { kind: "stills" };
  const uploads: UploadItem[] = [];
  const posterPath = join(ctx.dir, workLayout.poster);
  if (await fileExists(posterPath)) {
    uploads.push(item(ctx, posterPath, packagePaths.poster));
    result.poster = packagePaths.poster;
  }
  const thumbnails = thumbnailPlan
    ? await buildThumbnails(ctx.dir, thumbnailPlan, ctx.probe.durationSeconds, ctx.deps.signal)
    : null;
  if (thumbnails) {
    uploads.push(item(ctx, thumbnails.spritePath, packagePaths.thumbnailsSprite));
    uploads.push(item(ctx, thumbnails.vttPath, packagePaths.thumbnailsVtt));
    result.thumbnails = {
      sprite: packagePaths.thumbnailsSprite,
      vtt: packagePaths.thumbnailsVtt,
      count: thumbnails.count,
    };
  }
  const uploaded = await upload(ctx, uploads);
  if (uploaded) return uploaded;
  return { kind: "task_completed", result };
}

/**
 * The package of a chunked job, from what its tasks uploaded: media playlists listing every
 * chunk's segments, then everything buildPackage makes of them. Only the files the package is
 * made from are downloaded: each rendition's init segments, the MP4's rung and audio, the
 * subtitles.
 */
async function finalize(ctx: TaskContext): Promise<TranscodeOutcome> {
  const { job, task, deps, dir, plan, probe, prefix } = ctx;
  const chunks = videoResultsInOrder(task.results);
  const audio = task.results.audio?.kind === "audio" ? task.results.audio : undefined;
  const stills = task.results.stills?.kind === "stills" ? task.results.stills : undefined;
  const mp4Rung = job.preset.mp4 ? primaryRendition(plan)?.name : undefined;

  ctx.report("downloading", 0);
  const sizes = new Map<string, number>();
  const downloads: { uri: string; path: string }[] = [];
  const listRendition = async (name: string, tracks: EncodedTrack[] | null, whole: boolean) => {
    if (!tracks) throw new Error(`a task's result has no ${name} rendition`);
    const segments = listedSegments(name, tracks);
    await mkdir(join(dir, workLayout.hlsDir(name)), { recursive: true });
    await writeFile(
      join(dir, workLayout.playlist(name)),
      writeMediaPlaylist({ segments, type: "VOD", ended: true, targetDurationSeconds: job.preset.segmentSeconds }),
    );
    for (const track of tracks) {
      sizes.set(track.init.uri, track.init.sizeBytes);
      downloads.push({ uri: track.init.uri, path: join(dir, track.init.uri) });
      for (const segment of track.segments) {
        sizes.set(segment.uri, segment.sizeBytes);
        if (whole) downloads.push({ uri: segment.uri, path: join(dir, segment.uri) });
      }
    }
  };
  try {
    for (const r of plan.renditions) await listRendition(r.name, tracksOf(r.name, chunks), r.name === mp4Rung);
    for (const a of plan.audio)
      await listRendition(
        a.name,
        audio ? tracksOf(a.name, [audio]) : null,
        job.preset.mp4 && plan.renditions.length > 0,
      );
  } catch (error) {
    return failure("internal", `cannot stitch the package: ${(error as Error).message}`, false, probe);
  }
  for (const sub of audio?.subtitles ?? [])
    downloads.push({ uri: sub.uri, path: join(dir, workLayout.subtitle(sub.name)) });
  let fetched = 0;
  await forEachBounded(downloads, deps.uploadConcurrency, async ({ uri, path }) => {
    await mkdir(dirname(path), { recursive: true });
    await downloadToFile(deps.s3, deps.outputBucket, `${prefix}${uri}`, path, { signal: deps.signal });
    ctx.report("downloading", ++fetched / downloads.length);
  });

  ctx.report("transcoding", 0);
  const thumbnailPlan = planThumbnails(job.preset, probe);
  const built = await buildPackage(
    job,
    { ...baseSpec(ctx, ""), thumbnail: thumbnailPlan },
    thumbnailPlan,
    probe,
    deps.signal,
    {
      sizes,
      ...(stills?.poster ? { poster: stills.poster } : {}),
      ...(stills?.thumbnails ? { thumbnails: stills.thumbnails } : {}),
      ...(audio?.loudness ? { loudness: audio.loudness } : {}),
    },
  );
  ctx.report("uploading", 0);
  try {
    // Referenced before referencing: media, then the playlists that list it, then the master.
    for (const items of [built.media, built.playlists, built.indexes]) {
      const failed = await upload(ctx, items);
      if (failed) return failed;
    }
    if (deps.confirmLease && !(await deps.confirmLease())) throw new AttemptStoppedError();
    await uploadFile(deps.s3, deps.outputBucket, built.manifestUpload, deps.signal ? { signal: deps.signal } : {});
  } catch (error) {
    if (deps.signal?.aborted || error instanceof AttemptStoppedError) throw error;
    return failure("upload_failed", `upload failed: ${(error as Error).message}`, true, probe);
  }
  await removeUnreferenced(job, built.manifest, deps, { olderAttemptsOnly: true }).catch((error: Error) =>
    deps.log?.("could not remove unreferenced files of earlier attempts", { error: error.message }),
  );
  return { kind: "completed", outputs: outputKeysOf(built.manifest), probe, manifest: built.manifest };
}

const item = (ctx: TaskContext, path: string, uri: string): UploadItem => uploadItem(path, `${ctx.prefix}${uri}`);

/** Uploads, a bounded number at a time; a failure comes back as the task's (retryable) outcome. */
async function upload(ctx: TaskContext, items: UploadItem[]): Promise<TranscodeOutcome | null> {
  const { deps } = ctx;
  let done = 0;
  try {
    await forEachBounded(items, deps.uploadConcurrency, async (upload) => {
      await uploadFile(deps.s3, deps.outputBucket, upload, deps.signal ? { signal: deps.signal } : {});
      ctx.report("uploading", ++done / items.length);
    });
    return null;
  } catch (error) {
    if (deps.signal?.aborted) throw error;
    return failure("upload_failed", `upload failed: ${(error as Error).message}`, true, ctx.probe);
  }
}

/** Each rendition's init and segments as ffmpeg wrote them, uploaded under this task attempt's directory. */
async function uploadTracks(
  ctx: TaskContext,
  names: string[],
  kind: "video" | "audio",
): Promise<EncodedTrack[] | TranscodeOutcome> {
  const tracks: EncodedTrack[] = [];
  const uploads: UploadItem[] = [];
  for (const name of names) {
    const local = join(ctx.dir, workLayout.hlsDir(name));
    const playlist = parseMediaPlaylist(await readFile(join(ctx.dir, workLayout.playlist(name)), "utf8"));
    if (!playlist.initSegment || playlist.segments.length === 0)
      return failure("transcode_failed", `ffmpeg wrote no ${name} segments`, true, ctx.probe);
    const uriOf = (file: string) => `${workLayout.hlsDir(name)}/${ctx.attemptDir}/${file}`;
    const initBytes = await readFile(join(local, playlist.initSegment));
    const codec = kind === "video" ? videoCodecFromInit(initBytes) : AAC_LC_CODEC;
    if (!codec) return failure("internal", `no H.264 or HEVC configuration in ${name}'s init segment`, false);
    const segments = [];
    for (const segment of playlist.segments) {
      const path = join(local, segment.uri);
      segments.push({
        uri: uriOf(segment.uri),
        durationSeconds: segment.durationSeconds,
        sizeBytes: (await stat(path)).size,
      });
      uploads.push(item(ctx, path, uriOf(segment.uri)));
    }
    uploads.unshift(item(ctx, join(local, playlist.initSegment), uriOf(playlist.initSegment)));
    tracks.push({
      name,
      init: {
        uri: uriOf(playlist.initSegment),
        sha256: createHash("sha256").update(initBytes).digest("hex"),
        sizeBytes: initBytes.length,
      },
      codec,
      segments,
    });
  }
  const failed = await upload(ctx, uploads);
  return failed ?? tracks;
}

/** A rendition's init and segments as one fragmented MP4 (what ffmpeg measures loudness of). */
async function joinTrack(dir: string, name: string): Promise<string> {
  const local = join(dir, workLayout.hlsDir(name));
  const playlist = parseMediaPlaylist(await readFile(join(dir, workLayout.playlist(name)), "utf8"));
  const files = [...(playlist.initSegment ? [playlist.initSegment] : []), ...playlist.segments.map((s) => s.uri)];
  return joinFiles(
    files.map((uri) => join(local, uri)),
    join(dir, `joined-${name}.mp4`),
  );
}

async function makeDirs(spec: TranscodeSpec) {
  for (const d of outputDirs(spec)) await mkdir(d, { recursive: true });
}
