/**
 * The S3 multipart upload a job's source is arriving through, kept on the job hash
 * (`multipartUploadId`, `multipartPartBytes`) so every request about it is bound to that job and
 * only allowed while the job still waits for its upload.
 */
import { JobState } from "../contract/index.ts";
import { keys } from "./keys.ts";
import type { StateRedis } from "./script.ts";
import { readUploadScript, writeUploadScript } from "./scripts/uploads.ts";

export interface MultipartUpload {
  uploadId: string;
  partBytes: number;
}

export type JobUpload =
  | { found: false }
  | {
      found: true;
      state: JobState;
      inputKey: string;
      sizeBytes: number | null;
      contentType: string | null;
      uploadExpiresAt: number | null;
      multipart: MultipartUpload | null;
    };

const str = (v: unknown): string | null => (typeof v === "string" ? v : null);
const int = (v: unknown): number | null => (typeof v === "string" && /^\d+$/.test(v) ? Number(v) : null);

/** What the upload endpoints need to know about a job, read in one round trip. */
export async function getJobUpload(redis: StateRedis, jobId: string): Promise<JobUpload> {
  type Fields = "state" | "inputKey" | "inputSizeBytes" | "client" | "uploadExpiresAt" | "multipartUploadId";
  const v = await readUploadScript.run<Record<Fields | "multipartPartBytes", unknown>>(redis, {
    jobKey: keys.job(jobId),
  });
  const state = JobState.safeParse(v.state);
  if (!state.success) return { found: false };
  let contentType: string | null = null;
  try {
    contentType = str((JSON.parse(str(v.client) ?? "{}") as { contentType?: unknown }).contentType);
  } catch {
    // A job without readable client fields simply declared no type.
  }
  const uploadId = str(v.multipartUploadId);
  const partBytes = int(v.multipartPartBytes);
  return {
    found: true,
    state: state.data,
    inputKey: str(v.inputKey) ?? "",
    sizeBytes: int(v.inputSizeBytes),
    contentType,
    uploadExpiresAt: int(v.uploadExpiresAt),
    multipart: uploadId && partBytes ? { uploadId, partBytes } : null,
  };
}

export type UploadWrite =
  | { result: "ok" }
  | { result: "not_found" }
  | { result: "invalid_state"; state: JobState }
  | {
      result: "exists";
      uploadId: string | false;
    };

/** Binds a started multipart upload to its job; `exists` when another one already is. */
export const attachMultipartUpload = (
  redis: StateRedis,
  jobId: string,
  upload: MultipartUpload,
  nowMs: number,
): Promise<UploadWrite> =>
  writeUploadScript.run<UploadWrite>(redis, {
    jobKey: keys.job(jobId),
    awaiting: JobState.enum.awaiting_upload,
    uploadId: upload.uploadId,
    partBytes: String(upload.partBytes),
    now: String(nowMs),
  });

/** Forgets an aborted multipart upload, only if it is still the one bound to the job. */
export const detachMultipartUpload = (
  redis: StateRedis,
  jobId: string,
  uploadId: string,
  nowMs: number,
): Promise<UploadWrite> =>
  writeUploadScript.run<UploadWrite>(redis, {
    jobKey: keys.job(jobId),
    awaiting: JobState.enum.awaiting_upload,
    expected: uploadId,
    now: String(nowMs),
  });
