/**
 * Captions on a finished job: `POST /v1/jobs/{id}/captions?language=&name=` with a WebVTT or
 * SubRip file as the body adds (or replaces) that language's captions and republishes the master
 * playlist; `DELETE /v1/jobs/{id}/captions/{language}` takes them out again (captions/publish.ts).
 */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import {
  addCaptions,
  captionsLabel,
  captionsRenditionName,
  PackageError,
  removeCaptions,
} from "../captions/publish.ts";
import {
  captionTypes,
  LANGUAGE_TAG,
  MAX_CAPTIONS_BYTES,
  MAX_LANGUAGE_TAG_LENGTH,
  type OutputKeys,
  readCaptions,
} from "../contract/index.ts";
import type { AppEnv } from "../http/context.ts";
import { validationHook } from "../http/errors.ts";
import { presentJob } from "../http/present-job.ts";
import { ProblemError, problemContent } from "../http/problem.ts";
import { getJob, replaceCompletedOutputs, type StateRedis, type StoredJob, withPackageLock } from "../state/index.ts";
import { StorageError } from "../storage/s3.ts";
import { JobIdParams, PublicJob } from "./schemas.ts";

/** The paths whose bodies are captions files (exempt from the API's JSON body limit). */
export const CAPTIONS_PATH = /^\/v1\/jobs\/[^/]+\/captions\/?$/;

const LanguageTag = z
  .string()
  .max(MAX_LANGUAGE_TAG_LENGTH)
  .regex(LANGUAGE_TAG, "a BCP 47 language tag such as en, pt-BR or yue-Hant");

const CaptionsQuery = z.object({
  language: LanguageTag.openapi({ description: "BCP 47 language of the captions", example: "en" }),
  name: z
    .string()
    .min(1)
    .max(64)
    .optional()
    .openapi({ description: "What players list them as; the language's name when absent", example: "English (CC)" }),
});

const jobResponse = (description: string) => ({
  description,
  content: { "application/json": { schema: PublicJob } },
});

const notFound = () => new ProblemError("job_not_found", { detail: "no job with this id" });

/** The job, if it is completed with an HLS package (the only kind captions can join). */
async function completedJob(redis: StateRedis, id: string): Promise<StoredJob & { outputs: OutputKeys }> {
  const job = id.length > 128 ? null : await getJob(redis, id);
  if (!job) throw notFound();
  if (job.state !== "completed" || !job.outputs)
    throw new ProblemError("invalid_state", { detail: `captions need a completed job; this one is ${job.state}` });
  if (!job.outputs.hlsMaster)
    throw new ProblemError("invalid_state", { detail: `preset ${job.preset} has no HLS package to add captions to` });
  return job as StoredJob & { outputs: OutputKeys };
}

/** The cues of a captions body, or the problem saying why there are none. */
function captionsCues(body: ArrayBuffer) {
  const read = readCaptions(new Uint8Array(body));
  if ("problem" in read) throw new ProblemError("invalid_captions", { detail: read.problem });
  return read.cues;
}

/** Runs a package change under the job's lock, with storage failures and a concurrent change as problems. */
async function changePackage(
  redis: StateRedis,
  id: string,
  change: (job: StoredJob & { outputs: OutputKeys }) => Promise<OutputKeys>,
) {
  const result = await withPackageLock(redis, id, async () => {
    // Read inside the lock: the outputs another change just wrote are the ones to extend.
    const job = await completedJob(redis, id);
    const outputs = await change(job).catch((error: unknown) => {
      if (error instanceof StorageError)
        throw new ProblemError("storage_unavailable", { detail: "the output bucket could not be written" });
      if (error instanceof PackageError) throw new ProblemError("invalid_state", { detail: error.message });
      throw error;
    });
    const replaced = await replaceCompletedOutputs(redis, id, outputs, Date.now());
    if (!replaced.ok) throw new ProblemError("invalid_state", { detail: "the job changed state meanwhile" });
    return replaced.job;
  });
  if (!result.locked)
    throw new ProblemError("captions_busy", { detail: "another captions change to this job is in progress; retry" });
  return result.value;
}

export const captions = new OpenAPIHono<AppEnv>({ defaultHook: validationHook })
  .openapi(
    createRoute({
      method: "post",
      path: "/{id}/captions",
      summary: "Add captions (WebVTT or SubRip) to a completed job; the master playlist is republished",
      description:
        `The body is the captions file (\`${captionTypes.webvtt}\` or \`${captionTypes.subrip}\`; the content decides). They are cut on ` +
        "the package's segment boundaries as a SUBTITLES rendition named `captions-<language>`; posting the same " +
        `language again replaces them. At most ${MAX_CAPTIONS_BYTES} bytes.`,
      security: [{ bearer: [] }],
      middleware: [
        bodyLimit({
          maxSize: MAX_CAPTIONS_BYTES,
          onError: () => {
            throw new ProblemError("captions_too_large", {
              detail: `captions are limited to ${MAX_CAPTIONS_BYTES} bytes`,
            });
          },
        }),
      ] as const,
      request: {
        params: JobIdParams,
        query: CaptionsQuery,
        body: {
          required: true,
          content: {
            [captionTypes.webvtt]: {
              schema: z.string().openapi({ example: "WEBVTT\n\n00:00:01.000 --> 00:00:02.500\nHello\n" }),
            },
            [captionTypes.subrip]: { schema: z.string() },
          },
        },
      },
      responses: {
        200: jobResponse("The job, its outputs listing the captions"),
        400: problemContent("invalid_request (language or name)"),
        401: problemContent("unauthorized"),
        404: problemContent("job_not_found"),
        409: problemContent("invalid_state (not completed, or no HLS package), captions_busy"),
        413: problemContent("captions_too_large"),
        422: problemContent("invalid_captions"),
      },
    }),
    async (c) => {
      const { id } = c.req.valid("param");
      const { language, name } = c.req.valid("query");
      const redis = c.get("redis");
      await completedJob(redis, id);
      const cues = captionsCues(await c.req.arrayBuffer());
      const job = await changePackage(redis, id, (current) =>
        addCaptions(c.get("settings"), current, { language, label: captionsLabel(language, name), cues }),
      );
      return c.json(presentJob(c.get("settings"), job), 200);
    },
  )
  .openapi(
    createRoute({
      method: "delete",
      path: "/{id}/captions/{language}",
      summary: "Remove the captions added in this language; the master playlist is republished without them",
      security: [{ bearer: [] }],
      request: {
        params: JobIdParams.extend({ language: LanguageTag.openapi({ param: { name: "language", in: "path" } }) }),
      },
      responses: {
        200: jobResponse("The job without those captions"),
        400: problemContent("invalid_request"),
        401: problemContent("unauthorized"),
        404: problemContent("job_not_found, captions_not_found"),
        409: problemContent("invalid_state, captions_busy"),
      },
    }),
    async (c) => {
      const { id, language } = c.req.valid("param");
      const redis = c.get("redis");
      const job = await changePackage(redis, id, async (current) => {
        const outputs = await removeCaptions(c.get("settings"), current, language);
        if (!outputs)
          throw new ProblemError("captions_not_found", {
            detail: `no captions named ${captionsRenditionName(language)} were added to this job`,
          });
        return outputs;
      });
      return c.json(presentJob(c.get("settings"), job), 200);
    },
  );
