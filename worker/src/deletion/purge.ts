/**
 * Removing a deleted job's objects: its source (and any multipart upload still open for it) and
 * every attempt's outputs. The tombstone is written before this runs (state/jobs.ts `deleteJob`),
 * so a store that fails halfway leaves the job in the purge queue and the cron runs the purge
 * again; every step is idempotent (listing what is left, deleting what is listed).
 */
import type { Settings } from "../bindings.ts";
import { packageBucketVar, playbackPolicies } from "../contract/index.ts";
import { duePurges, finishPurge, inputPrefixFor, outputPrefixFor, type StateRedis } from "../state/index.ts";
import { getJobUpload } from "../state/uploads.ts";
import { abortMultipartUpload } from "../storage/multipart.ts";
import { deletePrefix } from "../storage/objects.ts";

type PurgeSettings = Pick<
  Settings,
  "INPUT_BUCKET" | "OUTPUT_BUCKET" | "S3_ENDPOINT" | "S3_REGION" | "S3_ACCESS_KEY_ID" | "S3_SECRET_ACCESS_KEY"
>;

/**
 * Where a job's objects can be: its source in the input bucket, its packages in the bucket of its
 * playback policy (each policy's is searched, so nothing depends on the record being intact).
 */
export const jobObjectLocations = (settings: PurgeSettings, jobId: string): { bucket: string; prefix: string }[] => [
  { bucket: settings.INPUT_BUCKET, prefix: inputPrefixFor(jobId) },
  ...playbackPolicies.map((policy) => ({ bucket: settings[packageBucketVar(policy)], prefix: outputPrefixFor(jobId) })),
];

export interface PurgeResult {
  /** Objects removed by this pass. */
  deleted: number;
  /** The job is settled (`purgedAt`); false when a later pass must run (more objects, or a machine may still write). */
  purged: boolean;
}

/**
 * One purge pass over a deleted job, begun at `startedAtMs` (now). Throws a StorageError when the
 * store fails; the job then stays in the purge queue.
 */
export async function purgeJob(
  settings: PurgeSettings,
  redis: StateRedis,
  jobId: string,
  startedAtMs: number,
): Promise<PurgeResult> {
  const upload = await getJobUpload(redis, jobId);
  if (upload.found && upload.multipart)
    await abortMultipartUpload(settings, {
      bucket: settings.INPUT_BUCKET,
      key: upload.inputKey,
      uploadId: upload.multipart.uploadId,
    });
  let deleted = 0;
  let empty = true;
  for (const { bucket, prefix } of jobObjectLocations(settings, jobId)) {
    const result = await deletePrefix(settings, bucket, prefix);
    deleted += result.deleted;
    empty &&= result.empty;
  }
  if (!empty) return { deleted, purged: false };
  return { deleted, purged: await finishPurge(redis, jobId, startedAtMs) };
}

/** The cron's part: every deleted job whose purge is due, one pass each; failures are reported, not thrown. */
export async function purgeDueJobs(
  settings: PurgeSettings,
  redis: StateRedis,
  nowMs: number,
): Promise<{ purged: string[]; pending: string[]; errors: string[] }> {
  const report = { purged: [] as string[], pending: [] as string[], errors: [] as string[] };
  for (const jobId of await duePurges(redis, nowMs)) {
    try {
      const result = await purgeJob(settings, redis, jobId, nowMs);
      (result.purged ? report.purged : report.pending).push(jobId);
    } catch (err) {
      report.errors.push(`purge ${jobId}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return report;
}
