/**
 * Jobs: read one, list, create from an object already in the input bucket, cancel, retry, delete.
 * A job that does not exist and an id that could never exist answer the same 404.
 */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { enqueueCallback } from "../callbacks/index.ts";
import {
  checkSourceUrl,
  JobState,
  MAX_PLAYBACK_TOKEN_SECONDS,
  playbackUrl,
  signPlaybackUrl,
} from "../contract/index.ts";
import { purgeJob } from "../deletion/purge.ts";
import { admitInBackground } from "../http/admission.ts";
import { inBackground } from "../http/background.ts";
import type { AppEnv } from "../http/context.ts";
import { validationHook } from "../http/errors.ts";
import { newJobId } from "../http/job-id.ts";
import { resolveJobOptions } from "../http/job-options.ts";
import { presentJob } from "../http/present-job.ts";
import { ProblemError, problemContent } from "../http/problem.ts";
import {
  cancelJob,
  createJob,
  deleteJob,
  getJob,
  type JobChange,
  listJobs,
  retryJob,
  StateError,
  type StateRedis,
  type StoredJob,
} from "../state/index.ts";
import { inputKeyFor } from "../state/keys.ts";
import { filenameProblem, inputKeyProblem, safeFileName } from "../storage/names.ts";
import { headObject, StorageError } from "../storage/s3.ts";
import { JobCreationFields, JobIdParams, PublicJob } from "./schemas.ts";

const jobNotFound = () => new ProblemError("job_not_found", { detail: "no job with this id" });

/** The job a cancel or retry produced, or the problem explaining why it did not happen. */
function changedJob(change: JobChange, refusal: (state: string | undefined) => string): StoredJob {
  if (change.ok) return change.job;
  if (change.reason === "not_found") throw jobNotFound();
  throw new ProblemError("invalid_state", { detail: refusal(change.job?.state) });
}

/** Longer than any id this API issues: answered like any other unknown id, without a lookup. */
const MAX_JOB_ID_LENGTH = 128;
const lookupId = (id: string) => (id.length > MAX_JOB_ID_LENGTH ? null : id);

/** The job a path names, or the 404 every missing (or impossible) id gets. */
async function findJob(redis: StateRedis, rawId: string): Promise<StoredJob> {
  const id = lookupId(rawId);
  const job = id ? await getJob(redis, id) : null;
  if (!job) throw jobNotFound();
  return job;
}

const JobList = z.object({ jobs: z.array(PublicJob), nextCursor: z.string().nullable() }).openapi("JobList");

const ListQuery = z.object({
  state: JobState.optional(),
  cursor: z.string().max(256).optional(),
  limit: z.coerce.number().int().min(1).max(100).default(20),
});

const CreateJobRequest = z
  .object({
    inputKey: z.string().min(1).max(1024).optional().openapi({
      description: "An object already in the input bucket (exactly one of inputKey and url)",
      example: "inputs/job_01jf3v6j9g2m4k8q7r5t0w1x2y/holiday.mp4",
    }),
    url: z.string().min(1).max(2048).optional().openapi({
      description: "An https URL the machine downloads the source from (exactly one of inputKey and url)",
      example: "https://media.example.com/holiday.mp4",
    }),
    ...JobCreationFields,
  })
  .refine((body) => (body.inputKey === undefined) !== (body.url === undefined), {
    message: "give exactly one of inputKey and url",
  })
  .openapi("CreateJobRequest");

/**
 * The name a URL's source is kept under: its last path segment when that is an acceptable file
 * name (also shown as `input.filename`), else `source`.
 */
function sourceNameOf(url: URL): string | undefined {
  const last = url.pathname.split("/").pop() ?? "";
  let name: string;
  try {
    name = decodeURIComponent(last);
  } catch {
    return undefined;
  }
  return name && !filenameProblem(name) ? name : undefined;
}

const PlaybackTokenRequest = z
  .object({
    expiresInSeconds: z
      .number()
      .int()
      .min(1)
      .max(MAX_PLAYBACK_TOKEN_SECONDS)
      .default(3600)
      .openapi({ description: "How long the URL plays (default an hour, at most a week)" }),
  })
  .openapi("PlaybackTokenRequest");

const PlaybackToken = z
  .object({
    url: z.url().openapi({ description: "The master playlist (or the MP4 when there is no HLS), with the token" }),
    token: z.string().openapi({ description: "The token alone: add `?token=` to any other output URL of the job" }),
    expiresAt: z.iso.datetime(),
  })
  .openapi("PlaybackToken");

