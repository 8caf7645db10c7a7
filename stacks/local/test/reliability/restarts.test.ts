/**
 * The stateful processes go away while jobs run. redis-server (AOF, appendfsync everysec as the
 * local stack runs it) is restarted cleanly and then crashed with SIGKILL; workerd is disposed
 * and started again on the same port, as a redeploy does. In every case each job still ends
 * `completed`: nothing is lost, nothing is stuck, and the queue drains.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FaultStack, makeTinyClip, startFaultStack, submitClip, waitFor, waitForTerminal } from "./harness.ts";

describe("restarting redis-server and workerd under running jobs", () => {
  let fault: FaultStack;
  let clip: string;

  beforeAll(async () => {
    fault = await startFaultStack("restarts", { maxMachines: 2, vars: { JOB_LEASE_SECONDS: "6" } });
    clip = await makeTinyClip(fault.dir, "tiny.mp4", 4);
  });
  afterAll(async () => {
    await fault?.stop();
  });

  /** Submits `count` jobs and runs `disrupt` once one of them is running. */
  async function underDisruption(count: number, disrupt: () => Promise<void>) {
    const ids: string[] = [];
    for (let i = 0; i < count; i++) ids.push(await submitClip(fault, clip));
    await waitFor(
      "a job to be running",
      async () => (await fault.api.listJobPage({ state: "running" })).jobs.some((j) => ids.includes(j.id)),
      { everyMs: 50 },
    );
    await disrupt();
    const jobs = await waitForTerminal(fault.api, ids, 150_000);
    return { ids, jobs };
  }

  it("a clean redis-server restart mid-run: every job completes exactly once", async () => {
    const { ids, jobs } = await underDisruption(4, () => fault.stack.cloud.restartRedis({ downForMs: 3_000 }));
    expect(jobs.map((j) => j.state)).toEqual(ids.map(() => "completed"));
    for (const id of ids) expect(fault.completionsOf(id)).toHaveLength(1);
    expect(await fault.api.stats()).toMatchObject({ queued: 0, running: 0 });
  }, 200_000);

  it("redis-server SIGKILLed mid-run: no job is lost or stuck", async () => {
    const { ids, jobs } = await underDisruption(4, () =>
      fault.stack.cloud.restartRedis({ crash: true, downForMs: 3_000 }),
    );
    // With everysec a crash may forget the last second of writes, so a transition can be redone;
    // what must hold is that every job still reaches `completed` and the queue drains.
    expect(jobs.map((j) => j.state)).toEqual(ids.map(() => "completed"));
    for (const id of ids) expect(fault.completionsOf(id).length).toBeGreaterThanOrEqual(1);
    expect(await fault.api.stats()).toMatchObject({ queued: 0, running: 0 });
  }, 200_000);

  it("workerd restarted while jobs run: every job completes exactly once", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push(await submitClip(fault, clip));
    // The local queues live in workerd's memory (Cloudflare Queues are durable), so the restart
    // comes once every upload event has been consumed: then all state is in Redis.
    await waitFor(
      "every upload to be queued and one job running",
      async () => {
        const jobs = await Promise.all(ids.map((id) => fault.api.getJob(id)));
        return jobs.every((j) => j.state !== "awaiting_upload") && jobs.some((j) => j.state === "running");
      },
      { everyMs: 50 },
    );
    await fault.stack.cloud.restartWorker();
    const jobs = await waitForTerminal(fault.api, ids, 150_000);
    expect(jobs.map((j) => j.state)).toEqual(ids.map(() => "completed"));
    for (const id of ids) expect(fault.completionsOf(id)).toHaveLength(1);
    expect(await fault.api.stats()).toMatchObject({ queued: 0, running: 0 });
  }, 200_000);
});
