/** Request/response schemas shared by the resource routers (the OpenAPI document names them). */
import { z } from "@hono/zod-openapi";
import { Job, LoudnessSetting, Metadata, PlaybackPolicy } from "../contract/index.ts";

/**
 * Contract schemas may be created before @hono/zod-openapi extends zod (module order decides), and
 * zod 4 instances only get `.openapi()` when built after that; rebuilding from the shape is safe.
 */
export const PublicJob = z.object(Job.shape).openapi("Job");

export const JobCreationFields = {
  preset: z.string().min(1).max(64).optional().openapi({ description: "Preset name; DEFAULT_PRESET when absent" }),
  playback: PlaybackPolicy.optional().openapi({
    description: "`signed`: outputs are served only by the worker with an expiring token; default `public`",
  }),
  loudness: z
    .object(LoudnessSetting.shape)
    .strict()
    .optional()
    .openapi({
      description:
        "Normalize every audio rendition to `targetLufs` (EBU R128 two-pass loudnorm: −23 broadcast, −16 streaming); the measured loudness is on `outputs.loudness`",
      example: { targetLufs: -23 },
    }),
  callbackUrl: z.string().max(2048).optional().openapi({ description: "Receives a signed POST when the job ends" }),
  metadata: Metadata.optional().openapi({ description: "Up to 32 string pairs echoed back on the job" }),
};

export const JobIdParams = z.object({
  id: z.string().openapi({ param: { name: "id", in: "path" }, example: "job_01jf3v6j9g2m4k8q7r5t0w1x2y" }),
});
