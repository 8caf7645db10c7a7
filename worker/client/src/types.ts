/**
 * What the API answers, as the SDK hands it out. `Job` and its parts are the contract's own types
 * (the same zod schemas the worker validates and documents in /openapi.json).
 */
import type { AppType } from "@tcoder/worker/app";
import type { Job, JobState } from "@tcoder/worker/contract";
import type { hc, InferResponseType } from "hono/client";

export type { Job, JobError, JobOutputs, JobState, ProbeSummary } from "@tcoder/worker/contract";

/**
 * Response bodies, inferred from the worker's route definitions (the same zod schemas it validates
 * with and documents), so a route change that breaks the SDK fails its typecheck. Type-only: no
 * worker or hono code reaches an SDK bundle.
 */
type Api = ReturnType<typeof hc<AppType>>;
type Multipart = Api["v1"]["uploads"][":id"]["multipart"];

/** `POST /v1/uploads` */
export type UploadCreated = InferResponseType<Api["v1"]["uploads"]["$post"], 201>;
/** `POST|GET /v1/uploads/{id}/multipart` */
export type MultipartPlan = InferResponseType<Multipart["$get"], 200>;
/** `POST /v1/uploads/{id}/multipart/parts` */
export type PartUrls = InferResponseType<Multipart["parts"]["$post"], 200>;
/** `GET /v1/jobs` */
export type JobPage = InferResponseType<Api["v1"]["jobs"]["$get"], 200>;
/** `GET /v1/stats` */
export type Stats = InferResponseType<Api["v1"]["stats"]["$get"], 200>;
/** `POST /v1/jobs/{id}/playback-tokens` */
export type PlaybackToken = InferResponseType<Api["v1"]["jobs"][":id"]["playback-tokens"]["$post"], 200>;

export interface ListJobsOptions {
  state?: JobState;
  /** Page size (1–100). */
  limit?: number;
  signal?: AbortSignal;
}

export interface UploadProgress {
  jobId: string;
  /** Bytes the store has (or is receiving) so far. */
  loaded: number;
  total: number;
  /** 0..1 */
  fraction: number;
  /** Multipart only. */
  partsDone?: number;
  partCount?: number;
}

export interface UploadOptions {
  preset?: string;
  /** `signed`: outputs play only through the worker with an expiring token (`createPlaybackToken`). */
  playback?: "public" | "signed";
  /** Normalize every audio rendition to this integrated loudness (LUFS; −23 EBU R128, −16 streaming). */
  loudness?: { targetLufs: number };
  metadata?: Record<string, string>;
  callbackUrl?: string;
  /** Defaults to the File's name (or the path's base name). */
  filename?: string;
  /** Defaults to the Blob's type, else a guess from the file name. */
  contentType?: string;
  onProgress?: (progress: UploadProgress) => void;
  signal?: AbortSignal;
  /** Sources larger than this go up as S3 multipart uploads, as do those over the API's SINGLE_PUT_MAX_BYTES. Default 32 MiB. */
  multipartThreshold?: number;
  /** Preferred part size (≥ 5 MiB; the API may grow it). Default 8 MiB. */
  partSize?: number;
  /** Parts in flight at once. Default 4. */
  concurrency?: number;
  /** Further attempts per part (or single PUT) after a failure. Default 3. */
  retries?: number;
}

/** `POST /v1/uploads`: the job a source will be uploaded for. */
export interface UploadRequest
  extends Pick<UploadOptions, "preset" | "playback" | "loudness" | "metadata" | "callbackUrl" | "signal"> {
  filename: string;
  contentType: string;
  size: number;
}

export interface WaitOptions {
  /** Called with the job after every poll. */
  onProgress?: (job: Job) => void;
  signal?: AbortSignal;
  /** Give up after this many ms (a `timeout` error). Default: wait forever. */
  timeout?: number;
  /** First poll interval in ms, growing ×1.5 up to `maxInterval`. Default 500. */
  interval?: number;
  /** Default 5000. */
  maxInterval?: number;
}
