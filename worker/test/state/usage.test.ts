/**
 * What jobs cost, against real Redis: machine time per attempt, whatever ends it (an outcome, a
 * release, a cancel, a delete, an expired lease), the encoded output and the bytes a job keeps,
 * and the hourly totals `GET /v1/stats` sums over the last 24 hours and 30 days.
 */
import { expect, test } from "vitest";
import type { MachineEvent, OutputKeys, ProbeSummary } from "../../src/contract/index.ts";
import {
  applyMachineEvent,
  cancelJob,
  claimNextJob,
  createJob,
  deleteJob,
  getJob,
  getStats,
  inputKeyFor,
  recoverExpiredLeases,
} from "../../src/state/index.ts";
import { useStateServices } from "./services.ts";

const s = useStateServices();

const T0 = Date.UTC(2026, 10, 29, 12, 0, 0);
const probe: ProbeSummary = { formatName: "mov,mp4", durationSeconds: 90, sizeBytes: 1_000_000 };
const outputs: OutputKeys = { manifest: "outputs/j/manifest.json", renditions: [] };
const usage = { outputSeconds: 90, packageBytes: 4_000_000, objects: 61 };

async function claim(id: string, atMs: number, machineId = "m1") {
  const claimed = await claimNextJob(s.redis, { machineId, leaseSeconds: 60, nowMs: atMs });
  expect(claimed?.jobId).toBe(id);
  return { jobId: id, machineId, attempt: (claimed as NonNullable<typeof claimed>).attempt };
}

async function runningJob(id: string, atMs = T0) {
  await createJob(
    s.redis,
    { id, preset: "hls-ladder", input: { key: inputKeyFor(id, "a.mp4") }, state: "pending", maxAttempts: 3 },
    atMs,
  );
  return claim(id, atMs);
}

const completed = (run: { jobId: string; machineId: string; attempt: number }): MachineEvent => ({
  type: "completed",
  ...run,
  outputs,
  probe,
  usage,
});

test("a completed attempt records its machine time, the output minutes and the bytes the job keeps", async () => {
  const run = await runningJob("j1");
  await applyMachineEvent(s.redis, { type: "heartbeat", ...run }, T0 + 20_000);
  await applyMachineEvent(s.redis, completed(run), T0 + 42_500);
  // A replayed `completed` counts nothing twice.
  await applyMachineEvent(s.redis, completed(run), T0 + 50_000);

  expect((await getJob(s.redis, "j1"))?.usage).toEqual({
    machineSeconds: 42.5,
    attempts: [
      { attempt: 1, machineId: "m1", startedAt: new Date(T0).toISOString(), seconds: 42.5, outcome: "completed" },
    ],
    outputMinutes: 1.5,
    storedBytes: 5_000_000,
  });
  const { usage: totals } = await getStats(s.redis, T0 + 60_000);
  expect(totals.last24Hours).toEqual({
    machineSeconds: 42.5,
    attempts: 1,
    jobsCompleted: 1,
    outputSeconds: 90,
    objectsWritten: 61,
    bytesWritten: 4_000_000,
  });
  expect(totals.last30Days).toEqual(totals.last24Hours);
  expect(totals.storedBytes).toBe(5_000_000);
});

test("every attempt is counted: a retryable failure, a release, then the completion", async () => {
  const first = await runningJob("j1");
  await applyMachineEvent(
    s.redis,
    { type: "failed", ...first, error: { code: "internal", message: "x" }, retryable: true },
    T0 + 10_000,
  );
  const second = await claim("j1", T0 + 11_000, "m2");
  await applyMachineEvent(s.redis, { type: "released", ...second, reason: "SIGTERM" }, T0 + 14_000);
  const third = await claim("j1", T0 + 15_000, "m3");
  await applyMachineEvent(s.redis, completed(third), T0 + 35_000);

  const job = await getJob(s.redis, "j1");
  expect(job?.usage?.attempts.map((a) => [a.machineId, a.seconds, a.outcome])).toEqual([
    ["m1", 10, "failed"],
    ["m2", 3, "released"],
    ["m3", 20, "completed"],
  ]);
  expect(job?.usage?.machineSeconds).toBe(33);
  expect((await getStats(s.redis, T0 + 40_000)).usage.last24Hours).toMatchObject({ machineSeconds: 33, attempts: 3 });
});

test("an expired lease ends the attempt at the machine's last heartbeat", async () => {
  const run = await runningJob("j1");
  await applyMachineEvent(s.redis, { type: "heartbeat", ...run }, T0 + 25_000);
  await recoverExpiredLeases(s.redis, T0 + 25_000 + 61_000);
  const job = await getJob(s.redis, "j1");
  expect(job?.state).toBe("pending");
  expect(job?.usage?.attempts).toEqual([
    expect.objectContaining({ machineId: "m1", seconds: 25, outcome: "lease_expired" }),
  ]);
});

test("canceling or deleting a running job ends its attempt; deleting gives back what it stored", async () => {
  const canceled = await runningJob("j1");
  await cancelJob(s.redis, canceled.jobId, T0 + 7_000);
  expect((await getJob(s.redis, "j1"))?.usage?.attempts).toEqual([
    expect.objectContaining({ seconds: 7, outcome: "canceled" }),
  ]);

  const running = await runningJob("j2", T0 + 8_000);
  await deleteJob(s.redis, running.jobId, T0 + 12_000);
  expect((await getJob(s.redis, "j2"))?.usage?.attempts).toEqual([
    expect.objectContaining({ seconds: 4, outcome: "deleted" }),
  ]);

  const done = await runningJob("j3", T0 + 20_000);
  await applyMachineEvent(s.redis, completed(done), T0 + 30_000);
  expect((await getStats(s.redis, T0 + 31_000)).usage.storedBytes).toBe(5_000_000);
  await deleteJob(s.redis, done.jobId, T0 + 32_000);
  expect((await getJob(s.redis, "j3"))?.usage?.storedBytes).toBe(0);
  const { usage: totals } = await getStats(s.redis, T0 + 33_000);
  expect(totals.storedBytes).toBe(0);
  // What was spent stays spent.
  expect(totals.last24Hours).toMatchObject({ machineSeconds: 7 + 4 + 10, jobsCompleted: 1 });
});

test("the 24-hour window holds the current hour and the 23 before it; the 30-day one 720 hours", async () => {
  const old = await runningJob("old", T0 - 3 * 24 * 3600_000);
  await applyMachineEvent(s.redis, completed(old), T0 - 3 * 24 * 3600_000 + 60_000);
  const recent = await runningJob("recent", T0 - 2 * 3600_000);
  await applyMachineEvent(s.redis, completed(recent), T0 - 2 * 3600_000 + 30_000);
  const ancient = await runningJob("ancient", T0 - 31 * 24 * 3600_000);
  await applyMachineEvent(s.redis, completed(ancient), T0 - 31 * 24 * 3600_000 + 10_000);

  const { usage: totals } = await getStats(s.redis, T0);
  expect(totals.last24Hours).toMatchObject({ machineSeconds: 30, jobsCompleted: 1 });
  expect(totals.last30Days).toMatchObject({ machineSeconds: 90, jobsCompleted: 2 });
});
