/**
 * Multipart uploads for large sources, bound to a job created by `POST /v1/uploads` (which keeps
 * the filename, type and size checks in one place):
 *
 * - `POST   /v1/uploads/{id}/multipart`          start (S3 CreateMultipartUpload); the part plan
 * - `GET    /v1/uploads/{id}/multipart`          the plan and the parts the store holds (resume)
 * - `POST   /v1/uploads/{id}/multipart/parts`    presigned UploadPart URLs, each bound to its size
 * - `POST   /v1/uploads/{id}/multipart/complete` CompleteMultipartUpload; the store's
 *                                                `CompleteMultipartUpload` event makes the job pending
 * - `DELETE /v1/uploads/{id}/multipart`          abort
 *
 * Everything is refused unless the job is still `awaiting_upload`, and the part plan follows
 * from the size the job declared, so a client can neither grow the source nor reshape it.
 */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { Settings } from "../bindings.ts";
import { MAX_SINGLE_UPLOAD_BYTES as MAX_PART_BYTES, MIN_PART_BYTES } from "../contract/object-store.ts";
import type { AppEnv } from "../http/context.ts";
import { validationHook } from "../http/errors.ts";
import { JOB_ID_PATTERN } from "../http/job-id.ts";
import { presentJob } from "../http/present-job.ts";
import { ProblemError, problemContent } from "../http/problem.ts";
import { getJob, type StateRedis } from "../state/index.ts";
import {
  attachMultipartUpload,
  detachMultipartUpload,
  getJobUpload,
  type JobUpload,
  type MultipartUpload,
} from "../state/uploads.ts";
import {
  abortMultipartUpload,
  completeMultipartUpload,
  createMultipartUpload,
  InvalidPartsError,
  listUploadedParts,
  presignParts,
  type UploadedPart,
} from "../storage/multipart.ts";
import { StorageError } from "../storage/s3.ts";
import { JobIdParams, PublicJob } from "./schemas.ts";

/** Keeps a complete request (about 60 bytes a part) under the API's 64 KiB body limit. */
export const MAX_PARTS_PER_UPLOAD = 1000;
export const DEFAULT_PART_BYTES = 8 * 1024 * 1024;
/** Presigned URLs asked for at once. */
export const MAX_PARTS_PER_REQUEST = 100;

const MiB = 1024 * 1024;

/** The part size used for a source: the requested one, grown (in whole MiB) until the parts fit the cap. */
export function planPartBytes(sizeBytes: number, requested = DEFAULT_PART_BYTES): number {
  const needed = Math.ceil(Math.ceil(sizeBytes / MAX_PARTS_PER_UPLOAD) / MiB) * MiB;
  return Math.min(MAX_PART_BYTES, Math.max(requested, needed, MIN_PART_BYTES));
}

const partCountOf = (sizeBytes: number, partBytes: number) => Math.max(1, Math.ceil(sizeBytes / partBytes));
const partSizeOf = (sizeBytes: number, partBytes: number, partNumber: number) =>
  Math.min(partBytes, sizeBytes - (partNumber - 1) * partBytes);

const MultipartStart = z
  .object({
    partSizeBytes: z
      .number()
      .int()
      .min(MIN_PART_BYTES)
      .max(MAX_PART_BYTES)
      .optional()
      .openapi({
        description: `Preferred part size; grown when the source would need more than ${MAX_PARTS_PER_UPLOAD} parts`,
      }),
  })
  .openapi("MultipartStart");

const UploadedPartSchema = z.object({
  partNumber: z.number().int(),
  etag: z.string(),
  sizeBytes: z.number().int(),
});

const MultipartUploadSchema = z
  .object({
    jobId: z.string(),
    uploadId: z.string(),
    sizeBytes: z.number().int(),
    partSizeBytes: z.number().int().openapi({ description: "Size of every part but the last" }),
    partCount: z.number().int(),
    expiresAt: z.iso.datetime().openapi({ description: "The job expires unless completed by then" }),
    parts: z
      .array(UploadedPartSchema)
      .openapi({ description: "Parts the store already holds (GET only; empty on start)" }),
  })
  .openapi("MultipartUpload");

const PartsRequest = z
  .object({
    partNumbers: z.array(z.number().int().min(1)).min(1).max(MAX_PARTS_PER_REQUEST),
  })
  .openapi("MultipartPartsRequest");

const PartsResponse = z
  .object({
    parts: z.array(
      z.object({
        partNumber: z.number().int(),
        url: z.url(),
        method: z.literal("PUT"),
        headers: z.object({ "content-length": z.string() }),
      }),
    ),
    expiresAt: z.iso.datetime(),
  })
  .openapi("MultipartPartUrls");

