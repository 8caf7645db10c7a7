/**
 * `createClient`: the tcoder API for apps and browsers. Only `fetch`, Blob and (in browsers)
 * XMLHttpRequest are used, so the same code runs in Node 20 and browsers; file paths are a Node
 * matter and live in `@tcoder/client/node`.
 */
import type { TerminalState } from "@tcoder/worker/contract";
import { captionsContentType, sourceContentType } from "@tcoder/worker/contract/media-types.ts";
import { type RetryPolicy, retry } from "@tcoder/worker/contract/retry.ts";
import { abortedError, errorFromResponse, TcoderError } from "./errors.ts";
import { type PutResult, putBlob, sleep } from "./transfer.ts";
import type {
  Job,
  JobPage,
  JobState,
  ListJobsOptions,
  MultipartPlan,
  PartUrls,
  PlaybackToken,
  Stats,
  UploadCreated,
  UploadOptions,
  UploadProgress,
  UploadRequest,
  WaitOptions,
} from "./types.ts";

export interface ClientOptions {
  /** Origin of the API, e.g. `https://tcoder.example.workers.dev` (a trailing `/` is fine). */
  baseUrl: string;
  /** API bearer token. */
  token: string;
  /** Used for API calls (and uploads outside browsers); defaults to the global fetch. */
  fetch?: typeof fetch;
}

/** Resolves a non-Blob source (a file path in Node) into a Blob and its name. */
export type SourceResolver = (source: string) => Promise<{ blob: Blob; name: string }>;

export type UploadSource = Blob | string;

/**
 * Terminal states, checked against the contract's list at compile time. Importing the contract's
 * `isTerminal` would pull zod into every browser bundle for one array.
 */
const terminalStates = [
  "completed",
  "failed",
  "canceled",
  "expired",
  "deleted",
] as const satisfies readonly TerminalState[];
type MissingTerminal = Exclude<TerminalState, (typeof terminalStates)[number]>;
const _everyTerminalState: MissingTerminal extends never ? true : MissingTerminal = true;
export const isTerminal = (state: JobState): boolean => (terminalStates as readonly JobState[]).includes(state);

export const DEFAULT_MULTIPART_THRESHOLD = 32 * 1024 * 1024;
export const DEFAULT_PART_SIZE = 8 * 1024 * 1024;
const PRESIGN_BATCH = 100;

/** The media type of a source by its file name (the contract's table), if its extension names one. */
export const guessContentType: (filename: string) => string | undefined = sourceContentType;

/**
 * How a PUT to the store is tried again: `retries` more times, the first wait 0.5–1 s. A part is
 * sent with the platform's fetch or XMLHttpRequest, neither of which retries on its own.
 */
const transferRetry = (opts: Pick<UploadOptions, "retries">): RetryPolicy => ({
  attempts: (opts.retries ?? 3) + 1,
  baseDelayMs: 1_000,
  maxDelayMs: 8_000,
});

/** A store's answer worth another try: none (a network failure), a 5xx, an expired or refused signature (403), a timeout (408). */
const worthRetrying = (status: number | undefined) =>
  status === undefined || status >= 500 || status === 403 || status === 408 || status < 400;

/** The job options a request carries: only those the caller set. */
function jobOptions(opts: Pick<UploadOptions, "preset" | "playback" | "loudness" | "metadata" | "callbackUrl">) {
  return {
    ...(opts.preset ? { preset: opts.preset } : {}),
    ...(opts.playback ? { playback: opts.playback } : {}),
    ...(opts.loudness ? { loudness: opts.loudness } : {}),
    ...(opts.metadata ? { metadata: opts.metadata } : {}),
    ...(opts.callbackUrl ? { callbackUrl: opts.callbackUrl } : {}),
  };
}

