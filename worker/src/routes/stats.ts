/** `GET /v1/stats`: queue depth, running jobs and the machine pool against its cap. */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { AppEnv } from "../http/context.ts";
import { validationHook } from "../http/errors.ts";
import { problemContent } from "../http/problem.ts";
import { getStats } from "../state/index.ts";

const Stats = z
  .object({
    machines: z.record(z.string(), z.number().int()).openapi({ description: "Pool machines by state" }),
    maxMachines: z.number().int(),
    queued: z.number().int(),
    running: z.number().int(),
    oldestQueuedAgeSeconds: z.number().nullable(),
  })
  .openapi("Stats");

export const stats = new OpenAPIHono<AppEnv>({ defaultHook: validationHook }).openapi(
  createRoute({
    method: "get",
    path: "/",
    summary: "Queue and pool statistics",
    security: [{ bearer: [] }],
    responses: {
      200: { description: "Current statistics", content: { "application/json": { schema: Stats } } },
      401: problemContent("unauthorized"),
    },
  }),
  async (c) => {
    const current = await getStats(c.get("redis"), Date.now());
    return c.json(
      {
        machines: current.machines,
        maxMachines: c.get("settings").MAX_MACHINES,
        queued: current.queued,
        running: current.running,
        oldestQueuedAgeSeconds: current.oldestQueuedAgeSeconds,
      },
      200,
    );
  },
);