const CompleteRequest = z
  .object({
    parts: z
      .array(z.object({ partNumber: z.number().int().min(1), etag: z.string().min(1).max(128) }))
      .min(1)
      .max(MAX_PARTS_PER_UPLOAD),
  })
  .openapi("MultipartComplete");

const CompleteResponse = z.object({ job: PublicJob }).openapi("MultipartCompleted");

const errors = {
  401: problemContent("unauthorized"),
  404: problemContent("job_not_found"),
  409: problemContent("invalid_state: the job no longer awaits its upload, or no multipart upload is started"),
  502: problemContent("storage_unavailable"),
};

const jobNotFound = () => new ProblemError("job_not_found", { detail: "no such job" });

type Awaiting = Extract<JobUpload, { found: true }> & { sizeBytes: number; uploadExpiresAt: number };

/** The job, if it still waits for an upload of a declared size; the reason otherwise. */
async function awaitingJob(redis: StateRedis, id: string): Promise<Awaiting> {
  if (!JOB_ID_PATTERN.test(id)) throw jobNotFound();
  const upload = await getJobUpload(redis, id);
  if (!upload.found) throw jobNotFound();
  if (upload.state !== "awaiting_upload")
    throw new ProblemError("invalid_state", { detail: `the job is ${upload.state}; its upload is over` });
  if (upload.sizeBytes === null || upload.uploadExpiresAt === null)
    throw new ProblemError("invalid_state", { detail: "the job declared no upload size" });
  if (upload.uploadExpiresAt <= Date.now())
    throw new ProblemError("invalid_state", { detail: "the upload window has closed" });
  return upload as Awaiting;
}

function startedUpload(upload: Awaiting) {
  if (!upload.multipart)
    throw new ProblemError("invalid_state", { detail: "no multipart upload is started for this job" });
  return upload.multipart;
}

async function storage<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof InvalidPartsError)
      throw new ProblemError("invalid_request", { detail: `the store refused the parts: ${err.message}` });
    if (err instanceof StorageError) throw new ProblemError("storage_unavailable", { detail: err.message });
    throw err;
  }
}

const where = (settings: Settings, upload: Awaiting) => ({ bucket: settings.INPUT_BUCKET, key: upload.inputKey });

function describe(id: string, upload: Awaiting, { uploadId, partBytes }: MultipartUpload, parts: UploadedPart[]) {
  return {
    jobId: id,
    uploadId,
    sizeBytes: upload.sizeBytes,
    partSizeBytes: partBytes,
    partCount: partCountOf(upload.sizeBytes, partBytes),
    expiresAt: new Date(upload.uploadExpiresAt).toISOString(),
    parts,
  };
}

