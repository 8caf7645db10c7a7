/**
 * `GET /v1/stats`: queue depth, running jobs and the machine pool against its cap, and usage over
 * the last 24 hours and 30 days with a cost estimate at the configured prices.
 */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { AppEnv } from "../http/context.ts";
import { validationHook } from "../http/errors.ts";
import { problemContent } from "../http/problem.ts";
import { getStats, type UsageTotals } from "../state/index.ts";
import { estimateCost } from "../usage/estimate.ts";

const Totals = z.object({
  machineSeconds: z.number().openapi({ description: "Time attempts held a machine" }),
  attempts: z.number().int().openapi({ description: "Attempts that ended" }),
  jobsCompleted: z.number().int(),
  outputMinutes: z.number().openapi({ description: "Minutes of video in the packages published" }),
  objectsWritten: z.number().int(),
  bytesWritten: z.number().int(),
});

const Estimate = z.object({
  machines: z.number(),
  storage: z.number(),
  operations: z.number(),
  total: z.number(),
});

const Stats = z
  .object({
    machines: z.record(z.string(), z.number().int()).openapi({ description: "Pool machines by state" }),
    maxMachines: z.number().int(),
    queued: z.number().int(),
    running: z.number().int(),
    oldestQueuedAgeSeconds: z.number().nullable(),
    usage: z.object({
      last24Hours: Totals.openapi({ description: "The current hour and the 23 before it" }),
      last30Days: Totals,
      storedBytes: z.number().int().openapi({ description: "Sources and packages completed jobs keep" }),
      estimateUsd: z.object({ last24Hours: Estimate, last30Days: Estimate }),
      prices: z.object({
        machineSecondUsd: z.number(),
        storageGbMonthUsd: z.number(),
        classAMillionUsd: z.number(),
        classBMillionUsd: z.number(),
      }),
    }),
  })
  .openapi("Stats");

const presentTotals = ({ outputSeconds, ...rest }: UsageTotals) => ({
  ...rest,
  outputMinutes: Math.round((outputSeconds / 60) * 1000) / 1000,
});

export const stats = new OpenAPIHono<AppEnv>({ defaultHook: validationHook }).openapi(
  createRoute({
    method: "get",
    path: "/",
    summary: "Queue and pool statistics, usage and its estimated cost",
    security: [{ bearer: [] }],
    responses: {
      200: { description: "Current statistics", content: { "application/json": { schema: Stats } } },
      401: problemContent("unauthorized"),
    },
  }),
  async (c) => {
    const settings = c.get("settings");
    const current = await getStats(c.get("redis"), Date.now());
    const { last24Hours, last30Days, storedBytes } = current.usage;
    return c.json(
      {
        machines: current.machines,
        maxMachines: settings.MAX_MACHINES,
        queued: current.queued,
        running: current.running,
        oldestQueuedAgeSeconds: current.oldestQueuedAgeSeconds,
        usage: {
          last24Hours: presentTotals(last24Hours),
          last30Days: presentTotals(last30Days),
          storedBytes,
          estimateUsd: {
            last24Hours: estimateCost(last24Hours, storedBytes, 1, settings),
            last30Days: estimateCost(last30Days, storedBytes, 30, settings),
          },
          prices: {
            machineSecondUsd: settings.PRICE_MACHINE_SECOND_USD,
            storageGbMonthUsd: settings.PRICE_STORAGE_GB_MONTH_USD,
            classAMillionUsd: settings.PRICE_CLASS_A_MILLION_USD,
            classBMillionUsd: settings.PRICE_CLASS_B_MILLION_USD,
          },
        },
      },
      200,
    );
  },
);
