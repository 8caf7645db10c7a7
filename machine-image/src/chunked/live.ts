/**
 * A chunked job's live playlists: `hls/live.m3u8` and one `hls/<rendition>/live.m3u8` each, written
 * after every task that adds playable media. While the job runs they are `EVENT` playlists listing
 * the contiguous chunks done so far (chunk k once chunks 0..k are done) and the audio; once it is
 * complete they list everything as `VOD` with `#EXT-X-ENDLIST`. One writer at a time, and always a
 * pass after the last change (state withLivePasses), so they never go back in time.
 */
import { PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import {
  cacheControlFor,
  contentTypeFor,
  isPresetName,
  livePaths,
  type PlaybackPolicy,
  ProbeSummary,
  packageBucketVar,
  presets,
  type TaskResult,
  writeMasterPlaylist,
  writeMediaPlaylist,
} from "@tcoder/worker/contract";
import { markLive, readTasks, type StateRedis, type StoredTask, withLivePasses } from "@tcoder/worker/state";
import { planLadder } from "../media/ladder.ts";
import { measureBandwidth } from "../package/hls-master.ts";
import { attemptPrefix } from "../package/layout.ts";
import { masterEntries, type Rates } from "../package/master-entries.ts";
import { listedSegments, relativeToRendition, tracksOf } from "./playlists.ts";

export interface LiveDeps {
  redis: StateRedis;
  s3: S3Client;
  /** The bucket of each playback policy's packages (contract packageBucketVar). */
  bucketOf: (policy: ReturnType<typeof packageBucketVar>) => string;
}

type Done<K extends TaskResult["kind"]> = Extract<TaskResult, { kind: K }>;

export async function publishLive(deps: LiveDeps, jobId: string): Promise<void> {
  await withLivePasses(deps.redis, jobId, () => livePass(deps, jobId));
}

async function livePass(deps: LiveDeps, jobId: string): Promise<void> {
  const { job, tasks } = await readTasks(deps.redis, jobId);
  const ended = job.state === "completed";
  if ((job.state !== "running" && !ended) || job.probe === undefined || !isPresetName(job.preset ?? "")) return;
  const preset = presets[job.preset as keyof typeof presets];
  const plan = planLadder(preset, ProbeSummary.parse(JSON.parse(job.probe)));
  const prefix = attemptPrefix(jobId, Number(job.attempts ?? 1));
  const bucket = deps.bucketOf(packageBucketVar((job.playback ?? "public") as PlaybackPolicy));

  const result = <K extends TaskResult["kind"]>(task: StoredTask | undefined, kind: K): Done<K> | undefined =>
    task?.state === "done" && task.result?.kind === kind ? (task.result as Done<K>) : undefined;
  const chunks: Done<"video">[] = [];
  for (const task of tasks.filter((t) => t.spec.kind === "video").sort((a, b) => index(a) - index(b))) {
    const done = result(task, "video");
    if (!done) break;
    chunks.push(done);
  }
  const audioTask = tasks.find((t) => t.spec.kind === "audio");
  const audio = result(audioTask, "audio");
  // Watchable once the first chunk and the audio (when the source has any) are there.
  if (chunks.length === 0 || (audioTask && !audio)) return;

  const put = (uri: string, body: string) => {
    const key = `${prefix}${uri}`;
    return deps.s3.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: key,
        Body: body,
        ContentType: contentTypeFor(key),
        CacheControl: cacheControlFor(key),
      }),
    );
  };
  /** Writes a rendition's live playlist; its rates and codec, for the master. */
  const playlist = async (
    name: string,
    source: readonly (Done<"video"> | Done<"audio">)[],
  ): Promise<{ rates: Rates; codec: string } | null> => {
    const tracks = tracksOf(name, source);
    if (!tracks) return null;
    const segments = listedSegments(name, tracks);
    await put(
      livePaths.rendition(name),
      writeMediaPlaylist({
        segments,
        type: ended ? "VOD" : "EVENT",
        ended,
        targetDurationSeconds: preset.segmentSeconds,
      }),
    );
    const sizes = new Map<string, number>();
    for (const track of tracks)
      for (const file of [track.init, ...track.segments])
        sizes.set(relativeToRendition(name, file.uri), file.sizeBytes);
    const durationSeconds = segments.reduce((sum, s) => sum + s.durationSeconds, 0);
    const rates = measureBandwidth(
      { initSegment: relativeToRendition(name, tracks[0]?.init.uri ?? ""), segments, durationSeconds },
      (uri) => sizes.get(uri) ?? 0,
    );
    return { rates, codec: tracks[0]?.codec ?? "" };
  };

  const video = [];
  for (const r of plan.renditions) {
    const listed = await playlist(r.name, chunks);
    if (listed) video.push({ planned: r, ...listed });
  }
  const audioRates = new Map<string, Rates>();
  for (const a of plan.audio) {
    const listed = audio ? await playlist(a.name, [audio]) : null;
    if (listed) audioRates.set(a.name, listed.rates);
  }
  const { variants, audioMedia } = masterEntries({
    plan,
    video,
    audioRates,
    uriOf: (name) => relativeToMaster(livePaths.rendition(name)),
  });
  await put(livePaths.master, writeMasterPlaylist(variants, audioMedia));
  await markLive(deps.redis, jobId, `${prefix}${livePaths.master}`);
}

const index = (task: StoredTask) => (task.spec.kind === "video" ? task.spec.index : 0);

/** A rendition's live playlist as the live master (in `hls/`) refers to it. */
const relativeToMaster = (uri: string) => uri.slice(uri.indexOf("/") + 1);
