/**
 * `GET /v1/stats` usage and cost: totals for the last 24 hours and 30 days, and an estimate at the
 * configured prices (machine seconds × price, stored bytes × storage price for the window, objects
 * written as Class A and source reads as Class B operations).
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { applyMachineEvent, claimNextJob, createJob, inputKeyFor } from "../../src/state/index.ts";
import { type ControlPlaneServices, startControlPlaneServices } from "./harness.ts";

let cp: ControlPlaneServices;
beforeAll(async () => {
  cp = await startControlPlaneServices({
    PRICE_MACHINE_SECOND_USD: "0.001",
    PRICE_STORAGE_GB_MONTH_USD: "3",
    PRICE_CLASS_A_MILLION_USD: "5",
    PRICE_CLASS_B_MILLION_USD: "0.5",
  });
});
afterAll(() => cp?.stop());

it("reports usage and its estimated cost at the configured prices", async () => {
  const started = Date.now() - 10_000;
  await createJob(
    cp.redis,
    {
      id: "job_stats",
      preset: "hls-ladder",
      input: { key: inputKeyFor("job_stats", "a.mp4") },
      state: "pending",
      maxAttempts: 3,
    },
    started,
  );
  const claim = await claimNextJob(cp.redis, { machineId: "m-stats", leaseSeconds: 60, nowMs: started });
  await applyMachineEvent(
    cp.redis,
    {
      type: "completed",
      jobId: "job_stats",
      machineId: "m-stats",
      attempt: claim?.attempt ?? 0,
      outputs: { manifest: "outputs/job_stats/manifest.json", renditions: [] },
      probe: { formatName: "mov,mp4", durationSeconds: 120, sizeBytes: 100_000_000 },
      usage: { outputSeconds: 120, packageBytes: 200_000_000, objects: 1_000 },
    },
    started + 10_000,
  );

  const res = await cp.request("/v1/stats");
  expect(res.status).toBe(200);
  const { usage } = (await res.json()) as { usage: Record<string, unknown> };
  const totals = {
    machineSeconds: 10,
    attempts: 1,
    jobsCompleted: 1,
    outputMinutes: 2,
    objectsWritten: 1000,
    bytesWritten: 200_000_000,
  };
  const operations = (1000 / 1e6) * 5 + (1 / 1e6) * 0.5;
  expect(usage).toEqual({
    last24Hours: totals,
    last30Days: totals,
    storedBytes: 300_000_000,
    estimateUsd: {
      // 0.3 GB × $3 per GB-month: a day is a thirtieth of that, the 30 days all of it.
      last24Hours: { machines: 0.01, storage: 0.03, operations, total: 0.01 + 0.03 + operations },
      last30Days: { machines: 0.01, storage: 0.9, operations, total: 0.01 + 0.9 + operations },
    },
    prices: { machineSecondUsd: 0.001, storageGbMonthUsd: 3, classAMillionUsd: 5, classBMillionUsd: 0.5 },
  });
});
