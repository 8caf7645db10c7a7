/**
 * `POST /v1/uploads`: reserve a job and hand the client a presigned PUT for its source, or, for a
 * source over `SINGLE_PUT_MAX_BYTES`, none (it goes up in parts, `routes/multipart.ts`). The job
 * waits in `awaiting_upload` until the store's object-created event moves it to `pending`.
 */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { AppEnv } from "../http/context.ts";
import { validationHook } from "../http/errors.ts";
import { newJobId } from "../http/job-id.ts";
import { resolveJobOptions } from "../http/job-options.ts";
import { presentJob } from "../http/present-job.ts";
import { ProblemError, problemContent } from "../http/problem.ts";
import { createJob } from "../state/index.ts";
import { inputKeyFor } from "../state/keys.ts";
import { filenameProblem, safeFileName } from "../storage/names.ts";
import { presignPut } from "../storage/s3.ts";
import { JobCreationFields, PublicJob } from "./schemas.ts";

/** Media types a source may declare: a type/subtype token pair without parameters. */
const MEDIA_TYPE = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$/;
/**
 * Only audio and video are accepted. `application/octet-stream` is refused on purpose: a client
 * that knows it is sending media can say which; ffprobe still has the last word on the content.
 */
const ACCEPTED_MEDIA = /^(video|audio)\//;

const UploadRequest = z
  .object({
    filename: z.string().min(1).max(1024).openapi({ example: "holiday.mp4" }),
    contentType: z.string().min(1).max(255).openapi({ example: "video/mp4" }),
    size: z.number().int().positive().openapi({ description: "Exact byte size the PUT will carry" }),
    ...JobCreationFields,
  })
  .openapi("UploadRequest");

const UploadResponse = z
  .object({
    jobId: z.string(),
    upload: z
      .object({
        url: z.url(),
        method: z.literal("PUT"),
        headers: z.object({ "content-type": z.string(), "content-length": z.string() }),
        expiresAt: z.iso.datetime(),
      })
      .nullable()
      .openapi({
        description:
          "The presigned single PUT; null for a source over the stack's SINGLE_PUT_MAX_BYTES, which goes up in parts (POST /v1/uploads/{id}/multipart)",
      }),
    job: PublicJob,
  })
  .openapi("UploadResponse");

export const uploads = new OpenAPIHono<AppEnv>({ defaultHook: validationHook }).openapi(
  createRoute({
    method: "post",
    path: "/",
    summary: "Create a job and a presigned upload URL for its source",
    security: [{ bearer: [] }],
    request: { body: { required: true, content: { "application/json": { schema: UploadRequest } } } },
    responses: {
      201: { description: "Job created, awaiting upload", content: { "application/json": { schema: UploadResponse } } },
      400: problemContent("invalid_request, unknown_preset, invalid_callback_url, unsupported_media_type"),
      401: problemContent("unauthorized"),
      413: problemContent("upload_too_large or payload_too_large"),
      415: problemContent("unsupported_media_type (request body not JSON)"),
    },
  }),
  async (c) => {
    const body = c.req.valid("json");
    const settings = c.get("settings");
    const nowMs = Date.now();

    const badName = filenameProblem(body.filename);
    if (badName) throw new ProblemError("invalid_request", { detail: badName });
    const contentType = body.contentType.toLowerCase();
    if (!MEDIA_TYPE.test(contentType))
      throw new ProblemError("invalid_request", { detail: "contentType must be a type/subtype media type" });
    if (!ACCEPTED_MEDIA.test(contentType))
      throw new ProblemError("unsupported_media_type", {
        status: 400,
        detail: "contentType must be video/* or audio/*",
      });
    if (body.size > settings.MAX_UPLOAD_BYTES)
      throw new ProblemError("upload_too_large", {
        detail: `size ${body.size} exceeds the limit of ${settings.MAX_UPLOAD_BYTES} bytes`,
      });
    const options = resolveJobOptions(settings, body);

    const jobId = newJobId(nowMs);
    const key = inputKeyFor(jobId, safeFileName(body.filename));
    const uploadExpiresAt = nowMs + settings.UPLOAD_EXPIRY_SECONDS * 1000;
    // A single PUT is for sources well under the store's limit (R2: 4.995 GiB); larger ones go multipart.
    const upload =
      body.size > settings.SINGLE_PUT_MAX_BYTES
        ? null
        : await presignPut(settings, {
            bucket: settings.INPUT_BUCKET,
            key,
            contentType,
            sizeBytes: body.size,
            expiresInSeconds: settings.UPLOAD_EXPIRY_SECONDS,
            nowMs,
          });
    const job = await createJob(
      c.get("redis"),
      {
        id: jobId,
        ...options,
        input: { key, filename: body.filename, contentType, sizeBytes: body.size },
        state: "awaiting_upload",
        uploadExpiresAt,
        maxAttempts: settings.JOB_MAX_ATTEMPTS,
      },
      nowMs,
    );
    return c.json({ jobId, upload, job: presentJob(settings, job) }, 201);
  },
);