export function createClient(
  options: ClientOptions & {
    resolveSource?: SourceResolver;
    /** Send bodies to the store as counted streams, for progress while they go (Node: `@tcoder/client/node`). */
    streamBody?: boolean;
  },
) {
  const baseUrl = options.baseUrl.replace(/\/+$/, "");
  // Bound lazily: browsers refuse a fetch called with another `this` ("Illegal invocation").
  const doFetch: typeof fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const preferXhr = options.fetch === undefined;
  const streamBody = options.streamBody ?? false;

  /** A JSON call; with `textType`, `body` is a string sent as it is with that content type (a captions file). */
  async function api<T>(
    method: string,
    path: string,
    body?: unknown,
    signal?: AbortSignal,
    textType?: string,
  ): Promise<T> {
    let res: Response;
    try {
      res = await doFetch(`${baseUrl}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${options.token}`,
          accept: "application/json",
          ...(body === undefined ? {} : { "content-type": textType ?? "application/json" }),
        },
        ...(body === undefined ? {} : { body: textType ? String(body) : JSON.stringify(body) }),
        ...(signal ? { signal } : {}),
      });
    } catch (err) {
      if (signal?.aborted) throw abortedError(signal);
      throw new TcoderError(
        "network",
        `${method} ${path} failed: ${err instanceof Error ? err.message : String(err)}`,
        {
          cause: err,
        },
      );
    }
    if (!res.ok) throw await errorFromResponse(res);
    if (res.status === 204) return undefined as T;
    return (await res.json()) as T;
  }

  const jobPath = (id: string) => `/v1/jobs/${encodeURIComponent(id)}`;

  const createUpload = (request: UploadRequest) =>
    api<UploadCreated>(
      "POST",
      "/v1/uploads",
      { filename: request.filename, contentType: request.contentType, size: request.size, ...jobOptions(request) },
      request.signal,
    );
  const multipartPath = (id: string) => `/v1/uploads/${encodeURIComponent(id)}/multipart`;

  async function resolve(source: UploadSource): Promise<{ blob: Blob; name: string | undefined }> {
    if (typeof source !== "string") return { blob: source, name: "name" in source ? String(source.name) : undefined };
    if (!options.resolveSource)
      throw new TcoderError(
        "invalid_source",
        "file paths need the Node entry: import { createClient } from '@tcoder/client/node'",
      );
    return options.resolveSource(source);
  }

  /** Uploads the parts not in `done`, in parallel, each retried; then completes the upload. */
  async function uploadParts(
    plan: MultipartPlan,
    blob: Blob,
    opts: UploadOptions,
    signal: AbortSignal,
    alreadyStored: MultipartPlan["parts"],
  ): Promise<Job> {
    const jobId = plan.jobId;
    const sizeOf = (n: number) => Math.min(plan.partSizeBytes, plan.sizeBytes - (n - 1) * plan.partSizeBytes);
    const etags = new Map<number, string>();
    for (const part of alreadyStored)
      if (part.partNumber <= plan.partCount && part.sizeBytes === sizeOf(part.partNumber))
        etags.set(part.partNumber, part.etag);
    const todo = Array.from({ length: plan.partCount }, (_, i) => i + 1).filter((n) => !etags.has(n));

    const inFlight = new Map<number, number>();
    let storedBytes = [...etags.keys()].reduce((sum, n) => sum + sizeOf(n), 0);
    const report = () => {
      const loaded = storedBytes + [...inFlight.values()].reduce((a, b) => a + b, 0);
      opts.onProgress?.({
        jobId,
        loaded,
        total: plan.sizeBytes,
        fraction: plan.sizeBytes === 0 ? 1 : loaded / plan.sizeBytes,
        partsDone: etags.size,
        partCount: plan.partCount,
      });
    };
    report();

    const urls = new Map<number, PartUrls["parts"][number]>();
    const presign = async (numbers: number[]) => {
      for (let i = 0; i < numbers.length; i += PRESIGN_BATCH) {
        const batch = numbers.slice(i, i + PRESIGN_BATCH);
        const res = await api<PartUrls>("POST", `${multipartPath(jobId)}/parts`, { partNumbers: batch }, signal);
        for (const part of res.parts) urls.set(part.partNumber, part);
      }
    };
    await presign(todo);

    const sendPart = (n: number) => {
      // A refused signature (403) may be an expired URL: the next try gets a fresh one.
      let refreshUrl = false;
      return retry(
        async () => {
          if (refreshUrl) await presign([n]);
          const target = urls.get(n);
          if (!target) throw new TcoderError("unexpected_response", `no upload URL for part ${n}`, { jobId });
          const start = (n - 1) * plan.partSizeBytes;
          let res: PutResult;
          try {
            res = await putBlob(target.url, blob.slice(start, start + sizeOf(n)), {
              headers: target.headers,
              signal,
              fetch: doFetch,
              preferXhr,
              streamBody,
              onLoaded: (loaded) => {
                inFlight.set(n, loaded);
                report();
              },
            });
          } catch (err) {
            inFlight.delete(n);
            if (signal.aborted) throw abortedError(signal, jobId);
            if (!(err instanceof TcoderError) || err.code !== "network") throw err;
            throw new TcoderError("upload_failed", `part ${n}: ${err.message}`, { jobId, cause: err });
          }
          inFlight.delete(n);
          if (res.status >= 200 && res.status < 300 && res.etag) {
            etags.set(n, res.etag.replaceAll('"', ""));
            storedBytes += sizeOf(n);
            report();
            return;
          }
          refreshUrl = res.status === 403;
          throw new TcoderError("upload_failed", `part ${n}: the store answered ${res.status}`, {
            status: res.status,
            jobId,
          });
        },
        {
          ...transferRetry(opts),
          signal,
          sleep,
          retryIf: (err) => err instanceof TcoderError && err.code === "upload_failed" && worthRetrying(err.status),
        },
      );
    };

    const queue = [...todo];
    const worker = async () => {
      for (let n = queue.shift(); n !== undefined; n = queue.shift()) await sendPart(n);
    };
    const concurrency = Math.max(1, Math.min(opts.concurrency ?? 4, queue.length || 1));
    await Promise.all(Array.from({ length: concurrency }, worker));

    const parts = [...etags.entries()].sort(([a], [b]) => a - b).map(([partNumber, etag]) => ({ partNumber, etag }));
    const completed = await api<{ job: Job }>("POST", `${multipartPath(jobId)}/complete`, { parts }, signal);
    return completed.job;
  }

  /** Runs `work` with a signal that also fires on the caller's; failures name the job to resume. */
  async function forJob<T>(jobId: string, outer: AbortSignal | undefined, work: (signal: AbortSignal) => Promise<T>) {
    const inner = new AbortController();
    const relay = () => inner.abort(outer?.reason);
    outer?.addEventListener("abort", relay, { once: true });
    try {
      return await work(inner.signal);
    } catch (err) {
      inner.abort();
      if (outer?.aborted) throw abortedError(outer, jobId);
      if (err instanceof TcoderError && err.jobId === undefined)
        throw new TcoderError(err.code, err.message, {
          jobId,
          ...(err.status === undefined ? {} : { status: err.status }),
          ...(err.problem ? { problem: err.problem } : {}),
          cause: err,
        });
      throw err;
    } finally {
      outer?.removeEventListener("abort", relay);
    }
  }

  return {
    baseUrl,

    /** Whether the API answers its liveness probe (`GET /healthz`); never rejects for an API that does not. */
    health: (opts: { signal?: AbortSignal } = {}) =>
      api<{ ok: boolean }>("GET", "/healthz", undefined, opts.signal).then(
        (answer) => answer?.ok === true,
        () => false,
      ),

    /**
     * Creates a job and uploads its source: one presigned PUT up to `multipartThreshold` (and the
     * API's own limit, `SINGLE_PUT_MAX_BYTES`), an S3 multipart upload (parallel, retried parts)
     * above it. Resolves with the job once the store
     * has the whole source (it then moves to `pending` on the store's event). A failed or aborted
     * multipart upload throws a `TcoderError` carrying `jobId`; `resumeUpload` continues it.
     */
    async upload(source: UploadSource, opts: UploadOptions = {}): Promise<Job> {
      if (opts.signal?.aborted) throw abortedError(opts.signal);
      const { blob, name } = await resolve(source);
      const filename = opts.filename ?? name ?? "upload";
      const contentType = opts.contentType ?? (blob.type || guessContentType(filename));
      if (!contentType)
        throw new TcoderError("invalid_source", `cannot tell the media type of ${filename}; pass contentType`);
      const created = await createUpload({ ...opts, filename, contentType, size: blob.size });
      const jobId = created.jobId;

      return forJob(jobId, opts.signal, async (signal) => {
        // The API gives no single PUT for a source over its stack's limit: that one goes in parts too.
        const single = created.upload;
        if (single === null || blob.size > (opts.multipartThreshold ?? DEFAULT_MULTIPART_THRESHOLD)) {
          const plan = await api<MultipartPlan>(
            "POST",
            multipartPath(jobId),
            { partSizeBytes: Math.max(opts.partSize ?? DEFAULT_PART_SIZE, 5 * 1024 * 1024) },
            signal,
          );
          return uploadParts(plan, blob, opts, signal, []);
        }
        const progress = (loaded: number): UploadProgress => ({
          jobId,
          loaded,
          total: blob.size,
          fraction: blob.size === 0 ? 1 : loaded / blob.size,
        });
        opts.onProgress?.(progress(0));
        await retry(
          async () => {
            const res = await putBlob(single.url, blob, {
              headers: single.headers,
              signal,
              fetch: doFetch,
              preferXhr,
              streamBody,
              onLoaded: (loaded) => opts.onProgress?.(progress(loaded)),
            });
            if (res.status >= 200 && res.status < 300) return;
            throw new TcoderError("upload_failed", `the store answered ${res.status}`, { status: res.status, jobId });
          },
          {
            ...transferRetry(opts),
            signal,
            sleep,
            retryIf: (err) =>
              !signal.aborted &&
              err instanceof TcoderError &&
              (err.code === "network" || (err.code === "upload_failed" && (err.status ?? 0) >= 500)),
          },
        );
        return api<Job>("GET", jobPath(jobId), undefined, signal);
      });
    },

    /**
     * Creates a job and the presigned PUT its source goes to, sending no bytes: for a client that
     * sends them itself or hands the URL on (a server giving it to a browser). `upload` is null for
     * a source over the stack's SINGLE_PUT_MAX_BYTES, which goes up in parts (`resumeUpload`
     * after `POST /v1/uploads/{id}/multipart`). The job waits in `awaiting_upload` until the store has it.
     */
    createUpload,

    /**
     * Continues an interrupted multipart upload of `source` (the same bytes) for `jobId`: parts the
     * store already holds are kept, the rest are sent, then the upload is completed.
     */
    async resumeUpload(jobId: string, source: UploadSource, opts: UploadOptions = {}): Promise<Job> {
      const { blob } = await resolve(source);
      return forJob(jobId, opts.signal, async (signal) => {
        const plan = await api<MultipartPlan>("GET", multipartPath(jobId), undefined, signal);
        if (plan.sizeBytes !== blob.size)
          throw new TcoderError(
            "invalid_source",
            `the job expects ${plan.sizeBytes} bytes; this source has ${blob.size}`,
          );
        return uploadParts(plan, blob, opts, signal, plan.parts);
      });
    },

    /**
     * Creates a job whose source a machine downloads from `url` (https to a public address; the
     * stack refuses others). Resolves with the queued job; a source that cannot be fetched fails the
     * job with `source_unreachable`, one over the limits with `source_too_large`.
     */
    createJobFromUrl: (
      url: string,
      opts: Pick<UploadOptions, "preset" | "playback" | "loudness" | "metadata" | "callbackUrl" | "signal"> = {},
    ) =>
      api<Job>(
        "POST",
        "/v1/jobs",
        {
          url,
          ...jobOptions(opts),
        },
        opts.signal,
      ),

    /** The open multipart upload of a job and the parts the store holds. */
    getUpload: (jobId: string, opts: { signal?: AbortSignal } = {}) =>
      api<MultipartPlan>("GET", multipartPath(jobId), undefined, opts.signal),

    /** Abandons a job's open multipart upload (the job keeps waiting until it expires or is canceled). */
    abortUpload: (jobId: string, opts: { signal?: AbortSignal } = {}) =>
      api<void>("DELETE", multipartPath(jobId), undefined, opts.signal),

    getJob: (id: string, opts: { signal?: AbortSignal } = {}) => api<Job>("GET", jobPath(id), undefined, opts.signal),

    /** One page of jobs, newest first. */
    listJobPage(opts: ListJobsOptions & { cursor?: string } = {}): Promise<JobPage> {
      const query = new URLSearchParams();
      if (opts.state) query.set("state", opts.state);
      if (opts.limit) query.set("limit", String(opts.limit));
      if (opts.cursor) query.set("cursor", opts.cursor);
      const qs = query.toString();
      return api<JobPage>("GET", `/v1/jobs${qs ? `?${qs}` : ""}`, undefined, opts.signal);
    },

    /** Every job (or every job in `state`), newest first, fetching pages as the loop advances. */
    async *listJobs(opts: ListJobsOptions = {}): AsyncGenerator<Job, void, undefined> {
      let cursor: string | undefined;
      do {
        const page = await this.listJobPage({ ...opts, ...(cursor ? { cursor } : {}) });
        yield* page.jobs;
        cursor = page.nextCursor ?? undefined;
      } while (cursor);
    },

    cancel: (id: string, opts: { signal?: AbortSignal } = {}) =>
      api<Job>("POST", `${jobPath(id)}/cancel`, undefined, opts.signal),

    retry: (id: string, opts: { signal?: AbortSignal } = {}) =>
      api<Job>("POST", `${jobPath(id)}/retry`, undefined, opts.signal),

    /**
     * Deletes a job (canceling it first if it runs): its source and every output are removed and
     * its record becomes a `deleted` tombstone (`purgedAt` once the objects are gone). Deleting a
     * deleted job succeeds again.
     */
    deleteJob: (id: string, opts: { signal?: AbortSignal } = {}) =>
      api<void>("DELETE", jobPath(id), undefined, opts.signal),

    /**
     * An expiring URL of a signed job's master playlist (or MP4), and its token (`?token=` opens
     * every other output URL of the job too). Without a network call: `signPlaybackUrl`.
     */
    createPlaybackToken: (id: string, opts: { expiresInSeconds?: number; signal?: AbortSignal } = {}) =>
      api<PlaybackToken>(
        "POST",
        `${jobPath(id)}/playback-tokens`,
        opts.expiresInSeconds === undefined ? {} : { expiresInSeconds: opts.expiresInSeconds },
        opts.signal,
      ),

    /**
     * Adds captions (a WebVTT or SubRip file's text) in `language` to a completed job: they become a
     * subtitle rendition of its HLS package and the master playlist, the DASH manifest and
     * manifest.json are republished. The same
     * language again replaces them. Rejects with `invalid_captions`, `captions_too_large`, or
     * `invalid_state` for a job that is not completed.
     */
    addCaptions: (id: string, captions: { language: string; text: string; name?: string; signal?: AbortSignal }) =>
      api<Job>(
        "POST",
        `${jobPath(id)}/captions?${new URLSearchParams({
          language: captions.language,
          ...(captions.name ? { name: captions.name } : {}),
        })}`,
        captions.text,
        captions.signal,
        captionsContentType(captions.text),
      ),

    /** Removes the captions added in `language` (`captions_not_found` if there are none) and republishes the master, MPD and manifest. */
    removeCaptions: (id: string, language: string, opts: { signal?: AbortSignal } = {}) =>
      api<Job>("DELETE", `${jobPath(id)}/captions/${encodeURIComponent(language)}`, undefined, opts.signal),

    /** Queue, machine pool, and usage over the last 24 hours and 30 days with its estimated cost. */
    stats: (opts: { signal?: AbortSignal } = {}) => api<Stats>("GET", "/v1/stats", undefined, opts.signal),

    /**
     * Polls the job (with backoff) until it is completed, failed, canceled, expired or deleted and resolves
     * with it in that state; rejects with `timeout` or `aborted`.
     */
    async waitForJob(id: string, opts: WaitOptions = {}): Promise<Job> {
      const deadline = opts.timeout === undefined ? Number.POSITIVE_INFINITY : Date.now() + opts.timeout;
      let interval = opts.interval ?? 500;
      for (;;) {
        const job = await api<Job>("GET", jobPath(id), undefined, opts.signal);
        opts.onProgress?.(job);
        if (isTerminal(job.state)) return job;
        const left = deadline - Date.now();
        if (left <= 0)
          throw new TcoderError("timeout", `job ${id} is still ${job.state} after ${opts.timeout} ms`, { jobId: id });
        await sleep(Math.min(interval, left), opts.signal);
        interval = Math.min(opts.maxInterval ?? 5_000, interval * 1.5);
      }
    },
  };
}

export type TcoderClient = ReturnType<typeof createClient>;
