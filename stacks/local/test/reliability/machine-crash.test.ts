/**
 * A machine SIGKILLed mid-transcode (a VM that vanished): its lease expires, the cron requeues the
 * job, another attempt completes it exactly once, and no output of the dead attempt is ever
 * published — while the job waits, there is no manifest; afterwards the manifest names only the
 * attempt that finished and nothing unreferenced is left under the job's prefix.
 */
import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import type { Job } from "@tcoder/worker/contract";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runnerKinds } from "../../src/stack.ts";
import { makeClip } from "../e2e/clips.ts";
import {
  type CallbackReceiver,
  type FaultStack,
  startCallbackReceiver,
  startFaultStack,
  submitClip,
  waitFor,
  waitForTerminal,
} from "./harness.ts";

// Once per runner: a process group SIGKILLed, and a container SIGKILLed (the image that ships).
describe.each(runnerKinds)("a machine killed mid-transcode (%s runner)", (runner) => {
  let fault: FaultStack;
  let hooks: CallbackReceiver;

  beforeAll(async () => {
    hooks = await startCallbackReceiver();
    // A container stack builds the image first when its inputs changed (cached otherwise).
    fault = await startFaultStack("machine-crash", {
      maxMachines: 1,
      runner,
      vars: { JOB_LEASE_SECONDS: "4" },
      // Slow enough that the transcode stage lasts a few seconds; the kill lands inside it.
      machineEnv: { X264_PRESET: "medium" },
    });
  }, 600_000);
  afterAll(async () => {
    await fault?.stop();
    await hooks?.close();
  });

  it("loses its lease, the job is requeued and completes once, with no half-published package", async () => {
    const { cloud } = fault.stack;
    const clip = await makeClip(`${fault.dir}/long.mp4`, { seconds: 12, size: "640x360", rate: 30 });
    const jobId = await submitClip(fault, clip, { preset: "hls-small", callbackUrl: hooks.url });

    const running = await waitFor(
      "the first attempt to be transcoding",
      async () => {
        const job = await fault.api.getJob(jobId);
        return job.state === "running" && job.stage === "transcoding" && job.machineId ? job : undefined;
      },
      { everyMs: 50 },
    );
    expect(await fault.stack.killMachine(running.machineId as string)).toBe(true);

    // Until a new attempt publishes, nothing of the job is published: no manifest, no outputs.
    const requeued = await waitFor(
      "the cron to requeue or re-run the job",
      async () => {
        const job = await fault.api.getJob(jobId);
        return job.attempts >= 2 || job.state === "pending" ? job : undefined;
      },
      { timeoutMs: 60_000, everyMs: 100 },
    );
    expect(requeued.outputs).toBeUndefined();
    const manifestWhileRequeued = await fetch(`${cloud.settings.OUTPUTS_BASE_URL}/outputs/${jobId}/manifest.json`);
    expect(manifestWhileRequeued.status).toBe(404);

    const [job] = (await waitForTerminal(fault.api, [jobId], 180_000)) as [Job];
    expect(job.state).toBe("completed");
    expect(job.attempts).toBe(2);
    // Exactly one completion: one machine finished it, the client heard about it once.
    expect(fault.completionsOf(jobId)).toHaveLength(1);
    await waitFor("the completed callback", () => hooks.completedCount(jobId) > 0);
    expect(hooks.completedCount(jobId)).toBe(1);

    // The manifest and every playlist point into attempt 2; nothing else is left under the job.
    const manifestResponse = await fetch(job.outputs?.manifest.url as string);
    const manifest = (await manifestResponse.json()) as { files: { key: string }[] };
    const referenced = new Set(manifest.files.map((f) => f.key));
    expect([...referenced].every((key) => key.startsWith(`outputs/${jobId}/2/`))).toBe(true);
    const listed = await cloud.s3.send(
      new ListObjectsV2Command({ Bucket: cloud.settings.OUTPUT_BUCKET, Prefix: `outputs/${jobId}/` }),
    );
    const stored = (listed.Contents ?? []).map((o) => o.Key as string).filter((k) => !k.endsWith("manifest.json"));
    expect(stored.sort()).toEqual([...referenced].sort());
  }, 240_000);
});
