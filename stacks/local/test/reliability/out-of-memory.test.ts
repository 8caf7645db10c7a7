/**
 * Machines too small for the job, as containers of the image that ships with `guest.memory_mb`
 * as their memory limit: a 1080p ladder in a 256 MB machine. The kernel's OOM killer ends ffmpeg;
 * the job fails at once with `out_of_memory` (another attempt on the same size would end the same
 * way), publishes nothing, keeps its source for a retry on bigger machines, and the Fly API reports
 * the machine's run as OOM-killed, as Fly does.
 */
import { HeadObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import type { Job } from "@tcoder/worker/contract";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeClip } from "../e2e/clips.ts";
import { type FaultStack, startFaultStack, submitClip, waitFor, waitForTerminal } from "./harness.ts";

describe("a job that needs more memory than its machine has", () => {
  let fault: FaultStack;

  beforeAll(async () => {
    fault = await startFaultStack("out-of-memory", {
      runner: "container",
      maxMachines: 1,
      // The smallest machine Fly offers (shared-cpu-1x, 256 MB); the cron stops it soon after the job ends.
      vars: { MACHINE_CPU_KIND: "shared", MACHINE_CPUS: "1", MACHINE_MEMORY_MB: "256", MACHINE_IDLE_STOP_SECONDS: "2" },
      // x264's default look-ahead over four 1080p..360p renditions needs far more than 256 MB.
      machineEnv: { X264_PRESET: "medium" },
    });
  }, 600_000);
  afterAll(async () => {
    await fault?.stop();
  });

  it("fails with out_of_memory on the first attempt, loses nothing, and the machine is reported OOM-killed", async () => {
    const { cloud } = fault.stack;
    const clip = await makeClip(`${fault.dir}/1080p.mp4`, { seconds: 3, size: "1920x1080", rate: 30 });
    const jobId = await submitClip(fault, clip, { preset: "hls-ladder" });

    const [job] = (await waitForTerminal(fault.api, [jobId], 180_000)) as [Job];
    expect(job.state).toBe("failed");
    expect(job.error?.code).toBe("out_of_memory");
    expect(job.error?.message).toContain("256 MB");
    expect(job.attempts).toBe(1);

    // Nothing published, nothing half-written left behind, and the source is still there to retry.
    const outputs = await cloud.s3.send(
      new ListObjectsV2Command({ Bucket: cloud.settings.OUTPUT_BUCKET, Prefix: `outputs/${jobId}/` }),
    );
    expect(outputs.KeyCount ?? 0).toBe(0);
    const source = await cloud.s3.send(
      new HeadObjectCommand({ Bucket: cloud.settings.INPUT_BUCKET, Key: job.input.key }),
    );
    expect(source.ContentLength).toBe(job.input.sizeBytes);

    // The machine logged the kernel's verdict and, once stopped, its run is reported OOM-killed.
    const app = cloud.settings.FLY_APP_NAME;
    const claimedBy = fault.machineLines.find((line) => line.jobId === jobId && line.message === "claimed")?.machineId;
    const machine = await waitFor(
      "the idle machine to be stopped",
      () => cloud.fly.machines(app).find((m) => m.id === claimedBy && m.state === "stopped"),
      { timeoutMs: 60_000, everyMs: 250 },
    );
    const exit = machine.events.find((event) => event.type === "exit");
    expect(exit?.request).toMatchObject({ exit_event: { oom_killed: true } });
    expect(fault.machineLines.some((line) => /Out of memory: killed process \(ffmpeg\)/.test(line.raw))).toBe(true);
  }, 300_000);
});