export const multipart = new OpenAPIHono<AppEnv>({ defaultHook: validationHook })
  .openapi(
    createRoute({
      method: "post",
      path: "/{id}/multipart",
      summary: "Start a multipart upload for a job's source (idempotent while one is open)",
      security: [{ bearer: [] }],
      request: {
        params: JobIdParams,
        body: { required: false, content: { "application/json": { schema: MultipartStart } } },
      },
      responses: {
        201: { description: "Started", content: { "application/json": { schema: MultipartUploadSchema } } },
        200: { description: "Already started", content: { "application/json": { schema: MultipartUploadSchema } } },
        400: problemContent("invalid_request"),
        ...errors,
      },
    }),
    async (c) => {
      const id = c.req.valid("param").id;
      const body = c.req.valid("json") ?? {};
      const settings = c.get("settings");
      const upload = await awaitingJob(c.get("redis"), id);
      if (upload.multipart) return c.json(describe(id, upload, upload.multipart, []), 200);

      const partBytes = planPartBytes(upload.sizeBytes, body.partSizeBytes);
      const uploadId = await storage(() =>
        createMultipartUpload(settings, { ...where(settings, upload), contentType: upload.contentType }),
      );
      const bound = await attachMultipartUpload(c.get("redis"), id, { uploadId, partBytes }, Date.now());
      if (bound.result !== "ok") {
        // Lost a race (another start, or the job moved on): leave no orphan upload behind.
        await storage(() => abortMultipartUpload(settings, { ...where(settings, upload), uploadId }));
        const now = await awaitingJob(c.get("redis"), id);
        if (now.multipart) return c.json(describe(id, now, now.multipart, []), 200);
        throw new ProblemError("invalid_state", { detail: "the job no longer awaits its upload" });
      }
      return c.json(describe(id, upload, { uploadId, partBytes }, []), 201);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/{id}/multipart",
      summary: "The open multipart upload and the parts already stored, to resume",
      security: [{ bearer: [] }],
      request: { params: JobIdParams },
      responses: {
        200: { description: "The upload", content: { "application/json": { schema: MultipartUploadSchema } } },
        ...errors,
      },
    }),
    async (c) => {
      const id = c.req.valid("param").id;
      const settings = c.get("settings");
      const upload = await awaitingJob(c.get("redis"), id);
      const { uploadId, partBytes } = startedUpload(upload);
      const parts = await storage(() => listUploadedParts(settings, { ...where(settings, upload), uploadId }));
      if (parts === null) throw new ProblemError("invalid_state", { detail: "the store no longer knows this upload" });
      return c.json(describe(id, upload, { uploadId, partBytes }, parts), 200);
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/{id}/multipart/parts",
      summary: "Presigned UploadPart URLs for part numbers of the open upload",
      security: [{ bearer: [] }],
      request: {
        params: JobIdParams,
        body: { required: true, content: { "application/json": { schema: PartsRequest } } },
      },
      responses: {
        200: { description: "One URL per part", content: { "application/json": { schema: PartsResponse } } },
        400: problemContent("invalid_request: a part number beyond the plan"),
        ...errors,
      },
    }),
    async (c) => {
      const id = c.req.valid("param").id;
      const { partNumbers } = c.req.valid("json");
      const settings = c.get("settings");
      const upload = await awaitingJob(c.get("redis"), id);
      const { uploadId, partBytes } = startedUpload(upload);
      const partCount = partCountOf(upload.sizeBytes, partBytes);
      const beyond = partNumbers.filter((n) => n > partCount);
      if (beyond.length > 0)
        throw new ProblemError("invalid_request", {
          detail: `the upload has ${partCount} parts; no part ${beyond.join(", ")}`,
        });
      const nowMs = Date.now();
      const parts = await presignParts(settings, {
        ...where(settings, upload),
        uploadId,
        parts: [...new Set(partNumbers)].map((partNumber) => ({
          partNumber,
          sizeBytes: partSizeOf(upload.sizeBytes, partBytes, partNumber),
        })),
        expiresInSeconds: Math.ceil((upload.uploadExpiresAt - nowMs) / 1000),
        nowMs,
      });
      return c.json({ parts, expiresAt: new Date(upload.uploadExpiresAt).toISOString() }, 200);
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/{id}/multipart/complete",
      summary: "Complete the upload from its parts' ETags; the job becomes pending",
      security: [{ bearer: [] }],
      request: {
        params: JobIdParams,
        body: { required: true, content: { "application/json": { schema: CompleteRequest } } },
      },
      responses: {
        200: { description: "Completed", content: { "application/json": { schema: CompleteResponse } } },
        400: problemContent("invalid_request: parts missing, out of order, or refused by the store"),
        ...errors,
      },
    }),
    async (c) => {
      const id = c.req.valid("param").id;
      const { parts } = c.req.valid("json");
      const settings = c.get("settings");
      const upload = await awaitingJob(c.get("redis"), id);
      const { uploadId, partBytes } = startedUpload(upload);
      const partCount = partCountOf(upload.sizeBytes, partBytes);
      const inOrder = parts.length === partCount && parts.every((p, i) => p.partNumber === i + 1);
      if (!inOrder)
        throw new ProblemError("invalid_request", {
          detail: `list all ${partCount} parts once, in order (part numbers 1..${partCount})`,
        });
      await storage(() => completeMultipartUpload(settings, { ...where(settings, upload), uploadId, parts }));
      const job = await getJob(c.get("redis"), id);
      if (!job) throw jobNotFound();
      return c.json({ job: presentJob(settings, job) }, 200);
    },
  )
  .openapi(
    createRoute({
      method: "delete",
      path: "/{id}/multipart",
      summary: "Abort the open multipart upload (the job keeps waiting for an upload)",
      security: [{ bearer: [] }],
      request: { params: JobIdParams },
      responses: { 204: { description: "Aborted" }, ...errors },
    }),
    async (c) => {
      const id = c.req.valid("param").id;
      const settings = c.get("settings");
      const upload = await awaitingJob(c.get("redis"), id);
      const { uploadId } = startedUpload(upload);
      await storage(() => abortMultipartUpload(settings, { ...where(settings, upload), uploadId }));
      await detachMultipartUpload(c.get("redis"), id, uploadId, Date.now());
      return c.body(null, 204);
    },
  );