const jobResponse = (description: string) => ({
  description,
  content: { "application/json": { schema: PublicJob } },
});

const transitionResponses = {
  200: jobResponse("The job after the transition"),
  401: problemContent("unauthorized"),
  404: problemContent("job_not_found"),
  409: problemContent("invalid_state"),
};

export const jobs = new OpenAPIHono<AppEnv>({ defaultHook: validationHook })
  .openapi(
    createRoute({
      method: "get",
      path: "/",
      summary: "List jobs, newest first",
      security: [{ bearer: [] }],
      request: { query: ListQuery },
      responses: {
        200: { description: "A page of jobs", content: { "application/json": { schema: JobList } } },
        400: problemContent("invalid_request"),
        401: problemContent("unauthorized"),
      },
    }),
    async (c) => {
      const query = c.req.valid("query");
      const page = await listJobs(c.get("redis"), {
        limit: query.limit,
        ...(query.state ? { state: query.state } : {}),
        ...(query.cursor ? { cursor: query.cursor } : {}),
      }).catch((err: unknown) => {
        if (err instanceof StateError && err.code === "invalid_cursor")
          throw new ProblemError("invalid_request", { detail: "cursor is not one this API returned" });
        throw err;
      });
      const settings = c.get("settings");
      return c.json({ jobs: page.jobs.map((job) => presentJob(settings, job)), nextCursor: page.nextCursor }, 200);
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/",
      summary: "Create a job for an object already in the input bucket, or for a source at a URL",
      description:
        "With `url`, a machine downloads the source (https to public addresses only, checked again after DNS and " +
        "on each of at most 5 redirects; within MAX_UPLOAD_BYTES) and keeps it at `input.key`.",
      security: [{ bearer: [] }],
      request: { body: { required: true, content: { "application/json": { schema: CreateJobRequest } } } },
      responses: {
        201: jobResponse("Job created and queued"),
        400: problemContent("invalid_request, unknown_preset, invalid_callback_url, invalid_source_url"),
        401: problemContent("unauthorized"),
        404: problemContent("input_not_found"),
        415: problemContent("unsupported_media_type"),
      },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const settings = c.get("settings");
      if (body.url !== undefined) {
        const check = checkSourceUrl(body.url, { allowLoopback: settings.ALLOW_LOOPBACK_SOURCE_URLS });
        if (!check.ok) throw new ProblemError("invalid_source_url", { detail: check.reason });
        const options = resolveJobOptions(settings, body);
        const nowMs = Date.now();
        const id = newJobId(nowMs);
        const name = sourceNameOf(check.url);
        const job = await createJob(
          c.get("redis"),
          {
            id,
            ...options,
            input: { key: inputKeyFor(id, safeFileName(name ?? "source")), ...(name ? { filename: name } : {}) },
            source: {
              url: check.url.toString(),
              maxBytes: settings.MAX_UPLOAD_BYTES,
              allowLoopback: settings.ALLOW_LOOPBACK_SOURCE_URLS,
            },
            state: "pending",
            maxAttempts: settings.JOB_MAX_ATTEMPTS,
          },
          nowMs,
        );
        await admitInBackground(c);
        return c.json(presentJob(settings, job), 201);
      }
      const inputKey = body.inputKey ?? "";
      const badKey = inputKeyProblem(inputKey);
      if (badKey) throw new ProblemError("invalid_request", { detail: badKey });
      const options = resolveJobOptions(settings, body);
      let head: Awaited<ReturnType<typeof headObject>>;
      try {
        head = await headObject(settings, settings.INPUT_BUCKET, inputKey);
      } catch (err) {
        if (err instanceof StorageError)
          throw new ProblemError("storage_unavailable", { detail: "the input bucket could not be read" });
        throw err;
      }
      if (!head) throw new ProblemError("input_not_found", { detail: "no object with this key in the input bucket" });
      const nowMs = Date.now();
      const job = await createJob(
        c.get("redis"),
        {
          id: newJobId(nowMs),
          ...options,
          input: {
            key: inputKey,
            ...(head.contentType ? { contentType: head.contentType } : {}),
            ...(head.sizeBytes !== undefined ? { sizeBytes: head.sizeBytes } : {}),
          },
          state: "pending",
          maxAttempts: settings.JOB_MAX_ATTEMPTS,
        },
        nowMs,
      );
      await admitInBackground(c);
      return c.json(presentJob(settings, job), 201);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/{id}",
      summary: "Read a job",
      security: [{ bearer: [] }],
      request: { params: JobIdParams },
      responses: {
        200: jobResponse("The job"),
        401: problemContent("unauthorized"),
        404: problemContent("job_not_found"),
      },
    }),
    async (c) => {
      const job = await findJob(c.get("redis"), c.req.valid("param").id);
      return c.json(presentJob(c.get("settings"), job), 200);
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/{id}/cancel",
      summary: "Cancel a job that has not finished",
      security: [{ bearer: [] }],
      request: { params: JobIdParams },
      responses: transitionResponses,
    }),
    async (c) => {
      const id = lookupId(c.req.valid("param").id);
      if (!id) throw jobNotFound();
      const canceled = changedJob(
        await cancelJob(c.get("redis"), id, Date.now()),
        (state) => `a ${state ?? "finished"} job cannot be canceled`,
      );
      await inBackground(c, "callback_enqueue", () => enqueueCallback(c.env, canceled));
      return c.json(presentJob(c.get("settings"), canceled), 200);
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/{id}/retry",
      summary: "Queue a failed or canceled job again",
      security: [{ bearer: [] }],
      request: { params: JobIdParams },
      responses: transitionResponses,
    }),
    async (c) => {
      const id = lookupId(c.req.valid("param").id);
      if (!id) throw jobNotFound();
      const retried = changedJob(
        await retryJob(c.get("redis"), id, Date.now()),
        (state) => `only failed or canceled jobs can be retried; this one is ${state ?? "not"}`,
      );
      await admitInBackground(c);
      return c.json(presentJob(c.get("settings"), retried), 200);
    },
  )
  .openapi(
    createRoute({
      method: "delete",
      path: "/{id}",
      summary: "Delete a job: its source and every output, leaving a tombstone",
      description:
        "The job becomes `deleted` (a running job's machine is told to abort), its objects are removed, " +
        "and a `job.deleted` callback is sent. Deleting a deleted job answers 204 again.",
      security: [{ bearer: [] }],
      request: { params: JobIdParams },
      responses: {
        204: { description: "Deleted; the objects are being removed (`purgedAt` once they are gone)" },
        401: problemContent("unauthorized"),
        404: problemContent("job_not_found"),
      },
    }),
    async (c) => {
      const id = lookupId(c.req.valid("param").id);
      if (!id) throw jobNotFound();
      const redis = c.get("redis");
      const nowMs = Date.now();
      const deletion = await deleteJob(redis, id, nowMs);
      if (deletion.result === "not_found") throw jobNotFound();
      if (deletion.result === "invalid_state")
        throw new ProblemError("invalid_state", { detail: `a ${deletion.job.state} job cannot be deleted` });
      const { job } = deletion;
      if (deletion.result === "deleted") await inBackground(c, "callback_enqueue", () => enqueueCallback(c.env, job));
      // The tombstone is written: removing the objects may fail or take long, and the cron resumes it.
      if (!job.purgedAt) await inBackground(c, "purge", () => purgeJob(c.get("settings"), redis, id, nowMs));
      return c.body(null, 204);
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/{id}/playback-tokens",
      summary: 'An expiring playback URL for a job created with `playback: "signed"`',
      security: [{ bearer: [] }],
      request: {
        params: JobIdParams,
        body: { required: true, content: { "application/json": { schema: PlaybackTokenRequest } } },
      },
      responses: {
        200: { description: "The signed URL", content: { "application/json": { schema: PlaybackToken } } },
        400: problemContent("invalid_request"),
        401: problemContent("unauthorized"),
        404: problemContent("job_not_found"),
        409: problemContent("invalid_state (public playback, or no outputs yet)"),
      },
    }),
    async (c) => {
      const job = await findJob(c.get("redis"), c.req.valid("param").id);
      if (job.playback !== "signed")
        throw new ProblemError("invalid_state", {
          detail: "this job's playback is public: players read its output URLs as they are",
        });
      const entry = job.outputs?.hlsMaster ?? job.outputs?.mp4;
      if (!entry) throw new ProblemError("invalid_state", { detail: `a ${job.state} job has nothing to play` });
      const settings = c.get("settings");
      const signed = await signPlaybackUrl(
        playbackUrl(settings.CONTROL_PLANE_URL, entry),
        settings.PLAYBACK_SIGNING_SECRET,
        {
          expiresInSeconds: c.req.valid("json").expiresInSeconds,
        },
      );
      return c.json(
        { url: signed.url, token: signed.token, expiresAt: new Date(signed.expiresAt * 1000).toISOString() },
        200,
      );
    },
  );
