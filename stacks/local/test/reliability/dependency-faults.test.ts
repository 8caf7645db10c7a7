/**
 * The services the control plane and machines call misbehave on a fraction of calls: the Fly
 * Machines API answers 429/500/504 (some only after a delay), the object store answers 500 to
 * reads and writes. Admission still converges to the capped machine count, retries carry jobs
 * through, and a store that never recovers fails the job with a clear code instead of hanging.
 */
import type { Job } from "@tcoder/worker/contract";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeClip } from "../e2e/clips.ts";
import { type FaultStack, makeTinyClip, startFaultStack, submitClip, waitFor, waitForTerminal } from "./harness.ts";

describe("a Fly API failing 40% of calls", () => {
  let fault: FaultStack;

  beforeAll(async () => {
    fault = await startFaultStack("fly-faults", {
      maxMachines: 2,
      vars: { MACHINE_IDLE_STOP_SECONDS: "3", DEFAULT_PRESET: "hls-small" },
      // Jobs of a few seconds each, so demand for two machines lasts while admission fights the faults.
      machineEnv: { X264_PRESET: "medium" },
      flyFaults: { rate: 0.4, statuses: [429, 500, 504], delayMs: 300 },
    });
  });
  afterAll(async () => {
    await fault?.stop();
  });

  it("still brings the pool to the cap (never past it), completes every job once, then stops the machines", async () => {
    const { cloud } = fault.stack;
    const app = cloud.settings.FLY_APP_NAME;
    const clip = await makeClip(`${fault.dir}/small.mp4`, { seconds: 4, size: "320x240", rate: 25 });
    const ids = await Promise.all(Array.from({ length: 6 }, () => submitClip(fault, clip)));

    const jobs = await waitForTerminal(fault.api, ids, 180_000);
    expect(jobs.map((j) => j.state)).toEqual(ids.map(() => "completed"));
    for (const id of ids) expect(fault.completionsOf(id)).toHaveLength(1);
    // Six queued jobs want two machines: admission got there through the faults, and no retry
    // of a failed create ever made a third.
    expect(fault.peakLiveMachines()).toBe(2);
    expect(cloud.fly.machines(app)).toHaveLength(2);

    // Idle machines are stopped through the same faulty API, and the pool in Redis agrees with Fly.
    await waitFor("both machines to be stopped", () => fault.liveMachines() === 0, { timeoutMs: 90_000 });
    const stats = await fault.api.stats();
    expect(stats).toMatchObject({ queued: 0, running: 0 });
    expect((stats.machines.busy ?? 0) + (stats.machines.idle ?? 0) + (stats.machines.starting ?? 0)).toBe(0);
  }, 300_000);
});

describe("an object store failing a fraction of reads and writes", () => {
  let fault: FaultStack;

  beforeAll(async () => {
    fault = await startFaultStack("s3-faults", {
      maxMachines: 2,
      vars: { JOB_MAX_ATTEMPTS: "2" },
      s3Faults: { failRate: 0.25 },
    });
  });
  afterAll(async () => {
    await fault?.stop();
  });

  it("carries jobs through 25% failed requests with retries, or fails them with a clear code", async () => {
    const clip = await makeTinyClip(fault.dir);
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push(await submitClip(fault, clip));
    const jobs = await waitForTerminal(fault.api, ids, 180_000);
    for (const job of jobs) {
      if (job.state === "completed") continue;
      expect(job.state).toBe("failed");
      expect(["upload_failed", "internal"]).toContain(job.error?.code);
      expect(job.error?.message).toMatch(/upload|download/);
    }
    // The SDK's and the machine's retries absorb a 25% failure rate: most jobs get through.
    expect(jobs.filter((j) => j.state === "completed").length).toBeGreaterThanOrEqual(3);
    for (const id of ids) expect(fault.completionsOf(id).length).toBeLessThanOrEqual(1);
  }, 240_000);

  it("fails a job whose source can never be read with a clear code after its attempts, instead of hanging", async () => {
    const { cloud } = fault.stack;
    const clip = await makeTinyClip(fault.dir, "unreadable.mp4");
    // Reads fail from before the upload (a PUT), so no machine ever gets the source.
    cloud.store.setFaults({ failRate: 1, ops: ["get"] });
    const id = await submitClip(fault, clip);
    try {
      const [job] = (await waitForTerminal(fault.api, [id], 150_000)) as [Job];
      expect(job.state).toBe("failed");
      expect(job.attempts).toBe(2);
      expect(job.error?.code).toBe("internal");
      expect(job.error?.message).toMatch(/^download failed: /);
      expect(job.outputs).toBeUndefined();
    } finally {
      cloud.store.setFaults(undefined);
    }
  }, 200_000);
});
